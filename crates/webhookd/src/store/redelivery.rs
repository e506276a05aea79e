//! Redelivery: new logs for existing events (Talkover retry), new logs created held for an
//! explicit send (Bland create, the test endpoint), and finding a call's post-call logs.

use uuid::Uuid;

use super::claims::lease_ms;
use super::event_inserts::{insert_events, EventRow};
use super::log_inserts::{LogIds, NewLog};
use super::logs::LOG_COLUMNS;
use super::models::QueuedLog;
use super::{on_reader, on_snapshot, DeliveryLog, Store, StoreError, Webhook};
use crate::domain::catalog::{POST_CALL_EVENT, TEST_EVENT};
use crate::domain::clock::{now_ms, UnixMs};
use crate::domain::event::CallId;
use crate::domain::webhook::Timeout;
use crate::domain::SendType;

/// A post-call event of a call and whether any delivery log was ever made for it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PostCallEvent {
    pub id: Uuid,
    pub agent_id: Uuid,
    pub has_logs: bool,
    pub payload_state: crate::domain::PayloadState,
}

impl Store {
    /// One log of `org_id`, whatever its webhook.
    pub async fn log(&self, org_id: Uuid, log_id: Uuid) -> Result<Option<DeliveryLog>, StoreError> {
        let sql = format!(
            "SELECT {LOG_COLUMNS} FROM delivery_logs l JOIN events e ON e.id = l.event_id
             WHERE l.id = $1 AND l.org_id = $2"
        );
        Ok(on_snapshot!(self, generic_plans, |tx| {
            sqlx::query_as(&sql).bind(log_id).bind(org_id).fetch_optional(&mut *tx).await?
        }))
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
        let ids = LogIds {
            org_id: original.org_id,
            agent_id: original.agent_id,
            webhook_id: Some(webhook.id),
            event_id: original.event_id,
        };
        let url = webhook.settings.url.as_str();
        let call_id = original.call_id.as_deref();
        let log = NewLog::pending(ids, &original.event_type, call_id, url, send_type, now);
        let log = NewLog { original_log_id: Some(original.id), ..log };
        self.enqueue(std::slice::from_ref(&log)).await?;
        Ok((log.id, now))
    }

    /// A call's post-call logs, oldest first: one per destination the post-call event went to
    /// (logs made by redelivery, which have an original, are not included). With `sent_only`,
    /// only those sent at least once: what Bland's resend can send again.
    pub async fn post_call_logs(
        &self,
        org_id: Uuid,
        call_id: &CallId,
        sent_only: bool,
    ) -> Result<Vec<DeliveryLog>, StoreError> {
        let sent = if sent_only { "AND l.attempt_count > 0" } else { "" };
        let sql = format!(
            "SELECT {LOG_COLUMNS} FROM delivery_logs l JOIN events e ON e.id = l.event_id
             WHERE l.org_id = $1 AND l.call_id = $2 AND l.event_type = $3
               AND l.original_log_id IS NULL {sent}
             ORDER BY l.id"
        );
        Ok(on_snapshot!(self, generic_plans, |tx| {
            sqlx::query_as(&sql)
                .bind(org_id)
                .bind(call_id.as_str())
                .bind(POST_CALL_EVENT)
                .fetch_all(&mut *tx)
                .await?
        }))
    }

    /// The call's post-call events, oldest first, each with whether it ever had a log.
    pub async fn post_call_events(
        &self,
        org_id: Uuid,
        call_id: &CallId,
    ) -> Result<Vec<PostCallEvent>, StoreError> {
        on_reader!(self, |pool| {
            Ok(sqlx::query_as(
                "SELECT e.id, e.agent_id, e.payload_state,
                    EXISTS (SELECT 1 FROM delivery_logs l WHERE l.event_id = e.id) AS has_logs
                 FROM events e
                 WHERE e.org_id = $1 AND e.call_id = $2 AND e.event_type = $3
                 ORDER BY e.id",
            )
            .bind(org_id)
            .bind(call_id.as_str())
            .bind(POST_CALL_EVENT)
            .fetch_all(pool)
            .await?)
        })
    }

    /// A new log of the post-call `event` to a one-off `url`, created held for an explicit send
    /// — unless the event has a log already (`None`): concurrent creates for one call make one.
    pub async fn create_held_log(
        &self,
        org_id: Uuid,
        event: &PostCallEvent,
        call_id: &CallId,
        url: &str,
        send_type: SendType,
    ) -> Result<Option<QueuedLog>, StoreError> {
        let ids = LogIds { org_id, agent_id: event.agent_id, webhook_id: None, event_id: event.id };
        let log =
            NewLog::pending(ids, POST_CALL_EVENT, Some(call_id.as_str()), url, send_type, now_ms());
        let log = held(log, Timeout::DEFAULT);
        let lock = self.row_lock();
        let lock_event = format!("SELECT id FROM events WHERE id = $1{lock}");
        let created = super::on_writer!(self, |pool| {
            let mut tx = pool.begin().await?;
            sqlx::query(&lock_event).bind(event.id).execute(&mut *tx).await?;
            let taken: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM delivery_logs WHERE event_id = $1)",
            )
            .bind(event.id)
            .fetch_one(&mut *tx)
            .await?;
            if !taken {
                super::log_inserts::insert_logs(&mut tx, std::slice::from_ref(&log)).await?;
            }
            tx.commit().await?;
            !taken
        });
        if !created {
            return Ok(None);
        }
        Ok(self.queued_logs(&[log.id]).await?.pop())
    }

    /// A `webhook.test` event and its log, created held so that the caller sends it now and no
    /// dispatcher takes it.
    pub async fn create_test_delivery(
        &self,
        webhook: &Webhook,
        payload: Vec<u8>,
    ) -> Result<QueuedLog, StoreError> {
        let now = now_ms();
        let event_id = Uuid::now_v7();
        let ids = LogIds {
            org_id: webhook.org_id,
            agent_id: webhook.agent_id,
            webhook_id: Some(webhook.id),
            event_id,
        };
        let url = webhook.settings.url.as_str();
        let log = held(
            NewLog::pending(ids, TEST_EVENT, None, url, SendType::Test, now),
            webhook.settings.timeout,
        );
        self.insert_event_with_log(webhook, event_id, &payload, &log, now).await?;
        let mut queued = self.queued_logs(&[log.id]).await?;
        queued.pop().ok_or(StoreError::Corrupt {
            table: "delivery_logs",
            detail: "a new log vanished".into(),
        })
    }

    async fn insert_event_with_log(
        &self,
        webhook: &Webhook,
        event_id: Uuid,
        payload: &[u8],
        log: &NewLog,
        now: UnixMs,
    ) -> Result<(), StoreError> {
        let event = EventRow {
            id: event_id,
            org_id: webhook.org_id,
            agent_id: webhook.agent_id,
            event_type: TEST_EVENT,
            call_id: None,
            payload,
            webhook_url: None,
            traceparent: None,
            created_at: now,
        };
        super::on_writer!(self, |pool| {
            let mut tx = pool.begin().await?;
            insert_events(&mut tx, std::slice::from_ref(&event)).await?;
            super::log_inserts::insert_logs(&mut tx, std::slice::from_ref(log)).await?;
            tx.commit().await?;
        });
        Ok(())
    }
}

/// `log` held by this node for an explicit send: claimed, under a lease.
fn held(log: NewLog, timeout: Timeout) -> NewLog {
    let now = log.created_at;
    NewLog { claimed_at: Some(now), next_attempt_at: Some(now + lease_ms(timeout)), ..log }
}
