//! The retry policy (SPEC §4) as plain data and pure functions: given how an attempt ended and how
//! many automatic retries a log has used, what happens next.

use std::time::{Duration, SystemTime};

use uuid::Uuid;

use super::job::Job;
use super::sender::Sent;
use crate::domain::{LogStatus, SendType};
use crate::store::{Attempt, AttemptRecord};

/// Each delay is multiplied by a factor drawn from `[1 - JITTER, 1 + JITTER]`, so endpoints that
/// failed together are not retried in lockstep.
pub const JITTER: f64 = 0.2;
/// A `Retry-After` longer than this is treated as this.
pub const RETRY_AFTER_CAP: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Delay before retry 1, 2, …; the last one repeats.
    pub schedule: Vec<Duration>,
}

/// How one HTTP attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// A 2xx within the timeout.
    Delivered,
    /// Anything else: a non-2xx status (`status`), or no response at all (`None`).
    Failed { status: Option<u16>, retry_after: Option<Duration> },
}

/// What to do with a log after an automatic attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Success,
    /// Try again after this delay.
    RetryIn(Duration),
    /// No retry left: the log has failed.
    Exhausted,
    /// `410 Gone`: the log has failed and the webhook is to be disabled.
    Gone,
}

impl RetryPolicy {
    /// The delay before automatic retry `retry` (1-based); `unit` in `[0, 1)` picks the jitter.
    pub fn delay(&self, retry: u32, unit: f64) -> Duration {
        let index = (retry.max(1) as usize - 1).min(self.schedule.len().saturating_sub(1));
        let base = self.schedule.get(index).copied().unwrap_or(Duration::from_secs(5));
        let factor = 1.0 - JITTER + 2.0 * JITTER * unit.clamp(0.0, 1.0);
        base.mul_f64(factor)
    }

    /// The next step for a log whose latest attempt ended with `outcome`, having used
    /// `retries_used` of its `max_retries` automatic retries.
    pub fn verdict(
        &self,
        outcome: &AttemptOutcome,
        retries_used: i64,
        max_retries: i64,
        unit: f64,
    ) -> Verdict {
        let AttemptOutcome::Failed { status, retry_after } = outcome else {
            return Verdict::Success;
        };
        if *status == Some(410) {
            return Verdict::Gone;
        }
        if retries_used >= max_retries {
            return Verdict::Exhausted;
        }
        let scheduled = self.delay(u32::try_from(retries_used + 1).unwrap_or(u32::MAX), unit);
        let asked = match status {
            Some(429 | 503) => retry_after.map(|d| d.min(RETRY_AFTER_CAP)),
            _ => None,
        };
        Verdict::RetryIn(asked.map_or(scheduled, |asked| asked.max(scheduled)))
    }
}

/// What an attempt means for its log: the retry policy applied to its outcome. `unit` in
/// `[0, 1)` picks the jitter. Test sends are never retried. A failed probe of an open circuit
/// uses none of the log's retries: the log waits for the circuit to close.
pub fn decide(job: &Job, sent: &Sent, policy: &RetryPolicy, unit: f64) -> AttemptRecord {
    let log = &job.ticket.log;
    let outcome = sent.outcome();
    let counts_as_retry = job.send_type == SendType::Retry && !job.probe;
    let retries_used = log.retries + i64::from(counts_as_retry);
    let max_retries = if job.send_type == SendType::Test { 0 } else { i64::from(job.max_retries) };
    let finished_at = sent.sent_at + sent.duration_ms;
    let (status, next_attempt_at) = match policy.verdict(&outcome, retries_used, max_retries, unit)
    {
        Verdict::Success => (LogStatus::Success, None),
        _ if job.probe => (LogStatus::Pending, Some(finished_at)),
        Verdict::RetryIn(delay) => {
            let delay_ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
            (LogStatus::Pending, Some(finished_at.saturating_add(delay_ms)))
        }
        Verdict::Exhausted | Verdict::Gone => (LogStatus::Failed, None),
    };
    let error = sent.error.clone().or_else(|| match outcome {
        AttemptOutcome::Failed { status: Some(code), .. } => Some(format!("HTTP {code}")),
        _ => None,
    });
    AttemptRecord {
        log_id: log.id,
        webhook_id: log.webhook_id,
        lane_id: log.lane_id,
        org_id: log.org_id,
        attempt: Attempt {
            id: Uuid::now_v7(),
            number: log.attempt_count + 1,
            send_type: job.send_type,
            sent_at: sent.sent_at,
            response_code: sent.status,
            duration_ms: sent.duration_ms,
            response_body: sent.body.clone(),
            response_headers: sent.headers.clone(),
            error,
        },
        status,
        next_attempt_at,
        counts_as_retry,
        probe: job.probe,
    }
}

/// A `Retry-After` value: delay-seconds or an HTTP date (relative to `now`).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            schedule: vec![
                Duration::from_secs(5),
                Duration::from_secs(300),
                Duration::from_secs(1800),
            ],
        }
    }

    fn failed(status: u16) -> AttemptOutcome {
        AttemptOutcome::Failed { status: Some(status), retry_after: None }
    }

    #[test]
    fn delays_follow_the_schedule_and_the_last_one_repeats() {
        let p = policy();
        assert_eq!(p.delay(1, 0.5), Duration::from_secs(5));
        assert_eq!(p.delay(2, 0.5), Duration::from_secs(300));
        assert_eq!(p.delay(3, 0.5), Duration::from_secs(1800));
        assert_eq!(p.delay(9, 0.5), Duration::from_secs(1800));
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        let p = policy();
        assert_eq!(p.delay(2, 0.0), Duration::from_secs(240));
        assert_eq!(p.delay(2, 1.0), Duration::from_secs(360));
        for i in 0..100 {
            let d = p.delay(2, f64::from(i) / 100.0);
            assert!(d >= Duration::from_secs(240) && d <= Duration::from_secs(360));
        }
    }

    #[test]
    fn success_is_final_and_failures_retry_until_max_retries() {
        let p = policy();
        assert_eq!(p.verdict(&AttemptOutcome::Delivered, 0, 3, 0.5), Verdict::Success);
        assert_eq!(p.verdict(&failed(500), 0, 3, 0.5), Verdict::RetryIn(Duration::from_secs(5)));
        assert_eq!(p.verdict(&failed(500), 2, 3, 0.5), Verdict::RetryIn(Duration::from_secs(1800)));
        assert_eq!(p.verdict(&failed(500), 3, 3, 0.5), Verdict::Exhausted);
        assert_eq!(p.verdict(&failed(500), 0, 0, 0.5), Verdict::Exhausted);
        let network = AttemptOutcome::Failed { status: None, retry_after: None };
        assert_eq!(p.verdict(&network, 0, 1, 0.5), Verdict::RetryIn(Duration::from_secs(5)));
    }

    #[test]
    fn gone_stops_at_once_whatever_is_left() {
        assert_eq!(policy().verdict(&failed(410), 0, 10, 0.5), Verdict::Gone);
    }

    #[test]
    fn retry_after_on_429_and_503_is_honoured_and_capped() {
        let p = policy();
        let asked = |status, secs| AttemptOutcome::Failed {
            status: Some(status),
            retry_after: Some(Duration::from_secs(secs)),
        };
        assert_eq!(
            p.verdict(&asked(429, 60), 0, 3, 0.5),
            Verdict::RetryIn(Duration::from_secs(60))
        );
        assert_eq!(
            p.verdict(&asked(503, 60), 0, 3, 0.5),
            Verdict::RetryIn(Duration::from_secs(60))
        );
        // Never sooner than the schedule says.
        assert_eq!(p.verdict(&asked(429, 1), 0, 3, 0.5), Verdict::RetryIn(Duration::from_secs(5)));
        // Capped at 24 h.
        assert_eq!(
            p.verdict(&asked(429, 10 * 86_400), 0, 3, 0.5),
            Verdict::RetryIn(RETRY_AFTER_CAP)
        );
        // Other statuses ignore it.
        assert_eq!(p.verdict(&asked(500, 60), 0, 3, 0.5), Verdict::RetryIn(Duration::from_secs(5)));
    }

    #[test]
    fn retry_after_parses_seconds_and_http_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:30:00 GMT", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after("Sat, 21 Oct 2000 07:28:00 GMT", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }
}
