//! Talkover's "Retry Webhook Delivery" and bulk recovery of a time window (SPEC §5).

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
use super::extract::{ApiPath, CurrentOrg, JsonBody};
use super::logs::LogPath;
use super::webhooks::{find_webhook, WebhookPath};
use super::AppState;
use crate::domain::clock::{format_ms, now_ms, parse_timestamp, SECOND_MS};
use crate::domain::validation::FieldErrors;
use crate::domain::{RecoveryStatus, SendType};
use crate::store::{RecoverCount, Recovery, Window, RECOVER_PAGE};

/// Recoveries up to this many logs are queued before the answer; larger ones run in the
/// background and report progress.
const RECOVER_INLINE_MAX: i64 = 2 * RECOVER_PAGE;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(retry_log))
        .routes(routes!(recover))
        .routes(routes!(get_recovery))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RetryQueued {
    /// The new log.
    pub log_id: Uuid,
    /// The log that was retried; it is left untouched.
    pub original_log_id: Uuid,
    pub queued_at: String,
}

/// Retry one delivery: a new log, linked by `original_log_id`, queued now with the webhook's
/// current URL, headers, authorization, timeout and secret. Its first attempt is `manual`.
#[utoipa::path(post, path = "/agents/{agent_id}/webhooks/{webhook_id}/logs/{log_id}/retry",
    tag = "redelivery",
    params(("agent_id" = Uuid, Path), ("webhook_id" = Uuid, Path), ("log_id" = Uuid, Path)),
    responses(
        (status = 202, body = Envelope<RetryQueued>),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "`LOG_NOT_RETRIABLE`: the log succeeded, is still pending, is older than the retry window, or the webhook is disabled; or its payload is gone (`reason`: `payload_expired` or `payload_erased`)"),
    ))]
async fn retry_log(
    State(state): State<AppState>,
    CurrentOrg(org_id): CurrentOrg,
    ApiPath(path): ApiPath<LogPath>,
) -> Result<(StatusCode, Json<Envelope<RetryQueued>>), ApiError> {
    let queued = retry(&state, org_id, &path).await?;
    Ok((StatusCode::ACCEPTED, ok("Webhook retry queued successfully", queued)))
}

/// Talkover's retry of the log named by `path`: a new log queued now to the webhook's current
/// configuration, or `LOG_NOT_RETRIABLE`.
pub async fn retry(
    state: &AppState,
    org_id: Uuid,
    path: &LogPath,
) -> Result<RetryQueued, ApiError> {
    let webhook = find_webhook(state, org_id, &path.webhook()).await?;
    let log = state.store.log(org_id, path.log_id).await?;
    let log = log
        .filter(|log| log.webhook_id == Some(webhook.id))
        .ok_or(ApiError::NotFound(Missing::Log))?;
    log.retriable(now_ms(), state.config.retry_window_ms())?;
    if !webhook.settings.enabled {
        return Err(ApiError::LogNotRetriable);
    }
    let (log_id, queued_at) = state.store.requeue(&log, &webhook, SendType::Manual).await?;
    Ok(RetryQueued { log_id, original_log_id: log.id, queued_at: format_ms(queued_at) })
}

/// A time as RFC 3339 text or unix seconds.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum TimeInput {
    Seconds(i64),
    Text(String),
}

impl TimeInput {
    fn parse(&self) -> Result<i64, String> {
        match self {
            TimeInput::Seconds(seconds) => seconds.checked_mul(SECOND_MS),
            TimeInput::Text(text) => parse_timestamp(text),
        }
        .ok_or_else(|| "must be RFC 3339 or unix seconds".to_string())
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct RecoverInput {
    /// Start of the window (logs created at or after).
    pub since: Option<TimeInput>,
    /// End of the window (logs created at or before); default now.
    pub until: Option<TimeInput>,
    /// Count only; queue nothing.
    pub dry_run: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RecoverResult {
    /// Logs queued (or, for a dry run or a background recovery, to be queued).
    pub count: i64,
    pub dry_run: bool,
    /// `completed`, or `running` for a recovery continuing in the background.
    pub status: String,
    /// Logs of the window left alone because their payload expired or was erased (counted
    /// when the recovery starts).
    pub without_payload: i64,
    /// `count` and `without_payload` are estimates: more than 10,000 failed (or skipped) logs
    /// of the window matched (the progress of a background recovery counts what it queues).
    pub count_estimated: bool,
    /// For a background recovery: read its progress at `.../recover/{recovery_id}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery_id: Option<Uuid>,
}

pub fn parse_window(input: &RecoverInput) -> Result<Window, ApiError> {
    let mut errors = FieldErrors::default();
    let since = match &input.since {
        Some(since) => errors.check("since", since.parse()),
        None => {
            errors.add("since", "is required");
            None
        }
    };
    let until = match &input.until {
        Some(until) => errors.check("until", until.parse()),
        None => Some(now_ms()),
    };
    if let (Some(since), Some(until)) = (since, until) {
        if since > until {
            errors.add("until", "must not be before since");
        }
    }
    errors.finish()?;
    match (since, until) {
        (Some(since), Some(until)) => Ok(Window { since, until }),
        _ => Err(ApiError::field("since", "is required")),
    }
}

/// Recover a window: every failed or skipped log of this webhook created in it that has no later
/// success is queued again, once per event, with the webhook's current configuration
/// (`send_type: recover`). Large recoveries continue in the background.
#[utoipa::path(post, path = "/agents/{agent_id}/webhooks/{webhook_id}/recover", tag = "redelivery",
    params(("agent_id" = Uuid, Path), ("webhook_id" = Uuid, Path)), request_body = RecoverInput,
    responses(
        (status = 202, body = Envelope<RecoverResult>),
        (status = 200, body = Envelope<RecoverResult>, description = "Dry run: nothing queued"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "The webhook is disabled"),
        (status = 413, body = ErrorBody), (status = 422, body = ErrorBody),
    ))]
async fn recover(
    State(state): State<AppState>,
    CurrentOrg(org_id): CurrentOrg,
    ApiPath(path): ApiPath<WebhookPath>,
    JsonBody(input): JsonBody<RecoverInput>,
) -> Result<(StatusCode, Json<Envelope<RecoverResult>>), ApiError> {
    let result = recover_window(&state, org_id, &path, &input).await?;
    let (status, message) = match (result.dry_run, result.recovery_id) {
        (true, _) => (StatusCode::OK, "Dry run: nothing was queued"),
        (false, Some(_)) => (StatusCode::ACCEPTED, "Recovery started"),
        (false, None) => (StatusCode::ACCEPTED, "Recovery queued"),
    };
    Ok((status, ok(message, result)))
}

/// Recovers the window `input` names for the webhook named by `path`: counts only for a dry run,
/// queues small recoveries now and hands large ones to the background.
pub async fn recover_window(
    state: &AppState,
    org_id: Uuid,
    path: &WebhookPath,
    input: &RecoverInput,
) -> Result<RecoverResult, ApiError> {
    let webhook = find_webhook(state, org_id, path).await?;
    let window = parse_window(input)?;
    let RecoverCount { count, without_payload, estimated } =
        state.store.recover_count(&webhook, window).await?;
    if input.dry_run.unwrap_or(false) {
        return Ok(RecoverResult {
            count,
            without_payload,
            count_estimated: estimated,
            dry_run: true,
            status: RecoveryStatus::Completed.as_str().into(),
            recovery_id: None,
        });
    }
    if !webhook.settings.enabled {
        return Err(ApiError::Conflict("Webhook is disabled; enable it before recovering".into()));
    }
    if count > RECOVER_INLINE_MAX {
        let recovery = state.store.create_recovery(&webhook, window, count).await?;
        return Ok(RecoverResult {
            count,
            without_payload,
            count_estimated: estimated,
            dry_run: false,
            status: RecoveryStatus::Running.as_str().into(),
            recovery_id: Some(recovery.id),
        });
    }
    let mut queued = 0;
    let mut after = None;
    loop {
        let (page, next) = state.store.recover_page(&webhook, window, after, None).await?;
        queued += page;
        match next {
            Some(cursor) => after = Some(cursor),
            None => break,
        }
    }
    Ok(RecoverResult {
        count: queued,
        without_payload,
        count_estimated: false,
        dry_run: false,
        status: RecoveryStatus::Completed.as_str().into(),
        recovery_id: None,
    })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RecoveryView {
    id: Uuid,
    webhook_id: Uuid,
    /// `running` or `completed`.
    status: String,
    /// Logs to queue, counted when the recovery started.
    total: i64,
    /// Logs queued so far.
    queued: i64,
    since: String,
    until: String,
    created_at: String,
    updated_at: String,
}

impl From<Recovery> for RecoveryView {
    fn from(r: Recovery) -> Self {
        Self {
            id: r.id,
            webhook_id: r.webhook_id,
            status: r.status.as_str().into(),
            total: r.total,
            queued: r.queued,
            since: format_ms(r.since),
            until: format_ms(r.until),
            created_at: format_ms(r.created_at),
            updated_at: format_ms(r.updated_at),
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct RecoveryPath {
    pub agent_id: Uuid,
    pub webhook_id: Uuid,
    pub recovery_id: Uuid,
}

/// Progress of a background recovery.
#[utoipa::path(get, path = "/agents/{agent_id}/webhooks/{webhook_id}/recover/{recovery_id}",
    tag = "redelivery",
    params(("agent_id" = Uuid, Path), ("webhook_id" = Uuid, Path), ("recovery_id" = Uuid, Path)),
    responses(
        (status = 200, body = Envelope<RecoveryView>),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
    ))]
async fn get_recovery(
    State(state): State<AppState>,
    CurrentOrg(org_id): CurrentOrg,
    ApiPath(path): ApiPath<RecoveryPath>,
) -> Result<Json<Envelope<RecoveryView>>, ApiError> {
    let recovery = find_recovery(&state, org_id, &path).await?;
    Ok(ok("Recovery retrieved successfully", recovery.into()))
}

/// The background recovery named by `path`, with its progress.
pub async fn find_recovery(
    state: &AppState,
    org_id: Uuid,
    path: &RecoveryPath,
) -> Result<Recovery, ApiError> {
    let webhook_path = WebhookPath { agent_id: path.agent_id, webhook_id: path.webhook_id };
    let webhook = find_webhook(state, org_id, &webhook_path).await?;
    let recovery = state.store.recovery(org_id, webhook.id, path.recovery_id).await?;
    recovery.ok_or(ApiError::NotFound(Missing::Resource))
}
