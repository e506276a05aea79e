//! Ingestion: an event and one delivery log per destination, in one transaction.

use std::collections::HashMap;

use sqlx::QueryBuilder;
use uuid::Uuid;

use super::{on_reader, on_writer, Backend, Store, StoreError};
use crate::domain::clock::{now_ms, DAY_MS};
use crate::domain::{LogStatus, SendType};

/// Rows per multi-row `INSERT`: well under SQLite's 32,766 bound variables.
pub(super) const INSERT_CHUNK: usize = 500;
/// An idempotency key returns the first event for this long.
pub const IDEMPOTENCY_WINDOW_MS: i64 = DAY_MS;

/// A validated event to ingest.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub event_type: String,
    pub call_id: Option<String>,
    /// The `data` bytes, delivered verbatim.
    pub payload: Vec<u8>,
    pub idempotency_key: Option<String>,
    /// A one-off destination signed with the organization's secret.
    pub webhook_url: Option<String>,
}

/// A log created by ingestion, as the ingestion response shows it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CreatedLog {
    pub id: Uuid,
    pub webhook_id: Option<Uuid>,
    pub url: String,
    pub status: String,
}

#[derive(Debug, Clone)]
pub struct IngestedEvent {
    pub event_id: Uuid,
    /// The idempotency key had been seen: this is the first event, and nothing was created.
    pub duplicate: bool,
    pub logs: Vec<CreatedLog>,
}

/// A destination subscribed to some events.
#[derive(sqlx::FromRow)]
struct Subscriber {
    id: Uuid,
    url: String,
    events: String,
    enabled: bool,
}

/// A log row about to be inserted.
struct LogRow {
    id: Uuid,
    event_id: Uuid,
    webhook_id: Option<Uuid>,
    event_type: String,
    call_id: Option<String>,
    url: String,
    status: LogStatus,
    first_send_type: SendType,
    error: Option<&'static str>,
    next_attempt_at: Option<i64>,
}

impl Store {
    /// Stores `events` for `agent_id` with their delivery logs, all in one transaction, and wakes
    /// the dispatcher. Results are in input order.
    pub async fn ingest(
        &self,
        org_id: Uuid,
        agent_id: Uuid,
        events: Vec<NewEvent>,
    ) -> Result<Vec<IngestedEvent>, StoreError> {
        let now = now_ms();
        let results = on_writer!(self, |pool| {
            let mut tx = pool.begin().await?;
            let subscribers: Vec<Subscriber> = sqlx::query_as(
                "SELECT id, url, events, enabled FROM webhooks WHERE agent_id = $1 AND org_id = $2
                 ORDER BY id",
            )
            .bind(agent_id)
            .bind(org_id)
            .fetch_all(&mut *tx)
            .await?;
            let subscriptions: Vec<(Subscriber, Vec<String>)> = subscribers
                .into_iter()
                .map(|s| {
                    let events = serde_json::from_str(&s.events).unwrap_or_default();
                    (s, events)
                })
                .collect();

            let mut results = Vec::with_capacity(events.len());
            let mut new_events = Vec::with_capacity(events.len());
            let mut logs = Vec::new();
            for event in events {
                let event_id = Uuid::now_v7();
                if let Some(key) = &event.idempotency_key {
                    let claimed = sqlx::query(
                        "INSERT INTO idempotency_keys (org_id, idempotency_key, event_id, created_at)
                         VALUES ($1, $2, $3, $4)
                         ON CONFLICT (org_id, idempotency_key) DO UPDATE
                            SET event_id = excluded.event_id, created_at = excluded.created_at
                            WHERE idempotency_keys.created_at < $5",
                    )
                    .bind(org_id)
                    .bind(key)
                    .bind(event_id)
                    .bind(now)
                    .bind(now - IDEMPOTENCY_WINDOW_MS)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    if claimed == 0 {
                        let first: Uuid = sqlx::query_scalar(
                            "SELECT event_id FROM idempotency_keys
                             WHERE org_id = $1 AND idempotency_key = $2",
                        )
                        .bind(org_id)
                        .bind(key)
                        .fetch_one(&mut *tx)
                        .await?;
                        results.push(IngestedEvent {
                            event_id: first,
                            duplicate: true,
                            logs: vec![],
                        });
                        continue;
                    }
                }
                let mut created = Vec::new();
                for (subscriber, subscribed) in &subscriptions {
                    if !subscribed.contains(&event.event_type) {
                        continue;
                    }
                    let row = log_row(
                        event_id,
                        &event,
                        Some(subscriber.id),
                        &subscriber.url,
                        subscriber.enabled,
                        now,
                    );
                    created.push(created_log(&row));
                    logs.push(row);
                }
                if let Some(url) = &event.webhook_url {
                    let row = log_row(event_id, &event, None, url, true, now);
                    created.push(created_log(&row));
                    logs.push(row);
                }
                results.push(IngestedEvent { event_id, duplicate: false, logs: created });
                new_events.push((event_id, event));
            }

            for chunk in new_events.chunks(INSERT_CHUNK) {
                let mut insert = QueryBuilder::new(
                    "INSERT INTO events (id, org_id, agent_id, event_type, call_id, payload, webhook_url, created_at) ",
                );
                insert.push_values(chunk, |mut row, (id, event)| {
                    row.push_bind(*id)
                        .push_bind(org_id)
                        .push_bind(agent_id)
                        .push_bind(&event.event_type)
                        .push_bind(&event.call_id)
                        .push_bind(&event.payload)
                        .push_bind(&event.webhook_url)
                        .push_bind(now);
                });
                insert.build().execute(&mut *tx).await?;
            }
            for chunk in logs.chunks(INSERT_CHUNK) {
                let mut insert = QueryBuilder::new(
                    "INSERT INTO delivery_logs (id, org_id, agent_id, webhook_id, event_id, event_type,
                        call_id, url, status, first_send_type, error, next_attempt_at, created_at, updated_at) ",
                );
                insert.push_values(chunk, |mut row, log| {
                    row.push_bind(log.id)
                        .push_bind(org_id)
                        .push_bind(agent_id)
                        .push_bind(log.webhook_id)
                        .push_bind(log.event_id)
                        .push_bind(&log.event_type)
                        .push_bind(&log.call_id)
                        .push_bind(&log.url)
                        .push_bind(log.status.as_str())
                        .push_bind(log.first_send_type.as_str())
                        .push_bind(log.error)
                        .push_bind(log.next_attempt_at)
                        .push_bind(now)
                        .push_bind(now);
                });
                insert.build().execute(&mut *tx).await?;
            }
            if self.backend() == Backend::Postgres && !logs.is_empty() {
                sqlx::query("SELECT pg_notify($1, '')")
                    .bind(super::postgres::WORK_CHANNEL)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            results
        });
        if results.iter().any(|r| !r.logs.is_empty()) {
            self.wake_dispatcher();
        }
        self.fill_duplicate_logs(org_id, results).await
    }

    /// Repeated idempotency keys answer with the first event's logs.
    async fn fill_duplicate_logs(
        &self,
        org_id: Uuid,
        mut results: Vec<IngestedEvent>,
    ) -> Result<Vec<IngestedEvent>, StoreError> {
        let mut cache: HashMap<Uuid, Vec<CreatedLog>> = HashMap::new();
        for result in results.iter_mut().filter(|r| r.duplicate) {
            if let Some(logs) = cache.get(&result.event_id) {
                result.logs = logs.clone();
                continue;
            }
            result.logs = self.logs_of_event(org_id, result.event_id).await?;
            cache.insert(result.event_id, result.logs.clone());
        }
        Ok(results)
    }

    /// The first-generation logs of an event (those ingestion created), oldest first.
    pub async fn logs_of_event(
        &self,
        org_id: Uuid,
        event_id: Uuid,
    ) -> Result<Vec<CreatedLog>, StoreError> {
        on_reader!(self, |pool| {
            Ok(sqlx::query_as(
                "SELECT id, webhook_id, url, status FROM delivery_logs
                 WHERE event_id = $1 AND org_id = $2 AND original_log_id IS NULL ORDER BY id",
            )
            .bind(event_id)
            .bind(org_id)
            .fetch_all(pool)
            .await?)
        })
    }
}

fn log_row(
    event_id: Uuid,
    event: &NewEvent,
    webhook_id: Option<Uuid>,
    url: &str,
    enabled: bool,
    now: i64,
) -> LogRow {
    let (status, error, next_attempt_at) = if enabled {
        (LogStatus::Pending, None, Some(now))
    } else {
        (LogStatus::Skipped, Some("Webhook was disabled when the event arrived"), None)
    };
    LogRow {
        id: Uuid::now_v7(),
        event_id,
        webhook_id,
        event_type: event.event_type.clone(),
        call_id: event.call_id.clone(),
        url: url.to_string(),
        status,
        first_send_type: SendType::Spawn,
        error,
        next_attempt_at,
    }
}

fn created_log(row: &LogRow) -> CreatedLog {
    CreatedLog {
        id: row.id,
        webhook_id: row.webhook_id,
        url: row.url.clone(),
        status: row.status.as_str().to_string(),
    }
}
