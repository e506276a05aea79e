//! Ingestion: an event and one delivery log per destination, in one transaction.

use std::collections::HashMap;

use sqlx::QueryBuilder;
use uuid::Uuid;

use super::queue::{insert_logs, LogIds, NewLog, INSERT_CHUNK};
use super::{on_reader, on_writer, Backend, Store, StoreError};
use crate::domain::clock::{now_ms, DAY_MS};
use crate::domain::event::NewEvent;
use crate::domain::webhook::{EventTypes, Ordering};
use crate::domain::{LogStatus, SendType};

/// An idempotency key returns the first event for this long.
pub const IDEMPOTENCY_WINDOW_MS: i64 = DAY_MS;

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
    ordering: String,
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
                "SELECT id, url, events, enabled, ordering FROM webhooks
                 WHERE agent_id = $1 AND org_id = $2 ORDER BY id",
            )
            .bind(agent_id)
            .bind(org_id)
            .fetch_all(&mut *tx)
            .await?;
            let subscriptions = subscribers
                .into_iter()
                .map(|s| {
                    let corrupt =
                        |detail: String| StoreError::Corrupt { table: "webhooks", detail };
                    let events = EventTypes::from_stored(&s.events).map_err(corrupt)?;
                    let ordering = Ordering::parse(&s.ordering).map_err(corrupt)?;
                    Ok((s, events, ordering))
                })
                .collect::<Result<Vec<_>, StoreError>>()?;

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
                    .bind(key.as_str())
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
                        .bind(key.as_str())
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
                let event_type = event.event_type.as_str();
                let call_id = event.call_id.as_ref().map(|id| id.as_str());
                for (subscriber, subscribed, ordering) in &subscriptions {
                    if !subscribed.contains(event_type) {
                        continue;
                    }
                    let ids =
                        LogIds { org_id, agent_id, webhook_id: Some(subscriber.id), event_id };
                    let mut log = NewLog::pending(
                        ids,
                        event_type,
                        call_id,
                        &subscriber.url,
                        SendType::Spawn,
                        now,
                    );
                    if *ordering == Ordering::Call {
                        log.order_key = log.call_id.clone();
                    }
                    if !subscriber.enabled {
                        log.status = LogStatus::Skipped;
                        log.error = Some("Webhook was disabled when the event arrived".into());
                        log.next_attempt_at = None;
                    }
                    created.push(created_log(&log));
                    logs.push(log);
                }
                if let Some(url) = &event.webhook_url {
                    let ids = LogIds { org_id, agent_id, webhook_id: None, event_id };
                    let log = NewLog::pending(
                        ids,
                        event_type,
                        call_id,
                        url.as_str(),
                        SendType::Spawn,
                        now,
                    );
                    created.push(created_log(&log));
                    logs.push(log);
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
                        .push_bind(event.event_type.as_str())
                        .push_bind(event.call_id.as_ref().map(|id| id.as_str()))
                        .push_bind(event.payload.as_ref())
                        .push_bind(event.webhook_url.as_ref().map(|url| url.as_str()))
                        .push_bind(now);
                });
                insert.build().execute(&mut *tx).await?;
            }
            insert_logs(&mut tx, &logs).await?;
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

fn created_log(log: &NewLog) -> CreatedLog {
    CreatedLog {
        id: log.id,
        webhook_id: log.webhook_id,
        url: log.url.clone(),
        status: log.status.as_str().to_string(),
    }
}
