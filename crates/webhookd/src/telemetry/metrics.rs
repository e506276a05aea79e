//! Prometheus metrics, all named `webhookd_*`, with bounded label sets (never an id as a label).
//! Recording goes through the `metrics` facade; `/metrics` renders the process-wide recorder.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    300.0, 3600.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide recorder (installed on first use; several apps in one process share it).
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
            .expect("buckets are not empty");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Fails only when another recorder is installed; then ours still renders (empty).
        let _ = metrics::set_global_recorder(recorder);
        describe();
        handle
    })
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!("webhookd_events_ingested_total", "Events accepted by ingestion");
    describe_counter!(
        "webhookd_source_messages_total",
        "Messages of event sources by outcome (ingested, duplicate, rejected)"
    );
    describe_gauge!(
        "webhookd_source_pending",
        "Messages of an event source waiting in its broker (JetStream pending, AMQP queue depth)"
    );
    describe_counter!(
        "webhookd_attempts_total",
        "Delivery attempts by outcome and response status class"
    );
    describe_histogram!(
        "webhookd_delivery_latency_seconds",
        Unit::Seconds,
        "From ingestion to a successful delivery"
    );
    describe_histogram!(
        "webhookd_attempt_duration_seconds",
        Unit::Seconds,
        "Duration of one HTTP attempt"
    );
    describe_gauge!("webhookd_logs_due", "Delivery logs due now and not yet claimed");
    describe_gauge!("webhookd_attempts_in_flight", "Attempts being sent by this node");
    describe_gauge!(
        "webhookd_attempts_stalled",
        "Attempts unanswered past their lane's stall threshold (they hold no sending slot)"
    );
    describe_gauge!("webhookd_lanes", "Destinations this node schedules");
    describe_counter!(
        "webhookd_circuit_transitions_total",
        "Circuit breaker transitions by new state (opened, closed)"
    );
    describe_gauge!("webhookd_webhooks_disabled", "Webhooks currently disabled");
    describe_counter!("webhookd_http_requests_total", "API requests by route and status");
    describe_histogram!(
        "webhookd_http_request_duration_seconds",
        Unit::Seconds,
        "API request duration by route"
    );
    describe_counter!("webhookd_retention_deleted_total", "Rows deleted by retention, by table");
    describe_counter!(
        "webhookd_payloads_expired_total",
        "Event payloads removed by payload retention"
    );
    describe_counter!("webhookd_payloads_erased_total", "Event payloads removed by call erasures");
    describe_gauge!("webhookd_http_connections_open", "API connections open on this node");
    describe_counter!(
        "webhookd_http_connections_timed_out_total",
        "API connections closed by the header or idle timeout"
    );
    describe_counter!(
        "webhookd_api_key_lookups_total",
        "API keys looked up in the database (not in the cache of verified or unknown keys)"
    );
    describe_counter!(
        "webhookd_api_key_rejections_total",
        "Requests refused for their API key: unknown (401) or over the address's lookups (429)"
    );
}

pub fn events_ingested(count: usize) {
    counter!("webhookd_events_ingested_total").increment(count as u64);
}

/// One message of an event source settled: `ingested`, `duplicate` or `rejected`. `source` is
/// the source's name (`nats:STREAM/CONSUMER`, `amqp:QUEUE`), a handful per node.
pub fn source_message(source: &str, outcome: &'static str) {
    counter!("webhookd_source_messages_total", "source" => source.to_string(), "outcome" => outcome)
        .increment(1);
}

/// Messages of a source waiting in its broker, as the broker tells it (the lag).
pub fn source_pending(source: &str, pending: u64) {
    gauge!("webhookd_source_pending", "source" => source.to_string()).set(pending as f64);
}

/// One finished attempt: its outcome, status class (`2xx`…, or `none` without a response), and
/// duration; for a success, the latency since ingestion.
pub fn attempt(
    success: bool,
    status: Option<u16>,
    duration: Duration,
    since_ingest: Option<Duration>,
) {
    let outcome = if success { "success" } else { "failure" };
    let class = match status {
        Some(code @ 100..=599) => ["1xx", "2xx", "3xx", "4xx", "5xx"][usize::from(code / 100 - 1)],
        Some(_) => "other",
        None => "none",
    };
    counter!("webhookd_attempts_total", "outcome" => outcome, "status_class" => class).increment(1);
    histogram!("webhookd_attempt_duration_seconds").record(duration.as_secs_f64());
    if let Some(latency) = since_ingest {
        histogram!("webhookd_delivery_latency_seconds").record(latency.as_secs_f64());
    }
}

/// Attempts in flight on this node: `active` ones and `stalled` ones (unanswered past their
/// lane's stall threshold, holding a socket but no sending slot).
pub fn in_flight(active: usize, stalled: usize) {
    gauge!("webhookd_attempts_in_flight").set((active + stalled) as f64);
    gauge!("webhookd_attempts_stalled").set(stalled as f64);
}

/// Lanes (destinations) this node currently schedules.
pub fn lanes(count: usize) {
    gauge!("webhookd_lanes").set(count as f64);
}

/// A webhook's circuit changed state (`opened` or `closed`).
pub fn circuit_transition(to: &'static str) {
    counter!("webhookd_circuit_transitions_total", "to" => to).increment(1);
}

pub fn logs_due(count: i64) {
    gauge!("webhookd_logs_due").set(count as f64);
}

pub fn webhooks_disabled(count: i64) {
    gauge!("webhookd_webhooks_disabled").set(count as f64);
}

/// One API request; `route` is the matched route template (or `unmatched`), never the concrete
/// path, and a method outside HTTP's own set is `other`: a client must not be able to mint series.
pub fn http_request(method: &http::Method, route: &str, status: u16, duration: Duration) {
    let labels = [
        ("method", method_label(method).to_string()),
        ("route", route.to_string()),
        ("status", status.to_string()),
    ];
    counter!("webhookd_http_requests_total", &labels).increment(1);
    histogram!("webhookd_http_request_duration_seconds", "route" => route.to_string())
        .record(duration.as_secs_f64());
}

/// The label of a request method: the standard methods by name, anything else `other`.
fn method_label(method: &http::Method) -> &'static str {
    use http::Method;
    const KNOWN: [Method; 9] = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::HEAD,
        Method::OPTIONS,
        Method::CONNECT,
        Method::TRACE,
    ];
    KNOWN.iter().find(|known| *known == method).map_or("other", Method::as_str)
}

pub fn retention_deleted(table: &'static str, rows: u64) {
    counter!("webhookd_retention_deleted_total", "table" => table).increment(rows);
}

/// Events whose payload `--payload-retention` removed.
pub fn payloads_expired(events: u64) {
    counter!("webhookd_payloads_expired_total").increment(events);
}

/// Events whose payload an erasure removed.
pub fn payloads_erased(events: u64) {
    counter!("webhookd_payloads_erased_total").increment(events);
}

pub fn http_connection_opened() {
    gauge!("webhookd_http_connections_open").increment(1.0);
}

pub fn http_connection_closed() {
    gauge!("webhookd_http_connections_open").decrement(1.0);
}

/// `reason`: `header_timeout` or `idle_timeout`.
pub fn http_connection_timed_out(reason: &'static str) {
    counter!("webhookd_http_connections_timed_out_total", "reason" => reason).increment(1);
}

pub fn api_key_lookup() {
    counter!("webhookd_api_key_lookups_total").increment(1);
}

/// `reason`: `unknown` or `throttled`.
pub fn api_key_rejected(reason: &'static str) {
    counter!("webhookd_api_key_rejections_total", "reason" => reason).increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_methods_share_one_label() {
        assert_eq!(method_label(&http::Method::GET), "GET");
        assert_eq!(method_label(&http::Method::DELETE), "DELETE");
        for name in ["FOO", "get", "PROPFIND", &"X".repeat(1000)] {
            let method = http::Method::from_bytes(name.as_bytes()).unwrap();
            assert_eq!(method_label(&method), "other", "{name}");
        }
    }
}
