//! The limits that keep clients from holding the server: connection timeouts and limit, bodies
//! refused before they are read, bounded metric labels, what unknown keys cost, settings refused
//! at start. Each test is the failure it prevents (issue 16).

use std::io::BufRead;
use std::time::{Duration, Instant};

use futures::StreamExt;
use reqwest::Method;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::backend_tests;
use crate::harness::{assert_error, send, Backend, TestApp};
use crate::process::webhookd;

backend_tests!(
    a_silent_connection_is_closed_after_the_header_timeout,
    a_trickled_request_head_is_closed_after_the_header_timeout,
    an_idle_keep_alive_connection_is_closed_after_the_idle_timeout,
    a_body_announced_but_never_sent_is_cut_off_with_408,
    a_body_declared_over_the_limit_is_refused_before_it_is_read,
    the_connection_limit_holds_and_accepting_resumes_when_a_connection_closes,
    unknown_methods_do_not_grow_the_metrics,
    a_429_never_says_retry_after_0,
    a_flood_of_unknown_keys_is_throttled_and_a_valid_key_still_works,
    repeating_an_unknown_key_costs_no_lookup,
);

/// Longest a test waits for something that should happen within a second.
const PATIENCE: Duration = Duration::from_secs(10);

/// An app whose connection timeouts are short; `configure` may change them further.
async fn spawn_with_timeouts(
    backend: Backend,
    configure: impl FnOnce(&mut webhookd::config::Config),
) -> TestApp {
    TestApp::spawn_with(backend, |config| {
        config.header_timeout = Duration::from_secs(30);
        config.idle_timeout = Duration::from_secs(30);
        config.body_timeout = Duration::from_secs(30);
        configure(config);
    })
    .await
}

/// Reads until the server closes the connection (EOF or reset); returns what it sent, or panics
/// when it is still open after [`PATIENCE`].
async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    let read = tokio::time::timeout(PATIENCE, async {
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the server kept the connection open; it sent {received:?}");
    received
}

/// Reads one response whose body has a `Content-Length`; returns its head and body.
async fn read_response(stream: &mut TcpStream) -> (String, String) {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&received).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .unwrap_or(0usize);
            if body.len() >= length {
                return (head.to_string(), body.to_string());
            }
        }
        let n = tokio::time::timeout(PATIENCE, stream.read(&mut buffer))
            .await
            .expect("a response in time")
            .expect("read");
        assert!(n > 0, "closed before a whole response: {text:?}");
        received.extend_from_slice(&buffer[..n]);
    }
}

async fn healthz_on(stream: &mut TcpStream) -> String {
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: webhookd\r\n\r\n").await.unwrap();
    read_response(stream).await.0
}

async fn a_silent_connection_is_closed_after_the_header_timeout(backend: Backend) {
    let app = spawn_with_timeouts(backend, |c| c.header_timeout = Duration::from_millis(300)).await;
    let mut silent = TcpStream::connect(app.addr).await.unwrap();
    read_until_closed(&mut silent).await;
}

/// Slowloris: a head that keeps arriving, a line at a time, never completes.
async fn a_trickled_request_head_is_closed_after_the_header_timeout(backend: Backend) {
    let app = spawn_with_timeouts(backend, |c| c.header_timeout = Duration::from_millis(500)).await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: webhookd\r\n").await.unwrap();
    let started = Instant::now();
    let mut line = 0;
    loop {
        line += 1;
        let header = format!("X-Trickle-{line}: still typing\r\n");
        if stream.write_all(header.as_bytes()).await.is_err() {
            break; // closed by the server
        }
        let mut byte = [0u8; 1];
        match tokio::time::timeout(Duration::from_millis(100), stream.read(&mut byte)).await {
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(_)) => panic!("the server answered a request head that never ended"),
            Err(_still_open) => {}
        }
        assert!(started.elapsed() < PATIENCE, "a trickled head held the connection");
    }
}

async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout(backend: Backend) {
    let app = spawn_with_timeouts(backend, |c| c.idle_timeout = Duration::from_millis(300)).await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    let head = healthz_on(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let head = healthz_on(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 200"), "kept alive for a second request: {head}");
    let after = read_until_closed(&mut stream).await;
    assert!(after.is_empty(), "{after:?}");
}

/// A client that announces a body and never sends it gets a 408 and is disconnected.
async fn a_body_announced_but_never_sent_is_cut_off_with_408(backend: Backend) {
    let app = spawn_with_timeouts(backend, |c| c.body_timeout = Duration::from_millis(300)).await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    let request = format!(
        "POST /api/v1/agents HTTP/1.1\r\nHost: webhookd\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"name\": ",
        app.api_key
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let (head, body) = read_response(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_error(408, &body, 408, "REQUEST_TIMEOUT");
    read_until_closed(&mut stream).await;
}

/// `Expect: 100-continue` with a body over 1 MiB gets its 413 at once (the client sends
/// nothing), and so does a `Content-Length` of terabytes; Bland's endpoints in Bland's envelope.
async fn a_body_declared_over_the_limit_is_refused_before_it_is_read(backend: Backend) {
    let app = spawn_with_timeouts(backend, |_| {}).await;
    let cases = [
        ("/api/v1/agents", "Expect: 100-continue\r\nContent-Length: 5000000"),
        ("/api/v1/agents", "Content-Length: 99999999999999"),
        ("/v1/postcall/webhooks/resend", "Expect: 100-continue\r\nContent-Length: 5000000"),
    ];
    for (path, headers) in cases {
        let mut stream = TcpStream::connect(app.addr).await.unwrap();
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: webhookd\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\n{headers}\r\n\r\n",
            app.api_key
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let (head, body) = read_response(&mut stream).await;
        assert!(head.starts_with("HTTP/1.1 413"), "{path} {headers}: {head}");
        let body: Value = serde_json::from_str(&body).unwrap();
        if path.starts_with("/v1/") {
            assert_eq!(body["errors"][0]["error"], "invalid_parameter", "{body}");
        } else {
            assert_error(413, &body, 413, "PAYLOAD_TOO_LARGE");
        }
    }
    // Within the limit, `Expect: 100-continue` still gets its `100 Continue`.
    let body = r#"{"name": "expect"}"#;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    let request = format!(
        "POST /api/v1/agents HTTP/1.1\r\nHost: webhookd\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        app.api_key,
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let (head, _) = read_response(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 100"), "{head}");
    stream.write_all(body.as_bytes()).await.unwrap();
    let (head, _) = read_response(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 201"), "{head}");

    // A client that sends the oversized body anyway still reads its 413.
    let huge = vec![b' '; 3 * 1024 * 1024];
    let (status, body) = send(app.request(Method::POST, "/api/v1/agents").body(huge)).await;
    assert_error(status, &body, 413, "PAYLOAD_TOO_LARGE");
}

async fn the_connection_limit_holds_and_accepting_resumes_when_a_connection_closes(
    backend: Backend,
) {
    let app = spawn_with_timeouts(backend, |c| c.max_connections = Some(2)).await;
    let mut first = TcpStream::connect(app.addr).await.unwrap();
    let mut second = TcpStream::connect(app.addr).await.unwrap();
    assert!(healthz_on(&mut first).await.starts_with("HTTP/1.1 200"));
    assert!(healthz_on(&mut second).await.starts_with("HTTP/1.1 200"));

    // Both slots are held by idle keep-alive connections: a third waits, unanswered.
    let mut third = TcpStream::connect(app.addr).await.unwrap();
    third.write_all(b"GET /healthz HTTP/1.1\r\nHost: webhookd\r\n\r\n").await.unwrap();
    let mut byte = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(500), third.read(&mut byte)).await;
    assert!(early.is_err(), "a third connection was served past a limit of 2");

    drop(first);
    let (head, _) = read_response(&mut third).await;
    assert!(head.starts_with("HTTP/1.1 200"), "accepting resumed: {head}");
    assert!(healthz_on(&mut second).await.starts_with("HTTP/1.1 200"));
}

/// Each unknown method name used to make a new metric series, forever.
async fn unknown_methods_do_not_grow_the_metrics(backend: Backend) {
    let app = spawn_with_timeouts(backend, |_| {}).await;
    let marker = format!("HARDENING{}", uuid::Uuid::new_v4().simple()).to_uppercase();
    for (i, path) in ["/healthz", "/api/v1/agents", "/no/such/route"].iter().cycle().enumerate() {
        if i == 30 {
            break;
        }
        let method = Method::from_bytes(format!("{marker}{i}").as_bytes()).unwrap();
        let response = app.request(method, path).send().await.unwrap();
        assert!(response.status().is_client_error(), "{path}: {}", response.status());
    }
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(!metrics.contains(&marker), "a method name became a label");
    assert!(metrics.contains(r#"method="other""#), "unknown methods are counted as other");
}

async fn a_429_never_says_retry_after_0(backend: Backend) {
    let app = spawn_with_timeouts(backend, |c| c.rate_limit = 2).await;
    let mut limited = 0;
    for path in ["/api/v1/agents", "/v1/postcall/webhooks/c_1"].iter().cycle().take(60) {
        let response = app.request(Method::GET, path).send().await.unwrap();
        if response.status() == 429 {
            limited += 1;
            let retry_after = response.headers().get("retry-after").map(|v| v.to_str().unwrap());
            let seconds: u64 = retry_after.expect("a 429 says when").parse().unwrap();
            assert!(seconds >= 1, "{path}: Retry-After {seconds}");
        }
    }
    assert!(limited > 10, "the rate limit of 2 per second applied ({limited} limited)");
}

async fn a_flood_of_unknown_keys_is_throttled_and_a_valid_key_still_works(backend: Backend) {
    let app = spawn_with_timeouts(backend, |_| {}).await;
    let flood = 160;
    let mut answers = futures::stream::iter(0..flood)
        .map(|_| {
            let request = app
                .client
                .get(app.url("/api/v1/agents"))
                .bearer_auth(webhookd::domain::secrets::generate_api_key());
            async move { request.send().await.unwrap() }
        })
        .buffer_unordered(16);
    let (mut unauthorized, mut throttled) = (0, 0);
    while let Some(response) = answers.next().await {
        match response.status().as_u16() {
            401 => unauthorized += 1,
            429 => {
                throttled += 1;
                let retry_after = &response.headers()["retry-after"];
                assert!(retry_after.to_str().unwrap().parse::<u64>().unwrap() >= 1);
                let body: Value = response.json().await.unwrap();
                assert_error(429, &body, 429, "RATE_LIMITED");
            }
            other => panic!("an unknown key got {other}"),
        }
    }
    assert!(throttled > 0, "{flood} unknown keys at once were all looked up");
    assert!(unauthorized >= 100, "the burst of lookups is kept ({unauthorized} answered 401)");

    // From the same address, in the middle of it: the cached key and a key never used before.
    let (status, body) = app.call(Method::GET, "/api/v1/agents", None).await;
    assert_eq!(status, 200, "{body}");
    let fresh = app.other_org_key().await;
    let (status, body) = send(app.client.get(app.url("/api/v1/agents")).bearer_auth(fresh)).await;
    assert_eq!(status, 200, "a valid key was refused for others' bad keys: {body}");
}

/// A key found unknown is remembered: asking again, any number of times, looks nothing up and
/// spends none of the address's lookups.
async fn repeating_an_unknown_key_costs_no_lookup(backend: Backend) {
    let app = spawn_with_timeouts(backend, |_| {}).await;
    let unknown = webhookd::domain::secrets::generate_api_key();
    for _ in 0..300 {
        let request = app.client.get(app.url("/api/v1/agents")).bearer_auth(&unknown);
        let (status, body) = send(request).await;
        assert_error(status, &body, 401, "UNAUTHORIZED");
    }
    let another = webhookd::domain::secrets::generate_api_key();
    let (status, body) = send(app.client.get(app.url("/api/v1/agents")).bearer_auth(another)).await;
    assert_error(status, &body, 401, "UNAUTHORIZED");
}

/// Values that overflowed the clock or destroyed data are refused at start, naming the bound.
#[test]
fn out_of_range_settings_are_refused_at_start_with_one_line() {
    for (flag, value, expected) in [
        ("--retry-schedule", "5s,99999999999999h", "maximum of 30days"),
        ("--retention", "0s", "minimum of 1h"),
        ("--retention", "99999999999999h", "maximum of 10years"),
        ("--retry-window", "0s", "minimum of 1m"),
        ("--shutdown-grace", "99999999999999h", "maximum of 1h"),
        ("--header-timeout", "0s", "minimum of 100ms"),
        ("--idle-timeout", "99999999999999h", "maximum of 1h"),
        ("--body-timeout", "0s", "minimum of 100ms"),
        ("--max-connections", "0", "1..=1000000"),
    ] {
        let output = webhookd().args(["serve", flag, value]).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{flag} {value}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(stderr.trim_end().lines().count(), 1, "{flag} {value}: {stderr}");
        assert!(stderr.starts_with("error:"), "{flag} {value}: {stderr}");
        assert!(stderr.contains(flag), "{flag} {value}: {stderr}");
        assert!(stderr.contains(expected), "{flag} {value}: {stderr}");
    }
}

/// With the common limit of 1024 descriptors, the default connection limit leaves half of them
/// to deliveries and the database, so idle sockets cannot exhaust them and stop accepting.
#[test]
fn the_default_connection_limit_is_half_the_descriptor_limit() {
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", dir.path().join("limit.db").display());
    let mut child = std::process::Command::new("sh")
        .args(["-c", "ulimit -n 1024 && exec \"$@\"", "sh", env!("CARGO_BIN_EXE_webhookd")])
        .args(["serve", "--listen", "127.0.0.1:0", "--database", &database, "--no-worker"])
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let (found, limit_line) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let line = stderr.lines().map_while(Result::ok).find(|l| l.contains("max_connections="));
        let _ = found.send(line);
    });
    let line = limit_line.recv_timeout(Duration::from_secs(30));
    let _ = child.kill();
    let _ = child.wait();
    let line = line.ok().flatten().expect("serve logs its connection limit");
    assert!(line.contains("max_connections=512"), "{line}");
}
