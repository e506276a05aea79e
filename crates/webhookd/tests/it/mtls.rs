//! Mutual TLS (SPEC §9) against a local HTTPS server that requires a client certificate signed
//! by a test CA: accepted with it, refused without it, its private CA trusted only through
//! `tls_ca_cert`; the fields validated by name, read back without the key, sealed at rest.

use reqwest::Method;
use serde_json::{json, Value};

use crate::backend_tests;
use crate::harness::{assert_error, Backend, TestApp};
use crate::tls_server::{TestCa, TlsServer};

backend_tests!(
    a_webhook_with_the_right_client_certificate_is_accepted,
    a_webhook_without_a_client_certificate_is_refused_by_the_server,
    a_private_ca_server_is_trusted_only_through_tls_ca_cert,
    bad_pem_and_a_key_that_does_not_match_are_422s_naming_the_field,
    the_certificate_subject_and_expiry_are_read_back_and_the_key_is_sealed_never_read_back,
    the_dashboard_warns_of_a_client_certificate_expiring_within_14_days,
);

/// An app, a CA, and a server of that CA requiring client certificates of that CA.
async fn setup(backend: Backend) -> (TestApp, TestCa, TlsServer, String) {
    let app = TestApp::spawn(backend).await;
    let ca = TestCa::new("webhookd test CA");
    let server = TlsServer::start(&ca.server(), &ca).await;
    let agent = app.create_agent().await;
    (app, ca, server, agent)
}

/// Sends one event to `webhook` and waits for its log to end `success` or `failed`.
async fn deliver(app: &TestApp, agent: &str, webhook: &Value) -> Value {
    let webhook = webhook["id"].as_str().unwrap();
    let accepted = app.ingest(agent, json!({"event": "call.completed", "data": {}})).await;
    let log = accepted["logs"][0]["log_id"].as_str().unwrap();
    let path = format!("/api/v1/agents/{agent}/webhooks/{webhook}/logs/{log}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (_, body) = app.call(Method::GET, &path, None).await;
        if body["data"]["status"] == "success" || body["data"]["status"] == "failed" {
            return body["data"].clone();
        }
        assert!(std::time::Instant::now() < deadline, "the log never ended: {body}");
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

async fn a_webhook_with_the_right_client_certificate_is_accepted(backend: Backend) {
    let (app, ca, server, agent) = setup(backend).await;
    let client = ca.client("webhookd delivery");
    let webhook = app
        .create_webhook(
            &agent,
            json!({
                "webhook_url": server.url(), "tls_ca_cert": ca.cert_pem,
                "tls_client_cert": client.cert_pem, "tls_client_key": client.key_pem,
            }),
        )
        .await;
    for _ in 0..3 {
        let log = deliver(&app, &agent, &webhook).await;
        assert_eq!(log["status"], "success", "{log}");
    }
    assert_eq!((server.answered(), server.refused()), (3, 0));
    // The webhook's client (its rustls configuration and connection pool) is built once and
    // reused: the later attempts ride the first one's connection, no new handshake.
    assert_eq!(server.peers().len(), 1, "connections: {:?}", server.peers());
}

async fn a_webhook_without_a_client_certificate_is_refused_by_the_server(backend: Backend) {
    let (app, ca, server, agent) = setup(backend).await;
    let webhook = app
        .create_webhook(
            &agent,
            json!({"webhook_url": server.url(), "tls_ca_cert": ca.cert_pem, "max_retries": 0}),
        )
        .await;
    let log = deliver(&app, &agent, &webhook).await;
    assert_eq!(log["status"], "failed", "{log}");
    assert_eq!(log["http_status"], Value::Null);
    assert_eq!(server.answered(), 0);
    // A certificate of another CA is refused alike.
    let stranger = TestCa::new("another CA").client("stranger");
    let path = format!("/api/v1/agents/{agent}/webhooks/{}", webhook["id"].as_str().unwrap());
    let fields = json!({"tls_client_cert": stranger.cert_pem, "tls_client_key": stranger.key_pem});
    let (status, body) = app.call(Method::PUT, &path, Some(fields)).await;
    assert_eq!(status, 200, "{body}");
    let log = deliver(&app, &agent, &webhook).await;
    assert_eq!(log["status"], "failed", "{log}");
    assert_eq!(server.answered(), 0);
}

async fn a_private_ca_server_is_trusted_only_through_tls_ca_cert(backend: Backend) {
    let (app, ca, server, agent) = setup(backend).await;
    let client = ca.client("webhookd delivery");
    let webhook = app
        .create_webhook(
            &agent,
            json!({
                "webhook_url": server.url(), "max_retries": 0,
                "tls_client_cert": client.cert_pem, "tls_client_key": client.key_pem,
            }),
        )
        .await;
    let log = deliver(&app, &agent, &webhook).await;
    assert_eq!(log["status"], "failed", "{log}");
    let error = log["error"].as_str().unwrap();
    assert!(error.contains("UnknownIssuer") || error.contains("certificate"), "{error}");
    assert_eq!(server.answered(), 0);
    // The same webhook trusting the CA: the settings changed, so a new client is built.
    let path = format!("/api/v1/agents/{agent}/webhooks/{}", webhook["id"].as_str().unwrap());
    let (status, body) =
        app.call(Method::PUT, &path, Some(json!({"tls_ca_cert": ca.cert_pem}))).await;
    assert_eq!(status, 200, "{body}");
    let log = deliver(&app, &agent, &webhook).await;
    assert_eq!(log["status"], "success", "{log}");
    assert_eq!(server.answered(), 1);
}

async fn bad_pem_and_a_key_that_does_not_match_are_422s_naming_the_field(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let agent = app.create_agent().await;
    let ca = TestCa::new("webhookd test CA");
    let (one, other) = (ca.client("one"), ca.client("other"));
    let path = format!("/api/v1/agents/{agent}/webhooks");
    let base = json!({"name": "ERP", "webhook_url": "https://example.com/h", "events": ["call.completed"]});
    let cases = [
        (
            json!({"tls_client_cert": one.cert_pem, "tls_client_key": other.key_pem}),
            "tls_client_key",
            "does not match",
        ),
        (
            json!({"tls_client_cert": "not a certificate", "tls_client_key": one.key_pem}),
            "tls_client_cert",
            "PEM",
        ),
        (
            json!({"tls_client_cert": one.cert_pem, "tls_client_key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}),
            "tls_client_key",
            "",
        ),
        (json!({"tls_client_cert": one.cert_pem}), "tls_client_key", "is required"),
        (json!({"tls_client_key": one.key_pem}), "tls_client_cert", "is required"),
        (
            json!({"tls_ca_cert": "-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n"}),
            "tls_ca_cert",
            "",
        ),
    ];
    for (fields, field, says) in cases {
        let mut body = base.clone();
        crate::harness::merge(&mut body, fields);
        let (status, refused) = app.call(Method::POST, &path, Some(body)).await;
        assert_error(status, &refused, 422, "VALIDATION_FAILED");
        let messages = refused["errors"][field].to_string();
        assert!(messages.contains(says), "{field}: {refused}");
        assert_eq!(refused["errors"].as_object().unwrap().len(), 1, "{refused}");
    }
}

async fn the_certificate_subject_and_expiry_are_read_back_and_the_key_is_sealed_never_read_back(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    let agent = app.create_agent().await;
    let ca = TestCa::new("webhookd test CA");
    let client = ca.client("acme-webhooks");
    let created = app
        .create_webhook(
            &agent,
            json!({"tls_client_cert": client.cert_pem, "tls_client_key": client.key_pem}),
        )
        .await;
    assert_eq!(created["tls_client_cert_subject"], "CN=acme-webhooks");
    // rcgen's default notAfter is 4096-01-01.
    assert_eq!(created["tls_client_cert_expires_at"], "4096-01-01T00:00:00.000Z");
    let path = format!("/api/v1/agents/{agent}/webhooks/{}", created["id"].as_str().unwrap());
    let (_, read) = app.call(Method::GET, &path, None).await;
    assert!(!read.to_string().contains("PRIVATE KEY"), "{read}");
    assert_eq!(read["data"]["tls_client_cert_subject"], "CN=acme-webhooks");
    let key_line = client.key_pem.lines().nth(1).unwrap().to_string();
    for value in crate::security::raw_column(&app, "SELECT tls_config FROM webhooks").await {
        assert!(value.starts_with("enc:v1:") && !value.contains(&key_line), "{value:?}");
    }
    // null removes the certificate and its key.
    let (status, body) = app.call(Method::PUT, &path, Some(json!({"tls_client_cert": null}))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["tls_client_cert_subject"], Value::Null);
}

async fn the_dashboard_warns_of_a_client_certificate_expiring_within_14_days(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let agent = app.create_agent().await;
    let ca = TestCa::new("webhookd test CA");
    let soon = time::OffsetDateTime::now_utc() + time::Duration::days(10);
    let expiring = ca.client_until("expiring-soon", Some(soon));
    let lasting = ca.client("lasting");
    for (name, client) in [("Expiring", &expiring), ("Lasting", &lasting)] {
        app.create_webhook(
            &agent,
            json!({"name": name, "tls_client_cert": client.cert_pem, "tls_client_key": client.key_pem}),
        )
        .await;
    }
    let browser = crate::ui::signed_in(&app).await;
    let page = browser.get(&format!("/ui/agents/{agent}")).await;
    page.assert_contains("Client certificate CN=expiring-soon expires at");
    assert!(!page.body.contains("CN=lasting"), "only the expiring certificate is flagged");
}
