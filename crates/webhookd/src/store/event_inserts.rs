//! Events inserted: the one place a row of `events` is written, whatever made it (ingestion, the
//! outbox of operational events, the test endpoint), with each backend's own placeholders.

use uuid::Uuid;

use super::backend::insert_rows;
use super::StoreError;
use crate::domain::clock::UnixMs;

/// An event about to be inserted, borrowing its text and bytes from whoever made it (ingestion
/// holds thousands of payloads in a group commit: none is copied).
#[derive(Debug, Clone, Copy)]
pub(super) struct EventRow<'a> {
    pub id: Uuid,
    pub org_id: Uuid,
    pub agent_id: Uuid,
    pub event_type: &'a str,
    pub call_id: Option<&'a str>,
    /// The `data` bytes, delivered verbatim.
    pub payload: &'a [u8],
    /// A one-off destination signed with the organization's secret (ingestion only).
    pub webhook_url: Option<&'a str>,
    /// The W3C trace context its attempts continue (ingestion only).
    pub traceparent: Option<&'a str>,
    pub created_at: UnixMs,
}

/// Inserts `events` in multi-row statements within the caller's transaction.
pub(super) async fn insert_events<DB>(
    tx: &mut sqlx::Transaction<'_, DB>,
    events: &[EventRow<'_>],
) -> Result<(), StoreError>
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB> + Default,
    for<'q> Uuid: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> Option<&'q str>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> &'q [u8]: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    let into = "events (id, org_id, agent_id, event_type, call_id, payload, webhook_url,
        traceparent, created_at)";
    insert_rows(tx, into, events, |values, event| {
        values.add(event.id)?;
        values.add(event.org_id)?;
        values.add(event.agent_id)?;
        values.add(event.event_type)?;
        values.add(event.call_id)?;
        values.add(event.payload)?;
        values.add(event.webhook_url)?;
        values.add(event.traceparent)?;
        values.add(event.created_at)
    })
    .await
}
