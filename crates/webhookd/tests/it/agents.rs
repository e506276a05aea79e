use reqwest::Method;
use serde_json::json;

use crate::backend_tests;
use crate::harness::{assert_error, Backend, TestApp};

backend_tests!(
    agents_can_be_created_listed_read_renamed_and_deleted,
    agent_names_are_validated,
    agent_listing_pages_with_talkover_pagination,
);

async fn agents_can_be_created_listed_read_renamed_and_deleted(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (status, created) =
        app.call(Method::POST, "/api/v1/agents", Some(json!({"name": "  Support  "}))).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["success"], true);
    assert_eq!(created["message"], "Agent created successfully");
    assert_eq!(created["data"]["name"], "Support");
    let id = created["data"]["id"].as_str().unwrap();
    assert!(created["data"]["created_at"].as_str().unwrap().ends_with('Z'));

    let (status, listed) = app.call(Method::GET, "/api/v1/agents", None).await;
    assert_eq!(status, 200);
    assert_eq!(listed["data"]["agents"][0]["id"], id);
    assert_eq!(listed["data"]["pagination"]["total"], 1);

    let path = format!("/api/v1/agents/{id}");
    let (status, read) = app.call(Method::GET, &path, None).await;
    assert_eq!(status, 200);
    assert_eq!(read["data"]["name"], "Support");

    let (status, renamed) = app.call(Method::PUT, &path, Some(json!({"name": "Sales"}))).await;
    assert_eq!(status, 200);
    assert_eq!(renamed["data"]["name"], "Sales");

    let (status, deleted) = app.call(Method::DELETE, &path, None).await;
    assert_eq!(status, 200);
    assert_eq!(deleted["message"], "Agent deleted successfully");
    let (status, body) = app.call(Method::GET, &path, None).await;
    assert_error(status, &body, 404, "AGENT_NOT_FOUND");
    let (status, body) = app.call(Method::DELETE, &path, None).await;
    assert_error(status, &body, 404, "AGENT_NOT_FOUND");
}

async fn agent_names_are_validated(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for bad in
        [json!({}), json!({"name": ""}), json!({"name": "   "}), json!({"name": "x".repeat(256)})]
    {
        let (status, body) = app.call(Method::POST, "/api/v1/agents", Some(bad.clone())).await;
        assert_error(status, &body, 422, "VALIDATION_FAILED");
        assert!(body["errors"]["name"][0].is_string(), "{bad} -> {body}");
    }
    let (status, body) = app.call(Method::POST, "/api/v1/agents", Some(json!({"name": 42}))).await;
    assert_error(status, &body, 422, "VALIDATION_FAILED");
    assert!(body["errors"]["name"][0].as_str().unwrap().contains("invalid type"), "{body}");

    let id = app.create_agent().await;
    let (status, body) =
        app.call(Method::PUT, &format!("/api/v1/agents/{id}"), Some(json!({"name": ""}))).await;
    assert_error(status, &body, 422, "VALIDATION_FAILED");
    let (status, ok) =
        app.call(Method::POST, "/api/v1/agents", Some(json!({"name": "x".repeat(255)}))).await;
    assert_eq!(status, 201, "{ok}");
}

async fn agent_listing_pages_with_talkover_pagination(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for _ in 0..5 {
        app.create_agent().await;
    }
    let (status, page) = app.call(Method::GET, "/api/v1/agents?page=2&per_page=2", None).await;
    assert_eq!(status, 200);
    assert_eq!(page["data"]["agents"].as_array().unwrap().len(), 2);
    assert_eq!(
        page["data"]["pagination"],
        json!({"current_page": 2, "per_page": 2, "total": 5, "last_page": 3, "total_estimated": false})
    );
    let (_, beyond) = app.call(Method::GET, "/api/v1/agents?page=9&per_page=2", None).await;
    assert_eq!(beyond["data"]["agents"], json!([]));

    for query in ["per_page=0", "per_page=101", "page=0", "page=-1", "page=abc", "per_page=1.5"] {
        let (status, body) = app.call(Method::GET, &format!("/api/v1/agents?{query}"), None).await;
        assert_error(status, &body, 422, "VALIDATION_FAILED");
    }
    let (status, _) = app.call(Method::GET, "/api/v1/agents?page=999999999999999", None).await;
    assert_eq!(status, 200);
}
