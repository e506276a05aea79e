//! `authorization_scheme: "oauth2"` (SPEC §9) against a real token endpoint: the grant's
//! request, caching until expiry, one fetch for many waiting attempts, the 401 refresh, failing
//! endpoints, validation, sealing, and tokens kept apart per webhook.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use crate::backend_tests;
use crate::harness::{assert_error, Backend, TestApp};
use crate::receiver::{Receiver, Reply};
use crate::token_server::{Client, TokenServer};

backend_tests!(
    a_token_is_fetched_with_basic_credentials_scope_and_audience_and_reused_until_it_expires,
    many_attempts_waiting_for_a_token_cause_one_fetch,
    a_token_about_to_expire_is_fetched_again,
    a_401_from_the_endpoint_fetches_a_new_token_once_and_sends_again,
    a_failing_token_endpoint_fails_the_attempt_with_an_oauth2_token_error,
    one_webhooks_token_never_reaches_another_webhook,
    oauth2_fields_are_validated_by_name_and_the_client_secret_is_never_read_back,
    the_client_secret_is_sealed_at_rest_and_kept_only_for_the_same_token_url,
    the_dashboard_form_sets_oauth2_shows_the_secret_as_set_and_the_log_page_masks_the_token,
);

const CRM: Client = Client {
    id: "crm-client",
    secret: "s3cret:with/odd&chars",
    scope: Some("webhooks.write"),
    audience: Some("https://crm.example"),
};
const ERP: Client = Client { id: "erp-client", secret: "erp-secret", scope: None, audience: None };

fn oauth2_fields(tokens: &TokenServer, client: &Client) -> Value {
    json!({
        "authorization_scheme": "oauth2",
        "oauth2_token_url": tokens.url(),
        "oauth2_client_id": client.id,
        "oauth2_client_secret": client.secret,
        "oauth2_scope": client.scope,
        "oauth2_audience": client.audience,
    })
}

/// An app, a receiver, a token endpoint issuing tokens living `expires_in` s, and an `oauth2`
/// webhook of `CRM` with `fields` merged in.
async fn setup(
    backend: Backend,
    expires_in: u64,
    fields: Value,
) -> (TestApp, Receiver, TokenServer, String, String) {
    let app = TestApp::spawn(backend).await;
    let receiver = Receiver::start().await;
    let tokens = TokenServer::start(&[CRM, ERP], expires_in).await;
    let agent = app.create_agent().await;
    let mut body = oauth2_fields(&tokens, &CRM);
    crate::harness::merge(&mut body, json!({"webhook_url": receiver.url("/hook")}));
    crate::harness::merge(&mut body, fields);
    let webhook = app.create_webhook(&agent, body).await;
    let webhook = webhook["id"].as_str().unwrap().to_string();
    (app, receiver, tokens, agent, webhook)
}

async fn deliver_one(app: &TestApp, agent: &str, webhook: &str) -> Value {
    let accepted = app.ingest(agent, json!({"event": "call.completed", "data": {}})).await;
    let log = accepted["logs"][0]["log_id"].as_str().unwrap().to_string();
    app.wait_for_log(agent, webhook, &log, "success").await
}

fn bearer(received: &crate::receiver::Received) -> String {
    received.header("authorization").to_string()
}

async fn a_token_is_fetched_with_basic_credentials_scope_and_audience_and_reused_until_it_expires(
    backend: Backend,
) {
    let (app, receiver, tokens, agent, webhook) = setup(backend, 3600, json!({})).await;
    for _ in 0..3 {
        deliver_one(&app, &agent, &webhook).await;
    }
    let received = receiver.wait_for(3, Duration::from_secs(10)).await;
    // The endpoint refuses wrong credentials, grant, scope or audience: a token means all held.
    let sent: Vec<String> = received.iter().map(bearer).collect();
    assert_eq!(sent, vec!["Bearer tok-crm-client-1"; 3]);
    assert_eq!(tokens.requests(), 1, "one token for three deliveries");
}

async fn many_attempts_waiting_for_a_token_cause_one_fetch(backend: Backend) {
    let (app, receiver, tokens, agent, _) =
        setup(backend, 3600, json!({"max_concurrency": 10})).await;
    // A slow endpoint, so that every attempt starts while the first fetch is in flight.
    tokens.delay(Duration::from_millis(400));
    let events: Vec<Value> =
        (0..10).map(|_| json!({"event": "call.completed", "data": {}})).collect();
    app.ingest_batch(&agent, events).await;
    let received = receiver.wait_for(10, Duration::from_secs(15)).await;
    assert!(received.iter().all(|r| bearer(r) == "Bearer tok-crm-client-1"));
    assert_eq!(tokens.requests(), 1);
}

async fn a_token_about_to_expire_is_fetched_again(backend: Backend) {
    // 31 s: fresh for one second after the 30 s margin.
    let (app, receiver, tokens, agent, webhook) = setup(backend, 31, json!({})).await;
    deliver_one(&app, &agent, &webhook).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        deliver_one(&app, &agent, &webhook).await;
        let last = receiver.received().last().map(bearer).unwrap();
        if last == "Bearer tok-crm-client-2" {
            break;
        }
        assert_eq!(last, "Bearer tok-crm-client-1", "the token is reused while fresh");
        assert!(Instant::now() < deadline, "the token was never fetched again");
    }
    assert_eq!(tokens.requests(), 2);
}

async fn a_401_from_the_endpoint_fetches_a_new_token_once_and_sends_again(backend: Backend) {
    let (app, receiver, tokens, agent, webhook) = setup(backend, 3600, json!({})).await;
    receiver.script([Reply::status(401)]);
    let log = deliver_one(&app, &agent, &webhook).await;
    assert_eq!(log["attempts"].as_array().unwrap().len(), 1, "{log}");
    let sent: Vec<String> = receiver.received().iter().map(bearer).collect();
    assert_eq!(sent, ["Bearer tok-crm-client-1", "Bearer tok-crm-client-2"]);
    assert_eq!(tokens.requests(), 2);

    // A second 401 to the new token fails the attempt with the endpoint's answer.
    receiver.otherwise(Reply::status(401));
    let path = format!("/api/v1/agents/{agent}/webhooks/{webhook}");
    let (status, body) = app.call(Method::PUT, &path, Some(json!({"max_retries": 0}))).await;
    assert_eq!(status, 200, "{body}");
    let accepted = app.ingest(&agent, json!({"event": "call.completed", "data": {}})).await;
    let log_id = accepted["logs"][0]["log_id"].as_str().unwrap();
    let failed = app.wait_for_log(&agent, &webhook, log_id, "failed").await;
    assert_eq!(failed["http_status"], 401, "{failed}");
    let sent: Vec<String> = receiver.received().iter().skip(2).map(bearer).collect();
    assert_eq!(sent, ["Bearer tok-crm-client-2", "Bearer tok-crm-client-3"]);
    assert_eq!(tokens.requests(), 3, "one new token per 401, not more");
}

async fn a_failing_token_endpoint_fails_the_attempt_with_an_oauth2_token_error(backend: Backend) {
    let (app, receiver, tokens, agent, webhook) =
        setup(backend, 3600, json!({"max_retries": 1})).await;
    tokens.fail(true);
    let accepted = app.ingest(&agent, json!({"event": "call.completed", "data": {}})).await;
    let log_id = accepted["logs"][0]["log_id"].as_str().unwrap();
    let failed = app.wait_for_log(&agent, &webhook, log_id, "failed").await;
    let errors: Vec<&str> = failed["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["error"].as_str().unwrap())
        .collect();
    assert_eq!(errors, ["oauth2 token: the token endpoint answered 503 Service Unavailable"; 2]);
    assert!(receiver.received().is_empty(), "nothing is sent without a token");

    // A wrong secret: the endpoint's OAuth2 error is in the attempt's error.
    tokens.fail(false);
    let path = format!("/api/v1/agents/{agent}/webhooks/{webhook}");
    let mut wrong = oauth2_fields(&tokens, &CRM);
    crate::harness::merge(&mut wrong, json!({"oauth2_client_secret": "wrong", "max_retries": 0}));
    let (status, body) = app.call(Method::PUT, &path, Some(wrong)).await;
    assert_eq!(status, 200, "{body}");
    let accepted = app.ingest(&agent, json!({"event": "call.completed", "data": {}})).await;
    let log_id = accepted["logs"][0]["log_id"].as_str().unwrap();
    let failed = app.wait_for_log(&agent, &webhook, log_id, "failed").await;
    assert_eq!(
        failed["error"],
        "oauth2 token: the token endpoint answered 401 Unauthorized: invalid_client (unknown \
         client or secret)"
    );
    assert!(receiver.received().is_empty());
}

async fn one_webhooks_token_never_reaches_another_webhook(backend: Backend) {
    let (app, receiver, tokens, agent, crm) = setup(backend, 3600, json!({})).await;
    let mut body = oauth2_fields(&tokens, &ERP);
    crate::harness::merge(&mut body, json!({"webhook_url": receiver.url("/erp")}));
    let erp = app.create_webhook(&agent, body).await;
    let erp = erp["id"].as_str().unwrap();
    // The same client twice, under a third webhook: its own token, not the first webhook's.
    let mut body = oauth2_fields(&tokens, &CRM);
    crate::harness::merge(&mut body, json!({"webhook_url": receiver.url("/crm-twin")}));
    let twin = app.create_webhook(&agent, body).await;
    let twin = twin["id"].as_str().unwrap();
    let accepted = app.ingest(&agent, json!({"event": "call.completed", "data": {}})).await;
    for log in accepted["logs"].as_array().unwrap() {
        let webhook = log["webhook_id"].as_str().unwrap();
        app.wait_for_log(&agent, webhook, log["log_id"].as_str().unwrap(), "success").await;
    }
    let mut seen: Vec<(String, String)> =
        receiver.received().iter().map(|r| (r.path.clone(), bearer(r))).collect();
    seen.sort();
    let paths: Vec<&str> = seen.iter().map(|(path, _)| path.as_str()).collect();
    assert_eq!(paths, ["/crm-twin", "/erp", "/hook"]);
    let (twin_token, erp_token, crm_token) = (&seen[0].1, &seen[1].1, &seen[2].1);
    assert!(erp_token.starts_with("Bearer tok-erp-client-"), "{seen:?}");
    assert!(crm_token.starts_with("Bearer tok-crm-client-"), "{seen:?}");
    assert!(twin_token.starts_with("Bearer tok-crm-client-"), "{seen:?}");
    assert_ne!(crm_token, twin_token, "each webhook fetched its own token");
    assert_eq!(tokens.requests(), 3);
    let _ = (crm, erp, twin);
}

async fn oauth2_fields_are_validated_by_name_and_the_client_secret_is_never_read_back(
    backend: Backend,
) {
    let app = TestApp::spawn_with(backend, |c| c.allow_private_targets = false).await;
    let agent = app.create_agent().await;
    let path = format!("/api/v1/agents/{agent}/webhooks");
    let body = json!({
        "name": "CRM", "webhook_url": "https://example.com/hook", "events": ["call.completed"],
        "authorization_scheme": "oauth2", "oauth2_token_url": "http://127.0.0.1:9/token",
        "oauth2_client_id": "id\nx",
    });
    let (status, refused) = app.call(Method::POST, &path, Some(body)).await;
    assert_error(status, &refused, 422, "VALIDATION_FAILED");
    let fields: Vec<&String> = refused["errors"].as_object().unwrap().keys().collect();
    assert_eq!(fields, ["oauth2_client_id", "oauth2_client_secret", "oauth2_token_url"]);
    assert!(refused["errors"]["oauth2_token_url"][0].as_str().unwrap().contains("loopback"));

    let (status, created) = app
        .call(
            Method::POST,
            &path,
            Some(json!({
                "name": "CRM", "webhook_url": "https://example.com/hook",
                "events": ["call.completed"], "authorization_scheme": "oauth2",
                "oauth2_token_url": "https://auth.example.com/token",
                "oauth2_client_id": "crm", "oauth2_client_secret": "never-shown",
                "oauth2_scope": "webhooks.write",
            })),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let webhook = &created["data"];
    assert_eq!(webhook["authorization_scheme"], "oauth2");
    assert_eq!(webhook["oauth2_token_url"], "https://auth.example.com/token");
    assert_eq!(webhook["oauth2_client_id"], "crm");
    assert_eq!(webhook["oauth2_scope"], "webhooks.write");
    assert_eq!(webhook["oauth2_audience"], Value::Null);
    let (_, read) =
        app.call(Method::GET, &format!("{path}/{}", webhook["id"].as_str().unwrap()), None).await;
    assert!(!created.to_string().contains("never-shown"));
    assert!(!read.to_string().contains("never-shown"));
}

async fn the_client_secret_is_sealed_at_rest_and_kept_only_for_the_same_token_url(
    backend: Backend,
) {
    let (app, receiver, tokens, agent, webhook) = setup(backend, 3600, json!({})).await;
    for value in crate::security::raw_column(&app, "SELECT auth_config FROM webhooks").await {
        assert!(value.starts_with("enc:v1:"), "{value:?}");
        assert!(!value.contains("s3cret") && !value.contains("crm-client"), "{value:?}");
    }
    // An edit naming the same token URL keeps the stored secret: deliveries still get tokens.
    let path = format!("/api/v1/agents/{agent}/webhooks/{webhook}");
    let mut same = oauth2_fields(&tokens, &CRM);
    same.as_object_mut().unwrap().remove("oauth2_client_secret");
    let (status, body) = app.call(Method::PUT, &path, Some(same.clone())).await;
    assert_eq!(status, 200, "{body}");
    deliver_one(&app, &agent, &webhook).await;
    assert_eq!(bearer(&receiver.received()[0]), "Bearer tok-crm-client-1");
    // Another token URL without the secret is refused: a stored secret never goes somewhere new.
    crate::harness::merge(&mut same, json!({"oauth2_token_url": "https://elsewhere.example/t"}));
    let (status, body) = app.call(Method::PUT, &path, Some(same)).await;
    assert_error(status, &body, 422, "VALIDATION_FAILED");
    assert!(body["errors"]["oauth2_client_secret"].is_array(), "{body}");
}

async fn the_dashboard_form_sets_oauth2_shows_the_secret_as_set_and_the_log_page_masks_the_token(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    let receiver = Receiver::start().await;
    let tokens = TokenServer::start(&[CRM, ERP], 3600).await;
    let agent = app.create_agent().await;
    let browser = crate::ui::signed_in(&app).await;
    let blank = browser.get(&format!("/ui/agents/{agent}/webhooks/new")).await;
    blank.assert_contains("OAuth2 client secret (not set)");
    let (url, token_url) = (receiver.url("/hook"), tokens.url());
    let created = browser
        .submit(
            &format!("/ui/agents/{agent}/webhooks"),
            &[
                ("name", "ERP"),
                ("webhook_url", &url),
                ("events", "call.completed"),
                ("enabled", "true"),
                ("http_method", "POST"),
                ("timeout", "30"),
                ("max_retries", "3"),
                ("authorization_scheme", "oauth2"),
                ("oauth2_token_url", &token_url),
                ("oauth2_client_id", ERP.id),
                ("oauth2_client_secret", ERP.secret),
                ("oauth2_scope", ""),
                ("oauth2_audience", ""),
                ("ordering", "none"),
            ],
        )
        .await;
    assert_eq!(created.status, 200, "{}", created.body);
    let (_, list) = app.call(Method::GET, &format!("/api/v1/agents/{agent}/webhooks"), None).await;
    let webhook = list["data"]["webhooks"][0]["id"].as_str().unwrap().to_string();
    let edit = browser.get(&format!("/ui/agents/{agent}/webhooks/{webhook}/edit")).await;
    edit.assert_contains("OAuth2 client secret (set;");
    edit.assert_contains(ERP.id);
    assert!(!edit.body.contains(ERP.secret), "the secret is never filled back in");

    let log = deliver_one(&app, &agent, &webhook).await;
    let log = log["id"].as_str().unwrap();
    assert_eq!(bearer(&receiver.received()[0]), "Bearer tok-erp-client-1");
    let page = browser.get(&format!("/ui/agents/{agent}/webhooks/{webhook}/logs/{log}")).await;
    page.assert_contains("<th>authorization</th><td>(hidden: oauth2 credential)</td>");
    assert!(!page.body.contains("tok-erp-client"), "the token is never shown");
}
