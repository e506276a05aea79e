//! The logs API: listing newest first with filters, numbered and keyset pages, one log with its
//! attempts, and the 404s.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::backend_tests;
use crate::harness::{assert_error, Backend, TestApp};
use crate::receiver::{Receiver, Reply};

backend_tests!(
    logs_list_newest_first_with_filters_and_both_kinds_of_pages,
    log_lookups_are_404_for_unknown_or_foreign_ids,
    a_listing_leaves_out_payloads_over_16_kib_and_the_log_itself_has_them,
);

async fn logs_list_newest_first_with_filters_and_both_kinds_of_pages(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let receiver = Receiver::start().await;
    let agent = app.create_agent().await;
    let webhook = app
        .create_webhook(&agent, json!({"webhook_url": receiver.url("/"), "events": ["call.completed", "call.ended"], "max_retries": 0}))
        .await;
    let webhook_id = webhook["id"].as_str().unwrap();
    receiver.script([Reply::status(500)]);
    let mut log_ids = Vec::new();
    for i in 0..5 {
        let event = if i == 4 { "call.ended" } else { "call.completed" };
        let accepted = app
            .ingest(&agent, json!({"event": event, "call_id": format!("c_{i}"), "data": {"i": i}}))
            .await;
        log_ids.push(accepted["logs"][0]["log_id"].as_str().unwrap().to_string());
        receiver.wait_for(i + 1, Duration::from_secs(10)).await;
    }
    app.wait_for_log(&agent, webhook_id, &log_ids[0], "failed").await;
    app.wait_for_log(&agent, webhook_id, &log_ids[4], "success").await;
    let base = format!("/api/v1/agents/{agent}/webhooks/{webhook_id}/logs");

    let (status, page) = app.call(Method::GET, &base, None).await;
    assert_eq!(status, 200, "{page}");
    let ids: Vec<&str> = page["data"]["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["id"].as_str().unwrap())
        .collect();
    let newest_first: Vec<&str> = log_ids.iter().rev().map(String::as_str).collect();
    assert_eq!(ids, newest_first);
    assert_eq!(
        page["data"]["pagination"],
        json!({"current_page": 1, "per_page": 25, "total": 5, "last_page": 1, "total_estimated": false})
    );
    let log = &page["data"]["logs"][0];
    for field in [
        "id",
        "webhook_id",
        "event",
        "attempt",
        "status",
        "http_status",
        "request_payload",
        "response_body",
        "response_headers",
        "duration_ms",
        "delivered_at",
        "error",
        "created_at",
        "event_id",
        "call_id",
        "url",
        "original_log_id",
        "next_attempt_at",
    ] {
        assert!(log.get(field).is_some(), "log lacks {field}: {log}");
    }

    let query = |q: &str| format!("{base}?{q}");
    let (_, failed) = app.call(Method::GET, &query("status=failed"), None).await;
    assert_eq!(failed["data"]["logs"].as_array().unwrap().len(), 1);
    assert_eq!(failed["data"]["logs"][0]["id"], log_ids[0].as_str());
    let (_, ended) = app.call(Method::GET, &query("event=call.ended"), None).await;
    assert_eq!(ended["data"]["pagination"]["total"], 1);
    let (_, by_call) = app.call(Method::GET, &query("call_id=c_2"), None).await;
    assert_eq!(by_call["data"]["logs"][0]["id"], log_ids[2].as_str());
    let (_, future) = app.call(Method::GET, &query("since=2999-01-01T00:00:00Z"), None).await;
    assert_eq!(future["data"]["logs"], json!([]));
    let (_, past) = app.call(Method::GET, &query("until=2000-01-01T00:00:00Z"), None).await;
    assert_eq!(past["data"]["pagination"]["total"], 0);
    let (_, window) = app.call(Method::GET, &query("since=0&until=4102444800"), None).await;
    assert_eq!(window["data"]["pagination"]["total"], 5);

    // Numbered pages and keyset pages walk the same order.
    let (_, page2) = app.call(Method::GET, &query("page=2&per_page=2"), None).await;
    assert_eq!(page2["data"]["logs"][0]["id"], newest_first[2]);
    assert_eq!(page2["data"]["pagination"]["last_page"], 3);
    let mut walked = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor {
            Some(c) => format!("per_page=2&cursor={c}"),
            None => "per_page=2".into(),
        };
        let (status, body) = app.call(Method::GET, &query(&q), None).await;
        assert_eq!(status, 200);
        walked.extend(
            body["data"]["logs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l["id"].as_str().unwrap().to_string()),
        );
        match body["data"]["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(walked, newest_first);

    for bad in ["status=lost", "since=yesterday", "until=x", "cursor=abc", "per_page=101", "page=0"]
    {
        let (status, body) = app.call(Method::GET, &query(bad), None).await;
        assert_error(status, &body, 422, "VALIDATION_FAILED");
    }
}

async fn log_lookups_are_404_for_unknown_or_foreign_ids(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let receiver = Receiver::start().await;
    let agent = app.create_agent().await;
    let webhook = app.create_webhook(&agent, json!({"webhook_url": receiver.url("/")})).await;
    let webhook_id = webhook["id"].as_str().unwrap();
    let second = app
        .create_webhook(
            &agent,
            json!({"webhook_url": receiver.url("/2"), "events": ["call.ended"]}),
        )
        .await;
    let accepted = app.ingest(&agent, json!({"event": "call.completed", "data": {}})).await;
    let log_id = accepted["logs"][0]["log_id"].as_str().unwrap();
    let base = format!("/api/v1/agents/{agent}/webhooks");
    let (status, _) =
        app.call(Method::GET, &format!("{base}/{webhook_id}/logs/{log_id}"), None).await;
    assert_eq!(status, 200);
    let cases = [
        (format!("{base}/{webhook_id}/logs/{}", uuid::Uuid::new_v4()), "LOG_NOT_FOUND"),
        (format!("{base}/{webhook_id}/logs/not-an-id"), "LOG_NOT_FOUND"),
        (format!("{base}/{}/logs/{log_id}", second["id"].as_str().unwrap()), "LOG_NOT_FOUND"),
        (format!("{base}/{}/logs", uuid::Uuid::new_v4()), "WEBHOOK_NOT_FOUND"),
    ];
    for (path, code) in cases {
        let (status, body) = app.call(Method::GET, &path, None).await;
        assert_error(status, &body, 404, code);
    }
    let intruder = app.other_org_key().await;
    for path in [
        format!("{base}/{webhook_id}/logs"),
        format!("{base}/{webhook_id}/logs/{log_id}"),
        format!("{base}/{webhook_id}/test"),
    ] {
        let method = if path.ends_with("test") { Method::POST } else { Method::GET };
        let (status, body) =
            crate::harness::send(app.client.request(method, app.url(&path)).bearer_auth(&intruder))
                .await;
        assert_error(status, &body, 404, "AGENT_NOT_FOUND");
    }
}

/// A listing of 100 logs stays bounded whatever the events weigh: a payload over 16 KiB is
/// `null` there, with its size; reading the log gives it whole.
async fn a_listing_leaves_out_payloads_over_16_kib_and_the_log_itself_has_them(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let receiver = Receiver::start().await;
    let agent = app.create_agent().await;
    let webhook = app.create_webhook(&agent, json!({"webhook_url": receiver.url("/")})).await;
    let webhook_id = webhook["id"].as_str().unwrap();
    let big = "x".repeat(20 * 1024);
    let mut log_ids = Vec::new();
    for data in [json!({"note": big}), json!({"note": "small"})] {
        let accepted = app.ingest(&agent, json!({"event": "call.completed", "data": data})).await;
        let log_id = accepted["logs"][0]["log_id"].as_str().unwrap().to_string();
        app.wait_for_log(&agent, webhook_id, &log_id, "success").await;
        log_ids.push(log_id);
    }
    let base = format!("/api/v1/agents/{agent}/webhooks/{webhook_id}/logs");
    let (status, listing) = app.call(Method::GET, &base, None).await;
    assert_eq!(status, 200, "{listing}");
    let logs = listing["data"]["logs"].as_array().unwrap();
    let listed = |id: &str| logs.iter().find(|l| l["id"] == id).unwrap().clone();
    let (big_log, small_log) = (listed(&log_ids[0]), listed(&log_ids[1]));
    assert_eq!(big_log["request_payload"], Value::Null);
    assert!(big_log["request_payload_bytes"].as_i64().unwrap() > 20 * 1024, "{big_log}");
    assert_eq!(small_log["request_payload"], json!({"note": "small"}));
    assert_eq!(small_log["request_payload_bytes"], json!({"note": "small"}).to_string().len());

    let (status, detail) = app.call(Method::GET, &format!("{base}/{}", log_ids[0]), None).await;
    assert_eq!(status, 200, "{detail}");
    assert_eq!(detail["data"]["request_payload"]["note"].as_str().map(str::len), Some(big.len()));
}
