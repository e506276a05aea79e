use reqwest::Method;
use serde_json::{json, Value};

use crate::backend_tests;
use crate::harness::{assert_error, Backend, TestApp};

backend_tests!(
    a_webhook_is_created_with_talkover_defaults_and_its_secret_shown_once,
    webhooks_are_listed_with_the_available_events,
    partial_update_changes_only_the_given_fields,
    every_invalid_field_is_reported_by_name,
    authorization_schemes_store_credentials_that_are_never_read_back,
    toggle_flips_enabled_and_says_so,
    secrets_are_read_and_rotated_only_through_the_secret_endpoints,
    deleting_a_webhook_makes_it_unknown,
    scheduling_fields_are_validated_read_back_and_editable,
    text_with_control_characters_is_refused_on_every_backend,
);

async fn a_webhook_is_created_with_talkover_defaults_and_its_secret_shown_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let agent = app.create_agent().await;
    let created = app.create_webhook(&agent, json!({})).await;
    assert_eq!(created["agent_id"], agent.as_str());
    assert_eq!(created["name"], "Primary");
    assert_eq!(created["webhook_url"], "https://example.com/hooks");
    assert_eq!(created["events"], json!(["call.completed"]));
    assert_eq!(created["events_count"], 1);
    assert_eq!(created["timeout"], 30);
    assert_eq!(created["max_retries"], 3);
    assert_eq!(created["enabled"], true);
    assert_eq!(created["status"], "active");
    assert_eq!(created["http_method"], "POST");
    assert_eq!(created["authorization_scheme"], "none");
    assert_eq!(created["custom_headers"], json!([]));
    assert_eq!(created["rate_limit"], Value::Null);
    assert_eq!(created["max_concurrency"], Value::Null);
    assert_eq!(created["ordering"], "none");
    assert_eq!(created["circuit_state"], "closed");
    assert_eq!(created["circuit_retry_at"], Value::Null);
    assert_eq!(created["disabled_reason"], Value::Null);
    assert!(created["signing_secret"].as_str().unwrap().starts_with("whsec_"));

    let path = format!("/api/v1/agents/{agent}/webhooks/{}", created["id"].as_str().unwrap());
    let (status, read) = app.call(Method::GET, &path, None).await;
    assert_eq!(status, 200);
    assert!(read["data"].get("signing_secret").is_none(), "{read}");
    assert!(read["data"].get("webhook_secret").is_none(), "{read}");

    let own = app.create_webhook(&agent, json!({"webhook_secret": "my-own-secret"})).await;
    assert_eq!(own["signing_secret"], "my-own-secret");
}

async fn webhooks_are_listed_with_the_available_events(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let agent = app.create_agent().await;
    let first = app.create_webhook(&agent, json!({"name": "one"})).await;
    let second = app.create_webhook(&agent, json!({"name": "two"})).await;
    let (status, list) =
        app.call(Method::GET, &format!("/api/v1/agents/{agent}/webhooks"), None).await;
    assert_eq!(status, 200);
    let webhooks = list["data"]["webhooks"].as_array().unwrap();
    assert_eq!(webhooks.len(), 2);
    assert_eq!(webhooks[0]["id"], first["id"]);
    assert_eq!(webhooks[1]["id"], second["id"]);
    assert!(webhooks.iter().all(|w| w.get("signing_secret").is_none()));
    let events = list["data"]["available_events"].as_object().unwrap();
    for event in [
        "call.started",
        "call.ended",
        "call.completed",
        "call.failed",
        "call.transferred",
        "voicemail.detected",
        "recording.ready",
        "transcript.ready",
        "webhook.test",
    ] {
        assert!(events[event].as_str().is_some_and(|d| !d.is_empty()), "{event}");
    }
}

async fn partial_update_changes_only_the_given_fields(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let agent = app.create_agent().await;
    let created = app
        .create_webhook(
            &agent,
            json!({"timeout": 10, "custom_headers": [{"key": "X-Team", "value": "a"}]}),
        )
        .await;
    let path = format!("/api/v1/agents/{agent}/webhooks/{}", created["id"].as_str().unwrap());
    let (status, updated) = app
        .call(Method::PUT, &path, Some(json!({"max_retries": 0, "http_method": "put", "events": ["call.ended", "call.started"]})))
        .await;
    assert_eq!(status, 200, "{updated}");
    let data = &updated["data"];
    assert_eq!(data["max_retries"], 0);
    assert_eq!(data["http_method"], "PUT");
    assert_eq!(data["events"], json!(["call.ended", "call.started"]));
    assert_eq!(data["timeout"], 10);
    assert_eq!(data["name"], "Primary");
    assert_eq!(data["custom_headers"], json!([{"key": "X-Team", "value": "a"}]));
    assert_eq!(updated["message"], "Webhook updated successfully");

    let (status, body) = app.call(Method::PUT, &path, Some(json!({"timeout": 500}))).await;
    assert_error(status, &body, 422, "VALIDATION_FAILED");
    let (_, unchanged) = app.call(Method::GET, &path, None).await;
    assert_eq!(unchanged["data"]["timeout"], 10);

    let (status, disabled) = app.call(Method::PUT, &path, Some(json!({"enabled": false}))).await;
    assert_eq!(status, 200);
    assert_eq!(disabled["data"]["status"], "disabled");
}

async fn every_invalid_field_is_reported_by_name(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let agent = app.create_agent().await;
    let path = format!("/api/v1/agents/{agent}/webhooks");

    let (status, body) = app.call(Method::POST, &path, Some(json!({}))).await;
    assert_error(status, &body, 422, "VALIDATION_FAILED");
    for field in ["name", "webhook_url", "events"] {
        assert!(body["errors"][field][0].is_string(), "{field}: {body}");
    }

    let long = |n: usize| "a".repeat(n);
    let cases: Vec<(Value, &str)> = vec![
        (json!({"name": ""}), "name"),
        (json!({"name": long(256)}), "name"),
        (json!({"webhook_url": "not a url"}), "webhook_url"),
        (json!({"webhook_url": "ftp://example.com/x"}), "webhook_url"),
        (json!({"webhook_url": format!("https://example.com/{}", long(490))}), "webhook_url"),
        (json!({"webhook_url": "https://user:pass@example.com/"}), "webhook_url"),
        (json!({"webhook_secret": long(256)}), "webhook_secret"),
        (json!({"webhook_secret": ""}), "webhook_secret"),
        (json!({"events": []}), "events"),
        (json!({"events": ["call.exploded"]}), "events"),
        (json!({"events": "call.completed"}), "events"),
        (json!({"timeout": 4}), "timeout"),
        (json!({"timeout": 121}), "timeout"),
        (json!({"timeout": "30"}), "timeout"),
        (json!({"timeout": 1e30}), "timeout"),
        (json!({"max_retries": -1}), "max_retries"),
        (json!({"max_retries": 11}), "max_retries"),
        (json!({"enabled": "yes"}), "enabled"),
        (json!({"http_method": "GET"}), "http_method"),
        (json!({"authorization_scheme": "magic"}), "authorization_scheme"),
        (json!({"authorization_scheme": "bearer"}), "auth_token"),
        (json!({"authorization_scheme": "basic", "auth_username": "u"}), "auth_password"),
        (json!({"authorization_scheme": "bearer", "auth_token": "a\nb"}), "auth_token"),
        (
            json!({"authorization_scheme": "api_key", "auth_token": "k", "auth_header_name": "bad header"}),
            "auth_header_name",
        ),
        (json!({"auth_token": "t"}), "authorization_scheme"),
        (json!({"custom_headers": [{"key": "Content-Type", "value": "x"}]}), "custom_headers"),
        (
            json!({"custom_headers": [{"key": "X-A", "value": "1"}, {"key": "x-a", "value": "2"}]}),
            "custom_headers",
        ),
        (json!({"custom_headers": [{"key": "X-A"}]}), "custom_headers[0]"),
        (
            json!({"custom_headers": (0..21).map(|i| json!({"key": format!("X-{i}"), "value": "v"})).collect::<Vec<_>>()}),
            "custom_headers",
        ),
        (
            json!({"authorization_scheme": "bearer", "auth_token": "t", "custom_headers": [{"key": "Authorization", "value": "x"}]}),
            "custom_headers",
        ),
    ];
    for (fields, field) in cases {
        let mut body =
            json!({"name": "n", "webhook_url": "https://example.com", "events": ["call.ended"]});
        crate::harness::merge(&mut body, fields.clone());
        let (status, response) = app.call(Method::POST, &path, Some(body)).await;
        assert_error(status, &response, 422, "VALIDATION_FAILED");
        assert!(
            response["errors"][field][0].is_string(),
            "{fields} should fail on {field}: {response}"
        );
    }
    let (_, list) = app.call(Method::GET, &path, None).await;
    assert_eq!(list["data"]["webhooks"], json!([]), "no invalid webhook was stored");
}

async fn authorization_schemes_store_credentials_that_are_never_read_back(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let agent = app.create_agent().await;
    let created = app
        .create_webhook(&agent, json!({"authorization_scheme": "basic", "auth_username": "user", "auth_password": "hunter2"}))
        .await;
    assert_eq!(created["authorization_scheme"], "basic");
    assert!(!created.to_string().contains("hunter2"));
    let path = format!("/api/v1/agents/{agent}/webhooks/{}", created["id"].as_str().unwrap());
    let (_, read) = app.call(Method::GET, &path, None).await;
    assert!(!read.to_string().contains("hunter2"));
    let (_, list) = app.call(Method::GET, &format!("/api/v1/agents/{agent}/webhooks"), None).await;
    assert!(!list.to_string().contains("hunter2"));

    let (status, updated) = app
        .call(Method::PUT, &path, Some(json!({"authorization_scheme": "api_key", "auth_token": "k-123", "auth_header_name": "X-Key"})))
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["data"]["authorization_scheme"], "api_key");
    assert!(!updated.to_string().contains("k-123"));
    let (status, none) =
        app.call(Method::PUT, &path, Some(json!({"authorization_scheme": "none"}))).await;
    assert_eq!(status, 200);
    assert_eq!(none["data"]["authorization_scheme"], "none");
}

async fn toggle_flips_enabled_and_says_so(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let agent = app.create_agent().await;
    let created = app.create_webhook(&agent, json!({})).await;
    let path =
        format!("/api/v1/agents/{agent}/webhooks/{}/toggle", created["id"].as_str().unwrap());
    let (status, off) = app.call(Method::PATCH, &path, None).await;
    assert_eq!(status, 200);
    assert_eq!(off["message"], "Webhook disabled");
    assert_eq!(off["data"]["enabled"], false);
    assert_eq!(off["data"]["status"], "disabled");
    let (_, on) = app.call(Method::PATCH, &path, None).await;
    assert_eq!(on["message"], "Webhook enabled");
    assert_eq!(on["data"]["status"], "active");
}

async fn secrets_are_read_and_rotated_only_through_the_secret_endpoints(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let agent = app.create_agent().await;
    let created = app.create_webhook(&agent, json!({})).await;
    let base = format!("/api/v1/agents/{agent}/webhooks/{}", created["id"].as_str().unwrap());
    let (status, secret) = app.call(Method::GET, &format!("{base}/secret"), None).await;
    assert_eq!(status, 200);
    assert_eq!(secret["data"]["signing_secret"], created["signing_secret"]);

    let (status, rotated) = app.call(Method::POST, &format!("{base}/secret/rotate"), None).await;
    assert_eq!(status, 200);
    let new_secret = rotated["data"]["signing_secret"].as_str().unwrap();
    assert_ne!(new_secret, created["signing_secret"].as_str().unwrap());
    assert!(new_secret.starts_with("whsec_"));
    assert!(rotated["data"]["previous_secret_expires_at"].is_string());
    let (_, again) = app.call(Method::GET, &format!("{base}/secret"), None).await;
    assert_eq!(again["data"]["signing_secret"], new_secret);

    let (status, replaced) =
        app.call(Method::PUT, &base, Some(json!({"webhook_secret": "chosen"}))).await;
    assert_eq!(status, 200, "{replaced}");
    assert!(!replaced.to_string().contains("chosen"));
    let (_, chosen) = app.call(Method::GET, &format!("{base}/secret"), None).await;
    assert_eq!(chosen["data"]["signing_secret"], "chosen");
}

async fn deleting_a_webhook_makes_it_unknown(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let agent = app.create_agent().await;
    let created = app.create_webhook(&agent, json!({})).await;
    let path = format!("/api/v1/agents/{agent}/webhooks/{}", created["id"].as_str().unwrap());
    let (status, deleted) = app.call(Method::DELETE, &path, None).await;
    assert_eq!(status, 200);
    assert_eq!(deleted["message"], "Webhook deleted successfully");
    for (method, suffix) in [
        (Method::GET, ""),
        (Method::DELETE, ""),
        (Method::PATCH, "/toggle"),
        (Method::GET, "/secret"),
    ] {
        let (status, body) = app.call(method, &format!("{path}{suffix}"), None).await;
        assert_error(status, &body, 404, "WEBHOOK_NOT_FOUND");
    }
}

async fn scheduling_fields_are_validated_read_back_and_editable(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let agent = app.create_agent().await;
    let created = app
        .create_webhook(&agent, json!({"rate_limit": 25, "max_concurrency": 4, "ordering": "call"}))
        .await;
    assert_eq!(
        (created["rate_limit"].clone(), created["max_concurrency"].clone()),
        (json!(25), json!(4))
    );
    assert_eq!(created["ordering"], "call");
    let path = format!("/api/v1/agents/{agent}/webhooks/{}", created["id"].as_str().unwrap());

    // Absent keeps, null clears, a value replaces.
    let (status, kept) = app.call(Method::PUT, &path, Some(json!({"name": "renamed"}))).await;
    assert_eq!(status, 200, "{kept}");
    assert_eq!(
        (kept["data"]["rate_limit"].clone(), kept["data"]["ordering"].clone()),
        (json!(25), json!("call"))
    );
    let (status, cleared) = app
        .call(
            Method::PUT,
            &path,
            Some(json!({"rate_limit": null, "max_concurrency": 10, "ordering": "none"})),
        )
        .await;
    assert_eq!(status, 200, "{cleared}");
    assert_eq!(cleared["data"]["rate_limit"], Value::Null);
    assert_eq!(cleared["data"]["max_concurrency"], 10);
    assert_eq!(cleared["data"]["ordering"], "none");
    let (_, read) = app.call(Method::GET, &path, None).await;
    assert_eq!(read["data"]["max_concurrency"], 10);

    for (field, value) in [
        ("rate_limit", json!(0)),
        ("rate_limit", json!(10_001)),
        ("max_concurrency", json!(0)),
        ("max_concurrency", json!(1_001)),
        ("ordering", json!("fifo")),
    ] {
        let (status, body) = app.call(Method::PUT, &path, Some(json!({field: value}))).await;
        assert_error(status, &body, 422, "VALIDATION_FAILED");
        assert!(body["errors"][field].is_array(), "{field}: {body}");
    }
    let (status, body) = app.call(Method::PUT, &path, Some(json!({"rate_limit": "fast"}))).await;
    assert_error(status, &body, 422, "VALIDATION_FAILED");
    assert!(body["errors"]["rate_limit"].is_array(), "{body}");
}

async fn text_with_control_characters_is_refused_on_every_backend(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (status, body) =
        app.call(Method::POST, "/api/v1/agents", Some(json!({"name": "Sales\u{0}"}))).await;
    assert_error(status, &body, 422, "VALIDATION_FAILED");
    assert!(body["errors"]["name"][0].as_str().unwrap().contains("U+0000"), "{body}");
    let agent = app.create_agent().await;
    let hooks = format!("/api/v1/agents/{agent}/webhooks");
    for bad in [
        json!({"name": "a\u{0}b", "webhook_url": "https://example.com/", "events": ["call.completed"]}),
        json!({"name": "a", "webhook_url": "https://exa\u{0}mple.com/", "events": ["call.completed"]}),
        json!({"name": "a", "webhook_url": "https://example.com/", "events": ["call.\u{0}"]}),
    ] {
        let (status, body) = app.call(Method::POST, &hooks, Some(bad.clone())).await;
        assert_error(status, &body, 422, "VALIDATION_FAILED");
    }
    let events = format!("/api/v1/agents/{agent}/events");
    for field in ["call_id", "idempotency_key"] {
        let bad = json!({"event": "call.completed", "data": {}, field: "c\u{0}"});
        let (status, body) = app.call(Method::POST, &events, Some(bad)).await;
        assert_error(status, &body, 422, "VALIDATION_FAILED");
        assert!(body["errors"][field].is_array(), "{body}");
    }
    // In a batch the bad item is reported and the good one stored.
    let batch = json!({"events": [
        {"event": "call.completed", "call_id": "c\u{0}", "data": {}},
        {"event": "call.completed", "call_id": "c_ok", "data": {"text": "NUL inside JSON data is fine: \u{0}"}},
    ]});
    let (status, body) = app.call(Method::POST, &format!("{events}/batch"), Some(batch)).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["data"]["accepted"], 1, "{body}");
    assert_eq!(body["data"]["results"][0]["success"], false, "{body}");
    let webhook = app.create_webhook(&agent, json!({})).await;
    let logs = format!("/api/v1/agents/{agent}/webhooks/{}/logs", webhook["id"].as_str().unwrap());
    for filter in ["call_id=c%00", "event=call%00"] {
        let (status, body) = app.call(Method::GET, &format!("{logs}?{filter}"), None).await;
        assert_error(status, &body, 422, "VALIDATION_FAILED");
    }
}
