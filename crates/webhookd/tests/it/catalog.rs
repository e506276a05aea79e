//! The event catalog (SPEC §10): schemas checked at ingestion, `/event-types`, the OpenAPI
//! `webhooks`, wildcard subscriptions and content filters.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use webhookd::app::{open_sealed_store, App};
use webhookd::config::Config;

use crate::backend_tests;
use crate::harness::{assert_error, send, test_config, Backend, TestApp};
use crate::process::webhookd;
use crate::receiver::{Receiver, Reply};

backend_tests!(
    data_that_breaks_its_schema_is_a_422_keyed_by_pointer_and_stores_nothing,
    a_batch_refuses_items_that_break_their_schema_and_stores_the_rest,
    event_types_lists_the_catalog_with_schemas_and_examples,
    wildcards_reach_every_matching_type_including_types_added_later,
    an_event_that_fails_a_filter_makes_no_log_and_the_webhook_is_marked_filtered,
    an_invalid_filter_is_a_422_naming_its_path_and_null_clears_it,
    manual_redelivery_ignores_the_filter,
);

/// The catalog shipped in `examples/`.
fn example_catalog() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/event-catalog.yaml"))
}

async fn spawn_with_catalog(backend: Backend) -> TestApp {
    TestApp::spawn_with(backend, |config| config.event_catalog = Some(example_catalog())).await
}

fn id(value: &Value) -> String {
    value["id"].as_str().unwrap().to_string()
}

/// A `call.completed` body that matches the example catalog's schema.
fn completed(duration: Value) -> Value {
    json!({
        "call_id": "c_1",
        "from": "+14155550123",
        "to": "+14155550199",
        "started_at": "2026-03-02T15:04:05Z",
        "ended_at": "2026-03-02T15:09:47Z",
        "duration": duration,
        "status": "completed",
        "tags": ["vip"]
    })
}

async fn logs_of(app: &TestApp, agent: &str, webhook: &Value) -> Vec<Value> {
    let path = format!("/api/v1/agents/{agent}/webhooks/{}/logs", id(webhook));
    let (status, body) = app.call(Method::GET, &path, None).await;
    assert_eq!(status, 200, "{body}");
    body["data"]["logs"].as_array().unwrap().clone()
}

async fn data_that_breaks_its_schema_is_a_422_keyed_by_pointer_and_stores_nothing(
    backend: Backend,
) {
    let app = spawn_with_catalog(backend).await;
    let receiver = Receiver::start().await;
    let agent = app.create_agent().await;
    let webhook = app.create_webhook(&agent, json!({"webhook_url": receiver.url("/")})).await;
    let path = format!("/api/v1/agents/{agent}/events");

    let mut bad = completed(json!("long"));
    bad.as_object_mut().unwrap().remove("to");
    bad["started_at"] = json!("yesterday");
    let event = json!({"event": "call.completed", "call_id": "c_1", "data": bad});
    let (status, body) = app.call(Method::POST, &path, Some(event)).await;
    assert_error(status, &body, 422, "VALIDATION_FAILED");
    let errors = &body["errors"];
    assert!(errors["data/duration"][0].as_str().unwrap().contains("integer"), "{body}");
    assert!(errors["data"][0].as_str().unwrap().contains("\"to\""), "{body}");
    assert!(errors["data/started_at"][0].as_str().unwrap().contains("date-time"), "{body}");
    assert!(!body.to_string().contains("long"), "the value is not echoed: {body}");
    assert!(logs_of(&app, &agent, &webhook).await.is_empty(), "nothing was stored");

    // A valid event is accepted and delivered byte for byte; a type without a schema takes
    // anything.
    let data = completed(json!(342));
    let accepted = app
        .ingest(&agent, json!({"event": "call.completed", "call_id": "c_1", "data": data}))
        .await;
    let received = receiver.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(received[0].json(), data);
    assert_eq!(accepted["filtered"], json!([]));
    app.ingest(&agent, json!({"event": "webhook.test", "data": {"anything": true}})).await;
}

async fn a_batch_refuses_items_that_break_their_schema_and_stores_the_rest(backend: Backend) {
    let app = spawn_with_catalog(backend).await;
    let agent = app.create_agent().await;
    let webhook = app.create_webhook(&agent, json!({"enabled": false})).await;
    let batch = json!({"events": [
        {"event": "call.completed", "data": completed(json!(30))},
        {"event": "call.completed", "data": completed(json!(-1))},
        {"event": "call.ended", "data": {"call_id": "c_1", "ended_at": "2026-03-02T15:09:47Z",
            "duration": 3, "end_reason": "boredom"}},
    ]});
    let (status, body) =
        app.call(Method::POST, &format!("/api/v1/agents/{agent}/events/batch"), Some(batch)).await;
    assert_eq!(status, 202, "{body}");
    let data = &body["data"];
    assert_eq!((data["accepted"].as_u64(), data["failed"].as_u64()), (Some(1), Some(2)));
    let results = data["results"].as_array().unwrap();
    assert_eq!(results[0]["success"], true);
    assert_eq!(results[1]["code"], "VALIDATION_FAILED");
    assert!(results[1]["errors"]["data/duration"][0].as_str().unwrap().contains("minimum"));
    assert!(results[2]["errors"]["data/end_reason"][0].is_string(), "{body}");
    assert_eq!(logs_of(&app, &agent, &webhook).await.len(), 1, "only the valid item is stored");
}

async fn event_types_lists_the_catalog_with_schemas_and_examples(backend: Backend) {
    let app = TestApp::spawn_with(backend, |config| {
        config.event_catalog = Some(example_catalog());
        config.extra_event_types = vec!["sms.failed=An SMS could not be sent".into()];
    })
    .await;
    let (status, body) = app.call(Method::GET, "/api/v1/event-types", None).await;
    assert_eq!(status, 200, "{body}");
    let types = body["data"]["event_types"].as_array().unwrap();
    let by_name = |name: &str| types.iter().find(|t| t["name"] == name).unwrap().clone();
    let completed = by_name("call.completed");
    assert_eq!(completed["schema"]["properties"]["duration"]["type"], "integer");
    assert_eq!(completed["example"]["duration"], 342);
    assert!(completed["description"].as_str().unwrap().contains("post-call"));
    assert_eq!(by_name("sms.sent")["schema"]["required"][0], "message_id", "added by the file");
    let extra = by_name("sms.failed");
    assert_eq!((&extra["schema"], &extra["example"]), (&Value::Null, &Value::Null));
    assert_eq!(by_name("webhook.test")["schema"], Value::Null, "built in, left as it was");
    let (status, _) = send(app.client.get(app.url("/api/v1/event-types"))).await;
    assert_eq!(status, 401, "the catalog is behind the API key like the rest");
}

/// Another API node on `app`'s database, with its own configuration; its base URL.
async fn api_node(app: &TestApp, configure: impl FnOnce(&mut Config)) -> (String, App) {
    let mut config = test_config(app.db());
    configure(&mut config);
    let store = open_sealed_store(&app.db().url, config.secret_key.as_deref()).await.unwrap();
    let node = App::start(&config, store).await.unwrap();
    (format!("http://{}", node.local_addr().unwrap()), node)
}

async fn wildcards_reach_every_matching_type_including_types_added_later(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let receiver = Receiver::start().await;
    let agent = app.create_agent().await;
    let hook =
        |path: &str, events: Value| json!({"webhook_url": receiver.url(path), "events": events});
    let calls = app.create_webhook(&agent, hook("/calls", json!(["call.*"]))).await;
    let all = app.create_webhook(&agent, hook("/all", json!(["*", "call.ended"]))).await;
    assert_eq!(calls["events"], json!(["call.*"]));
    for (events, expected) in
        [(json!(["sms.*"]), "matches no event type"), (json!(["call*"]), "wildcard")]
    {
        let body = json!({"name": "x", "webhook_url": receiver.url("/"), "events": events});
        let (status, body) =
            app.call(Method::POST, &format!("/api/v1/agents/{agent}/webhooks"), Some(body)).await;
        assert_error(status, &body, 422, "VALIDATION_FAILED");
        assert!(body["errors"]["events"][0].as_str().unwrap().contains(expected), "{body}");
    }

    let accepted = app.ingest(&agent, json!({"event": "call.ended", "data": {}})).await;
    assert_eq!(accepted["logs"].as_array().unwrap().len(), 2, "{accepted}");
    let accepted = app.ingest(&agent, json!({"event": "recording.ready", "data": {}})).await;
    let webhooks: Vec<&Value> =
        accepted["logs"].as_array().unwrap().iter().map(|l| &l["webhook_id"]).collect();
    assert_eq!(webhooks, [&all["id"]], "call.* does not match recording.ready");

    // A node whose catalog has a new call type: both subscriptions get it without an edit.
    let (base, node) = api_node(&app, |config| {
        config.extra_event_types = vec!["call.analyzed=Post-call analysis is ready".into()];
    })
    .await;
    let request = app
        .client
        .post(format!("{base}/api/v1/agents/{agent}/events"))
        .bearer_auth(&app.api_key)
        .json(&json!({"event": "call.analyzed", "data": {"score": 4}}));
    let (status, body) = send(request).await;
    assert_eq!(status, 202, "{body}");
    let mut reached: Vec<String> = body["data"]["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|log| log["webhook_id"].as_str().unwrap().to_string())
        .collect();
    reached.sort();
    let mut expected = vec![id(&calls), id(&all)];
    expected.sort();
    assert_eq!(reached, expected);
    receiver.wait_for(5, Duration::from_secs(10)).await;
    node.shutdown_token().cancel();
}

async fn an_event_that_fails_a_filter_makes_no_log_and_the_webhook_is_marked_filtered(
    backend: Backend,
) {
    let app = spawn_with_catalog(backend).await;
    let receiver = Receiver::start().await;
    let agent = app.create_agent().await;
    let filter = json!({"status": "completed", "duration": {"$gte": 30},
        "$or": [{"agent.tier": "gold"}, {"tags": {"$contains": "vip"}}]});
    let filtered = app
        .create_webhook(&agent, json!({"webhook_url": receiver.url("/long"), "filter": filter}))
        .await;
    assert_eq!(filtered["filter"], filter, "read back as given");
    let plain = app.create_webhook(&agent, json!({"webhook_url": receiver.url("/all")})).await;
    assert_eq!(plain["filter"], Value::Null);

    let short =
        app.ingest(&agent, json!({"event": "call.completed", "data": completed(json!(12))})).await;
    assert_eq!(short["filtered"], json!([id(&filtered)]), "{short}");
    let logs = short["logs"].as_array().unwrap();
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0]["webhook_id"], plain["id"]);

    let long =
        app.ingest(&agent, json!({"event": "call.completed", "data": completed(json!(45))})).await;
    assert_eq!(long["filtered"], json!([]));
    assert_eq!(long["logs"].as_array().unwrap().len(), 2);

    let received = receiver.wait_for(3, Duration::from_secs(10)).await;
    let to_long: Vec<&crate::receiver::Received> =
        received.iter().filter(|r| r.path == "/long").collect();
    assert_eq!(to_long.len(), 1);
    assert_eq!(to_long[0].json()["duration"], 45);
    assert_eq!(logs_of(&app, &agent, &filtered).await.len(), 1, "the short call made no log");
    assert_eq!(logs_of(&app, &agent, &plain).await.len(), 2);
}

async fn an_invalid_filter_is_a_422_naming_its_path_and_null_clears_it(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let agent = app.create_agent().await;
    let base = format!("/api/v1/agents/{agent}/webhooks");
    for (filter, path) in [
        (json!({"duration": {"$gte": true}}), "filter.duration.$gte"),
        (json!({"$or": [{"a": 1}, {"b": {"$regex": "x"}}]}), "filter.$or[1].b.$regex"),
        (json!(["status"]), "filter"),
    ] {
        let body = json!({"name": "x", "webhook_url": "https://example.com/h",
            "events": ["call.completed"], "filter": filter});
        let (status, body) = app.call(Method::POST, &base, Some(body)).await;
        assert_error(status, &body, 422, "VALIDATION_FAILED");
        assert!(body["errors"][path].is_array(), "{path}: {body}");
    }
    let webhook = app.create_webhook(&agent, json!({"filter": {"status": "completed"}})).await;
    let path = format!("{base}/{}", id(&webhook));
    let (status, body) = app.call(Method::PUT, &path, Some(json!({"name": "Renamed"}))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["filter"], json!({"status": "completed"}), "kept when not given");
    let (_, body) = app.call(Method::PUT, &path, Some(json!({"filter": null}))).await;
    assert_eq!(body["data"]["filter"], Value::Null);
    let (_, body) = app.call(Method::GET, &path, None).await;
    assert_eq!(body["data"]["filter"], Value::Null);
}

async fn manual_redelivery_ignores_the_filter(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let receiver = Receiver::start().await;
    let agent = app.create_agent().await;
    let webhook = app
        .create_webhook(
            &agent,
            json!({"webhook_url": receiver.url("/"), "max_retries": 0,
                "filter": {"status": "completed"}}),
        )
        .await;
    receiver.script([Reply::status(500)]);
    let accepted = app
        .ingest(&agent, json!({"event": "call.completed", "data": {"status": "completed"}}))
        .await;
    let log_id = accepted["logs"][0]["log_id"].as_str().unwrap().to_string();
    app.wait_for_log(&agent, &id(&webhook), &log_id, "failed").await;

    // The filter now refuses that event; retry and recover still send it.
    let base = format!("/api/v1/agents/{agent}/webhooks/{}", id(&webhook));
    let (status, _) =
        app.call(Method::PUT, &base, Some(json!({"filter": {"status": "never"}}))).await;
    assert_eq!(status, 200);
    let (status, body) = app.call(Method::POST, &format!("{base}/logs/{log_id}/retry"), None).await;
    assert_eq!(status, 202, "{body}");
    let retried = body["data"]["log_id"].as_str().unwrap().to_string();
    app.wait_for_log(&agent, &id(&webhook), &retried, "success").await;
    let received = receiver.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(received[1].json(), json!({"status": "completed"}));
}

#[tokio::test]
async fn openapi_describes_every_event_type_under_webhooks() {
    let app = spawn_with_catalog(Backend::Sqlite).await;
    let (status, doc) = send(app.client.get(app.url("/openapi.json"))).await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1."), "{}", doc["openapi"]);
    let webhooks = doc["webhooks"].as_object().unwrap();
    let (_, body) = app.call(Method::GET, "/api/v1/event-types", None).await;
    let types = body["data"]["event_types"].as_array().unwrap();
    assert_eq!(webhooks.len(), types.len(), "one entry per event type");
    for event_type in types {
        let name = event_type["name"].as_str().unwrap();
        let operation = &webhooks[name]["post"];
        assert_eq!(operation["description"], event_type["description"], "{name}");
        let media = &operation["requestBody"]["content"]["application/json"];
        let any = json!({});
        let schema = if event_type["schema"].is_null() { &any } else { &event_type["schema"] };
        assert_eq!(&media["schema"], schema, "{name}");
        assert_eq!(media["example"], event_type["example"], "{name}");
        let headers: Vec<&str> = operation["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["in"] == "header" && p["required"] == true)
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        for header in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
            assert!(headers.contains(&header), "{name} lacks {header}");
        }
        assert!(operation["responses"]["2XX"].is_object());
    }
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths["/api/v1/event-types"]["get"].is_object());
}

#[test]
fn a_bad_catalog_stops_serve_with_one_line_naming_the_file_and_the_type() {
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", dir.path().join("c.db").display());
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let cases = [
        (
            write(
                "schema.yaml",
                "- name: call.completed\n  description: d\n  schema: {type: nope}\n",
            ),
            "event type \"call.completed\": schema is not a valid JSON Schema",
        ),
        (write("broken.yaml", "- name: [\n"), "not a YAML list"),
        (write("broken.json", "[{\"name\": \"a\"}]"), "missing field `description`"),
        (
            write(
                "example.json",
                r#"[{"name": "sms.sent", "description": "d",
                "schema": {"required": ["to"]}, "example": {}}]"#,
            ),
            "event type \"sms.sent\": example does not match",
        ),
        (dir.path().join("absent.yaml").display().to_string(), "cannot read it"),
    ];
    for (file, expected) in cases {
        let output = webhookd()
            .args(["serve", "--listen", "127.0.0.1:0", "--database", &database])
            .args(["--event-catalog", &file])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1), "{file}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(stderr.trim_end().lines().count(), 1, "{file}: {stderr}");
        assert!(stderr.starts_with(&format!("error: --event-catalog {file}: ")), "{stderr}");
        assert!(stderr.contains(expected), "{file}: {stderr}");
    }
    assert!(!dir.path().join("c.db").exists(), "a bad catalog stops before the database");
}
