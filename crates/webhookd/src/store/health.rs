//! A webhook's health for the dashboard: its recent success rate, its last error and its backlog.
//! Each figure reads a bounded slice of an index, so the page stays fast on a webhook with
//! millions of logs: the latest [`RECENT_LOGS`] logs of the last 24 hours (ids are UUIDv7, so an
//! id bound is a time bound on `(webhook_id, id)`), and at most [`PENDING_CAP`] pending logs (on
//! the pending-only lane index).

use uuid::Uuid;

use super::{on_reader, Store, StoreError, Webhook};
use crate::domain::clock::{now_ms, UnixMs, DAY_MS};

/// How many of the latest logs the success rate and the last error look at.
pub const RECENT_LOGS: i64 = 1000;
/// Pending logs are counted up to this many; beyond it the page says "more than".
pub const PENDING_CAP: i64 = 10_000;

#[derive(Debug, Clone, Default)]
pub struct WebhookHealth {
    /// Logs of the recent slice that ended (`success` or `failed`).
    pub finished: i64,
    pub succeeded: i64,
    pub last_error: Option<LastError>,
    /// Pending logs, counted up to [`PENDING_CAP`].
    pub pending: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LastError {
    pub log_id: Uuid,
    pub error: Option<String>,
    pub http_status: Option<i64>,
    pub at: UnixMs,
}

impl WebhookHealth {
    /// Percentage of recent finished logs that succeeded; `None` when none finished.
    pub fn success_rate(&self) -> Option<f64> {
        (self.finished > 0).then(|| self.succeeded as f64 * 100.0 / self.finished as f64)
    }
}

/// The smallest UUIDv7 of millisecond `ms`: every log created at or after `ms` has a larger id.
fn first_id_at(ms: UnixMs) -> Uuid {
    Uuid::from_u128(u128::from(ms.max(0) as u64) << 80)
}

const RECENT: &str = "SELECT id, status, error, http_status, updated_at FROM delivery_logs
    WHERE webhook_id = $1 AND id >= $2 ORDER BY id DESC LIMIT $3";

impl Store {
    pub async fn webhook_health(&self, webhook: &Webhook) -> Result<WebhookHealth, StoreError> {
        let since = first_id_at(now_ms() - DAY_MS);
        let rate_sql = format!(
            "SELECT COUNT(*), COALESCE(SUM(CASE WHEN status = 'success' THEN 1 ELSE 0 END), 0)
             FROM ({RECENT}) recent WHERE status IN ('success', 'failed')"
        );
        // A failed attempt leaves its error (or its non-2xx status) on the log.
        let error_sql = format!(
            "SELECT id AS log_id, error, http_status, updated_at AS at FROM ({RECENT}) recent
             WHERE error IS NOT NULL OR http_status < 200 OR http_status >= 300
             ORDER BY id DESC LIMIT 1"
        );
        // `lane_id` is the webhook for a webhook's logs: the pending-only lane index serves this.
        let pending_sql = "SELECT COUNT(*) FROM (SELECT 1 FROM delivery_logs
             WHERE lane_id = $1 AND webhook_id = $1 AND status = 'pending' LIMIT $2) pending";
        on_reader!(self, |pool| {
            let (finished, succeeded): (i64, i64) = sqlx::query_as(&rate_sql)
                .bind(webhook.id)
                .bind(since)
                .bind(RECENT_LOGS)
                .fetch_one(pool)
                .await?;
            let last_error: Option<LastError> = sqlx::query_as(&error_sql)
                .bind(webhook.id)
                .bind(since)
                .bind(RECENT_LOGS)
                .fetch_optional(pool)
                .await?;
            let pending: i64 = sqlx::query_scalar(pending_sql)
                .bind(webhook.id)
                .bind(PENDING_CAP)
                .fetch_one(pool)
                .await?;
            Ok(WebhookHealth { finished, succeeded, last_error, pending })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_id_of_a_millisecond_sorts_before_every_uuid_v7_of_it() {
        let ms: UnixMs = 1_705_318_200_123;
        let ts = uuid::Timestamp::from_unix(uuid::NoContext, 1_705_318_200, 123_000_000);
        let id = Uuid::new_v7(ts);
        assert!(first_id_at(ms) <= id);
        assert!(first_id_at(ms + 1) > id);
    }
}
