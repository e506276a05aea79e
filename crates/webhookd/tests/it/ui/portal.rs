//! Customer portal links: the API route, what a link opens, and what it refuses.

use reqwest::Method;
use serde_json::json;
use uuid::Uuid;
use webhookd::ui::portal::{sign, PortalGrant, KEY_PURPOSE};

use super::{agent_with_webhook, signed_in, Browser};
use crate::backend_tests;
use crate::harness::{assert_error, send, Backend, TestApp};

backend_tests!(
    the_portal_route_returns_a_signed_expiring_link_without_the_api_key,
    a_portal_link_opens_its_agent_and_nothing_else,
    expired_tampered_and_foreign_links_are_refused,
    the_portal_lists_event_types_with_their_schemas_and_examples,
);

async fn the_portal_lists_event_types_with_their_schemas_and_examples(backend: Backend) {
    let catalog = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/event-catalog.yaml");
    let app =
        TestApp::spawn_with(backend, |config| config.event_catalog = Some(catalog.into())).await;
    let agent = app.create_agent().await;
    let (_, body) = portal(&app, &agent, None).await;
    let url = body["data"]["url"].as_str().unwrap();
    let browser = Browser::new(&app);
    browser.get(url.trim_start_matches(&format!("http://{}", app.addr))).await;
    let page = browser.get(&format!("/ui/agents/{agent}")).await;
    page.assert_contains("href=\"/ui/event-types\"");
    let page = browser.get("/ui/event-types").await;
    assert_eq!(page.status, 200, "{}", page.body);
    page.assert_contains("<code>call.completed</code>");
    page.assert_contains("The post-call webhook");
    page.assert_contains("Schema (JSON Schema 2020-12)");
    page.assert_contains("c_7f3a9b2e");
    page.assert_contains("<code>sms.sent</code>");
    assert_ne!(Browser::new(&app).get("/ui/event-types").await.status, 200, "signed in only");
}

async fn portal(
    app: &TestApp,
    agent: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    app.call(Method::POST, &format!("/api/v1/agents/{agent}/portal"), body).await
}

async fn the_portal_route_returns_a_signed_expiring_link_without_the_api_key(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let agent = app.create_agent().await;
    // No body at all: the defaults (one hour).
    let response = app.request(Method::POST, &format!("/api/v1/agents/{agent}/portal")).send();
    let (status, body) = send_response(response.await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["success"], true);
    let url = body["data"]["url"].as_str().unwrap();
    assert!(url.starts_with(&format!("http://{}/ui/portal/v1.", app.addr)), "{url}");
    assert!(!url.contains(&app.api_key));
    let expires =
        webhookd::domain::clock::parse_timestamp(body["data"]["expires_at"].as_str().unwrap());
    let in_an_hour = webhookd::domain::clock::now_ms() + 3_600_000;
    assert!((expires.unwrap() - in_an_hour).abs() < 5_000, "{body}");

    let (status, body) = portal(&app, &agent, Some(json!({"expires_in": 120}))).await;
    assert_eq!(status, 200, "{body}");
    for bad in
        [json!({"expires_in": 5}), json!({"expires_in": 86_401}), json!({"expires_in": "soon"})]
    {
        let (status, body) = portal(&app, &agent, Some(bad)).await;
        assert_error(status, &body, 422, "VALIDATION_FAILED");
        assert!(body["errors"]["expires_in"].is_array(), "{body}");
    }
    let (status, body) = portal(&app, &Uuid::now_v7().to_string(), None).await;
    assert_error(status, &body, 404, "AGENT_NOT_FOUND");
    let foreign = app.other_org_key().await;
    let request =
        app.client.post(app.url(&format!("/api/v1/agents/{agent}/portal"))).bearer_auth(foreign);
    let (status, body) = send(request).await;
    assert_error(status, &body, 404, "AGENT_NOT_FOUND");
    let (status, body) =
        send(app.client.post(app.url(&format!("/api/v1/agents/{agent}/portal")))).await;
    assert_error(status, &body, 401, "UNAUTHORIZED");
}

async fn send_response(response: reqwest::Response) -> (u16, serde_json::Value) {
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn a_portal_link_opens_its_agent_and_nothing_else(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (agent, webhook) = agent_with_webhook(&app, "https://example.com/mine").await;
    let (other_agent, other_webhook) = agent_with_webhook(&app, "https://example.com/theirs").await;
    let (_, body) = portal(&app, &agent, None).await;
    let url = body["data"]["url"].as_str().unwrap();
    let browser = Browser::new(&app);
    let opened = browser.get(url.trim_start_matches(&format!("http://{}", app.addr))).await;
    assert_eq!(opened.status, 200, "{}", opened.body);
    opened.assert_contains(&format!("url=/ui/agents/{agent}"));
    let cookie = opened.set_cookie("webhookd_session");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");

    let page = browser.get(&format!("/ui/agents/{agent}")).await;
    assert_eq!(page.status, 200);
    page.assert_contains("https://example.com/mine");
    page.assert_contains("Customer portal");
    assert!(!page.body.contains("theirs"));
    assert_eq!(browser.get("/ui/agents").await.location(), format!("/ui/agents/{agent}"));
    assert_eq!(browser.get(&format!("/ui/agents/{agent}/webhooks/{webhook}")).await.status, 200);
    for path in [
        format!("/ui/agents/{other_agent}"),
        format!("/ui/agents/{other_agent}/webhooks/{other_webhook}"),
        format!("/ui/agents/{other_agent}/webhooks/{other_webhook}/edit"),
        format!("/ui/agents/{agent}/webhooks/{other_webhook}"),
    ] {
        assert_eq!(browser.get(&path).await.status, 404, "{path}");
    }
    let toggle = format!("/ui/agents/{other_agent}/webhooks/{other_webhook}/toggle");
    assert_eq!(browser.submit(&toggle, &[]).await.status, 404);
    // A portal session cannot mint itself a longer one.
    assert_eq!(browser.submit(&format!("/ui/agents/{agent}/portal"), &[]).await.status, 404);

    // Another organization's dashboard sees none of it either.
    let outsider_key = app.other_org_key().await;
    let outsider = Browser::new(&app);
    assert_eq!(outsider.sign_in(&outsider_key).await.status, 303);
    assert_eq!(outsider.get(&format!("/ui/agents/{agent}")).await.status, 404);

    // The dashboard makes the same links.
    let dashboard = signed_in(&app).await;
    let made = dashboard.submit(&format!("/ui/agents/{agent}/portal"), &[]).await;
    assert_eq!(made.status, 200);
    made.assert_contains("/ui/portal/v1.");
}

async fn expired_tampered_and_foreign_links_are_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let agent = app.create_agent().await;
    let org_id: Uuid = app.org_id.parse().unwrap();
    let agent_id: Uuid = agent.parse().unwrap();
    let key = app.store.derived_key(KEY_PURPOSE);
    let now_secs = webhookd::domain::clock::now_ms() / 1000;
    let browser = Browser::new(&app);

    let expired = sign(&PortalGrant { org_id, agent_id, expires_at_secs: now_secs - 1 }, &key);
    let page = browser.get(&format!("/ui/portal/{expired}")).await;
    assert_eq!(page.status, 403);
    page.assert_contains("has expired");

    let valid = sign(&PortalGrant { org_id, agent_id, expires_at_secs: now_secs + 600 }, &key);
    let other_agent = Uuid::now_v7();
    let swapped =
        sign(&PortalGrant { org_id, agent_id: other_agent, expires_at_secs: now_secs + 600 }, &key);
    let (valid_payload, valid_tag) = valid.rsplit_once('.').unwrap();
    let (swapped_payload, _) = swapped.rsplit_once('.').unwrap();
    let another_key =
        sign(&PortalGrant { org_id, agent_id, expires_at_secs: now_secs + 600 }, &[9; 32]);
    for bad in [
        format!("{swapped_payload}.{valid_tag}"),
        format!("{valid_payload}.{}", &valid_tag[1..]),
        another_key,
        "v1.garbage".to_string(),
    ] {
        let page = browser.get(&format!("/ui/portal/{bad}")).await;
        assert_eq!(page.status, 403, "{bad}: {}", page.body);
        page.assert_contains("is not valid");
        assert!(page.set_cookie("webhookd_session").is_empty());
    }
    // A well-signed link to an agent that is not (or no longer) there opens nothing.
    let page = browser.get(&format!("/ui/portal/{swapped}")).await;
    assert_eq!(page.status, 404);
    assert_eq!(browser.get(&format!("/ui/portal/{valid}")).await.status, 200);
}
