//! Operational webhooks (SPEC §4): each organization's own endpoint, and its deliveries.
//!
//! Where they live: an operational event is a row of `events` and its delivery a row of
//! `delivery_logs`, both under the organization's internal agent (`agents.internal`, never
//! listed), the log with no webhook and in the organization's operational lane
//! (`domain::operational::lane`, name-based like per-call lanes). The dispatcher therefore sends
//! them as it sends per-call deliveries — POST, signed with the organization's secret, retried
//! on the schedule, logged — and needs no code of its own for them. They are written by the
//! outbox (`outbox.rs`).

use uuid::Uuid;

use super::log_inserts::{LogIds, NewLog};
use super::{on_reader, on_writer, DeliveryLog, Store, StoreError};
use crate::domain::clock::{now_ms, UnixMs};
use crate::domain::operational::{self, Subscription};
use crate::domain::SendType;

/// An organization's operational webhook.
#[derive(Debug, Clone)]
pub struct OperationalWebhook {
    pub org_id: Uuid,
    pub url: String,
    pub events: Subscription,
    pub created_at: UnixMs,
    pub updated_at: UnixMs,
}

#[derive(sqlx::FromRow)]
struct OperationalRow {
    org_id: Uuid,
    url: String,
    events: String,
    created_at: i64,
    updated_at: i64,
}

impl OperationalRow {
    fn decode(self) -> Result<OperationalWebhook, StoreError> {
        let events = Subscription::from_stored(&self.events)
            .map_err(|detail| StoreError::Corrupt { table: "operational_webhooks", detail })?;
        Ok(OperationalWebhook {
            org_id: self.org_id,
            url: self.url,
            events,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

impl NewLog {
    /// This log as the delivery of an operational event: such a log has no webhook, and goes in
    /// its organization's operational lane rather than the per-call lane its URL would make.
    pub(super) fn into_operational(self) -> Self {
        debug_assert!(self.webhook_id.is_none(), "an operational log has no webhook");
        Self { lane_id: operational::lane(self.org_id), ..self }
    }
}

impl Store {
    /// The organization's operational webhook, if one is set.
    pub async fn operational_webhook(
        &self,
        org_id: Uuid,
    ) -> Result<Option<OperationalWebhook>, StoreError> {
        let row: Option<OperationalRow> = on_reader!(self, |pool| {
            sqlx::query_as(
                "SELECT org_id, url, events, created_at, updated_at
                 FROM operational_webhooks WHERE org_id = $1",
            )
            .bind(org_id)
            .fetch_optional(pool)
            .await?
        });
        row.map(OperationalRow::decode).transpose()
    }

    /// Sets (or replaces) the organization's operational webhook, making its internal agent on
    /// first use. Logs already queued keep their URL; later events go to `url`.
    pub async fn set_operational_webhook(
        &self,
        org_id: Uuid,
        url: &str,
        events: &Subscription,
    ) -> Result<OperationalWebhook, StoreError> {
        let now = now_ms();
        let row: OperationalRow = on_writer!(self, |pool| {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO agents (id, org_id, name, internal, created_at, updated_at)
                 VALUES ($1, $2, 'Operational webhooks', TRUE, $3, $3)
                 ON CONFLICT (org_id) WHERE internal DO NOTHING",
            )
            .bind(Uuid::now_v7())
            .bind(org_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            let row = sqlx::query_as(
                "INSERT INTO operational_webhooks (org_id, url, events, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $4)
                 ON CONFLICT (org_id) DO UPDATE
                    SET url = excluded.url, events = excluded.events, updated_at = excluded.updated_at
                 RETURNING org_id, url, events, created_at, updated_at",
            )
            .bind(org_id)
            .bind(url)
            .bind(events.to_json())
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
            tx.commit().await?;
            row
        });
        row.decode()
    }

    /// Removes the operational webhook; its pending deliveries end `skipped` (they can be
    /// retried once another is set). `false` when none was set.
    pub async fn delete_operational_webhook(&self, org_id: Uuid) -> Result<bool, StoreError> {
        on_writer!(self, |pool| {
            let mut tx = pool.begin().await?;
            let deleted = sqlx::query("DELETE FROM operational_webhooks WHERE org_id = $1")
                .bind(org_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            sqlx::query(
                "UPDATE delivery_logs SET status = 'skipped',
                    error = 'The operational webhook was removed', next_attempt_at = NULL,
                    claimed_at = NULL, updated_at = $1
                 WHERE lane_id = $2 AND status = 'pending' AND webhook_id IS NULL",
            )
            .bind(now_ms())
            .bind(operational::lane(org_id))
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(deleted > 0)
        })
    }

    /// Queues a new operational log for `original`'s event to `url`, due now (Talkover retry of
    /// an operational delivery). Returns the new log's id.
    pub async fn requeue_operational(
        &self,
        original: &DeliveryLog,
        url: &str,
    ) -> Result<(Uuid, UnixMs), StoreError> {
        let now = now_ms();
        let ids = LogIds {
            org_id: original.org_id,
            agent_id: original.agent_id,
            webhook_id: None,
            event_id: original.event_id,
        };
        let call_id = original.call_id.as_deref();
        let log = NewLog::pending(ids, &original.event_type, call_id, url, SendType::Manual, now);
        let log = NewLog { original_log_id: Some(original.id), ..log.into_operational() };
        self.enqueue(std::slice::from_ref(&log)).await?;
        Ok((log.id, now))
    }
}
