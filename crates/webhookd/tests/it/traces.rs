//! Tracing (SPEC §4): every attempt carries a W3C `traceparent`; with `--otlp-endpoint` the
//! spans of ingestion and of each attempt reach the collector, linked from the platform's trace.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::backend_tests;
use crate::collector::{Collector, ExportedSpan};
use crate::harness::{send, Backend, TestApp};
use crate::receiver::{Receiver, Reply};

const PLATFORM_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PLATFORM_SPAN: &str = "00f067aa0ba902b7";

/// `(trace id, parent span id, sampled)` of a `traceparent` value.
fn parts(traceparent: &str) -> (String, String, bool) {
    let fields: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(fields.len(), 4, "{traceparent:?}");
    assert_eq!((fields[0], fields[1].len(), fields[2].len()), ("00", 32, 16), "{traceparent:?}");
    (fields[1].to_string(), fields[2].to_string(), fields[3] == "01")
}

/// Ingests one event for `agent`, with the platform's `traceparent` when given.
async fn ingest(app: &TestApp, agent: &str, traceparent: Option<&str>, body: Value) -> Value {
    let mut request =
        app.request(Method::POST, &format!("/api/v1/agents/{agent}/events")).json(&body);
    if let Some(traceparent) = traceparent {
        request = request.header("traceparent", traceparent);
    }
    let (status, body) = send(request).await;
    assert_eq!(status, 202, "{body}");
    body["data"].clone()
}

fn the<'a>(
    spans: &'a [ExportedSpan],
    what: &str,
    found: impl Fn(&ExportedSpan) -> bool,
) -> &'a ExportedSpan {
    let matching: Vec<&ExportedSpan> = spans.iter().filter(|s| found(s)).collect();
    assert_eq!(matching.len(), 1, "one {what} span expected in {spans:#?}");
    matching[0]
}

backend_tests!(
    exported_spans_link_the_platforms_trace_to_the_attempt_the_endpoint_sees,
    without_export_attempts_still_carry_a_traceparent_continuing_the_event,
);

async fn exported_spans_link_the_platforms_trace_to_the_attempt_the_endpoint_sees(
    backend: Backend,
) {
    let collector = Collector::start().await;
    let app = TestApp::spawn_with(backend, |c| c.otlp_endpoint = Some(collector.endpoint())).await;
    let receiver = Receiver::start().await;
    let agent = app.create_agent().await;
    let webhook = app.create_webhook(&agent, json!({"webhook_url": receiver.url("/hook")})).await;
    let platform = format!("00-{PLATFORM_TRACE}-{PLATFORM_SPAN}-01");
    let secret = "transcript-that-must-not-be-exported";
    let ingested = ingest(
        &app,
        &agent,
        Some(&platform),
        json!({"event": "call.completed", "data": {"t": secret}}),
    )
    .await;
    let got = receiver.wait_for(1, Duration::from_secs(10)).await.remove(0);
    let (trace, attempt_span, sampled) = parts(got.header("traceparent"));
    assert_eq!(trace, PLATFORM_TRACE, "the attempt continues the platform's trace");
    assert!(sampled);

    let spans = collector.wait_for(|s| s.span_id == attempt_span).await;
    let attempt = the(&spans, "attempt", |s| s.span_id == attempt_span);
    assert_eq!(attempt.trace_id, PLATFORM_TRACE);
    let event = the(&spans, "event transaction", |s| s.span_id == attempt.parent_span_id);
    assert_eq!(event.name, "event transaction");
    assert_eq!(event.attributes["event.id"], ingested["event_id"].as_str().unwrap());
    let request = the(&spans, "ingest request", |s| s.span_id == event.parent_span_id);
    assert_eq!(request.name, "POST /api/v1/agents/{agent_id}/events");
    assert_eq!(request.parent_span_id, PLATFORM_SPAN, "the ingest request is the platform's child");
    assert_eq!(request.attributes["http.response.status_code"], "202");
    assert_eq!(attempt.attributes["log.id"], ingested["logs"][0]["log_id"].as_str().unwrap());
    assert_eq!(attempt.attributes["webhook.id"], webhook["id"].as_str().unwrap());
    assert_eq!(attempt.attributes["http.response.status_code"], "200");
    assert!(attempt.attributes.contains_key("duration_ms"), "{attempt:?}");
    for span in &spans {
        assert!(span.trace_id == PLATFORM_TRACE, "one trace: {span:?}");
        assert!(span.attributes.values().all(|v| !v.contains(secret)), "a payload in {span:?}");
        assert!(span.attributes.values().all(|v| !v.contains("/hook")), "a URL in {span:?}");
    }

    // Without the platform's context, a lone event is the request's trace; each event of a
    // batch is a trace of its own, linked to the request.
    ingest(&app, &agent, None, json!({"event": "call.completed", "data": {}})).await;
    let got = receiver.wait_for(2, Duration::from_secs(10)).await.remove(1);
    let (trace, attempt_span, _) = parts(got.header("traceparent"));
    let spans = collector.wait_for(|s| s.span_id == attempt_span).await;
    let attempt = the(&spans, "attempt", |s| s.span_id == attempt_span);
    let event = the(&spans, "event", |s| s.span_id == attempt.parent_span_id);
    let request = the(&spans, "request", |s| s.span_id == event.parent_span_id);
    assert_eq!((request.parent_span_id.as_str(), request.trace_id.as_str()), ("", trace.as_str()));

    let batch = json!({"events": [
        {"event": "call.completed", "data": {}}, {"event": "call.completed", "data": {}}]});
    let (status, _) =
        app.call(Method::POST, &format!("/api/v1/agents/{agent}/events/batch"), Some(batch)).await;
    assert_eq!(status, 202);
    let got = receiver.wait_for(4, Duration::from_secs(10)).await;
    let batch_traces: Vec<(String, String, bool)> =
        got[2..].iter().map(|r| parts(r.header("traceparent"))).collect();
    assert_ne!(batch_traces[0].0, batch_traces[1].0, "a trace per event");
    let last_attempt = batch_traces[1].1.clone();
    let spans = collector.wait_for(|s| s.span_id == last_attempt).await;
    let attempt = the(&spans, "attempt", |s| s.span_id == last_attempt);
    let event = the(&spans, "event", |s| s.span_id == attempt.parent_span_id);
    assert_eq!(event.parent_span_id, "", "a batch event starts its own trace");
    let request = the(&spans, "batch request", |s| Some(&s.span_id) == event.links.first());
    assert_eq!(request.name, "POST /api/v1/agents/{agent_id}/events/batch");
}

async fn without_export_attempts_still_carry_a_traceparent_continuing_the_event(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let receiver = Receiver::start().await;
    receiver.script([Reply::status(500)]);
    let agent = app.create_agent().await;
    app.create_webhook(&agent, json!({"webhook_url": receiver.url("/hook")})).await;
    let ingested = ingest(&app, &agent, None, json!({"event": "call.completed", "data": {}})).await;
    let got = receiver.wait_for(2, Duration::from_secs(10)).await;
    let (first, retry) = (parts(got[0].header("traceparent")), parts(got[1].header("traceparent")));
    let event_trace = ingested["event_id"].as_str().unwrap().replace('-', "");
    assert_eq!(first.0, event_trace, "an event without context is its own trace");
    assert_eq!(retry.0, event_trace, "its retries share it");
    assert_ne!(first.1, retry.1, "each attempt is its own span");

    let platform = format!("00-{PLATFORM_TRACE}-{PLATFORM_SPAN}-00");
    ingest(&app, &agent, Some(&platform), json!({"event": "call.completed", "data": {}})).await;
    let got = receiver.wait_for(3, Duration::from_secs(10)).await.remove(2);
    let (trace, span, sampled) = parts(got.header("traceparent"));
    assert_eq!(trace, PLATFORM_TRACE);
    assert_ne!(span, PLATFORM_SPAN);
    assert!(!sampled, "the platform's sampling decision is kept");
}

/// A custom header cannot take the place of the `traceparent` webhookd sets.
#[tokio::test]
async fn a_custom_traceparent_header_is_refused() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let agent = app.create_agent().await;
    let body = json!({"name": "w", "webhook_url": "https://example.com/h", "events": ["call.completed"],
        "custom_headers": [{"key": "traceparent", "value": "00-x"}]});
    let (status, body) =
        app.call(Method::POST, &format!("/api/v1/agents/{agent}/webhooks"), Some(body)).await;
    assert_eq!(status, 422, "{body}");
}
