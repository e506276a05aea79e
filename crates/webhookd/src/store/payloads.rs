//! Event payloads on their way to a send, held once per event in memory whatever the fan-out:
//! claims return logs without their payloads, and each distinct event's bytes are read once and
//! shared (reference-counted) by every log of it. A small cache keeps recently read payloads, so
//! logs of one event claimed a moment apart (a fan-out's lanes take turns) share them too.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use uuid::Uuid;

use super::models::{Payload, QueuedLog};
use super::{on_reader, with_ids, Store, StoreError};

/// Payload bytes the cache keeps (what tickets hold is theirs, whatever the cache evicts).
const CACHE_BYTES: u64 = 32 * 1024 * 1024;
/// A payload not used for this long leaves the cache.
const CACHE_IDLE: Duration = Duration::from_secs(30);
/// Events per payload read.
const READ_CHUNK: usize = 200;

/// Recently read payloads by event id, bounded by their total size.
#[derive(Clone)]
pub struct PayloadCache {
    cache: moka::sync::Cache<Uuid, Bytes>,
}

impl Default for PayloadCache {
    fn default() -> Self {
        let cache = moka::sync::Cache::builder()
            .max_capacity(CACHE_BYTES)
            .weigher(|_, payload: &Bytes| u32::try_from(payload.len()).unwrap_or(u32::MAX))
            .time_to_idle(CACHE_IDLE)
            .build();
        Self { cache }
    }
}

impl PayloadCache {
    /// Forgets these events' payloads (they expired or were erased).
    pub(super) fn forget(&self, events: &[Uuid]) {
        for event in events {
            self.cache.invalidate(event);
        }
    }
}

impl Store {
    /// Gives each log its event's payload: one shared buffer per event, read once.
    pub(super) async fn fill_payloads(
        &self,
        mut logs: Vec<&mut QueuedLog>,
    ) -> Result<(), StoreError> {
        let cache = &self.payloads.cache;
        // A payload that expired or was erased is neither read nor kept: the log is not sent.
        logs.retain(|log| {
            let gone = !log.payload_state.is_present()
                || self.announcer().payload_gone(log.event_id).is_some();
            if gone {
                cache.invalidate(&log.event_id);
            }
            !gone
        });
        let mut missing: Vec<Uuid> =
            logs.iter().map(|log| log.event_id).filter(|id| !cache.contains_key(id)).collect();
        missing.sort_unstable();
        missing.dedup();
        let mut read: HashMap<Uuid, Bytes> = HashMap::with_capacity(missing.len());
        for chunk in missing.chunks(READ_CHUNK) {
            let rows: Vec<(Uuid, Vec<u8>)> = on_reader!(self, |pool| {
                with_ids("SELECT id, payload FROM events WHERE id IN ", chunk.iter().copied())
                    .build_query_as()
                    .fetch_all(pool)
                    .await?
            });
            for (id, payload) in rows {
                let payload = Bytes::from(payload);
                cache.insert(id, payload.clone());
                read.insert(id, payload);
            }
        }
        for log in logs.iter_mut() {
            let payload = read.get(&log.event_id).cloned().or_else(|| cache.get(&log.event_id));
            log.payload = Payload(payload.unwrap_or_default());
        }
        Ok(())
    }
}
