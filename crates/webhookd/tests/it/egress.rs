//! `--egress-proxy` and `--egress-ips` (SPEC §9): deliveries, endpoint tests and OAuth2 token
//! fetches through real proxies (`egress_proxies.rs`: tinyproxy, microsocks), destinations still
//! checked before a proxy is asked, bad settings refused at start, and the egress addresses shown
//! to customers.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use webhookd::domain::destination::{forbidden_reason, Destinations};
use webhookd::domain::egress::{EgressIps, EgressProxy};
use webhookd::domain::webhook::{
    CustomHeaders, EventTypes, MaxRetries, Name, Ordering, Timeout, WebhookUrl,
};
use webhookd::domain::{Authorization, EventCatalog, HttpMethod, WebhookSettings};
use webhookd::store::Webhook;

use crate::backend_tests;
use crate::egress_proxies::{ProxyProcess, PASSWORD, PROXY_SOURCE, USER};
use crate::harness::{Backend, TestApp};
use crate::process::{webhookd, ServeProcess};
use crate::receiver::{Received, Receiver};
use crate::tls_server::{TestCa, TlsServer};
use crate::token_server::{Client, TokenServer};
use crate::ui::{signed_in, Browser};

backend_tests!(
    deliveries_and_endpoint_tests_go_through_the_http_proxy_with_its_credentials,
    deliveries_go_through_a_socks5_proxy_with_its_credentials,
    egress_ips_are_shown_by_the_organization_api_the_dashboard_and_the_portal,
);

/// An app sending through `proxy` (private destinations allowed: the receivers are on loopback).
async fn proxied(backend: Backend, proxy: &str) -> TestApp {
    let proxy = EgressProxy::parse(proxy).unwrap();
    TestApp::spawn_with(backend, |c| c.egress_proxy = Some(proxy)).await
}

/// An agent and a webhook without retries to `url`; returns their ids.
async fn webhook_to(app: &TestApp, url: &str, fields: Value) -> (String, String) {
    let agent = app.create_agent().await;
    let mut body = json!({"webhook_url": url, "max_retries": 0});
    crate::harness::merge(&mut body, fields);
    let webhook = app.create_webhook(&agent, body).await;
    (agent, webhook["id"].as_str().unwrap().to_string())
}

/// Ingests one event for the agent and waits for its first log to end as `status`.
async fn deliver(app: &TestApp, agent: &str, webhook: &str, status: &str) -> Value {
    let accepted = app.ingest(agent, json!({"event": "call.completed", "data": {}})).await;
    let log = accepted["logs"][0]["log_id"].as_str().unwrap().to_string();
    app.wait_for_log(agent, webhook, &log, status).await
}

#[track_caller]
fn assert_came_through_the_proxy(received: &[Received]) {
    for request in received {
        assert_eq!(request.peer.ip(), PROXY_SOURCE, "{} bypassed the proxy", request.path);
        assert_eq!(request.header("proxy-authorization"), "", "credentials leaked onward");
    }
}

async fn deliveries_and_endpoint_tests_go_through_the_http_proxy_with_its_credentials(
    backend: Backend,
) {
    let Some(proxy) = ProxyProcess::tinyproxy() else { return };
    let app = proxied(backend, &proxy.url()).await;
    let receiver = Receiver::start().await;
    let (agent, webhook) = webhook_to(&app, &receiver.url("/hook"), json!({})).await;
    deliver(&app, &agent, &webhook, "success").await;
    let test = format!("/api/v1/agents/{agent}/webhooks/{webhook}/test");
    let (status, body) = app.call(Method::POST, &test, None).await;
    assert_eq!((status, &body["data"]["success"]), (200, &json!(true)), "{body}");

    let received = receiver.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(received.len(), 2);
    assert_eq!(received[1].json()["event"], "webhook.test");
    assert_came_through_the_proxy(&received);
    for request in &received {
        assert!(request.header("via").contains("tinyproxy"), "{:?}", request.headers);
    }
}

/// Without the credentials of its URL the proxy answers 407 itself: the answer is recorded on
/// the attempt and nothing reaches the endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_its_credentials_the_http_proxy_answers_407_and_nothing_arrives() {
    let Some(proxy) = ProxyProcess::tinyproxy() else { return };
    let app = proxied(Backend::Sqlite, &proxy.url_without_credentials()).await;
    let receiver = Receiver::start().await;
    let (agent, webhook) = webhook_to(&app, &receiver.url("/hook"), json!({})).await;
    let log = deliver(&app, &agent, &webhook, "failed").await;
    assert_eq!(log["http_status"], 407, "{log}");
    assert!(receiver.received().is_empty());
}

async fn deliveries_go_through_a_socks5_proxy_with_its_credentials(backend: Backend) {
    let Some(proxy) = ProxyProcess::microsocks() else { return };
    let app = proxied(backend, &proxy.url()).await;
    let receiver = Receiver::start().await;
    let (agent, webhook) = webhook_to(&app, &receiver.url("/hook"), json!({})).await;
    deliver(&app, &agent, &webhook, "success").await;
    assert_came_through_the_proxy(&receiver.received());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth2_token_fetches_go_through_the_proxy() {
    let Some(proxy) = ProxyProcess::tinyproxy() else { return };
    let app = proxied(Backend::Sqlite, &proxy.url()).await;
    let receiver = Receiver::start().await;
    const CLIENT: Client = Client { id: "crm", secret: "crm-secret", scope: None, audience: None };
    let tokens = TokenServer::start(&[CLIENT], 3600).await;
    let oauth2 = json!({
        "authorization_scheme": "oauth2", "oauth2_token_url": tokens.url(),
        "oauth2_client_id": CLIENT.id, "oauth2_client_secret": CLIENT.secret,
    });
    let (agent, webhook) = webhook_to(&app, &receiver.url("/hook"), oauth2).await;
    deliver(&app, &agent, &webhook, "success").await;
    let peers = tokens.peers();
    assert_eq!(peers.len(), 1, "{peers:?}");
    assert_eq!(peers[0].ip(), PROXY_SOURCE, "the token fetch bypassed the proxy");
    let received = receiver.received();
    assert!(received[0].header("authorization").starts_with("Bearer tok-crm-"));
    assert_came_through_the_proxy(&received);
}

/// A webhook's own client (mutual TLS) goes through the proxy too, by `CONNECT`, and presents
/// its certificate to the endpoint through the tunnel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_goes_through_the_http_proxy_by_connect() {
    let Some(proxy) = ProxyProcess::tinyproxy() else { return };
    let app = proxied(Backend::Sqlite, &proxy.url()).await;
    let ca = TestCa::new("webhookd test CA");
    let server = TlsServer::start(&ca.server(), &ca).await;
    let client = ca.client("webhookd delivery");
    let tls = json!({
        "tls_ca_cert": ca.cert_pem, "tls_client_cert": client.cert_pem,
        "tls_client_key": client.key_pem,
    });
    let (agent, webhook) = webhook_to(&app, &server.url(), tls).await;
    deliver(&app, &agent, &webhook, "success").await;
    assert_eq!((server.answered(), server.refused()), (1, 0));
    let peers = server.peers();
    assert!(peers.iter().all(|peer| peer.ip() == PROXY_SOURCE), "bypassed the proxy: {peers:?}");
}

/// With the guard on, destinations are resolved and refused by webhookd before a proxy is
/// asked (the proxy itself, an operator's setting, is on loopback). Were they not, the proxy
/// would carry the request to the receiver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_destinations_are_refused_before_the_proxy_is_asked() {
    let proxies = [ProxyProcess::tinyproxy(), ProxyProcess::microsocks()];
    for proxy in proxies.iter().flatten() {
        let proxy = EgressProxy::parse(&proxy.url()).unwrap();
        let app = TestApp::spawn_with(Backend::Sqlite, |c| {
            c.allow_private_targets = false;
            c.egress_proxy = Some(proxy.clone());
        })
        .await;
        let receiver = Receiver::start().await;
        let port = receiver.addr.port();
        let mut urls = vec![
            format!("http://127.0.0.1:{port}/literal"),
            format!("http://localhost:{port}/loopback-name"),
        ];
        // A name no spelling rule knows, which only its resolution shows to be loopback or
        // private: the machine's own name (127.0.1.1 on Debian, the container's address in
        // Docker), where it resolves so.
        let hostname = local_name_of_a_forbidden_address().await;
        urls.extend(hostname.iter().map(|name| format!("http://{name}:{port}/resolved")));
        let agent = app.create_agent().await;
        for url in &urls {
            let saved = save_unchecked(&app, &agent, url).await;
            let log = deliver(&app, &agent, &saved.id.to_string(), "failed").await;
            let error = log["error"].as_str().unwrap();
            assert!(error.starts_with("destination refused"), "{proxy}, {url}: {error}");
            if url.ends_with("/resolved") {
                assert!(error.contains("resolves to"), "{proxy}, {url}: {error}");
            }
            assert_eq!(log["http_status"], Value::Null);
            app.store.delete_webhook(&saved).await.unwrap();
        }
        assert!(receiver.received().is_empty(), "{proxy} carried a refused request");
    }
}

/// The machine's host name when every address it resolves to is forbidden.
async fn local_name_of_a_forbidden_address() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?.trim().to_string();
    let found: Vec<_> = tokio::net::lookup_host((name.as_str(), 0)).await.ok()?.collect();
    let forbidden = !found.is_empty() && found.iter().all(|a| forbidden_reason(a.ip()).is_some());
    (forbidden && !name.contains("localhost")).then_some(name)
}

/// A webhook to `url` saved as if the guard had been off when it was created.
async fn save_unchecked(app: &TestApp, agent: &str, url: &str) -> Webhook {
    let settings = WebhookSettings {
        name: Name::parse("sneaky").unwrap(),
        url: WebhookUrl::parse(url, &Destinations::new(true, [])).unwrap(),
        events: EventTypes::parse(&["call.completed".into()], &EventCatalog::default()).unwrap(),
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
    let org = uuid::Uuid::parse_str(&app.org_id).unwrap();
    let agent = uuid::Uuid::parse_str(agent).unwrap();
    app.store.create_webhook(org, agent, settings, "whsec_AAAA".into()).await.unwrap()
}

/// A bad `--egress-proxy` (in any spelling, from the flag or the environment) or `--egress-ips`
/// stops `serve` with one line that names the setting and the shape to give, and never repeats
/// the proxy's password.
#[test]
fn a_bad_egress_proxy_or_egress_ips_stops_serve_with_one_line() {
    let cases = [
        ("--egress-proxy", "ftp://alice:s3cret@proxy.example.com:21", "has the scheme \"ftp\""),
        ("--egress-proxy", "proxy.example.com:3128", "socks5://HOST:PORT"),
        ("--egress-proxy", "http://alice:s3cret@proxy:3128/path", "path"),
        ("--egress-ips", "203.0.113.7,proxy.example.com", "\"proxy.example.com\" is not an IP"),
        ("--egress-ips", "203.0.113.7/24", "the block is 203.0.113.0/24"),
    ];
    for (flag, value, expected) in cases {
        let output = webhookd().args(["serve", flag, value]).output().unwrap();
        assert_one_line_refusal(output, flag, expected);
    }
    let from_environment = webhookd()
        .arg("serve")
        .env("WEBHOOKD_EGRESS_PROXY", "socks4://alice:s3cret@proxy.example.com:1080")
        .output()
        .unwrap();
    assert_one_line_refusal(from_environment, "--egress-proxy", "has the scheme \"socks4\"");
}

#[track_caller]
fn assert_one_line_refusal(output: std::process::Output, flag: &str, expected: &str) {
    assert_eq!(output.status.code(), Some(2), "{flag}: {output:?}");
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.trim_end().lines().count(), 1, "{flag}: {stderr}");
    assert!(stderr.starts_with("error:"), "{stderr}");
    assert!(stderr.contains(flag) && stderr.contains(expected), "{expected}: {stderr}");
    assert!(!stderr.contains(PASSWORD) && !stderr.contains(USER), "{stderr}");
}

#[test]
fn serve_logs_its_egress_proxy_without_the_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", dir.path().join("proxy.db").display());
    let proxy = format!("http://{USER}:{PASSWORD}@127.0.0.1:9");
    let serve = ServeProcess::start(&database, &["--egress-proxy", &proxy, "--no-worker"]);
    let log = String::from_utf8(serve.stderr_log().into_inner()).unwrap();
    let line = log.lines().find(|line| line.contains("egress proxy")).expect("logged");
    assert!(line.contains("http://127.0.0.1:9"), "{line}");
    assert!(!log.contains(PASSWORD) && !log.contains(USER), "{log}");
}

async fn egress_ips_are_shown_by_the_organization_api_the_dashboard_and_the_portal(
    backend: Backend,
) {
    let ips = EgressIps::parse("203.0.113.7, 198.51.100.0/28").unwrap();
    let app = TestApp::spawn_with(backend, |c| c.egress_ips = ips).await;
    let (status, body) = app.call(Method::GET, "/api/v1/organization", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["egress_ips"], json!(["203.0.113.7", "198.51.100.0/28"]));

    let note = "<code>203.0.113.7</code>, <code>198.51.100.0/28</code>";
    let dashboard = signed_in(&app).await;
    dashboard.get("/ui/agents").await.assert_contains(note);
    let agent = app.create_agent().await;
    dashboard.get(&format!("/ui/agents/{agent}")).await.assert_contains(note);
    let (_, link) = app.call(Method::POST, &format!("/api/v1/agents/{agent}/portal"), None).await;
    let link = link["data"]["url"].as_str().unwrap();
    let portal = Browser::new(&app);
    portal.get(link.trim_start_matches(&format!("http://{}", app.addr))).await;
    let page = portal.get(&format!("/ui/agents/{agent}")).await;
    page.assert_contains("Customer portal");
    page.assert_contains(note);

    // Unset: an empty list, and no note.
    let plain = TestApp::spawn(backend).await;
    let (_, body) = plain.call(Method::GET, "/api/v1/organization", None).await;
    assert_eq!(body["data"]["egress_ips"], json!([]));
    let page = signed_in(&plain).await.get("/ui/agents").await;
    assert!(!page.body.contains("egress-ips"), "{}", page.body);
}
