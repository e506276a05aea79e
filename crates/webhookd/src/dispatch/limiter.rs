//! Adaptive concurrency per destination: how many requests one lane may have in flight on this
//! node. AIMD in the manner of TCP congestion control (and Netflix's `concurrency-limits`):
//!
//! - A new lane starts at [`INITIAL`] and grows by one per successful answer while it is using
//!   its whole allowance ("slow start": the limit doubles every round trip), up to the
//!   threshold learnt at the last congestion, then by one per round trip.
//! - Congestion — a timeout, a connection failure, a 5xx or 429, or a request still unanswered
//!   after the stall threshold — halves the limit (at least 1) and sets the threshold there. It
//!   halves once per round: answers to requests sent before the last decrease do not halve it
//!   again, so a burst of timeouts from one round costs one halving, not ten.
//! - Answers that show the endpoint is up (2xx, other 4xx) count as successes here: refusing a
//!   payload is not congestion.
//!
//! A hanging endpoint therefore settles at one request in flight, a failing one at a few, and a
//! healthy one grows until it uses every idle sending slot.

/// The limit of a lane nothing is known about yet.
pub const INITIAL: f64 = 2.0;

#[derive(Debug, Clone)]
pub struct Limiter {
    limit: f64,
    /// Below this the limit grows by one per success; above it, by one per round trip.
    threshold: f64,
    /// The most it may ever reach (the node's sending slots, or the webhook's max_concurrency).
    ceiling: f64,
    /// Sequence number given to the next request started.
    next_seq: u64,
    /// Requests started before this one do not halve the limit again.
    decreased_at: u64,
}

/// What the limiter hands a request when it starts; given back with its outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Started {
    seq: u64,
    /// The lane was using its whole allowance: a success is evidence the limit may grow.
    saturated: bool,
    /// The attempt holds a place in the stalled pool (the scheduler's, see `scheduler.rs`).
    pub reserved: bool,
}

impl Limiter {
    pub fn new(ceiling: usize) -> Self {
        let ceiling = ceiling.max(1) as f64;
        Self {
            limit: INITIAL.min(ceiling),
            threshold: ceiling,
            ceiling,
            next_seq: 0,
            decreased_at: 0,
        }
    }

    /// Requests this lane may have in flight now.
    pub fn limit(&self) -> usize {
        self.limit.floor().max(1.0) as usize
    }

    /// Changes the most the limit may reach (a new max_concurrency, or the node's slots).
    pub fn set_ceiling(&mut self, ceiling: usize) {
        self.ceiling = ceiling.max(1) as f64;
        self.limit = self.limit.min(self.ceiling);
        self.threshold = self.threshold.min(self.ceiling);
    }

    /// A request starts while `in_flight` others are in flight; `backlogged` when more work
    /// waits behind it (the limit, not the work, bounds the lane).
    pub fn start(&mut self, in_flight: usize, backlogged: bool) -> Started {
        self.next_seq += 1;
        Started {
            seq: self.next_seq,
            saturated: backlogged || in_flight + 1 >= self.limit(),
            reserved: false,
        }
    }

    /// The endpoint answered in a way that shows it is up.
    pub fn succeeded(&mut self, started: Started) {
        if !started.saturated {
            return;
        }
        let step = if self.limit < self.threshold { 1.0 } else { 1.0 / self.limit };
        self.limit = (self.limit + step).min(self.ceiling);
    }

    /// The endpoint is congested or unavailable (or a request stalled).
    pub fn congested(&mut self, started: Started) {
        if started.seq <= self.decreased_at {
            return;
        }
        self.limit = (self.limit / 2.0).max(1.0);
        self.threshold = self.limit;
        self.decreased_at = self.next_seq;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_healthy_saturated_lane_doubles_each_round_up_to_its_ceiling() {
        let mut limiter = Limiter::new(256);
        for _round in 0..7 {
            let limit = limiter.limit();
            let started: Vec<Started> = (0..limit).map(|i| limiter.start(i, true)).collect();
            started.into_iter().for_each(|s| limiter.succeeded(s));
        }
        assert_eq!(limiter.limit(), 256);
    }

    #[test]
    fn an_unsaturated_lane_does_not_grow() {
        let mut limiter = Limiter::new(256);
        for _ in 0..100 {
            let started = limiter.start(0, false);
            limiter.succeeded(started);
        }
        assert_eq!(limiter.limit(), INITIAL as usize);
    }

    /// A limiter grown (by saturated successes) to `limit`.
    fn grown(limit: usize) -> Limiter {
        let mut limiter = Limiter::new(256);
        while limiter.limit() < limit {
            let started = limiter.start(0, true);
            limiter.succeeded(started);
        }
        limiter
    }

    #[test]
    fn a_round_of_failures_halves_once_and_a_hanging_lane_settles_at_one() {
        let mut limiter = grown(8);
        let round: Vec<Started> = (0..8).map(|i| limiter.start(i, true)).collect();
        round.into_iter().for_each(|s| limiter.congested(s));
        assert_eq!(limiter.limit(), 4, "one halving for the whole round");
        for _ in 0..5 {
            let started = limiter.start(0, true);
            limiter.congested(started);
        }
        assert_eq!(limiter.limit(), 1);
    }

    #[test]
    fn after_congestion_growth_is_about_one_per_round_trip() {
        let mut limiter = grown(4);
        let started = limiter.start(3, true);
        limiter.congested(started);
        assert_eq!(limiter.limit(), 2);
        // At steady state every start finds the lane full: +1/limit per success.
        let mut successes = 0;
        while limiter.limit() == 2 {
            let started = limiter.start(1, true);
            limiter.succeeded(started);
            successes += 1;
        }
        assert_eq!((limiter.limit(), successes), (3, 3));
    }

    #[test]
    fn the_ceiling_caps_and_can_shrink() {
        let mut limiter = Limiter::new(2);
        assert_eq!(limiter.limit(), 2);
        limiter.set_ceiling(1);
        assert_eq!(limiter.limit(), 1);
    }
}
