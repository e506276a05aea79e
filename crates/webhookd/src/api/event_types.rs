//! `/api/v1/event-types`: the event catalog (SPEC §10), and the OpenAPI `webhooks` section that
//! describes what a receiver of each type gets.

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use serde_json::{json, Map, Value};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::envelope::{ok, Envelope};
use super::error::{ApiError, ErrorBody};
use super::extract::CurrentOrg;
use super::AppState;
use crate::domain::EventCatalog;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_event_types))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventTypeView {
    /// E.g. `call.completed`; webhooks subscribe to it, or to `call.*` or `*`.
    name: String,
    description: String,
    /// JSON Schema (2020-12) of the event's `data`, which is the delivered body; `null`: any JSON.
    #[schema(value_type = Option<Object>)]
    schema: Option<Value>,
    /// An example `data`; `null` where none.
    #[schema(value_type = Option<Object>)]
    example: Option<Value>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventTypeList {
    event_types: Vec<EventTypeView>,
}

/// The event catalog: every type a webhook may subscribe to, with the schema and an example of
/// its `data` where the catalog has them.
#[utoipa::path(get, path = "/event-types", tag = "events",
    responses((status = 200, body = Envelope<EventTypeList>), (status = 401, body = ErrorBody)))]
async fn list_event_types(
    State(state): State<AppState>,
    CurrentOrg(_org_id): CurrentOrg,
) -> Result<Json<Envelope<EventTypeList>>, ApiError> {
    let event_types = state
        .catalog
        .kinds()
        .map(|(name, kind)| EventTypeView {
            name: name.to_string(),
            description: kind.description.clone(),
            schema: kind.schema.clone(),
            example: kind.example.clone(),
        })
        .collect();
    Ok(ok("Event types retrieved successfully", EventTypeList { event_types }))
}

/// OpenAPI 3.1 `webhooks`: one entry per event type, the request webhookd sends for it (its
/// body is the event's `data`, with the type's schema and example, and the Standard Webhooks
/// headers).
pub fn webhooks_section(catalog: &EventCatalog) -> Value {
    let header = |name: &str, description: &str, example: &str| {
        json!({"name": name, "in": "header", "required": true, "description": description,
            "schema": {"type": "string"}, "example": example})
    };
    let headers = json!([
        header(
            "webhook-id",
            "The event id: the same on every attempt and redelivery (deduplicate on it).",
            "0190b2a4-7c1e-7d2f-9a61-2f4b7e1c9d30"
        ),
        header("webhook-timestamp", "Unix seconds when this attempt was signed.", "1735689600"),
        header(
            "webhook-signature",
            "Standard Webhooks signature: space-separated `v1,<base64 HMAC-SHA256 of \
             id.timestamp.body>` values, one per active secret.",
            "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4="
        ),
        header("x-webhook-event", "The event type.", "call.completed"),
    ]);
    let mut webhooks = Map::new();
    for (name, kind) in catalog.kinds() {
        let mut media = Map::new();
        media.insert("schema".into(), kind.schema.clone().unwrap_or_else(|| json!({})));
        if let Some(example) = &kind.example {
            media.insert("example".into(), example.clone());
        }
        let operation = json!({
            "summary": name,
            "description": kind.description,
            "operationId": format!("webhook:{name}"),
            "tags": ["event types"],
            "parameters": headers,
            "requestBody": {
                "required": true,
                "description": "The event's `data`, byte for byte as ingested.",
                "content": {"application/json": media},
            },
            "responses": {
                "2XX": {"description": "Received. Any other answer (or none within the webhook's timeout) is retried."},
                "410": {"description": "Gone: webhookd disables the webhook."},
            },
        });
        webhooks.insert(name.to_string(), json!({"post": operation}));
    }
    Value::Object(webhooks)
}
