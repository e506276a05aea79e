//! The delivery workers: claim due logs → send → record → reschedule.
//!
//! [`Dispatcher::step`] claims as many due logs as there are free sending slots and starts an
//! attempt for each; [`Dispatcher::run`] calls it in a loop, sleeping when idle until new work is
//! announced or the next log falls due. Results go to the [`recorder`], which writes them in
//! batches. No transaction or row lock is held across an HTTP call: a claim is a lease.

pub mod immediate;
mod plan;
pub mod recorder;
pub mod recovery;
mod resolver;
pub mod retry;
pub mod sender;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

pub use plan::{decide, observe, Job};
use recorder::Recorder;
use retry::RetryPolicy;
use sender::Sender;

use crate::domain::clock::now_ms;
use crate::store::{Store, StoreError};
use crate::telemetry::metrics;

/// Tuning of one node's dispatcher.
#[derive(Debug, Clone)]
pub struct DispatchConfig {
    /// Attempts in flight at once on this node.
    pub concurrency: usize,
    /// Most logs claimed by one query.
    pub claim_batch: usize,
    /// On shutdown, how long attempts in flight may take to finish.
    pub shutdown_grace: Duration,
    pub policy: RetryPolicy,
}

/// A destination (webhook) may use at most this share of the sending slots, so a slow or hanging
/// endpoint cannot hold up deliveries to the others.
const DESTINATION_SHARE: usize = 2;
/// A log deferred because its destination is at its share is due again this much later.
const DEFER_MS: i64 = 100;

/// Longest wait for a batch of free slots before claiming with what is free.
const REFILL_WAIT: Duration = Duration::from_millis(2);

/// When idle, look again at least this often (catches a missed wake-up or another node's
/// expired lease without polling busily).
const IDLE_RECHECK: Duration = Duration::from_secs(30);

/// What one [`Dispatcher::step`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Started this many attempts.
    Dispatched(usize),
    /// Nothing is due.
    Idle,
    /// Every sending slot is busy.
    Saturated,
    /// Everything claimed went back: its destinations are at their share of the slots.
    Deferred,
}

#[derive(Clone)]
pub struct Dispatcher {
    store: Store,
    sender: Sender,
    config: Arc<DispatchConfig>,
    permits: Arc<Semaphore>,
    recorder: Recorder,
    /// Claimed logs whose result is not recorded yet; released on shutdown.
    in_flight: Arc<Mutex<HashSet<Uuid>>>,
    /// True while [`Dispatcher::run`] runs (readiness).
    running: Arc<AtomicBool>,
    /// Attempts in flight per destination (webhook, or organization for per-call URLs).
    per_destination: Arc<Mutex<HashMap<Uuid, usize>>>,
    /// Notified whenever an attempt finishes (a destination may have room again).
    finished: Arc<Notify>,
}

impl Dispatcher {
    pub fn new(store: Store, sender: Sender, config: DispatchConfig) -> Self {
        let in_flight = Arc::new(Mutex::new(HashSet::new()));
        let recorder = Recorder::spawn(store.clone(), in_flight.clone());
        Self {
            permits: Arc::new(Semaphore::new(config.concurrency)),
            config: Arc::new(config),
            store,
            sender,
            recorder,
            in_flight,
            running: Arc::new(AtomicBool::new(false)),
            per_destination: Arc::new(Mutex::new(HashMap::new())),
            finished: Arc::new(Notify::new()),
        }
    }

    /// A flag that is true while this dispatcher runs.
    pub fn running_flag(&self) -> Arc<AtomicBool> {
        self.running.clone()
    }

    /// Claims what is due (up to the free slots) and starts an attempt for each.
    pub async fn step(&self) -> Result<Step, StoreError> {
        let free = self.permits.available_permits();
        if free == 0 {
            return Ok(Step::Saturated);
        }
        let claimed = self.store.claim_due(free.min(self.config.claim_batch)).await?;
        if claimed.is_empty() {
            return Ok(Step::Idle);
        }
        self.track(claimed.iter().map(|log| log.id));
        let (jobs, skips) = plan::prepare(&self.store, claimed, None).await?;
        self.recorder.skip(skips).await;
        let claimed_jobs = jobs.len();
        let jobs = self.admit(jobs).await?;
        if jobs.is_empty() && claimed_jobs > 0 {
            return Ok(Step::Deferred);
        }
        let started = jobs.len();
        for job in jobs {
            let Ok(permit) = self.permits.clone().try_acquire_owned() else {
                // Cannot happen (we claimed at most the free slots); the lease covers it anyway.
                break;
            };
            let (sender, recorder, config, permits) = (
                self.sender.clone(),
                self.recorder.clone(),
                self.config.clone(),
                self.permits.clone(),
            );
            let per_destination = self.per_destination.clone();
            let finished = self.finished.clone();
            let span =
                tracing::debug_span!("attempt", log.id = %job.log.id, event.id = %job.log.event_id);
            tokio::spawn(
                async move {
                    let sent = sender.send(&job.outgoing).await;
                    drop(permit);
                    leave(&per_destination, destination(&job));
                    finished.notify_one();
                    metrics::in_flight(config.concurrency - permits.available_permits());
                    let record = decide(&job, &sent, &config.policy, rand::random());
                    observe(&job, &record);
                    recorder.attempt(record).await;
                }
                .instrument(span),
            );
        }
        metrics::in_flight(self.config.concurrency - self.permits.available_permits());
        Ok(Step::Dispatched(started))
    }

    /// Runs until `stop`, then lets attempts in flight finish (within the grace period), records
    /// their results and releases the claims of any still unfinished.
    pub async fn run(self, stop: CancellationToken) {
        self.running.store(true, Ordering::Relaxed);
        let wake = self.store.work_notifier();
        self.store.spawn_work_listener(stop.clone());
        tokio::spawn(recovery::run(self.store.clone(), stop.clone()));
        match self.store.release_orphaned_claims().await {
            Ok(0) => {}
            Ok(released) => tracing::info!(released, "released claims left by a previous process"),
            Err(error) => tracing::warn!(error = %error, "cannot release orphaned claims"),
        }
        let mut waited = false;
        while !stop.is_cancelled() {
            // Under load, claim when a worthwhile batch of slots is free (one query then fills
            // many slots instead of one query per finished attempt), waiting for that briefly.
            let free = self.permits.available_permits();
            if !waited && free < self.refill_at() && free < self.config.concurrency {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = self.slots_to_fill() => {}
                }
                waited = true;
                continue;
            }
            waited = false;
            // Registered before looking, so a wake-up during the claim is not lost.
            let notified = wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.step().await {
                Ok(Step::Dispatched(_)) => continue,
                Ok(Step::Saturated) => {
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = self.permits.acquire() => {}
                    }
                }
                Ok(Step::Deferred) => {
                    // Claiming again at once would only defer again: wait for room.
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = self.finished.notified() => {}
                        _ = tokio::time::sleep(Duration::from_millis(DEFER_MS.unsigned_abs())) => {}
                    }
                }
                Ok(Step::Idle) => {
                    let wait = self.idle_wait().await;
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = &mut notified => {}
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
                Err(error) => {
                    tracing::error!(error = %error, "claiming due deliveries failed");
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
        self.running.store(false, Ordering::Relaxed);
        self.drain().await;
    }

    /// Free slots worth a claim while attempts are in flight.
    fn refill_at(&self) -> usize {
        (self.config.concurrency / 4).clamp(1, self.config.claim_batch)
    }

    /// Waits until [`Self::refill_at`] slots are free, or briefly, so new work is never held
    /// back long behind slow attempts.
    async fn slots_to_fill(&self) {
        let want = u32::try_from(self.refill_at()).unwrap_or(u32::MAX);
        let _ = tokio::time::timeout(REFILL_WAIT, self.permits.acquire_many(want)).await;
    }

    /// Until the next log falls due, but no longer than [`IDLE_RECHECK`].
    async fn idle_wait(&self) -> Duration {
        match self.store.next_due_at().await {
            Ok(Some(due)) => {
                let until = u64::try_from(due - now_ms()).unwrap_or(0);
                Duration::from_millis(until.max(5)).min(IDLE_RECHECK)
            }
            Ok(None) => IDLE_RECHECK,
            Err(error) => {
                tracing::warn!(error = %error, "cannot read the next due time");
                Duration::from_secs(1)
            }
        }
    }

    async fn drain(self) {
        let all = u32::try_from(self.config.concurrency).unwrap_or(u32::MAX);
        let finished =
            tokio::time::timeout(self.config.shutdown_grace, self.permits.acquire_many(all)).await;
        if finished.is_err() {
            tracing::warn!("attempts still in flight after the shutdown grace period");
        }
        self.recorder.finish().await;
        let unfinished: Vec<Uuid> = self.lock_in_flight().drain().collect();
        if !unfinished.is_empty() {
            tracing::info!(count = unfinished.len(), "releasing unfinished claims");
            if let Err(error) = self.store.release(&unfinished, now_ms()).await {
                tracing::warn!(error = %error, "cannot release claims; their leases will expire");
            }
        }
    }

    /// Keeps the jobs whose destination is under its share of the slots (counting them in);
    /// gives the others back to the queue for a little later.
    async fn admit(&self, jobs: Vec<Job>) -> Result<Vec<Job>, StoreError> {
        let share = (self.config.concurrency / DESTINATION_SHARE).max(1);
        let (admitted, deferred): (Vec<Job>, Vec<Job>) = {
            let mut counts = lock(&self.per_destination);
            jobs.into_iter().partition(|job| {
                let count = counts.entry(destination(job)).or_default();
                let admit = *count < share;
                *count += usize::from(admit);
                admit
            })
        };
        if !deferred.is_empty() {
            let ids: Vec<Uuid> = deferred.iter().map(|job| job.log.id).collect();
            self.store.release(&ids, now_ms() + DEFER_MS).await?;
            let mut in_flight = self.lock_in_flight();
            for id in &ids {
                in_flight.remove(id);
            }
        }
        Ok(admitted)
    }

    fn track(&self, ids: impl Iterator<Item = Uuid>) {
        self.lock_in_flight().extend(ids);
    }

    fn lock_in_flight(&self) -> std::sync::MutexGuard<'_, HashSet<Uuid>> {
        lock(&self.in_flight)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Whose share of the slots an attempt uses: its webhook, or for a per-call URL its organization.
fn destination(job: &Job) -> Uuid {
    job.log.webhook_id.unwrap_or(job.log.org_id)
}

/// One attempt to `destination` finished.
fn leave(per_destination: &Mutex<HashMap<Uuid, usize>>, destination: Uuid) {
    let mut counts = lock(per_destination);
    if let Some(count) = counts.get_mut(&destination) {
        *count = count.saturating_sub(1);
        if *count == 0 {
            counts.remove(&destination);
        }
    }
}
