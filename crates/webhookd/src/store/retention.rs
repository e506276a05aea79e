//! Retention by rows: deleting events older than the retention period with their logs and
//! attempts, a batch per transaction so no lock is held long and deliveries never pause. This is
//! all of retention on SQLite; on PostgreSQL whole days go at once (`partitions.rs`) and this
//! only empties the default partitions (rows no day was made for).

use uuid::Uuid;

use super::{on_writer, with_ids, Backend, Store, StoreError};
use crate::domain::clock::{now_ms, UnixMs, DAY_MS};

/// Events per deletion transaction at first; the maintenance task sizes later batches by how long
/// the last one held the writer.
pub const RETENTION_BATCH: i64 = 500;

/// Rows one retention batch removed, per table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Deleted {
    pub events: u64,
    pub delivery_logs: u64,
    pub attempts: u64,
}

impl Store {
    /// Deletes up to `limit` events created before `cutoff` — never one that still has a pending
    /// log — with their logs and attempts.
    pub async fn delete_expired_batch(
        &self,
        cutoff: UnixMs,
        limit: i64,
    ) -> Result<Deleted, StoreError> {
        let lock = self.row_lock();
        let events = match self.backend() {
            Backend::Sqlite => "events",
            Backend::Postgres => "events_default",
        };
        on_writer!(self, |pool| {
            let mut tx = pool.begin().await?;
            let ids: Vec<(Uuid,)> = sqlx::query_as(&format!(
                "SELECT e.id FROM {events} e WHERE e.created_at < $1
                   AND NOT EXISTS (SELECT 1 FROM delivery_logs l
                                   WHERE l.event_id = e.id AND l.status = 'pending')
                 ORDER BY e.created_at LIMIT $2"
            ))
            .bind(cutoff)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?;
            if ids.is_empty() {
                return Ok(Deleted::default());
            }
            let in_list = |prefix: &str| with_ids(prefix, ids.iter().map(|(id,)| *id));
            // The logs first, as an erasure locks them (`payload_removal.rs`): one lock order,
            // so the two never deadlock over the same events.
            if !lock.is_empty() {
                in_list("SELECT id FROM delivery_logs WHERE event_id IN ")
                    .push(lock)
                    .build()
                    .execute(&mut *tx)
                    .await?;
            }
            // A log's latest attempt lives in its row; the earlier ones in `attempts`.
            let latest: i64 = in_list(
                "SELECT COUNT(*) FROM delivery_logs WHERE last_attempt_id IS NOT NULL AND event_id IN ",
            )
            .build_query_scalar()
            .fetch_one(&mut *tx)
            .await?;
            let earlier = in_list(
                "DELETE FROM attempts WHERE log_id IN (SELECT id FROM delivery_logs WHERE event_id IN ",
            )
            .push(")")
            .build()
            .execute(&mut *tx)
            .await?
            .rows_affected();
            let attempts = earlier + latest.unsigned_abs();
            let delivery_logs = in_list("DELETE FROM delivery_logs WHERE event_id IN ")
                .build()
                .execute(&mut *tx)
                .await?
                .rows_affected();
            let events = in_list("DELETE FROM events WHERE id IN ")
                .build()
                .execute(&mut *tx)
                .await?
                .rows_affected();
            // Idempotency keys only matter for a day; finished recoveries as long as their logs.
            sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
                .bind(now_ms() - DAY_MS)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM recoveries WHERE status = 'completed' AND updated_at < $1")
                .bind(cutoff)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(Deleted { events, delivery_logs, attempts })
        })
    }
}
