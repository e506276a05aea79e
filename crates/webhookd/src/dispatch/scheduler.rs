//! Which lane sends next: the scheduling decisions of one node, as plain data (no I/O, no clock
//! of its own), so tests drive them step by step.
//!
//! - **Fair turns.** Organizations with work take turns; within one, its lanes take turns; each
//!   turn starts one attempt (deficit round robin with a quantum of one). A lane with a huge
//!   backlog gets its turn, never every turn, and a tenant with hundreds of lanes gets one turn
//!   per round like a tenant with one.
//! - **Active and stalled slots.** `concurrency` bounds the attempts actively in flight (what
//!   costs CPU). An attempt unanswered past its lane's stall threshold gives its active slot back
//!   and waits in the stalled pool, which costs a socket and a little memory; the pool is bounded
//!   overall and per organization (file descriptors). A wall of hanging endpoints therefore
//!   fills the stalled pool, not the active slots: healthy lanes keep sending.
//! - **Places reserved before a start.** An attempt to an endpoint not *proven* (a new lane, or
//!   one whose last attempt stalled, timed out or failed) starts only with a place in the stalled
//!   pool reserved for it, so if it hangs it always has somewhere to wait and never keeps an
//!   active slot for its whole timeout. One organization reserves at most a quarter of the pool,
//!   and the last eighth is kept for organizations holding no place (one each): thousands of
//!   dead endpoints of one tenant, or of fifty, wait for their places while every other
//!   tenant's deliveries go on. A lane without a place waits in its organization's queue and costs
//!   nothing (no claim, no start) until a place frees. Proven lanes start without a place.
//! - **Lane limits.** A lane starts an automatic attempt only under its adaptive limit (and
//!   `max_concurrency`), with a rate slot if it has a `rate_limit`, and while its circuit is
//!   closed (or it holds the probe). Explicit sends skip the adaptive limit and the circuit.
//! - A lane that cannot act leaves the turn ring and costs nothing until something that concerns
//!   it happens (an attempt ends, a claim or settings arrive, a timer fires): no polling, no
//!   "defer and re-claim" churn.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};

use uuid::Uuid;

use super::lane::{Lane, LaneSettings};
use super::limiter::Started;
use super::ticket::Ticket;
use crate::domain::circuit::{Circuit, Signal};
use crate::domain::clock::UnixMs;
use crate::domain::pacing::{step_us, Grant, HORIZON_US};

/// Most logs one claim asks for per lane.
pub const CLAIM_MAX: usize = 256;

/// What the dispatcher should do next.
#[derive(Debug)]
pub enum Decision {
    /// Send this ticket now; `probe` when it is its circuit's probe.
    Start { ticket: Ticket, started: Started, probe: bool },
    /// Claim up to `want` due logs of this lane.
    Claim { lane: Uuid, want: usize },
    /// Load the lane's settings (a new lane, or announced changed); `epoch` comes back with them.
    Load { lane: Uuid, org: Uuid, epoch: u64 },
    /// Take rate-limit slots of this webhook.
    Slots { lane: Uuid, want: usize, step_us: i64 },
    /// Try to take the probe of this lane's open circuit.
    Probe { lane: Uuid },
    /// These tickets leave memory unsent (their lane cannot send them soon, or is gone); held
    /// claims are given back.
    Release(Vec<Ticket>),
}

/// Tuning of the scheduler.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Attempts actively in flight on this node.
    pub concurrency: usize,
    /// Stalled attempts on this node.
    pub stalled: usize,
    /// Stalled attempts of one organization.
    pub stalled_per_org: usize,
}

/// The share of the stalled pool kept for organizations that hold no place: one place each, so
/// tenants with dead endpoints arriving late cannot take the last places from everyone else.
const KEPT_FOR_NEWCOMERS: usize = 8;

#[derive(Debug, Default)]
struct Org {
    ring: VecDeque<Uuid>,
    in_ring: bool,
    stalled: usize,
    /// Places in the stalled pool its attempts in flight hold.
    reserved: usize,
    /// Its lanes waiting for a place, oldest first.
    waiting: VecDeque<Uuid>,
}

#[derive(Debug)]
pub struct Scheduler {
    limits: Limits,
    lanes: HashMap<Uuid, Lane>,
    orgs: HashMap<Uuid, Org>,
    org_ring: VecDeque<Uuid>,
    active: usize,
    stalled: usize,
    /// Places of the stalled pool reserved by attempts in flight.
    reserved: usize,
    /// Stalled attempts that had no reserved place (proven lanes, explicit sends).
    stalled_unreserved: usize,
    /// Organizations with lanes waiting for a place, in turn.
    waiting_orgs: VecDeque<Uuid>,
    timers: BinaryHeap<Reverse<(UnixMs, Uuid)>>,
}

impl Scheduler {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            lanes: HashMap::new(),
            orgs: HashMap::new(),
            org_ring: VecDeque::new(),
            active: 0,
            stalled: 0,
            reserved: 0,
            stalled_unreserved: 0,
            waiting_orgs: VecDeque::new(),
            timers: BinaryHeap::new(),
        }
    }

    /// Attempts actively in flight and stalled ones.
    pub fn in_flight(&self) -> (usize, usize) {
        (self.active, self.stalled)
    }

    pub fn lane(&self, id: Uuid) -> Option<&Lane> {
        self.lanes.get(&id)
    }

    pub fn lanes(&self) -> impl Iterator<Item = &Lane> {
        self.lanes.values()
    }

    /// The lane, created for `org` if new.
    pub fn lane_mut(&mut self, id: Uuid, org: Uuid) -> &mut Lane {
        let ceiling = self.limits.concurrency;
        self.lanes.entry(id).or_insert_with(|| Lane::new(id, org, ceiling))
    }

    /// A ticket to send (automatic ones after explicit ones).
    pub fn push(&mut self, ticket: Ticket) {
        let id = ticket.lane();
        let lane = self.lane_mut(id, ticket.log.org_id);
        if ticket.is_explicit() {
            lane.explicit.push_back(ticket);
        } else {
            lane.ready.push_back(ticket);
        }
        self.touch(id);
    }

    /// The lane has logs in the database due at `due`.
    pub fn due(&mut self, lane: Uuid, org: Uuid, due: UnixMs) {
        let state = self.lane_mut(lane, org);
        if state.claiming {
            // The claim under way may have read before this work was written.
            state.due_while_claiming =
                Some(state.due_while_claiming.map_or(due, |current| current.min(due)));
        } else {
            state.due_at(due);
        }
        self.touch(lane);
    }

    /// Settings loaded for `epoch`; ignored when the lane was invalidated since (a newer load
    /// is then asked for).
    pub fn settings_loaded(&mut self, lane: Uuid, epoch: u64, settings: LaneSettings, now: UnixMs) {
        let node_slots = self.limits.concurrency;
        let Some(state) = self.lanes.get_mut(&lane) else { return };
        if state.settings_epoch != epoch {
            return;
        }
        if let LaneSettings::Webhook(webhook) = &settings {
            state.circuit = webhook.circuit;
        }
        let ceiling = settings.max_concurrency().unwrap_or(node_slots).min(node_slots);
        state.limiter.set_ceiling(ceiling);
        state.settings = Some(settings);
        state.settings_at = now;
        state.loading = false;
        self.touch(lane);
    }

    /// The lane's settings are stale: load them again before its next send.
    pub fn forget_settings(&mut self, lane: Uuid) {
        if let Some(state) = self.lanes.get_mut(&lane) {
            state.settings = None;
            state.settings_at = 0;
            state.settings_epoch += 1;
            state.loading = false;
            self.touch(lane);
        }
    }

    /// A claim came back with these tickets; `next_due` is when more falls due.
    pub fn claimed(
        &mut self,
        lane: Uuid,
        tickets: Vec<Ticket>,
        asked: usize,
        next_due: Option<UnixMs>,
    ) {
        let Some(state) = self.lanes.get_mut(&lane) else { return };
        state.claiming = false;
        let got = tickets.len();
        state.ready.extend(tickets);
        // A full claim means more may be due now; a short one that nothing more is due yet,
        // unless work was announced while it ran.
        state.db_due = if got >= asked { state.db_due } else { next_due };
        if let Some(announced) = state.due_while_claiming.take() {
            state.due_at(announced);
        }
        if let Some(due) = state.db_due {
            self.timers.push(Reverse((due, lane)));
        }
        self.touch(lane);
    }

    /// A claim failed: try again after `retry_at`.
    pub fn claim_failed(&mut self, lane: Uuid, retry_at: UnixMs) {
        if let Some(state) = self.lanes.get_mut(&lane) {
            state.claiming = false;
            state.db_due = Some(retry_at);
            self.timers.push(Reverse((retry_at, lane)));
        }
    }

    /// Loading the lane's settings failed: try again at `retry_at`.
    pub fn settings_failed(&mut self, lane: Uuid, epoch: u64, retry_at: UnixMs) {
        if let Some(state) = self.lanes.get_mut(&lane).filter(|s| s.settings_epoch == epoch) {
            state.loading = false;
            self.timers.push(Reverse((retry_at, lane)));
        }
    }

    /// Taking rate-limit slots failed: ask again at `retry_at`.
    pub fn slots_failed(&mut self, lane: Uuid, retry_at: UnixMs) {
        if let Some(state) = self.lanes.get_mut(&lane) {
            state.slots_requested = false;
            self.timers.push(Reverse((retry_at, lane)));
        }
    }

    /// Every ticket held, taken out of the lanes (the node is stopping).
    pub fn take_all_tickets(&mut self) -> Vec<Ticket> {
        self.lanes
            .values_mut()
            .flat_map(|lane| {
                lane.explicit.drain(..).chain(lane.ready.drain(..)).collect::<Vec<_>>()
            })
            .collect()
    }

    /// Rate-limit slots arrived for the lane.
    pub fn slots_granted(&mut self, lane: Uuid, grant: &Grant) {
        if let Some(state) = self.lanes.get_mut(&lane) {
            state.slots_requested = false;
            state.slots.add(grant);
            if let Some(at) = state.slots.next_at() {
                self.timers.push(Reverse((at.div_euclid(1_000), lane)));
            }
            self.touch(lane);
        }
    }

    /// Whether this node took the probe of the lane's open circuit.
    pub fn probe_taken(&mut self, lane: Uuid, taken: bool, retry_at: UnixMs) {
        if let Some(state) = self.lanes.get_mut(&lane) {
            state.probing = false;
            state.probe_granted = taken;
            if !taken {
                // Another node probes; look again when its lease or a new cooldown ends.
                state.circuit.retry_at = Some(retry_at);
                self.timers.push(Reverse((retry_at, lane)));
            }
            self.touch(lane);
        }
    }

    /// The lane's circuit changed (recorded here, or announced by another node).
    pub fn circuit(&mut self, lane: Uuid, circuit: Circuit) {
        if let Some(state) = self.lanes.get_mut(&lane) {
            state.circuit = circuit;
            if circuit.is_closed() {
                state.probe_granted = false;
            } else if let Some(at) = circuit.retry_at {
                self.timers.push(Reverse((at, lane)));
            }
            self.touch(lane);
        }
    }

    /// An attempt of `lane` stalled: moves it to the stalled pool if there is room, freeing its
    /// active slot (true). Either way the lane's limit shrinks.
    pub fn stalled(&mut self, lane: Uuid, started: Started) -> bool {
        let Some(state) = self.lanes.get_mut(&lane) else { return false };
        state.limiter.congested(started);
        state.proven = false;
        let org = self.orgs.entry(state.org).or_default();
        if !started.reserved {
            // No place was reserved: it may take a free one, never one reserved by others.
            let full = self.reserved + self.stalled_unreserved >= self.limits.stalled;
            if full || org.stalled >= self.limits.stalled_per_org {
                return false;
            }
            self.stalled_unreserved += 1;
        }
        org.stalled += 1;
        state.stalled += 1;
        self.stalled += 1;
        self.active = self.active.saturating_sub(1);
        true
    }

    /// An attempt of `lane` ended with `signal` (`None`: it never finished, e.g. cancelled).
    pub fn finished(
        &mut self,
        lane: Uuid,
        started: Started,
        stalled: bool,
        signal: Option<Signal>,
    ) {
        if stalled {
            self.stalled = self.stalled.saturating_sub(1);
            if !started.reserved {
                self.stalled_unreserved = self.stalled_unreserved.saturating_sub(1);
            }
        } else {
            self.active = self.active.saturating_sub(1);
        }
        if started.reserved {
            self.reserved = self.reserved.saturating_sub(1);
        }
        let Some(state) = self.lanes.get_mut(&lane) else { return };
        state.in_flight = state.in_flight.saturating_sub(1);
        let org_id = state.org;
        match signal {
            Some(Signal::Success | Signal::Refused) => {
                state.limiter.succeeded(started);
                state.proven = true;
            }
            Some(Signal::Unavailable) => {
                state.limiter.congested(started);
                state.proven = false;
            }
            None => {}
        }
        if stalled {
            state.stalled = state.stalled.saturating_sub(1);
        }
        if let Some(org) = self.orgs.get_mut(&org_id) {
            if stalled {
                org.stalled = org.stalled.saturating_sub(1);
            }
            if started.reserved {
                org.reserved = org.reserved.saturating_sub(1);
            }
        }
        self.touch(lane);
        if started.reserved {
            self.place_freed(org_id);
        }
    }

    /// Whether an attempt of `org` may reserve a place in the stalled pool now.
    fn can_reserve(&self, org: Uuid) -> bool {
        let cap = self.limits.stalled;
        let held = self.orgs.get(&org).map_or(0, |o| o.reserved);
        let taken = self.reserved + self.stalled_unreserved;
        let shared = cap - cap / KEPT_FOR_NEWCOMERS;
        held < self.limits.stalled_per_org && (taken < shared || (held == 0 && taken < cap))
    }

    /// The lane waits for a place: it leaves the ring until one frees.
    fn wait_for_place(&mut self, lane: Uuid, org_id: Uuid) {
        let Some(state) = self.lanes.get_mut(&lane) else { return };
        if state.waiting {
            return;
        }
        state.waiting = true;
        let org = self.orgs.entry(org_id).or_default();
        if org.waiting.is_empty() {
            self.waiting_orgs.push_back(org_id);
        }
        org.waiting.push_back(lane);
    }

    /// A place freed: a waiting lane of the same organization tries again, and one of the next
    /// organization in turn (the place may have been the pool's last shared one).
    fn place_freed(&mut self, org_id: Uuid) {
        self.wake_one(org_id);
        if let Some(next) = self.waiting_orgs.pop_front() {
            self.wake_one(next);
            if self.orgs.get(&next).is_some_and(|o| !o.waiting.is_empty()) {
                self.waiting_orgs.push_back(next);
            }
        }
    }

    fn wake_one(&mut self, org_id: Uuid) {
        let Some(org) = self.orgs.get_mut(&org_id) else { return };
        while let Some(lane) = org.waiting.pop_front() {
            if let Some(state) = self.lanes.get_mut(&lane) {
                state.waiting = false;
                self.touch(lane);
                return;
            }
        }
    }

    /// When the earliest timer fires.
    pub fn next_timer(&self) -> Option<UnixMs> {
        self.timers.peek().map(|Reverse((at, _))| *at)
    }

    /// Fires the timers due at `now`.
    pub fn fire_timers(&mut self, now: UnixMs) {
        while let Some(Reverse((at, lane))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            self.touch(lane);
        }
    }

    /// Forgets lanes with nothing left (a webhook with no traffic costs nothing).
    pub fn forget_idle(&mut self) {
        self.lanes.retain(|_, lane| !lane.is_idle() || lane.in_ring);
        let lanes = &self.lanes;
        self.orgs.retain(|id, org| {
            org.in_ring
                || org.stalled > 0
                || org.reserved > 0
                || lanes.values().any(|l| l.org == *id)
        });
        let orgs = &self.orgs;
        self.waiting_orgs.retain(|id| orgs.get(id).is_some_and(|o| !o.waiting.is_empty()));
    }

    /// Puts the lane in its organization's turn ring (it may be able to act). A lane with
    /// nothing in flight goes to the front, and an organization new to the ring likewise (as
    /// FQ-CoDel serves new flows first): an idle destination's fresh event takes the next slot,
    /// and since a turn is one attempt, a busy lane waits for one attempt at most.
    fn touch(&mut self, lane: Uuid) {
        let Some(state) = self.lanes.get_mut(&lane) else { return };
        if state.in_ring {
            return;
        }
        state.in_ring = true;
        let idle = state.in_flight == 0;
        let org = self.orgs.entry(state.org).or_default();
        if idle {
            org.ring.push_front(lane);
        } else {
            org.ring.push_back(lane);
        }
        if !org.in_ring {
            org.in_ring = true;
            self.org_ring.push_front(state.org);
        }
    }

    /// The next thing to do at `now`, or `None` when nothing can happen until something changes.
    pub fn next(&mut self, now: UnixMs, now_us: i64) -> Option<Decision> {
        while self.active < self.limits.concurrency {
            let org_id = self.org_ring.pop_front()?;
            let Some(org) = self.orgs.get_mut(&org_id) else { continue };
            let Some(lane_id) = org.ring.pop_front() else {
                org.in_ring = false;
                continue;
            };
            let decision = self.decide(lane_id, now, now_us);
            let org = self.orgs.entry(org_id).or_default();
            match &decision {
                Some(_) => org.ring.push_back(lane_id),
                None => {
                    if let Some(lane) = self.lanes.get_mut(&lane_id) {
                        lane.in_ring = false;
                    }
                }
            }
            if org.ring.is_empty() {
                org.in_ring = false;
            } else {
                self.org_ring.push_back(org_id);
            }
            if let Some(decision) = decision {
                if let Decision::Start { .. } = decision {
                    self.active += 1;
                }
                return Some(decision);
            }
        }
        None
    }

    /// What `lane` can do now, if anything.
    fn decide(&mut self, lane_id: Uuid, now: UnixMs, now_us: i64) -> Option<Decision> {
        let node_slots = self.limits.concurrency;
        let lane = self.lanes.get_mut(&lane_id)?;
        let Some(settings) = lane.settings.clone() else {
            if lane.loading {
                return None;
            }
            lane.loading = true;
            return Some(Decision::Load {
                lane: lane_id,
                org: lane.org,
                epoch: lane.settings_epoch,
            });
        };
        if matches!(settings, LaneSettings::Gone) {
            let gone: Vec<Ticket> = lane.explicit.drain(..).chain(lane.ready.drain(..)).collect();
            lane.db_due = None;
            return (!gone.is_empty()).then_some(Decision::Release(gone));
        }
        let rate = settings.rate_limit();
        // Explicit sends: only max_concurrency and rate_limit hold them.
        if !lane.explicit.is_empty() && lane.in_flight < lane.hard_cap(node_slots) {
            if let Some(wait) = need_slot(lane, rate, now_us) {
                return self.wait_for_slot(lane_id, wait);
            }
            let lane = self.lanes.get_mut(&lane_id)?;
            let ticket = lane.explicit.pop_front()?;
            let started = lane.start();
            return Some(Decision::Start { ticket, started, probe: false });
        }
        if !lane.circuit.is_closed() && !lane.probe_granted {
            if lane.probing {
                return None;
            }
            let has_work = !lane.ready.is_empty() || lane.db_due.is_some_and(|d| d <= now);
            if lane.circuit.probe_due(now) && has_work {
                lane.probing = true;
                return Some(Decision::Probe { lane: lane_id });
            }
            if let Some(at) = lane.circuit.retry_at.filter(|at| *at > now) {
                self.timers.push(Reverse((at, lane_id)));
            }
            // Tickets held here would only wait: give them back until the circuit closes.
            let held: Vec<Ticket> = lane.ready.drain(..).collect();
            return (!held.is_empty()).then_some(Decision::Release(held));
        }
        let limit = if lane.probe_granted { 1 } else { lane.limit() };
        if lane.in_flight >= limit {
            return None;
        }
        let (org_id, reserve) = (lane.org, !lane.proven);
        let has_work = !lane.ready.is_empty() || lane.db_due.is_some_and(|due| due <= now);
        if reserve && has_work && !self.can_reserve(org_id) {
            // An unproven endpoint may hang: no start, and no claim, without a place to wait.
            self.wait_for_place(lane_id, org_id);
            return None;
        }
        let lane = self.lanes.get_mut(&lane_id)?;
        if !lane.ready.is_empty() {
            if let Some(wait) = need_slot(lane, rate, now_us) {
                return self.wait_for_slot(lane_id, wait);
            }
            let lane = self.lanes.get_mut(&lane_id)?;
            let ticket = lane.ready.pop_front()?;
            if !ticket.lease_allows(now, settings.timeout().millis()) {
                // Its lease would end before the attempt could be recorded: another node takes
                // it once the lease ends; sending it here could send it twice.
                return Some(Decision::Release(vec![ticket]));
            }
            let probe = std::mem::take(&mut lane.probe_granted);
            let mut started = lane.start();
            if reserve {
                started.reserved = true;
                self.reserved += 1;
                self.orgs.entry(org_id).or_default().reserved += 1;
            }
            return Some(Decision::Start { ticket, started, probe });
        }
        match lane.db_due {
            Some(due) if due <= now && !lane.claiming => {
                lane.claiming = true;
                let want = (limit - lane.in_flight + limit / 2).clamp(1, CLAIM_MAX);
                Some(Decision::Claim { lane: lane_id, want })
            }
            Some(due) if due > now => {
                self.timers.push(Reverse((due, lane_id)));
                None
            }
            _ => None,
        }
    }
}

impl Scheduler {
    /// A lane waits for a rate slot: ask for slots, or wake when the next held one is due.
    fn wait_for_slot(&mut self, lane_id: Uuid, wait: Option<Decision>) -> Option<Decision> {
        if wait.is_none() {
            if let Some(at) = self.lanes.get(&lane_id).and_then(|l| l.slots.next_at()) {
                self.timers.push(Reverse((at.div_euclid(1_000) + 1, lane_id)));
            }
        }
        wait
    }
}

/// `None` when the lane may send now as far as its rate limit goes; otherwise what to do while
/// it waits for a slot (ask for slots, or nothing until the next one is due).
fn need_slot(lane: &mut Lane, rate: Option<u32>, now_us: i64) -> Option<Option<Decision>> {
    let rate = rate?;
    if lane.slots.take(now_us) {
        return None;
    }
    if lane.slots.is_empty() && !lane.slots_requested {
        lane.slots_requested = true;
        let step = step_us(rate);
        let want = usize::try_from(HORIZON_US / step + 1).unwrap_or(1).max(1);
        return Some(Some(Decision::Slots { lane: lane.id, want, step_us: step }));
    }
    Some(None)
}

#[cfg(test)]
mod tests;
