use reqwest::Method;

use crate::backend_tests;
use crate::harness::{Backend, TestApp};

backend_tests!(organization_and_its_secret_are_readable_and_rotatable);

async fn organization_and_its_secret_are_readable_and_rotatable(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (status, org) = app.call(Method::GET, "/api/v1/organization", None).await;
    assert_eq!(status, 200, "{org}");
    assert_eq!(org["data"]["id"], app.org_id.as_str());
    assert_eq!(org["data"]["name"], "test org");

    let (status, secret) = app.call(Method::GET, "/api/v1/organization/secret", None).await;
    assert_eq!(status, 200);
    let first = secret["data"]["signing_secret"].as_str().unwrap().to_string();
    assert!(first.starts_with("whsec_"));
    assert!(secret["data"].get("previous_secret_expires_at").is_none());

    let (status, rotated) =
        app.call(Method::POST, "/api/v1/organization/secret/rotate", None).await;
    assert_eq!(status, 200);
    assert_ne!(rotated["data"]["signing_secret"], first.as_str());
    assert!(rotated["data"]["previous_secret_expires_at"].is_string());

    let (_, again) = app.call(Method::GET, "/api/v1/organization/secret", None).await;
    assert_eq!(again["data"]["signing_secret"], rotated["data"]["signing_secret"]);

    let other_key = app.other_org_key().await;
    let response = app
        .client
        .get(app.url("/api/v1/organization/secret"))
        .bearer_auth(other_key)
        .send()
        .await
        .unwrap();
    let other: serde_json::Value = response.json().await.unwrap();
    assert_ne!(other["data"]["signing_secret"], again["data"]["signing_secret"]);
}
