//! `/api/v1/agents/{agent_id}/webhooks`: customer endpoints, Talkover's fields and defaults.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::agents::AgentPath;
use super::envelope::{ok, Envelope};
use super::error::{ApiError, ErrorBody, Missing};
use super::extract::{ApiPath, CurrentOrg, JsonBody};
use super::secrets::{SecretView, SECRET_GRACE_MS};
use super::AppState;
use crate::dispatch::immediate;
use crate::domain::catalog::TEST_EVENT;
use crate::domain::clock::{format_ms, now_ms};
use crate::domain::destination::check_url;
use crate::domain::secrets::generate_signing_secret;
use crate::domain::validation::FieldErrors;
use crate::domain::webhook::{self, AuthorizationInput};
use crate::domain::{Authorization, CustomHeader, HttpMethod, WebhookSettings};
use crate::store::Webhook;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_webhooks, create_webhook))
        .routes(routes!(get_webhook, update_webhook, delete_webhook))
        .routes(routes!(toggle_webhook))
        .routes(routes!(test_webhook))
        .routes(routes!(get_webhook_secret))
        .routes(routes!(rotate_webhook_secret))
}

/// Webhook fields for create (`name`, `webhook_url`, `events` required) and for partial update
/// (every field optional; absent fields keep their value).
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct WebhookInput {
    /// 1–255 characters.
    #[schema(max_length = 255)]
    name: Option<String>,
    /// http(s) URL, at most 500 characters.
    #[schema(max_length = 500)]
    webhook_url: Option<String>,
    /// Signing secret; a `whsec_` secret is generated when absent. At most 255 characters.
    #[schema(max_length = 255)]
    webhook_secret: Option<String>,
    /// At least one event type from `available_events`.
    events: Option<Vec<String>>,
    /// Seconds, 5–120 (default 30).
    #[schema(minimum = 5, maximum = 120)]
    timeout: Option<i64>,
    /// 0–10 (default 3).
    #[schema(minimum = 0, maximum = 10)]
    max_retries: Option<i64>,
    /// Default true.
    enabled: Option<bool>,
    /// `POST` (default), `PUT` or `PATCH`.
    http_method: Option<String>,
    /// `none` (default), `bearer`, `basic`, `api_key` or `custom`.
    authorization_scheme: Option<String>,
    /// Token for `bearer`, key for `api_key`, full `Authorization` value for `custom`.
    auth_token: Option<String>,
    /// User name for `basic`.
    auth_username: Option<String>,
    /// Password for `basic`.
    auth_password: Option<String>,
    /// Header carrying the key for `api_key` (default `X-API-Key`).
    auth_header_name: Option<String>,
    /// At most 20 extra headers.
    custom_headers: Option<Vec<CustomHeader>>,
}

impl WebhookInput {
    fn has_credentials(&self) -> bool {
        self.auth_token.is_some()
            || self.auth_username.is_some()
            || self.auth_password.is_some()
            || self.auth_header_name.is_some()
    }
}

/// A webhook as read back: never its secret or credentials.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookView {
    id: Uuid,
    agent_id: Uuid,
    name: String,
    webhook_url: String,
    events: Vec<String>,
    events_count: usize,
    timeout: i64,
    max_retries: i64,
    enabled: bool,
    /// `active` or `disabled`.
    status: String,
    /// Why webhookd disabled it (410 Gone, failing for 5 days), if it did.
    disabled_reason: Option<String>,
    http_method: String,
    authorization_scheme: String,
    custom_headers: Vec<CustomHeader>,
    created_at: String,
    updated_at: String,
}

impl From<Webhook> for WebhookView {
    fn from(webhook: Webhook) -> Self {
        let settings = webhook.settings;
        Self {
            id: webhook.id,
            agent_id: webhook.agent_id,
            events_count: settings.events.len(),
            name: settings.name,
            webhook_url: settings.url,
            events: settings.events,
            timeout: settings.timeout_secs,
            max_retries: settings.max_retries,
            enabled: settings.enabled,
            status: if settings.enabled { "active" } else { "disabled" }.into(),
            disabled_reason: webhook.disabled_reason,
            http_method: settings.http_method.as_str().into(),
            authorization_scheme: settings.authorization.scheme().into(),
            custom_headers: settings.custom_headers,
            created_at: format_ms(webhook.created_at),
            updated_at: format_ms(webhook.updated_at),
        }
    }
}

/// The create response: the webhook and, this once, its signing secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedWebhookView {
    #[serde(flatten)]
    webhook: WebhookView,
    signing_secret: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookList {
    webhooks: Vec<WebhookView>,
    /// Event name → description.
    available_events: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
pub struct WebhookPath {
    pub agent_id: Uuid,
    pub webhook_id: Uuid,
}

/// A field's new value if given (checked), else its current value; `None` records "is required".
fn given_or<T>(
    errors: &mut FieldErrors,
    field: &str,
    given: Option<Result<T, String>>,
    current: Option<T>,
) -> Option<T> {
    match given {
        Some(result) => errors.check(field, result),
        None if current.is_none() => {
            errors.add(field, "is required");
            None
        }
        None => current,
    }
}

/// Settings from `input` over `base` (the current settings on update, nothing on create).
fn resolve_settings(
    input: &WebhookInput,
    base: Option<&WebhookSettings>,
    state: &AppState,
) -> Result<WebhookSettings, ApiError> {
    let catalog = &state.catalog;
    let allow_private = state.config.allow_private_targets;
    let parse_url = |url: &str| {
        let url = webhook::parse_url(url)?;
        check_url(&url, allow_private)?;
        Ok(url)
    };
    let mut errors = FieldErrors::default();
    let e = &mut errors;
    let name = given_or(
        e,
        "name",
        input.name.as_deref().map(webhook::parse_name),
        base.map(|b| b.name.clone()),
    );
    let url = given_or(
        e,
        "webhook_url",
        input.webhook_url.as_deref().map(parse_url),
        base.map(|b| b.url.clone()),
    );
    let events = given_or(
        e,
        "events",
        input.events.as_deref().map(|events| webhook::parse_events(events, catalog)),
        base.map(|b| b.events.clone()),
    );
    let timeout = given_or(
        e,
        "timeout",
        input.timeout.map(webhook::parse_timeout),
        Some(base.map_or(webhook::TIMEOUT_DEFAULT, |b| b.timeout_secs)),
    );
    let max_retries = given_or(
        e,
        "max_retries",
        input.max_retries.map(webhook::parse_max_retries),
        Some(base.map_or(webhook::MAX_RETRIES_DEFAULT, |b| b.max_retries)),
    );
    let enabled = input.enabled.or(base.map(|b| b.enabled)).unwrap_or(true);
    let http_method = given_or(
        e,
        "http_method",
        input.http_method.as_deref().map(HttpMethod::parse),
        Some(base.map_or(HttpMethod::Post, |b| b.http_method)),
    );
    let custom_headers = given_or(
        e,
        "custom_headers",
        input.custom_headers.as_deref().map(webhook::parse_custom_headers),
        Some(base.map(|b| b.custom_headers.clone()).unwrap_or_default()),
    );
    let authorization = match input.authorization_scheme.as_deref() {
        Some(scheme) => {
            let credentials = AuthorizationInput {
                scheme,
                token: input.auth_token.as_deref(),
                username: input.auth_username.as_deref(),
                password: input.auth_password.as_deref(),
                header_name: input.auth_header_name.as_deref(),
            };
            Authorization::parse(&credentials, e)
        }
        None if input.has_credentials() => {
            e.add("authorization_scheme", "is required when credentials are given");
            None
        }
        None => Some(base.map_or(Authorization::None, |b| b.authorization.clone())),
    };
    if let Some(secret) = &input.webhook_secret {
        e.check("webhook_secret", webhook::parse_secret(secret));
    }
    let (
        Some(name),
        Some(url),
        Some(events),
        Some(timeout_secs),
        Some(max_retries),
        Some(http_method),
        Some(authorization),
        Some(custom_headers),
    ) = (name, url, events, timeout, max_retries, http_method, authorization, custom_headers)
    else {
        return Err(errors.into());
    };
    let settings = WebhookSettings {
        name,
        url,
        events,
        timeout_secs,
        max_retries,
        enabled,
        http_method,
        authorization,
        custom_headers,
    };
    webhook::check_combination(&settings, &mut errors);
    errors.finish()?;
    Ok(settings)
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
    if state.store.agent(org_id, path.agent_id).await?.is_none() {
        return Err(ApiError::NotFound(Missing::Agent));
    }
    let settings = resolve_settings(&input, None, &state)?;
    let secret = input.webhook_secret.clone().unwrap_or_else(generate_signing_secret);
    let webhook = state.store.create_webhook(org_id, path.agent_id, settings, secret).await?;
    let signing_secret = webhook.secrets.current.clone();
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
    let current = find_webhook(&state, org_id, &path).await?;
    let settings = resolve_settings(&input, Some(&current.settings), &state)?;
    let mut updated = state.store.update_webhook(&current, &settings).await?;
    if let (Some(secret), Some(webhook)) = (&input.webhook_secret, &updated) {
        let grace_until = now_ms() + SECRET_GRACE_MS;
        updated = state.store.replace_webhook_secret(webhook, secret, grace_until).await?;
    }
    let updated = updated.ok_or(ApiError::NotFound(Missing::Webhook))?;
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
    let webhook = find_webhook(&state, org_id, &path).await?;
    if !state.store.delete_webhook(&webhook).await? {
        return Err(ApiError::NotFound(Missing::Webhook));
    }
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
    let webhook = find_webhook(&state, org_id, &path).await?;
    let toggled = state.store.toggle_webhook(&webhook).await?;
    let toggled = toggled.ok_or(ApiError::NotFound(Missing::Webhook))?;
    let message = if toggled.settings.enabled { "Webhook enabled" } else { "Webhook disabled" };
    Ok(ok(message, toggled.into()))
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
    let grace_until = now_ms() + SECRET_GRACE_MS;
    let new_secret = generate_signing_secret();
    let rotated = state.store.replace_webhook_secret(&webhook, &new_secret, grace_until).await?;
    let rotated = rotated.ok_or(ApiError::NotFound(Missing::Webhook))?;
    Ok(ok("Webhook secret rotated successfully", SecretView::of(&rotated.secrets)))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TestResult {
    /// The endpoint's response code; `null` when no response arrived.
    status_code: Option<i64>,
    /// Milliseconds until the response (or the failure).
    response_time: i64,
    /// Whether the endpoint answered 2xx.
    success: bool,
    error: Option<String>,
    /// The delivery log of this test (its attempt has `send_type: test`).
    log_id: Uuid,
}

/// Send a `webhook.test` event to the webhook now and report how its endpoint answered.
#[utoipa::path(post, path = "/agents/{agent_id}/webhooks/{webhook_id}/test", tag = "webhooks",
    params(("agent_id" = Uuid, Path), ("webhook_id" = Uuid, Path)),
    responses(
        (status = 200, body = Envelope<TestResult>),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
    ))]
async fn test_webhook(
    State(state): State<AppState>,
    CurrentOrg(org_id): CurrentOrg,
    ApiPath(path): ApiPath<WebhookPath>,
) -> Result<Json<Envelope<TestResult>>, ApiError> {
    let webhook = find_webhook(&state, org_id, &path).await?;
    let payload = serde_json::json!({
        "event": TEST_EVENT,
        "webhook_id": webhook.id,
        "agent_id": webhook.agent_id,
        "timestamp": format_ms(now_ms()),
        "data": {"message": "This is a test event from webhookd."},
    });
    let claimed =
        state.store.create_test_delivery(&webhook, payload.to_string().into_bytes()).await?;
    let sent = immediate::send_now(
        &state.store,
        &state.sender,
        &state.policy,
        vec![claimed],
        crate::domain::SendType::Test,
        1,
    )
    .await?;
    let (job, record) = sent
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("the test delivery was not sent")))?;
    let success = record.status == crate::domain::LogStatus::Success;
    let result = TestResult {
        status_code: record.response_code,
        response_time: record.duration_ms,
        success,
        error: record.error,
        log_id: job.log.id,
    };
    let message = if success { "Test webhook delivered" } else { "Test webhook failed" };
    Ok(ok(message, result))
}
