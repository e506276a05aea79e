//! Webhooks that point at webhookd's own ingest API: refused when created (the public URL and the
//! bound address), and a delivery that reaches the ingest API anyway (another spelling of the
//! address) is refused there, so one event stays one event.

use reqwest::Method;
use serde_json::{json, Value};

use crate::backend_tests;
use crate::harness::{assert_error, send, Backend, TestApp};

backend_tests!(
    a_webhook_pointing_at_its_own_ingest_api_stops_at_the_first_delivery,
    webhook_urls_of_the_service_itself_are_refused_everywhere_they_are_given,
    the_public_url_is_the_service_itself_too,
    deliveries_of_other_deployments_are_still_ingested,
);

/// The agent's own ingest URL, by a name the creation check does not know (`localhost` for the
/// bound `127.0.0.1`), with the organization's key: before ingestion refused its own
/// deliveries, each delivery ingested a new event that was delivered again, without end.
async fn a_webhook_pointing_at_its_own_ingest_api_stops_at_the_first_delivery(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let agent = app.create_agent().await;
    let url = format!("http://localhost:{}/api/v1/agents/{agent}/events", app.addr.port());
    let webhook = app
        .create_webhook(
            &agent,
            json!({
                "webhook_url": url,
                "authorization_scheme": "bearer",
                "auth_token": app.api_key,
                "max_retries": 0,
            }),
        )
        .await;
    let webhook_id = webhook["id"].as_str().unwrap();
    // Each payload is itself an event, three deep: every delivery could be ingested again.
    let mut event = json!({"event": "call.completed", "data": {"summary": "once"}});
    for _ in 0..3 {
        event = json!({"event": "call.completed", "data": event});
    }
    let accepted = app.ingest(&agent, event).await;
    let event_id = accepted["event_id"].as_str().unwrap();
    let log_id = accepted["logs"][0]["log_id"].as_str().unwrap();

    let log = app.wait_for_log(&agent, webhook_id, log_id, "failed").await;
    let attempts = log["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "{log}");
    assert_eq!(attempts[0]["http_status"], 422, "{log}");
    let answer: Value = serde_json::from_str(attempts[0]["response_body"].as_str().unwrap())
        .expect("the refusal is the JSON envelope");
    assert_eq!(answer["code"], "VALIDATION_FAILED", "{answer}");
    let message = answer["errors"]["webhook-id"][0].as_str().unwrap();
    assert!(message.contains(event_id), "{message}");
    assert!(message.contains("own deliveries"), "{message}");
    assert!(message.contains("Point the webhook at the service"), "{message}");

    let logs = format!("/api/v1/agents/{agent}/webhooks/{webhook_id}/logs");
    let (status, page) = app.call(Method::GET, &logs, None).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["data"]["pagination"]["total"], 1, "one event, one log: {page}");
}

async fn webhook_urls_of_the_service_itself_are_refused_everywhere_they_are_given(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    let agent = app.create_agent().await;
    let own = app.url(&format!("/api/v1/agents/{agent}/events"));
    let itself = |body: &Value, field: &str| {
        body["errors"][field][0].as_str().is_some_and(|m| m.contains("this webhookd itself"))
    };

    let create = json!({"name": "loop", "webhook_url": own, "events": ["call.completed"]});
    let (status, body) =
        app.call(Method::POST, &format!("/api/v1/agents/{agent}/webhooks"), Some(create)).await;
    assert_error(status, &body, 422, "VALIDATION_FAILED");
    assert!(itself(&body, "webhook_url"), "{body}");

    let webhook = app.create_webhook(&agent, json!({})).await;
    let path = format!("/api/v1/agents/{agent}/webhooks/{}", webhook["id"].as_str().unwrap());
    let (status, body) = app.call(Method::PUT, &path, Some(json!({"webhook_url": own}))).await;
    assert_error(status, &body, 422, "VALIDATION_FAILED");
    assert!(itself(&body, "webhook_url"), "{body}");
    let (_, unchanged) = app.call(Method::GET, &path, None).await;
    assert_eq!(unchanged["data"]["webhook_url"], "https://example.com/hooks");

    let event = json!({"event": "call.completed", "data": {}, "webhook_url": own});
    let (status, body) =
        app.call(Method::POST, &format!("/api/v1/agents/{agent}/events"), Some(event)).await;
    assert_error(status, &body, 422, "VALIDATION_FAILED");
    assert!(itself(&body, "webhook_url"), "{body}");

    let operational = json!({"url": app.url("/anything")});
    let (status, body) =
        app.call(Method::PUT, "/api/v1/organization/operational-webhook", Some(operational)).await;
    assert_error(status, &body, 422, "VALIDATION_FAILED");
    assert!(itself(&body, "url"), "{body}");

    let create = json!({"call_ids": ["c_1"], "webhook_url": own});
    let request = app
        .client
        .post(app.url("/v1/postcall/webhooks/create"))
        .header("authorization", &app.api_key)
        .json(&create);
    let (status, body) = send(request).await;
    assert_eq!(status, 400, "{body}");
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("webhook_url") && message.contains("itself"), "{body}");
}

async fn the_public_url_is_the_service_itself_too(backend: Backend) {
    let app = TestApp::spawn_with(backend, |config| {
        config.public_url = Some("https://hooks.example.com".into());
    })
    .await;
    let agent = app.create_agent().await;
    for url in
        ["https://hooks.example.com/api/v1/agents/a/events", "https://HOOKS.example.com:443/"]
    {
        let create = json!({"name": "loop", "webhook_url": url, "events": ["call.completed"]});
        let (status, body) =
            app.call(Method::POST, &format!("/api/v1/agents/{agent}/webhooks"), Some(create)).await;
        assert_error(status, &body, 422, "VALIDATION_FAILED");
        let message = body["errors"]["webhook_url"][0].as_str().unwrap();
        assert!(message.contains("https://hooks.example.com:443"), "{message}");
    }
    // The bound address stays the service itself beside the public URL.
    let create = json!({"name": "loop", "webhook_url": app.url("/"), "events": ["call.completed"]});
    let (status, body) =
        app.call(Method::POST, &format!("/api/v1/agents/{agent}/webhooks"), Some(create)).await;
    assert_error(status, &body, 422, "VALIDATION_FAILED");
    // Another port, scheme or host is another service.
    app.create_webhook(&agent, json!({"webhook_url": "https://hooks.example.com:8443/"})).await;
    app.create_webhook(&agent, json!({"webhook_url": "http://hooks.example.com/"})).await;
}

/// A `webhook-id` this database does not know (another webhookd deployment forwarding to this
/// one) and webhookd's `user-agent` are accepted.
async fn deliveries_of_other_deployments_are_still_ingested(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let agent = app.create_agent().await;
    let path = format!("/api/v1/agents/{agent}/events");
    let request = app
        .request(Method::POST, &path)
        .header("webhook-id", uuid::Uuid::now_v7().to_string())
        .header("user-agent", "webhookd/1.0.0")
        .json(&json!({"event": "call.completed", "data": {}}));
    let (status, body) = send(request).await;
    assert_eq!(status, 202, "{body}");

    // The same id again, now that it is an event of this database: refused, in batches too.
    let own_id = body["data"]["event_id"].as_str().unwrap().to_string();
    for (path, event) in [
        (path.clone(), json!({"event": "call.completed", "data": {}})),
        (format!("{path}/batch"), json!({"events": [{"event": "call.completed", "data": {}}]})),
    ] {
        let request = app.request(Method::POST, &path).header("webhook-id", &own_id).json(&event);
        let (status, body) = send(request).await;
        assert_error(status, &body, 422, "VALIDATION_FAILED");
        assert!(body["errors"]["webhook-id"][0].as_str().unwrap().contains(&own_id), "{body}");
    }
}
