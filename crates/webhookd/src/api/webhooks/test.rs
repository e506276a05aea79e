//! `POST …/webhooks/{webhook_id}/test`: a `webhook.test` event sent now, answered with how the
//! endpoint responded.

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{find_webhook, WebhookPath};
use crate::api::envelope::{ok, Envelope};
use crate::api::error::{ApiError, ErrorBody};
use crate::api::extract::{ApiPath, CurrentOrg};
use crate::api::AppState;
use crate::dispatch::ExplicitResult;
use crate::domain::catalog::TEST_EVENT;
use crate::domain::clock::{format_ms, now_ms};
use crate::domain::{LogStatus, SendType};
use crate::store::Webhook;

#[derive(Debug, Serialize, ToSchema)]
pub struct TestResult {
    /// The endpoint's response code; `null` when no response arrived.
    pub status_code: Option<u16>,
    /// Milliseconds until the response (or the failure).
    pub response_time: i64,
    /// Whether the endpoint answered 2xx.
    pub success: bool,
    pub error: Option<String>,
    /// The delivery log of this test (its attempt has `send_type: test`).
    pub log_id: Uuid,
}

/// Sends a `webhook.test` event to `webhook` now and reports how its endpoint answered.
pub async fn send_test(state: &AppState, webhook: &Webhook) -> Result<TestResult, ApiError> {
    let payload = serde_json::json!({
        "event": TEST_EVENT,
        "webhook_id": webhook.id,
        "agent_id": webhook.agent_id,
        "timestamp": format_ms(now_ms()),
        "data": {"message": "This is a test event from webhookd."},
    });
    let log = state.store.create_test_delivery(webhook, payload.to_string().into_bytes()).await?;
    let log_id = log.id;
    let results = state.dispatcher.send_held(vec![log], SendType::Test).await;
    let Some(ExplicitResult::Sent(record)) = results.into_iter().next() else {
        return Err(ApiError::internal(anyhow::anyhow!("the test delivery was not sent")));
    };
    let attempt = &record.attempt;
    Ok(TestResult {
        status_code: attempt.response_code,
        response_time: attempt.duration_ms,
        success: record.status == LogStatus::Success,
        error: attempt.error.clone(),
        log_id,
    })
}

/// Send a `webhook.test` event to the webhook now and report how its endpoint answered.
#[utoipa::path(post, path = "/agents/{agent_id}/webhooks/{webhook_id}/test", tag = "webhooks",
    params(("agent_id" = Uuid, Path), ("webhook_id" = Uuid, Path)),
    responses(
        (status = 200, body = Envelope<TestResult>),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
    ))]
pub(super) async fn test_webhook(
    State(state): State<AppState>,
    CurrentOrg(org_id): CurrentOrg,
    ApiPath(path): ApiPath<WebhookPath>,
) -> Result<Json<Envelope<TestResult>>, ApiError> {
    let webhook = find_webhook(&state, org_id, &path).await?;
    let result = send_test(&state, &webhook).await?;
    let message = if result.success { "Test webhook delivered" } else { "Test webhook failed" };
    Ok(ok(message, result))
}
