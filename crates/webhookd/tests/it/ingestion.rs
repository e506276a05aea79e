//! Ingestion: validation, one transaction per request, idempotency, batches, skipped logs.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::backend_tests;
use crate::harness::{assert_error, Backend, TestApp};
use crate::receiver::Receiver;

backend_tests!(
    events_are_stored_even_when_nothing_subscribes,
    invalid_events_are_422_naming_each_field,
    an_idempotency_key_returns_the_first_event_and_creates_nothing,
    the_idempotency_key_header_stands_in_for_a_missing_key,
    a_batchs_keys_are_claimed_together_repeats_answer_with_their_first_event,
    a_key_older_than_the_window_makes_a_new_event,
    a_batch_reports_each_item_and_accepts_the_valid_ones,
    a_disabled_webhook_gets_a_skipped_log_and_no_request,
    events_go_only_to_webhooks_subscribed_to_them,
    another_organizations_agent_cannot_receive_events,
);

async fn events_are_stored_even_when_nothing_subscribes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let agent = app.create_agent().await;
    let (status, body) = app
        .call(
            Method::POST,
            &format!("/api/v1/agents/{agent}/events"),
            Some(json!({"event": "call.started", "data": {"a": 1}})),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["success"], true);
    assert!(uuid::Uuid::parse_str(body["data"]["event_id"].as_str().unwrap()).is_ok());
    assert_eq!(body["data"]["logs"], json!([]));
    assert_eq!(body["data"]["duplicate"], false);
}

async fn invalid_events_are_422_naming_each_field(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let agent = app.create_agent().await;
    let path = format!("/api/v1/agents/{agent}/events");
    let (status, body) = app.call(Method::POST, &path, Some(json!({}))).await;
    assert_error(status, &body, 422, "VALIDATION_FAILED");
    assert!(body["errors"]["event"].is_array() && body["errors"]["data"].is_array(), "{body}");
    let cases = [
        (json!({"event": "call.exploded", "data": {}}), "event"),
        (json!({"event": 7, "data": {}}), "event"),
        (json!({"event": "call.ended", "data": null}), "data"),
        (json!({"event": "call.ended", "data": {}, "call_id": ""}), "call_id"),
        (json!({"event": "call.ended", "data": {}, "call_id": "c".repeat(256)}), "call_id"),
        (
            json!({"event": "call.ended", "data": {}, "idempotency_key": "k".repeat(256)}),
            "idempotency_key",
        ),
        (json!({"event": "call.ended", "data": {}, "webhook_url": "gopher://x"}), "webhook_url"),
        (json!({"event": "call.ended", "data": {}, "webhook_url": 5}), "webhook_url"),
    ];
    for (event, field) in cases {
        let (status, body) = app.call(Method::POST, &path, Some(event.clone())).await;
        assert_error(status, &body, 422, "VALIDATION_FAILED");
        assert!(body["errors"][field].is_array(), "{event} should fail on {field}: {body}");
    }
    let (status, body) = app
        .call(
            Method::POST,
            &format!("/api/v1/agents/{}/events", uuid::Uuid::new_v4()),
            Some(json!({"event": "call.ended", "data": {}})),
        )
        .await;
    assert_error(status, &body, 404, "AGENT_NOT_FOUND");
}

/// A client retrying a request it got no answer to sends the same `Idempotency-Key` header:
/// the retry answers with the first event, whichever way the key came.
async fn the_idempotency_key_header_stands_in_for_a_missing_key(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let agent = app.create_agent().await;
    let url = format!("/api/v1/agents/{agent}/events");
    let event = json!({"event": "call.completed", "data": {"n": 1}});
    let post = |body: serde_json::Value| {
        app.request(reqwest::Method::POST, &url).header("Idempotency-Key", "retry-7").json(&body)
    };
    let (status, first) = crate::harness::send(post(event.clone())).await;
    assert_eq!(status, 202, "{first}");
    assert_eq!(first["data"]["duplicate"], false);
    let (status, again) = crate::harness::send(post(event)).await;
    assert_eq!(status, 202, "{again}");
    assert_eq!(again["data"]["duplicate"], true);
    assert_eq!(again["data"]["event_id"], first["data"]["event_id"]);
    // The body's own key wins over the header.
    let own = json!({"event": "call.completed", "data": {}, "idempotency_key": "own"});
    let (_, third) = crate::harness::send(post(own)).await;
    assert_eq!(third["data"]["duplicate"], false);
    assert_ne!(third["data"]["event_id"], first["data"]["event_id"]);
}

async fn an_idempotency_key_returns_the_first_event_and_creates_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let receiver = Receiver::start().await;
    let agent = app.create_agent().await;
    let webhook = app.create_webhook(&agent, json!({"webhook_url": receiver.url("/")})).await;
    let webhook = webhook["id"].as_str().unwrap();
    let event = json!({"event": "call.completed", "data": {"n": 1}, "idempotency_key": "k-1"});
    let first = app.ingest(&agent, event.clone()).await;
    let second = app
        .ingest(
            &agent,
            json!({"event": "call.completed", "data": {"n": 2}, "idempotency_key": "k-1"}),
        )
        .await;
    assert_eq!(second["event_id"], first["event_id"]);
    assert_eq!(second["duplicate"], true);
    assert_eq!(second["logs"].as_array().unwrap().len(), 1);
    assert_eq!(second["logs"][0]["log_id"], first["logs"][0]["log_id"]);
    // The one log is delivered, and an event ingested after the repeat reaches the same
    // webhook: had the repeat made a log of its own, it would have been due before this one.
    let log = first["logs"][0]["log_id"].as_str().unwrap();
    app.wait_for_log(&agent, webhook, log, "success").await;
    let later = json!({"event": "call.completed", "data": {"n": 3}, "idempotency_key": "k-3"});
    app.ingest(&agent, later).await;
    let received = receiver.wait_for(2, Duration::from_secs(10)).await;
    let bodies: Vec<Value> = received.iter().map(|r| r.json()).collect();
    assert_eq!(bodies, vec![json!({"n": 1}), json!({"n": 3})]);

    // Keys are per organization: the same key elsewhere is a new event.
    let other = app.other_org_key().await;
    let (_, agent_body) = crate::harness::send(
        app.client.post(app.url("/api/v1/agents")).bearer_auth(&other).json(&json!({"name": "a"})),
    )
    .await;
    let other_agent = agent_body["data"]["id"].as_str().unwrap();
    let (status, body) = crate::harness::send(
        app.client
            .post(app.url(&format!("/api/v1/agents/{other_agent}/events")))
            .bearer_auth(&other)
            .json(&event),
    )
    .await;
    assert_eq!(status, 202);
    assert_ne!(body["data"]["event_id"], first["event_id"]);
    assert_eq!(body["data"]["duplicate"], false);
}

async fn a_batch_reports_each_item_and_accepts_the_valid_ones(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let receiver = Receiver::start().await;
    let agent = app.create_agent().await;
    app.create_webhook(&agent, json!({"webhook_url": receiver.url("/")})).await;
    let mut events: Vec<Value> = (0..10)
        .map(|i| json!({"event": "call.completed", "call_id": format!("c_{i}"), "data": {"i": i}}))
        .collect();
    events[3] = json!({"event": "nope", "data": {}});
    events[7] = json!("not an object");
    let path = format!("/api/v1/agents/{agent}/events/batch");
    let (status, body) = app.call(Method::POST, &path, Some(json!({"events": events}))).await;
    assert_eq!(status, 202, "{body}");
    let data = &body["data"];
    assert_eq!((data["accepted"].as_u64(), data["failed"].as_u64()), (Some(8), Some(2)));
    let results = data["results"].as_array().unwrap();
    assert_eq!(results.len(), 10);
    assert_eq!(results[3]["success"], false);
    assert_eq!(results[3]["code"], "VALIDATION_FAILED");
    assert!(results[3]["errors"]["event"].is_array());
    assert_eq!(results[7]["success"], false);
    assert_eq!(results[0]["success"], true);
    assert!(results[0]["event_id"].is_string());
    assert_eq!(results[0]["logs"].as_array().unwrap().len(), 1);
    let received = receiver.wait_for(8, Duration::from_secs(10)).await;
    let mut seen: Vec<i64> = received.iter().map(|r| r.json()["i"].as_i64().unwrap()).collect();
    seen.sort_unstable();
    assert_eq!(seen, [0, 1, 2, 4, 5, 6, 8, 9]);

    for bad in [
        json!({}),
        json!({"events": []}),
        json!({"events": vec![json!({}); 1001]}),
        json!({"events": "x"}),
    ] {
        let (status, body) = app.call(Method::POST, &path, Some(bad)).await;
        assert_error(status, &body, 422, "VALIDATION_FAILED");
    }
    let full: Vec<Value> =
        (0..1000).map(|i| json!({"event": "call.started", "data": {"i": i}})).collect();
    let (status, body) = app.call(Method::POST, &path, Some(json!({"events": full}))).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["data"]["accepted"], 1000);
}

async fn a_disabled_webhook_gets_a_skipped_log_and_no_request(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let receiver = Receiver::start().await;
    let agent = app.create_agent().await;
    let webhook = app
        .create_webhook(&agent, json!({"webhook_url": receiver.url("/"), "enabled": false}))
        .await;
    let accepted = app.ingest(&agent, json!({"event": "call.completed", "data": {}})).await;
    assert_eq!(accepted["logs"][0]["status"], "skipped");
    let log_id = accepted["logs"][0]["log_id"].as_str().unwrap();
    let log = app.wait_for_log(&agent, webhook["id"].as_str().unwrap(), log_id, "skipped").await;
    assert_eq!(log["attempts"], json!([]));
    // The dispatcher sends an event ingested afterwards (another agent's webhook on the same
    // receiver), and that one is all the receiver ever got.
    let other_agent = app.create_agent().await;
    app.create_webhook(&other_agent, json!({"webhook_url": receiver.url("/later")})).await;
    app.ingest(&other_agent, json!({"event": "call.completed", "data": {}})).await;
    let received = receiver.wait_for(1, Duration::from_secs(10)).await;
    let paths: Vec<&str> = received.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths, vec!["/later"]);
}

async fn events_go_only_to_webhooks_subscribed_to_them(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let receiver = Receiver::start().await;
    let agent = app.create_agent().await;
    app.create_webhook(
        &agent,
        json!({"webhook_url": receiver.url("/ended"), "events": ["call.ended"]}),
    )
    .await;
    app.create_webhook(
        &agent,
        json!({"webhook_url": receiver.url("/both"), "events": ["call.ended", "call.completed"]}),
    )
    .await;
    let other_agent = app.create_agent().await;
    app.create_webhook(
        &other_agent,
        json!({"webhook_url": receiver.url("/other-agent"), "events": ["call.completed"]}),
    )
    .await;
    let accepted = app.ingest(&agent, json!({"event": "call.completed", "data": {}})).await;
    assert_eq!(accepted["logs"].as_array().unwrap().len(), 1);
    let received = receiver.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(received[0].path, "/both");
    // A later `call.ended` reaches both of its subscribers; by then nothing else arrived (no
    // `/ended` for the first event, nothing for the other agent's webhook).
    app.ingest(&agent, json!({"event": "call.ended", "data": {}})).await;
    let received = receiver.wait_for(3, Duration::from_secs(10)).await;
    let mut paths: Vec<&str> = received.iter().map(|r| r.path.as_str()).collect();
    paths.sort_unstable();
    assert_eq!(paths, vec!["/both", "/both", "/ended"]);
}

async fn another_organizations_agent_cannot_receive_events(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let agent = app.create_agent().await;
    let intruder = app.other_org_key().await;
    for path in
        [format!("/api/v1/agents/{agent}/events"), format!("/api/v1/agents/{agent}/events/batch")]
    {
        let body = json!({"event": "call.ended", "data": {}, "events": [{"event": "call.ended", "data": {}}]});
        let (status, response) = crate::harness::send(
            app.client.post(app.url(&path)).bearer_auth(&intruder).json(&body),
        )
        .await;
        assert_error(status, &response, 404, "AGENT_NOT_FOUND");
    }
}

async fn a_batchs_keys_are_claimed_together_repeats_answer_with_their_first_event(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    let agent = app.create_agent().await;
    let used = app
        .ingest(&agent, json!({"event": "call.completed", "data": {}, "idempotency_key": "used"}))
        .await;
    let keys = [Some("a"), Some("used"), None, Some("a"), Some("b"), Some("used"), Some("b")];
    let events: Vec<Value> = keys
        .iter()
        .enumerate()
        .map(
            |(i, key)| json!({"event": "call.completed", "data": {"i": i}, "idempotency_key": key}),
        )
        .collect();
    let path = format!("/api/v1/agents/{agent}/events/batch");
    let (status, body) = app.call(Method::POST, &path, Some(json!({"events": events}))).await;
    assert_eq!(status, 202, "{body}");
    let results = body["data"]["results"].as_array().unwrap();
    let duplicate: Vec<bool> = results.iter().map(|r| r["duplicate"] == true).collect();
    assert_eq!(duplicate, [false, true, false, true, false, true, true], "{body}");
    let id = |i: usize| results[i]["event_id"].clone();
    assert_eq!((id(1), id(5)), (used["event_id"].clone(), used["event_id"].clone()));
    assert_eq!(id(3), id(0), "a repeat within the batch answers with its first event");
    assert_eq!(id(6), id(4));
    assert_ne!(id(0), id(4));
    // The same batch again creates nothing.
    let (_, again) = app.call(Method::POST, &path, Some(json!({"events": events}))).await;
    let again = again["data"]["results"].as_array().unwrap();
    for (i, result) in again.iter().enumerate() {
        assert_eq!(result["duplicate"], keys[i].is_some(), "{result}");
        if keys[i].is_some() {
            assert_eq!(result["event_id"], id(i));
        }
    }
}

async fn a_key_older_than_the_window_makes_a_new_event(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let agent = app.create_agent().await;
    let event = json!({"event": "call.completed", "data": {}, "idempotency_key": "old"});
    let first = app.ingest(&agent, event.clone()).await;
    // Taken a day (the window) and a moment ago.
    let aged = "UPDATE idempotency_keys SET created_at = created_at - 86400000 - 1";
    match backend {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&app.db().url).await.unwrap();
            sqlx::query(aged).execute(&pool).await.unwrap();
            pool.close().await;
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&app.db().url).await.unwrap();
            sqlx::query(aged).execute(&pool).await.unwrap();
            pool.close().await;
        }
    }
    let second = app.ingest(&agent, event.clone()).await;
    assert_eq!(second["duplicate"], false, "{second}");
    assert_ne!(second["event_id"], first["event_id"]);
    let third = app.ingest(&agent, event).await;
    assert_eq!(
        (third["duplicate"].clone(), third["event_id"].clone()),
        (json!(true), second["event_id"].clone())
    );
}
