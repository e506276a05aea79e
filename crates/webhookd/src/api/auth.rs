//! API key authentication with a short-lived cache, so ingestion at thousands of requests per
//! second does not pay a database lookup per request, and a per-key rate limit.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use moka::sync::Cache;
use uuid::Uuid;

use crate::store::{Store, StoreError};

/// How long a verified key is trusted without asking the database again.
const TTL: Duration = Duration::from_secs(60);
const CAPACITY: u64 = 10_000;

pub struct AuthCache {
    verified: Cache<Vec<u8>, Uuid>,
    /// Requests per second per API key (by its hash); `None` when unlimited.
    limiter: Option<DefaultKeyedRateLimiter<Vec<u8>>>,
}

impl AuthCache {
    /// `rate_limit`: requests per second allowed per API key, with a burst of as many; 0 is
    /// unlimited.
    pub fn new(rate_limit: u32) -> Self {
        Self {
            verified: Cache::builder().max_capacity(CAPACITY).time_to_live(TTL).build(),
            limiter: NonZeroU32::new(rate_limit)
                .map(|rate| RateLimiter::keyed(Quota::per_second(rate))),
        }
    }

    /// The organization of the key whose hash is `key_hash`, or `None` for an unknown key.
    /// Unknown keys are not cached, so a key created a moment ago works at once.
    pub async fn org_for_key_hash(
        &self,
        store: &Store,
        key_hash: &[u8],
    ) -> Result<Option<Uuid>, StoreError> {
        if let Some(org_id) = self.verified.get(key_hash) {
            return Ok(Some(org_id));
        }
        let org_id = store.org_for_api_key_hash(key_hash).await?;
        if let Some(org_id) = org_id {
            self.verified.insert(key_hash.to_vec(), org_id);
        }
        Ok(org_id)
    }

    /// `Err(seconds to wait)` when the key has used up its rate.
    pub fn check_rate(&self, key_hash: &[u8]) -> Result<(), u64> {
        let Some(limiter) = &self.limiter else { return Ok(()) };
        limiter.check_key(&key_hash.to_vec()).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
        })
    }
}
