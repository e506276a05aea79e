//! Hostile receivers: each attempt ends within its timeout with a clear error, and a hanging
//! endpoint does not hold up deliveries to other webhooks.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::harness::{Backend, TestApp};
use crate::receiver::{Receiver, Reply};

/// A raw TCP endpoint on loopback that reads the request and then does `behave` with the socket.
async fn raw_endpoint<F, Fut>(behave: F) -> String
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let behave = std::sync::Arc::new(behave);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let behave = behave.clone();
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 64 * 1024];
                let _ = socket.read(&mut buffer).await;
                behave(socket).await;
            });
        }
    });
    format!("http://{addr}/")
}

/// Delivers one `event` to a new webhook at `url`; each case of a test uses its own event type, so
/// each endpoint receives exactly one request.
async fn deliver_once(app: &TestApp, agent: &str, url: &str, event: &str) -> (Value, Duration) {
    let webhook = app
        .create_webhook(
            agent,
            json!({"webhook_url": url, "max_retries": 0, "timeout": 5, "events": [event]}),
        )
        .await;
    let started = Instant::now();
    let accepted = app.ingest(agent, json!({"event": event, "data": {}})).await;
    let log =
        accepted["logs"].as_array().unwrap().iter().find(|l| l["url"] == url).unwrap().clone();
    let detail = app
        .wait_for_log(
            agent,
            webhook["id"].as_str().unwrap(),
            log["log_id"].as_str().unwrap(),
            "failed",
        )
        .await;
    // Disable it so later events in the same test do not reach it.
    let path =
        format!("/api/v1/agents/{agent}/webhooks/{}/toggle", webhook["id"].as_str().unwrap());
    app.call(reqwest::Method::PATCH, &path, None).await;
    (detail, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_receivers_fail_within_the_timeout_with_a_clear_error() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let agent = app.create_agent().await;

    let silent = raw_endpoint(|socket| async move {
        tokio::time::sleep(Duration::from_secs(60)).await;
        drop(socket);
    })
    .await;
    let trickle = raw_endpoint(|mut socket| async move {
        let _ = socket.write_all(b"HTTP/1.1 200 OK\r\n").await;
        for _ in 0..60 {
            if socket.write_all(b"X-Slow: 1\r\n").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
    .await;
    let reset = raw_endpoint(|socket| async move { drop(socket) }).await;
    let huge_headers = raw_endpoint(|mut socket| async move {
        let _ = socket.write_all(b"HTTP/1.1 200 OK\r\n").await;
        let header = format!("X-Big: {}\r\n", "a".repeat(8 * 1024));
        for _ in 0..200 {
            if socket.write_all(header.as_bytes()).await.is_err() {
                return;
            }
        }
        let _ = socket.write_all(b"\r\n").await;
    })
    .await;
    let not_tls = {
        let receiver = Receiver::start().await;
        receiver.url("/").replace("http://", "https://")
    };
    let redirect_loop = {
        let receiver = Receiver::start().await;
        receiver.otherwise(Reply::status(302).header("location", receiver.url("/")));
        receiver.url("/")
    };

    let cases: [(&str, &str, u64); 6] = [
        (&silent, "timed out after 5s", 7),
        (&trickle, "timed out after 5s", 7),
        (&reset, "connection", 3),
        (&huge_headers, "message head is too large", 7),
        (&not_tls, "connection failed", 3),
        (&redirect_loop, "HTTP 302", 3),
    ];
    let events = [
        "call.started",
        "call.ended",
        "call.failed",
        "call.transferred",
        "voicemail.detected",
        "recording.ready",
    ];
    let mut runs = Vec::new();
    for ((url, _, _), event) in cases.iter().zip(events) {
        runs.push(deliver_once(&app, &agent, url, event));
    }
    let results = futures::future::join_all(runs).await;
    for ((url, expected, within), (detail, elapsed)) in cases.iter().zip(results) {
        let error = detail["error"].as_str().unwrap_or_default();
        assert!(!error.is_empty() && error.contains(expected), "{url}: {error}");
        assert!(elapsed < Duration::from_secs(*within), "{url} took {elapsed:?}");
        assert_eq!(
            detail["attempts"].as_array().unwrap().len(),
            1,
            "{url}: redirects are not followed"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_body_is_cut_at_16_kib_and_the_attempt_ends() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let agent = app.create_agent().await;
    let endless = raw_endpoint(|mut socket| async move {
        let _ = socket.write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n").await;
        let chunk = format!("{:x}\r\n{}\r\n", 4096, "z".repeat(4096));
        for _ in 0..100_000 {
            if socket.write_all(chunk.as_bytes()).await.is_err() {
                return;
            }
        }
    })
    .await;
    let webhook = app
        .create_webhook(&agent, json!({"webhook_url": endless, "max_retries": 0, "timeout": 5}))
        .await;
    let accepted = app.ingest(&agent, json!({"event": "call.completed", "data": {}})).await;
    let log = app
        .wait_for_log(
            &agent,
            webhook["id"].as_str().unwrap(),
            accepted["logs"][0]["log_id"].as_str().unwrap(),
            "success",
        )
        .await;
    assert_eq!(log["response_body"].as_str().unwrap().len(), 16 * 1024);
}

/// Concurrency 8: a webhook whose endpoint hangs may use at most half the slots, so another
/// webhook's event goes out at once instead of after the hanging ones time out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_endpoint_does_not_hold_up_other_webhooks() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| c.concurrency = 8).await;
    let agent = app.create_agent().await;
    let hanging = raw_endpoint(|socket| async move {
        tokio::time::sleep(Duration::from_secs(60)).await;
        drop(socket);
    })
    .await;
    app.create_webhook(&agent, json!({"webhook_url": hanging, "events": ["call.started"], "timeout": 10, "max_retries": 0})).await;
    let events: Vec<Value> =
        (0..40).map(|i| json!({"event": "call.started", "data": {"i": i}})).collect();
    let (status, _) = app
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/agents/{agent}/events/batch"),
            Some(json!({"events": events})),
        )
        .await;
    assert_eq!(status, 202);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let receiver = Receiver::start().await;
    app.create_webhook(&agent, json!({"webhook_url": receiver.url("/"), "events": ["call.ended"]}))
        .await;
    let started = Instant::now();
    app.ingest(&agent, json!({"event": "call.ended", "data": {}})).await;
    receiver.wait_for(1, Duration::from_secs(10)).await;
    assert!(started.elapsed() < Duration::from_secs(5), "held up for {:?}", started.elapsed());
}
