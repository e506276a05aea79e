//! Scheduling (SPEC §4): one destination never holds back another; rate_limit, max_concurrency,
//! ordering by call and the circuit breaker hold, on one node and across PostgreSQL nodes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::backend_tests;
use crate::harness::{postgres_base_url, Backend, TestApp};
use crate::receiver::{Receiver, Reply};

backend_tests!(
    hanging_endpoints_do_not_delay_a_healthy_webhook,
    one_tenants_hundreds_of_hanging_endpoints_do_not_starve_another_tenant,
    a_slow_endpoints_backlog_does_not_delay_a_fresh_event_for_another_webhook,
    rate_limit_paces_deliveries,
    max_concurrency_bounds_requests_in_flight,
    a_calls_later_events_wait_until_its_first_one_ends,
    an_open_circuit_holds_deliveries_without_using_retries_then_a_probe_closes_it,
    a_test_send_goes_through_an_open_circuit_and_closes_it,
);

/// An endpoint that accepts connections and never answers (a firewall dropping replies).
async fn black_hole() -> String {
    black_hole_counted(Arc::new(Holes::default())).await
}

/// Requests black holes took, and how many of them their sender gave up on (closed).
#[derive(Default)]
struct Holes {
    accepted: AtomicUsize,
    closed: AtomicUsize,
}

/// A black hole that counts into `holes`.
async fn black_hole_counted(holes: Arc<Holes>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            holes.accepted.fetch_add(1, Ordering::SeqCst);
            let holes = holes.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while matches!(socket.read(&mut buf).await, Ok(n) if n > 0) {}
                holes.closed.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    format!("http://{addr}/")
}

/// Requests in flight at an endpoint, and the most ever seen at once.
#[derive(Default)]
struct InFlight {
    now: AtomicUsize,
    most: AtomicUsize,
    served: AtomicUsize,
    at: Mutex<Vec<Instant>>,
}

/// An endpoint that answers 200 after `delay`, counting requests in flight.
async fn counting_endpoint(delay: Duration) -> (String, Arc<InFlight>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let counts = Arc::new(InFlight::default());
    let shared = counts.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let counts = shared.clone();
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 64 * 1024];
                let mut read = 0;
                // Headers and the (small) body arrive in a packet or two.
                while let Ok(n) = socket.read(&mut buffer[read..]).await {
                    read += n;
                    if n == 0 || buffer[..read].windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                let now = counts.now.fetch_add(1, Ordering::SeqCst) + 1;
                counts.most.fetch_max(now, Ordering::SeqCst);
                counts.at.lock().unwrap().push(Instant::now());
                tokio::time::sleep(delay).await;
                counts.now.fetch_sub(1, Ordering::SeqCst);
                counts.served.fetch_add(1, Ordering::SeqCst);
                let _ = socket
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    (format!("http://{addr}/"), counts)
}

async fn batch(app: &TestApp, agent: &str, events: Vec<Value>) {
    let path = format!("/api/v1/agents/{agent}/events/batch");
    for chunk in events.chunks(1_000) {
        let (status, body) =
            app.call(Method::POST, &path, Some(json!({"events": chunk.to_vec()}))).await;
        assert_eq!(status, 202, "{body}");
    }
}

fn id(value: &Value) -> String {
    value["id"].as_str().unwrap().to_string()
}

/// Adds a healthy webhook (a local receiver, `call.ended`) and delivers 10 events to it, one
/// after another, each waited for.
async fn deliver_to_a_healthy_webhook(app: &TestApp, agent: &str) {
    let receiver = Receiver::start().await;
    app.create_webhook(agent, json!({"webhook_url": receiver.url("/"), "events": ["call.ended"]}))
        .await;
    for i in 0..10 {
        app.ingest(agent, json!({"event": "call.ended", "data": {"i": i}})).await;
        let arrived = receiver.wait_for(i + 1, Duration::from_secs(20)).await;
        assert_eq!(arrived[i].json(), json!({"i": i}));
    }
}

/// Waits until `ready` holds (panics after 20 s).
async fn wait_until(what: &str, ready: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ready() {
        assert!(Instant::now() < deadline, "{what} never happened");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn hanging_endpoints_do_not_delay_a_healthy_webhook(backend: Backend) {
    // Few sending slots, many more hanging endpoints than slots.
    let app = TestApp::spawn_with(backend, |c| c.concurrency = 8).await;
    let agent = app.create_agent().await;
    let holes = Arc::new(Holes::default());
    for _ in 0..30 {
        let hole = black_hole_counted(holes.clone()).await;
        app.create_webhook(&agent, json!({"webhook_url": hole, "events": ["call.started"], "timeout": 30, "max_retries": 0}))
            .await;
    }
    batch(
        &app,
        &agent,
        (0..20).map(|i| json!({"event": "call.started", "data": {"i": i}})).collect(),
    )
    .await;
    // More requests hang than the node has sending slots: stalled ones gave their slots back.
    wait_until("9 hanging requests", || holes.accepted.load(Ordering::SeqCst) > 8).await;
    deliver_to_a_healthy_webhook(&app, &agent).await;
    // All of it went while the black holes still hung: none of their requests (30 s timeout)
    // ended to make room.
    assert_eq!(holes.closed.load(Ordering::SeqCst), 0, "a hanging request ended first");
}

/// 600 hanging endpoints of one organization (on PostgreSQL, over two nodes), more than it may
/// hold in the stalled pool and more than the pool itself holds per organization with room to
/// spare: another organization's
/// new webhook gets every event while all of them still hang (their timeout is 30 s; each event
/// here must arrive within 20 s of the previous one, and all do at once).
async fn one_tenants_hundreds_of_hanging_endpoints_do_not_starve_another_tenant(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.concurrency = 16).await;
    // On PostgreSQL a second node works the same database: each node bounds every tenant's
    // places on its own, and both keep the other tenant's deliveries going.
    let _second = match backend {
        Backend::Postgres => Some(
            app.spawn_on(|c| {
                c.run_api = false;
                c.concurrency = 16;
            })
            .await,
        ),
        Backend::Sqlite => None,
    };
    let agent = app.create_agent().await;
    let hole = black_hole().await;
    for _ in 0..600 {
        app.create_webhook(&agent, json!({"webhook_url": hole, "events": ["call.started"], "timeout": 30, "max_retries": 0}))
            .await;
    }
    batch(
        &app,
        &agent,
        (0..5).map(|i| json!({"event": "call.started", "data": {"i": i}})).collect(),
    )
    .await;

    let other = app.other_org_key().await;
    let call = |method: Method, path: &str, body: Value| {
        crate::harness::send(
            app.client.request(method, app.url(path)).bearer_auth(&other).json(&body),
        )
    };
    let (_, agent_b) = call(Method::POST, "/api/v1/agents", json!({"name": "b"})).await;
    let agent_b = agent_b["data"]["id"].as_str().unwrap().to_string();
    let receiver = Receiver::start().await;
    let (status, _) = call(
        Method::POST,
        &format!("/api/v1/agents/{agent_b}/webhooks"),
        json!({"name": "b", "webhook_url": receiver.url("/"), "events": ["call.ended"]}),
    )
    .await;
    assert_eq!(status, 201);
    for i in 0..20 {
        let (status, body) = call(
            Method::POST,
            &format!("/api/v1/agents/{agent_b}/events"),
            json!({"event": "call.ended", "data": {"i": i}}),
        )
        .await;
        assert_eq!(status, 202, "{body}");
        let arrived = receiver.wait_for(i + 1, Duration::from_secs(20)).await;
        assert_eq!(arrived[i].json(), json!({"i": i}), "in order");
    }
}

async fn a_slow_endpoints_backlog_does_not_delay_a_fresh_event_for_another_webhook(
    backend: Backend,
) {
    let app = TestApp::spawn_with(backend, |c| c.concurrency = 16).await;
    let agent = app.create_agent().await;
    let (slow, counts) = counting_endpoint(Duration::from_millis(200)).await;
    app.create_webhook(&agent, json!({"webhook_url": slow, "events": ["call.started"]})).await;
    batch(
        &app,
        &agent,
        (0..2_000).map(|i| json!({"event": "call.started", "data": {"i": i}})).collect(),
    )
    .await;
    // The backlog is being worked, several requests at once.
    wait_until("a busy backlog", || counts.most.load(Ordering::SeqCst) > 2).await;
    deliver_to_a_healthy_webhook(&app, &agent).await;
    // Every fresh event went before the backlog was done.
    assert!(counts.served.load(Ordering::SeqCst) < 2_000, "the backlog was still being worked");
    assert!(
        counts.most.load(Ordering::SeqCst) > 2,
        "the healthy slow endpoint got more than a trickle"
    );
}

/// The most timestamps in any one-second window.
fn most_in_a_second(times: &[Instant]) -> usize {
    times
        .iter()
        .map(|start| {
            times.iter().filter(|t| **t >= *start && **t < *start + Duration::from_secs(1)).count()
        })
        .max()
        .unwrap_or(0)
}

async fn rate_limit_paces_deliveries(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let agent = app.create_agent().await;
    let receiver = Receiver::start().await;
    app.create_webhook(&agent, json!({"webhook_url": receiver.url("/"), "rate_limit": 5})).await;
    batch(
        &app,
        &agent,
        (0..15).map(|i| json!({"event": "call.completed", "data": {"i": i}})).collect(),
    )
    .await;
    let arrived = receiver.wait_for(15, Duration::from_secs(20)).await;
    let times: Vec<Instant> = arrived.iter().map(|r| r.at).collect();
    let span = times[14].duration_since(times[0]);
    assert!(span >= Duration::from_millis(2_600), "15 deliveries at 5/s took only {span:?}");
    // Pacing spaces sends 200 ms apart; arrival jitter may bring one more into a window.
    assert!(most_in_a_second(&times) <= 6, "{} deliveries in one second", most_in_a_second(&times));
}

async fn max_concurrency_bounds_requests_in_flight(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let agent = app.create_agent().await;
    let (url, counts) = counting_endpoint(Duration::from_millis(150)).await;
    app.create_webhook(&agent, json!({"webhook_url": url, "max_concurrency": 2})).await;
    batch(
        &app,
        &agent,
        (0..12).map(|i| json!({"event": "call.completed", "data": {"i": i}})).collect(),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while counts.served.load(Ordering::SeqCst) < 12 {
        assert!(Instant::now() < deadline, "not everything was delivered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(counts.most.load(Ordering::SeqCst), 2, "max_concurrency 2");
}

async fn a_calls_later_events_wait_until_its_first_one_ends(backend: Backend) {
    let app =
        TestApp::spawn_with(backend, |c| c.retry_schedule = vec![Duration::from_millis(500)]).await;
    let agent = app.create_agent().await;
    let receiver = Receiver::start().await;
    receiver.script([Reply::status(503)]);
    let webhook = app
        .create_webhook(
            &agent,
            json!({"webhook_url": receiver.url("/"), "ordering": "call", "max_retries": 5}),
        )
        .await;
    assert_eq!(webhook["ordering"], "call");
    let event =
        |call: &str, n: u32| json!({"event": "call.completed", "call_id": call, "data": {"n": n}});
    batch(&app, &agent, vec![event("c_1", 1), event("c_1", 2), event("c_1", 3)]).await;
    // Event 1 fails; its retry is due in 500 ms. Another call's event meanwhile is not held up.
    receiver.wait_for(1, Duration::from_secs(10)).await;
    app.ingest(&agent, event("c_2", 10)).await;
    let arrived = receiver.wait_for(5, Duration::from_secs(20)).await;
    let order: Vec<u64> = arrived.iter().map(|r| r.json()["n"].as_u64().unwrap()).collect();
    assert_eq!(order, vec![1, 10, 1, 2, 3], "event 1 and its retry before the rest of its call");
    // A later event of the call goes only once 1, 2 and 3 have ended: by its arrival, none of
    // them can be sent again.
    app.ingest(&agent, event("c_1", 4)).await;
    let arrived = receiver.wait_for(6, Duration::from_secs(20)).await;
    let order: Vec<u64> = arrived.iter().map(|r| r.json()["n"].as_u64().unwrap()).collect();
    assert_eq!(order, vec![1, 10, 1, 2, 3, 4], "nothing was sent twice");
}

async fn webhook_state(app: &TestApp, agent: &str, webhook: &str) -> Value {
    let (status, body) =
        app.call(Method::GET, &format!("/api/v1/agents/{agent}/webhooks/{webhook}"), None).await;
    assert_eq!(status, 200, "{body}");
    body["data"].clone()
}

async fn wait_for_circuit(app: &TestApp, agent: &str, webhook: &str, state: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let read = webhook_state(app, agent, webhook).await;
        if read["circuit_state"] == state {
            return read;
        }
        assert!(Instant::now() < deadline, "the circuit never became {state}: {read}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn breaker(config: &mut webhookd::config::Config) {
    config.circuit_threshold = 3;
    config.circuit_cooldown = Duration::from_secs(1);
}

async fn an_open_circuit_holds_deliveries_without_using_retries_then_a_probe_closes_it(
    backend: Backend,
) {
    let app = TestApp::spawn_with(backend, breaker).await;
    let agent = app.create_agent().await;
    let receiver = Receiver::start().await;
    receiver.otherwise(Reply::status(503));
    let webhook = app
        .create_webhook(&agent, json!({"webhook_url": receiver.url("/"), "max_retries": 2}))
        .await;
    let webhook = id(&webhook);
    batch(
        &app,
        &agent,
        (0..6).map(|i| json!({"event": "call.completed", "data": {"i": i}})).collect(),
    )
    .await;
    let open = wait_for_circuit(&app, &agent, &webhook, "open").await;
    assert!(open["circuit_retry_at"].is_string(), "{open}");
    let at_open = receiver.received().len();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(receiver.received().len() <= at_open + 1, "deliveries kept going to an open circuit");

    // Waiting does not use the logs' retries: with 2 retries each, 6 logs could burn 18 attempts;
    // none has failed for good.
    let logs_path = format!("/api/v1/agents/{agent}/webhooks/{webhook}/logs?per_page=100");
    let (_, logs) = app.call(Method::GET, &logs_path, None).await;
    let logs = logs["data"]["logs"].as_array().unwrap().clone();
    assert!(logs.iter().all(|l| l["status"] == "pending"), "{logs:?}");

    // The endpoint recovers: after the cooldown one probe goes, succeeds, and the rest flow.
    receiver.otherwise(Reply::status(200));
    wait_for_circuit(&app, &agent, &webhook, "closed").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, logs) = app.call(Method::GET, &logs_path, None).await;
        let logs = logs["data"]["logs"].as_array().unwrap().clone();
        if logs.iter().all(|l| l["status"] == "success") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not every log was delivered after the circuit closed: {logs:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let metrics = reqwest::get(app.url("/metrics")).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("webhookd_circuit_transitions_total{to=\"opened\"}"), "{metrics}");
    assert!(metrics.contains("webhookd_circuit_transitions_total{to=\"closed\"}"), "{metrics}");
}

async fn a_test_send_goes_through_an_open_circuit_and_closes_it(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| {
        breaker(c);
        c.circuit_cooldown = Duration::from_secs(600);
    })
    .await;
    let agent = app.create_agent().await;
    let receiver = Receiver::start().await;
    receiver.otherwise(Reply::status(500));
    let webhook = id(&app.create_webhook(&agent, json!({"webhook_url": receiver.url("/")})).await);
    batch(
        &app,
        &agent,
        (0..4).map(|i| json!({"event": "call.completed", "data": {"i": i}})).collect(),
    )
    .await;
    wait_for_circuit(&app, &agent, &webhook, "open").await;
    receiver.otherwise(Reply::status(200));
    let path = format!("/api/v1/agents/{agent}/webhooks/{webhook}/test");
    let (status, body) = app.call(Method::POST, &path, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["data"]["success"], true,
        "a person's test goes through an open circuit: {body}"
    );
    wait_for_circuit(&app, &agent, &webhook, "closed").await;
    receiver.wait_for(4 + 3 + 1, Duration::from_secs(20)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_postgres_nodes_stay_within_one_rate_limit_and_one_max_concurrency() {
    if postgres_base_url().is_none() {
        return;
    }
    let app = TestApp::spawn(Backend::Postgres).await;
    let _second = app.spawn_on(|_| {}).await;
    let agent = app.create_agent().await;
    let receiver = Receiver::start().await;
    app.create_webhook(
        &agent,
        json!({"webhook_url": receiver.url("/"), "rate_limit": 4, "events": ["call.started"]}),
    )
    .await;
    let (capped, counts) = counting_endpoint(Duration::from_millis(200)).await;
    app.create_webhook(
        &agent,
        json!({"webhook_url": capped, "max_concurrency": 3, "events": ["call.ended"]}),
    )
    .await;
    let mut events: Vec<Value> =
        (0..16).map(|i| json!({"event": "call.started", "data": {"i": i}})).collect();
    events.extend((0..24).map(|i| json!({"event": "call.ended", "data": {"i": i}})));
    batch(&app, &agent, events).await;

    let arrived = receiver.wait_for(16, Duration::from_secs(30)).await;
    let times: Vec<Instant> = arrived.iter().map(|r| r.at).collect();
    assert!(
        most_in_a_second(&times) <= 5,
        "{} in one second at 4/s over two nodes",
        most_in_a_second(&times)
    );
    assert!(times[15].duration_since(times[0]) >= Duration::from_millis(3_300));
    let deadline = Instant::now() + Duration::from_secs(30);
    while counts.served.load(Ordering::SeqCst) < 24 {
        assert!(Instant::now() < deadline, "not everything was delivered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        counts.most.load(Ordering::SeqCst) <= 3,
        "{} in flight over two nodes",
        counts.most.load(Ordering::SeqCst)
    );
}
