//! One attempt, in a task of its own: send, report a stall, decide what the answer means, hand
//! the result to the recorder. Its slot is given back through a guard, on every path — a send
//! that panics or is cancelled still frees its lane's slot.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use super::job::Job;
use super::limiter::Started;
use super::recorder::Recorder;
use super::retry::{decide, RetryPolicy};
use super::sender::Sender;
use super::Message;
use crate::domain::circuit::Signal;
use crate::domain::LogStatus;
use crate::store::AttemptRecord;
use crate::telemetry::metrics;
use crate::telemetry::traces::{AttemptIds, AttemptTrace, Tracer};

/// Gives the attempt's slot back when dropped, with the outcome if there was one.
pub(super) struct SlotGuard {
    inbox: mpsc::UnboundedSender<Message>,
    lane: Uuid,
    attempt: u64,
    started: Started,
    outcome: Option<(Signal, Duration)>,
}

impl SlotGuard {
    pub fn new(
        inbox: mpsc::UnboundedSender<Message>,
        lane: Uuid,
        attempt: u64,
        started: Started,
    ) -> Self {
        Self { inbox, lane, attempt, started, outcome: None }
    }

    /// The attempt has waited past its lane's stall threshold.
    pub fn stalled(&self) {
        let _ = self.inbox.send(Message::Stalled {
            lane: self.lane,
            attempt: self.attempt,
            started: self.started,
        });
    }

    pub fn finished(mut self, signal: Signal, latency: Duration) {
        self.outcome = Some((signal, latency));
    }
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        let _ = self.inbox.send(Message::Finished {
            lane: self.lane,
            attempt: self.attempt,
            started: self.started,
            outcome: self.outcome.take(),
        });
    }
}

/// What an attempt task needs besides its job.
#[derive(Clone)]
pub(super) struct Context {
    pub sender: Sender,
    pub recorder: Recorder,
    pub policy: Arc<RetryPolicy>,
    pub inbox: mpsc::UnboundedSender<Message>,
    /// Makes attempt spans when traces are exported.
    pub tracer: Option<Tracer>,
    /// Cancelled when the shutdown grace is over: a send still waiting then is cut, because
    /// its claim is about to be released and another node will send the log again.
    pub cut: CancellationToken,
}

/// Starts `job`'s attempt; it reports a stall after `stall_after`.
pub(super) fn spawn(mut job: Job, context: Context, stall_after: Duration) {
    let span = tracing::debug_span!("attempt", log.id = %job.ticket.log.id, event.id = %job.ticket.log.event_id);
    tokio::spawn(
        async move {
            let guard = SlotGuard::new(context.inbox.clone(), job.lane(), job.attempt, job.started);
            let trace = start_trace(&job, context.tracer.as_ref());
            job.outgoing.traceparent = Some(trace.traceparent.clone());
            let begun = Instant::now();
            let send = async {
                let send = context.sender.send(&job.outgoing);
                tokio::pin!(send);
                tokio::select! {
                    sent = &mut send => sent,
                    _ = tokio::time::sleep(stall_after) => {
                        guard.stalled();
                        send.await
                    }
                }
            };
            let sent = tokio::select! {
                sent = send => sent,
                () = context.cut.cancelled() => {
                    // Like a crash for this one request: the receiver may have it already,
                    // and it is sent again once its released claim is taken.
                    tracing::warn!("attempt cut at the end of the shutdown grace period");
                    return;
                }
            };
            guard.finished(Signal::of(sent.status), begun.elapsed());
            let record = decide(&job, &sent, &context.policy, rand::random());
            let delivered = record.status == LogStatus::Success;
            trace.finish(sent.status, sent.duration_ms, delivered);
            observe(&job, &record);
            context.recorder.attempt(record, job.ticket).await;
        }
        .instrument(span),
    );
}

/// The attempt's trace context, continuing its event's.
fn start_trace(job: &Job, tracer: Option<&Tracer>) -> AttemptTrace {
    let log = &job.ticket.log;
    let ids = AttemptIds {
        event_id: log.event_id,
        log_id: log.id,
        webhook_id: log.webhook_id,
        send_type: job.send_type.as_str(),
    };
    AttemptTrace::start(tracer, log.traceparent.as_deref(), ids)
}

/// Counts a finished attempt in the metrics, and the log at debug level (one line per attempt;
/// the recorder writes the lines operators need at info level).
fn observe(job: &Job, record: &AttemptRecord) {
    let attempt = &record.attempt;
    let success = record.status == LogStatus::Success;
    let duration = Duration::from_millis(attempt.duration_ms.unsigned_abs());
    let since_ingest = success.then(|| {
        Duration::from_millis(
            (attempt.sent_at + attempt.duration_ms - job.ticket.log.created_at).unsigned_abs(),
        )
    });
    metrics::attempt(success, attempt.response_code, duration, since_ingest);
    tracing::debug!(
        log.id = %record.log_id,
        webhook.id = ?record.webhook_id,
        send_type = attempt.send_type.as_str(),
        status = ?attempt.response_code,
        duration_ms = attempt.duration_ms,
        outcome = record.status.as_str(),
        "attempt finished"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::limiter::Limiter;

    fn new_guard() -> (SlotGuard, mpsc::UnboundedReceiver<Message>) {
        let (inbox, messages) = mpsc::unbounded_channel();
        let started = Limiter::new(8).start(0, false);
        (SlotGuard::new(inbox, Uuid::now_v7(), 7, started), messages)
    }

    #[tokio::test]
    async fn a_finished_attempt_gives_its_slot_back_with_its_outcome() {
        let (guard, mut messages) = new_guard();
        guard.finished(Signal::Success, Duration::from_millis(3));
        let Some(Message::Finished { attempt, outcome, .. }) = messages.recv().await else {
            panic!("no report")
        };
        assert_eq!(attempt, 7);
        assert_eq!(outcome, Some((Signal::Success, Duration::from_millis(3))));
    }

    #[tokio::test]
    async fn an_attempt_that_panics_or_is_cancelled_still_gives_its_slot_back() {
        let (guard, mut messages) = new_guard();
        let task = tokio::spawn(async move {
            let _guard = guard;
            panic!("a bug in a send");
        });
        assert!(task.await.is_err());
        assert!(matches!(messages.recv().await, Some(Message::Finished { outcome: None, .. })));

        let (guard, mut messages) = new_guard();
        let task = tokio::spawn(async move {
            let _guard = guard;
            std::future::pending::<()>().await;
        });
        task.abort();
        let _ = task.await;
        assert!(matches!(messages.recv().await, Some(Message::Finished { outcome: None, .. })));
    }
}
