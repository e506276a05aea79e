//! Counts for the metrics gauges and for tests: how many logs wait, are due, are held.

use super::{on_reader, Store, StoreError};
use crate::domain::clock::now_ms;

impl Store {
    /// Logs waiting for an attempt (due, scheduled, held or in flight).
    pub async fn pending_count(&self) -> Result<i64, StoreError> {
        on_reader!(self, |pool| {
            Ok(sqlx::query_scalar("SELECT COUNT(*) FROM delivery_logs WHERE status = 'pending'")
                .fetch_one(pool)
                .await?)
        })
    }

    /// Logs a node holds right now (a claim's lease on PostgreSQL; an ingestion hand-off or an
    /// explicit send on SQLite): the only ones a crash can make arrive twice.
    pub async fn claimed_count(&self) -> Result<i64, StoreError> {
        on_reader!(self, |pool| {
            Ok(sqlx::query_scalar(
                "SELECT COUNT(*) FROM delivery_logs
                 WHERE status = 'pending' AND claimed_at IS NOT NULL",
            )
            .fetch_one(pool)
            .await?)
        })
    }

    /// Logs due now that no node holds.
    pub async fn due_count(&self) -> Result<i64, StoreError> {
        on_reader!(self, |pool| {
            Ok(sqlx::query_scalar(
                "SELECT COUNT(*) FROM delivery_logs
                 WHERE status = 'pending' AND next_attempt_at <= $1 AND claimed_at IS NULL",
            )
            .bind(now_ms())
            .fetch_one(pool)
            .await?)
        })
    }

    pub async fn disabled_webhooks_count(&self) -> Result<i64, StoreError> {
        on_reader!(self, |pool| {
            Ok(sqlx::query_scalar("SELECT COUNT(*) FROM webhooks WHERE NOT enabled")
                .fetch_one(pool)
                .await?)
        })
    }
}
