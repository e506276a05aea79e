//! Writes attempt results in batches: whatever accumulated while the previous batch was being
//! written goes into the next transaction, so the database sees one commit per batch rather than
//! one per attempt. After each commit it answers explicit sends, tells the dispatcher what the
//! batch changed (retries due, circuits, held logs let go), and writes the log lines an operator
//! needs: every failure, every webhook disabled or circuit changed, and a summary of successes.

use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::ticket::{ExplicitResult, Kind, Ticket};
use super::Message;
use crate::domain::circuit::{Breaker, Transition};
use crate::domain::clock::{format_ms, now_ms};
use crate::domain::LogStatus;
use crate::store::{Announcement, AttemptRecord, Recorded, SkipRecord, Store};
use crate::telemetry::metrics;

/// Most results in one transaction.
const BATCH: usize = 1_000;
/// A failed batch write is tried this many times; then its logs are given back (at least once,
/// never lost).
const WRITE_TRIES: u32 = 5;
/// How often successes are summarised in the log (one line, not one per delivery).
const SUMMARY_EVERY: Duration = Duration::from_secs(60);

enum Item {
    Attempt(Box<AttemptRecord>, Ticket),
    Skip(SkipRecord, Ticket),
    Finish(oneshot::Sender<()>),
}

#[derive(Clone)]
pub(super) struct Recorder {
    queue: mpsc::Sender<Item>,
}

impl Recorder {
    pub fn spawn(
        store: Store,
        dispatcher: mpsc::UnboundedSender<Message>,
        breaker: Breaker,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (queue, inbox) = mpsc::channel(BATCH * 4);
        let task = tokio::spawn(run(store, inbox, dispatcher, breaker));
        (Self { queue }, task)
    }

    pub async fn attempt(&self, record: AttemptRecord, ticket: Ticket) {
        let _ = self.queue.send(Item::Attempt(Box::new(record), ticket)).await;
    }

    pub async fn skip(&self, record: SkipRecord, ticket: Ticket) {
        let _ = self.queue.send(Item::Skip(record, ticket)).await;
    }

    /// Writes everything queued so far, then stops the recorder.
    pub async fn finish(&self) {
        let (done, finished) = oneshot::channel();
        if self.queue.send(Item::Finish(done)).await.is_ok() {
            let _ = finished.await;
        }
    }
}

#[derive(Default)]
struct Summary {
    delivered: u64,
    since: Option<Instant>,
}

async fn run(
    store: Store,
    mut inbox: mpsc::Receiver<Item>,
    dispatcher: mpsc::UnboundedSender<Message>,
    breaker: Breaker,
) {
    let mut items = Vec::with_capacity(BATCH);
    let mut summary = Summary::default();
    loop {
        let received =
            tokio::time::timeout(SUMMARY_EVERY, inbox.recv_many(&mut items, BATCH)).await;
        summary.flush_if_due();
        match received {
            Ok(0) => return,
            Ok(_) => {}
            Err(_) => continue,
        }
        let mut attempts = Vec::with_capacity(items.len());
        let mut skips = Vec::new();
        let mut tickets = Vec::with_capacity(items.len());
        let mut skipped = Vec::new();
        let mut finished = None;
        for item in items.drain(..) {
            match item {
                Item::Attempt(record, ticket) => {
                    attempts.push(*record);
                    tickets.push(ticket);
                }
                Item::Skip(record, ticket) => {
                    skips.push(record);
                    skipped.push(ticket);
                }
                Item::Finish(done) => finished = Some(done),
            }
        }
        let written = write(&store, &attempts, &skips, &breaker).await;
        let batch = Batch { attempts: &attempts, tickets, skipped };
        after_write(&store, &dispatcher, batch, written.as_ref(), &mut summary).await;
        if let Some(done) = finished {
            summary.flush();
            let _ = done.send(());
            return;
        }
    }
}

async fn write(
    store: &Store,
    attempts: &[AttemptRecord],
    skips: &[SkipRecord],
    breaker: &Breaker,
) -> Option<Recorded> {
    for attempt in 1..=WRITE_TRIES {
        match store.record(attempts, skips, breaker).await {
            Ok(recorded) => return Some(recorded),
            Err(error) => {
                tracing::error!(error = %error, attempt, results = attempts.len(), "recording attempt results failed");
                tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
            }
        }
    }
    None
}

/// Answers, tells the dispatcher, logs. `recorded` is `None` when the batch could not be written:
/// its logs are then given back to be sent again.
/// One written batch: the attempts with their tickets (same order), and skipped tickets.
struct Batch<'a> {
    attempts: &'a [AttemptRecord],
    tickets: Vec<Ticket>,
    skipped: Vec<Ticket>,
}

async fn after_write(
    store: &Store,
    dispatcher: &mpsc::UnboundedSender<Message>,
    batch: Batch<'_>,
    recorded: Option<&Recorded>,
    summary: &mut Summary,
) {
    let Batch { attempts, tickets, skipped } = batch;
    let logs: Vec<Uuid> = tickets.iter().chain(&skipped).map(|t| t.log.id).collect();
    let Some(recorded) = recorded else {
        for ticket in tickets.iter().chain(&skipped) {
            if let Kind::Explicit { batch, .. } = &ticket.kind {
                batch.done(ExplicitResult::Dropped(ticket.log.id));
            }
        }
        let _ = dispatcher.send(Message::Recorded {
            logs,
            due: Vec::new(),
            circuits: Vec::new(),
            lost: true,
        });
        return;
    };
    let now = now_ms();
    let mut due = Vec::new();
    for (record, ticket) in attempts.iter().zip(&tickets) {
        if let Kind::Explicit { batch, .. } = &ticket.kind {
            batch.done(ExplicitResult::Sent(Box::new(record.clone())));
        }
        if let Some(at) = record.next_attempt_at {
            due.push((record.lane_id, record.org_id, at));
        } else if ticket.log.ordered {
            // It ended: the next event of its call may go.
            due.push((record.lane_id, record.org_id, now));
        }
        log_outcome(record, summary);
    }
    for ticket in &skipped {
        if let Kind::Explicit { batch, .. } = &ticket.kind {
            batch.done(ExplicitResult::Dropped(ticket.log.id));
        }
    }
    let mut changed = Vec::new();
    for (webhook, circuit, transition) in &recorded.circuits {
        match transition {
            Transition::Opened { retry_at } => {
                metrics::circuit_transition("opened");
                tracing::warn!(webhook.id = %webhook, retry_at = %format_ms(*retry_at), failed_probes = circuit.level,
                    "circuit opened: deliveries to this webhook pause until a probe succeeds");
            }
            Transition::Closed => {
                metrics::circuit_transition("closed");
                tracing::info!(webhook.id = %webhook, "circuit closed: deliveries to this webhook resume");
            }
        }
        changed.push(Announcement::Changed { webhook: *webhook });
    }
    for (webhook, reason) in &recorded.disabled {
        tracing::warn!(webhook.id = %webhook, reason, "webhook disabled");
        changed.push(Announcement::Changed { webhook: *webhook });
    }
    let circuits =
        recorded.circuits.iter().map(|(webhook, circuit, _)| (*webhook, *circuit)).collect();
    let _ = dispatcher.send(Message::Recorded { logs, due, circuits, lost: false });
    // Other nodes reload these webhooks (this node's dispatcher has been told above).
    store.announce(changed).await;
}

fn log_outcome(record: &AttemptRecord, summary: &mut Summary) {
    let attempt = &record.attempt;
    match record.status {
        LogStatus::Success => {
            summary.delivered += 1;
            summary.since.get_or_insert_with(Instant::now);
        }
        LogStatus::Pending => tracing::info!(
            log.id = %record.log_id, webhook.id = ?record.webhook_id, status = ?attempt.response_code,
            error = attempt.error.as_deref().unwrap_or_default(),
            next_attempt_at = %record.next_attempt_at.map(format_ms).unwrap_or_default(),
            "delivery failed; retry scheduled"
        ),
        _ => tracing::warn!(
            log.id = %record.log_id, webhook.id = ?record.webhook_id, status = ?attempt.response_code,
            error = attempt.error.as_deref().unwrap_or_default(),
            "delivery failed; no retry left"
        ),
    }
}

impl Summary {
    fn flush_if_due(&mut self) {
        if self.since.is_some_and(|since| since.elapsed() >= SUMMARY_EVERY) {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if let Some(since) = self.since.take() {
            tracing::info!(
                delivered = self.delivered,
                seconds = since.elapsed().as_secs(),
                "deliveries succeeded"
            );
            self.delivered = 0;
        }
    }
}
