//! API key authentication with a short-lived cache, so ingestion at thousands of requests per
//! second does not pay a database lookup per request.

use std::time::Duration;

use moka::sync::Cache;
use uuid::Uuid;

use crate::domain::secrets::hash_api_key;
use crate::store::{Store, StoreError};

/// How long a verified key is trusted without asking the database again.
const TTL: Duration = Duration::from_secs(60);
const CAPACITY: u64 = 10_000;

pub struct AuthCache {
    verified: Cache<Vec<u8>, Uuid>,
}

impl Default for AuthCache {
    fn default() -> Self {
        Self { verified: Cache::builder().max_capacity(CAPACITY).time_to_live(TTL).build() }
    }
}

impl AuthCache {
    /// The organization of `key`, or `None` for an unknown key. Unknown keys are not cached, so
    /// a key created a moment ago works at once.
    pub async fn org_for_key(&self, store: &Store, key: &str) -> Result<Option<Uuid>, StoreError> {
        let hash = hash_api_key(key);
        if let Some(org_id) = self.verified.get(&hash) {
            return Ok(Some(org_id));
        }
        let org_id = store.org_for_api_key_hash(&hash).await?;
        if let Some(org_id) = org_id {
            self.verified.insert(hash, org_id);
        }
        Ok(org_id)
    }
}
