//! A ticket: one log this node holds on its way to a send, and why it is being sent.

use std::sync::{Arc, Mutex};

use tokio::sync::{oneshot, OwnedSemaphorePermit};
use uuid::Uuid;

use crate::domain::clock::UnixMs;
use crate::domain::SendType;
use crate::store::{AttemptRecord, QueuedLog};

#[derive(Debug)]
pub struct Ticket {
    /// Boxed: tickets move through queues and messages many times; the log stays put.
    pub log: Box<QueuedLog>,
    pub kind: Kind,
    /// Its share of the ingestion hand-off budget, returned when the ticket is dropped.
    pub permit: Option<OwnedSemaphorePermit>,
}

#[derive(Debug, Clone)]
pub enum Kind {
    /// The normal flow: first attempt, automatic retry, manual retry, recover.
    Automatic,
    /// A person asked for it (test, Bland resend or create): it goes even while the circuit is
    /// open and beyond the adaptive limit (never beyond `max_concurrency` or `rate_limit`).
    Explicit { send_type: SendType, batch: Arc<ExplicitBatch> },
}

impl Ticket {
    pub fn automatic(log: QueuedLog, permit: Option<OwnedSemaphorePermit>) -> Self {
        Self { log: Box::new(log), kind: Kind::Automatic, permit }
    }

    pub fn lane(&self) -> Uuid {
        self.log.lane_id
    }

    pub fn is_explicit(&self) -> bool {
        matches!(self.kind, Kind::Explicit { .. })
    }

    /// The kind of the attempt this ticket makes.
    pub fn send_type(&self) -> SendType {
        match &self.kind {
            Kind::Automatic => self.log.next_send_type(),
            Kind::Explicit { send_type, .. } => *send_type,
        }
    }

    /// Whether an attempt started at `now` that may last `attempt_ms` would end, and be
    /// recorded, before the claim's lease runs out. Held logs (SQLite) have no lease.
    pub fn lease_allows(&self, now: UnixMs, attempt_ms: i64) -> bool {
        self.log
            .lease_until
            .is_none_or(|until| until - now >= attempt_ms + crate::store::LEASE_MARGIN_MS / 2)
    }
}

/// The outcome of one explicit send.
#[derive(Debug, Clone)]
pub enum ExplicitResult {
    Sent(Box<AttemptRecord>),
    /// Another send of this log is in progress.
    Busy(Uuid),
    /// The log was not sent (its webhook is gone).
    Dropped(Uuid),
}

/// The explicit sends of one request: answers when every one of them has a result, recorded.
#[derive(Debug)]
pub struct ExplicitBatch {
    state: Mutex<BatchState>,
}

#[derive(Debug)]
struct BatchState {
    results: Vec<ExplicitResult>,
    remaining: usize,
    reply: Option<oneshot::Sender<Vec<ExplicitResult>>>,
}

impl ExplicitBatch {
    pub fn new(expected: usize) -> (Arc<Self>, oneshot::Receiver<Vec<ExplicitResult>>) {
        let (reply, answer) = oneshot::channel();
        let state = BatchState { results: Vec::new(), remaining: expected, reply: Some(reply) };
        (Arc::new(Self { state: Mutex::new(state) }), answer)
    }

    /// One more result; the last one sends the answer.
    pub fn done(&self, result: ExplicitResult) {
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        state.results.push(result);
        state.remaining = state.remaining.saturating_sub(1);
        if state.remaining == 0 {
            if let Some(reply) = state.reply.take() {
                let _ = reply.send(std::mem::take(&mut state.results));
            }
        }
    }
}
