//! Delivery to a real local receiver: the request on the wire, retries, the retry policy's edges.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::backend_tests;
use crate::harness::{Backend, TestApp};
use crate::receiver::{Receiver, Reply};

backend_tests!(
    the_request_carries_the_data_verbatim_and_every_header,
    signatures_verify_with_a_reference_standard_webhooks_implementation,
    a_rotated_secret_signs_alongside_the_new_one,
    a_receiver_failing_twice_then_succeeding_gets_three_attempts,
    exhausted_retries_fail_the_log,
    retry_after_is_honoured,
    gone_disables_the_webhook,
    a_per_call_webhook_url_is_signed_with_the_organization_secret,
    long_response_bodies_are_truncated_at_16_kib,
    the_test_endpoint_sends_now_and_reports_the_answer,
    a_reused_connection_closed_unanswered_is_sent_again_on_a_new_one,
);

async fn setup(backend: Backend, fields: Value) -> (TestApp, Receiver, String, Value) {
    let app = TestApp::spawn(backend).await;
    let receiver = Receiver::start().await;
    let agent = app.create_agent().await;
    let mut body = json!({"webhook_url": receiver.url("/hook")});
    crate::harness::merge(&mut body, fields);
    let webhook = app.create_webhook(&agent, body).await;
    (app, receiver, agent, webhook)
}

fn id(value: &Value) -> &str {
    value["id"].as_str().unwrap()
}

async fn the_request_carries_the_data_verbatim_and_every_header(backend: Backend) {
    let (app, receiver, agent, webhook) = setup(
        backend,
        json!({
            "http_method": "PUT",
            "authorization_scheme": "bearer", "auth_token": "tok-123",
            "custom_headers": [{"key": "X-Team", "value": "blue"}],
        }),
    )
    .await;
    // Odd spacing, key order and unicode escapes must survive byte for byte.
    let data = r#"{ "b":1,  "a" : [true,null], "s":"caf\u00e9 \ud83d\ude00" , "n": 1.50 }"#;
    let body = format!(r#"{{"event": "call.completed", "call_id": "c_1", "data": {data}}}"#);
    let request = app
        .request(Method::POST, &format!("/api/v1/agents/{agent}/events"))
        .header("content-type", "application/json")
        .body(body);
    let (status, accepted) = crate::harness::send(request).await;
    assert_eq!(status, 202, "{accepted}");
    let event_id = accepted["data"]["event_id"].as_str().unwrap();
    assert_eq!(accepted["data"]["logs"][0]["webhook_id"], webhook["id"]);

    let got = receiver.wait_for(1, Duration::from_secs(10)).await.remove(0);
    assert_eq!(got.method, Method::PUT);
    assert_eq!(got.path, "/hook");
    assert_eq!(&got.body[..], data.as_bytes());
    assert_eq!(got.header("content-type"), "application/json");
    assert_eq!(got.header("user-agent"), concat!("webhookd/", env!("CARGO_PKG_VERSION")));
    assert_eq!(got.header("webhook-id"), event_id);
    let timestamp: i64 = got.header("webhook-timestamp").parse().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
        as i64;
    assert!((now - timestamp).abs() < 30);
    assert!(got.header("webhook-signature").starts_with("v1,"));
    let secret = webhook["signing_secret"].as_str().unwrap();
    assert_eq!(
        got.header("x-webhook-signature"),
        webhookd::signing::body_signature(secret, data.as_bytes())
    );
    assert_eq!(got.header("authorization"), "Bearer tok-123");
    assert_eq!(got.header("x-team"), "blue");

    let log_id = accepted["data"]["logs"][0]["log_id"].as_str().unwrap();
    let log = app.wait_for_log(&agent, id(&webhook), log_id, "success").await;
    assert_eq!(log["attempt"], 1);
    assert_eq!(log["http_status"], 200);
    assert_eq!(log["call_id"], "c_1");
    assert_eq!(log["request_payload"], serde_json::from_str::<Value>(data).unwrap());
    assert_eq!(log["attempts"][0]["send_type"], "spawn");
    assert!(log["delivered_at"].is_string());
}

async fn signatures_verify_with_a_reference_standard_webhooks_implementation(backend: Backend) {
    let (app, receiver, agent, webhook) = setup(backend, json!({})).await;
    app.ingest(&agent, json!({"event": "call.completed", "data": {"transcript": "hello"}})).await;
    let got = receiver.wait_for(1, Duration::from_secs(10)).await.remove(0);
    let reference =
        standardwebhooks::Webhook::new(webhook["signing_secret"].as_str().unwrap()).unwrap();
    let mut headers = http::HeaderMap::new();
    for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        headers.insert(name, got.header(name).parse().unwrap());
    }
    reference
        .verify(&got.body, &headers)
        .expect("the reference implementation accepts the signature");
    let mut tampered = got.body.to_vec();
    tampered.push(b' ');
    assert!(reference.verify(&tampered, &headers).is_err());
}

async fn a_rotated_secret_signs_alongside_the_new_one(backend: Backend) {
    let (app, receiver, agent, webhook) = setup(backend, json!({})).await;
    let old = webhook["signing_secret"].as_str().unwrap().to_string();
    let rotate = format!("/api/v1/agents/{agent}/webhooks/{}/secret/rotate", id(&webhook));
    let (_, rotated) = app.call(Method::POST, &rotate, None).await;
    let new = rotated["data"]["signing_secret"].as_str().unwrap().to_string();
    app.ingest(&agent, json!({"event": "call.completed", "data": {}})).await;
    let got = receiver.wait_for(1, Duration::from_secs(10)).await.remove(0);
    let header = got.header("webhook-signature");
    assert_eq!(header.split(' ').count(), 2, "{header}");
    let timestamp = got.header("webhook-timestamp").parse().unwrap();
    for secret in [&old, &new] {
        assert!(webhookd::signing::verify_standard(
            secret,
            got.header("webhook-id"),
            timestamp,
            &got.body,
            header
        ));
    }
    assert_eq!(
        got.header("x-webhook-signature"),
        webhookd::signing::body_signature(&new, &got.body)
    );
}

async fn a_receiver_failing_twice_then_succeeding_gets_three_attempts(backend: Backend) {
    let (app, receiver, agent, webhook) = setup(backend, json!({"max_retries": 3})).await;
    receiver.script([Reply::status(500), Reply::status(502).body("bad gateway")]);
    let accepted = app.ingest(&agent, json!({"event": "call.completed", "data": {"n": 1}})).await;
    let log_id = accepted["logs"][0]["log_id"].as_str().unwrap();
    let log = app.wait_for_log(&agent, id(&webhook), log_id, "success").await;
    let attempts = log["attempts"].as_array().unwrap();
    let send_types: Vec<&str> = attempts.iter().map(|a| a["send_type"].as_str().unwrap()).collect();
    assert_eq!(send_types, ["spawn", "retry", "retry"]);
    let codes: Vec<i64> = attempts.iter().map(|a| a["http_status"].as_i64().unwrap()).collect();
    assert_eq!(codes, [500, 502, 200]);
    assert_eq!(attempts[1]["response_body"], "bad gateway");
    assert_eq!(attempts[1]["error"], "HTTP 502");
    assert_eq!(log["attempt"], 3);
    assert_eq!(log["next_attempt_at"], Value::Null);
    let ids: Vec<String> =
        receiver.received().iter().map(|r| r.header("webhook-id").to_string()).collect();
    assert!(ids.iter().all(|i| i == &ids[0]), "webhook-id is the same on every attempt");
}

async fn exhausted_retries_fail_the_log(backend: Backend) {
    let (app, receiver, agent, webhook) = setup(backend, json!({"max_retries": 2})).await;
    receiver.otherwise(Reply::status(500));
    let accepted = app.ingest(&agent, json!({"event": "call.completed", "data": {}})).await;
    let log_id = accepted["logs"][0]["log_id"].as_str().unwrap();
    let log = app.wait_for_log(&agent, id(&webhook), log_id, "failed").await;
    assert_eq!(log["attempts"].as_array().unwrap().len(), 3);
    assert_eq!(log["http_status"], 500);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.received().len(), 3, "no attempt after the last retry");

    // A receiver that is not listening at all: network errors are retried too, with no status.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let hook = app.create_webhook(&agent, json!({"webhook_url": format!("http://{closed}/"), "max_retries": 1, "events": ["call.ended"]})).await;
    let accepted = app.ingest(&agent, json!({"event": "call.ended", "data": {}})).await;
    let log_id = accepted["logs"][0]["log_id"].as_str().unwrap();
    let log = app.wait_for_log(&agent, id(&hook), log_id, "failed").await;
    assert_eq!(log["attempts"].as_array().unwrap().len(), 2);
    assert_eq!(log["attempts"][0]["http_status"], Value::Null);
    assert!(log["error"].as_str().unwrap().contains("connection failed"), "{log}");
}

async fn retry_after_is_honoured(backend: Backend) {
    let (app, receiver, agent, webhook) = setup(backend, json!({})).await;
    receiver.script([Reply::status(429).header("retry-after", "2")]);
    let accepted = app.ingest(&agent, json!({"event": "call.completed", "data": {}})).await;
    let log_id = accepted["logs"][0]["log_id"].as_str().unwrap();
    let path = format!("/api/v1/agents/{agent}/webhooks/{}/logs/{log_id}", id(&webhook));
    receiver.wait_for(1, Duration::from_secs(10)).await;
    let log = loop {
        let (_, body) = app.call(Method::GET, &path, None).await;
        if body["data"]["attempt"] == 1 {
            break body["data"].clone();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(log["status"], "pending");
    let parse = |v: &Value| webhookd::domain::clock::parse_timestamp(v.as_str().unwrap()).unwrap();
    let waited = parse(&log["next_attempt_at"]) - parse(&log["attempts"][0]["sent_at"]);
    assert!(waited >= 2_000, "retry scheduled only {waited} ms after a Retry-After of 2 s");
    assert!(waited < 2_000 + 1_000, "retry scheduled {waited} ms later");
    let log = app.wait_for_log(&agent, id(&webhook), log_id, "success").await;
    assert_eq!(log["attempts"].as_array().unwrap().len(), 2);
}

async fn gone_disables_the_webhook(backend: Backend) {
    let (app, receiver, agent, webhook) = setup(backend, json!({"max_retries": 5})).await;
    receiver.otherwise(Reply::status(410));
    let accepted = app.ingest(&agent, json!({"event": "call.completed", "data": {}})).await;
    let log_id = accepted["logs"][0]["log_id"].as_str().unwrap();
    let log = app.wait_for_log(&agent, id(&webhook), log_id, "failed").await;
    assert_eq!(log["attempts"].as_array().unwrap().len(), 1, "410 is not retried");
    let (_, read) = app
        .call(Method::GET, &format!("/api/v1/agents/{agent}/webhooks/{}", id(&webhook)), None)
        .await;
    assert_eq!(read["data"]["enabled"], false);
    assert_eq!(read["data"]["status"], "disabled");
    assert_eq!(read["data"]["disabled_reason"], "Endpoint answered 410 Gone");
    // Later events for it are kept as skipped logs.
    let accepted = app.ingest(&agent, json!({"event": "call.completed", "data": {}})).await;
    assert_eq!(accepted["logs"][0]["status"], "skipped");
}

async fn a_per_call_webhook_url_is_signed_with_the_organization_secret(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let receiver = Receiver::start().await;
    let agent = app.create_agent().await;
    let accepted = app
        .ingest(&agent, json!({"event": "call.completed", "call_id": "c_9", "data": {"x": 1}, "webhook_url": receiver.url("/per-call")}))
        .await;
    assert_eq!(accepted["logs"][0]["webhook_id"], Value::Null);
    assert_eq!(accepted["logs"][0]["url"], receiver.url("/per-call"));
    let got = receiver.wait_for(1, Duration::from_secs(10)).await.remove(0);
    assert_eq!(got.path, "/per-call");
    let (_, secret) = app.call(Method::GET, "/api/v1/organization/secret", None).await;
    let secret = secret["data"]["signing_secret"].as_str().unwrap();
    let timestamp = got.header("webhook-timestamp").parse().unwrap();
    assert!(webhookd::signing::verify_standard(
        secret,
        got.header("webhook-id"),
        timestamp,
        &got.body,
        got.header("webhook-signature")
    ));
}

async fn long_response_bodies_are_truncated_at_16_kib(backend: Backend) {
    let (app, receiver, agent, webhook) = setup(backend, json!({})).await;
    receiver.script([Reply::status(200).body("x".repeat(100_000))]);
    let accepted = app.ingest(&agent, json!({"event": "call.completed", "data": {}})).await;
    let log_id = accepted["logs"][0]["log_id"].as_str().unwrap();
    let log = app.wait_for_log(&agent, id(&webhook), log_id, "success").await;
    assert_eq!(log["response_body"].as_str().unwrap().len(), 16 * 1024);
    assert!(log["response_headers"]["content-length"].is_string(), "{}", log["response_headers"]);
}

async fn the_test_endpoint_sends_now_and_reports_the_answer(backend: Backend) {
    let (app, receiver, agent, webhook) = setup(backend, json!({"events": ["call.ended"]})).await;
    let path = format!("/api/v1/agents/{agent}/webhooks/{}/test", id(&webhook));
    let (status, body) = app.call(Method::POST, &path, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["status_code"], 200);
    assert!(body["data"]["response_time"].as_i64().unwrap() >= 0);
    assert_eq!(body["data"]["success"], true);
    let got = receiver.received();
    assert_eq!(got.len(), 1, "sent before answering");
    assert_eq!(got[0].json()["event"], "webhook.test");

    receiver.script([Reply::status(503)]);
    let (status, body) = app.call(Method::POST, &path, None).await;
    assert_eq!(status, 200);
    assert_eq!(body["data"]["status_code"], 503);
    assert_eq!(body["data"]["success"], false);
    assert_eq!(body["message"], "Test webhook failed");
    let log_id = body["data"]["log_id"].as_str().unwrap();
    let log = app.wait_for_log(&agent, id(&webhook), log_id, "failed").await;
    assert_eq!(log["attempts"][0]["send_type"], "test");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.received().len(), 2, "a test is never retried");
}

/// An endpoint that answers the first request on its first connection and keeps it open, then
/// closes that connection when the next request comes on it, unanswered (as a keep-alive
/// connection closed at the moment of its reuse); every later connection is answered. Says
/// which connection (0, 1, …) each request came on, with its `webhook-id`.
async fn closes_a_reused_connection(
) -> (String, std::sync::Arc<std::sync::Mutex<Vec<(usize, String)>>>) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen_ = seen.clone();
    tokio::spawn(async move {
        for connection in 0.. {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let seen = seen_.clone();
            tokio::spawn(async move {
                let mut tcp = BufReader::new(tcp);
                for request in 0.. {
                    let (mut length, mut webhook_id) = (0, String::new());
                    loop {
                        let mut line = String::new();
                        if tcp.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let line = line.trim_end();
                        if line.is_empty() {
                            break;
                        }
                        let (name, value) = line.split_once(':').unwrap_or((line, ""));
                        match name.to_ascii_lowercase().as_str() {
                            "content-length" => length = value.trim().parse().unwrap(),
                            "webhook-id" => webhook_id = value.trim().to_string(),
                            _ => {}
                        }
                    }
                    let mut body = vec![0; length];
                    tcp.read_exact(&mut body).await.unwrap();
                    seen.lock().unwrap().push((connection, webhook_id));
                    if connection == 0 && request == 1 {
                        return; // closed, unanswered
                    }
                    let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                    tcp.get_mut().write_all(answer).await.unwrap();
                }
            });
        }
    });
    (url, seen)
}

async fn a_reused_connection_closed_unanswered_is_sent_again_on_a_new_one(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (url, seen) = closes_a_reused_connection().await;
    let agent = app.create_agent().await;
    let webhook = app.create_webhook(&agent, json!({"webhook_url": url, "max_retries": 0})).await;
    let mut logs = Vec::new();
    for n in 0..2 {
        let accepted =
            app.ingest(&agent, json!({"event": "call.completed", "data": {"n": n}})).await;
        let log_id = accepted["logs"][0]["log_id"].as_str().unwrap().to_string();
        logs.push(app.wait_for_log(&agent, id(&webhook), &log_id, "success").await);
    }
    // The second request rode the first connection, which was closed on it; it went again at
    // once on a new connection, within the same attempt.
    let seen = seen.lock().unwrap().clone();
    let connections: Vec<usize> = seen.iter().map(|(connection, _)| *connection).collect();
    assert_eq!(connections, [0, 0, 1], "{seen:?}");
    assert_eq!(seen[1].1, seen[2].1, "the same webhook-id both times");
    assert_ne!(seen[0].1, seen[1].1);
    assert_eq!(logs[1]["attempts"].as_array().unwrap().len(), 1, "{}", logs[1]);
}
