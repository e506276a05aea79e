//! Signing secrets: the `/secret` endpoints of webhooks (the only place a secret is read back)
//! and how secrets are shown, also for the organization's secret.

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::envelope::{ok, Envelope};
use super::error::{ApiError, ErrorBody, Missing};
use super::extract::{ApiPath, CurrentOrg};
use super::webhooks::{find_webhook, WebhookPath};
use super::AppState;
use crate::domain::clock::{format_ms, now_ms, DAY_MS};
use crate::domain::secrets::generate_signing_secret;
use crate::store::{Webhook, WebhookSecrets};

/// After a rotation the old secret keeps signing (as a second signature) for 24 hours.
pub const SECRET_GRACE_MS: i64 = DAY_MS;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_webhook_secret)).routes(routes!(rotate_webhook_secret))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SecretView {
    /// The current secret, `whsec_…` unless the customer brought their own.
    pub signing_secret: String,
    /// Until when the previous secret still signs, if a rotation is in its grace period.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_secret_expires_at: Option<String>,
}

impl SecretView {
    pub fn of(secrets: &WebhookSecrets) -> Self {
        let in_grace = secrets.previous_expires_at.filter(|expires| *expires > now_ms());
        Self {
            signing_secret: secrets.current.clone(),
            previous_secret_expires_at: in_grace.map(format_ms),
        }
    }
}

/// Replaces `webhook`'s signing secret with a new one; the old one keeps signing for 24 hours.
pub async fn rotate(state: &AppState, webhook: &Webhook) -> Result<SecretView, ApiError> {
    let grace_until = now_ms() + SECRET_GRACE_MS;
    let new_secret = generate_signing_secret();
    let rotated = state.store.replace_webhook_secret(webhook, &new_secret, grace_until).await?;
    let rotated = rotated.ok_or(ApiError::NotFound(Missing::Webhook))?;
    Ok(SecretView::of(&rotated.secrets))
}

/// The webhook's current signing secret.
#[utoipa::path(get, path = "/agents/{agent_id}/webhooks/{webhook_id}/secret", tag = "webhooks",
    params(("agent_id" = Uuid, Path), ("webhook_id" = Uuid, Path)),
    responses(
        (status = 200, body = Envelope<SecretView>),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
    ))]
async fn get_webhook_secret(
    State(state): State<AppState>,
    CurrentOrg(org_id): CurrentOrg,
    ApiPath(path): ApiPath<WebhookPath>,
) -> Result<Json<Envelope<SecretView>>, ApiError> {
    let webhook = find_webhook(&state, org_id, &path).await?;
    Ok(ok("Webhook secret retrieved successfully", SecretView::of(&webhook.secrets)))
}

/// Replace the signing secret; the old one keeps signing for 24 hours.
#[utoipa::path(post, path = "/agents/{agent_id}/webhooks/{webhook_id}/secret/rotate",
    tag = "webhooks", params(("agent_id" = Uuid, Path), ("webhook_id" = Uuid, Path)),
    responses(
        (status = 200, body = Envelope<SecretView>),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
    ))]
async fn rotate_webhook_secret(
    State(state): State<AppState>,
    CurrentOrg(org_id): CurrentOrg,
    ApiPath(path): ApiPath<WebhookPath>,
) -> Result<Json<Envelope<SecretView>>, ApiError> {
    let webhook = find_webhook(&state, org_id, &path).await?;
    Ok(ok("Webhook secret rotated successfully", rotate(&state, &webhook).await?))
}
