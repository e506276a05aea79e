//! API key authentication with a short-lived cache, so ingestion at thousands of requests per
//! second does not pay a database lookup per request, a bound on what unknown keys cost
//! (`key_lookups.rs`), and a per-key rate limit.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use moka::sync::Cache;
use uuid::Uuid;

use super::key_lookups::{KeyLookups, Turn};
use crate::store::{Store, StoreError};
use crate::telemetry::metrics;

/// How long a verified key is trusted without asking the database again.
const TTL: Duration = Duration::from_secs(60);
const CAPACITY: u64 = 10_000;

pub struct AuthCache {
    verified: Cache<Vec<u8>, Uuid>,
    /// Requests per second per API key (by its hash); `None` when unlimited.
    limiter: Option<DefaultKeyedRateLimiter<Vec<u8>>>,
    lookups: KeyLookups,
}

/// What a key turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyCheck {
    Valid(Uuid),
    Unknown,
    /// Unknown, from a client past its lookups: it is to slow down.
    Throttled {
        retry_after_secs: u64,
    },
}

impl AuthCache {
    /// `rate_limit`: requests per second allowed per API key, with a burst of as many; 0 is
    /// unlimited.
    pub fn new(rate_limit: u32) -> Self {
        Self {
            verified: Cache::builder().max_capacity(CAPACITY).time_to_live(TTL).build(),
            limiter: NonZeroU32::new(rate_limit)
                .map(|rate| RateLimiter::keyed(Quota::per_second(rate))),
            lookups: KeyLookups::default(),
        }
    }

    /// What the key whose hash is `key_hash`, sent from `client`, is. A verified key is cached;
    /// an unknown one is remembered too (keys are random: one unknown now is unknown for good,
    /// and a key created a moment ago works at once).
    pub async fn check_key(
        &self,
        store: &Store,
        key_hash: &[u8],
        client: Option<IpAddr>,
    ) -> Result<KeyCheck, StoreError> {
        if let Some(org_id) = self.verified.get(key_hash) {
            return Ok(KeyCheck::Valid(org_id));
        }
        if self.lookups.is_known_unknown(key_hash) {
            metrics::api_key_rejected("unknown");
            return Ok(KeyCheck::Unknown);
        }
        let turn = self.lookups.turn(client).await;
        // Verified by another request while this one waited its turn?
        if let Some(org_id) = self.verified.get(key_hash) {
            return Ok(KeyCheck::Valid(org_id));
        }
        metrics::api_key_lookup();
        let Some((_, org_id)) = store.api_key_by_hash(key_hash).await? else {
            self.lookups.remember_unknown(key_hash);
            return Ok(match turn {
                Turn::Free => {
                    metrics::api_key_rejected("unknown");
                    KeyCheck::Unknown
                }
                Turn::Throttled { retry_after_secs, .. } => {
                    metrics::api_key_rejected("throttled");
                    KeyCheck::Throttled { retry_after_secs }
                }
            });
        };
        self.verified.insert(key_hash.to_vec(), org_id);
        Ok(KeyCheck::Valid(org_id))
    }

    /// The organization of the key whose hash is `key_hash`, or `None` for an unknown key; for
    /// callers without a client address (they share one budget of lookups).
    pub async fn org_for_key_hash(
        &self,
        store: &Store,
        key_hash: &[u8],
    ) -> Result<Option<Uuid>, StoreError> {
        Ok(match self.check_key(store, key_hash, None).await? {
            KeyCheck::Valid(org_id) => Some(org_id),
            KeyCheck::Unknown | KeyCheck::Throttled { .. } => None,
        })
    }

    /// `Err(seconds to wait)` when the key has used up its rate.
    pub fn check_rate(&self, key_hash: &[u8]) -> Result<(), u64> {
        let Some(limiter) = &self.limiter else { return Ok(()) };
        limiter.check_key(&key_hash.to_vec()).map_err(|not_until| {
            super::limits::retry_after_secs(not_until.wait_time_from(DefaultClock::default().now()))
        })
    }
}
