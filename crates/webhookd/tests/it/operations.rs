//! What an operator sees: metrics, readiness, JSON logs, `listen`, the configuration file,
//! retention.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;

use crate::backend_tests;
use crate::harness::{send, Backend, TestApp};
use crate::process::webhookd;
use crate::receiver::Receiver;

backend_tests!(
    metrics_move_with_ingestion_and_delivery,
    retention_deletes_expired_events_with_their_logs
);

/// The sum of every sample of `name` whose labels include all of `labels`.
fn metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| line.split(['{', ' ']).next() == Some(name))
        .filter(|line| labels.iter().all(|label| line.contains(label)))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn scrape(app: &TestApp) -> String {
    let response = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    response.text().await.unwrap()
}

async fn metrics_move_with_ingestion_and_delivery(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let receiver = Receiver::start().await;
    let agent = app.create_agent().await;
    let webhook = app.create_webhook(&agent, json!({"webhook_url": receiver.url("/")})).await;
    let before = scrape(&app).await;
    let accepted = app.ingest(&agent, json!({"event": "call.completed", "data": {}})).await;
    let log_id = accepted["logs"][0]["log_id"].as_str().unwrap();
    app.wait_for_log(&agent, webhook["id"].as_str().unwrap(), log_id, "success").await;
    let after = scrape(&app).await;
    let moved =
        |name: &str, labels: &[&str]| metric(&after, name, labels) - metric(&before, name, labels);
    assert!(moved("webhookd_events_ingested_total", &[]) >= 1.0, "{after}");
    assert!(
        moved("webhookd_attempts_total", &["outcome=\"success\"", "status_class=\"2xx\""]) >= 1.0
    );
    assert!(moved("webhookd_delivery_latency_seconds_count", &[]) >= 1.0);
    assert!(moved("webhookd_attempt_duration_seconds_count", &[]) >= 1.0);
    assert!(
        moved(
            "webhookd_http_requests_total",
            &["route=\"/api/v1/agents/{agent_id}/events\"", "status=\"202\""]
        ) >= 1.0
    );
    assert!(after.contains("webhookd_attempts_in_flight"));
    // No id ever becomes a label.
    assert!(!after.contains(&agent) && !after.contains(log_id));
}

async fn retention_deletes_expired_events_with_their_logs(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.retention = Duration::from_secs(2)).await;
    let receiver = Receiver::start().await;
    let agent = app.create_agent().await;
    let webhook = app.create_webhook(&agent, json!({"webhook_url": receiver.url("/")})).await;
    let webhook_id = webhook["id"].as_str().unwrap();
    let accepted = app.ingest(&agent, json!({"event": "call.completed", "data": {}})).await;
    let log_id = accepted["logs"][0]["log_id"].as_str().unwrap();
    app.wait_for_log(&agent, webhook_id, log_id, "success").await;
    let before = scrape(&app).await;
    if backend == Backend::Postgres {
        // PostgreSQL drops whole days: the event goes once its day has passed the retention.
        let event = accepted["event_id"].as_str().unwrap().parse().unwrap();
        crate::partitions::age_events(&app.db().url, &[event], 2).await;
    }
    let path = format!("/api/v1/agents/{agent}/webhooks/{webhook_id}/logs/{log_id}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, _) = app.call(Method::GET, &path, None).await;
        if status == 404 {
            break;
        }
        assert!(Instant::now() < deadline, "the expired log was never deleted");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let after = scrape(&app).await;
    let deleted = |table: &str| {
        let label = format!("table=\"{table}\"");
        metric(&after, "webhookd_retention_deleted_total", &[&label])
            - metric(&before, "webhookd_retention_deleted_total", &[&label])
    };
    assert!(
        deleted("events") >= 1.0 && deleted("delivery_logs") >= 1.0 && deleted("attempts") >= 1.0,
        "{after}"
    );
    // The webhook and agent stay.
    let (status, _) =
        app.call(Method::GET, &format!("/api/v1/agents/{agent}/webhooks/{webhook_id}"), None).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn readiness_and_liveness_answer_on_a_running_node() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (status, body) = send(app.client.get(app.url("/readyz"))).await;
    assert_eq!((status, body), (200, json!({"status": "ready"})));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_log_lines_parse() {
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", dir.path().join("logs.db").display());
    let mut child = webhookd()
        .args(["--log-format", "json", "serve", "--listen", "127.0.0.1:0", "--database", &database])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let mut parsed = 0;
    for line in stderr.lines().map_while(Result::ok) {
        let value: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        assert!(value["level"].is_string() && value["timestamp"].is_string(), "{line}");
        parsed += 1;
        if value["message"] == "webhookd listening" {
            assert!(value["addr"].is_string(), "{line}");
            break;
        }
    }
    assert!(parsed >= 1);
    let _ = child.kill();
    let _ = child.wait();
}

/// Starts `webhookd listen` and returns it with the URL it printed.
fn start_listen(secret: &str) -> (std::process::Child, String, std::sync::mpsc::Receiver<String>) {
    let mut child = webhookd()
        .args(["listen", "--port", "0", "--secret", secret])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let (lines_tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let first = lines.recv_timeout(Duration::from_secs(10)).unwrap();
    let url = first.split_whitespace().find(|w| w.starts_with("http://")).unwrap().to_string();
    (child, url, lines)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_prints_each_webhook_and_whether_its_signature_verifies() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let agent = app.create_agent().await;
    for (wrong, expected) in [(false, "signature: verified"), (true, "signature: INVALID")] {
        let webhook =
            app.create_webhook(&agent, json!({"webhook_url": "http://127.0.0.1:9/"})).await;
        let secret = if wrong {
            "whsec_d3Jvbmcgc2VjcmV0".to_string()
        } else {
            webhook["signing_secret"].as_str().unwrap().to_string()
        };
        let (mut child, url, lines) = start_listen(&secret);
        let path = format!("/api/v1/agents/{agent}/webhooks/{}", webhook["id"].as_str().unwrap());
        app.call(
            Method::PUT,
            &path,
            Some(json!({"webhook_url": url, "events": ["call.transferred"]})),
        )
        .await;
        let accepted = app
            .ingest(&agent, json!({"event": "call.transferred", "data": {"to": "+15550100"}}))
            .await;
        let summary = lines.recv_timeout(Duration::from_secs(10)).unwrap();
        let event_id = accepted["event_id"].as_str().unwrap();
        assert!(summary.contains(&format!("webhook-id={event_id}")), "{summary}");
        assert!(summary.contains("event=call.transferred"), "{summary}");
        assert!(summary.contains("size=18B"), "{summary}");
        assert!(summary.ends_with(expected), "{summary}");
        let body: Vec<String> =
            (0..3).map(|_| lines.recv_timeout(Duration::from_secs(5)).unwrap()).collect();
        assert_eq!(body, ["{", "  \"to\": \"+15550100\"", "}"]);
        let _ = child.kill();
        let _ = child.wait();
        app.call(Method::PATCH, &format!("{path}/toggle"), None).await;
    }
}

#[test]
fn the_configuration_file_applies_and_flags_and_environment_override_it() {
    let dir = tempfile::tempdir().unwrap();
    let from_file = dir.path().join("from-file.db");
    let from_env = dir.path().join("from-env.db");
    let config = dir.path().join("webhookd.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndatabase = \"sqlite://{}\"\nretry-schedule = \"1s,2s\"\n",
            from_file.display()
        ),
    )
    .unwrap();

    let output =
        webhookd().args(["migrate", "--config", config.to_str().unwrap()]).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(from_file.exists(), "the file's database was used");

    let output = webhookd()
        .args(["migrate", "--config", config.to_str().unwrap()])
        .env("WEBHOOKD_DATABASE", format!("sqlite://{}", from_env.display()))
        .output()
        .unwrap();
    assert!(output.status.success());
    assert!(from_env.exists(), "the environment overrides the file");

    let from_flag = dir.path().join("from-flag.db");
    let output = webhookd()
        .args([
            "migrate",
            "--config",
            config.to_str().unwrap(),
            "--database",
            &format!("sqlite://{}", from_flag.display()),
        ])
        .output()
        .unwrap();
    assert!(output.status.success());
    assert!(from_flag.exists(), "a flag overrides the file");

    std::fs::write(&config, "colour = \"blue\"\n").unwrap();
    let output = webhookd().args(["serve", "--config", config.to_str().unwrap()]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("unknown setting \"colour\""), "{stderr}");
    std::fs::write(&config, "listen = [").unwrap();
    let output = webhookd().args(["serve", "--config", config.to_str().unwrap()]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
}

/// The example file documents every `serve` flag, and it parses as a valid configuration.
#[test]
fn the_example_configuration_documents_every_serve_flag() {
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../webhookd.example.toml"
    ))
    .unwrap();
    let help =
        String::from_utf8(webhookd().args(["serve", "--help"]).output().unwrap().stdout).unwrap();
    let flags: Vec<String> = help
        .split_whitespace()
        .filter_map(|word| word.strip_prefix("--"))
        .map(|flag| flag.trim_end_matches([',', '=']).split('<').next().unwrap().replace('-', "_"))
        .filter(|flag| !["help", "version", "config"].contains(&flag.as_str()) && !flag.is_empty())
        .collect();
    assert!(flags.len() >= 12, "{flags:?}");
    for flag in flags {
        assert!(example.contains(&format!("# {flag} =")), "webhookd.example.toml lacks {flag}");
        assert!(
            webhookd::cli::FILE_SETTINGS.contains(&flag.as_str()),
            "{flag} cannot be set in a file"
        );
    }
    let uncommented: String = example
        .lines()
        .map(|l| l.strip_prefix("# ").filter(|l| l.contains(" = ")).unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("all.toml");
    std::fs::write(&config, uncommented.replace("no_api = false", "")).unwrap();
    let output = webhookd()
        .args([
            "migrate",
            "--config",
            config.to_str().unwrap(),
            "--database",
            &format!("sqlite://{}", dir.path().join("x.db").display()),
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}
