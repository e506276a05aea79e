//! Turning what was measured into numbers: latency percentiles, rates, and the two outputs — a
//! short aligned summary for people and one JSON line for scripts.

use std::collections::HashMap;
use std::time::Instant;

use serde_json::{json, Value};

use crate::receiver::Arrival;

/// Everything the summary and the JSON line show.
pub struct Report {
    pub backend: &'static str,
    /// `--source`: the bus the events were published to (`None`: the API).
    pub source: Option<&'static str>,
    pub events: u64,
    pub webhooks: u64,
    pub expected: u64,
    pub delivered: u64,
    pub duplicates: u64,
    pub failed_on_purpose: u64,
    pub malformed: u64,
    pub ingest_per_sec: f64,
    pub delivered_per_sec: f64,
    pub raw_post_per_sec: f64,
    pub latency: Latency,
    /// From each event's 202 to its delivery.
    pub after_ack: Latency,
    pub black_holes: u64,
    pub black_hole_logs: u64,
    pub slow_backlog: u64,
    pub slow_served: u64,
    pub server_peak_rss_mb: f64,
    pub server_cpu_s: f64,
    pub payload_bytes: u64,
    pub rate: u64,
    pub batch_size: u64,
    pub concurrency: usize,
    pub ingest_concurrency: u64,
    pub fail_ratio: f64,
    pub receiver_delay_ms: u64,
    pub backlog: bool,
    pub drain_per_sec: Option<f64>,
    /// With `--otlp`: what webhookd exported to the sink.
    pub otlp: Option<OtlpExports>,
    /// With `--egress-proxy`: deliveries went through a proxy.
    pub egress_proxy: bool,
    /// `--cpu-hog`: a busy-loop thread kept one core busy throughout.
    pub cpu_hog: bool,
}

/// Span exports the `--otlp` sink received.
#[derive(Debug, Clone, Copy)]
pub struct OtlpExports {
    pub requests: u64,
    pub bytes: u64,
}

/// Milliseconds from an event's ingest request to each delivery's first success.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Latency {
    /// One sample per delivery (event × webhook) whose event id the bench sent.
    pub fn of(arrivals: &[Arrival], sent: &HashMap<u128, Instant>) -> Self {
        let mut ms: Vec<f64> = arrivals
            .iter()
            .filter_map(|a| {
                let sent = sent.get(&a.event_id)?;
                Some(a.at.saturating_duration_since(*sent).as_secs_f64() * 1000.0)
            })
            .collect();
        ms.sort_by(f64::total_cmp);
        Self {
            p50: percentile(&ms, 0.50),
            p90: percentile(&ms, 0.90),
            p99: percentile(&ms, 0.99),
            max: ms.last().copied().unwrap_or(0.0),
        }
    }
}

/// Nearest-rank percentile of sorted samples (0 when there are none): the smallest sample with
/// at least `q` of all samples at or below it.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Rounds for display, so the JSON line carries no false precision.
fn round(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}

impl Report {
    pub fn ratio(&self) -> f64 {
        if self.raw_post_per_sec > 0.0 {
            self.delivered_per_sec / self.raw_post_per_sec
        } else {
            0.0
        }
    }

    pub fn print_summary(&self) {
        let load = match self.rate {
            0 => "flat out".to_string(),
            rate => format!("offered {rate} events/s"),
        };
        let mode = if self.backlog { ", backlog" } else { "" };
        let mode = match self.source {
            Some(bus) => format!("{mode}, published to {bus}"),
            None => mode.to_string(),
        };
        let mode = match self.otlp {
            Some(_) => format!("{mode}, tracing exported"),
            None => mode.to_string(),
        };
        let mode =
            if self.egress_proxy { format!("{mode}, through an egress proxy") } else { mode };
        let mode = if self.cpu_hog { format!("{mode}, beside a busy-loop CPU hog") } else { mode };
        println!(
            "webhookd-bench: {} events × {} webhook(s) on {}, {} B payloads, batches of {}, {load}{mode}",
            self.events, self.webhooks, self.backend, self.payload_bytes, self.batch_size
        );
        println!(
            "  delivered    {:>10} / {} ({} duplicates)",
            self.delivered, self.expected, self.duplicates
        );
        if self.failed_on_purpose > 0 || self.malformed > 0 {
            println!(
                "  failed once  {:>10} on purpose, {} malformed requests",
                self.failed_on_purpose, self.malformed
            );
        }
        println!("  ingest       {:>10.0} events/s", self.ingest_per_sec);
        println!("  delivery     {:>10.0} deliveries/s", self.delivered_per_sec);
        if let Some(drain) = self.drain_per_sec {
            println!("  drain        {drain:>10.0} deliveries/s (worker-only node)");
        }
        println!(
            "  raw ceiling  {:>10.0} POST/s at concurrency {} (webhookd reaches {:.1}%)",
            self.raw_post_per_sec,
            self.concurrency,
            self.ratio() * 100.0
        );
        let l = self.latency;
        let (from, after) = match self.source {
            Some(_) => ("the publish", "after store "),
            None => ("the ingest request", "after 202 ms"),
        };
        println!(
            "  latency ms   p50 {:.1}  p90 {:.1}  p99 {:.1}  max {:.1}  (from {from})",
            l.p50, l.p90, l.p99, l.max
        );
        let a = self.after_ack;
        println!(
            "  {after} p50 {:.1}  p90 {:.1}  p99 {:.1}  max {:.1}{}",
            a.p50,
            a.p90,
            a.p99,
            a.max,
            if self.source.is_some() { "  (from the broker's publish ack)" } else { "" }
        );
        if self.black_holes > 0 || self.slow_backlog > 0 {
            println!(
                "  beside       {} black holes ({} logs), slow backlog {} ({} served meanwhile)",
                self.black_holes, self.black_hole_logs, self.slow_backlog, self.slow_served
            );
        }
        println!(
            "  webhookd     peak RSS {:.1} MB, CPU {:.2} s",
            self.server_peak_rss_mb, self.server_cpu_s
        );
        if let Some(otlp) = self.otlp {
            println!(
                "  otlp         {:>10} exports, {:.1} MB of spans",
                otlp.requests,
                otlp.bytes as f64 / 1e6
            );
        }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "backend": self.backend,
            "source": self.source,
            "events": self.events,
            "webhooks": self.webhooks,
            "expected": self.expected,
            "delivered": self.delivered,
            "duplicates": self.duplicates,
            "ingest_per_sec": round(self.ingest_per_sec, 1),
            "delivered_per_sec": round(self.delivered_per_sec, 1),
            "raw_post_per_sec": round(self.raw_post_per_sec, 1),
            "ratio": round(self.ratio(), 4),
            "p50_ms": round(self.latency.p50, 2),
            "p90_ms": round(self.latency.p90, 2),
            "p99_ms": round(self.latency.p99, 2),
            "max_ms": round(self.latency.max, 2),
            "p50_after_ack_ms": round(self.after_ack.p50, 2),
            "p99_after_ack_ms": round(self.after_ack.p99, 2),
            "black_holes": self.black_holes,
            "black_hole_logs": self.black_hole_logs,
            "slow_backlog": self.slow_backlog,
            "slow_served": self.slow_served,
            "server_peak_rss_mb": round(self.server_peak_rss_mb, 1),
            "server_cpu_s": round(self.server_cpu_s, 2),
            "payload_bytes": self.payload_bytes,
            "rate": self.rate,
            "backlog": self.backlog,
            "drain_per_sec": self.drain_per_sec.map(|d| round(d, 1)),
            "batch_size": self.batch_size,
            "concurrency": self.concurrency,
            "ingest_concurrency": self.ingest_concurrency,
            "fail_ratio": self.fail_ratio,
            "failed_on_purpose": self.failed_on_purpose,
            "receiver_delay_ms": self.receiver_delay_ms,
            "egress_proxy": self.egress_proxy,
            "cpu_hog": self.cpu_hog,
            "otlp": self.otlp.is_some(),
            "otlp_exports": self.otlp.map(|o| o.requests),
            "otlp_bytes": self.otlp.map(|o| o.bytes),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&samples, 0.50), 50.0);
        assert_eq!(percentile(&samples, 0.90), 90.0);
        assert_eq!(percentile(&samples, 0.99), 99.0);
        assert_eq!(percentile(&samples, 1.0), 100.0);
        assert_eq!(percentile(&[7.0], 0.5), 7.0);
        assert_eq!(percentile(&[1.0, 2.0, 3.0], 0.0), 1.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }

    #[test]
    fn latency_measures_from_the_send_instant() {
        let t0 = Instant::now();
        let sent = HashMap::from([(1u128, t0), (2u128, t0)]);
        let at = |ms| t0 + std::time::Duration::from_millis(ms);
        let arrivals = vec![
            Arrival { event_id: 1, at: at(10), index: None },
            Arrival { event_id: 2, at: at(30), index: None },
            Arrival { event_id: 99, at: at(500), index: None }, // not ours: ignored
        ];
        let latency = Latency::of(&arrivals, &sent);
        assert_eq!((latency.p50, latency.max), (10.0, 30.0));
    }
}
