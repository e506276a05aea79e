//! One lane's state on this node: what it holds, what it may send, and what it waits for.

use std::collections::VecDeque;
use std::sync::Arc;

use uuid::Uuid;

use super::limiter::{Limiter, Started};
use super::ticket::Ticket;
use crate::domain::circuit::Circuit;
use crate::domain::clock::UnixMs;
use crate::domain::pacing::Slots;
use crate::domain::webhook::Timeout;
use crate::store::{Webhook, WebhookSecrets};

/// What a lane's destination is, loaded from the database.
#[derive(Debug, Clone)]
pub enum LaneSettings {
    Webhook(Arc<Webhook>),
    /// Per-call `webhook_url`s of one organization and host, signed with the organization's
    /// secret.
    PerCall(Arc<WebhookSecrets>),
    /// The webhook was deleted (its logs with it).
    Gone,
}

impl LaneSettings {
    pub fn timeout(&self) -> Timeout {
        match self {
            Self::Webhook(webhook) => webhook.settings.timeout,
            Self::PerCall(_) | Self::Gone => Timeout::DEFAULT,
        }
    }

    pub fn max_concurrency(&self) -> Option<usize> {
        match self {
            Self::Webhook(webhook) => webhook.settings.max_concurrency.map(|c| c.get() as usize),
            _ => None,
        }
    }

    pub fn rate_limit(&self) -> Option<u32> {
        match self {
            Self::Webhook(webhook) => webhook.settings.rate_limit.map(|r| r.get()),
            _ => None,
        }
    }

    pub fn webhook(&self) -> Option<&Arc<Webhook>> {
        match self {
            Self::Webhook(webhook) => Some(webhook),
            _ => None,
        }
    }
}

#[derive(Debug)]
pub struct Lane {
    pub id: Uuid,
    pub org: Uuid,
    pub settings: Option<LaneSettings>,
    /// When the settings were loaded (they are reloaded when announced changed, or when old).
    pub settings_at: UnixMs,
    pub loading: bool,
    /// Counts the settings' invalidations: a load asked for before the latest one is stale.
    pub settings_epoch: u64,
    pub limiter: Limiter,
    pub in_flight: usize,
    /// Of `in_flight`, requests past the stall threshold (they hold no active slot).
    pub stalled: usize,
    /// Explicit sends go before anything else.
    pub explicit: VecDeque<Ticket>,
    pub ready: VecDeque<Ticket>,
    /// The earliest due time of this lane's logs in the database that this node does not hold.
    pub db_due: Option<UnixMs>,
    pub claiming: bool,
    /// Work announced while a claim was under way (that claim may not have seen it).
    pub due_while_claiming: Option<UnixMs>,
    pub circuit: Circuit,
    /// A probe is being taken (the database decides which node sends it).
    pub probing: bool,
    /// This node holds the probe: exactly one automatic attempt may go.
    pub probe_granted: bool,
    /// Rate-limit slots this node holds.
    pub slots: Slots,
    pub slots_requested: bool,
    pub in_ring: bool,
    /// Its endpoint answered the last attempt that ended (no stall, no timeout or 5xx since):
    /// its attempts start without a place in the stalled pool.
    pub proven: bool,
    /// It waits in its organization's queue for a place in the stalled pool.
    pub waiting: bool,
}

impl Lane {
    pub fn new(id: Uuid, org: Uuid, ceiling: usize) -> Self {
        Self {
            id,
            org,
            settings: None,
            settings_at: 0,
            loading: false,
            settings_epoch: 0,
            limiter: Limiter::new(ceiling),
            in_flight: 0,
            stalled: 0,
            explicit: VecDeque::new(),
            ready: VecDeque::new(),
            db_due: None,
            claiming: false,
            due_while_claiming: None,
            circuit: Circuit::default(),
            probing: false,
            probe_granted: false,
            slots: Slots::default(),
            slots_requested: false,
            in_ring: false,
            proven: false,
            waiting: false,
        }
    }

    /// Requests of this lane allowed in flight now (automatic sends).
    pub fn limit(&self) -> usize {
        let adaptive = self.limiter.limit();
        match self.settings.as_ref().and_then(LaneSettings::max_concurrency) {
            Some(cap) => adaptive.min(cap),
            None => adaptive,
        }
    }

    /// Requests allowed in flight for explicit sends: only the webhook's own cap applies.
    pub fn hard_cap(&self, node_slots: usize) -> usize {
        self.settings.as_ref().and_then(LaneSettings::max_concurrency).unwrap_or(node_slots)
    }

    pub fn start(&mut self) -> Started {
        let backlogged = !self.ready.is_empty() || self.db_due.is_some();
        let started = self.limiter.start(self.in_flight, backlogged);
        self.in_flight += 1;
        started
    }

    /// Whether the lane holds no ticket and has nothing in flight or pending here.
    pub fn is_idle(&self) -> bool {
        self.in_flight == 0
            && self.explicit.is_empty()
            && self.ready.is_empty()
            && self.db_due.is_none()
            && !self.claiming
            && !self.loading
            && !self.probing
    }

    /// Takes the next db due time into account (the earliest wins).
    pub fn due_at(&mut self, due: UnixMs) {
        self.db_due = Some(self.db_due.map_or(due, |current| current.min(due)));
    }
}
