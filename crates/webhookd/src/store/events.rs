//! Ingestion: events and one delivery log per destination, written before the 202. Concurrent
//! requests are written together in one transaction (group commit, see `crate::ingest`), and the
//! new logs the local dispatcher has room for are handed to it directly — it sends them without
//! a claim query, and they are marked as held by this node (on PostgreSQL, under a lease).

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

use super::announce::Announcement;
use super::claims::lease_ms;
use super::event_inserts::{insert_events, EventRow};
use super::idempotency::claim_idempotency_keys;
use super::log_inserts::{insert_logs, LogIds, NewLog};
use super::models::{Payload, QueuedLog};
use super::{on_reader, on_writer, Backend, Store, StoreError};
use crate::domain::clock::{now_ms, DAY_MS};
use crate::domain::event::NewEvent;
use crate::domain::filter::Filter;
use crate::domain::webhook::{EventTypes, Ordering, Timeout};
use crate::domain::{LogStatus, SendType};

/// An idempotency key returns the first event for this long.
pub const IDEMPOTENCY_WINDOW_MS: i64 = DAY_MS;
/// What a handed-over log costs the hand-off budget besides its payload (its row, its job).
const HANDOFF_OVERHEAD_BYTES: usize = 512;

/// The events of one ingestion request.
#[derive(Debug, Clone)]
pub struct IngestRequest {
    pub org_id: Uuid,
    pub agent_id: Uuid,
    pub events: Vec<NewEvent>,
}

/// What one request produced.
#[derive(Debug)]
pub enum Ingested {
    /// The agent does not exist (in this organization); nothing was written.
    AgentNotFound,
    /// The events, in request order, and the logs handed to the local dispatcher.
    Events { events: Vec<IngestedEvent>, handed: Vec<HandedLog> },
}

/// A log created by ingestion, as the ingestion response shows it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CreatedLog {
    pub id: Uuid,
    pub webhook_id: Option<Uuid>,
    pub url: String,
    pub status: LogStatus,
}

#[derive(Debug, Clone)]
pub struct IngestedEvent {
    pub event_id: Uuid,
    /// The idempotency key had been seen: this is the first event, and nothing was created.
    pub duplicate: bool,
    pub logs: Vec<CreatedLog>,
    /// Webhooks subscribed to the event whose filter it did not pass: no log was made for them.
    pub filtered: Vec<Uuid>,
}

/// A new log given to the local dispatcher, with its share of the hand-off budget (returned
/// when the log leaves the dispatcher's memory).
#[derive(Debug)]
pub struct HandedLog {
    pub log: QueuedLog,
    pub permit: OwnedSemaphorePermit,
}

/// How much the local dispatcher takes straight from ingestion: a budget of payload bytes held
/// in memory. On PostgreSQL handed logs are claimed under a lease, and only for lanes whose
/// limits are node-local (no `rate_limit`, no `max_concurrency`: those are counted over every
/// node by the claim query).
#[derive(Debug, Clone)]
pub struct Handoff {
    budget: Arc<Semaphore>,
}

impl Handoff {
    pub fn new(budget: Arc<Semaphore>) -> Self {
        Self { budget }
    }

    fn reserve(&self, payload_bytes: usize) -> Option<OwnedSemaphorePermit> {
        let kib = (payload_bytes + HANDOFF_OVERHEAD_BYTES).div_ceil(1024);
        self.budget.clone().try_acquire_many_owned(u32::try_from(kib).ok()?).ok()
    }
}

/// An agent's webhook as ingestion needs it.
#[derive(sqlx::FromRow)]
struct Subscriber {
    /// `None`: the agent exists but has no webhook.
    id: Option<Uuid>,
    url: Option<String>,
    events: Option<String>,
    enabled: Option<bool>,
    ordering: Option<String>,
    timeout_secs: Option<i64>,
    rate_limit: Option<i64>,
    max_concurrency: Option<i64>,
    content_filter: Option<String>,
}

struct Subscription {
    id: Uuid,
    url: String,
    events: EventTypes,
    enabled: bool,
    ordered: bool,
    timeout: Timeout,
    /// Its limits are counted over every node, so its logs go through the claim query.
    shared_limits: bool,
    /// Parsed once per read of the row, evaluated per event.
    filter: Option<Filter>,
}

impl Subscriber {
    fn subscription(self) -> Result<Option<Subscription>, StoreError> {
        let corrupt = |detail: String| StoreError::Corrupt { table: "webhooks", detail };
        let Some(id) = self.id else { return Ok(None) };
        let ordering =
            Ordering::parse(self.ordering.as_deref().unwrap_or_default()).map_err(corrupt)?;
        Ok(Some(Subscription {
            id,
            url: self.url.unwrap_or_default(),
            events: EventTypes::from_stored(self.events.as_deref().unwrap_or_default())
                .map_err(corrupt)?,
            enabled: self.enabled.unwrap_or(false),
            ordered: ordering == Ordering::Call,
            timeout: Timeout::from_stored(self.timeout_secs.unwrap_or_default())
                .map_err(corrupt)?,
            shared_limits: self.rate_limit.is_some() || self.max_concurrency.is_some(),
            filter: Filter::from_column(self.content_filter.as_deref()).map_err(corrupt)?,
        }))
    }
}

impl Store {
    /// Stores each request's events with their delivery logs, all in one transaction; hands
    /// what `handoff` has room for to the local dispatcher. Results are in request order.
    pub async fn ingest(
        &self,
        requests: &[IngestRequest],
        handoff: Option<&Handoff>,
    ) -> Result<Vec<Ingested>, StoreError> {
        let now = now_ms();
        let postgres = self.backend() == Backend::Postgres;
        let mut outcomes = Vec::with_capacity(requests.len());
        let mut announce = Vec::new();
        on_writer!(self, |pool| {
            let mut tx = pool.begin().await?;
            let mut agents: HashMap<(Uuid, Uuid), Option<Arc<Vec<Subscription>>>> = HashMap::new();
            let mut new_events: Vec<EventRow<'_>> = Vec::new();
            let mut logs: Vec<NewLog> = Vec::new();
            for request in requests {
                let key = (request.org_id, request.agent_id);
                if let std::collections::hash_map::Entry::Vacant(vacant) = agents.entry(key) {
                    let rows: Vec<Subscriber> = sqlx::query_as(
                        "SELECT w.id, w.url, w.events, w.enabled, w.ordering, w.timeout_secs,
                            w.rate_limit, w.max_concurrency, w.content_filter
                         FROM agents a LEFT JOIN webhooks w ON w.agent_id = a.id
                         WHERE a.id = $1 AND a.org_id = $2 AND NOT a.internal ORDER BY w.id",
                    )
                    .bind(request.agent_id)
                    .bind(request.org_id)
                    .fetch_all(&mut *tx)
                    .await?;
                    let found = if rows.is_empty() {
                        None
                    } else {
                        let subs: Result<Vec<Option<Subscription>>, StoreError> =
                            rows.into_iter().map(Subscriber::subscription).collect();
                        Some(Arc::new(subs?.into_iter().flatten().collect()))
                    };
                    vacant.insert(found);
                }
                let Some(subscriptions) = agents[&key].clone() else {
                    outcomes.push(Ingested::AgentNotFound);
                    continue;
                };
                let mut events = Vec::with_capacity(request.events.len());
                let mut handed = Vec::new();
                let ids: Vec<Uuid> = request.events.iter().map(|_| Uuid::now_v7()).collect();
                let taken =
                    claim_idempotency_keys(&mut tx, request.org_id, &request.events, &ids, now)
                        .await?;
                for (position, (event, &event_id)) in request.events.iter().zip(&ids).enumerate() {
                    if let Some(&first) = taken.get(&position) {
                        events.push(IngestedEvent {
                            event_id: first,
                            duplicate: true,
                            logs: vec![],
                            filtered: vec![],
                        });
                        continue;
                    }
                    let mut created = Vec::new();
                    let event_type = event.event_type.as_str();
                    let call_id = event.call_id.as_ref().map(|id| id.as_str());
                    let ids = |webhook_id| LogIds {
                        org_id: request.org_id,
                        agent_id: request.agent_id,
                        webhook_id,
                        event_id,
                    };
                    let mut destinations: Vec<(NewLog, Option<&Subscription>)> = Vec::new();
                    let mut filtered = Vec::new();
                    // `data` parsed at most once per event, and only for a webhook with a filter.
                    let mut data: Option<Arc<serde_json::Value>> = event.data.clone();
                    for sub in subscriptions.iter().filter(|s| s.events.contains(event_type)) {
                        if let Some(filter) = &sub.filter {
                            let data = data.get_or_insert_with(|| parse_data(&event.payload));
                            if !filter.matches(data) {
                                filtered.push(sub.id);
                                continue;
                            }
                        }
                        let mut log = NewLog::pending(
                            ids(Some(sub.id)),
                            event_type,
                            call_id,
                            &sub.url,
                            SendType::Spawn,
                            now,
                        );
                        if sub.ordered {
                            log.order_key = log.call_id.clone();
                        }
                        if !sub.enabled {
                            log.status = LogStatus::Skipped;
                            log.error = Some("Webhook was disabled when the event arrived".into());
                            log.next_attempt_at = None;
                        }
                        destinations.push((log, Some(sub)));
                    }
                    if let Some(url) = &event.webhook_url {
                        let log = NewLog::pending(
                            ids(None),
                            event_type,
                            call_id,
                            url.as_str(),
                            SendType::Spawn,
                            now,
                        );
                        destinations.push((log, None));
                    }
                    // The logs of one event share its payload in memory: each is charged its
                    // share of the bytes, not all of them.
                    let share = event.payload.len().div_ceil(destinations.len().max(1));
                    for (mut log, sub) in destinations {
                        let pending = log.status == LogStatus::Pending;
                        let local = sub.is_none_or(|s| !(postgres && s.shared_limits));
                        let permit = (pending && log.order_key.is_none() && local)
                            .then(|| handoff.and_then(|h| h.reserve(share)))
                            .flatten();
                        if let Some(permit) = permit {
                            let timeout = sub.map_or(Timeout::DEFAULT, |s| s.timeout);
                            // Held by this node: out of the due range of every claim. PostgreSQL:
                            // until its lease ends; SQLite: no due time at all (the process holds
                            // it; a restart makes it due again), so claim reads never walk past
                            // thousands of held logs.
                            log.claimed_at = Some(now);
                            log.next_attempt_at = postgres.then(|| now + lease_ms(timeout));
                            handed.push(HandedLog { log: queued(&log, event, postgres), permit });
                        } else if pending {
                            announce.push(Announcement::Work {
                                lane: log.lane_id,
                                org: log.org_id,
                                due: now,
                            });
                        }
                        created.push(CreatedLog {
                            id: log.id,
                            webhook_id: log.webhook_id,
                            url: log.url.clone(),
                            status: log.status,
                        });
                        logs.push(log);
                    }
                    events.push(IngestedEvent {
                        event_id,
                        duplicate: false,
                        logs: created,
                        filtered,
                    });
                    new_events.push(EventRow {
                        id: event_id,
                        org_id: request.org_id,
                        agent_id: request.agent_id,
                        event_type,
                        call_id,
                        payload: &event.payload,
                        webhook_url: event.webhook_url.as_ref().map(|url| url.as_str()),
                        traceparent: event.traceparent.as_deref(),
                        created_at: now,
                    });
                }
                outcomes.push(Ingested::Events { events, handed });
            }
            insert_events(&mut tx, &new_events).await?;
            insert_logs(&mut tx, &logs).await?;
            tx.commit().await?;
        });
        self.announce(announce).await;
        for (outcome, request) in outcomes.iter_mut().zip(requests) {
            if let Ingested::Events { events, .. } = outcome {
                self.fill_duplicate_logs(request.org_id, events).await?;
            }
        }
        Ok(outcomes)
    }

    /// Repeated idempotency keys answer with the first event's logs.
    async fn fill_duplicate_logs(
        &self,
        org_id: Uuid,
        events: &mut [IngestedEvent],
    ) -> Result<(), StoreError> {
        let mut cache: HashMap<Uuid, Vec<CreatedLog>> = HashMap::new();
        for event in events.iter_mut().filter(|e| e.duplicate) {
            if let Some(logs) = cache.get(&event.event_id) {
                event.logs = logs.clone();
                continue;
            }
            event.logs = self.logs_of_event(org_id, event.event_id).await?;
            cache.insert(event.event_id, event.logs.clone());
        }
        Ok(())
    }

    /// Whether an event with this id exists, in any organization (a primary-key lookup).
    pub async fn event_exists(&self, event_id: Uuid) -> Result<bool, StoreError> {
        on_reader!(self, |pool| {
            let found: Option<(Uuid,)> = sqlx::query_as("SELECT id FROM events WHERE id = $1")
                .bind(event_id)
                .fetch_optional(pool)
                .await?;
            Ok(found.is_some())
        })
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

/// An event's `data` for filters: its bytes parsed (`null` if they are not JSON, which only
/// filters testing for absence pass).
fn parse_data(payload: &[u8]) -> Arc<serde_json::Value> {
    Arc::new(serde_json::from_slice(payload).unwrap_or(serde_json::Value::Null))
}

/// A handed log of `event` as the dispatcher receives it.
fn queued(log: &NewLog, event: &NewEvent, postgres: bool) -> QueuedLog {
    QueuedLog {
        id: log.id,
        org_id: log.org_id,
        agent_id: log.agent_id,
        webhook_id: log.webhook_id,
        lane_id: log.lane_id,
        event_id: log.event_id,
        event_type: log.event_type.clone(),
        call_id: log.call_id.clone(),
        url: log.url.clone(),
        attempt_count: 0,
        retries: 0,
        first_send_type: log.first_send_type,
        created_at: log.created_at,
        ordered: false,
        lease_until: if postgres { log.next_attempt_at } else { None },
        traceparent: event.traceparent.clone(),
        payload: Payload(event.payload.clone()),
        payload_state: crate::domain::PayloadState::Present,
    }
}
