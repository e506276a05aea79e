use reqwest::Method;
use serde_json::json;

use crate::backend_tests;
use crate::harness::{assert_error, send, Backend, TestApp};

backend_tests!(
    malformed_bodies_are_400_invalid_json_in_the_envelope,
    oversized_bodies_are_413_in_the_envelope,
    unknown_routes_malformed_ids_and_wrong_methods_get_the_envelope,
    health_and_readiness_answer,
);

async fn malformed_bodies_are_400_invalid_json_in_the_envelope(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let agent = app.create_agent().await;
    let bodies: [&[u8]; 6] =
        [b"{", b"", b"not json", b"{\"name\": \"a\"} {}", b"{\"name\": \"\xff\xfe\"}", b"[1,"];
    for path in ["/api/v1/agents".to_string(), format!("/api/v1/agents/{agent}/webhooks")] {
        for body in bodies {
            let request = app
                .request(Method::POST, &path)
                .header("content-type", "application/json")
                .body(body.to_vec());
            let (status, response) = send(request).await;
            assert_error(status, &response, 400, "INVALID_JSON");
        }
    }
    // Valid JSON of the wrong shape is a validation error on the body.
    for body in [json!([]), json!("name"), json!(null), json!(3)] {
        let (status, response) = app.call(Method::POST, "/api/v1/agents", Some(body)).await;
        assert_error(status, &response, 422, "VALIDATION_FAILED");
    }
    // A missing content type is accepted: curl -d sends a form type by default.
    let request = app.request(Method::POST, "/api/v1/agents").body(r#"{"name": "plain"}"#);
    let (status, response) = send(request).await;
    assert_eq!(status, 201, "{response}");
}

async fn oversized_bodies_are_413_in_the_envelope(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let huge = format!(r#"{{"name": "{}"}}"#, "a".repeat(1024 * 1024 + 1));
    let request = app.request(Method::POST, "/api/v1/agents").body(huge);
    let (status, response) = send(request).await;
    assert_error(status, &response, 413, "PAYLOAD_TOO_LARGE");
}

async fn unknown_routes_malformed_ids_and_wrong_methods_get_the_envelope(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let agent = app.create_agent().await;
    let unknown = uuid::Uuid::new_v4();
    let cases = [
        ("/api/v1/nope".to_string(), "NOT_FOUND"),
        ("/api/v1/agents/not-a-uuid".to_string(), "AGENT_NOT_FOUND"),
        (format!("/api/v1/agents/{unknown}"), "AGENT_NOT_FOUND"),
        (format!("/api/v1/agents/{agent}/webhooks/123"), "WEBHOOK_NOT_FOUND"),
        (format!("/api/v1/agents/{agent}/webhooks/{unknown}"), "WEBHOOK_NOT_FOUND"),
        (format!("/api/v1/agents/{unknown}/webhooks/{unknown}"), "AGENT_NOT_FOUND"),
        ("/api/v1/agents/%FF%FE".to_string(), "AGENT_NOT_FOUND"),
    ];
    for (path, code) in cases {
        let (status, body) = app.call(Method::GET, &path, None).await;
        assert_error(status, &body, 404, code);
    }
    for (method, path) in [
        (Method::PATCH, "/api/v1/agents".to_string()),
        (Method::DELETE, "/api/v1/agents".to_string()),
        (Method::POST, format!("/api/v1/agents/{agent}")),
        (Method::GET, format!("/api/v1/agents/{agent}/webhooks/{unknown}/toggle")),
        (Method::POST, "/healthz".to_string()),
    ] {
        let (status, body) = app.call(method, &path, None).await;
        assert_error(status, &body, 405, "METHOD_NOT_ALLOWED");
    }
}

/// Too many or too large headers are a 431 (in the envelope when the HTTP layer lets the request
/// through to webhookd), and the server goes on.
#[tokio::test]
async fn oversized_headers_are_431() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let mut request = app.request(Method::GET, "/api/v1/agents");
    for i in 0..150 {
        request = request.header(format!("x-filler-{i}"), "v");
    }
    // More than 100 headers: the HTTP parser itself answers 431.
    assert_eq!(request.send().await.unwrap().status().as_u16(), 431);
    let huge = "a".repeat(64 * 1024);
    let (status, body) =
        send(app.request(Method::GET, "/api/v1/agents").header("x-huge", huge)).await;
    assert_error(status, &body, 431, "HEADERS_TOO_LARGE");
    let (status, _) = app.call(Method::GET, "/api/v1/agents", None).await;
    assert_eq!(status, 200, "the server still answers");
}

async fn health_and_readiness_answer(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (status, body) = send(app.client.get(app.url("/healthz"))).await;
    assert_eq!((status, body), (200, json!({"status": "ok"})));
    let (status, body) = send(app.client.get(app.url("/readyz"))).await;
    assert_eq!((status, body), (200, json!({"status": "ready"})));
}
