//! The outbox of operational events (SPEC §4): an event and its pending log are inserted by
//! [`Outbox::write_outbox`] inside the very transaction that makes the state change they report
//! (a recorded batch that opened a circuit or failed a log, the statement that turned a webhook
//! off), and announced after it commits. A crash at any point either loses both the change and
//! the event, or keeps both; a kept pending log is sent like any other. Where they live:
//! `operational.rs`.
//!
//! No loops: logs of an operational lane never make `delivery.failed`, and the lane has no
//! webhook, so it has no circuit and is never disabled.

use std::collections::{HashMap, HashSet};

use serde_json::{json, Value};
use uuid::Uuid;

use super::announce::Announcement;
use super::backend::INSERT_CHUNK;
use super::event_inserts::{insert_events, EventRow};
use super::log_inserts::{announcements, insert_logs, LogIds, NewLog};
use super::{with_ids, AttemptRecord, Recorded, StoreError};
use crate::domain::circuit::Transition;
use crate::domain::clock::{format_ms, UnixMs};
use crate::domain::operational::{self, body, DisabledReason, Kind, Subscription};
use crate::domain::{LogStatus, SendType};

/// A state change an operational event reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fact {
    Disabled {
        org_id: Uuid,
        webhook_id: Uuid,
        reason: DisabledReason,
    },
    CircuitOpened {
        org_id: Uuid,
        webhook_id: Uuid,
        retry_at: UnixMs,
    },
    CircuitClosed {
        org_id: Uuid,
        webhook_id: Uuid,
    },
    /// A log ended `failed`; its latest attempt's status and error.
    DeliveryFailed {
        org_id: Uuid,
        log_id: Uuid,
        status: Option<u16>,
        error: Option<String>,
    },
}

impl Fact {
    fn org_id(&self) -> Uuid {
        match self {
            Self::Disabled { org_id, .. }
            | Self::CircuitOpened { org_id, .. }
            | Self::CircuitClosed { org_id, .. }
            | Self::DeliveryFailed { org_id, .. } => *org_id,
        }
    }

    fn kind(&self) -> Kind {
        match self {
            Self::Disabled { .. } => Kind::WebhookDisabled,
            Self::CircuitOpened { .. } => Kind::CircuitOpened,
            Self::CircuitClosed { .. } => Kind::CircuitClosed,
            Self::DeliveryFailed { .. } => Kind::DeliveryFailed,
        }
    }

    fn webhook_id(&self) -> Option<Uuid> {
        match self {
            Self::Disabled { webhook_id, .. }
            | Self::CircuitOpened { webhook_id, .. }
            | Self::CircuitClosed { webhook_id, .. } => Some(*webhook_id),
            Self::DeliveryFailed { .. } => None,
        }
    }
}

/// What a recorded batch has to tell operational endpoints: webhooks disabled, circuits opened
/// from closed (a failed probe that keeps one open is not news) or closed, and logs that ended
/// failed — except operational logs themselves and test sends (their caller saw the result).
pub(super) fn facts_of_batch(attempts: &[AttemptRecord], recorded: &Recorded) -> Vec<Fact> {
    let org_of: HashMap<Uuid, Uuid> = attempts
        .iter()
        .filter_map(|a| a.webhook_id.map(|webhook_id| (webhook_id, a.org_id)))
        .collect();
    let mut facts = Vec::new();
    for (webhook_id, circuit, transition) in &recorded.circuits {
        let Some(&org_id) = org_of.get(webhook_id) else { continue };
        let webhook_id = *webhook_id;
        match transition {
            Transition::Opened { retry_at } if circuit.level == 0 => {
                facts.push(Fact::CircuitOpened { org_id, webhook_id, retry_at: *retry_at });
            }
            Transition::Opened { .. } => {}
            Transition::Closed => facts.push(Fact::CircuitClosed { org_id, webhook_id }),
        }
    }
    for (webhook_id, reason) in &recorded.disabled {
        let Some(&org_id) = org_of.get(webhook_id) else { continue };
        let reason = DisabledReason::of_health(reason);
        facts.push(Fact::Disabled { org_id, webhook_id: *webhook_id, reason });
    }
    facts.extend(
        attempts
            .iter()
            .filter(|a| a.status == LogStatus::Failed && a.attempt.send_type != SendType::Test)
            .filter(|a| a.lane_id != operational::lane(a.org_id))
            .map(|a| Fact::DeliveryFailed {
                org_id: a.org_id,
                log_id: a.log_id,
                status: a.attempt.response_code,
                error: a.attempt.error.clone(),
            }),
    );
    facts
}

/// An organization subscribed to operational events, with its internal agent.
#[derive(sqlx::FromRow)]
struct Subscriber {
    org_id: Uuid,
    url: String,
    events: String,
    agent_id: Uuid,
}

/// What an event about a webhook says about it.
#[derive(sqlx::FromRow)]
struct WebhookFacts {
    id: Uuid,
    agent_id: Uuid,
    name: String,
    url: String,
}

/// What `delivery.failed` says about its log.
#[derive(sqlx::FromRow)]
struct FailedLog {
    id: Uuid,
    agent_id: Uuid,
    webhook_id: Option<Uuid>,
    event_id: Uuid,
    event_type: String,
    call_id: Option<String>,
    url: String,
    attempt_count: i64,
}

/// An operational event about to be inserted.
struct NewEvent {
    id: Uuid,
    org_id: Uuid,
    agent_id: Uuid,
    kind: Kind,
    call_id: Option<String>,
    payload: Vec<u8>,
}

impl NewEvent {
    fn row(&self, now: UnixMs) -> EventRow<'_> {
        EventRow {
            id: self.id,
            org_id: self.org_id,
            agent_id: self.agent_id,
            event_type: self.kind.as_str(),
            call_id: self.call_id.as_deref(),
            payload: &self.payload,
            webhook_url: None,
            traceparent: None,
            created_at: now,
        }
    }
}

/// The read side of the outbox, whatever the backend.
struct Known {
    subscribers: HashMap<Uuid, (Subscriber, Subscription)>,
    webhooks: HashMap<Uuid, WebhookFacts>,
    logs: HashMap<Uuid, FailedLog>,
}

/// Writes operational events into the caller's transaction (see the module's documentation).
pub(super) trait Outbox {
    /// Inserts an event and its pending log for each fact an organization subscribed to; returns
    /// the work to announce once the transaction has committed.
    async fn write_outbox(
        &mut self,
        facts: &[Fact],
        now: UnixMs,
    ) -> Result<Vec<Announcement>, StoreError>;
}

macro_rules! outbox_for {
    ($db:ty) => {
        impl Outbox for sqlx::Transaction<'_, $db> {
            async fn write_outbox(
                &mut self,
                facts: &[Fact],
                now: UnixMs,
            ) -> Result<Vec<Announcement>, StoreError> {
                if facts.is_empty() {
                    return Ok(Vec::new());
                }
                let orgs: HashSet<Uuid> = facts.iter().map(Fact::org_id).collect();
                let subscribers: Vec<Subscriber> = with_ids::<$db>(
                    "SELECT o.org_id, o.url, o.events, a.id AS agent_id
                     FROM operational_webhooks o JOIN agents a ON a.org_id = o.org_id AND a.internal
                     WHERE o.org_id IN ",
                    orgs,
                )
                .build_query_as()
                .fetch_all(&mut **self)
                .await?;
                let mut known = Known::subscribed(subscribers)?;
                let wanted: Vec<&Fact> = facts.iter().filter(|f| known.wants(f)).collect();
                if wanted.is_empty() {
                    return Ok(Vec::new());
                }
                let webhook_ids: HashSet<Uuid> =
                    wanted.iter().filter_map(|f| f.webhook_id()).collect();
                if !webhook_ids.is_empty() {
                    let rows: Vec<WebhookFacts> = with_ids::<$db>(
                        "SELECT id, agent_id, name, url FROM webhooks WHERE id IN ",
                        webhook_ids,
                    )
                    .build_query_as()
                    .fetch_all(&mut **self)
                    .await?;
                    known.webhooks = rows.into_iter().map(|row| (row.id, row)).collect();
                }
                let log_ids: Vec<Uuid> = wanted
                    .iter()
                    .filter_map(|f| match f {
                        Fact::DeliveryFailed { log_id, .. } => Some(*log_id),
                        _ => None,
                    })
                    .collect();
                for chunk in log_ids.chunks(INSERT_CHUNK) {
                    let rows: Vec<FailedLog> = with_ids::<$db>(
                        "SELECT id, agent_id, webhook_id, event_id, event_type, call_id, url,
                            attempt_count FROM delivery_logs WHERE id IN ",
                        chunk.iter().copied(),
                    )
                    .build_query_as()
                    .fetch_all(&mut **self)
                    .await?;
                    known.logs.extend(rows.into_iter().map(|row| (row.id, row)));
                }
                let (events, logs) = known.events(&wanted, now);
                let rows: Vec<EventRow<'_>> = events.iter().map(|e| e.row(now)).collect();
                insert_events(self, &rows).await?;
                insert_logs(self, &logs).await?;
                Ok(announcements(&logs))
            }
        }
    };
}

outbox_for!(sqlx::Sqlite);
outbox_for!(sqlx::Postgres);

impl Known {
    fn subscribed(rows: Vec<Subscriber>) -> Result<Self, StoreError> {
        let mut subscribers = HashMap::with_capacity(rows.len());
        for row in rows {
            let events = Subscription::from_stored(&row.events)
                .map_err(|detail| StoreError::Corrupt { table: "operational_webhooks", detail })?;
            subscribers.insert(row.org_id, (row, events));
        }
        Ok(Self { subscribers, webhooks: HashMap::new(), logs: HashMap::new() })
    }

    fn wants(&self, fact: &Fact) -> bool {
        self.subscribers.get(&fact.org_id()).is_some_and(|(_, events)| events.contains(fact.kind()))
    }

    /// The events and logs of the wanted facts. A fact whose webhook or log is gone meanwhile
    /// (deleted in a concurrent transaction) tells nobody anything and is left out.
    fn events(&self, wanted: &[&Fact], now: UnixMs) -> (Vec<NewEvent>, Vec<NewLog>) {
        let mut events = Vec::with_capacity(wanted.len());
        let mut logs = Vec::with_capacity(wanted.len());
        for fact in wanted {
            let Some((subscriber, _)) = self.subscribers.get(&fact.org_id()) else { continue };
            let Some((data, call_id)) = self.data(fact, subscriber.org_id) else { continue };
            let event = NewEvent {
                id: Uuid::now_v7(),
                org_id: subscriber.org_id,
                agent_id: subscriber.agent_id,
                kind: fact.kind(),
                call_id,
                payload: body(fact.kind(), now, data),
            };
            let ids = LogIds {
                org_id: event.org_id,
                agent_id: event.agent_id,
                webhook_id: None,
                event_id: event.id,
            };
            let kind = event.kind.as_str();
            let call_id = event.call_id.as_deref();
            let log = NewLog::pending(ids, kind, call_id, &subscriber.url, SendType::Spawn, now);
            logs.push(log.into_operational());
            events.push(event);
        }
        (events, logs)
    }

    /// `data` of the event reporting `fact`, and the call it is about.
    fn data(&self, fact: &Fact, org_id: Uuid) -> Option<(Value, Option<String>)> {
        let about_webhook = |webhook_id: &Uuid| {
            let webhook = self.webhooks.get(webhook_id)?;
            Some(json!({
                "organization_id": org_id,
                "agent_id": webhook.agent_id,
                "webhook_id": webhook.id,
                "webhook_name": webhook.name,
                "webhook_url": webhook.url,
            }))
        };
        let data = match fact {
            Fact::Disabled { webhook_id, reason, .. } => {
                let mut data = about_webhook(webhook_id)?;
                data["reason"] = reason.code().into();
                data["message"] = reason.message().into();
                data
            }
            Fact::CircuitOpened { webhook_id, retry_at, .. } => {
                let mut data = about_webhook(webhook_id)?;
                data["reason"] = "consecutive_failures".into();
                data["message"] =
                    "Deliveries pause after repeated failures until a probe succeeds".into();
                data["retry_at"] = format_ms(*retry_at).into();
                data
            }
            Fact::CircuitClosed { webhook_id, .. } => {
                let mut data = about_webhook(webhook_id)?;
                data["reason"] = "delivery_succeeded".into();
                data["message"] = "A delivery succeeded; deliveries resume".into();
                data
            }
            Fact::DeliveryFailed { log_id, status, error, .. } => {
                let log = self.logs.get(log_id)?;
                let reason =
                    if *status == Some(410) { "endpoint_gone" } else { "retries_exhausted" };
                json!({
                    "organization_id": org_id,
                    "agent_id": log.agent_id,
                    "webhook_id": log.webhook_id,
                    "log_id": log.id,
                    "event_id": log.event_id,
                    "event_type": log.event_type,
                    "call_id": log.call_id,
                    "url": log.url,
                    "attempts": log.attempt_count,
                    "status_code": status,
                    "error": error,
                    "reason": reason,
                })
            }
        };
        let call_id = data.get("call_id").and_then(Value::as_str).map(str::to_string);
        Some((data, call_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::circuit::{Circuit, CircuitState};
    use crate::store::Attempt;

    fn record(
        org_id: Uuid,
        lane_id: Uuid,
        status: LogStatus,
        send_type: SendType,
    ) -> AttemptRecord {
        AttemptRecord {
            log_id: Uuid::now_v7(),
            webhook_id: Some(lane_id),
            lane_id,
            org_id,
            attempt: Attempt {
                id: Uuid::now_v7(),
                number: 1,
                send_type,
                sent_at: 1,
                response_code: Some(500),
                duration_ms: 1,
                response_body: None,
                response_headers: None,
                error: Some("HTTP 500".into()),
            },
            status,
            next_attempt_at: None,
            counts_as_retry: false,
            probe: false,
        }
    }

    #[test]
    fn operational_logs_and_test_sends_that_fail_report_nothing() {
        let org = Uuid::now_v7();
        let webhook = Uuid::now_v7();
        let mut operational =
            record(org, operational::lane(org), LogStatus::Failed, SendType::Spawn);
        operational.webhook_id = None;
        let attempts = [
            record(org, webhook, LogStatus::Failed, SendType::Spawn),
            record(org, webhook, LogStatus::Failed, SendType::Test),
            record(org, webhook, LogStatus::Pending, SendType::Spawn),
            operational,
        ];
        let facts = facts_of_batch(&attempts, &Recorded::default());
        assert_eq!(facts.len(), 1);
        assert!(matches!(&facts[0], Fact::DeliveryFailed { log_id, status: Some(500), .. }
            if *log_id == attempts[0].log_id));
    }

    #[test]
    fn a_circuit_is_reported_when_it_opens_from_closed_and_when_it_closes() {
        let org = Uuid::now_v7();
        let webhook = Uuid::now_v7();
        let attempts = [record(org, webhook, LogStatus::Pending, SendType::Spawn)];
        let open =
            |level| Circuit { state: CircuitState::Open, retry_at: Some(9), failures: 0, level };
        let recorded = Recorded {
            circuits: vec![
                (webhook, open(0), Transition::Opened { retry_at: 9 }),
                (webhook, open(1), Transition::Opened { retry_at: 9 }),
                (webhook, Circuit::default(), Transition::Closed),
            ],
            disabled: vec![(webhook, crate::domain::health::GONE_REASON)],
        };
        let facts = facts_of_batch(&attempts, &recorded);
        assert_eq!(
            facts,
            vec![
                Fact::CircuitOpened { org_id: org, webhook_id: webhook, retry_at: 9 },
                Fact::CircuitClosed { org_id: org, webhook_id: webhook },
                Fact::Disabled {
                    org_id: org,
                    webhook_id: webhook,
                    reason: DisabledReason::EndpointGone
                },
            ]
        );
    }
}
