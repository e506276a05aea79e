//! Hostile input and SSRF: private destinations refused in every spelling, at the API and at
//! delivery. Only loopback addresses are ever contacted.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use webhookd::domain::destination::Destinations;
use webhookd::domain::webhook::{
    CustomHeaders, EventTypes, MaxRetries, Name, Ordering, Timeout, WebhookUrl,
};
use webhookd::domain::{Authorization, EventCatalog, HttpMethod, WebhookSettings};

use crate::backend_tests;
use crate::harness::{assert_error, send, Backend, TestApp};
use crate::receiver::Receiver;

backend_tests!(
    private_destinations_are_refused_in_every_spelling,
    names_resolving_to_private_addresses_fail_the_delivery,
    each_api_key_is_rate_limited_with_retry_after,
    secrets_and_credentials_are_sealed_at_rest,
);

const PRIVATE_URLS: [&str; 10] = [
    "http://127.0.0.1:9000/",
    "http://2130706433/",
    "http://0x7f.1/",
    "http://127.1/",
    "http://[::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://169.254.169.254/latest/meta-data/",
    "http://10.0.0.1/",
    "http://192.168.1.10/",
    "http://localhost:9000/",
];

async fn guarded(backend: Backend) -> TestApp {
    TestApp::spawn_with(backend, |c| c.allow_private_targets = false).await
}

async fn private_destinations_are_refused_in_every_spelling(backend: Backend) {
    let app = guarded(backend).await;
    let agent = app.create_agent().await;
    let webhook =
        app.create_webhook(&agent, json!({"webhook_url": "https://example.com/hook"})).await;
    let webhook_path =
        format!("/api/v1/agents/{agent}/webhooks/{}", webhook["id"].as_str().unwrap());
    for url in PRIVATE_URLS {
        let body = json!({"name": "x", "webhook_url": url, "events": ["call.completed"]});
        let (status, response) =
            app.call(Method::POST, &format!("/api/v1/agents/{agent}/webhooks"), Some(body)).await;
        assert_error(status, &response, 422, "VALIDATION_FAILED");
        assert!(
            response["errors"]["webhook_url"][0].as_str().unwrap().contains("private or loopback"),
            "{url}: {response}"
        );

        let (status, response) =
            app.call(Method::PUT, &webhook_path, Some(json!({"webhook_url": url}))).await;
        assert_error(status, &response, 422, "VALIDATION_FAILED");

        let event = json!({"event": "call.completed", "data": {}, "webhook_url": url});
        let (status, response) =
            app.call(Method::POST, &format!("/api/v1/agents/{agent}/events"), Some(event)).await;
        assert_error(status, &response, 422, "VALIDATION_FAILED");

        let create = json!({"call_ids": ["c_1"], "webhook_url": url});
        let request = app
            .client
            .post(app.url("/v1/postcall/webhooks/create"))
            .header("authorization", &app.api_key)
            .json(&create);
        let (status, response) = send(request).await;
        assert_eq!(status, 400, "{url}: {response}");
    }
    let (_, unchanged) = app.call(Method::GET, &webhook_path, None).await;
    assert_eq!(unchanged["data"]["webhook_url"], "https://example.com/hook");
}

/// A webhook saved with a name (or saved before the guard was on) that turns out to point at
/// loopback: the attempt fails with a clear error and nothing reaches the address.
async fn names_resolving_to_private_addresses_fail_the_delivery(backend: Backend) {
    let app = guarded(backend).await;
    let receiver = Receiver::start().await;
    let agent = app.create_agent().await;
    let org_id = uuid::Uuid::parse_str(&app.org_id).unwrap();
    let agent_id = uuid::Uuid::parse_str(&agent).unwrap();
    let port = receiver.addr.port();
    for url in
        [format!("http://localhost:{port}/by-name"), format!("http://127.0.0.1:{port}/literal")]
    {
        let settings = WebhookSettings {
            name: Name::parse("sneaky").unwrap(),
            // Saved as if the guard had been off when it was created.
            url: WebhookUrl::parse(&url, &Destinations::new(true, [])).unwrap(),
            events: EventTypes::parse(&["call.completed".into()], &EventCatalog::default())
                .unwrap(),
            timeout: Timeout::parse(5).unwrap(),
            max_retries: MaxRetries::parse(0).unwrap(),
            enabled: true,
            http_method: HttpMethod::Post,
            authorization: Authorization::None,
            custom_headers: CustomHeaders::default(),
            rate_limit: None,
            max_concurrency: None,
            ordering: Ordering::None,
            filter: None,
            tls: Default::default(),
        };
        let webhook = app
            .store
            .create_webhook(org_id, agent_id, settings, "whsec_AAAA".into())
            .await
            .unwrap();
        let accepted = app.ingest(&agent, json!({"event": "call.completed", "data": {}})).await;
        let log = accepted["logs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["url"] == Value::String(url.clone()))
            .unwrap()
            .clone();
        let detail = app
            .wait_for_log(
                &agent,
                &webhook.id.to_string(),
                log["log_id"].as_str().unwrap(),
                "failed",
            )
            .await;
        let error = detail["error"].as_str().unwrap();
        assert!(error.contains("destination refused"), "{url}: {error}");
        assert_eq!(detail["http_status"], Value::Null);
        app.store.delete_webhook(&webhook).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(receiver.received().is_empty(), "a forbidden address was contacted");
}

async fn each_api_key_is_rate_limited_with_retry_after(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.rate_limit = 5).await;
    let mut limited = None;
    for _ in 0..20 {
        let response = app.request(Method::GET, "/api/v1/agents").send().await.unwrap();
        if response.status() == 429 {
            limited = Some(response);
            break;
        }
    }
    let response = limited.expect("20 requests at once were not limited at 5 per second");
    let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    let body: Value = response.json().await.unwrap();
    assert_error(429, &body, 429, "RATE_LIMITED");
    // Another key has its own budget.
    let other = app.other_org_key().await;
    let (status, _) = send(app.client.get(app.url("/api/v1/agents")).bearer_auth(other)).await;
    assert_eq!(status, 200);
    // The budget refills.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, _) = app.call(Method::GET, "/api/v1/agents", None).await;
    assert_eq!(status, 200);
}

/// The raw stored values of a column, read past webhookd.
pub(crate) async fn raw_column(app: &TestApp, sql: &str) -> Vec<String> {
    let db = app.db();
    match db.backend {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
            let values = sqlx::query_scalar(sql).fetch_all(&pool).await.unwrap();
            pool.close().await;
            values
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
            let values = sqlx::query_scalar(sql).fetch_all(&pool).await.unwrap();
            pool.close().await;
            values
        }
    }
}

async fn secrets_and_credentials_are_sealed_at_rest(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let agent = app.create_agent().await;
    let webhook = app
        .create_webhook(&agent, json!({"webhook_secret": "my-known-secret", "authorization_scheme": "bearer", "auth_token": "tok-known-123"}))
        .await;
    let path = format!("/api/v1/agents/{agent}/webhooks/{}", webhook["id"].as_str().unwrap());
    app.call(Method::POST, &format!("{path}/secret/rotate"), None).await;
    for sql in [
        "SELECT signing_secret FROM webhooks",
        "SELECT previous_signing_secret FROM webhooks",
        "SELECT auth_config FROM webhooks",
        "SELECT signing_secret FROM organizations",
    ] {
        for value in raw_column(&app, sql).await {
            assert!(value.starts_with("enc:v1:"), "{sql} stored {value:?}");
            assert!(!value.contains("known"), "{sql} stored {value:?}");
        }
    }
    let (_, secret) = app.call(Method::GET, &format!("{path}/secret"), None).await;
    assert!(secret["data"]["signing_secret"].as_str().unwrap().starts_with("whsec_"));
    if backend == Backend::Sqlite {
        let file = app.db().url.trim_start_matches("sqlite://").to_string() + ".key";
        let metadata = std::fs::metadata(&file).expect("the key file was made beside the database");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(metadata.permissions().mode() & 0o777, 0o600);
    }
}

/// With debug logging on, a delivery's payload, the webhook's secret and credentials and the API
/// key appear in no log line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_or_payload_reaches_the_logs() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", dir.path().join("logs.db").display());
    let key = crate::process::create_org(&database);
    let mut node = crate::process::ServeProcess::start_with_env(
        &database,
        &["--allow-private-targets", "--log-format", "json"],
        &[("RUST_LOG", "debug")],
    );
    let receiver = Receiver::start().await;
    let client = reqwest::Client::new();
    let post =
        |path: &str, body: Value| client.post(node.url(path)).bearer_auth(&key).json(&body).send();
    let agent: Value =
        post("/api/v1/agents", json!({"name": "a"})).await.unwrap().json().await.unwrap();
    let agent = agent["data"]["id"].as_str().unwrap().to_string();
    let hook = json!({"name": "w", "webhook_url": receiver.url("/"), "events": ["call.completed"],
        "webhook_secret": "SECRETMARKER-chosen", "authorization_scheme": "bearer", "auth_token": "TOKENMARKER"});
    post(&format!("/api/v1/agents/{agent}/webhooks"), hook).await.unwrap();
    post(
        &format!("/api/v1/agents/{agent}/events"),
        json!({"event": "call.completed", "data": {"note": "PAYLOADMARKER"}}),
    )
    .await
    .unwrap();
    receiver.wait_for(1, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    node.kill();
    let mut logs = String::new();
    node.stderr_log().read_to_string(&mut logs).unwrap();
    assert!(logs.contains("attempt finished"), "debug logging was on: {logs}");
    for marker in ["SECRETMARKER", "TOKENMARKER", "PAYLOADMARKER", key.as_str()] {
        assert!(!logs.contains(marker), "{marker} reached the logs");
    }
}
