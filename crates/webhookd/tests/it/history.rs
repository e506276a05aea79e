//! History at scale (SPEC §8): payload retention and erasure of a call's data.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use crate::backend_tests;
use crate::harness::{assert_error, send, Backend, TestApp};
use crate::receiver::{Receiver, Reply};

backend_tests!(
    expired_payloads_leave_the_metadata_and_read_back_as_expired,
    payload_retention_runs_in_the_background_after_its_period,
    a_pending_log_whose_payload_expires_ends_failed_and_is_not_sent_again,
    erasing_a_call_removes_its_payloads_and_answers_the_same_twice,
    erasing_a_call_ends_its_pending_logs_and_nothing_is_sent_after_the_answer,
    an_erased_call_is_refused_by_retry_resend_and_recover,
    totals_are_exact_up_to_ten_thousand_logs_and_estimated_beyond,
);

/// On PostgreSQL an erasure reaches the other nodes' memory by `NOTIFY`, so a log they hold is
/// refused before its send.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erasure_reaches_every_node() {
    if crate::harness::postgres_base_url().is_none() {
        return;
    }
    let app = TestApp::spawn(Backend::Postgres).await;
    let other = crate::harness::open_test_store(&app.db().url).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let _listener = other.spawn_listener(stop.clone()).unwrap();
    let receiver = Receiver::start().await;
    let (agent, webhook, _) = webhook_to(&app, &receiver, json!({})).await;
    let log = delivered(&app, &agent, &webhook, "c_far", "far away").await;
    let (_, read) = app
        .call(Method::GET, &format!("/api/v1/agents/{agent}/webhooks/{webhook}/logs/{log}"), None)
        .await;
    let event: uuid::Uuid = read["data"]["event_id"].as_str().unwrap().parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let (status, _) = app.call(Method::DELETE, "/api/v1/calls/c_far", None).await;
    assert_eq!(status, 200);
    loop {
        if other.announcer().payload_gone(event) == Some(webhookd::domain::PayloadState::Erased) {
            break;
        }
        assert!(Instant::now() < deadline, "the other node never heard of the erasure");
        // Erasing again is harmless and announces again, in case the listener was not up yet.
        app.call(Method::DELETE, "/api/v1/calls/c_far", None).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
}

fn id(value: &Value) -> String {
    value["id"].as_str().unwrap().to_string()
}

/// POSTs `body` to a Bland path with the bare `Authorization: <key>` Bland clients send.
async fn bland(app: &TestApp, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut request =
        app.client.request(method, app.url(path)).header("authorization", &app.api_key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    send(request).await
}

/// A webhook of a new agent to `receiver`, and the path of its logs.
async fn webhook_to(app: &TestApp, receiver: &Receiver, fields: Value) -> (String, String, String) {
    let agent = app.create_agent().await;
    let mut body = json!({"webhook_url": receiver.url("/hook")});
    crate::harness::merge(&mut body, fields);
    let webhook = app.create_webhook(&agent, body).await;
    let base = format!("/api/v1/agents/{agent}/webhooks/{}", id(&webhook));
    (agent, id(&webhook), base)
}

/// Ingests a post-call event of `call` carrying `marker`, delivers it, returns its log id.
async fn delivered(app: &TestApp, agent: &str, webhook: &str, call: &str, marker: &str) -> String {
    let data = json!({"call": call, "transcript": marker});
    let accepted =
        app.ingest(agent, json!({"event": "call.completed", "call_id": call, "data": data})).await;
    let log = accepted["logs"][0]["log_id"].as_str().unwrap().to_string();
    app.wait_for_log(agent, webhook, &log, "success").await;
    log
}

/// Polls the log at `path` until `done` holds for it.
async fn wait_log(app: &TestApp, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = app.call(Method::GET, path, None).await;
        assert_eq!(status, 200, "{body}");
        if done(&body["data"]) {
            return body["data"].clone();
        }
        assert!(Instant::now() < deadline, "the log never got there: {body}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Every payload-bearing field of a log read back is gone; its metadata stays.
#[track_caller]
fn assert_without_payload(log: &Value, state: &str) {
    assert_eq!(log["payload_state"], state, "{log}");
    assert_eq!(log["request_payload"], Value::Null, "{log}");
    assert_eq!(log["request_payload_bytes"], 0, "{log}");
    assert_eq!(log["response_body"], Value::Null, "{log}");
    assert_eq!(log["response_headers"], Value::Null, "{log}");
    for attempt in log["attempts"].as_array().into_iter().flatten() {
        assert_eq!(attempt["response_body"], Value::Null, "{log}");
        assert_eq!(attempt["response_headers"], Value::Null, "{log}");
        assert!(attempt["sent_at"].is_string() && attempt["duration_ms"].is_i64(), "{log}");
    }
}

async fn expired_payloads_leave_the_metadata_and_read_back_as_expired(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let receiver = Receiver::start().await;
    receiver.script([Reply::status(500).body("first answer"), Reply::status(200).body("thanks")]);
    let (agent, webhook, base) = webhook_to(&app, &receiver, json!({})).await;
    let log = delivered(&app, &agent, &webhook, "c_expiring", "kept a while").await;
    let path = format!("{base}/logs/{log}");
    let (_, before) = app.call(Method::GET, &path, None).await;
    assert_eq!(before["data"]["payload_state"], "present");
    assert_eq!(before["data"]["request_payload"]["transcript"], "kept a while");
    assert_eq!(before["data"]["attempts"][0]["response_body"], "first answer");

    // Everything created before now is past its payload retention.
    let expired = app.store.expire_payloads_batch(webhookd::domain::clock::now_ms() + 1, 200).await;
    assert_eq!(expired.unwrap().events, 1);
    let (status, after) = app.call(Method::GET, &path, None).await;
    assert_eq!(status, 200);
    let after = &after["data"];
    assert_without_payload(after, "expired");
    assert_eq!(
        (after["status"].clone(), after["http_status"].clone()),
        (json!("success"), json!(200))
    );
    assert_eq!(after["attempts"].as_array().unwrap().len(), 2);
    assert_eq!(after["attempts"][0]["http_status"], 500);
    assert_eq!(after["url"], receiver.url("/hook"));
    // Listings say so too.
    let (_, listed) = app.call(Method::GET, &format!("{base}/logs"), None).await;
    assert_eq!(listed["data"]["logs"][0]["payload_state"], "expired");
    assert_eq!(listed["data"]["logs"][0]["request_payload"], Value::Null);
    // Bland's read.
    let (status, bland_log) =
        bland(&app, Method::GET, "/v1/postcall/webhooks/c_expiring", None).await;
    assert_eq!(status, 200, "{bland_log}");
    assert_eq!(bland_log["data"]["payload"], Value::Null);
    assert_eq!(bland_log["data"]["payload_state"], "expired");
    assert_eq!(bland_log["data"]["metadata"][1]["response_code"], 200);
    // Nothing left to expire: the next batch is empty.
    let again = app.store.expire_payloads_batch(webhookd::domain::clock::now_ms() + 1, 200).await;
    assert_eq!(again.unwrap().events, 0);
}

async fn payload_retention_runs_in_the_background_after_its_period(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| {
        c.retention = Duration::from_secs(3600);
        c.payload_retention = Some(Duration::from_secs(1));
    })
    .await;
    let receiver = Receiver::start().await;
    let (agent, webhook, base) = webhook_to(&app, &receiver, json!({})).await;
    let log = delivered(&app, &agent, &webhook, "c_background", "soon gone").await;
    let expired =
        wait_log(&app, &format!("{base}/logs/{log}"), |l| l["payload_state"] == "expired").await;
    assert_without_payload(&expired, "expired");
    assert_eq!(expired["status"], "success");
}

async fn a_pending_log_whose_payload_expires_ends_failed_and_is_not_sent_again(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let receiver = Receiver::start().await;
    receiver.otherwise(Reply::status(503));
    let (agent, _, base) = webhook_to(&app, &receiver, json!({"max_retries": 10})).await;
    let accepted = app
        .ingest(&agent, json!({"event": "call.completed", "call_id": "c_p", "data": {"n": 1}}))
        .await;
    let log = accepted["logs"][0]["log_id"].as_str().unwrap().to_string();
    receiver.wait_for(1, Duration::from_secs(10)).await;
    app.store.expire_payloads_batch(webhookd::domain::clock::now_ms() + 1, 200).await.unwrap();
    let path = format!("{base}/logs/{log}");
    let ended = wait_log(&app, &path, |l| l["status"] != "pending").await;
    assert_eq!(ended["status"], "failed");
    assert_eq!(ended["error"], "payload expired");
    assert_eq!(ended["next_attempt_at"], Value::Null);
    assert_without_payload(&ended, "expired");
    // An attempt in flight at the expiry may still be recorded; then the count settles and every
    // request the endpoint got carried the whole payload.
    let settled =
        wait_log(&app, &path, |l| l["attempt"].as_i64() == Some(receiver.received().len() as i64))
            .await;
    assert_eq!(settled["status"], "failed");
    assert!(receiver.received().iter().all(|r| r.json() == json!({"n": 1})));
}

async fn erasing_a_call_removes_its_payloads_and_answers_the_same_twice(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let receiver = Receiver::start().await;
    receiver.otherwise(Reply::status(200).body("receipt of c_erase"));
    let (agent, webhook, base) =
        webhook_to(&app, &receiver, json!({"events": ["call.completed", "call.ended"]})).await;
    let log = delivered(&app, &agent, &webhook, "c_erase", "private words").await;
    let other = delivered(&app, &agent, &webhook, "c_keep", "other words").await;
    app.ingest(&agent, json!({"event": "call.ended", "call_id": "c_erase", "data": {"x": 1}}))
        .await;
    receiver.wait_for(3, Duration::from_secs(10)).await;

    let (status, body) = app.call(Method::DELETE, "/api/v1/calls/c_erase", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["success"], true);
    assert_eq!(body["data"], json!({"call_id": "c_erase", "events": 2, "logs": 2}));
    let erased = wait_log(&app, &format!("{base}/logs/{log}"), |_| true).await;
    assert_without_payload(&erased, "erased");
    assert_eq!(
        (erased["status"].clone(), erased["http_status"].clone()),
        (json!("success"), json!(200))
    );
    let (_, bland_log) = bland(&app, Method::GET, "/v1/postcall/webhooks/c_erase", None).await;
    assert_eq!(bland_log["data"]["payload"], Value::Null, "{bland_log}");
    assert_eq!(bland_log["data"]["payload_state"], "erased");
    assert_eq!(bland_log["data"]["metadata"][0]["response_code"], 200);
    // Another call of the same webhook keeps its payload.
    let kept = wait_log(&app, &format!("{base}/logs/{other}"), |_| true).await;
    assert_eq!(kept["payload_state"], "present");
    assert_eq!(kept["request_payload"]["transcript"], "other words");

    let (status, again) = app.call(Method::DELETE, "/api/v1/calls/c_erase", None).await;
    assert_eq!((status, again["data"].clone()), (200, body["data"].clone()));
    // Another organization, or a call never seen: 404, never a hint.
    let other_key = app.other_org_key().await;
    let foreign = app.client.delete(app.url("/api/v1/calls/c_erase")).bearer_auth(other_key);
    let (status, body) = send(foreign).await;
    assert_error(status, &body, 404, "NOT_FOUND");
    let (status, body) = app.call(Method::DELETE, "/api/v1/calls/c_never", None).await;
    assert_error(status, &body, 404, "NOT_FOUND");
    let (status, body) = app.call(Method::DELETE, "/api/v1/calls/%20%20", None).await;
    assert_error(status, &body, 422, "VALIDATION_FAILED");
}

async fn erasing_a_call_ends_its_pending_logs_and_nothing_is_sent_after_the_answer(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    let receiver = Receiver::start().await;
    receiver.otherwise(Reply::status(503));
    let (agent, _, base) = webhook_to(&app, &receiver, json!({"max_retries": 10})).await;
    let accepted = app
        .ingest(&agent, json!({"event": "call.completed", "call_id": "c_hot", "data": {"hot": 1}}))
        .await;
    let log = accepted["logs"][0]["log_id"].as_str().unwrap().to_string();
    receiver.wait_for(2, Duration::from_secs(10)).await;

    let (status, body) = app.call(Method::DELETE, "/api/v1/calls/c_hot", None).await;
    assert_eq!(status, 200, "{body}");
    let answered = receiver.received().len();
    let (_, read) = app.call(Method::GET, &format!("{base}/logs/{log}"), None).await;
    let ended = &read["data"];
    assert_eq!(
        (ended["status"].clone(), ended["error"].clone()),
        (json!("failed"), json!("payload erased"))
    );
    assert_without_payload(ended, "erased");

    // Another call of the same webhook, retried every 50 ms: once it has been tried three times
    // the erased one has missed several of its retry slots.
    let next = app
        .ingest(&agent, json!({"event": "call.completed", "call_id": "c_next", "data": {"n": 2}}))
        .await;
    let next_path = format!("{base}/logs/{}", next["logs"][0]["log_id"].as_str().unwrap());
    wait_log(&app, &next_path, |l| l["attempt"].as_i64() >= Some(3)).await;
    let hot: Vec<_> =
        receiver.received().into_iter().filter(|r| r.json() == json!({"hot": 1})).collect();
    // At most the one attempt in flight at the answer arrived after it.
    assert!(hot.len() <= answered + 1, "{} sends of an erased call, {answered} before", hot.len());
    assert!(receiver.received().iter().all(|r| !r.body.is_empty()));
    let (_, read) = app.call(Method::GET, &format!("{base}/logs/{log}"), None).await;
    assert_eq!(read["data"]["status"], "failed", "an erased log was brought back: {read}");
    assert_eq!(read["data"]["response_body"], Value::Null);
}

async fn an_erased_call_is_refused_by_retry_resend_and_recover(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let receiver = Receiver::start().await;
    receiver.otherwise(Reply::status(500));
    let (agent, _, base) = webhook_to(&app, &receiver, json!({"max_retries": 0})).await;
    let since = webhookd::domain::clock::now_ms() / 1000 - 1;
    let mut logs = Vec::new();
    for call in ["c_gone", "c_old", "c_fine"] {
        let accepted = app
            .ingest(
                &agent,
                json!({"event": "call.completed", "call_id": call, "data": {"c": call}}),
            )
            .await;
        logs.push(accepted["logs"][0]["log_id"].as_str().unwrap().to_string());
    }
    for log in &logs {
        wait_log(&app, &format!("{base}/logs/{log}"), |l| l["status"] == "failed").await;
    }
    let (status, _) = app.call(Method::DELETE, "/api/v1/calls/c_gone", None).await;
    assert_eq!(status, 200);

    let retry_path = |log: &str| format!("{base}/logs/{log}/retry");
    let (status, body) = app.call(Method::POST, &retry_path(&logs[0]), None).await;
    assert_error(status, &body, 422, "LOG_NOT_RETRIABLE");
    assert_eq!(body["message"], "Log cannot be retried");
    assert_eq!(body["reason"], "payload_erased");
    let (status, body) = app.call(Method::POST, &retry_path(&logs[2]), None).await;
    assert_eq!(status, 202, "{body}");
    let retried = body["data"]["log_id"].as_str().unwrap();
    wait_log(&app, &format!("{base}/logs/{retried}"), |l| l["status"] == "failed").await;

    let (status, body) = bland(
        &app,
        Method::POST,
        "/v1/postcall/webhooks/resend",
        Some(json!({"call_ids": ["c_gone"]})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"], json!([]));
    let error = &body["errors"][0];
    assert_eq!(error["error"], "invalid_parameter");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("c_gone") && message.contains("payload erased"), "{message}");

    // Bland's create of an erased call that never had a webhook: refused the same way.
    let lonely = app.create_agent().await;
    app.ingest(&lonely, json!({"event": "call.completed", "call_id": "c_alone", "data": {"a": 1}}))
        .await;
    let (status, _) = app.call(Method::DELETE, "/api/v1/calls/c_alone", None).await;
    assert_eq!(status, 200);
    let create = json!({"call_ids": ["c_alone"], "webhook_url": receiver.url("/late")});
    let (status, body) =
        bland(&app, Method::POST, "/v1/postcall/webhooks/create", Some(create)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"], json!([]));
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("c_alone") && message.contains("payload erased"), "{message}");
    assert!(receiver.received().iter().all(|r| r.path != "/late"));

    // Recover leaves the erased call alone and says how many it left.
    let recover_path = format!("{base}/recover");
    let recover = |dry_run: bool| {
        app.call(Method::POST, &recover_path, Some(json!({"since": since, "dry_run": dry_run})))
    };
    let (status, dry) = recover(true).await;
    assert_eq!(status, 200, "{dry}");
    // c_old's log and c_fine's latest (its retry failed too) are queued again; c_gone is not.
    assert_eq!(
        (dry["data"]["count"].clone(), dry["data"]["without_payload"].clone()),
        (json!(2), json!(1))
    );
    let (status, done) = recover(false).await;
    assert_eq!(status, 202, "{done}");
    assert_eq!(
        (done["data"]["count"].clone(), done["data"]["without_payload"].clone()),
        (json!(2), json!(1))
    );
    let (_, listed) = app.call(Method::GET, &format!("{base}/logs?call_id=c_gone"), None).await;
    assert_eq!(listed["data"]["logs"].as_array().unwrap().len(), 1, "nothing queued for c_gone");
}

/// The erased payload and response body are gone from the SQLite file itself, not only from
/// query results: `secure_delete` zeroes the freed cells and overflow pages, and the erasure
/// truncates the write-ahead log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erased_bytes_are_not_left_in_the_sqlite_file() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let receiver = Receiver::start().await;
    let marker = format!("MARKER-{}", uuid::Uuid::new_v4().simple());
    let answer = format!("ANSWER-{}", uuid::Uuid::new_v4().simple());
    receiver.otherwise(Reply::status(200).body(answer.clone()));
    let (agent, webhook, _) = webhook_to(&app, &receiver, json!({})).await;
    // Long enough to spill into overflow pages.
    let transcript = marker.repeat(400);
    delivered(&app, &agent, &webhook, "c_file", &transcript).await;
    let path = app.db().url.trim_start_matches("sqlite://").to_string();
    let file_holds = |needle: &str| {
        let mut found = false;
        for suffix in ["", "-wal"] {
            if let Ok(bytes) = std::fs::read(format!("{path}{suffix}")) {
                found |= bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
            }
        }
        found
    };
    assert!(file_holds(&marker) && file_holds(&answer), "the test must see the bytes first");

    let (status, body) = app.call(Method::DELETE, "/api/v1/calls/c_file", None).await;
    assert_eq!(status, 200, "{body}");
    let checkpoint = sqlx::SqlitePool::connect(&app.db().url).await.unwrap();
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&checkpoint).await.unwrap();
    checkpoint.close().await;
    assert!(!file_holds(&marker), "the erased payload is still in the database file");
    assert!(!file_holds(&answer), "the erased response body is still in the database file");
}

/// What SQLite's retention frees is reused: a history deleted and then written again in the same
/// amount leaves the file no larger (SPEC §8: the file stops growing at steady state).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_reuses_the_pages_that_retention_frees() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let agent = app.create_agent().await;
    let file = sqlx::SqlitePool::connect(&app.db().url).await.unwrap();
    let pages = |pragma: &'static str| {
        let file = file.clone();
        async move { sqlx::query_scalar::<_, i64>(pragma).fetch_one(&file).await.unwrap() }
    };
    let write_history = || async {
        for batch in 0..10 {
            let events: Vec<Value> = (0..50)
                .map(|n| {
                    json!({"event": "call.completed", "call_id": format!("c{batch}_{n}"),
                                "data": {"transcript": "words ".repeat(300)}})
                })
                .collect();
            app.ingest_batch(&agent, events).await;
        }
    };
    write_history().await;
    let grown = pages("PRAGMA page_count").await;
    let deleted =
        app.store.delete_expired_batch(webhookd::domain::clock::now_ms() + 1, 10_000).await;
    assert_eq!(deleted.unwrap().events, 500);
    assert!(pages("PRAGMA freelist_count").await > 0, "deleting freed no page");
    write_history().await;
    let again = pages("PRAGMA page_count").await;
    assert!(again <= grown + grown / 20, "the file grew from {grown} to {again} pages");
}

/// `--payload-retention` below an hour or above `--retention` stops `serve` with one line.
#[test]
fn payload_retention_out_of_its_bounds_is_refused_at_start() {
    for (args, expected) in [
        (vec!["--payload-retention", "30m"], "minimum of 1h"),
        (
            vec!["--retention", "7d", "--payload-retention", "8d"],
            "--payload-retention 8days is longer than --retention 7days",
        ),
    ] {
        let output = crate::process::webhookd()
            .args(["serve", "--listen", "127.0.0.1:0", "--database", "sqlite::memory:"])
            .args(&args)
            .output()
            .unwrap();
        assert_ne!(output.status.code(), Some(0), "{args:?}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

async fn totals_are_exact_up_to_ten_thousand_logs_and_estimated_beyond(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let receiver = Receiver::start().await;
    let (agent, _, base) = webhook_to(&app, &receiver, json!({"enabled": false})).await;
    // 11,000 skipped logs (a disabled webhook: nothing is sent).
    for batch in 0..11 {
        let events: Vec<Value> = (0..1000)
            .map(|n| json!({"event": "call.completed", "call_id": format!("c_{batch}_{n}"), "data": {}}))
            .collect();
        app.ingest_batch(&agent, events).await;
    }
    let page = |query: String| {
        let app = &app;
        let path = format!("{base}/logs?per_page=100&{query}");
        async move { app.call(Method::GET, &path, None).await }
    };
    for query in [
        "",
        "status=skipped",
        "event=call.completed",
        "status=skipped&event=call.completed",
        "since=0",
    ] {
        let (status, body) = page(query.to_string()).await;
        assert_eq!(status, 200, "{body}");
        let pagination = &body["data"]["pagination"];
        assert_eq!(pagination["total_estimated"], true, "{query}: {pagination}");
        let total = pagination["total"].as_i64().unwrap();
        assert!(total > 10_000, "{query}: {pagination}");
        assert_eq!(pagination["last_page"].as_i64().unwrap(), (total + 99) / 100, "{pagination}");
        assert_eq!(body["data"]["logs"].as_array().unwrap().len(), 100);
    }
    // Narrower filters are counted exactly.
    for (query, expected) in [("call_id=c_3_7", 1), ("status=failed", 0), ("event=call.ended", 0)] {
        let (_, body) = page(query.to_string()).await;
        let pagination = &body["data"]["pagination"];
        assert_eq!(
            (pagination["total"].as_i64(), pagination["total_estimated"].as_bool()),
            (Some(expected), Some(false)),
            "{query}"
        );
    }
    let until = webhookd::domain::clock::now_ms() / 1000 + 5;
    let (_, body) = page(format!("since={until}")).await;
    assert_eq!(body["data"]["pagination"]["total"], 0);
    // A deep numbered page holds the oldest logs, newest first.
    let (_, body) = page("page=110".into()).await;
    let calls: Vec<&str> = body["data"]["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["call_id"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = (0..100).rev().map(|n| format!("c_0_{n}")).collect();
    assert_eq!(calls, expected);
    // Recover's dry run: exact up to 500 logs of each status, estimated beyond.
    let (status, body) = app
        .call(Method::POST, &format!("{base}/recover"), Some(json!({"since": 0, "dry_run": true})))
        .await;
    assert_eq!(status, 200, "{body}");
    let data = &body["data"];
    assert_eq!(
        (data["count_estimated"].as_bool(), data["without_payload"].as_i64()),
        (Some(true), Some(0)),
        "{data}"
    );
    assert!(data["count"].as_i64().unwrap() > 10_000, "{data}");
}
