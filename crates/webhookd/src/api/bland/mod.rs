//! Bland's post-call webhook endpoints (SPEC §5), with Bland's `{"data", "errors"}` envelope:
//! resend to the same URL as before, create for calls that never had one, read a call's log.
//! Sends happen before the answer, a few at a time, each within its webhook's timeout.

mod envelope;

use std::collections::HashSet;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

pub use envelope::{BlandEnvelope, BlandError, BlandFailure};

use super::error::ApiError;
use super::extract::ApiPath;
use super::logs::raw_json;
use super::AppState;
use crate::dispatch::immediate;
use crate::domain::clock::format_ms;
use crate::domain::event::CallId;
use crate::domain::webhook::WebhookUrl;
use crate::domain::SendType;
use crate::store::{Attempt, ClaimedLog, DeliveryLog};
use envelope::{envelope, BlandJson, BlandOrg};

/// At most this many call IDs per request.
pub const CALL_IDS_MAX: usize = 100;
/// Resends in flight at once for one request.
const SEND_CONCURRENCY: usize = 10;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(resend))
        .routes(routes!(create))
        .routes(routes!(get_post_call_log))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ResendInput {
    /// 1–100 unique call IDs.
    #[schema(value_type = Vec<String>)]
    call_ids: Option<Value>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateInput {
    /// 1–100 unique call IDs.
    #[schema(value_type = Vec<String>)]
    call_ids: Option<Value>,
    /// Where to send the post-call webhook.
    #[schema(value_type = String)]
    webhook_url: Option<Value>,
}

/// One attempt of a log, Bland's way.
#[derive(Debug, Serialize, ToSchema)]
pub struct BlandAttempt {
    pub sent_at: String,
    /// `null` when no response arrived.
    pub response_code: Option<i64>,
    /// e.g. `142ms`.
    pub response_time: String,
    /// `spawn`, `retry`, `manual`, `resend`, `create`, `recover` or `test`.
    pub send_type: String,
    pub error_message: Option<String>,
}

impl From<Attempt> for BlandAttempt {
    fn from(attempt: Attempt) -> Self {
        Self {
            sent_at: format_ms(attempt.sent_at),
            response_code: attempt.response_code,
            response_time: format!("{}ms", attempt.duration_ms),
            send_type: attempt.send_type,
            error_message: attempt.error,
        }
    }
}

/// A post-call webhook log, Bland's way.
#[derive(Debug, Serialize, ToSchema)]
pub struct BlandLog {
    pub call_id: Option<String>,
    /// The JSON that was sent.
    #[schema(value_type = Object)]
    pub payload: Box<RawValue>,
    pub url: String,
    /// The organization.
    pub user_id: Uuid,
    /// When the webhook was first created.
    pub created_at: String,
    /// Every attempt, oldest first.
    pub metadata: Vec<BlandAttempt>,
}

async fn bland_log(state: &AppState, log: DeliveryLog) -> Result<BlandLog, ApiError> {
    let attempts = state.store.attempts_of(log.id).await?;
    Ok(BlandLog {
        call_id: log.call_id,
        payload: raw_json(String::from_utf8(log.payload).unwrap_or_default()),
        url: log.url,
        user_id: log.org_id,
        created_at: format_ms(log.created_at),
        metadata: attempts.into_iter().map(BlandAttempt::from).collect(),
    })
}

/// `call_ids` checked as a whole: present, an array of 1–100 unique non-empty strings.
fn parse_call_ids(value: Option<Value>) -> Result<Vec<CallId>, BlandFailure> {
    let Some(value) = value else {
        return Err(BlandFailure::invalid("call_ids is required"));
    };
    let Value::Array(items) = value else {
        return Err(BlandFailure::invalid("call_ids must be an array of call IDs"));
    };
    if items.is_empty() {
        return Err(BlandFailure::invalid("call_ids must contain at least 1 call ID"));
    }
    if items.len() > CALL_IDS_MAX {
        return Err(BlandFailure::invalid(format!(
            "call_ids must contain at most {CALL_IDS_MAX} call IDs"
        )));
    }
    let mut seen = HashSet::with_capacity(items.len());
    let mut call_ids = Vec::with_capacity(items.len());
    for item in items {
        let Value::String(call_id) = item else {
            return Err(BlandFailure::invalid("call_ids must contain only strings"));
        };
        let call_id = CallId::parse(&call_id)
            .map_err(|e| BlandFailure::invalid(format!("each call ID {e}")))?;
        if !seen.insert(call_id.clone()) {
            return Err(BlandFailure::invalid(format!(
                "call_ids must be unique; {:?} appears more than once",
                call_id.as_str()
            )));
        }
        call_ids.push(call_id);
    }
    Ok(call_ids)
}

/// Sends the claimed logs now and answers with each log as it stands afterwards.
async fn send_and_describe(
    state: &AppState,
    org_id: Uuid,
    claimed: Vec<ClaimedLog>,
    send_type: SendType,
) -> Result<Vec<BlandLog>, ApiError> {
    let sent = immediate::send_now(
        &state.store,
        &state.sender,
        &state.policy,
        claimed,
        send_type,
        SEND_CONCURRENCY,
    )
    .await?;
    let mut logs = Vec::with_capacity(sent.len());
    for (job, _) in sent {
        if let Some(log) = state.store.log(org_id, job.log.id).await? {
            logs.push(bland_log(state, log).await?);
        }
    }
    Ok(logs)
}

/// Resend post-call webhooks: each call's post-call log(s) are sent again, now, to the same URL
/// they went to before; each gets a `resend` attempt. Calls without one are reported in `errors`.
#[utoipa::path(post, path = "/v1/postcall/webhooks/resend", tag = "bland", request_body = ResendInput,
    responses(
        (status = 200, body = BlandEnvelope<Vec<BlandLog>>),
        (status = 400, body = BlandEnvelope<Option<String>>), (status = 401, body = BlandEnvelope<Option<String>>),
        (status = 500, body = BlandEnvelope<Option<String>>),
    ))]
async fn resend(
    State(state): State<AppState>,
    BlandOrg(org_id): BlandOrg,
    BlandJson(input): BlandJson<ResendInput>,
) -> Result<Json<BlandEnvelope<Vec<BlandLog>>>, BlandFailure> {
    let call_ids = parse_call_ids(input.call_ids)?;
    let (data, errors) = resend_calls(&state, org_id, call_ids).await?;
    Ok(envelope(data, errors))
}

/// Bland's resend: each call's post-call log(s) sent again now to the same URL as before, each
/// with a `resend` attempt. Returns the logs as they stand afterwards, and an error for each call
/// that has no post-call webhook and each log whose delivery is already in flight.
pub async fn resend_calls(
    state: &AppState,
    org_id: Uuid,
    call_ids: Vec<CallId>,
) -> Result<(Vec<BlandLog>, Vec<BlandError>), ApiError> {
    let mut errors = Vec::new();
    let mut log_ids = Vec::new();
    for call_id in call_ids.iter().map(CallId::as_str) {
        let logs =
            state.store.post_call_logs(org_id, call_id, true).await.map_err(ApiError::from)?;
        if logs.is_empty() {
            errors.push(BlandError::invalid(format!(
                "No post-call webhook was sent for call {call_id}"
            )));
        }
        log_ids.extend(logs.into_iter().map(|log| log.id));
    }
    let claimed = state.store.claim_logs(org_id, &log_ids).await.map_err(ApiError::from)?;
    if claimed.len() < log_ids.len() {
        let busy: HashSet<Uuid> = claimed.iter().map(|log| log.id).collect();
        for id in log_ids.iter().filter(|id| !busy.contains(id)) {
            errors.push(BlandError::invalid(format!(
                "A delivery of log {id} is in progress; try again shortly"
            )));
        }
    }
    let data = send_and_describe(state, org_id, claimed, SendType::Resend).await?;
    Ok((data, errors))
}

/// Create post-call webhooks for calls whose post-call event never had one: the event is sent
/// now to `webhook_url`, signed with the organization's secret (`send_type: create`).
#[utoipa::path(post, path = "/v1/postcall/webhooks/create", tag = "bland", request_body = CreateInput,
    responses(
        (status = 200, body = BlandEnvelope<Vec<BlandLog>>),
        (status = 400, body = BlandEnvelope<Option<String>>), (status = 401, body = BlandEnvelope<Option<String>>),
        (status = 500, body = BlandEnvelope<Option<String>>),
    ))]
async fn create(
    State(state): State<AppState>,
    BlandOrg(org_id): BlandOrg,
    BlandJson(input): BlandJson<CreateInput>,
) -> Result<Json<BlandEnvelope<Vec<BlandLog>>>, BlandFailure> {
    let call_ids = parse_call_ids(input.call_ids)?;
    let url = match input.webhook_url {
        Some(Value::String(url)) => WebhookUrl::parse(&url, state.config.allow_private_targets)
            .map_err(|e| BlandFailure::invalid(format!("webhook_url {e}")))?,
        Some(_) => return Err(BlandFailure::invalid("webhook_url must be a string")),
        None => return Err(BlandFailure::invalid("webhook_url is required")),
    };
    let mut errors = Vec::new();
    let mut claimed = Vec::new();
    for call_id in call_ids.iter().map(CallId::as_str) {
        let events = state.store.post_call_events(org_id, call_id).await.map_err(ApiError::from)?;
        let Some(event) = events.last() else {
            errors
                .push(BlandError::invalid(format!("No post-call event exists for call {call_id}")));
            continue;
        };
        if events.iter().any(|event| event.has_logs) {
            errors.push(BlandError::invalid(format!(
                "Call {call_id} already has a post-call webhook; use /v1/postcall/webhooks/resend"
            )));
            continue;
        }
        let log = state
            .store
            .create_claimed_log(org_id, event, call_id, url.as_str(), SendType::Create)
            .await
            .map_err(ApiError::from)?;
        claimed.push(log);
    }
    let data = send_and_describe(&state, org_id, claimed, SendType::Create).await?;
    Ok(envelope(data, errors))
}

#[derive(Debug, Deserialize)]
pub struct CallPath {
    call_id: String,
}

/// The call's post-call webhook log (the latest, if it went to several destinations).
#[utoipa::path(get, path = "/v1/postcall/webhooks/{call_id}", tag = "bland",
    params(("call_id" = String, Path)),
    responses(
        (status = 200, body = BlandEnvelope<BlandLog>),
        (status = 401, body = BlandEnvelope<Option<String>>),
        (status = 404, body = BlandEnvelope<Option<String>>),
    ))]
async fn get_post_call_log(
    State(state): State<AppState>,
    BlandOrg(org_id): BlandOrg,
    path: Result<ApiPath<CallPath>, ApiError>,
) -> Result<Json<BlandEnvelope<BlandLog>>, BlandFailure> {
    let ApiPath(path) = path?;
    let logs =
        state.store.post_call_logs(org_id, &path.call_id, false).await.map_err(ApiError::from)?;
    let Some(log) = logs.into_iter().last() else {
        return Err(BlandFailure {
            status: StatusCode::NOT_FOUND,
            error: BlandError::invalid(format!(
                "No post-call webhook exists for call {}",
                path.call_id
            )),
        });
    };
    Ok(envelope(bland_log(&state, log).await?, Vec::new()))
}
