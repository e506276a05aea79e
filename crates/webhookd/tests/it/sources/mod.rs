//! Event sources against real brokers: NATS JetStream at 127.0.0.1:4222 and RabbitMQ at
//! 127.0.0.1:5672 (override with `WEBHOOKD_TEST_NATS_URL`, `WEBHOOKD_TEST_AMQP_URL`). Each test
//! has a stream or queue of its own. Without a broker a test says it skipped, except under CI,
//! where it fails.

mod amqp;
mod nats;

use std::collections::HashMap;
use std::io::Write as _;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use uuid::Uuid;

use crate::harness::{Backend, TestApp};

pub fn nats_url() -> String {
    std::env::var("WEBHOOKD_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

pub fn amqp_url() -> String {
    std::env::var("WEBHOOKD_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

fn under_ci() -> bool {
    std::env::var_os("CI").is_some_and(|ci| !ci.is_empty() && ci != "false")
}

/// `Some(connected)`, or `None` with a notice when the broker does not answer outside CI.
pub fn broker_or_skip<T, E: std::fmt::Display>(broker: &str, connected: Result<T, E>) -> Option<T> {
    match connected {
        Ok(client) => Some(client),
        Err(error) if under_ci() => {
            panic!("CI is set but {broker} does not answer ({error}): start it (see .ci/run)")
        }
        Err(error) => {
            let _ = writeln!(std::io::stderr(), "skipped: {broker} does not answer ({error})");
            None
        }
    }
}

/// A name no other test uses (stream, consumer, queue).
/// An app on `backend` consuming the source `url`, with `max_unacked` as its bound.
pub async fn app_consuming(backend: Backend, url: &str, max_unacked: usize) -> TestApp {
    let source = webhookd::source::SourceUrl::parse(url).unwrap();
    TestApp::spawn_with(backend, |config| {
        config.sources = vec![source];
        config.source_max_unacked = max_unacked;
    })
    .await
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", Uuid::new_v4().simple())
}

/// A message for `agent`: the ingestion body plus `agent_id`, about call `call-<i>`.
pub fn message(agent: &str, i: usize) -> Vec<u8> {
    json!({"agent_id": agent, "event": "call.completed", "call_id": format!("call-{i}"), "data": {"i": i}})
        .to_string()
        .into_bytes()
}

/// How many events each call of `agent` has in the database at `url`.
pub async fn events_by_call(backend: Backend, url: &str, agent: &str) -> HashMap<String, usize> {
    let agent = Uuid::parse_str(agent).unwrap();
    let query = "SELECT call_id FROM events WHERE agent_id = $1";
    let calls: Vec<Option<String>> = match backend {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(url).await.unwrap();
            let rows = sqlx::query_scalar(query).bind(agent).fetch_all(&pool).await.unwrap();
            pool.close().await;
            rows
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(url).await.unwrap();
            let rows = sqlx::query_scalar(query).bind(agent).fetch_all(&pool).await.unwrap();
            pool.close().await;
            rows
        }
    };
    let mut counts = HashMap::new();
    for call in calls {
        *counts.entry(call.unwrap_or_default()).or_default() += 1;
    }
    counts
}

/// Waits until `agent` has events for `expected` distinct calls; returns the counts per call.
pub async fn wait_for_events(
    backend: Backend,
    url: &str,
    agent: &str,
    expected: usize,
    timeout: Duration,
) -> HashMap<String, usize> {
    let deadline = Instant::now() + timeout;
    loop {
        let counts = events_by_call(backend, url, agent).await;
        if counts.len() >= expected {
            return counts;
        }
        assert!(Instant::now() < deadline, "only {} of {expected} events arrived", counts.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Asserts that calls `call-0` … `call-<n-1>` each have exactly one event, and nothing else.
#[track_caller]
pub fn assert_each_once(counts: &HashMap<String, usize>, n: usize) {
    let twice: Vec<_> = counts.iter().filter(|(_, count)| **count > 1).collect();
    assert!(twice.is_empty(), "events created twice: {twice:?}");
    for i in 0..n {
        assert_eq!(counts.get(&format!("call-{i}")), Some(&1), "call-{i}");
    }
    assert_eq!(counts.len(), n, "unexpected events");
}

/// The value of a counter or gauge line of `/metrics` at `base`, 0 when absent; `selector` is the
/// metric's name with its labels as rendered, e.g. `webhookd_x{outcome="a",source="b"}`.
pub async fn metric(base: &str, selector: &str) -> f64 {
    let text = reqwest::get(format!("{base}/metrics")).await.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(selector).map(|rest| rest.trim().parse().unwrap()))
        .unwrap_or(0.0)
}

/// `webhookd_source_messages_total` of one outcome of one source.
pub async fn outcome(base: &str, source: &str, outcome: &str) -> f64 {
    let selector =
        format!("webhookd_source_messages_total{{source=\"{source}\",outcome=\"{outcome}\"}}");
    metric(base, &selector).await
}

/// Polls `check` until it holds; fails with `what` after `timeout`.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `/readyz`'s state of `source`.
pub async fn source_state(base: &str, source: &str) -> String {
    let ready: Value =
        reqwest::get(format!("{base}/readyz")).await.unwrap().json().await.unwrap_or_default();
    ready["sources"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|entry| entry["source"] == source)
        .map(|entry| entry["state"].as_str().unwrap_or_default().to_string())
        .unwrap_or_default()
}

/// Creates an agent through the API at `base` with `key`; returns its id.
pub async fn create_agent(base: &str, key: &str) -> String {
    let created: Value = reqwest::Client::new()
        .post(format!("{base}/api/v1/agents"))
        .bearer_auth(key)
        .json(&json!({"name": "bus"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    created["data"]["id"].as_str().unwrap().to_string()
}

#[test]
fn a_bad_source_stops_serve_with_one_line_that_shows_the_shape_and_hides_the_password() {
    let output = crate::process::webhookd()
        .args(["serve", "--database", "sqlite::memory:"])
        .args(["--source", "amqp://guest:secret@127.0.0.1:5672/%2f"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--source") && stderr.contains("?queue="), "{stderr}");
    assert!(!stderr.contains("secret"), "{stderr}");
}
