//! Writes attempt results in batches: whatever has accumulated while the previous batch was being
//! written goes into the next transaction, so the database sees one commit per batch rather than
//! one per attempt.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::store::{AttemptRecord, SkipRecord, Store};

/// Most results in one transaction.
const BATCH: usize = 1_000;
/// A failed batch write is retried this many times; after that its logs' leases expire and they
/// are attempted again (at least once, never lost).
const WRITE_TRIES: u32 = 5;

enum Message {
    Attempt(AttemptRecord),
    Skips(Vec<SkipRecord>),
    Finish(oneshot::Sender<()>),
}

#[derive(Clone)]
pub struct Recorder {
    queue: mpsc::Sender<Message>,
}

impl Recorder {
    pub fn spawn(store: Store, in_flight: Arc<Mutex<HashSet<Uuid>>>) -> Self {
        let (queue, inbox) = mpsc::channel(BATCH * 4);
        tokio::spawn(run(store, inbox, in_flight));
        Self { queue }
    }

    pub async fn attempt(&self, record: AttemptRecord) {
        let _ = self.queue.send(Message::Attempt(record)).await;
    }

    pub async fn skip(&self, skips: Vec<SkipRecord>) {
        if !skips.is_empty() {
            let _ = self.queue.send(Message::Skips(skips)).await;
        }
    }

    /// Writes everything queued so far, then stops the recorder.
    pub async fn finish(&self) {
        let (done, finished) = oneshot::channel();
        if self.queue.send(Message::Finish(done)).await.is_ok() {
            let _ = finished.await;
        }
    }
}

async fn run(
    store: Store,
    mut inbox: mpsc::Receiver<Message>,
    in_flight: Arc<Mutex<HashSet<Uuid>>>,
) {
    let mut messages = Vec::with_capacity(BATCH);
    while inbox.recv_many(&mut messages, BATCH).await > 0 {
        let mut attempts = Vec::with_capacity(messages.len());
        let mut skips = Vec::new();
        let mut finished = None;
        for message in messages.drain(..) {
            match message {
                Message::Attempt(record) => attempts.push(record),
                Message::Skips(more) => skips.extend(more),
                Message::Finish(done) => finished = Some(done),
            }
        }
        if write(&store, &attempts, &skips).await {
            let mut in_flight = in_flight.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            for id in attempts.iter().map(|a| a.log_id).chain(skips.iter().map(|s| s.log_id)) {
                in_flight.remove(&id);
            }
        }
        if attempts.iter().any(|a| a.next_attempt_at.is_some()) {
            store.wake_dispatcher();
        }
        if let Some(done) = finished {
            let _ = done.send(());
            return;
        }
    }
}

/// Whether the batch was written; unwritten logs stay in flight, to be released on shutdown.
async fn write(store: &Store, attempts: &[AttemptRecord], skips: &[SkipRecord]) -> bool {
    for attempt in 1..=WRITE_TRIES {
        match store.record(attempts, skips).await {
            Ok(()) => return true,
            Err(error) => {
                tracing::error!(error = %error, attempt, results = attempts.len(), "recording attempt results failed");
                tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
            }
        }
    }
    false
}
