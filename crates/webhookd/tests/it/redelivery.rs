//! Talkover's retry and bulk recover (SPEC §5), sentence by sentence.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::backend_tests;
use crate::harness::{assert_error, Backend, TestApp};
use crate::receiver::{Receiver, Reply};

backend_tests!(
    retry_creates_a_new_log_sent_with_the_current_configuration,
    a_retried_log_gets_automatic_retries_of_its_own,
    logs_that_cannot_be_retried_get_the_exact_422,
    retry_of_unknown_or_foreign_logs_is_404,
    recover_requeues_failed_and_skipped_logs_without_a_later_success,
    recover_validates_its_window_and_refuses_a_disabled_webhook,
    a_large_recovery_runs_in_the_background_and_survives_a_restart,
    two_recoveries_of_one_window_at_once_queue_each_failure_once,
);

fn id(value: &Value) -> String {
    value["id"].as_str().unwrap().to_string()
}

/// An app, a receiver, an agent and a webhook to the receiver's `/old` with no retries.
async fn setup(backend: Backend) -> (TestApp, Receiver, String, Value) {
    let app = TestApp::spawn(backend).await;
    let receiver = Receiver::start().await;
    let agent = app.create_agent().await;
    let webhook = app
        .create_webhook(&agent, json!({"webhook_url": receiver.url("/old"), "max_retries": 0}))
        .await;
    (app, receiver, agent, webhook)
}

/// Ingests one call.completed event whose delivery fails; returns (event id, log id).
async fn failed_delivery(
    app: &TestApp,
    receiver: &Receiver,
    agent: &str,
    webhook: &Value,
    call: &str,
) -> (String, String) {
    receiver.script([Reply::status(500)]);
    let accepted = app
        .ingest(agent, json!({"event": "call.completed", "call_id": call, "data": {"call": call}}))
        .await;
    let log_id = accepted["logs"][0]["log_id"].as_str().unwrap().to_string();
    app.wait_for_log(agent, &id(webhook), &log_id, "failed").await;
    (accepted["event_id"].as_str().unwrap().to_string(), log_id)
}

async fn retry_creates_a_new_log_sent_with_the_current_configuration(backend: Backend) {
    let (app, receiver, agent, webhook) = setup(backend).await;
    let (event_id, log_id) = failed_delivery(&app, &receiver, &agent, &webhook, "c_1").await;
    let base = format!("/api/v1/agents/{agent}/webhooks/{}", id(&webhook));

    // The configuration changes after the failure: URL, headers, timeout, secret.
    let (status, _) = app
        .call(Method::PUT, &base, Some(json!({"webhook_url": receiver.url("/new"), "timeout": 7, "custom_headers": [{"key": "X-Version", "value": "2"}]})))
        .await;
    assert_eq!(status, 200);
    let (_, rotated) = app.call(Method::POST, &format!("{base}/secret/rotate"), None).await;
    let new_secret = rotated["data"]["signing_secret"].as_str().unwrap().to_string();

    let (status, body) = app.call(Method::POST, &format!("{base}/logs/{log_id}/retry"), None).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["success"], true);
    assert_eq!(body["message"], "Webhook retry queued successfully");
    let data = body["data"].as_object().unwrap();
    assert_eq!(data.len(), 3, "{body}");
    assert_eq!(data["original_log_id"], log_id.as_str());
    assert!(webhookd::domain::clock::parse_timestamp(data["queued_at"].as_str().unwrap()).is_some());
    let new_log_id = data["log_id"].as_str().unwrap();
    assert_ne!(new_log_id, log_id);

    let new_log = app.wait_for_log(&agent, &id(&webhook), new_log_id, "success").await;
    assert_eq!(new_log["original_log_id"], log_id.as_str());
    assert_eq!(new_log["url"], receiver.url("/new"));
    assert_eq!(new_log["attempts"].as_array().unwrap().len(), 1);
    assert_eq!(new_log["attempts"][0]["send_type"], "manual");
    assert_eq!(new_log["event_id"], event_id.as_str());

    let got = receiver.received().pop().unwrap();
    assert_eq!(got.path, "/new");
    assert_eq!(got.header("x-version"), "2");
    assert_eq!(got.header("webhook-id"), event_id, "the receiver's dedupe key stays the event id");
    assert_eq!(
        got.header("x-webhook-signature"),
        webhookd::signing::body_signature(&new_secret, &got.body)
    );

    // The original is untouched.
    let (_, original) = app.call(Method::GET, &format!("{base}/logs/{log_id}"), None).await;
    assert_eq!(original["data"]["status"], "failed");
    assert_eq!(original["data"]["url"], receiver.url("/old"));
    assert_eq!(original["data"]["attempts"].as_array().unwrap().len(), 1);
    assert_eq!(original["data"]["original_log_id"], Value::Null);
}

async fn a_retried_log_gets_automatic_retries_of_its_own(backend: Backend) {
    let (app, receiver, agent, webhook) = setup(backend).await;
    let (_, log_id) = failed_delivery(&app, &receiver, &agent, &webhook, "c_1").await;
    let base = format!("/api/v1/agents/{agent}/webhooks/{}", id(&webhook));
    app.call(Method::PUT, &base, Some(json!({"max_retries": 2}))).await;
    receiver.script([Reply::status(500), Reply::status(503)]);
    let (status, body) = app.call(Method::POST, &format!("{base}/logs/{log_id}/retry"), None).await;
    assert_eq!(status, 202);
    let new_log = app
        .wait_for_log(&agent, &id(&webhook), body["data"]["log_id"].as_str().unwrap(), "success")
        .await;
    let kinds: Vec<&str> = new_log["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["send_type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["manual", "retry", "retry"]);
    assert_eq!(new_log["attempt"], 3);
}

async fn logs_that_cannot_be_retried_get_the_exact_422(backend: Backend) {
    let exact =
        json!({"success": false, "message": "Log cannot be retried", "code": "LOG_NOT_RETRIABLE"});
    let (app, receiver, agent, webhook) = setup(backend).await;
    let base = format!("/api/v1/agents/{agent}/webhooks/{}", id(&webhook));

    // Succeeded.
    let accepted = app.ingest(&agent, json!({"event": "call.completed", "data": {}})).await;
    let succeeded = accepted["logs"][0]["log_id"].as_str().unwrap().to_string();
    app.wait_for_log(&agent, &id(&webhook), &succeeded, "success").await;
    let (status, body) =
        app.call(Method::POST, &format!("{base}/logs/{succeeded}/retry"), None).await;
    assert_eq!((status, &body), (422, &exact));

    // Still pending (its next retry is an hour away).
    let slow =
        TestApp::spawn_with(backend, |c| c.retry_schedule = vec![Duration::from_secs(3600)]).await;
    let slow_agent = slow.create_agent().await;
    let slow_hook = slow
        .create_webhook(&slow_agent, json!({"webhook_url": receiver.url("/"), "max_retries": 3}))
        .await;
    receiver.script([Reply::status(500)]);
    let accepted = slow.ingest(&slow_agent, json!({"event": "call.completed", "data": {}})).await;
    let pending = accepted["logs"][0]["log_id"].as_str().unwrap().to_string();
    let path = format!("/api/v1/agents/{slow_agent}/webhooks/{}/logs/{pending}", id(&slow_hook));
    while slow.call(Method::GET, &path, None).await.1["data"]["attempt"] != 1 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, body) = slow.call(Method::POST, &format!("{path}/retry"), None).await;
    assert_eq!((status, &body), (422, &exact));

    // Older than the retry window.
    let strict = TestApp::spawn_with(backend, |c| c.retry_window = Duration::from_millis(1)).await;
    let strict_agent = strict.create_agent().await;
    let strict_hook = strict
        .create_webhook(&strict_agent, json!({"webhook_url": receiver.url("/"), "max_retries": 0}))
        .await;
    let (_, old) = failed_delivery(&strict, &receiver, &strict_agent, &strict_hook, "c_old").await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let path =
        format!("/api/v1/agents/{strict_agent}/webhooks/{}/logs/{old}/retry", id(&strict_hook));
    let (status, body) = strict.call(Method::POST, &path, None).await;
    assert_eq!((status, &body), (422, &exact));

    // The webhook is disabled.
    let (_, failed) = failed_delivery(&app, &receiver, &agent, &webhook, "c_2").await;
    app.call(Method::PATCH, &format!("{base}/toggle"), None).await;
    let (status, body) = app.call(Method::POST, &format!("{base}/logs/{failed}/retry"), None).await;
    assert_eq!((status, &body), (422, &exact));
    // Enabled again, the same log can be retried.
    app.call(Method::PATCH, &format!("{base}/toggle"), None).await;
    let (status, _) = app.call(Method::POST, &format!("{base}/logs/{failed}/retry"), None).await;
    assert_eq!(status, 202);
}

async fn retry_of_unknown_or_foreign_logs_is_404(backend: Backend) {
    let (app, receiver, agent, webhook) = setup(backend).await;
    let (_, log_id) = failed_delivery(&app, &receiver, &agent, &webhook, "c_1").await;
    let other_hook = app.create_webhook(&agent, json!({"webhook_url": receiver.url("/x")})).await;
    let base = format!("/api/v1/agents/{agent}/webhooks");
    let cases = [
        (format!("{base}/{}/logs/{}/retry", id(&webhook), uuid::Uuid::new_v4()), "LOG_NOT_FOUND"),
        (format!("{base}/{}/logs/nope/retry", id(&webhook)), "LOG_NOT_FOUND"),
        (format!("{base}/{}/logs/{log_id}/retry", id(&other_hook)), "LOG_NOT_FOUND"),
        (format!("{base}/{}/logs/{log_id}/retry", uuid::Uuid::new_v4()), "WEBHOOK_NOT_FOUND"),
    ];
    for (path, code) in cases {
        let (status, body) = app.call(Method::POST, &path, None).await;
        assert_error(status, &body, 404, code);
    }
    let intruder = app.other_org_key().await;
    let path = format!("{base}/{}/logs/{log_id}/retry", id(&webhook));
    let (status, body) =
        crate::harness::send(app.client.post(app.url(&path)).bearer_auth(intruder)).await;
    assert_error(status, &body, 404, "AGENT_NOT_FOUND");
    let (status, _) =
        app.call(Method::GET, &format!("{base}/{}/logs/{log_id}", id(&webhook)), None).await;
    assert_eq!(status, 200);
}

async fn recover_requeues_failed_and_skipped_logs_without_a_later_success(backend: Backend) {
    let (app, receiver, agent, webhook) = setup(backend).await;
    let base = format!("/api/v1/agents/{agent}/webhooks/{}", id(&webhook));
    let started = webhookd::domain::clock::now_ms() / 1000 - 1;
    let (_, fixed) = failed_delivery(&app, &receiver, &agent, &webhook, "c_fixed").await;
    let (failed_event, _) = failed_delivery(&app, &receiver, &agent, &webhook, "c_failed").await;
    failed_delivery(&app, &receiver, &agent, &webhook, "c_failed_2").await;
    // c_fixed gets a later success through a retry.
    let (_, retried) = app.call(Method::POST, &format!("{base}/logs/{fixed}/retry"), None).await;
    app.wait_for_log(&agent, &id(&webhook), retried["data"]["log_id"].as_str().unwrap(), "success")
        .await;
    // Two events arrive while the webhook is disabled.
    app.call(Method::PATCH, &format!("{base}/toggle"), None).await;
    for call in ["c_skipped_1", "c_skipped_2"] {
        app.ingest(
            &agent,
            json!({"event": "call.completed", "call_id": call, "data": {"call": call}}),
        )
        .await;
    }
    app.call(Method::PATCH, &format!("{base}/toggle"), None).await;
    let sent_before = receiver.received().len();

    let recover_path = format!("{base}/recover");
    let recover = |body: Value| app.call(Method::POST, &recover_path, Some(body));
    let (status, dry) = recover(json!({"since": started, "dry_run": true})).await;
    assert_eq!(status, 200, "{dry}");
    assert_eq!(dry["data"]["count"], 4);
    assert_eq!(dry["data"]["count_estimated"], false, "{dry}");
    assert_eq!(dry["data"]["dry_run"], true);
    let (_, none) = recover(
        json!({"since": "2999-01-01T00:00:00Z", "until": "2999-01-02T00:00:00Z", "dry_run": true}),
    )
    .await;
    assert_eq!(none["data"]["count"], 0);
    let (_, before) = recover(json!({"since": 0, "until": started - 10, "dry_run": true})).await;
    assert_eq!(before["data"]["count"], 0);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(receiver.received().len(), sent_before, "a dry run sends nothing");

    let (status, done) = recover(json!({"since": format!("{}", started), "until": webhookd::domain::clock::format_ms(webhookd::domain::clock::now_ms())})).await;
    assert_eq!(status, 202, "{done}");
    assert_eq!(done["data"]["count"], 4);
    assert_eq!(done["data"]["status"], "completed");
    let got = receiver.wait_for(sent_before + 4, Duration::from_secs(10)).await;
    let mut calls: Vec<String> =
        got[sent_before..].iter().map(|r| r.json()["call"].as_str().unwrap().to_string()).collect();
    calls.sort();
    assert_eq!(calls, ["c_failed", "c_failed_2", "c_skipped_1", "c_skipped_2"]);
    let (_, logs) = app.call(Method::GET, &format!("{base}/logs?call_id=c_failed"), None).await;
    let newest = &logs["data"]["logs"][0];
    assert_eq!(newest["event_id"], failed_event.as_str());
    assert!(newest["original_log_id"].is_string());
    let detail =
        app.wait_for_log(&agent, &id(&webhook), newest["id"].as_str().unwrap(), "success").await;
    assert_eq!(detail["attempts"][0]["send_type"], "recover");

    // Everything has succeeded or is queued: a second recovery finds nothing.
    let (_, again) = recover(json!({"since": started})).await;
    assert_eq!(again["data"]["count"], 0);
}

async fn recover_validates_its_window_and_refuses_a_disabled_webhook(backend: Backend) {
    let (app, _receiver, agent, webhook) = setup(backend).await;
    let base = format!("/api/v1/agents/{agent}/webhooks/{}", id(&webhook));
    for (body, field) in [
        (json!({}), "since"),
        (json!({"since": "last week"}), "since"),
        (json!({"since": 100, "until": 50}), "until"),
        (json!({"since": 100, "until": "x"}), "until"),
        (json!({"since": 100, "dry_run": "yes"}), "dry_run"),
    ] {
        let (status, response) =
            app.call(Method::POST, &format!("{base}/recover"), Some(body.clone())).await;
        assert_error(status, &response, 422, "VALIDATION_FAILED");
        assert!(response["errors"][field].is_array(), "{body}: {response}");
    }
    app.call(Method::PATCH, &format!("{base}/toggle"), None).await;
    let (status, response) =
        app.call(Method::POST, &format!("{base}/recover"), Some(json!({"since": 0}))).await;
    assert_error(status, &response, 409, "CONFLICT");
    let (status, response) = app
        .call(Method::POST, &format!("{base}/recover"), Some(json!({"since": 0, "dry_run": true})))
        .await;
    assert_eq!(status, 200, "{response}");
    let unknown = format!("/api/v1/agents/{agent}/webhooks/{}/recover", uuid::Uuid::new_v4());
    let (status, response) = app.call(Method::POST, &unknown, Some(json!({"since": 0}))).await;
    assert_error(status, &response, 404, "WEBHOOK_NOT_FOUND");
}

/// More logs than an answer should wait for: the API (here without workers) records the
/// recovery; a worker that starts later runs it to the end.
async fn a_large_recovery_runs_in_the_background_and_survives_a_restart(backend: Backend) {
    let api = TestApp::spawn_with(backend, |c| c.run_worker = false).await;
    let receiver = Receiver::start().await;
    let agent = api.create_agent().await;
    let webhook = api
        .create_webhook(&agent, json!({"webhook_url": receiver.url("/"), "enabled": false}))
        .await;
    let base = format!("/api/v1/agents/{agent}/webhooks/{}", id(&webhook));
    const EVENTS: usize = 1_200;
    for chunk in 0..EVENTS / 600 {
        let events: Vec<Value> = (0..600)
            .map(|i| json!({"event": "call.completed", "data": {"i": chunk * 600 + i}}))
            .collect();
        api.ingest_batch(&agent, events).await;
    }
    api.call(Method::PATCH, &format!("{base}/toggle"), None).await;
    let (status, started) =
        api.call(Method::POST, &format!("{base}/recover"), Some(json!({"since": 0}))).await;
    assert_eq!(status, 202, "{started}");
    assert_eq!(started["data"]["status"], "running");
    assert_eq!(started["data"]["count"], EVENTS);
    let progress = format!("{base}/recover/{}", started["data"]["recovery_id"].as_str().unwrap());
    let (_, stalled) = api.call(Method::GET, &progress, None).await;
    assert_eq!(stalled["data"]["status"], "running");
    assert_eq!(stalled["data"]["queued"], 0);

    let worker = TestApp::spawn_on(&api, |c| c.run_api = false).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = api.call(Method::GET, &progress, None).await;
        assert_eq!(status, 200, "{body}");
        if body["data"]["status"] == "completed" {
            assert_eq!(body["data"]["queued"], EVENTS);
            assert_eq!(body["data"]["total"], EVENTS);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "recovery never completed: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    receiver.wait_for(EVENTS, Duration::from_secs(60)).await;
    drop(worker);
    let (status, body) =
        api.call(Method::GET, &format!("{base}/recover/{}", uuid::Uuid::new_v4()), None).await;
    assert_error(status, &body, 404, "NOT_FOUND");
}

/// Two recover requests racing over the same window: each failure is queued once between them
/// (the recovery holds its webhook while it reads and queues), so the endpoint hears it once.
async fn two_recoveries_of_one_window_at_once_queue_each_failure_once(backend: Backend) {
    let (app, receiver, agent, webhook) = setup(backend).await;
    let started = webhookd::domain::clock::now_ms() / 1000 - 1;
    for call in ["c_1", "c_2", "c_3"] {
        failed_delivery(&app, &receiver, &agent, &webhook, call).await;
    }
    let sent_before = receiver.received().len();
    let path = format!("/api/v1/agents/{agent}/webhooks/{}/recover", id(&webhook));
    let body = json!({"since": started});
    let (first, second) = tokio::join!(
        app.call(Method::POST, &path, Some(body.clone())),
        app.call(Method::POST, &path, Some(body)),
    );
    assert_eq!((first.0, second.0), (202, 202), "{first:?} {second:?}");
    let queued =
        first.1["data"]["count"].as_i64().unwrap() + second.1["data"]["count"].as_i64().unwrap();
    assert_eq!(queued, 3, "{first:?} {second:?}");
    receiver.wait_for(sent_before + 3, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut calls: Vec<String> = receiver.received()[sent_before..]
        .iter()
        .map(|r| r.json()["call"].as_str().unwrap().to_string())
        .collect();
    calls.sort();
    assert_eq!(calls, ["c_1", "c_2", "c_3"]);
}
