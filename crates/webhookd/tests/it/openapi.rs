use std::collections::BTreeSet;

use crate::harness::{send, Backend, TestApp};

/// Every route the router serves appears in the generated document, with its methods.
#[tokio::test]
async fn openapi_document_covers_every_route_with_schemas() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (status, doc) = send(app.client.get(app.url("/openapi.json"))).await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    let operations: BTreeSet<String> = paths
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(move |method| format!("{} {path}", method.to_uppercase()))
        })
        .collect();
    let expected = [
        "GET /healthz",
        "GET /readyz",
        "GET /api/v1/organization",
        "GET /api/v1/organization/secret",
        "POST /api/v1/organization/secret/rotate",
        "GET /api/v1/organization/operational-webhook",
        "PUT /api/v1/organization/operational-webhook",
        "DELETE /api/v1/organization/operational-webhook",
        "GET /api/v1/organization/operational-webhook/logs",
        "GET /api/v1/organization/operational-webhook/logs/{log_id}",
        "POST /api/v1/organization/operational-webhook/logs/{log_id}/retry",
        "GET /api/v1/agents",
        "POST /api/v1/agents",
        "GET /api/v1/agents/{agent_id}",
        "PUT /api/v1/agents/{agent_id}",
        "DELETE /api/v1/agents/{agent_id}",
        "GET /api/v1/agents/{agent_id}/webhooks",
        "POST /api/v1/agents/{agent_id}/webhooks",
        "GET /api/v1/agents/{agent_id}/webhooks/{webhook_id}",
        "PUT /api/v1/agents/{agent_id}/webhooks/{webhook_id}",
        "DELETE /api/v1/agents/{agent_id}/webhooks/{webhook_id}",
        "PATCH /api/v1/agents/{agent_id}/webhooks/{webhook_id}/toggle",
        "GET /api/v1/agents/{agent_id}/webhooks/{webhook_id}/secret",
        "POST /api/v1/agents/{agent_id}/webhooks/{webhook_id}/secret/rotate",
        "POST /api/v1/agents/{agent_id}/webhooks/{webhook_id}/test",
        "POST /api/v1/agents/{agent_id}/events",
        "POST /api/v1/agents/{agent_id}/events/batch",
        "GET /api/v1/event-types",
        "GET /api/v1/agents/{agent_id}/webhooks/{webhook_id}/logs",
        "GET /api/v1/agents/{agent_id}/webhooks/{webhook_id}/logs/{log_id}",
        "POST /api/v1/agents/{agent_id}/webhooks/{webhook_id}/logs/{log_id}/retry",
        "POST /api/v1/agents/{agent_id}/webhooks/{webhook_id}/recover",
        "GET /api/v1/agents/{agent_id}/webhooks/{webhook_id}/recover/{recovery_id}",
        "POST /api/v1/agents/{agent_id}/portal",
        "POST /v1/postcall/webhooks/resend",
        "POST /v1/postcall/webhooks/create",
        "GET /v1/postcall/webhooks/{call_id}",
    ];
    for operation in expected {
        assert!(operations.contains(operation), "missing {operation}; have {operations:?}");
    }
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for schema in [
        "WebhookInput",
        "WebhookView",
        "AgentView",
        "ErrorBody",
        "EventInput",
        "LogView",
        "BlandLog",
        "RecoverInput",
    ] {
        assert!(schemas.contains_key(schema), "missing schema {schema}");
    }
    // The egress addresses (SPEC §9) are always a list of strings, empty when unset.
    let organization = &schemas["OrganizationView"];
    assert_eq!(organization["properties"]["egress_ips"]["type"], "array", "{organization}");
    assert_eq!(organization["properties"]["egress_ips"]["items"]["type"], "string");
    let required = organization["required"].as_array().unwrap();
    assert!(required.iter().any(|field| field == "egress_ips"), "{organization}");
    // Every operation documents its responses.
    for (path, item) in paths {
        for (method, operation) in item.as_object().unwrap() {
            let responses = operation["responses"].as_object().unwrap();
            assert!(
                responses.keys().any(|code| code.starts_with('2')),
                "{method} {path} documents no success"
            );
            assert!(responses.contains_key("500"), "{method} {path} lacks 500");
            if path.starts_with("/api/") {
                for code in ["401", "429", "503"] {
                    assert!(responses.contains_key(code), "{method} {path} lacks {code}");
                }
                if method != "get" {
                    assert!(responses.contains_key("507"), "{method} {path} lacks 507");
                }
            }
        }
    }
}
