//! Bland's post-call webhook endpoints: resend, create, read, and every whole-request error.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::backend_tests;
use crate::harness::{send, Backend, TestApp};
use crate::receiver::{Receiver, Reply};

backend_tests!(
    resend_goes_to_the_same_url_as_before_and_appends_a_resend_attempt,
    resend_reports_unknown_and_foreign_calls_alike_in_errors,
    whole_request_problems_are_400_invalid_parameter,
    create_sends_calls_that_never_had_a_post_call_webhook,
    get_returns_the_calls_log_or_404,
    resend_refuses_a_call_whose_webhook_is_disabled_and_sends_nothing,
    two_creates_for_one_call_at_once_send_it_once,
);

/// POSTs `body` to a Bland path with the bare `Authorization: <key>` Bland clients send.
async fn bland(app: &TestApp, path: &str, body: Value) -> (u16, Value) {
    send(app.client.post(app.url(path)).header("authorization", &app.api_key).json(&body)).await
}

async fn delivered_call(app: &TestApp, receiver: &Receiver, call: &str) -> (String, String) {
    let agent = app.create_agent().await;
    let webhook = app
        .create_webhook(&agent, json!({"webhook_url": receiver.url("/before"), "max_retries": 0}))
        .await;
    let webhook_id = webhook["id"].as_str().unwrap().to_string();
    let accepted = app.ingest(&agent, json!({"event": "call.completed", "call_id": call, "data": {"call": call, "summary": "ok"}})).await;
    app.wait_for_log(
        &agent,
        &webhook_id,
        accepted["logs"][0]["log_id"].as_str().unwrap(),
        "success",
    )
    .await;
    (agent, webhook_id)
}

async fn resend_goes_to_the_same_url_as_before_and_appends_a_resend_attempt(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let receiver = Receiver::start().await;
    let (agent, webhook) = delivered_call(&app, &receiver, "c_1").await;
    // The webhook moves; a resend still goes where the post-call webhook went before.
    app.call(
        Method::PUT,
        &format!("/api/v1/agents/{agent}/webhooks/{webhook}"),
        Some(json!({"webhook_url": receiver.url("/after")})),
    )
    .await;

    let (status, body) =
        bland(&app, "/v1/postcall/webhooks/resend", json!({"call_ids": ["c_1"]})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["errors"], Value::Null);
    let log = &body["data"][0];
    assert_eq!(body["data"].as_array().unwrap().len(), 1);
    assert_eq!(log["call_id"], "c_1");
    assert_eq!(log["payload"], json!({"call": "c_1", "summary": "ok"}));
    assert_eq!(log["url"], receiver.url("/before"));
    assert_eq!(log["user_id"], app.org_id.as_str());
    assert!(log["created_at"].is_string());
    let metadata = log["metadata"].as_array().unwrap();
    assert_eq!(metadata.len(), 2);
    assert_eq!(metadata[0]["send_type"], "spawn");
    assert_eq!(metadata[1]["send_type"], "resend");
    assert_eq!(metadata[1]["response_code"], 200);
    let response_time = metadata[1]["response_time"].as_str().unwrap();
    assert!(
        response_time.ends_with("ms")
            && response_time.trim_end_matches("ms").parse::<u64>().is_ok(),
        "{response_time}"
    );
    assert!(metadata[1]["sent_at"].is_string());
    assert!(metadata[1].get("error_message").is_some());
    let paths: Vec<String> = receiver.received().iter().map(|r| r.path.clone()).collect();
    assert_eq!(paths, ["/before", "/before"], "sent before answering, to the same URL");

    // A failing endpoint: the attempt says so; a network failure has no response code.
    receiver.script([Reply::status(500).body("down")]);
    let (_, body) = bland(&app, "/v1/postcall/webhooks/resend", json!({"call_ids": ["c_1"]})).await;
    let last = body["data"][0]["metadata"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["response_code"], 500);
    assert_eq!(last["error_message"], "HTTP 500");
}

async fn resend_reports_unknown_and_foreign_calls_alike_in_errors(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let receiver = Receiver::start().await;
    delivered_call(&app, &receiver, "c_mine").await;
    // Another organization's call, delivered too.
    let other_key = app.other_org_key().await;
    let (_, agent) = send(
        app.client
            .post(app.url("/api/v1/agents"))
            .bearer_auth(&other_key)
            .json(&json!({"name": "x"})),
    )
    .await;
    let agent = agent["data"]["id"].as_str().unwrap();
    let (_, webhook) = send(app.client.post(app.url(&format!("/api/v1/agents/{agent}/webhooks"))).bearer_auth(&other_key)
        .json(&json!({"name": "w", "webhook_url": receiver.url("/theirs"), "events": ["call.completed"]}))).await;
    let (_, accepted) = send(
        app.client
            .post(app.url(&format!("/api/v1/agents/{agent}/events")))
            .bearer_auth(&other_key)
            .json(&json!({"event": "call.completed", "call_id": "c_theirs", "data": {}})),
    )
    .await;
    receiver.wait_for(2, Duration::from_secs(10)).await;
    // Their call's log is recorded as delivered before the resend asks about it.
    let webhook = webhook["data"]["id"].as_str().unwrap();
    let log = accepted["data"]["logs"][0]["log_id"].as_str().unwrap();
    let path = format!("/api/v1/agents/{agent}/webhooks/{webhook}/logs/{log}");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, body) = send(app.client.get(app.url(&path)).bearer_auth(&other_key)).await;
        if body["data"]["status"] == "success" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "their log never succeeded: {body}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    let (status, body) = bland(
        &app,
        "/v1/postcall/webhooks/resend",
        json!({"call_ids": ["c_mine", "c_nobody", "c_theirs"]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"].as_array().unwrap().len(), 1);
    assert_eq!(body["data"][0]["call_id"], "c_mine");
    let errors = body["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2);
    assert!(errors.iter().all(|e| e["error"] == "invalid_parameter"));
    let unknown = errors[0]["message"].as_str().unwrap().replace("c_nobody", "ID");
    let foreign = errors[1]["message"].as_str().unwrap().replace("c_theirs", "ID");
    assert_eq!(unknown, foreign, "another organization's call looks exactly like an unknown one");
    // The resend of `c_mine` arrives; nothing went to their call before or with it.
    let received = receiver.wait_for(3, Duration::from_secs(10)).await;
    let resent: Vec<&str> = received.iter().skip(2).map(|r| r.path.as_str()).collect();
    assert_eq!(resent, ["/before"]);
}

async fn whole_request_problems_are_400_invalid_parameter(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let too_many: Vec<String> = (0..101).map(|i| format!("c_{i}")).collect();
    let bodies = [
        json!({}),
        json!({"call_ids": []}),
        json!({"call_ids": "c_1"}),
        json!({"call_ids": null}),
        json!({"call_ids": too_many}),
        json!({"call_ids": ["c_1", "c_1"]}),
        json!({"call_ids": [1, 2]}),
        json!({"call_ids": [""]}),
        json!([]),
    ];
    for path in ["/v1/postcall/webhooks/resend", "/v1/postcall/webhooks/create"] {
        for body in &bodies {
            let mut body = body.clone();
            if path.ends_with("create") {
                crate::harness::merge(&mut body, json!({"webhook_url": "https://example.com"}));
            }
            let (status, response) = bland(&app, path, body.clone()).await;
            assert_eq!(status, 400, "{path} {body}: {response}");
            assert_eq!(response["data"], Value::Null);
            assert_eq!(response["errors"][0]["error"], "invalid_parameter", "{response}");
            assert!(response["errors"][0]["message"].as_str().is_some_and(|m| !m.is_empty()));
        }
        let (status, response) = send(
            app.client.post(app.url(path)).header("authorization", &app.api_key).body("{oops"),
        )
        .await;
        assert_eq!(status, 400);
        assert_eq!(response["errors"][0]["error"], "invalid_parameter");
        let (status, response) =
            send(app.client.post(app.url(path)).json(&json!({"call_ids": ["c"]}))).await;
        assert_eq!(status, 401);
        assert_eq!(response["data"], Value::Null);
        assert_eq!(response["errors"][0]["error"], "unauthorized");
    }
    for url in [json!(null), json!("ftp://x"), json!(5)] {
        let mut body = json!({"call_ids": ["c_1"]});
        if !url.is_null() {
            body["webhook_url"] = url;
        }
        let (status, response) = bland(&app, "/v1/postcall/webhooks/create", body).await;
        assert_eq!(status, 400, "{response}");
        assert_eq!(response["errors"][0]["error"], "invalid_parameter");
    }
}

async fn create_sends_calls_that_never_had_a_post_call_webhook(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let receiver = Receiver::start().await;
    let agent = app.create_agent().await;
    app.ingest(
        &agent,
        json!({"event": "call.completed", "call_id": "c_bare", "data": {"call": "bare"}}),
    )
    .await;
    delivered_call(&app, &receiver, "c_hooked").await;
    let sent_before = receiver.received().len();

    let body = json!({"call_ids": ["c_bare", "c_hooked", "c_nothing"], "webhook_url": receiver.url("/created")});
    let (status, response) = bland(&app, "/v1/postcall/webhooks/create", body).await;
    assert_eq!(status, 200, "{response}");
    assert_eq!(response["data"].as_array().unwrap().len(), 1);
    let log = &response["data"][0];
    assert_eq!(log["call_id"], "c_bare");
    assert_eq!(log["url"], receiver.url("/created"));
    assert_eq!(log["payload"], json!({"call": "bare"}));
    assert_eq!(log["metadata"][0]["send_type"], "create");
    assert_eq!(log["metadata"][0]["response_code"], 200);
    assert_eq!(response["errors"].as_array().unwrap().len(), 2);
    let got = receiver.received();
    assert_eq!(got.len(), sent_before + 1);
    let created = got.last().unwrap();
    assert_eq!(created.path, "/created");
    let (_, secret) = app.call(Method::GET, "/api/v1/organization/secret", None).await;
    let secret = secret["data"]["signing_secret"].as_str().unwrap();
    assert_eq!(
        created.header("x-webhook-signature"),
        webhookd::signing::body_signature(secret, &created.body)
    );

    // Now the call has a post-call webhook: create refuses, resend works.
    let (_, again) = bland(
        &app,
        "/v1/postcall/webhooks/create",
        json!({"call_ids": ["c_bare"], "webhook_url": receiver.url("/created")}),
    )
    .await;
    assert_eq!(again["data"], json!([]));
    assert_eq!(again["errors"].as_array().unwrap().len(), 1);
    let (_, resent) =
        bland(&app, "/v1/postcall/webhooks/resend", json!({"call_ids": ["c_bare"]})).await;
    assert_eq!(resent["data"][0]["url"], receiver.url("/created"));
    assert_eq!(resent["data"][0]["metadata"][1]["send_type"], "resend");
}

async fn get_returns_the_calls_log_or_404(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let receiver = Receiver::start().await;
    delivered_call(&app, &receiver, "c_1").await;
    let get = |call: &str| {
        send(
            app.client
                .get(app.url(&format!("/v1/postcall/webhooks/{call}")))
                .header("authorization", &app.api_key),
        )
    };
    let (status, body) = get("c_1").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["errors"], Value::Null);
    assert_eq!(body["data"]["call_id"], "c_1");
    assert_eq!(body["data"]["metadata"][0]["send_type"], "spawn");
    assert_eq!(body["data"]["url"], receiver.url("/before"));
    let (status, body) = get("c_unknown").await;
    assert_eq!(status, 404);
    assert_eq!(body["data"], Value::Null);
    assert_eq!(body["errors"][0]["error"], "invalid_parameter");
    // A call id no event can have (blank) is just another unknown call.
    let (status, body) = get("%20%20").await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["errors"][0]["error"], "invalid_parameter");
    assert_eq!(body["errors"][0]["message"], "No post-call webhook exists for call   ");
    let intruder = app.other_org_key().await;
    let (status, _) = send(
        app.client.get(app.url("/v1/postcall/webhooks/c_1")).header("authorization", intruder),
    )
    .await;
    assert_eq!(status, 404);
}

async fn resend_refuses_a_call_whose_webhook_is_disabled_and_sends_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let receiver = Receiver::start().await;
    let (agent, webhook) = delivered_call(&app, &receiver, "c_off").await;
    let toggle = format!("/api/v1/agents/{agent}/webhooks/{webhook}/toggle");
    assert_eq!(app.call(Method::PATCH, &toggle, None).await.0, 200);
    let sent_before = receiver.received().len();

    let (status, body) =
        bland(&app, "/v1/postcall/webhooks/resend", json!({"call_ids": ["c_off"]})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"], json!([]));
    let errors = body["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{body}");
    assert_eq!(errors[0]["error"], "invalid_parameter");
    let message = errors[0]["message"].as_str().unwrap();
    assert!(message.contains("c_off") && message.contains("enable it"), "{message}");
    // An event ingested afterwards, for another agent's webhook on the same receiver, arrives;
    // it is the only request since the refusal.
    let later = app.create_agent().await;
    app.create_webhook(&later, json!({"webhook_url": receiver.url("/later")})).await;
    app.ingest(&later, json!({"event": "call.completed", "data": {}})).await;
    let received = receiver.wait_for(sent_before + 1, Duration::from_secs(10)).await;
    let since: Vec<&str> = received.iter().skip(sent_before).map(|r| r.path.as_str()).collect();
    assert_eq!(since, ["/later"], "nothing sent to a disabled webhook");
}

/// Two creates racing for the same call: the call gets one post-call webhook, sent once; the
/// other request reports that it already has one.
async fn two_creates_for_one_call_at_once_send_it_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let receiver = Receiver::start().await;
    let agent = app.create_agent().await;
    app.ingest(
        &agent,
        json!({"event": "call.completed", "call_id": "c_race", "data": {"call": "race"}}),
    )
    .await;
    let body = json!({"call_ids": ["c_race"], "webhook_url": receiver.url("/created")});
    let (first, second) = tokio::join!(
        bland(&app, "/v1/postcall/webhooks/create", body.clone()),
        bland(&app, "/v1/postcall/webhooks/create", body),
    );
    assert_eq!((first.0, second.0), (200, 200), "{first:?} {second:?}");
    let created =
        first.1["data"].as_array().unwrap().len() + second.1["data"].as_array().unwrap().len();
    let refused = first.1["errors"].as_array().map_or(0, Vec::len)
        + second.1["errors"].as_array().map_or(0, Vec::len);
    assert_eq!((created, refused), (1, 1), "{first:?} {second:?}");
    // A later create, for another call, on the same lane (same organization and host): once it
    // arrived, the race had its chance to send twice.
    app.ingest(
        &agent,
        json!({"event": "call.completed", "call_id": "c_after", "data": {"call": "after"}}),
    )
    .await;
    let after = json!({"call_ids": ["c_after"], "webhook_url": receiver.url("/after")});
    assert_eq!(bland(&app, "/v1/postcall/webhooks/create", after).await.0, 200);
    let received = receiver.wait_for(2, Duration::from_secs(10)).await;
    let mut sent: Vec<&str> = received.iter().map(|r| r.path.as_str()).collect();
    sent.sort_unstable();
    assert_eq!(sent, ["/after", "/created"]);
}
