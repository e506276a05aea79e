//! Redelivery: new logs for existing events (Talkover retry, recover), claiming existing logs for
//! a synchronous resend (Bland), and finding a call's post-call logs.

use uuid::Uuid;

use super::delivery::{ClaimedLog, CLAIM_RETURNING, LEASE_MARGIN_MS};
use super::logs::LOG_COLUMNS;
use super::queue::{insert_logs, LogIds, NewLog};
use super::{on_reader, on_writer, Backend, DeliveryLog, Store, StoreError, Webhook};
use crate::domain::catalog::POST_CALL_EVENT;
use crate::domain::clock::{now_ms, UnixMs};
use crate::domain::webhook::Timeout;
use crate::domain::SendType;

/// A post-call event of a call and whether any delivery log was ever made for it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PostCallEvent {
    pub id: Uuid,
    pub agent_id: Uuid,
    pub has_logs: bool,
}

impl Store {
    /// One log of `org_id`, whatever its webhook.
    pub async fn log(&self, org_id: Uuid, log_id: Uuid) -> Result<Option<DeliveryLog>, StoreError> {
        let sql = format!(
            "SELECT {LOG_COLUMNS} FROM delivery_logs l JOIN events e ON e.id = l.event_id
             WHERE l.id = $1 AND l.org_id = $2"
        );
        on_reader!(self, |pool| {
            Ok(sqlx::query_as(&sql).bind(log_id).bind(org_id).fetch_optional(pool).await?)
        })
    }

    /// Queues a new log for `original`'s event to `webhook`'s current URL, due now. Its first
    /// attempt has `send_type`; automatic retries follow as usual. Returns the new log's id.
    pub async fn requeue(
        &self,
        original: &DeliveryLog,
        webhook: &Webhook,
        send_type: SendType,
    ) -> Result<(Uuid, UnixMs), StoreError> {
        let now = now_ms();
        let id = Uuid::now_v7();
        on_writer!(self, |pool| {
            let mut tx = pool.begin().await?;
            let ids = LogIds {
                org_id: original.org_id,
                agent_id: original.agent_id,
                webhook_id: Some(webhook.id),
                event_id: original.event_id,
            };
            let url = webhook.settings.url.as_str();
            let log = NewLog::pending(
                ids,
                &original.event_type,
                original.call_id.as_deref(),
                url,
                send_type,
                now,
            );
            let log = NewLog { id, original_log_id: Some(original.id), ..log };
            insert_logs(&mut tx, std::slice::from_ref(&log)).await?;
            if self.backend() == Backend::Postgres {
                sqlx::query("SELECT pg_notify($1, '')")
                    .bind(super::postgres::WORK_CHANNEL)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        self.wake_dispatcher();
        Ok((id, now))
    }

    /// A call's post-call logs, oldest first: one per destination the post-call event went to
    /// (logs made by redelivery, which have an original, are not included). With `sent_only`,
    /// only those sent at least once: what Bland's resend can send again.
    pub async fn post_call_logs(
        &self,
        org_id: Uuid,
        call_id: &str,
        sent_only: bool,
    ) -> Result<Vec<DeliveryLog>, StoreError> {
        let sent = if sent_only { "AND l.attempt_count > 0" } else { "" };
        let sql = format!(
            "SELECT {LOG_COLUMNS} FROM delivery_logs l JOIN events e ON e.id = l.event_id
             WHERE l.org_id = $1 AND l.call_id = $2 AND l.event_type = $3
               AND l.original_log_id IS NULL {sent}
             ORDER BY l.id"
        );
        on_reader!(self, |pool| {
            Ok(sqlx::query_as(&sql)
                .bind(org_id)
                .bind(call_id)
                .bind(POST_CALL_EVENT)
                .fetch_all(pool)
                .await?)
        })
    }

    /// The call's post-call events, oldest first, each with whether it ever had a log.
    pub async fn post_call_events(
        &self,
        org_id: Uuid,
        call_id: &str,
    ) -> Result<Vec<PostCallEvent>, StoreError> {
        on_reader!(self, |pool| {
            Ok(sqlx::query_as(
                "SELECT e.id, e.agent_id,
                    EXISTS (SELECT 1 FROM delivery_logs l WHERE l.event_id = e.id) AS has_logs
                 FROM events e
                 WHERE e.org_id = $1 AND e.call_id = $2 AND e.event_type = $3
                 ORDER BY e.id",
            )
            .bind(org_id)
            .bind(call_id)
            .bind(POST_CALL_EVENT)
            .fetch_all(pool)
            .await?)
        })
    }

    /// Claims these logs for a synchronous send, skipping any already claimed (an attempt is in
    /// flight for it). The lease covers the longest possible timeout.
    pub async fn claim_logs(
        &self,
        org_id: Uuid,
        log_ids: &[Uuid],
    ) -> Result<Vec<ClaimedLog>, StoreError> {
        let now = now_ms();
        let lease_until = now + i64::from(Timeout::MAX) * 1000 + LEASE_MARGIN_MS;
        let mut claimed = Vec::with_capacity(log_ids.len());
        for id in log_ids {
            let sql = format!(
                "UPDATE delivery_logs SET claimed_at = $1, updated_at = $1,
                    next_attempt_at = CASE WHEN status = 'pending' THEN $2 ELSE next_attempt_at END
                 WHERE id = $3 AND org_id = $4 AND (claimed_at IS NULL OR claimed_at < $5)
                 RETURNING {CLAIM_RETURNING}"
            );
            // A claim older than any attempt can last was left by a process that died.
            let stale = now - (lease_until - now);
            let row: Option<ClaimedLog> = on_writer!(self, |pool| {
                sqlx::query_as(&sql)
                    .bind(now)
                    .bind(lease_until)
                    .bind(id)
                    .bind(org_id)
                    .bind(stale)
                    .fetch_optional(pool)
                    .await?
            });
            claimed.extend(row);
        }
        Ok(claimed)
    }

    /// A new log of `event_id` to a one-off `url`, created claimed for a synchronous send.
    pub async fn create_claimed_log(
        &self,
        org_id: Uuid,
        event: &PostCallEvent,
        call_id: &str,
        url: &str,
        send_type: SendType,
    ) -> Result<ClaimedLog, StoreError> {
        let now = now_ms();
        let log = ClaimedLog {
            id: Uuid::now_v7(),
            org_id,
            webhook_id: None,
            event_id: event.id,
            event_type: POST_CALL_EVENT.to_string(),
            url: url.to_string(),
            attempt_count: 0,
            retries: 0,
            first_send_type: send_type.as_str().to_string(),
            created_at: now,
        };
        let ids = LogIds { org_id, agent_id: event.agent_id, webhook_id: None, event_id: event.id };
        let row = NewLog::pending(ids, POST_CALL_EVENT, Some(call_id), url, send_type, now);
        let row = NewLog {
            id: log.id,
            next_attempt_at: Some(now + Timeout::DEFAULT.millis() + LEASE_MARGIN_MS),
            claimed_at: Some(now),
            ..row
        };
        on_writer!(self, |pool| {
            let mut tx = pool.begin().await?;
            insert_logs(&mut tx, std::slice::from_ref(&row)).await?;
            tx.commit().await?;
        });
        Ok(log)
    }
}
