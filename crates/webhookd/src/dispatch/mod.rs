//! The delivery workers: lanes → send → record → reschedule (SPEC §4 "Scheduling").
//!
//! One task, the actor ([`actor`]), owns the [`scheduler`]: every destination is a lane with its
//! own adaptive concurrency limit ([`limiter`]), rate-limit slots (`domain::pacing`) and circuit
//! breaker (`domain::circuit`); lanes and organizations take turns for the node's sending slots.
//! Work reaches it handed over by ingestion on this node (no claim query), claimed lane by lane
//! from the database ([`feeder`]), or as explicit sends (test, Bland resend and create), which
//! go through the same lanes. Each attempt runs in a task of its own ([`attempt`]) and its result
//! goes to the [`recorder`], which writes results in batches. No transaction or row lock is held
//! across an HTTP call: a claim marks its logs held, under a lease on PostgreSQL.

mod actor;
mod attempt;
mod clients;
mod egress;
mod feeder;
mod job;
mod lane;
pub mod limiter;
mod oauth2;
mod recorder;
pub mod recovery;
mod resolver;
pub mod retry;
pub mod scheduler;
pub mod sender;
mod ticket;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub use ticket::ExplicitResult;

use crate::domain::circuit::{Breaker, Circuit, Signal};
use crate::domain::clock::UnixMs;
use crate::domain::pacing::Grant;
use crate::domain::SendType;
use crate::store::{HandedLog, Handoff, LaneClaimed, LaneDue, QueuedLog, Store};
use lane::LaneSettings;
use limiter::Started;
use retry::RetryPolicy;
use sender::Sender;
use ticket::ExplicitBatch;

/// Tuning of one node's dispatcher.
#[derive(Debug, Clone)]
pub struct DispatchConfig {
    /// Attempts actively in flight at once on this node.
    pub concurrency: usize,
    /// Attempts past their stall threshold this node keeps open at once (sockets, not CPU).
    pub stalled: usize,
    /// On shutdown, how long attempts in flight may take to finish.
    pub shutdown_grace: Duration,
    pub policy: RetryPolicy,
    /// How webhooks' circuit breakers are tuned.
    pub breaker: Breaker,
    /// Payload KiB this node holds in memory straight from ingestion.
    pub handoff_kib: usize,
    /// Take work from the database (a worker node); `false` on an API-only node, whose
    /// dispatcher sends only explicit sends.
    pub feed_from_database: bool,
    /// Makes attempt spans when traces are exported (`--otlp-endpoint`).
    pub tracer: Option<crate::telemetry::traces::Tracer>,
}

/// What the actor hears about.
pub(crate) enum Message {
    HandOver(Vec<HandedLog>),
    /// New logs held for an explicit send.
    Explicit {
        logs: Vec<QueuedLog>,
        send_type: SendType,
        batch: Arc<ExplicitBatch>,
    },
    /// Existing logs to send again (Bland resend).
    ExplicitExisting {
        org: Uuid,
        ids: Vec<Uuid>,
        send_type: SendType,
        batch: Arc<ExplicitBatch>,
        /// How many times logs this node held were asked again (see the actor).
        tries: u32,
    },
    Claimed {
        claimed: LaneClaimed,
        asked: usize,
    },
    ClaimFailed {
        lane: Uuid,
        retry_at: UnixMs,
    },
    /// Settings per lane, with the epoch they were asked for.
    Settings(Vec<(Uuid, u64, LaneSettings)>),
    SettingsFailed {
        lanes: Vec<(Uuid, u64)>,
        retry_at: UnixMs,
    },
    Slots {
        lane: Uuid,
        grant: Option<Grant>,
    },
    Probe {
        lane: Uuid,
        taken: bool,
        retry_at: UnixMs,
    },
    Stalled {
        lane: Uuid,
        attempt: u64,
        started: Started,
    },
    Finished {
        lane: Uuid,
        attempt: u64,
        started: Started,
        outcome: Option<(Signal, Duration)>,
    },
    /// Results written (`lost`: could not be written, so the logs are given back); `due` are
    /// (lane, organization, when) of retries and freed calls.
    Recorded {
        logs: Vec<Uuid>,
        due: Vec<(Uuid, Uuid, UnixMs)>,
        circuits: Vec<(Uuid, Circuit)>,
        lost: bool,
    },
    Rescanned(Vec<LaneDue>),
}

/// A handle on this node's dispatcher.
#[derive(Clone)]
pub struct Dispatcher {
    inbox: mpsc::UnboundedSender<Message>,
    handoff: Option<Handoff>,
    running: Arc<AtomicBool>,
}

impl Dispatcher {
    /// Starts the dispatcher's tasks; they stop when `stop` is cancelled (after draining). The
    /// handles are the actor's, the feeder's and the recorder's.
    pub fn start(
        store: Store,
        sender: Sender,
        config: DispatchConfig,
        stop: CancellationToken,
    ) -> (Dispatcher, Vec<tokio::task::JoinHandle<()>>) {
        let config = Arc::new(config);
        let (inbox_tx, inbox) = mpsc::unbounded_channel();
        let (feeder_tx, feeder_rx) = mpsc::unbounded_channel();
        let (recorder, recorder_task) =
            recorder::Recorder::spawn(store.clone(), inbox_tx.clone(), config.breaker);
        let feeder_task = feeder::spawn(store.clone(), feeder_rx, inbox_tx.clone());
        let handoff = (config.feed_from_database && config.handoff_kib > 0)
            .then(|| Handoff::new(Arc::new(Semaphore::new(config.handoff_kib))));
        let running = Arc::new(AtomicBool::new(false));
        let wiring =
            actor::Wiring { inbox, inbox_tx: inbox_tx.clone(), feeder: feeder_tx, recorder };
        let actor = actor::Actor::new(store, sender, config, wiring);
        let actor_task = tokio::spawn(actor.run(stop, running.clone()));
        let dispatcher = Dispatcher { inbox: inbox_tx, handoff, running };
        (dispatcher, vec![actor_task, feeder_task, recorder_task])
    }

    /// What ingestion may hand straight to this dispatcher (`None`: nothing; API-only node).
    pub fn handoff(&self) -> Option<&Handoff> {
        self.handoff.as_ref()
    }

    pub fn hand_over(&self, logs: Vec<HandedLog>) {
        if !logs.is_empty() {
            let _ = self.inbox.send(Message::HandOver(logs));
        }
    }

    /// Sends `logs` (created held for this send) now, through their lanes, and answers with
    /// each result once recorded.
    pub async fn send_held(
        &self,
        logs: Vec<QueuedLog>,
        send_type: SendType,
    ) -> Vec<ExplicitResult> {
        let ids: Vec<Uuid> = logs.iter().map(|log| log.id).collect();
        let (batch, answer) = ExplicitBatch::new(logs.len());
        if logs.is_empty() {
            return Vec::new();
        }
        let _ = self.inbox.send(Message::Explicit { logs, send_type, batch });
        answer.await.unwrap_or_else(|_| ids.into_iter().map(ExplicitResult::Dropped).collect())
    }

    /// Sends existing logs of `org` again now (Bland resend). A log another send holds comes back
    /// `Busy`.
    pub async fn resend(
        &self,
        org: Uuid,
        ids: Vec<Uuid>,
        send_type: SendType,
    ) -> Vec<ExplicitResult> {
        if ids.is_empty() {
            return Vec::new();
        }
        let (batch, answer) = ExplicitBatch::new(ids.len());
        let fallback = ids.clone();
        let _ = self.inbox.send(Message::ExplicitExisting { org, ids, send_type, batch, tries: 0 });
        answer.await.unwrap_or_else(|_| fallback.into_iter().map(ExplicitResult::Dropped).collect())
    }

    /// True while the dispatcher runs (readiness).
    pub fn running_flag(&self) -> Arc<AtomicBool> {
        self.running.clone()
    }
}
