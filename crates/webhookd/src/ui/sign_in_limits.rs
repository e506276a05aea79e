//! How many failed sign-ins the dashboard takes. Each client address (an IPv6 client is its
//! /64) and each key prefix (the first 10 characters, what `key list` shows) may fail
//! [`FAILURES_PER_MINUTE`] times in a burst, then once per [`REFILL`]. A failure past that starts
//! a pause: until it ends, every sign-in from that address or with that prefix is refused with
//! 429 and `Retry-After` without its key being looked at, the right key too, so a guesser learns
//! nothing during the pause. Only failures count: signing in often with the right key is never
//! refused.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use moka::sync::Cache;

use crate::api::key_lookups::per_client;
use crate::domain::secrets::api_key_prefix;

/// Failed sign-ins allowed at once per address and per key prefix.
pub const FAILURES_PER_MINUTE: u32 = 10;
/// One more failure is allowed after each of these (ten a minute, sustained).
pub const REFILL: Duration = Duration::from_secs(60 / FAILURES_PER_MINUTE as u64);
/// Addresses and prefixes counted; one without a failure for ten minutes starts afresh.
const SUBJECTS: u64 = 100_000;
const SUBJECT_IDLE: Duration = Duration::from_secs(600);

/// Whose failures are counted.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Subject {
    Address(IpAddr),
    KeyPrefix(String),
}

impl Subject {
    fn limit(&self) -> Limit {
        match self {
            Subject::Address(_) => Limit::ClientAddress,
            Subject::KeyPrefix(_) => Limit::KeyPrefix,
        }
    }
}

/// Which limit refused a sign-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    ClientAddress,
    KeyPrefix,
}

impl Limit {
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::ClientAddress => "client address",
            Limit::KeyPrefix => "key prefix",
        }
    }
}

/// A sign-in refused for too many failures: come back in `retry_after_secs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    pub retry_after_secs: u64,
    pub limit: Limit,
}

struct Budget {
    failures: DefaultDirectRateLimiter,
    /// Set by a failure that found the budget spent: sign-ins are refused until then.
    paused_until: Mutex<Option<Instant>>,
}

pub struct SignInLimits {
    budgets: Cache<Subject, Arc<Budget>>,
    quota: Quota,
}

impl Default for SignInLimits {
    fn default() -> Self {
        let burst = NonZeroU32::new(FAILURES_PER_MINUTE).unwrap_or(NonZeroU32::MIN);
        Self {
            budgets: Cache::builder().max_capacity(SUBJECTS).time_to_idle(SUBJECT_IDLE).build(),
            quota: Quota::with_period(REFILL)
                .unwrap_or_else(|| Quota::per_minute(burst))
                .allow_burst(burst),
        }
    }
}

impl SignInLimits {
    /// `Err` while `client` or the prefix of `key` is paused.
    pub fn check(&self, client: IpAddr, key: &str) -> Result<(), Limited> {
        let now = Instant::now();
        let mut longest = None;
        for subject in subjects(client, key) {
            let Some(budget) = self.budgets.get(&subject) else { continue };
            let until = *budget.paused_until.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(wait) = until.and_then(|until| until.checked_duration_since(now)) {
                longest = Some(longer(longest, Limited::new(wait, subject.limit())));
            }
        }
        longest.map_or(Ok(()), Err)
    }

    /// Counts a failed sign-in from `client` with `key`; `Err` when it was one too many (it
    /// starts a pause, and is answered as refused).
    pub fn failed(&self, client: IpAddr, key: &str) -> Result<(), Limited> {
        let mut longest = None;
        for subject in subjects(client, key) {
            let budget = self.budgets.get_with(subject.clone(), || {
                Arc::new(Budget {
                    failures: RateLimiter::direct(self.quota),
                    paused_until: Mutex::new(None),
                })
            });
            let Err(not_until) = budget.failures.check() else { continue };
            let wait = not_until.wait_time_from(DefaultClock::default().now()).max(REFILL);
            *budget.paused_until.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(Instant::now() + wait);
            longest = Some(longer(longest, Limited::new(wait, subject.limit())));
        }
        longest.map_or(Ok(()), Err)
    }
}

impl Limited {
    fn new(wait: Duration, limit: Limit) -> Self {
        Self { retry_after_secs: crate::api::limits::retry_after_secs(wait), limit }
    }
}

/// Of two refusals, the one that lasts longer.
fn longer(current: Option<Limited>, new: Limited) -> Limited {
    match current {
        Some(current) if current.retry_after_secs >= new.retry_after_secs => current,
        _ => new,
    }
}

/// The address, and the key's prefix when a key was given.
fn subjects(client: IpAddr, key: &str) -> Vec<Subject> {
    let mut subjects = vec![Subject::Address(per_client(client))];
    if !key.is_empty() {
        subjects.push(Subject::KeyPrefix(api_key_prefix(key)));
    }
    subjects
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "whk_abcdef0123456789";

    fn address(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn past_its_failures_an_address_is_paused_for_every_key_and_another_is_not() {
        let limits = SignInLimits::default();
        let attacker = address("192.0.2.1");
        for n in 0..FAILURES_PER_MINUTE {
            assert_eq!(limits.check(attacker, &format!("whk_guess{n:06}")), Ok(()));
            assert_eq!(limits.failed(attacker, &format!("whk_guess{n:06}")), Ok(()));
        }
        let refused = limits.failed(attacker, "whk_guess-last").unwrap_err();
        assert_eq!(refused.limit, Limit::ClientAddress);
        assert!((1..=REFILL.as_secs()).contains(&refused.retry_after_secs), "{refused:?}");
        let paused = limits.check(attacker, KEY).unwrap_err();
        assert_eq!(paused.limit, Limit::ClientAddress);
        assert_eq!(limits.check(address("192.0.2.2"), KEY), Ok(()));
    }

    #[test]
    fn past_its_failures_a_key_prefix_is_paused_from_every_address() {
        let limits = SignInLimits::default();
        for n in 0..=FAILURES_PER_MINUTE {
            let outcome = limits.failed(address(&format!("198.51.100.{n}")), &format!("{KEY}{n}"));
            assert_eq!(outcome.is_err(), n == FAILURES_PER_MINUTE, "failure {n}");
        }
        let paused = limits.check(address("203.0.113.9"), KEY).unwrap_err();
        assert_eq!(paused.limit, Limit::KeyPrefix);
        assert_eq!(limits.check(address("203.0.113.9"), "whk_other0123"), Ok(()));
    }

    #[test]
    fn an_empty_key_counts_for_the_address_only() {
        let limits = SignInLimits::default();
        let client = address("2001:db8::1");
        for _ in 0..FAILURES_PER_MINUTE {
            limits.failed(client, "").unwrap();
        }
        assert!(limits.check(address("2001:db8::2"), KEY).is_ok(), "not paused before the 11th");
        assert!(limits.failed(address("2001:db8::ffff"), "").is_err(), "the same /64");
        assert_eq!(limits.check(address("2001:db8:0:1::1"), KEY), Ok(()));
    }
}
