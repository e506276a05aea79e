//! `/api/v1/organization/operational-webhook`: where the organization's own endpoint gets
//! operational events (SPEC §4), and the delivery logs of those events, listed, read and retried
//! like a webhook's.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::envelope::{ok, Envelope};
use super::error::{ApiError, ErrorBody, Missing};
use super::extract::{ApiPath, ApiQuery, CurrentOrg, JsonBody};
use super::logs::{parse_query, LogDetail, LogList, LogQuery};
use super::redelivery::RetryQueued;
use super::AppState;
use crate::domain::clock::{format_ms, now_ms};
use crate::domain::operational::Subscription;
use crate::domain::validation::FieldErrors;
use crate::domain::webhook::WebhookUrl;
use crate::store::{LogScope, OperationalWebhook};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(
            get_operational_webhook,
            set_operational_webhook,
            delete_operational_webhook
        ))
        .routes(routes!(list_operational_logs))
        .routes(routes!(get_operational_log))
        .routes(routes!(retry_operational_log))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct OperationalWebhookInput {
    /// http(s) URL, at most 500 characters; the same destination rules as a webhook's URL.
    #[schema(max_length = 500)]
    url: Option<String>,
    /// A non-empty subset of `webhook.disabled`, `webhook.circuit_opened`,
    /// `webhook.circuit_closed` and `delivery.failed`; default all four.
    events: Option<Vec<String>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OperationalWebhookView {
    url: String,
    events: Vec<&'static str>,
    created_at: String,
    updated_at: String,
}

impl From<OperationalWebhook> for OperationalWebhookView {
    fn from(webhook: OperationalWebhook) -> Self {
        Self {
            url: webhook.url,
            events: webhook.events.names(),
            created_at: format_ms(webhook.created_at),
            updated_at: format_ms(webhook.updated_at),
        }
    }
}

async fn find(state: &AppState, org_id: Uuid) -> Result<OperationalWebhook, ApiError> {
    let found = state.store.operational_webhook(org_id).await?;
    found.ok_or(ApiError::NotFound(Missing::OperationalWebhook))
}

/// The operational webhook: where operational events go. 404 `NOT_FOUND` when none is set.
#[utoipa::path(get, path = "/organization/operational-webhook", tag = "operational",
    responses(
        (status = 200, body = Envelope<OperationalWebhookView>),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
    ))]
async fn get_operational_webhook(
    State(state): State<AppState>,
    CurrentOrg(org_id): CurrentOrg,
) -> Result<Json<Envelope<OperationalWebhookView>>, ApiError> {
    let webhook = find(&state, org_id).await?;
    Ok(ok("Operational webhook retrieved successfully", webhook.into()))
}

/// Set or replace the operational webhook. Its deliveries are signed with the organization's
/// secret (`GET /organization/secret`), like per-call deliveries.
#[utoipa::path(put, path = "/organization/operational-webhook", tag = "operational",
    request_body = OperationalWebhookInput,
    responses(
        (status = 200, body = Envelope<OperationalWebhookView>),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 422, body = ErrorBody),
    ))]
async fn set_operational_webhook(
    State(state): State<AppState>,
    CurrentOrg(org_id): CurrentOrg,
    JsonBody(input): JsonBody<OperationalWebhookInput>,
) -> Result<Json<Envelope<OperationalWebhookView>>, ApiError> {
    let mut errors = FieldErrors::default();
    let url = match &input.url {
        Some(url) => errors.check("url", WebhookUrl::parse(url, &state.destinations)),
        None => {
            errors.add("url", "is required");
            None
        }
    };
    let events = errors.check("events", Subscription::parse(input.events.as_deref()));
    errors.finish()?;
    let (Some(url), Some(events)) = (url, events) else {
        return Err(ApiError::field("url", "is required"));
    };
    let webhook = state.store.set_operational_webhook(org_id, url.as_str(), &events).await?;
    Ok(ok("Operational webhook saved successfully", webhook.into()))
}

/// Remove the operational webhook. Its pending deliveries end `skipped`; its logs stay listed.
#[utoipa::path(delete, path = "/organization/operational-webhook", tag = "operational",
    responses(
        (status = 200, body = Envelope<Option<String>>),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
    ))]
async fn delete_operational_webhook(
    State(state): State<AppState>,
    CurrentOrg(org_id): CurrentOrg,
) -> Result<Json<Envelope<Option<String>>>, ApiError> {
    if !state.store.delete_operational_webhook(org_id).await? {
        return Err(ApiError::NotFound(Missing::OperationalWebhook));
    }
    Ok(ok("Operational webhook removed successfully", None))
}

/// The delivery logs of operational events, newest first: the shape, filters and paging of a
/// webhook's logs (`webhook_id` is `null`). Kept after the operational webhook is removed.
#[utoipa::path(get, path = "/organization/operational-webhook/logs", tag = "operational",
    params(LogQuery),
    responses(
        (status = 200, body = Envelope<LogList>),
        (status = 401, body = ErrorBody), (status = 422, body = ErrorBody),
    ))]
async fn list_operational_logs(
    State(state): State<AppState>,
    CurrentOrg(org_id): CurrentOrg,
    ApiQuery(query): ApiQuery<LogQuery>,
) -> Result<Json<Envelope<LogList>>, ApiError> {
    let (filter, page) = parse_query(query)?;
    let listing = state.store.list_logs_of(org_id, LogScope::Operational, &filter, page).await?;
    Ok(ok("Operational webhook logs retrieved successfully", LogList::new(listing, page)))
}

#[derive(Debug, Deserialize)]
pub struct OperationalLogPath {
    log_id: Uuid,
}

/// One operational delivery log with every attempt.
#[utoipa::path(get, path = "/organization/operational-webhook/logs/{log_id}", tag = "operational",
    params(("log_id" = Uuid, Path)),
    responses(
        (status = 200, body = Envelope<LogDetail>),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
    ))]
async fn get_operational_log(
    State(state): State<AppState>,
    CurrentOrg(org_id): CurrentOrg,
    ApiPath(path): ApiPath<OperationalLogPath>,
) -> Result<Json<Envelope<LogDetail>>, ApiError> {
    let found = state.store.log_of(org_id, LogScope::Operational, path.log_id).await?;
    let (log, attempts) = found.ok_or(ApiError::NotFound(Missing::Log))?;
    Ok(ok("Operational webhook log retrieved successfully", LogDetail::new(log, attempts)))
}

/// Retry one operational delivery, as Talkover's retry does for a webhook: a new log, linked by
/// `original_log_id`, queued now to the current operational webhook URL (first attempt
/// `manual`).
#[utoipa::path(post, path = "/organization/operational-webhook/logs/{log_id}/retry",
    tag = "operational", params(("log_id" = Uuid, Path)),
    responses(
        (status = 202, body = Envelope<RetryQueued>),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "`LOG_NOT_RETRIABLE`: the log succeeded, is still pending, is older than the retry window, or no operational webhook is set"),
    ))]
async fn retry_operational_log(
    State(state): State<AppState>,
    CurrentOrg(org_id): CurrentOrg,
    ApiPath(path): ApiPath<OperationalLogPath>,
) -> Result<(StatusCode, Json<Envelope<RetryQueued>>), ApiError> {
    let found = state.store.log_of(org_id, LogScope::Operational, path.log_id).await?;
    let (log, _) = found.ok_or(ApiError::NotFound(Missing::Log))?;
    log.retriable(now_ms(), state.config.retry_window_ms())?;
    let destination = state.store.operational_webhook(org_id).await?;
    let destination = destination.ok_or(ApiError::LogNotRetriable)?;
    let (log_id, queued_at) = state.store.requeue_operational(&log, &destination.url).await?;
    let queued = RetryQueued { log_id, original_log_id: log.id, queued_at: format_ms(queued_at) };
    Ok((StatusCode::ACCEPTED, ok("Webhook retry queued successfully", queued)))
}
