//! Delivery logs inserted: the one place they are written, whatever made them (ingestion,
//! Talkover retry, recovery, Bland create, the test endpoint).

use uuid::Uuid;

use super::announce::Announcement;
use super::backend::insert_rows;
use super::{on_writer, Store, StoreError};
use crate::domain::clock::UnixMs;
use crate::domain::lane::lane_of;
use crate::domain::{LogStatus, SendType};

/// A delivery log about to be inserted.
#[derive(Debug, Clone)]
pub struct NewLog {
    pub id: Uuid,
    pub org_id: Uuid,
    pub agent_id: Uuid,
    /// `None` for a per-call `webhook_url`.
    pub webhook_id: Option<Uuid>,
    pub lane_id: Uuid,
    pub event_id: Uuid,
    pub event_type: String,
    pub call_id: Option<String>,
    /// The call whose earlier pending logs this one waits for (`ordering: call`).
    pub order_key: Option<String>,
    pub url: String,
    pub status: LogStatus,
    pub first_send_type: SendType,
    pub error: Option<String>,
    pub original_log_id: Option<Uuid>,
    /// When it is due; `None` for a log that is not pending.
    pub next_attempt_at: Option<UnixMs>,
    /// Set when the inserting node takes the log itself (a lease, `next_attempt_at` its expiry).
    pub claimed_at: Option<UnixMs>,
    pub created_at: UnixMs,
}

impl NewLog {
    /// A pending log due `now`, of the first kind `send_type`, to `url`.
    pub fn pending(
        ids: LogIds,
        event_type: &str,
        call_id: Option<&str>,
        url: &str,
        send_type: SendType,
        now: UnixMs,
    ) -> Self {
        Self {
            id: Uuid::now_v7(),
            org_id: ids.org_id,
            agent_id: ids.agent_id,
            webhook_id: ids.webhook_id,
            lane_id: lane_of(ids.webhook_id, ids.org_id, url),
            event_id: ids.event_id,
            event_type: event_type.to_string(),
            call_id: call_id.map(str::to_string),
            order_key: None,
            url: url.to_string(),
            status: LogStatus::Pending,
            first_send_type: send_type,
            error: None,
            original_log_id: None,
            next_attempt_at: Some(now),
            claimed_at: None,
            created_at: now,
        }
    }
}

/// Whose log it is.
#[derive(Debug, Clone, Copy)]
pub struct LogIds {
    pub org_id: Uuid,
    pub agent_id: Uuid,
    pub webhook_id: Option<Uuid>,
    pub event_id: Uuid,
}

/// Inserts `logs` in multi-row statements within the caller's transaction.
pub(super) async fn insert_logs<DB>(
    tx: &mut sqlx::Transaction<'_, DB>,
    logs: &[NewLog],
) -> Result<(), StoreError>
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB> + Default,
    for<'q> Uuid: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> Option<Uuid>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> Option<String>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> Option<i64>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    let into = "delivery_logs (id, org_id, agent_id, webhook_id, lane_id, event_id, event_type,
        call_id, order_key, url, status, first_send_type, error, original_log_id,
        next_attempt_at, claimed_at, created_at, updated_at)";
    insert_rows(tx, into, logs, |values, log| {
        values.add(log.id)?;
        values.add(log.org_id)?;
        values.add(log.agent_id)?;
        values.add(log.webhook_id)?;
        values.add(log.lane_id)?;
        values.add(log.event_id)?;
        values.add(log.event_type.clone())?;
        values.add(log.call_id.clone())?;
        values.add(log.order_key.clone())?;
        values.add(log.url.clone())?;
        values.add(log.status.as_str().to_string())?;
        values.add(log.first_send_type.as_str().to_string())?;
        values.add(log.error.clone())?;
        values.add(log.original_log_id)?;
        values.add(log.next_attempt_at)?;
        values.add(log.claimed_at)?;
        values.add(log.created_at)?;
        values.add(log.created_at)
    })
    .await
}

impl Store {
    /// Inserts `logs` in one transaction, then announces those that are due and held by no one.
    pub(super) async fn enqueue(&self, logs: &[NewLog]) -> Result<(), StoreError> {
        on_writer!(self, |pool| {
            let mut tx = pool.begin().await?;
            insert_logs(&mut tx, logs).await?;
            tx.commit().await?;
        });
        self.announce(announcements(logs)).await;
        Ok(())
    }
}

/// The work `logs` make for the dispatchers: pending logs that no node holds yet.
pub(super) fn announcements(logs: &[NewLog]) -> Vec<Announcement> {
    logs.iter()
        .filter(|log| log.status == LogStatus::Pending && log.claimed_at.is_none())
        .filter_map(|log| {
            let due = log.next_attempt_at?;
            Some(Announcement::Work { lane: log.lane_id, org: log.org_id, due })
        })
        .collect()
}
