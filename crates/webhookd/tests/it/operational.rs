//! Operational webhooks (SPEC §3, §4): the organization's own endpoint hears of webhooks
//! disabled, circuits opened and closed, and deliveries failed — once each, signed with the
//! organization's secret, through the outbox (nothing lost on a crash), never about itself.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use crate::backend_tests;
use crate::harness::{assert_error, Backend, TestApp, TestDb};
use crate::process::{create_org, ServeProcess};
use crate::receiver::{Received, Receiver, Reply};

const OPS: &str = "/api/v1/organization/operational-webhook";

async fn org_secret(app: &TestApp) -> String {
    let (status, body) = app.call(Method::GET, "/api/v1/organization/secret", None).await;
    assert_eq!(status, 200, "{body}");
    body["data"]["signing_secret"].as_str().unwrap().to_string()
}

/// Asserts that the reference Standard Webhooks implementation accepts `got` under `secret`.
fn assert_signed_with(got: &Received, secret: &str) {
    let reference = standardwebhooks::Webhook::new(secret).unwrap();
    let mut headers = http::HeaderMap::new();
    for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        headers.insert(name, got.header(name).parse().unwrap());
    }
    reference.verify(&got.body, &headers).expect("signed with the organization's secret");
}

async fn set_operational_webhook(app: &TestApp, url: &str, events: Option<Value>) -> Value {
    let mut body = json!({"url": url});
    if let Some(events) = events {
        body["events"] = events;
    }
    let (status, body) = app.call(Method::PUT, OPS, Some(body)).await;
    assert_eq!(status, 200, "{body}");
    body["data"].clone()
}

/// The operational events `receiver` got, one per `webhook-id` (retries of one event are one),
/// each with the first request that carried it.
fn events_by_id(receiver: &Receiver) -> BTreeMap<String, Received> {
    let mut events = BTreeMap::new();
    for request in receiver.received() {
        events.entry(request.header("webhook-id").to_string()).or_insert(request);
    }
    events
}

/// Waits until `receiver` got events of each of `types` (by `type`), then a little longer, so
/// that a duplicate would have arrived too; returns the events' bodies.
async fn wait_for_types(receiver: &Receiver, types: &[&str]) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let bodies: Vec<Value> = events_by_id(receiver).values().map(Received::json).collect();
        let seen = |t: &&str| bodies.iter().any(|b| b["type"] == *t);
        if types.iter().all(seen) {
            tokio::time::sleep(Duration::from_millis(600)).await;
            return events_by_id(receiver).values().map(Received::json).collect();
        }
        assert!(Instant::now() < deadline, "expected {types:?}, got {bodies:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn of_type<'a>(bodies: &'a [Value], kind: &str) -> Vec<&'a Value> {
    bodies.iter().filter(|b| b["type"] == kind).collect()
}

backend_tests!(
    the_operational_webhook_is_set_read_replaced_and_removed,
    a_circuit_that_opens_and_closes_tells_the_operational_endpoint_once_each,
    a_log_that_ends_failed_sends_delivery_failed_with_its_ids_status_and_error,
    a_webhook_disabled_by_410_sends_only_the_subscribed_webhook_disabled,
    a_webhook_turned_off_through_the_api_sends_webhook_disabled_with_that_reason,
    a_failing_operational_endpoint_produces_no_operational_events_about_itself,
    a_failed_operational_delivery_is_listed_and_retried_like_any_log,
);

async fn the_operational_webhook_is_set_read_replaced_and_removed(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (status, body) = app.call(Method::GET, OPS, None).await;
    assert_error(status, &body, 404, "NOT_FOUND");
    assert!(body["message"].as_str().unwrap().contains("PUT"), "{body}");
    let (status, body) = app.call(Method::DELETE, OPS, None).await;
    assert_error(status, &body, 404, "NOT_FOUND");

    for (input, field) in [
        (json!({}), "url"),
        (json!({"url": "ftp://ops.example.com"}), "url"),
        (json!({"url": "https://ops.example.com", "events": []}), "events"),
        (json!({"url": "https://ops.example.com", "events": ["call.completed"]}), "events"),
    ] {
        let (status, body) = app.call(Method::PUT, OPS, Some(input.clone())).await;
        assert_error(status, &body, 422, "VALIDATION_FAILED");
        assert!(body["errors"][field].is_array(), "{input} → {body}");
    }

    let set = set_operational_webhook(&app, "https://ops.example.com/hooks", None).await;
    assert_eq!(set["url"], "https://ops.example.com/hooks");
    assert_eq!(
        set["events"],
        json!([
            "webhook.disabled",
            "webhook.circuit_opened",
            "webhook.circuit_closed",
            "delivery.failed"
        ])
    );
    let replaced = set_operational_webhook(
        &app,
        "https://ops.example.com/v2",
        Some(json!(["delivery.failed"])),
    )
    .await;
    assert_eq!(replaced["events"], json!(["delivery.failed"]));
    let (status, body) = app.call(Method::GET, OPS, None).await;
    assert_eq!((status, &body["data"]["url"]), (200, &json!("https://ops.example.com/v2")));

    // The internal agent that holds operational events is nobody's business.
    let (_, agents) = app.call(Method::GET, "/api/v1/agents", None).await;
    assert_eq!(agents["data"]["pagination"]["total"], 0, "{agents}");
    // Another organization has none.
    let other = app.other_org_key().await;
    let (status, body) =
        crate::harness::send(app.client.get(app.url(OPS)).bearer_auth(&other)).await;
    assert_error(status, &body, 404, "NOT_FOUND");

    let (status, _) = app.call(Method::DELETE, OPS, None).await;
    assert_eq!(status, 200);
    let (status, body) = app.call(Method::GET, OPS, None).await;
    assert_error(status, &body, 404, "NOT_FOUND");
}

/// Even someone who learnt its id cannot reach the internal agent through `/agents`.
#[tokio::test]
async fn the_internal_agent_answers_like_an_unknown_one() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    set_operational_webhook(&app, "https://ops.example.com/hooks", None).await;
    let pool = sqlx::SqlitePool::connect(&app.db().url).await.unwrap();
    let internal: uuid::Uuid =
        sqlx::query_scalar("SELECT id FROM agents WHERE internal").fetch_one(&pool).await.unwrap();
    pool.close().await;
    let agent = format!("/api/v1/agents/{internal}");
    let event = json!({"event": "call.completed", "data": {}});
    let hook =
        json!({"name": "w", "webhook_url": "https://example.com/h", "events": ["call.completed"]});
    for (method, path, body) in [
        (Method::GET, agent.clone(), None),
        (Method::PUT, agent.clone(), Some(json!({"name": "mine now"}))),
        (Method::DELETE, agent.clone(), None),
        (Method::GET, format!("{agent}/webhooks"), None),
        (Method::POST, format!("{agent}/webhooks"), Some(hook)),
        (Method::POST, format!("{agent}/events"), Some(event)),
    ] {
        let (status, body) = app.call(method.clone(), &path, body).await;
        assert_error(status, &body, 404, "AGENT_NOT_FOUND");
    }
}

#[tokio::test]
async fn an_operational_url_on_a_private_address_is_refused_without_allow_private_targets() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| c.allow_private_targets = false).await;
    let (status, body) =
        app.call(Method::PUT, OPS, Some(json!({"url": "http://127.0.0.1:9000/ops"}))).await;
    assert_error(status, &body, 422, "VALIDATION_FAILED");
    assert!(body["errors"]["url"][0].as_str().unwrap().contains("allow-private-targets"), "{body}");
}

async fn a_circuit_that_opens_and_closes_tells_the_operational_endpoint_once_each(
    backend: Backend,
) {
    let app = TestApp::spawn_with(backend, |c| {
        c.circuit_threshold = 1;
        c.circuit_cooldown = Duration::from_millis(300);
    })
    .await;
    let (ops, customer) = (Receiver::start().await, Receiver::start().await);
    set_operational_webhook(&app, &ops.url("/ops"), None).await;
    customer.script([Reply::status(503)]);
    let agent = app.create_agent().await;
    let webhook = app.create_webhook(&agent, json!({"webhook_url": customer.url("/hook")})).await;
    app.ingest(&agent, json!({"event": "call.completed", "data": {}})).await;

    let bodies = wait_for_types(&ops, &["webhook.circuit_opened", "webhook.circuit_closed"]).await;
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    let opened = of_type(&bodies, "webhook.circuit_opened")[0];
    assert_eq!(opened["data"]["webhook_id"], webhook["id"]);
    assert_eq!(opened["data"]["agent_id"], json!(agent));
    assert_eq!(opened["data"]["reason"], "consecutive_failures");
    assert!(opened["data"]["retry_at"].is_string(), "{opened}");
    let closed = of_type(&bodies, "webhook.circuit_closed")[0];
    assert_eq!(closed["data"]["webhook_id"], webhook["id"]);
    assert!(closed["timestamp"].is_string());
    let secret = org_secret(&app).await;
    ops.received().iter().for_each(|got| assert_signed_with(got, &secret));
}

async fn a_log_that_ends_failed_sends_delivery_failed_with_its_ids_status_and_error(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    let (ops, customer) = (Receiver::start().await, Receiver::start().await);
    set_operational_webhook(&app, &ops.url("/ops"), None).await;
    customer.otherwise(Reply::status(500));
    let agent = app.create_agent().await;
    let webhook = app
        .create_webhook(&agent, json!({"webhook_url": customer.url("/hook"), "max_retries": 1}))
        .await;
    let ingested =
        app.ingest(&agent, json!({"event": "call.completed", "call_id": "c_9", "data": {}})).await;

    let bodies = wait_for_types(&ops, &["delivery.failed"]).await;
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    let data = &bodies[0]["data"];
    assert_eq!(data["log_id"], ingested["logs"][0]["log_id"]);
    assert_eq!(data["event_id"], ingested["event_id"]);
    assert_eq!(data["webhook_id"], webhook["id"]);
    assert_eq!(data["agent_id"], json!(agent));
    assert_eq!(data["call_id"], "c_9");
    assert_eq!(data["event_type"], "call.completed");
    assert_eq!(data["status_code"], 500);
    assert_eq!(data["error"], "HTTP 500");
    assert_eq!(data["attempts"], 2);
    assert_eq!(data["reason"], "retries_exhausted");
    let got = ops.received().remove(0);
    assert_eq!(got.header("x-webhook-event"), "delivery.failed");
    assert_signed_with(&got, &org_secret(&app).await);
}

async fn a_webhook_disabled_by_410_sends_only_the_subscribed_webhook_disabled(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (ops, customer) = (Receiver::start().await, Receiver::start().await);
    set_operational_webhook(&app, &ops.url("/ops"), Some(json!(["webhook.disabled"]))).await;
    customer.otherwise(Reply::status(410));
    let agent = app.create_agent().await;
    let webhook = app.create_webhook(&agent, json!({"webhook_url": customer.url("/hook")})).await;
    app.ingest(&agent, json!({"event": "call.completed", "data": {}})).await;

    // The failed log would make delivery.failed too, but it was not asked for.
    let bodies = wait_for_types(&ops, &["webhook.disabled"]).await;
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    let data = &bodies[0]["data"];
    assert_eq!(data["webhook_id"], webhook["id"]);
    assert_eq!(data["reason"], "endpoint_gone");
    assert_eq!(data["message"], "Endpoint answered 410 Gone");
    assert_eq!(data["webhook_url"], json!(customer.url("/hook")));
    assert_signed_with(&ops.received()[0], &org_secret(&app).await);
}

async fn a_webhook_turned_off_through_the_api_sends_webhook_disabled_with_that_reason(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    let ops = Receiver::start().await;
    set_operational_webhook(&app, &ops.url("/ops"), None).await;
    let agent = app.create_agent().await;
    let webhook = app.create_webhook(&agent, json!({})).await;
    let path = format!("/api/v1/agents/{agent}/webhooks/{}", webhook["id"].as_str().unwrap());
    let toggle = format!("{path}/toggle");
    assert_eq!(app.call(Method::PATCH, &toggle, None).await.0, 200); // off: an event
    assert_eq!(app.call(Method::PATCH, &toggle, None).await.0, 200); // on: none
    let off = json!({"enabled": false});
    assert_eq!(app.call(Method::PUT, &path, Some(off.clone())).await.0, 200); // off: an event
    assert_eq!(app.call(Method::PUT, &path, Some(off)).await.0, 200); // already off: none

    let received = ops.wait_for(2, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let bodies: Vec<Value> = events_by_id(&ops).values().map(Received::json).collect();
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    for body in &bodies {
        assert_eq!(body["type"], "webhook.disabled");
        assert_eq!(body["data"]["webhook_id"], webhook["id"]);
        assert_eq!(body["data"]["reason"], "disabled_by_api");
    }
    let secret = org_secret(&app).await;
    received.iter().for_each(|got| assert_signed_with(got, &secret));
}

/// A webhook whose one delivery fails, so that `delivery.failed` goes to an operational
/// endpoint that answers 500 to everything and wants only `delivery.failed` (so that the
/// customer's circuit, which opens at the first failure, stays out of it); returns the app, the
/// endpoint and the failed operational log.
async fn failing_operational_endpoint(backend: Backend) -> (TestApp, Receiver, Value) {
    let app = TestApp::spawn_with(backend, |c| c.circuit_threshold = 1).await;
    let (ops, customer) = (Receiver::start().await, Receiver::start().await);
    ops.otherwise(Reply::status(500));
    customer.otherwise(Reply::status(500));
    set_operational_webhook(&app, &ops.url("/ops"), Some(json!(["delivery.failed"]))).await;
    let agent = app.create_agent().await;
    app.create_webhook(&agent, json!({"webhook_url": customer.url("/hook"), "max_retries": 0}))
        .await;
    app.ingest(&agent, json!({"event": "call.completed", "data": {}})).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let log = loop {
        let (status, body) = app.call(Method::GET, &format!("{OPS}/logs"), None).await;
        assert_eq!(status, 200, "{body}");
        if body["data"]["logs"][0]["status"] == "failed" {
            break body["data"]["logs"][0].clone();
        }
        assert!(Instant::now() < deadline, "the operational log never failed: {body}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    (app, ops, log)
}

async fn a_failing_operational_endpoint_produces_no_operational_events_about_itself(
    backend: Backend,
) {
    let (app, ops, log) = failing_operational_endpoint(backend).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    // One event (the customer's delivery.failed), sent with the default 3 retries: no
    // delivery.failed about its own failure, no circuit of its own despite a threshold of 1.
    let received = ops.received();
    assert_eq!(received.len(), 4, "{:?}", received.iter().map(Received::json).collect::<Vec<_>>());
    assert_eq!(events_by_id(&ops).len(), 1);
    assert_eq!(log["event"], "delivery.failed");
    assert_eq!(log["webhook_id"], Value::Null);
    assert_eq!(log["attempt"], 4);
    let (_, listing) = app.call(Method::GET, &format!("{OPS}/logs"), None).await;
    assert_eq!(listing["data"]["pagination"]["total"], 1, "{listing}");
}

async fn a_failed_operational_delivery_is_listed_and_retried_like_any_log(backend: Backend) {
    let (app, ops, log) = failing_operational_endpoint(backend).await;
    let id = log["id"].as_str().unwrap();
    let (status, detail) = app.call(Method::GET, &format!("{OPS}/logs/{id}"), None).await;
    assert_eq!(status, 200, "{detail}");
    assert_eq!(detail["data"]["attempts"].as_array().unwrap().len(), 4);
    assert_eq!(detail["data"]["request_payload"]["type"], "delivery.failed");
    let (status, filtered) =
        app.call(Method::GET, &format!("{OPS}/logs?status=success"), None).await;
    assert_eq!((status, &filtered["data"]["logs"]), (200, &json!([])));
    // A log of a webhook is not an operational log.
    let unknown = uuid::Uuid::now_v7();
    let (status, body) = app.call(Method::GET, &format!("{OPS}/logs/{unknown}"), None).await;
    assert_error(status, &body, 404, "LOG_NOT_FOUND");

    ops.otherwise(Reply::status(200));
    let (status, queued) = app.call(Method::POST, &format!("{OPS}/logs/{id}/retry"), None).await;
    assert_eq!(status, 202, "{queued}");
    assert_eq!(queued["data"]["original_log_id"], json!(id));
    let new_log = queued["data"]["log_id"].as_str().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, body) = app.call(Method::GET, &format!("{OPS}/logs/{new_log}"), None).await;
        if body["data"]["status"] == "success" {
            assert_eq!(body["data"]["attempts"][0]["send_type"], "manual");
            break;
        }
        assert!(Instant::now() < deadline, "the retry never succeeded: {body}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let last = ops.received().pop().unwrap();
    assert_eq!(last.header("webhook-id"), log["event_id"].as_str().unwrap());
    assert_signed_with(&last, &org_secret(&app).await);
    let (status, body) = app.call(Method::POST, &format!("{OPS}/logs/{new_log}/retry"), None).await;
    assert_error(status, &body, 422, "LOG_NOT_RETRIABLE");
}

/// The outbox: the event is written with the state change, so a crash right after the circuit
/// opened, while the operational endpoint is down, loses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_right_after_a_circuit_opens_loses_no_operational_event() {
    let db = TestDb::new(Backend::Sqlite).await;
    let key = create_org(&db.url);
    let (ops, customer) = (Receiver::start().await, Receiver::start().await);
    ops.otherwise(Reply::status(503));
    customer.otherwise(Reply::status(503));
    let flags = [
        "--allow-private-targets",
        "--retry-schedule",
        "1s",
        "--circuit-threshold",
        "1",
        "--circuit-cooldown",
        "10m",
    ];
    let mut node = ServeProcess::start(&db.url, &flags);
    let client = reqwest::Client::new();
    let call = |node: &ServeProcess, method: Method, path: &str, body: Option<Value>| {
        let mut request = client.request(method, node.url(path)).bearer_auth(&key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        crate::harness::send(request)
    };
    let (status, _) = call(&node, Method::PUT, OPS, Some(json!({"url": ops.url("/ops")}))).await;
    assert_eq!(status, 200);
    let (_, agent) = call(&node, Method::POST, "/api/v1/agents", Some(json!({"name": "a"}))).await;
    let agent = agent["data"]["id"].as_str().unwrap().to_string();
    let hook =
        json!({"name": "w", "webhook_url": customer.url("/hook"), "events": ["call.completed"]});
    let (_, webhook) =
        call(&node, Method::POST, &format!("/api/v1/agents/{agent}/webhooks"), Some(hook)).await;
    let path =
        format!("/api/v1/agents/{agent}/webhooks/{}", webhook["data"]["id"].as_str().unwrap());
    let event = json!({"event": "call.completed", "data": {}});
    call(&node, Method::POST, &format!("/api/v1/agents/{agent}/events"), Some(event)).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, body) = call(&node, Method::GET, &path, None).await;
        if body["data"]["circuit_state"] == "open" {
            break;
        }
        assert!(Instant::now() < deadline, "the circuit never opened: {body}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    node.kill();
    let before: Vec<Value> = events_by_id(&ops).values().map(Received::json).collect();
    assert!(before.iter().all(|b| b["type"] == "webhook.circuit_opened"), "{before:?}");

    ops.otherwise(Reply::status(200));
    let node = ServeProcess::start(&db.url, &flags);
    let delivered = format!("{OPS}/logs?status=success");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, logs) = call(&node, Method::GET, &delivered, None).await;
        if logs["data"]["pagination"]["total"] == 1 {
            assert_eq!(logs["data"]["logs"][0]["event"], "webhook.circuit_opened");
            break;
        }
        assert!(Instant::now() < deadline, "the circuit_opened event was lost: {logs}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let bodies: Vec<Value> = events_by_id(&ops).values().map(Received::json).collect();
    assert_eq!(bodies.len(), 1, "one event, however many attempts: {bodies:?}");
    assert_eq!(bodies[0]["type"], "webhook.circuit_opened");
}
