//! At least once, on one node and on many: crashes (SIGKILL) lose nothing, a graceful stop
//! (SIGTERM) finishes what is in flight, and several nodes on one PostgreSQL share the work.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::{postgres_base_url, Backend, TestDb};
use crate::process::{create_org, ServeProcess};
use crate::receiver::{Receiver, Reply};

const EVENTS: usize = 150;

/// Creates an agent and a webhook to `receiver` on `node`, then ingests `count` events in one
/// batch; returns their event ids.
async fn load(
    node: &ServeProcess,
    key: &str,
    receiver: &Receiver,
    count: usize,
) -> HashSet<String> {
    let client = reqwest::Client::new();
    let post =
        |path: &str, body: Value| client.post(node.url(path)).bearer_auth(key).json(&body).send();
    let agent: Value =
        post("/api/v1/agents", json!({"name": "crash"})).await.unwrap().json().await.unwrap();
    let agent = agent["data"]["id"].as_str().unwrap().to_string();
    let webhook = json!({"name": "w", "webhook_url": receiver.url("/"), "events": ["call.completed"], "timeout": 5});
    let created = post(&format!("/api/v1/agents/{agent}/webhooks"), webhook).await.unwrap();
    assert_eq!(created.status(), 201);
    let events: Vec<Value> =
        (0..count).map(|i| json!({"event": "call.completed", "data": {"i": i}})).collect();
    let accepted: Value =
        post(&format!("/api/v1/agents/{agent}/events/batch"), json!({"events": events}))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(accepted["data"]["accepted"], count, "{accepted}");
    accepted["data"]["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["event_id"].as_str().unwrap().to_string())
        .collect()
}

/// How many times each event id arrived.
fn arrivals(receiver: &Receiver) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for request in receiver.received() {
        *counts.entry(request.header("webhook-id").to_string()).or_default() += 1;
    }
    counts
}

async fn wait_for_all(
    receiver: &Receiver,
    expected: &HashSet<String>,
    timeout: Duration,
) -> HashMap<String, usize> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let counts = arrivals(receiver);
        if expected.iter().all(|id| counts.contains_key(id)) {
            return counts;
        }
        let missing = expected.iter().filter(|id| !counts.contains_key(*id)).count();
        assert!(std::time::Instant::now() < deadline, "{missing} events never arrived");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn duplicates(counts: &HashMap<String, usize>) -> usize {
    counts.values().map(|n| n - 1).sum()
}

/// Waits until no log is pending: every claim was finished, by its node or, after the lease, by
/// another.
async fn wait_until_settled(database: &str, timeout: Duration) {
    let store = crate::harness::open_test_store(database).await;
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let pending = store.pending_count().await.unwrap();
        if pending == 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{pending} logs are still pending");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    store.close().await;
}

/// Logs claimed by some node right now: the only ones a crash can make arrive twice.
async fn claimed(database: &str) -> i64 {
    let store = crate::harness::open_test_store(database).await;
    let claimed = store.claimed_count().await.unwrap();
    store.close().await;
    claimed
}

const NODE_FLAGS: [&str; 5] =
    ["--allow-private-targets", "--retry-schedule", "100ms", "--concurrency", "8"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_killed_mid_delivery_delivers_everything_after_restart() {
    let db = TestDb::new(Backend::Sqlite).await;
    let key = create_org(&db.url);
    let receiver = Receiver::start().await;
    receiver.otherwise(Reply::status(200).delay(Duration::from_millis(100)));
    let mut node = ServeProcess::start(&db.url, &NODE_FLAGS);
    let expected = load(&node, &key, &receiver, EVENTS).await;
    receiver.wait_for(10, Duration::from_secs(20)).await;
    node.kill();
    let before = arrivals(&receiver).len();
    assert!(before < EVENTS, "the crash came after everything was delivered");
    let in_flight = claimed(&db.url).await;

    let _restarted = ServeProcess::start(&db.url, &NODE_FLAGS);
    let counts = wait_for_all(&receiver, &expected, Duration::from_secs(60)).await;
    wait_until_settled(&db.url, Duration::from_secs(30)).await;
    let duplicates = duplicates(&arrivals(&receiver));
    assert!(counts.len() == EVENTS);
    assert!(
        duplicates as i64 <= in_flight,
        "{duplicates} duplicates, but only {in_flight} attempts were in flight at the crash"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_attempts_in_flight_and_leaves_no_claim() {
    let db = TestDb::new(Backend::Sqlite).await;
    let key = create_org(&db.url);
    let receiver = Receiver::start().await;
    receiver.otherwise(Reply::status(200).delay(Duration::from_millis(300)));
    let mut node = ServeProcess::start(&db.url, &NODE_FLAGS);
    let expected = load(&node, &key, &receiver, 40).await;
    receiver.wait_for(4, Duration::from_secs(20)).await;
    let status = node.terminate();
    assert!(status.success(), "SIGTERM exit: {status:?}");
    assert_eq!(claimed(&db.url).await, 0, "every in-flight attempt was recorded or released");
    let delivered_before_restart = arrivals(&receiver).len();

    let _restarted = ServeProcess::start(&db.url, &NODE_FLAGS);
    let counts = wait_for_all(&receiver, &expected, Duration::from_secs(60)).await;
    assert_eq!(duplicates(&counts), 0, "a graceful stop sends nothing twice");
    assert!(delivered_before_restart < 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_nodes_share_the_work_and_survive_one_being_killed() {
    if postgres_base_url().is_none() {
        return;
    }
    let db = TestDb::new(Backend::Postgres).await;
    let key = create_org(&db.url);
    let receiver = Receiver::start().await;
    receiver.otherwise(Reply::status(200).delay(Duration::from_millis(50)));
    let mut first = ServeProcess::start(&db.url, &NODE_FLAGS);
    let _second = ServeProcess::start(&db.url, &NODE_FLAGS);
    let expected = load(&first, &key, &receiver, EVENTS * 2).await;
    receiver.wait_for(30, Duration::from_secs(20)).await;
    first.kill();
    let in_flight = claimed(&db.url).await;

    // The survivor delivers the rest, including the dead node's claims once their lease ends.
    wait_for_all(&receiver, &expected, Duration::from_secs(90)).await;
    wait_until_settled(&db.url, Duration::from_secs(90)).await;
    let duplicates = duplicates(&arrivals(&receiver));
    assert!(
        duplicates as i64 <= in_flight,
        "{duplicates} duplicates, but only {in_flight} attempts were in flight at the crash"
    );
}

/// An API-only node takes the event; a worker-only node on the same database hears about it by
/// `NOTIFY` and delivers it at once, long before its idle re-check would have.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_notify_wakes_another_nodes_worker_at_once() {
    if postgres_base_url().is_none() {
        return;
    }
    let db = TestDb::new(Backend::Postgres).await;
    let key = create_org(&db.url);
    let receiver = Receiver::start().await;
    let api = ServeProcess::start(&db.url, &["--no-worker", "--allow-private-targets"]);
    let _worker = ServeProcess::start(&db.url, &["--no-api", "--allow-private-targets"]);
    // Let the worker settle into its idle wait before the event comes.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = std::time::Instant::now();
    load(&api, &key, &receiver, 1).await;
    receiver.wait_for(1, Duration::from_secs(10)).await;
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// `ordering: call` lives in the database: a node killed while a call's first event is failing
/// leaves its later events waiting, and the restarted node keeps the order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_order_survives_a_kill_and_restart() {
    let db = TestDb::new(Backend::Sqlite).await;
    let key = create_org(&db.url);
    let receiver = Receiver::start().await;
    receiver.otherwise(Reply::status(503));
    let flags = ["--allow-private-targets", "--retry-schedule", "200ms"];
    let mut node = ServeProcess::start(&db.url, &flags);
    let client = reqwest::Client::new();
    let post =
        |path: &str, body: Value| client.post(node.url(path)).bearer_auth(&key).json(&body).send();
    let agent: Value =
        post("/api/v1/agents", json!({"name": "ordered"})).await.unwrap().json().await.unwrap();
    let agent = agent["data"]["id"].as_str().unwrap().to_string();
    let webhook = json!({"name": "w", "webhook_url": receiver.url("/"), "events": ["call.completed"],
        "ordering": "call", "max_retries": 10});
    assert_eq!(
        post(&format!("/api/v1/agents/{agent}/webhooks"), webhook).await.unwrap().status(),
        201
    );
    let events: Vec<Value> = (1..=4)
        .map(|n| json!({"event": "call.completed", "call_id": "c_1", "data": {"n": n}}))
        .collect();
    let batch = post(&format!("/api/v1/agents/{agent}/events/batch"), json!({"events": events}));
    assert_eq!(batch.await.unwrap().status(), 202);
    receiver.wait_for(2, Duration::from_secs(20)).await;
    node.kill();
    let order = |r: &Receiver| -> Vec<u64> {
        r.received().iter().map(|got| got.json()["n"].as_u64().unwrap()).collect()
    };
    assert!(order(&receiver).iter().all(|n| *n == 1), "only event 1 went: {:?}", order(&receiver));

    receiver.otherwise(Reply::status(200));
    let _restarted = ServeProcess::start(&db.url, &flags);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !order(&receiver).contains(&4) {
        assert!(std::time::Instant::now() < deadline, "not delivered: {:?}", order(&receiver));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sent = order(&receiver);
    assert!(sent.windows(2).all(|pair| pair[0] <= pair[1]), "out of order: {sent:?}");
}
