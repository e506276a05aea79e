//! What becomes of a chunk of messages: parsed, grouped per agent into ingestion requests, and
//! stored by the same group commit as the HTTP API (`crate::ingest`), so one transaction holds
//! many messages. Each message gets a [`Verdict`] that its broker turns into an ack, a
//! termination or a delayed redelivery.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use uuid::Uuid;

use super::message::{self, AddressedEvent};
use super::RETRY_DELAY;
use crate::domain::destination::Destinations;
use crate::domain::event::NewEvent;
use crate::domain::EventCatalog;
use crate::ingest::{Ingestor, Outcome};
use crate::store::{IngestRequest, Store};
use crate::telemetry::metrics;

/// How long an agent's organization is remembered: a message names only its agent.
const AGENT_TTL: Duration = Duration::from_secs(60);

/// One message as the broker delivered it.
pub struct Incoming {
    pub body: Bytes,
    /// The broker's message id: the idempotency key when the body has none.
    pub broker_id: Option<String>,
}

/// What to tell the broker about one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Committed as a new event: acknowledge.
    Ingested,
    /// Its idempotency key had been used: the first event stands; acknowledge.
    Duplicate,
    /// It can never be ingested: terminate or dead-letter, never redeliver.
    Rejected(String),
    /// Not stored this time (the database is down): leave it to the broker, to come back later.
    Retry(String),
}

/// What a broker is told, whatever its words for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Done with: acknowledge.
    Ack,
    /// Never to come back: terminate (JetStream), reject without requeue (AMQP: dead-letter).
    Drop,
    /// Back to the broker, to be delivered again after a delay.
    Redeliver,
}

impl Verdict {
    pub fn flow(&self) -> Flow {
        match self {
            Verdict::Ingested | Verdict::Duplicate => Flow::Ack,
            Verdict::Rejected(_) => Flow::Drop,
            Verdict::Retry(_) => Flow::Redeliver,
        }
    }
}

#[derive(Clone)]
pub struct Intake {
    ingestor: Ingestor,
    store: Store,
    catalog: Arc<EventCatalog>,
    destinations: Arc<Destinations>,
    orgs: moka::sync::Cache<Uuid, Uuid>,
}

impl Intake {
    pub fn new(
        ingestor: Ingestor,
        store: Store,
        catalog: Arc<EventCatalog>,
        destinations: Arc<Destinations>,
    ) -> Self {
        let orgs =
            moka::sync::Cache::builder().max_capacity(10_000).time_to_live(AGENT_TTL).build();
        Self { ingestor, store, catalog, destinations, orgs }
    }

    /// Stores what can be stored of `messages` and says what became of each, in order; logs
    /// each rejection with its reason and counts every outcome under `source`.
    pub async fn take(&self, source: &str, messages: &[Incoming]) -> Vec<Verdict> {
        let mut verdicts: Vec<Option<Verdict>> = vec![None; messages.len()];
        // Per agent: the positions of its messages and their events, in order.
        let mut per_agent: BTreeMap<Uuid, (Vec<usize>, Vec<NewEvent>)> = BTreeMap::new();
        for (index, incoming) in messages.iter().enumerate() {
            let broker_id = incoming.broker_id.as_deref();
            match message::parse(&incoming.body, broker_id, &self.catalog, &self.destinations) {
                Ok(AddressedEvent { agent_id, event }) => {
                    let entry = per_agent.entry(agent_id).or_default();
                    entry.0.push(index);
                    entry.1.push(event);
                }
                Err(reason) => verdicts[index] = Some(Verdict::Rejected(reason)),
            }
        }
        let requests = per_agent.into_iter().map(|(agent_id, (positions, events))| async move {
            let verdicts = self.ingest(agent_id, events).await;
            positions.into_iter().zip(verdicts).collect::<Vec<_>>()
        });
        for (index, verdict) in futures::future::join_all(requests).await.into_iter().flatten() {
            verdicts[index] = Some(verdict);
        }
        let verdicts: Vec<Verdict> = verdicts
            .into_iter()
            .map(|v| v.unwrap_or_else(|| Verdict::Retry("not decided".into())))
            .collect();
        for (incoming, verdict) in messages.iter().zip(&verdicts) {
            report(source, incoming, verdict);
        }
        verdicts
    }

    /// Stores a chunk of a broker's `messages` (each read by `incoming`) and tells the broker,
    /// through `tell`, what became of each: acks and drops at once, redeliveries after
    /// [`RETRY_DELAY`]. The delay is spent holding the messages (and their room in the node's
    /// bound), so a database outage keeps the node at its bound instead of cycling the messages
    /// through the broker. An answer the broker did not get is harmless: the message comes
    /// back, and its idempotency key makes it a duplicate if it was stored.
    pub async fn settle<M, Told>(
        &self,
        source: &str,
        messages: &[M],
        incoming: impl Fn(&M) -> Incoming,
        tell: impl Fn(&M, Flow) -> Told,
    ) where
        Told: Future<Output = Result<(), String>>,
    {
        let read: Vec<Incoming> = messages.iter().map(incoming).collect();
        let flows: Vec<Flow> = self.take(source, &read).await.iter().map(Verdict::flow).collect();
        let tell_each = |later: bool| {
            let pairs = messages.iter().zip(&flows);
            let chosen = pairs.filter(move |(_, &flow)| (flow == Flow::Redeliver) == later);
            let told = chosen.map(|(message, &flow)| tell(message, flow));
            // All at once: each answer's future waits for its frame to be written, and one
            // after another they took longer than the chunk's commit.
            async move {
                for told in futures::future::join_all(told).await {
                    if let Err(error) = told {
                        tracing::debug!(source, %error, "an acknowledgement was not sent");
                    }
                }
            }
        };
        tell_each(false).await;
        if flows.contains(&Flow::Redeliver) {
            tokio::time::sleep(RETRY_DELAY).await;
            tell_each(true).await;
        }
    }

    /// One agent's events through the group commit; one verdict per event.
    async fn ingest(&self, agent_id: Uuid, events: Vec<NewEvent>) -> Vec<Verdict> {
        let count = events.len();
        let all = |verdict: Verdict| vec![verdict; count];
        let org_id = match self.org_of(agent_id).await {
            Ok(Some(org_id)) => org_id,
            Ok(None) => {
                return all(Verdict::Rejected(format!("agent_id: unknown agent {agent_id}")))
            }
            Err(error) => return all(Verdict::Retry(error)),
        };
        match self.ingestor.ingest(IngestRequest { org_id, agent_id, events }).await {
            Ok(Outcome::Events(events)) => events
                .iter()
                .map(|e| if e.duplicate { Verdict::Duplicate } else { Verdict::Ingested })
                .collect(),
            Ok(Outcome::AgentNotFound) => {
                self.orgs.invalidate(&agent_id);
                all(Verdict::Rejected(format!("agent_id: unknown agent {agent_id}")))
            }
            Err(error) => all(Verdict::Retry(error.to_string())),
        }
    }

    async fn org_of(&self, agent_id: Uuid) -> Result<Option<Uuid>, String> {
        if let Some(org_id) = self.orgs.get(&agent_id) {
            return Ok(Some(org_id));
        }
        let org_id = self.store.agent_org(agent_id).await.map_err(|e| e.to_string())?;
        if let Some(org_id) = org_id {
            self.orgs.insert(agent_id, org_id);
        }
        Ok(org_id)
    }
}

/// Logs a rejection or a retry with its reason, and counts the outcome. Never the body: it is a
/// payload.
fn report(source: &str, incoming: &Incoming, verdict: &Verdict) {
    let message_id = incoming.broker_id.as_deref().unwrap_or("");
    match verdict {
        Verdict::Ingested => metrics::source_message(source, "ingested"),
        Verdict::Duplicate => metrics::source_message(source, "duplicate"),
        Verdict::Rejected(reason) => {
            tracing::warn!(source, message_id, reason = %reason, "a message was rejected: it can never be ingested");
            metrics::source_message(source, "rejected");
        }
        Verdict::Retry(reason) => {
            tracing::debug!(source, message_id, reason = %reason, "a message was not stored; the broker will redeliver it");
        }
    }
}
