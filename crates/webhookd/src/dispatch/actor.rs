//! The dispatcher's loop: one task owns the scheduler and every ticket this node holds, takes
//! messages (hand-offs, claims, finished attempts, recorded results, announcements), and turns
//! the scheduler's decisions into attempts and database requests. Nothing in it waits on I/O.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::attempt::{self, Context};
use super::feeder::Feed;
use super::job;
use super::lane::LaneSettings;
use super::recorder::Recorder;
use super::scheduler::{Decision, Limits, Scheduler};
use super::sender::Sender;
use super::ticket::{ExplicitResult, Kind, Ticket};
use super::{DispatchConfig, Message};
use crate::domain::clock::{now_ms, now_us, UnixMs};
use crate::store::{lease_ms, LaneClaim, QueuedLog, Store};
use crate::telemetry::metrics;

/// How long cut attempts may take to stop after the grace period (they stop at their next poll).
const CUT_ATTEMPTS_STOP: Duration = Duration::from_secs(1);

/// Housekeeping: gauges, forgetting idle lanes, and on PostgreSQL the rescans that find work
/// other nodes announced while this one was not listening (or left behind by a dead node).
const TICK: Duration = Duration::from_secs(5);
const RESCAN_EVERY_TICKS: u32 = 2;
/// Settings of webhook lanes are reloaded at least this often on PostgreSQL (a change
/// announced by another node while this one was not listening is picked up).
const SETTINGS_TTL_MS: i64 = 30_000;
/// A resend of a log this node holds asks again this many times, this far apart, before it
/// answers that the log is busy.
const BUSY_TRIES: u32 = 10;
const BUSY_WAIT: Duration = Duration::from_millis(100);
/// An attempt unanswered for this long (or four of its lane's usual round trips, whichever is
/// longer) counts as stalled.
const STALL_MIN: Duration = Duration::from_millis(500);

pub(super) struct Actor {
    pub store: Store,
    pub config: Arc<DispatchConfig>,
    pub scheduler: Scheduler,
    pub inbox: mpsc::UnboundedReceiver<Message>,
    pub feeder: mpsc::UnboundedSender<Feed>,
    pub attempts: Context,
    pub recorder: Recorder,
    pub postgres: bool,
    /// Every log this node holds (queued, in flight, being recorded), with its lane.
    pub owned: HashMap<Uuid, Uuid>,
    /// Attempts moved to the stalled pool.
    pub stalled: HashSet<u64>,
    pub next_attempt: u64,
    /// Smoothed round trip of each lane's successful attempts, in milliseconds.
    pub srtt: HashMap<Uuid, f64>,
}

/// The channels an actor is wired to: its inbox (and a sender into it, for its attempts), the
/// feeder's and the recorder's.
pub(super) struct Wiring {
    pub inbox: mpsc::UnboundedReceiver<Message>,
    pub inbox_tx: mpsc::UnboundedSender<Message>,
    pub feeder: mpsc::UnboundedSender<Feed>,
    pub recorder: Recorder,
}

impl Actor {
    /// An actor with `config`'s limits (a quarter of the stalled pool per organization, one at
    /// least), sending through `sender`.
    pub fn new(store: Store, sender: Sender, config: Arc<DispatchConfig>, wiring: Wiring) -> Self {
        let Wiring { inbox, inbox_tx, feeder, recorder } = wiring;
        let limits = Limits {
            concurrency: config.concurrency,
            stalled: config.stalled,
            stalled_per_org: (config.stalled / 4).max(1),
        };
        Actor {
            postgres: store.backend() == crate::store::Backend::Postgres,
            store,
            scheduler: Scheduler::new(limits),
            inbox,
            feeder,
            attempts: Context {
                sender,
                recorder: recorder.clone(),
                policy: Arc::new(config.policy.clone()),
                inbox: inbox_tx,
                tracer: config.tracer.clone(),
                cut: CancellationToken::new(),
            },
            recorder,
            config,
            owned: HashMap::new(),
            stalled: HashSet::new(),
            next_attempt: 0,
            srtt: HashMap::new(),
        }
    }

    pub async fn run(
        mut self,
        stop: CancellationToken,
        running: Arc<std::sync::atomic::AtomicBool>,
    ) {
        running.store(true, Ordering::Relaxed);
        if self.config.feed_from_database {
            match self.store.release_orphaned_claims().await {
                Ok(0) => {}
                Ok(released) => {
                    tracing::info!(released, "released claims left by a previous process")
                }
                Err(error) => tracing::warn!(error = %error, "cannot release orphaned claims"),
            }
            let _ = self.feeder.send(Feed::Rescan);
        }
        let mut tick = tokio::time::interval(TICK);
        let mut ticks = 0u32;
        let store = self.store.clone();
        loop {
            let announced = store.announcer().notified();
            tokio::pin!(announced);
            announced.as_mut().enable();
            self.absorb_announcements();
            let now = now_ms();
            self.scheduler.fire_timers(now);
            self.schedule().await;
            let wake = self.scheduler.next_timer().map_or(Duration::from_secs(3600), |at| {
                Duration::from_millis(u64::try_from(at - now_ms()).unwrap_or(0))
            });
            tokio::select! {
                _ = stop.cancelled() => break,
                message = self.inbox.recv() => {
                    let Some(message) = message else { break };
                    self.handle(message).await;
                    while let Ok(message) = self.inbox.try_recv() {
                        self.handle(message).await;
                    }
                }
                _ = &mut announced => {}
                _ = tokio::time::sleep(wake) => {}
                _ = tick.tick() => {
                    ticks += 1;
                    self.housekeeping(ticks.is_multiple_of(RESCAN_EVERY_TICKS));
                }
            }
        }
        running.store(false, Ordering::Relaxed);
        self.drain().await;
    }

    fn absorb_announcements(&mut self) {
        let pending = self.store.announcer().take();
        if pending.is_empty() {
            return;
        }
        for webhook in pending.changed {
            self.scheduler.forget_settings(webhook);
        }
        if !pending.orgs_changed.is_empty() {
            let per_call: Vec<Uuid> = self
                .scheduler
                .lanes()
                .filter(|l| {
                    pending.orgs_changed.contains(&l.org)
                        && matches!(l.settings, Some(LaneSettings::PerCall(_)))
                })
                .map(|l| l.id)
                .collect();
            per_call.into_iter().for_each(|lane| self.scheduler.forget_settings(lane));
        }
        if !self.config.feed_from_database {
            return;
        }
        for (lane, (org, due)) in pending.work {
            self.scheduler.due(lane, org, due);
        }
        if pending.rescan {
            let _ = self.feeder.send(Feed::Rescan);
        }
    }

    fn housekeeping(&mut self, rescan: bool) {
        let now = now_ms();
        if self.postgres && self.config.feed_from_database {
            if rescan {
                let _ = self.feeder.send(Feed::Rescan);
            }
            let stale: Vec<Uuid> = self
                .scheduler
                .lanes()
                .filter(|l| l.settings.is_some() && l.settings_at < now - SETTINGS_TTL_MS)
                .map(|l| l.id)
                .collect();
            stale.into_iter().for_each(|lane| self.scheduler.forget_settings(lane));
        }
        self.scheduler.forget_idle();
        let lanes: HashSet<Uuid> = self.scheduler.lanes().map(|l| l.id).collect();
        self.srtt.retain(|lane, _| lanes.contains(lane));
        metrics::lanes(lanes.len());
        let (active, stalled) = self.scheduler.in_flight();
        metrics::in_flight(active, stalled);
    }

    /// Takes every decision the scheduler can make now.
    async fn schedule(&mut self) {
        let mut claims = Vec::new();
        let mut loads = Vec::new();
        let now = now_ms();
        while let Some(decision) = self.scheduler.next(now, now_us()) {
            match decision {
                Decision::Start { ticket, started, probe } => {
                    self.start(ticket, started, probe, now).await
                }
                Decision::Claim { lane, want } => claims.push(self.claim(lane, want)),
                Decision::Load { lane, org, epoch } => loads.push((lane, org, epoch)),
                Decision::Slots { lane, want, step_us } => {
                    let _ = self.feeder.send(Feed::Slots { lane, want, step_us });
                }
                Decision::Probe { lane } => {
                    let timeout = self.settings(lane).map(|s| s.timeout()).unwrap_or_default();
                    let lease_until = now + lease_ms(timeout);
                    let _ = self.feeder.send(Feed::Probe { lane, lease_until });
                }
                Decision::Release(tickets) => self.release(tickets, now),
            }
        }
        if !loads.is_empty() {
            let _ = self.feeder.send(Feed::Load(loads));
        }
        if !claims.is_empty() {
            let _ = self.feeder.send(Feed::Claim(claims));
        }
        let (active, stalled) = self.scheduler.in_flight();
        metrics::in_flight(active, stalled);
    }

    fn settings(&self, lane: Uuid) -> Option<&LaneSettings> {
        self.scheduler.lane(lane).and_then(|l| l.settings.as_ref())
    }

    fn claim(&self, lane: Uuid, want: usize) -> LaneClaim {
        let settings = self.settings(lane);
        LaneClaim {
            lane,
            want,
            lease_ms: lease_ms(settings.map(LaneSettings::timeout).unwrap_or_default()),
            max_concurrency: settings.and_then(LaneSettings::max_concurrency).map(|c| c as u32),
        }
    }

    async fn start(
        &mut self,
        mut ticket: Ticket,
        started: super::limiter::Started,
        probe: bool,
        now: UnixMs,
    ) {
        // The last look before the send: an erasure or expiry announced since the ticket was
        // made (by this node before its answer, by others through `NOTIFY`).
        if let Some(state) = self.store.announcer().payload_gone(ticket.log.event_id) {
            ticket.log.payload_state = state;
        }
        let lane = ticket.lane();
        let Some(settings) = self.settings(lane).cloned() else {
            // The scheduler counted a slot for this start, and the ticket holds a claim: both go
            // back, or the lane would stay a slot short and its log stay claimed by nobody.
            self.scheduler.finished(lane, started, false, None);
            self.release(vec![ticket], now);
            return;
        };
        self.next_attempt += 1;
        match job::build(ticket, &settings, started, probe, self.next_attempt, now) {
            Ok(job) => {
                let timeout = job.outgoing.timeout;
                let usual = self
                    .srtt
                    .get(&lane)
                    .map_or(Duration::ZERO, |ms| Duration::from_secs_f64(ms * 4.0 / 1_000.0));
                let stall_after = usual.max(STALL_MIN).min(timeout);
                attempt::spawn(job, self.attempts.clone(), stall_after);
            }
            Err((ticket, skip)) => {
                self.scheduler.finished(lane, started, false, None);
                self.recorder.skip(skip, ticket).await;
            }
        }
    }

    /// Tickets leave memory unsent: their claims are given back (due now) and their lanes look
    /// at the database again.
    fn release(&mut self, tickets: Vec<Ticket>, now: UnixMs) {
        let mut written = Vec::new();
        for ticket in tickets {
            let (id, lane, org) = (ticket.log.id, ticket.lane(), ticket.log.org_id);
            self.forget(id);
            written.push(id);
            if let Kind::Explicit { batch, .. } = &ticket.kind {
                batch.done(ExplicitResult::Dropped(id));
            } else if self.config.feed_from_database {
                self.scheduler.due(lane, org, now);
            }
        }
        if !written.is_empty() {
            let _ = self.feeder.send(Feed::Release(written));
        }
    }

    fn forget(&mut self, log: Uuid) {
        self.owned.remove(&log);
    }

    /// Takes a log this node now holds; `false` when it already held it.
    fn own(&mut self, log: &QueuedLog) -> bool {
        self.owned.insert(log.id, log.lane_id).is_none()
    }

    async fn handle(&mut self, message: Message) {
        let now = now_ms();
        match message {
            Message::HandOver(logs) => {
                for handed in logs {
                    if self.own(&handed.log) {
                        self.scheduler.push(Ticket::automatic(handed.log, Some(handed.permit)));
                    }
                }
            }
            Message::Explicit { logs, send_type, batch } => {
                for log in logs {
                    if !self.own(&log) {
                        batch.done(ExplicitResult::Busy(log.id));
                        continue;
                    }
                    let kind = Kind::Explicit { send_type, batch: batch.clone() };
                    self.scheduler.push(Ticket { log: Box::new(log), kind, permit: None });
                }
            }
            Message::ExplicitExisting { org, ids, send_type, batch, tries } => {
                let (busy, free): (Vec<Uuid>, Vec<Uuid>) =
                    ids.into_iter().partition(|id| self.owned.contains_key(id));
                if !busy.is_empty() && tries < BUSY_TRIES {
                    // A log this node holds is often one whose result is being written (the
                    // caller saw it end a moment ago): ask again shortly before answering busy.
                    let (inbox, batch) = (self.attempts.inbox.clone(), batch.clone());
                    tokio::spawn(async move {
                        tokio::time::sleep(BUSY_WAIT).await;
                        let tries = tries + 1;
                        let again =
                            Message::ExplicitExisting { org, ids: busy, send_type, batch, tries };
                        let _ = inbox.send(again);
                    });
                } else {
                    busy.into_iter().for_each(|id| batch.done(ExplicitResult::Busy(id)));
                }
                if !free.is_empty() {
                    let lease_ms = lease_ms(crate::domain::webhook::Timeout::LARGEST);
                    let _ = self.feeder.send(Feed::ClaimForSend {
                        org,
                        ids: free,
                        lease_ms,
                        send_type,
                        batch,
                    });
                }
            }
            Message::Claimed { claimed, asked } => {
                let mut tickets = Vec::with_capacity(claimed.logs.len());
                for log in claimed.logs {
                    if self.own(&log) {
                        tickets.push(Ticket::automatic(log, None));
                    }
                }
                self.scheduler.claimed(claimed.lane, tickets, asked, claimed.next_due);
            }
            Message::ClaimFailed { lane, retry_at } => self.scheduler.claim_failed(lane, retry_at),
            Message::Settings(loaded) => {
                for (lane, epoch, settings) in loaded {
                    self.scheduler.settings_loaded(lane, epoch, settings, now);
                }
            }
            Message::SettingsFailed { lanes, retry_at } => {
                for (lane, epoch) in lanes {
                    self.scheduler.settings_failed(lane, epoch, retry_at);
                }
            }
            Message::Slots { lane, grant } => match grant {
                Some(grant) => self.scheduler.slots_granted(lane, &grant),
                None => self.scheduler.slots_failed(lane, now + 100),
            },
            Message::Probe { lane, taken, retry_at } => {
                self.scheduler.probe_taken(lane, taken, retry_at)
            }
            Message::Stalled { lane, attempt, started } => {
                if self.scheduler.stalled(lane, started) {
                    self.stalled.insert(attempt);
                }
            }
            Message::Finished { lane, attempt, started, outcome } => {
                let stalled = self.stalled.remove(&attempt);
                if let Some((crate::domain::circuit::Signal::Success, latency)) = outcome {
                    let ms = latency.as_secs_f64() * 1_000.0;
                    let srtt = self.srtt.entry(lane).or_insert(ms);
                    *srtt += (ms - *srtt) / 8.0;
                }
                self.scheduler.finished(lane, started, stalled, outcome.map(|(signal, _)| signal));
            }
            Message::Recorded { logs, due, circuits, lost } => {
                logs.iter().for_each(|log| self.forget(*log));
                if lost {
                    let _ = self.feeder.send(Feed::Release(logs));
                }
                for (lane, org, at) in due {
                    if self.config.feed_from_database {
                        self.scheduler.due(lane, org, at);
                    }
                }
                for (webhook, circuit) in circuits {
                    self.scheduler.circuit(webhook, circuit);
                }
            }
            Message::Rescanned(lanes) => {
                for lane in lanes {
                    self.scheduler.due(lane.lane_id, lane.org_id, lane.due_at);
                }
            }
        }
    }

    /// After a stop: held tickets go back, attempts in flight get the grace period to finish and
    /// be recorded; those still sending then are cut, and whatever is still held is given back.
    /// No attempt outlives its claim, so a clean shutdown never sends a log twice at once.
    async fn drain(mut self) {
        let held: Vec<Ticket> = self.scheduler.take_all_tickets();
        self.release(held, now_ms());
        let deadline = tokio::time::Instant::now() + self.config.shutdown_grace;
        if !self.until_nothing_in_flight(deadline).await {
            tracing::warn!(
                "attempts still in flight after the shutdown grace period: cutting them"
            );
            self.attempts.cut.cancel();
            // A cut attempt gives its slot back as it stops, at once: none is still sending when
            // the claims are released below.
            let stopped = tokio::time::Instant::now() + CUT_ATTEMPTS_STOP;
            if !self.until_nothing_in_flight(stopped).await {
                tracing::warn!("cut attempts did not stop; their claims are released anyway");
            }
        }
        self.recorder.finish().await;
        while let Ok(message) = self.inbox.try_recv() {
            if let Message::Recorded { .. } = message {
                self.handle(message).await;
            }
        }
        if !self.owned.is_empty() {
            let unfinished: Vec<Uuid> = self.owned.keys().copied().collect();
            tracing::info!(count = unfinished.len(), "releasing unfinished claims");
            if let Err(error) = self.store.release(&unfinished).await {
                tracing::warn!(error = %error, "cannot release claims; their leases will expire");
            }
        }
    }

    /// Handles messages until no attempt is in flight (`true`), or `deadline` passes (`false`).
    async fn until_nothing_in_flight(&mut self, deadline: tokio::time::Instant) -> bool {
        while self.scheduler.in_flight() != (0, 0) {
            match tokio::time::timeout_at(deadline, self.inbox.recv()).await {
                Ok(Some(message)) => self.handle(message).await,
                Ok(None) | Err(_) => return false,
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::dispatch::retry::RetryPolicy;
    use crate::dispatch::sender::Sender;
    use crate::domain::circuit::Breaker;
    use crate::domain::sealing::Sealer;
    use crate::store::WebhookSecrets;

    fn log(lane: Uuid, org: Uuid) -> QueuedLog {
        QueuedLog::sample(lane, org)
    }

    fn per_call() -> LaneSettings {
        LaneSettings::PerCall(Arc::new(WebhookSecrets {
            current: "s".into(),
            previous: None,
            previous_expires_at: None,
        }))
    }

    /// An actor with one active slot, whose feeder requests land in the returned receiver.
    async fn actor(dir: &tempfile::TempDir) -> (Actor, mpsc::UnboundedReceiver<Feed>) {
        let url = format!("sqlite://{}", dir.path().join("webhookd.db").display());
        let sealer = Sealer::from_base64(&Sealer::generate_key()).unwrap();
        let store = Store::connect(&url, sealer).await.unwrap();
        let config = Arc::new(DispatchConfig {
            concurrency: 1,
            stalled: 4,
            shutdown_grace: Duration::from_secs(1),
            policy: RetryPolicy { schedule: vec![Duration::from_secs(1)] },
            breaker: Breaker::default(),
            handoff_kib: 0,
            feed_from_database: true,
            tracer: None,
        });
        let (inbox_tx, inbox) = mpsc::unbounded_channel();
        let (feeder, fed) = mpsc::unbounded_channel();
        let (recorder, _task) = Recorder::spawn(store.clone(), inbox_tx.clone(), config.breaker);
        let sender = Sender::new(false, None).unwrap();
        let wiring = Wiring { inbox, inbox_tx, feeder, recorder };
        let actor = Actor::new(store, sender, config, wiring);
        (actor, fed)
    }

    /// A start whose lane lost its settings between the scheduler's decision and the attempt
    /// (the early return in `start`): the slot the scheduler counted and the log's claim are
    /// both given back, and the lane's next log still goes out on the node's only slot.
    #[tokio::test]
    async fn a_start_without_settings_gives_back_its_slot_and_its_claim() {
        let dir = tempfile::tempdir().unwrap();
        let (mut actor, mut fed) = actor(&dir).await;
        let (lane, org) = (Uuid::now_v7(), Uuid::now_v7());
        actor.scheduler.lane_mut(lane, org);
        actor.scheduler.settings_loaded(lane, 0, per_call(), 0);
        let (first, second) = (log(lane, org), log(lane, org));
        let (first_id, second_id) = (first.id, second.id);
        for log in [first, second] {
            assert!(actor.own(&log));
            actor.scheduler.push(Ticket::automatic(log, None));
        }

        let now = now_ms();
        let Some(Decision::Start { ticket, started, probe }) = actor.scheduler.next(now, now_us())
        else {
            panic!("the lane does not start its first log")
        };
        assert_eq!(ticket.log.id, first_id);
        assert_eq!(actor.scheduler.in_flight(), (1, 0), "the start counts a slot");
        // Announced changed before the attempt is built.
        actor.scheduler.forget_settings(lane);
        actor.start(ticket, started, probe, now).await;

        assert_eq!(actor.scheduler.in_flight(), (0, 0), "the active slot is given back");
        assert_eq!(actor.scheduler.lane(lane).unwrap().in_flight, 0, "and the lane's slot");
        assert!(!actor.owned.contains_key(&first_id), "the node no longer holds the log");
        match fed.try_recv() {
            Ok(Feed::Release(ids)) => assert_eq!(ids, vec![first_id], "its claim is released"),
            _ => panic!("the claim is not released"),
        }
        assert!(actor.owned.contains_key(&second_id));

        // The settings come back: the lane's next log takes the node's only slot.
        let epoch = actor.scheduler.lane(lane).unwrap().settings_epoch;
        actor.scheduler.settings_loaded(lane, epoch, per_call(), now);
        let mut started_logs = Vec::new();
        while let Some(decision) = actor.scheduler.next(now, now_us()) {
            if let Decision::Start { ticket, .. } = decision {
                started_logs.push(ticket.log.id);
            }
        }
        assert_eq!(started_logs, vec![second_id]);
        assert_eq!(actor.scheduler.in_flight(), (1, 0));
    }
}
