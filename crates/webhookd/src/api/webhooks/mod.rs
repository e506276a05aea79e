//! `/api/v1/agents/{agent_id}/webhooks`: customer endpoints, with Talkover's fields and defaults
//! and the scheduling fields of SPEC §4. The operations are public to the crate so the dashboard
//! performs exactly what the API does.

mod input;
pub(crate) mod test;
mod view;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

pub use input::WebhookInput;
pub use view::{CreatedWebhookView, WebhookList, WebhookView};

use super::agents::AgentPath;
use super::envelope::{ok, Envelope};
use super::error::{ApiError, ErrorBody, Missing};
use super::extract::{ApiPath, CurrentOrg, JsonBody};
use super::secrets::SECRET_GRACE_MS;
use super::AppState;
use crate::domain::clock::now_ms;
use crate::domain::secrets::SigningSecret;
use crate::domain::webhook::{self, WebhookChanges, WebhookSettings};
use crate::store::Webhook;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_webhooks, create_webhook))
        .routes(routes!(get_webhook, update_webhook, delete_webhook))
        .routes(routes!(toggle_webhook))
        .routes(routes!(test::test_webhook))
}

#[derive(Debug, Clone, Copy, Deserialize)]
pub struct WebhookPath {
    pub agent_id: Uuid,
    pub webhook_id: Uuid,
}

/// The webhook named by `path`, or the 404 that says which part of the path is unknown.
pub async fn find_webhook(
    state: &AppState,
    org_id: Uuid,
    path: &WebhookPath,
) -> Result<Webhook, ApiError> {
    if let Some(webhook) = state.store.webhook(org_id, path.agent_id, path.webhook_id).await? {
        return Ok(webhook);
    }
    match state.store.agent(org_id, path.agent_id).await? {
        Some(_) => Err(ApiError::NotFound(Missing::Webhook)),
        None => Err(ApiError::NotFound(Missing::Agent)),
    }
}

fn context(state: &AppState) -> webhook::Context<'_> {
    webhook::Context { catalog: &state.catalog, destinations: &state.destinations }
}

/// Creates a webhook under `agent_id`; returns it with its signing secret.
pub async fn create(
    state: &AppState,
    org_id: Uuid,
    agent_id: Uuid,
    changes: &WebhookChanges<'_>,
) -> Result<(Webhook, String), ApiError> {
    if state.store.agent(org_id, agent_id).await?.is_none() {
        return Err(ApiError::NotFound(Missing::Agent));
    }
    let changed = WebhookSettings::apply(None, changes, context(state))?;
    let secret = changed.secret.unwrap_or_else(SigningSecret::generate);
    let webhook = state
        .store
        .create_webhook(org_id, agent_id, changed.settings, secret.into_string())
        .await?;
    let signing_secret = webhook.secrets.current.clone();
    Ok((webhook, signing_secret))
}

/// Applies `changes` to the webhook named by `path`. A new secret replaces the signing secret;
/// the old one keeps signing for 24 hours.
pub async fn update(
    state: &AppState,
    org_id: Uuid,
    path: &WebhookPath,
    changes: &WebhookChanges<'_>,
) -> Result<Webhook, ApiError> {
    let current = find_webhook(state, org_id, path).await?;
    let changed = WebhookSettings::apply(Some(&current.settings), changes, context(state))?;
    let mut updated = state.store.update_webhook(&current, &changed.settings).await?;
    if let (Some(secret), Some(webhook)) = (&changed.secret, &updated) {
        let grace_until = now_ms() + SECRET_GRACE_MS;
        updated = state.store.replace_webhook_secret(webhook, secret.as_str(), grace_until).await?;
    }
    updated.ok_or(ApiError::NotFound(Missing::Webhook))
}

/// Enables a disabled webhook or disables an enabled one.
pub async fn toggle(
    state: &AppState,
    org_id: Uuid,
    path: &WebhookPath,
) -> Result<Webhook, ApiError> {
    let webhook = find_webhook(state, org_id, path).await?;
    let toggled = state.store.toggle_webhook(&webhook).await?;
    toggled.ok_or(ApiError::NotFound(Missing::Webhook))
}

/// Deletes the webhook with its delivery logs.
pub async fn delete(state: &AppState, org_id: Uuid, path: &WebhookPath) -> Result<(), ApiError> {
    let webhook = find_webhook(state, org_id, path).await?;
    if !state.store.delete_webhook(&webhook).await? {
        return Err(ApiError::NotFound(Missing::Webhook));
    }
    Ok(())
}

/// List an agent's webhooks and the events they can subscribe to.
#[utoipa::path(get, path = "/agents/{agent_id}/webhooks", tag = "webhooks",
    params(("agent_id" = Uuid, Path)),
    responses(
        (status = 200, body = Envelope<WebhookList>),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
    ))]
async fn list_webhooks(
    State(state): State<AppState>,
    CurrentOrg(org_id): CurrentOrg,
    ApiPath(path): ApiPath<AgentPath>,
) -> Result<Json<Envelope<WebhookList>>, ApiError> {
    if state.store.agent(org_id, path.agent_id).await?.is_none() {
        return Err(ApiError::NotFound(Missing::Agent));
    }
    let webhooks = state.store.list_webhooks(org_id, path.agent_id).await?;
    let list = WebhookList {
        webhooks: webhooks.into_iter().map(WebhookView::from).collect(),
        available_events: state.catalog.descriptions().clone(),
    };
    Ok(ok("Webhooks retrieved successfully", list))
}

/// Create a webhook. The response carries its signing secret.
#[utoipa::path(post, path = "/agents/{agent_id}/webhooks", tag = "webhooks",
    params(("agent_id" = Uuid, Path)), request_body = WebhookInput,
    responses(
        (status = 201, body = Envelope<CreatedWebhookView>),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 422, body = ErrorBody),
    ))]
async fn create_webhook(
    State(state): State<AppState>,
    CurrentOrg(org_id): CurrentOrg,
    ApiPath(path): ApiPath<AgentPath>,
    JsonBody(input): JsonBody<WebhookInput>,
) -> Result<(StatusCode, Json<Envelope<CreatedWebhookView>>), ApiError> {
    let (webhook, signing_secret) = create(&state, org_id, path.agent_id, &input.changes()).await?;
    let created = CreatedWebhookView { webhook: webhook.into(), signing_secret };
    Ok((StatusCode::CREATED, ok("Webhook created successfully", created)))
}

/// Read one webhook.
#[utoipa::path(get, path = "/agents/{agent_id}/webhooks/{webhook_id}", tag = "webhooks",
    params(("agent_id" = Uuid, Path), ("webhook_id" = Uuid, Path)),
    responses(
        (status = 200, body = Envelope<WebhookView>),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
    ))]
async fn get_webhook(
    State(state): State<AppState>,
    CurrentOrg(org_id): CurrentOrg,
    ApiPath(path): ApiPath<WebhookPath>,
) -> Result<Json<Envelope<WebhookView>>, ApiError> {
    let webhook = find_webhook(&state, org_id, &path).await?;
    Ok(ok("Webhook retrieved successfully", webhook.into()))
}

/// Update a webhook: only the fields given change. A new `webhook_secret` replaces the signing
/// secret; the old one keeps signing for 24 hours.
#[utoipa::path(put, path = "/agents/{agent_id}/webhooks/{webhook_id}", tag = "webhooks",
    params(("agent_id" = Uuid, Path), ("webhook_id" = Uuid, Path)), request_body = WebhookInput,
    responses(
        (status = 200, body = Envelope<WebhookView>),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 422, body = ErrorBody),
    ))]
async fn update_webhook(
    State(state): State<AppState>,
    CurrentOrg(org_id): CurrentOrg,
    ApiPath(path): ApiPath<WebhookPath>,
    JsonBody(input): JsonBody<WebhookInput>,
) -> Result<Json<Envelope<WebhookView>>, ApiError> {
    let updated = update(&state, org_id, &path, &input.changes()).await?;
    Ok(ok("Webhook updated successfully", updated.into()))
}

/// Delete a webhook with its delivery logs.
#[utoipa::path(delete, path = "/agents/{agent_id}/webhooks/{webhook_id}", tag = "webhooks",
    params(("agent_id" = Uuid, Path), ("webhook_id" = Uuid, Path)),
    responses(
        (status = 200, body = Envelope<Option<String>>),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
    ))]
async fn delete_webhook(
    State(state): State<AppState>,
    CurrentOrg(org_id): CurrentOrg,
    ApiPath(path): ApiPath<WebhookPath>,
) -> Result<Json<Envelope<Option<String>>>, ApiError> {
    delete(&state, org_id, &path).await?;
    Ok(ok("Webhook deleted successfully", None))
}

/// Enable a disabled webhook or disable an enabled one.
#[utoipa::path(patch, path = "/agents/{agent_id}/webhooks/{webhook_id}/toggle", tag = "webhooks",
    params(("agent_id" = Uuid, Path), ("webhook_id" = Uuid, Path)),
    responses(
        (status = 200, body = Envelope<WebhookView>,
            description = "Message `Webhook enabled` or `Webhook disabled`"),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
    ))]
async fn toggle_webhook(
    State(state): State<AppState>,
    CurrentOrg(org_id): CurrentOrg,
    ApiPath(path): ApiPath<WebhookPath>,
) -> Result<Json<Envelope<WebhookView>>, ApiError> {
    let toggled = toggle(&state, org_id, &path).await?;
    let message = if toggled.settings.enabled { "Webhook enabled" } else { "Webhook disabled" };
    Ok(ok(message, toggled.into()))
}
