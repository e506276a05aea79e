//! What pages show: escaped payloads, signed request headers as received, filters and keyset
//! pages, and the headers every UI response carries.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use super::{agent_with_webhook, signed_in};
use crate::backend_tests;
use crate::harness::{Backend, TestApp};
use crate::receiver::{Receiver, Reply};

backend_tests!(
    markup_in_payloads_responses_and_names_is_shown_as_text,
    the_log_page_shows_every_attempt_with_the_headers_the_receiver_got,
    logs_filter_and_page_older_and_newer_by_keyset,
);

const MARKUP: &str = "<script>alert(1)</script><img src=x onerror=alert(2)>";

async fn markup_in_payloads_responses_and_names_is_shown_as_text(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let receiver = Receiver::start().await;
    receiver.otherwise(Reply::status(500).header("x-evil", MARKUP).body(MARKUP));
    let agent = app.create_agent().await;
    let (_, renamed) = app
        .call(Method::PUT, &format!("/api/v1/agents/{agent}"), Some(json!({"name": MARKUP})))
        .await;
    assert_eq!(renamed["success"], true, "{renamed}");
    let webhook = app
        .create_webhook(
            &agent,
            json!({"name": MARKUP, "webhook_url": receiver.url("/x"), "max_retries": 0}),
        )
        .await;
    let webhook = webhook["id"].as_str().unwrap();
    let accepted = app
        .ingest(
            &agent,
            json!({"event": "call.completed", "call_id": MARKUP, "data": {"note": MARKUP}}),
        )
        .await;
    let log = accepted["logs"][0]["log_id"].as_str().unwrap();
    app.wait_for_log(&agent, webhook, log, "failed").await;

    let browser = signed_in(&app).await;
    let base = format!("/ui/agents/{agent}/webhooks/{webhook}");
    for path in [
        "/ui/agents".to_string(),
        format!("/ui/agents/{agent}"),
        base.clone(),
        format!("{base}/logs/{log}"),
    ] {
        let page = browser.get(&path).await;
        assert_eq!(page.status, 200, "{path}");
        assert!(!page.body.contains("<script>alert"), "{path}: {}", page.body);
        assert!(!page.body.contains("<img src=x"), "{path}");
        page.assert_contains("&#60;script&#62;alert(1)&#60;/script&#62;");
        // Every script the page loads is webhookd's own file.
        assert_eq!(page.body.matches("<script").count(), 1, "{path}");
    }
}

async fn the_log_page_shows_every_attempt_with_the_headers_the_receiver_got(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let receiver = Receiver::start().await;
    receiver.script([Reply::status(503).body("try later"), Reply::status(200).body("ok")]);
    let agent = app.create_agent().await;
    let webhook = app
        .create_webhook(
            &agent,
            json!({
                "webhook_url": receiver.url("/in"), "max_retries": 1,
                "authorization_scheme": "bearer", "auth_token": "tok_do_not_show",
                "custom_headers": [{"key": "x-team", "value": "support"}],
            }),
        )
        .await;
    let webhook = webhook["id"].as_str().unwrap();
    let accepted = app
        .ingest(&agent, json!({"event": "call.completed", "call_id": "c_1", "data": {"a": 1}}))
        .await;
    let log = accepted["logs"][0]["log_id"].as_str().unwrap();
    app.wait_for_log(&agent, webhook, log, "success").await;
    let received = receiver.wait_for(2, Duration::from_secs(10)).await;

    let browser = signed_in(&app).await;
    let page = browser.get(&format!("/ui/agents/{agent}/webhooks/{webhook}/logs/{log}")).await;
    assert_eq!(page.status, 200);
    for text in [
        "Attempt 1",
        "Attempt 2",
        "HTTP 503",
        "HTTP 200",
        "try later",
        "spawn",
        "retry",
        "x-team",
        "{&#34;a&#34;:1}",
    ] {
        page.assert_contains(text);
    }
    for request in &received {
        for header in
            ["webhook-signature", "x-webhook-signature", "webhook-timestamp", "webhook-id"]
        {
            let value = request.header(header);
            page.assert_contains(&format!("<th>{header}</th><td>{value}</td>"));
        }
    }
    assert!(!page.body.contains("tok_do_not_show"), "credentials are never shown");
    page.assert_contains("(hidden: bearer credential)");
}

async fn logs_filter_and_page_older_and_newer_by_keyset(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let receiver = Receiver::start().await;
    let (agent, webhook) = agent_with_webhook(&app, &receiver.url("/in")).await;
    let events: Vec<_> = (0..55)
        .map(|i| json!({"event": "call.completed", "call_id": format!("c_{i}"), "data": {"i": i}}))
        .collect();
    app.ingest_batch(&agent, events).await;
    receiver.wait_for(55, Duration::from_secs(20)).await;
    let base = format!("/ui/agents/{agent}/webhooks/{webhook}");
    let browser = signed_in(&app).await;
    let first = browser.get(&base).await;
    assert_eq!(first.body.matches("class=\"log-link\"").count(), 50);
    assert!(!first.body.contains("Newer"));
    first.assert_contains("c_54");
    let older = first
        .body
        .split("href=\"")
        .find_map(|s| s.split('"').next().filter(|h| h.contains("older=")))
        .unwrap();
    let second = browser.get(&older.replace("&amp;", "&")).await;
    assert_eq!(second.body.matches("class=\"log-link\"").count(), 5, "{}", second.body);
    second.assert_contains("c_0<");
    second.assert_contains("Newer");
    assert!(!second.body.contains("Older →"));

    let filtered = browser.get(&format!("{base}?call_id=c_7&status=success&http_status=2xx")).await;
    assert_eq!(filtered.body.matches("class=\"log-link\"").count(), 1);
    let none = browser.get(&format!("{base}?http_status=500")).await;
    none.assert_contains("No delivery logs match");
    let bad = browser.get(&format!("{base}?status=lost&since=yesterday&http_status=abc")).await;
    for message in ["Status must be", "From must be", "HTTP status must be"] {
        bad.assert_contains(message);
    }
}

#[tokio::test]
async fn every_ui_response_carries_the_security_headers_and_assets_are_cached_by_hash() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let browser = signed_in(&app).await;
    let agents = browser.get("/ui/agents").await;
    for path in ["/ui/agents", "/ui/sign-in", "/ui/agents/not-an-id", "/ui/nothing-here"] {
        let page = browser.get(path).await;
        let header = |name: &str| {
            page.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
        };
        let csp = header("content-security-policy");
        for directive in ["default-src 'none'", "script-src 'self'", "frame-ancestors 'none'"] {
            assert!(csp.contains(directive), "{path}: {csp}");
        }
        assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{csp}");
        assert_eq!(header("x-frame-options"), "DENY", "{path}");
        assert_eq!(header("referrer-policy"), "no-referrer", "{path}");
        assert_eq!(header("cache-control"), "no-store", "{path}");
    }
    assert_eq!(browser.get("/ui/agents/not-an-id").await.status, 404);
    let script = agents.body.split("<script src=\"").nth(1).unwrap().split('"').next().unwrap();
    assert!(script.starts_with("/ui/assets/htmx.") && script.ends_with(".js"), "{script}");
    let asset = browser.get(script).await;
    assert_eq!(asset.status, 200);
    assert!(asset.body.contains("htmx"));
    let cache = asset.headers.get("cache-control").unwrap().to_str().unwrap();
    assert!(cache.contains("max-age=31536000") && cache.contains("immutable"), "{cache}");
    assert_eq!(browser.get("/ui/assets/htmx.0000000000000000.js").await.status, 404);
}
