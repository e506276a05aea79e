//! A webhook's circuit breaker (SPEC §4) as plain data and a pure transition function: three
//! states and two timers. Closed → open after `threshold` consecutive answers that say the
//! endpoint is unavailable; open → half-open when the cooldown has passed (one probe goes); the
//! probe's success closes it, its failure opens it again with a doubled cooldown. Any success
//! closes it: a person pressing Test on a repaired endpoint reopens the flow at once.

use crate::domain::clock::UnixMs;

/// Each failed probe doubles the cooldown, up to this.
pub const COOLDOWN_MAX_MS: i64 = 600_000;

/// How the breaker is tuned (`--circuit-threshold`, `--circuit-cooldown`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Breaker {
    /// Consecutive unavailable answers that open a closed circuit.
    pub threshold: u32,
    /// The first cooldown; each failed probe doubles it, up to [`COOLDOWN_MAX_MS`].
    pub first_cooldown_ms: i64,
}

impl Default for Breaker {
    fn default() -> Self {
        Self { threshold: 5, first_cooldown_ms: 10_000 }
    }
}

impl Breaker {
    /// The cooldown after `level` failed probes.
    pub fn cooldown_ms(&self, level: u32) -> i64 {
        self.first_cooldown_ms.saturating_mul(1_i64 << level.min(20)).min(COOLDOWN_MAX_MS)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    Closed,
    Open,
    HalfOpen,
}

impl CircuitState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "closed" => Ok(Self::Closed),
            "open" => Ok(Self::Open),
            "half_open" => Ok(Self::HalfOpen),
            other => Err(format!("unknown circuit state {other:?}")),
        }
    }
}

/// What the breaker remembers of one webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Circuit {
    pub state: CircuitState,
    /// Open: when the next probe may go. Half-open: when the probe's lease ends (a node that
    /// took the probe and died does not hold the circuit forever).
    pub retry_at: Option<UnixMs>,
    /// Consecutive unavailable answers while closed.
    pub failures: u32,
    /// Failed probes since the circuit last closed: the cooldown is doubled this many times.
    pub level: u32,
}

impl Default for Circuit {
    fn default() -> Self {
        Self { state: CircuitState::Closed, retry_at: None, failures: 0, level: 0 }
    }
}

/// How one attempt's answer counts for the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// A 2xx: the endpoint works.
    Success,
    /// No answer, a timeout, a 5xx or a 429: the endpoint is unavailable.
    Unavailable,
    /// Any other answer (3xx, 4xx): the endpoint is up but refused this request; neutral.
    Refused,
}

impl Signal {
    /// The signal of an HTTP status (`None`: no response at all).
    pub fn of(status: Option<u16>) -> Self {
        match status {
            Some(200..=299) => Self::Success,
            None | Some(429) | Some(500..=599) => Self::Unavailable,
            Some(_) => Self::Refused,
        }
    }
}

/// One attempt's answer as the breaker sees it: its signal and whether it was the probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observed {
    pub signal: Signal,
    pub probe: bool,
}

/// A change of state worth telling operators about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Opened { retry_at: UnixMs },
    Closed,
}

impl Circuit {
    /// The circuit after `observed` (in the order the attempts were sent), and the last
    /// transition it made, if any.
    pub fn fold(
        self,
        observed: impl IntoIterator<Item = Observed>,
        breaker: &Breaker,
        now: UnixMs,
    ) -> (Circuit, Option<Transition>) {
        let mut circuit = self;
        let mut transition = None;
        for seen in observed {
            let (next, changed) = circuit.step(seen, breaker, now);
            circuit = next;
            transition = changed.or(transition);
        }
        (circuit, transition)
    }

    fn step(self, seen: Observed, breaker: &Breaker, now: UnixMs) -> (Circuit, Option<Transition>) {
        use CircuitState::{Closed, HalfOpen, Open};
        use Signal::{Refused, Success, Unavailable};
        match (self.state, seen.signal) {
            (Closed, Success) => (Circuit { failures: 0, ..self }, None),
            (Closed, Unavailable) => {
                let failures = self.failures.saturating_add(1);
                if failures >= breaker.threshold.max(1) {
                    self.open(0, breaker, now)
                } else {
                    (Circuit { failures, ..self }, None)
                }
            }
            (Open | HalfOpen, Success) => (Circuit::default(), Some(Transition::Closed)),
            // The probe failed: open again, waiting longer.
            (HalfOpen, Unavailable) if seen.probe => {
                self.open(self.level.saturating_add(1), breaker, now)
            }
            // Attempts that were already in flight when the circuit opened change nothing.
            (_, Refused) | (Open | HalfOpen, Unavailable) => (self, None),
        }
    }

    fn open(self, level: u32, breaker: &Breaker, now: UnixMs) -> (Circuit, Option<Transition>) {
        let retry_at = now.saturating_add(breaker.cooldown_ms(level));
        let open =
            Circuit { state: CircuitState::Open, retry_at: Some(retry_at), failures: 0, level };
        (open, Some(Transition::Opened { retry_at }))
    }

    /// Whether automatic deliveries may go now (closed), or only a probe once due.
    pub fn is_closed(&self) -> bool {
        self.state == CircuitState::Closed
    }

    /// Whether a probe may be sent at `now`: open past its cooldown, or half-open past the
    /// lease of a probe that never reported.
    pub fn probe_due(&self, now: UnixMs) -> bool {
        !self.is_closed() && self.retry_at.is_none_or(|at| at <= now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(threshold: u32) -> Breaker {
        Breaker { threshold, first_cooldown_ms: 10_000 }
    }

    const FAIL: Observed = Observed { signal: Signal::Unavailable, probe: false };
    const OK: Observed = Observed { signal: Signal::Success, probe: false };

    #[test]
    fn consecutive_failures_open_the_circuit_and_a_success_in_between_resets_the_count() {
        let (circuit, transition) =
            Circuit::default().fold([FAIL, FAIL, OK, FAIL, FAIL], &breaker(3), 0);
        assert_eq!((circuit.state, circuit.failures, transition), (CircuitState::Closed, 2, None));
        let (circuit, transition) = circuit.fold([FAIL], &breaker(3), 1_000);
        assert_eq!(circuit.state, CircuitState::Open);
        assert_eq!(transition, Some(Transition::Opened { retry_at: 1_000 + 10_000 }));
    }

    #[test]
    fn refusals_neither_count_nor_reset() {
        let refused = Observed { signal: Signal::Refused, probe: false };
        let (circuit, _) = Circuit::default().fold([FAIL, refused, FAIL], &breaker(3), 0);
        assert_eq!(circuit.failures, 2);
    }

    #[test]
    fn a_failed_probe_doubles_the_cooldown_up_to_ten_minutes_and_a_success_closes() {
        let (open, _) = Circuit::default().fold([FAIL], &breaker(1), 0);
        assert!(open.probe_due(10_000) && !open.probe_due(10_000 - 1));
        let half_open = Circuit { state: CircuitState::HalfOpen, ..open };
        let probe_failed = Observed { signal: Signal::Unavailable, probe: true };
        let (again, transition) = half_open.fold([probe_failed], &breaker(1), 50_000);
        assert_eq!(again.level, 1);
        assert_eq!(transition, Some(Transition::Opened { retry_at: 50_000 + 2 * 10_000 }));
        assert_eq!(breaker(1).cooldown_ms(30), COOLDOWN_MAX_MS);
        let (closed, transition) = again.fold([OK], &breaker(1), 60_000);
        assert_eq!((closed, transition), (Circuit::default(), Some(Transition::Closed)));
    }

    #[test]
    fn stale_failures_while_open_change_nothing() {
        let (open, _) = Circuit::default().fold([FAIL], &breaker(1), 0);
        assert_eq!(open.fold([FAIL, FAIL], &breaker(1), 5_000), (open, None));
    }

    #[test]
    fn statuses_map_to_signals() {
        assert_eq!(Signal::of(Some(204)), Signal::Success);
        assert_eq!(Signal::of(None), Signal::Unavailable);
        assert_eq!(Signal::of(Some(503)), Signal::Unavailable);
        assert_eq!(Signal::of(Some(429)), Signal::Unavailable);
        assert_eq!(Signal::of(Some(404)), Signal::Refused);
    }
}
