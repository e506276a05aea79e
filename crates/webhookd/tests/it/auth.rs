use reqwest::Method;
use serde_json::json;

use crate::backend_tests;
use crate::harness::{assert_error, send, Backend, TestApp};

backend_tests!(
    requests_without_a_valid_key_are_401,
    bearer_and_bare_authorization_headers_both_work,
    another_organizations_resources_are_404_on_every_route,
);

async fn requests_without_a_valid_key_are_401(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (status, body) = send(app.client.get(app.url("/api/v1/agents"))).await;
    assert_error(status, &body, 401, "UNAUTHORIZED");
    let headers: [&[u8]; 5] =
        [b"Bearer whk_wrong", b"Bearer", b"", b"Basic dXNlcjpwYXNz", b"whk_\xff\xfe"];
    for header in headers {
        let value = reqwest::header::HeaderValue::from_bytes(header).unwrap();
        let request = app.client.get(app.url("/api/v1/agents")).header("authorization", value);
        let (status, body) = send(request).await;
        assert_error(status, &body, 401, "UNAUTHORIZED");
    }
    // Authentication comes before body parsing: no key and a bad body is still a 401.
    let request = app.client.post(app.url("/api/v1/agents")).body("{not json");
    let (status, body) = send(request).await;
    assert_error(status, &body, 401, "UNAUTHORIZED");
}

async fn bearer_and_bare_authorization_headers_both_work(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for header in
        [format!("Bearer {}", app.api_key), format!("bearer {}", app.api_key), app.api_key.clone()]
    {
        let request = app.client.get(app.url("/api/v1/agents")).header("authorization", header);
        let (status, body) = send(request).await;
        assert_eq!(status, 200, "{body}");
    }
}

/// Every route that names a resource answers another organization's id exactly as an unknown id.
async fn another_organizations_resources_are_404_on_every_route(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let agent = app.create_agent().await;
    let webhook = app.create_webhook(&agent, json!({})).await["id"].as_str().unwrap().to_string();
    let accepted = app.ingest(&agent, json!({"event": "call.completed", "data": {}})).await;
    let log = accepted["logs"][0]["log_id"].as_str().unwrap().to_string();
    let recovery = uuid::Uuid::new_v4();
    let intruder = app.other_org_key().await;

    let agent_path = format!("/api/v1/agents/{agent}");
    let webhook_path = format!("{agent_path}/webhooks/{webhook}");
    let cases: Vec<(Method, String, Option<serde_json::Value>, &str)> = vec![
        (Method::GET, agent_path.clone(), None, "AGENT_NOT_FOUND"),
        (Method::PUT, agent_path.clone(), Some(json!({"name": "x"})), "AGENT_NOT_FOUND"),
        (Method::DELETE, agent_path.clone(), None, "AGENT_NOT_FOUND"),
        (Method::GET, format!("{agent_path}/webhooks"), None, "AGENT_NOT_FOUND"),
        (
            Method::POST,
            format!("{agent_path}/webhooks"),
            Some(json!({"name": "x", "webhook_url": "https://e.com", "events": ["call.ended"]})),
            "AGENT_NOT_FOUND",
        ),
        (Method::GET, webhook_path.clone(), None, "AGENT_NOT_FOUND"),
        (Method::PUT, webhook_path.clone(), Some(json!({"name": "x"})), "AGENT_NOT_FOUND"),
        (Method::DELETE, webhook_path.clone(), None, "AGENT_NOT_FOUND"),
        (Method::PATCH, format!("{webhook_path}/toggle"), None, "AGENT_NOT_FOUND"),
        (Method::GET, format!("{webhook_path}/secret"), None, "AGENT_NOT_FOUND"),
        (Method::POST, format!("{webhook_path}/secret/rotate"), None, "AGENT_NOT_FOUND"),
        (Method::POST, format!("{webhook_path}/test"), None, "AGENT_NOT_FOUND"),
        (
            Method::POST,
            format!("{agent_path}/events"),
            Some(json!({"event": "call.ended", "data": {}})),
            "AGENT_NOT_FOUND",
        ),
        (
            Method::POST,
            format!("{agent_path}/events/batch"),
            Some(json!({"events": [{"event": "call.ended", "data": {}}]})),
            "AGENT_NOT_FOUND",
        ),
        (Method::GET, format!("{webhook_path}/logs"), None, "AGENT_NOT_FOUND"),
        (Method::GET, format!("{webhook_path}/logs/{log}"), None, "AGENT_NOT_FOUND"),
        (Method::POST, format!("{webhook_path}/logs/{log}/retry"), None, "AGENT_NOT_FOUND"),
        (
            Method::POST,
            format!("{webhook_path}/recover"),
            Some(json!({"since": 0})),
            "AGENT_NOT_FOUND",
        ),
        (Method::GET, format!("{webhook_path}/recover/{recovery}"), None, "AGENT_NOT_FOUND"),
    ];
    for (method, path, body, code) in cases {
        let mut request = app.client.request(method.clone(), app.url(&path)).bearer_auth(&intruder);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let (status, response) = send(request).await;
        assert_error(status, &response, 404, code);
        assert!(!response.to_string().contains(&webhook), "{method} {path} leaked: {response}");
        assert!(!response.to_string().contains(&log), "{method} {path} leaked: {response}");
    }
    // The owner still sees everything unchanged.
    let (status, owned) = app.call(Method::GET, &webhook_path, None).await;
    assert_eq!(status, 200);
    assert_eq!(owned["data"]["enabled"], true);
    assert_eq!(owned["data"]["name"], "Primary");
}
