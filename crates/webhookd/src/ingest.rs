//! Ingestion with group commit: requests that arrive while a transaction is being written wait
//! for the next one and share it, so the database sees one commit per group instead of one per
//! request, and every event is still stored before its own 202. Logs the local dispatcher has
//! room for are handed to it after the commit. One bad request never fails the others: a group
//! whose transaction fails is written again one request at a time, unless the database itself
//! failed it (full, unreachable): then every request of the group is refused with that fault.
//! Every request is answered after its transaction's outcome is known, never before.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Mutex};

use crate::dispatch::Dispatcher;
use crate::store::{Fault, IngestRequest, Ingested, IngestedEvent, Store, StoreError};
use crate::telemetry::metrics;

/// Most requests in one transaction.
const GROUP_MAX: usize = 128;
/// Most events in one transaction (a group of batch requests).
const GROUP_EVENTS_MAX: usize = 2_000;

/// What one request produced.
#[derive(Debug)]
pub enum Outcome {
    AgentNotFound,
    Events(Vec<IngestedEvent>),
}

struct Job {
    request: IngestRequest,
    reply: oneshot::Sender<Result<Outcome, StoreError>>,
}

#[derive(Clone)]
pub struct Ingestor {
    queue: mpsc::Sender<Job>,
}

impl Ingestor {
    /// Starts `writers` group writers (one for SQLite's single writer; a few for PostgreSQL).
    pub fn start(
        store: Store,
        dispatcher: Dispatcher,
        writers: usize,
    ) -> (Self, Vec<tokio::task::JoinHandle<()>>) {
        let (queue, inbox) = mpsc::channel(GROUP_MAX * 8);
        let inbox = Arc::new(Mutex::new(inbox));
        let tasks = (0..writers.max(1))
            .map(|_| tokio::spawn(write_groups(store.clone(), dispatcher.clone(), inbox.clone())))
            .collect();
        (Self { queue }, tasks)
    }

    /// Stores `request`'s events (with its group) and answers once they are committed.
    pub async fn ingest(&self, request: IngestRequest) -> Result<Outcome, StoreError> {
        let (reply, answer) = oneshot::channel();
        if self.queue.send(Job { request, reply }).await.is_err() {
            return Err(StoreError::ShuttingDown);
        }
        answer.await.unwrap_or(Err(StoreError::ShuttingDown))
    }
}

async fn write_groups(
    store: Store,
    dispatcher: Dispatcher,
    inbox: Arc<Mutex<mpsc::Receiver<Job>>>,
) {
    let mut group: Vec<Job> = Vec::with_capacity(GROUP_MAX);
    loop {
        {
            let mut inbox = inbox.lock().await;
            if inbox.recv_many(&mut group, 1).await == 0 {
                return;
            }
            // Whatever else is already waiting joins this group, up to the bounds.
            let mut events: usize = group.iter().map(|job| job.request.events.len()).sum();
            while group.len() < GROUP_MAX && events < GROUP_EVENTS_MAX {
                match inbox.try_recv() {
                    Ok(job) => {
                        events += job.request.events.len();
                        group.push(job);
                    }
                    Err(_) => break,
                }
            }
        }
        let requests: Vec<IngestRequest> = group.iter().map(|job| job.request.clone()).collect();
        match store.ingest(&requests, dispatcher.handoff()).await {
            Ok(outcomes) => {
                store.availability().recovered();
                for (job, outcome) in group.drain(..).zip(outcomes) {
                    let _ = job.reply.send(Ok(deliver(&dispatcher, outcome)));
                }
            }
            Err(error) if error.fault().is_some() => {
                // The database's condition, not one request, failed the group: each alone would
                // fail the same way, one timeout after another.
                let fault = error.fault().unwrap_or(Fault::Unavailable);
                store.availability().report(fault);
                tracing::warn!(%error, requests = group.len(), "a group of ingestion requests was not stored");
                for job in group.drain(..) {
                    let _ = job.reply.send(Err(StoreError::Refused(fault)));
                }
            }
            Err(error) if group.len() > 1 => {
                tracing::warn!(%error, requests = group.len(), "a group of ingestion requests failed; writing each alone");
                for job in group.drain(..) {
                    let alone = store
                        .ingest(std::slice::from_ref(&job.request), dispatcher.handoff())
                        .await;
                    let result = alone.map(|mut outcomes| deliver(&dispatcher, outcomes.remove(0)));
                    let _ = job.reply.send(result);
                }
            }
            Err(error) => {
                if let Some(job) = group.pop() {
                    let _ = job.reply.send(Err(error));
                }
            }
        }
    }
}

/// Hands the committed request's held logs to the dispatcher and counts its new events.
fn deliver(dispatcher: &Dispatcher, outcome: Ingested) -> Outcome {
    match outcome {
        Ingested::AgentNotFound => Outcome::AgentNotFound,
        Ingested::Events { events, handed } => {
            dispatcher.hand_over(handed);
            metrics::events_ingested(events.iter().filter(|event| !event.duplicate).count());
            Outcome::Events(events)
        }
    }
}
