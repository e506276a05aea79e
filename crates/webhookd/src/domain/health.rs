//! What a webhook's attempts say about its endpoint, as a pure function: the circuit breaker,
//! the failure streak that disables a webhook after five days without a success (SPEC §4), and
//! `410 Gone`, which disables it at once. The store applies [`Health::observe`] to each batch of
//! recorded attempts inside the batch's transaction.

use super::circuit::{self, Breaker, Circuit, Signal, Transition};
use super::clock::{UnixMs, DAY_MS};

/// A webhook whose deliveries have all failed for this long is disabled.
pub const FAILING_DISABLE_AFTER_MS: i64 = 5 * DAY_MS;
pub const GONE_REASON: &str = "Endpoint answered 410 Gone";
pub const FAILING_REASON: &str = "Deliveries failed for 5 days without a success";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    pub enabled: bool,
    /// The first failure of the current failure streak.
    pub failing_since: Option<UnixMs>,
    pub circuit: Circuit,
}

/// One attempt's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observation {
    pub sent_at: UnixMs,
    /// The response code (`None`: no response).
    pub status: Option<u16>,
    /// The attempt was the circuit's probe.
    pub probe: bool,
}

/// The health after a batch and what changed in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    pub health: Health,
    pub transition: Option<Transition>,
    /// Why the webhook was disabled by this batch, if it was.
    pub disabled: Option<&'static str>,
}

impl Health {
    /// Folds `observations` (any order; they are taken in the order they were sent).
    pub fn observe(self, observations: &[Observation], breaker: &Breaker, now: UnixMs) -> Change {
        let mut ordered = observations.to_vec();
        ordered.sort_by_key(|o| o.sent_at);
        let mut failing_since = self.failing_since;
        for o in &ordered {
            if Signal::of(o.status) == Signal::Success {
                failing_since = None;
            } else {
                failing_since.get_or_insert(o.sent_at);
            }
        }
        let signals = ordered
            .iter()
            .map(|o| circuit::Observed { signal: Signal::of(o.status), probe: o.probe });
        let (circuit, transition) = self.circuit.fold(signals, breaker, now);
        let gone = ordered.iter().any(|o| o.status == Some(410));
        let disabled = if !self.enabled {
            None
        } else if gone {
            Some(GONE_REASON)
        } else if failing_since.is_some_and(|since| since <= now - FAILING_DISABLE_AFTER_MS) {
            Some(FAILING_REASON)
        } else {
            None
        };
        let enabled = self.enabled && disabled.is_none();
        Change { health: Health { enabled, failing_since, circuit }, transition, disabled }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::circuit::CircuitState;

    fn breaker(threshold: u32) -> Breaker {
        Breaker { threshold, first_cooldown_ms: 10_000 }
    }

    fn healthy() -> Health {
        Health { enabled: true, failing_since: None, circuit: Circuit::default() }
    }

    fn seen(sent_at: UnixMs, status: Option<u16>) -> Observation {
        Observation { sent_at, status, probe: false }
    }

    #[test]
    fn a_success_ends_the_streak_and_a_failure_starts_one() {
        let after = healthy().observe(&[seen(10, Some(500)), seen(20, Some(500))], &breaker(5), 30);
        assert_eq!(after.health.failing_since, Some(10));
        let after = after.health.observe(&[seen(40, Some(200))], &breaker(5), 50);
        assert_eq!(after.health.failing_since, None);
        assert_eq!(after.disabled, None);
    }

    #[test]
    fn five_days_of_failures_disable_and_410_disables_at_once() {
        let old = Health { failing_since: Some(0), ..healthy() };
        let after = old.observe(
            &[seen(FAILING_DISABLE_AFTER_MS, Some(503))],
            &breaker(5),
            FAILING_DISABLE_AFTER_MS,
        );
        assert_eq!(after.disabled, Some(FAILING_REASON));
        assert!(!after.health.enabled);
        let gone = healthy().observe(&[seen(1, Some(410))], &breaker(5), 2);
        assert_eq!(gone.disabled, Some(GONE_REASON));
        let already =
            Health { enabled: false, ..healthy() }.observe(&[seen(1, Some(410))], &breaker(5), 2);
        assert_eq!(already.disabled, None, "a disabled webhook is not disabled twice");
    }

    #[test]
    fn consecutive_unavailable_answers_open_the_circuit_in_sent_order() {
        let batch = [seen(3, None), seen(1, Some(503)), seen(2, Some(429))];
        let after = healthy().observe(&batch, &breaker(3), 10);
        assert_eq!(after.health.circuit.state, CircuitState::Open);
        assert!(matches!(after.transition, Some(Transition::Opened { .. })));
        // Out of order, the success (sent last) would have reset the count.
        let mixed = [seen(1, Some(503)), seen(3, Some(200)), seen(2, Some(503))];
        assert_eq!(
            healthy().observe(&mixed, &breaker(2), 10).health.circuit.state,
            CircuitState::Closed
        );
    }
}
