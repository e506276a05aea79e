//! Every button does what the API does: the same operation, the same effect, read back through
//! the API.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use super::{agent_with_webhook, id, signed_in};
use crate::backend_tests;
use crate::harness::{Backend, TestApp};
use crate::receiver::{Receiver, Reply};

backend_tests!(
    a_webhook_created_and_edited_from_the_form_reads_back_as_the_api_saved_it,
    the_form_shows_the_apis_validation_messages,
    the_form_sets_wildcards_and_a_filter_and_shows_filter_errors_beside_it,
    toggle_test_secret_and_delete_do_what_the_api_does,
    retry_queues_a_new_log_sent_to_the_webhooks_current_url,
    resend_sends_the_calls_post_call_log_again_to_the_same_url,
    recover_counts_first_then_queues_what_the_api_would,
    erase_call_data_asks_first_then_erases_as_the_api_does,
);

async fn api_webhook(app: &TestApp, agent: &str, webhook: &str) -> Value {
    let (status, body) =
        app.call(Method::GET, &format!("/api/v1/agents/{agent}/webhooks/{webhook}"), None).await;
    assert_eq!(status, 200, "{body}");
    body["data"].clone()
}

async fn a_webhook_created_and_edited_from_the_form_reads_back_as_the_api_saved_it(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    let agent = app.create_agent().await;
    let browser = signed_in(&app).await;
    let form = browser.get(&format!("/ui/agents/{agent}/webhooks/new")).await;
    assert_eq!(form.status, 200);
    form.assert_contains("call.completed");
    let created = browser
        .submit(
            &format!("/ui/agents/{agent}/webhooks"),
            &[
                ("name", "CRM"),
                ("webhook_url", "https://example.com/crm"),
                ("events", "call.completed"),
                ("events", "call.ended"),
                ("enabled", "true"),
                ("http_method", "PUT"),
                ("timeout", "12"),
                ("max_retries", "4"),
                ("authorization_scheme", "bearer"),
                ("auth_token", "tok_1"),
                ("header_key", "X-Team"),
                ("header_value", "support"),
                ("header_key", ""),
                ("header_value", ""),
                ("rate_limit", "50"),
                ("max_concurrency", ""),
                ("ordering", "call"),
            ],
        )
        .await;
    assert_eq!(created.status, 200, "{}", created.body);
    created.assert_contains("whsec_");
    let (_, list) = app.call(Method::GET, &format!("/api/v1/agents/{agent}/webhooks"), None).await;
    let webhook = &list["data"]["webhooks"][0];
    let (_, secret) = app
        .call(Method::GET, &format!("/api/v1/agents/{agent}/webhooks/{}/secret", id(webhook)), None)
        .await;
    created.assert_contains(secret["data"]["signing_secret"].as_str().unwrap());
    for (field, expected) in [
        ("name", json!("CRM")),
        ("webhook_url", json!("https://example.com/crm")),
        ("events", json!(["call.completed", "call.ended"])),
        ("http_method", json!("PUT")),
        ("timeout", json!(12)),
        ("max_retries", json!(4)),
        ("authorization_scheme", json!("bearer")),
        ("custom_headers", json!([{"key": "X-Team", "value": "support"}])),
        ("rate_limit", json!(50)),
        ("max_concurrency", Value::Null),
        ("ordering", json!("call")),
        ("enabled", json!(true)),
    ] {
        assert_eq!(webhook[field], expected, "{field}: {webhook}");
    }

    let webhook_id = id(webhook);
    let edit = browser.get(&format!("/ui/agents/{agent}/webhooks/{webhook_id}/edit")).await;
    assert!(!edit.body.contains("tok_1"), "credentials are never filled back in");
    let saved = browser
        .submit(
            &format!("/ui/agents/{agent}/webhooks/{webhook_id}"),
            &[
                ("name", "CRM v2"),
                ("webhook_url", "https://example.com/crm2"),
                ("events", "call.completed"),
                ("enabled", "true"),
                ("http_method", "POST"),
                ("timeout", "30"),
                ("max_retries", "3"),
                ("authorization_scheme", "bearer"),
                ("rate_limit", ""),
                ("max_concurrency", "8"),
                ("ordering", "none"),
            ],
        )
        .await;
    assert_eq!(
        (saved.status, saved.location()),
        (303, format!("/ui/agents/{agent}/webhooks/{webhook_id}?done=updated").as_str())
    );
    let updated = api_webhook(&app, &agent, &webhook_id).await;
    assert_eq!(updated["name"], "CRM v2");
    assert_eq!(updated["rate_limit"], Value::Null);
    assert_eq!(updated["max_concurrency"], 8);
    assert_eq!(updated["custom_headers"], json!([]));
    assert_eq!(updated["authorization_scheme"], "bearer", "kept with its stored token");
    browser.get(saved.location()).await.assert_contains("Webhook updated successfully");
}

async fn the_form_shows_the_apis_validation_messages(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let agent = app.create_agent().await;
    let browser = signed_in(&app).await;
    let page = browser
        .submit(
            &format!("/ui/agents/{agent}/webhooks"),
            &[
                ("name", "<b>x</b>"),
                ("webhook_url", "ftp://example.com"),
                ("timeout", "1"),
                ("rate_limit", "many"),
            ],
        )
        .await;
    assert_eq!(page.status, 422);
    for message in [
        "webhook_url",
        "events must contain at least 1 event",
        "timeout",
        "rate_limit must be a whole number",
    ] {
        page.assert_contains(message);
    }
    page.assert_contains("value=\"&#60;b&#62;x&#60;/b&#62;\"");
    let (_, list) = app.call(Method::GET, &format!("/api/v1/agents/{agent}/webhooks"), None).await;
    assert_eq!(list["data"]["webhooks"], json!([]));
}

async fn the_form_sets_wildcards_and_a_filter_and_shows_filter_errors_beside_it(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let agent = app.create_agent().await;
    let browser = signed_in(&app).await;
    let form = browser.get(&format!("/ui/agents/{agent}/webhooks/new")).await;
    form.assert_contains("value=\"call.*\"");
    form.assert_contains("value=\"*\"");
    let fields = |filter: &'static str| {
        vec![
            ("name", "Long calls"),
            ("webhook_url", "https://example.com/long"),
            ("events", "call.*"),
            ("enabled", "true"),
            ("filter", filter),
        ]
    };
    let page = browser
        .submit(
            &format!("/ui/agents/{agent}/webhooks"),
            &fields(r#"{"duration": {"$gte": "x", "$lt": []}}"#),
        )
        .await;
    assert_eq!(page.status, 422);
    page.assert_contains("id=\"filter-errors\"><li>filter.duration.$lt");
    let page = browser.submit(&format!("/ui/agents/{agent}/webhooks"), &fields("{not json")).await;
    assert_eq!(page.status, 422);
    page.assert_contains("filter is not JSON");

    let created = browser
        .submit(&format!("/ui/agents/{agent}/webhooks"), &fields(r#"{"duration": {"$gte": 30}}"#))
        .await;
    assert_eq!(created.status, 200, "{}", created.body);
    let (_, list) = app.call(Method::GET, &format!("/api/v1/agents/{agent}/webhooks"), None).await;
    let webhook = &list["data"]["webhooks"][0];
    assert_eq!(webhook["events"], json!(["call.*"]));
    assert_eq!(webhook["filter"], json!({"duration": {"$gte": 30}}));
    let webhook_id = id(webhook);
    let edit = browser.get(&format!("/ui/agents/{agent}/webhooks/{webhook_id}/edit")).await;
    edit.assert_contains("&#34;$gte&#34;: 30");
    // A blank filter removes it.
    let saved =
        browser.submit(&format!("/ui/agents/{agent}/webhooks/{webhook_id}"), &fields("")).await;
    assert_eq!(saved.status, 303, "{}", saved.body);
    assert_eq!(api_webhook(&app, &agent, &webhook_id).await["filter"], Value::Null);
}

async fn toggle_test_secret_and_delete_do_what_the_api_does(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let receiver = Receiver::start().await;
    let (agent, webhook) = agent_with_webhook(&app, &receiver.url("/hook")).await;
    let base = format!("/ui/agents/{agent}/webhooks/{webhook}");
    let browser = signed_in(&app).await;

    let page = browser.get(&base).await;
    assert!(!page.body.contains("whsec_"), "a secret is never shown on page load");
    let toggled = browser.submit(&format!("{base}/toggle"), &[]).await;
    assert_eq!(toggled.location(), format!("{base}?done=disabled"));
    assert_eq!(api_webhook(&app, &agent, &webhook).await["status"], "disabled");
    browser.get(toggled.location()).await.assert_contains("Webhook disabled.");
    browser.submit(&format!("{base}/toggle"), &[]).await;
    assert_eq!(api_webhook(&app, &agent, &webhook).await["enabled"], true);

    let tested = browser.submit(&format!("{base}/test"), &[]).await;
    assert_eq!(tested.status, 200);
    tested.assert_contains("HTTP 200");
    let received = receiver.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(received[0].json()["event"], "webhook.test");

    let path = format!("/api/v1/agents/{agent}/webhooks/{webhook}/secret");
    let (_, before) = app.call(Method::GET, &path, None).await;
    let revealed = browser.submit(&format!("{base}/secret"), &[]).await;
    revealed.assert_contains(before["data"]["signing_secret"].as_str().unwrap());
    let rotated = browser.submit(&format!("{base}/secret/rotate"), &[]).await;
    let (_, after) = app.call(Method::GET, &path, None).await;
    assert_ne!(after["data"]["signing_secret"], before["data"]["signing_secret"]);
    assert!(after["data"]["previous_secret_expires_at"].is_string(), "{after}");
    rotated.assert_contains(after["data"]["signing_secret"].as_str().unwrap());

    assert_eq!(browser.get(&format!("{base}/delete")).await.status, 200);
    let deleted = browser.submit(&format!("{base}/delete"), &[]).await;
    assert_eq!(deleted.location(), format!("/ui/agents/{agent}?done=deleted"));
    let (status, _) =
        app.call(Method::GET, &format!("/api/v1/agents/{agent}/webhooks/{webhook}"), None).await;
    assert_eq!(status, 404);
    assert_eq!(browser.get(&base).await.status, 404);
}

/// A webhook to the receiver's `/old`, and one failed delivery of a post-call event.
async fn failed_delivery(app: &TestApp, receiver: &Receiver) -> (String, String, String) {
    let (agent, webhook) = agent_with_webhook(app, &receiver.url("/old")).await;
    receiver.script([Reply::status(500)]);
    let accepted = app
        .ingest(&agent, json!({"event": "call.completed", "call_id": "c_9", "data": {"n": 9}}))
        .await;
    let log = accepted["logs"][0]["log_id"].as_str().unwrap().to_string();
    app.wait_for_log(&agent, &webhook, &log, "failed").await;
    (agent, webhook, log)
}

async fn retry_queues_a_new_log_sent_to_the_webhooks_current_url(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let receiver = Receiver::start().await;
    let (agent, webhook, log) = failed_delivery(&app, &receiver).await;
    let (status, _) = app
        .call(
            Method::PUT,
            &format!("/api/v1/agents/{agent}/webhooks/{webhook}"),
            Some(json!({"webhook_url": receiver.url("/new")})),
        )
        .await;
    assert_eq!(status, 200);
    let browser = signed_in(&app).await;
    let base = format!("/ui/agents/{agent}/webhooks/{webhook}");
    let page = browser.get(&format!("{base}/logs/{log}")).await;
    page.assert_contains("Retry");
    let retried = browser.submit(&format!("{base}/logs/{log}/retry"), &[]).await;
    assert_eq!(retried.status, 303, "{}", retried.body);
    let new_log =
        retried.location().split("/logs/").nth(1).unwrap().split('?').next().unwrap().to_string();
    assert_ne!(new_log, log);
    let delivered = app.wait_for_log(&agent, &webhook, &new_log, "success").await;
    assert_eq!(delivered["original_log_id"], log.as_str());
    assert_eq!(delivered["url"], receiver.url("/new"));
    assert_eq!(delivered["attempts"][0]["send_type"], "manual");
    let shown = browser.get(retried.location()).await;
    shown.assert_contains("Retry queued");
    shown.assert_contains(&format!("log {log}"));
    shown.assert_contains(&receiver.url("/new"));
    // The API's rule holds here too: a succeeded log cannot be retried.
    let again = browser.submit(&format!("{base}/logs/{new_log}/retry"), &[]).await;
    assert_eq!(again.status, 422);
    again.assert_contains("cannot be retried");
}

async fn resend_sends_the_calls_post_call_log_again_to_the_same_url(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let receiver = Receiver::start().await;
    let (agent, webhook, log) = failed_delivery(&app, &receiver).await;
    app.call(
        Method::PUT,
        &format!("/api/v1/agents/{agent}/webhooks/{webhook}"),
        Some(json!({"webhook_url": receiver.url("/new")})),
    )
    .await;
    let browser = signed_in(&app).await;
    let base = format!("/ui/agents/{agent}/webhooks/{webhook}");
    let page = browser.submit(&format!("{base}/logs/{log}/resend"), &[]).await;
    assert_eq!(page.status, 200, "{}", page.body);
    page.assert_contains("c_9");
    page.assert_contains(&receiver.url("/old"));
    page.assert_contains("resend");
    let received = receiver.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(received[1].path, "/old", "Bland's resend goes where the log went before");
    let logged = app.wait_for_log(&agent, &webhook, &log, "success").await;
    assert_eq!(logged["attempts"].as_array().unwrap().last().unwrap()["send_type"], "resend");
}

async fn recover_counts_first_then_queues_what_the_api_would(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let receiver = Receiver::start().await;
    let (agent, webhook, _) = failed_delivery(&app, &receiver).await;
    let base = format!("/ui/agents/{agent}/webhooks/{webhook}");
    let since = "2000-01-01T00:00";
    let (_, api_count) = app
        .call(
            Method::POST,
            &format!("/api/v1/agents/{agent}/webhooks/{webhook}/recover"),
            Some(json!({"since": "2000-01-01T00:00:00Z", "dry_run": true})),
        )
        .await;
    assert_eq!(api_count["data"]["count"], 1);
    let browser = signed_in(&app).await;
    assert_eq!(browser.get(&format!("{base}/recover")).await.status, 200);
    let counted = browser
        .submit(&format!("{base}/recover"), &[("since", since), ("until", ""), ("intent", "count")])
        .await;
    counted.assert_contains("<strong>1</strong> log(s) would be queued");
    counted.assert_contains("Start recovery of 1 log(s)");
    let started = browser
        .submit(&format!("{base}/recover"), &[("since", since), ("until", ""), ("intent", "start")])
        .await;
    started.assert_contains("Recovery queued 1 log(s)");
    let (_, logs) = app
        .call(Method::GET, &format!("/api/v1/agents/{agent}/webhooks/{webhook}/logs"), None)
        .await;
    let recovered = id(&logs["data"]["logs"][0]);
    let recovered = app.wait_for_log(&agent, &webhook, &recovered, "success").await;
    assert_eq!(recovered["attempts"][0]["send_type"], "recover");
    assert!(recovered["original_log_id"].is_string(), "{recovered}");
    let invalid =
        browser.submit(&format!("{base}/recover"), &[("since", ""), ("intent", "count")]).await;
    assert_eq!(invalid.status, 422);
    invalid.assert_contains("since is required");
}

async fn erase_call_data_asks_first_then_erases_as_the_api_does(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let receiver = Receiver::start().await;
    let (agent, webhook, log) = failed_delivery(&app, &receiver).await;
    let browser = signed_in(&app).await;
    let page_path = format!("/ui/agents/{agent}/webhooks/{webhook}/logs/{log}");
    let page = browser.get(&page_path).await;
    page.assert_contains("Erase call data");
    // The button leads to a confirmation; nothing is erased by looking at it.
    let confirm = browser.get(&format!("{page_path}/erase")).await;
    assert_eq!(confirm.status, 200, "{}", confirm.body);
    confirm.assert_contains("c_9");
    confirm.assert_contains("cannot be undone");
    let (_, read) = app
        .call(Method::GET, &format!("/api/v1/agents/{agent}/webhooks/{webhook}/logs/{log}"), None)
        .await;
    assert_eq!(read["data"]["payload_state"], "present");
    // Without the CSRF token, nothing happens.
    let forged = browser.post(&format!("{page_path}/erase"), &[]).await;
    assert_eq!(forged.status, 403);

    let done = browser.submit(&format!("{page_path}/erase"), &[]).await;
    assert_eq!(done.status, 303, "{}", done.body);
    let page = browser.get(done.location()).await;
    page.assert_contains("Call data erased");
    page.assert_contains("payload erased");
    assert!(!page.body.contains("Erase call data"), "an erased call offers no second erasure");
    let (_, read) = app
        .call(Method::GET, &format!("/api/v1/agents/{agent}/webhooks/{webhook}/logs/{log}"), None)
        .await;
    assert_eq!(read["data"]["payload_state"], "erased");
    assert_eq!(read["data"]["request_payload"], Value::Null);
}
