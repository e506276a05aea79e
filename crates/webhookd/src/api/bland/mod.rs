//! Bland's post-call webhook endpoints (SPEC §5), with Bland's `{"data", "errors"}` envelope:
//! resend to the same URL as before, create for calls that never had one, read a call's log.
//! Sends go through the dispatcher's lanes (so a webhook's limits hold for them too) and are
//! recorded before the answer.

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
use crate::dispatch::ExplicitResult;
use crate::domain::clock::format_ms;
use crate::domain::event::CallId;
use crate::domain::webhook::WebhookUrl;
use crate::domain::{PayloadState, SendType};
use crate::store::{Attempt, DeliveryLog};
use envelope::{envelope, BlandJson, BlandOrg};

/// At most this many call IDs per request.
pub const CALL_IDS_MAX: usize = 100;

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
    pub response_code: Option<u16>,
    /// e.g. `142ms`.
    pub response_time: String,
    /// `spawn`, `retry`, `manual`, `resend`, `create`, `recover` or `test`.
    #[schema(value_type = String)]
    pub send_type: SendType,
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
    /// The JSON that was sent; `null` once it is gone (`payload_state`).
    #[schema(value_type = Object)]
    pub payload: Box<RawValue>,
    /// `present`, `expired` or `erased`.
    #[schema(value_type = String)]
    pub payload_state: PayloadState,
    pub url: String,
    /// The organization.
    pub user_id: Uuid,
    /// When the webhook was first created.
    pub created_at: String,
    /// Every attempt, oldest first.
    pub metadata: Vec<BlandAttempt>,
}

async fn bland_log(state: &AppState, log: DeliveryLog) -> Result<BlandLog, ApiError> {
    let attempts = state.store.attempts_of(&log).await?;
    Ok(BlandLog {
        call_id: log.call_id,
        payload: match log.payload.filter(|_| log.payload_state.is_present()) {
            Some(payload) => raw_json(String::from_utf8(payload).unwrap_or_default()),
            None => raw_json("null".into()),
        },
        payload_state: log.payload_state,
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

/// Each sent log as it stands after its send; busy or unsent logs become errors.
async fn describe(
    state: &AppState,
    org_id: Uuid,
    results: Vec<ExplicitResult>,
    order: &[Uuid],
    errors: &mut Vec<BlandError>,
) -> Result<Vec<BlandLog>, ApiError> {
    let mut sent = HashSet::new();
    for result in results {
        match result {
            ExplicitResult::Sent(record) => {
                sent.insert(record.log_id);
            }
            ExplicitResult::Busy(id) => errors.push(BlandError::invalid(format!(
                "A delivery of log {id} is in progress; try again shortly"
            ))),
            ExplicitResult::Dropped(id) => errors.push(BlandError::invalid(format!(
                "Log {id} could not be sent; try again shortly"
            ))),
        }
    }
    let mut logs = Vec::with_capacity(sent.len());
    for id in order.iter().filter(|id| sent.contains(id)) {
        if let Some(log) = state.store.log(org_id, *id).await? {
            logs.push(bland_log(state, log).await?);
        }
    }
    Ok(logs)
}

/// Bland's resend: each call's post-call log(s) sent again now, to the same URL as before, through
/// their webhook's lane. Calls without one, and logs whose webhook is disabled, are reported in
/// the errors. (The dashboard's Resend button runs this too.)
pub async fn resend_calls(
    state: &AppState,
    org_id: Uuid,
    call_ids: &[CallId],
) -> Result<(Vec<BlandLog>, Vec<BlandError>), ApiError> {
    let mut errors = Vec::new();
    let mut found = Vec::new();
    for call_id in call_ids {
        let logs = state.store.post_call_logs(org_id, call_id, true).await?;
        if logs.is_empty() {
            errors.push(BlandError::invalid(format!(
                "No post-call webhook was sent for call {call_id}"
            )));
        }
        found.extend(logs.into_iter().map(|log| (call_id, log)));
    }
    let webhook_ids: Vec<Uuid> = found.iter().filter_map(|(_, log)| log.webhook_id).collect();
    let webhooks = state.store.webhooks_by_id(&webhook_ids).await?;
    let mut log_ids = Vec::with_capacity(found.len());
    for (call_id, log) in found {
        if let Some(reason) = log.payload_state.error() {
            errors.push(BlandError::invalid(format!(
                "The post-call webhook of call {call_id} cannot be resent: {reason}"
            )));
            continue;
        }
        let disabled =
            log.webhook_id.and_then(|id| webhooks.get(&id)).filter(|w| !w.settings.enabled);
        match disabled {
            Some(webhook) => errors.push(BlandError::invalid(format!(
                "The webhook {} of call {call_id} is disabled; enable it before resending",
                webhook.id
            ))),
            None => log_ids.push(log.id),
        }
    }
    let results = state.dispatcher.resend(org_id, log_ids.clone(), SendType::Resend).await;
    let logs = describe(state, org_id, results, &log_ids, &mut errors).await?;
    Ok((logs, errors))
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
    let (data, errors) = resend_calls(&state, org_id, &call_ids).await?;
    Ok(envelope(data, errors))
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
        Some(Value::String(url)) => WebhookUrl::parse(&url, &state.destinations)
            .map_err(|e| BlandFailure::invalid(format!("webhook_url {e}")))?,
        Some(_) => return Err(BlandFailure::invalid("webhook_url must be a string")),
        None => return Err(BlandFailure::invalid("webhook_url is required")),
    };
    let mut errors = Vec::new();
    let mut held = Vec::new();
    for call_id in &call_ids {
        let events = state.store.post_call_events(org_id, call_id).await.map_err(ApiError::from)?;
        let Some(event) = events.last() else {
            errors
                .push(BlandError::invalid(format!("No post-call event exists for call {call_id}")));
            continue;
        };
        let already = BlandError::invalid(format!(
            "Call {call_id} already has a post-call webhook; use /v1/postcall/webhooks/resend"
        ));
        if events.iter().any(|event| event.has_logs) {
            errors.push(already);
            continue;
        }
        if let Some(reason) = event.payload_state.error() {
            errors.push(BlandError::invalid(format!(
                "The post-call webhook of call {call_id} cannot be created: {reason}"
            )));
            continue;
        }
        let created = state
            .store
            .create_held_log(org_id, event, call_id, url.as_str(), SendType::Create)
            .await
            .map_err(ApiError::from)?;
        match created {
            Some(log) => held.push(log),
            None => errors.push(already),
        }
    }
    let order: Vec<Uuid> = held.iter().map(|log| log.id).collect();
    let results = state.dispatcher.send_held(held, SendType::Create).await;
    let data = describe(&state, org_id, results, &order, &mut errors).await?;
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
    let logs = match CallId::parse(&path.call_id) {
        Ok(call_id) => {
            state.store.post_call_logs(org_id, &call_id, false).await.map_err(ApiError::from)?
        }
        // No event has a call id that does not parse: the same 404 as any unknown call.
        Err(_) => Vec::new(),
    };
    let Some(log) = logs.into_iter().last() else {
        return Err(BlandFailure {
            status: StatusCode::NOT_FOUND,
            error: BlandError::invalid(format!(
                "No post-call webhook exists for call {}",
                path.call_id
            )),
            fault: None,
        });
    };
    Ok(envelope(bland_log(&state, log).await?, Vec::new()))
}
