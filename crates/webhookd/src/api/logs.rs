//! `/api/v1/agents/{agent_id}/webhooks/{webhook_id}/logs`: a webhook's delivery logs.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::envelope::{ok, Envelope, PageParams, Pagination};
use super::error::{ApiError, ErrorBody, Missing};
use super::extract::{ApiPath, ApiQuery, CurrentOrg};
use super::webhooks::{find_webhook, WebhookPath};
use super::AppState;
use crate::domain::clock::{format_ms, parse_timestamp};
use crate::domain::event::ID_MAX as FILTER_MAX;
use crate::domain::text;
use crate::domain::validation::FieldErrors;
use crate::domain::{LogStatus, PayloadState, SendType};
use crate::store::{Attempt, DeliveryLog, LogFilter, LogListing, LogPage};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_logs)).routes(routes!(get_log))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogQuery {
    /// 1-based page number (default 1); ignored with `cursor`.
    page: Option<i64>,
    /// 1–100 (default 25).
    per_page: Option<i64>,
    /// `next_cursor` of the previous page: keyset paging for large logs (no total).
    cursor: Option<String>,
    /// `pending`, `success`, `failed` or `skipped`.
    status: Option<String>,
    /// Event type, e.g. `call.completed`.
    event: Option<String>,
    call_id: Option<String>,
    /// Created at or after (RFC 3339 or unix seconds).
    since: Option<String>,
    /// Created at or before (RFC 3339 or unix seconds).
    until: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LogView {
    id: Uuid,
    webhook_id: Option<Uuid>,
    event: String,
    /// Attempts made so far.
    attempt: i64,
    /// `pending`, `success`, `failed` or `skipped`.
    #[schema(value_type = String)]
    status: LogStatus,
    /// Response code of the latest attempt.
    http_status: Option<i64>,
    /// The event's `data`, as delivered. In a listing, `null` when larger than 16 KiB (read the
    /// log itself for it); see `request_payload_bytes`. `null` once the payload is gone
    /// (`payload_state`).
    #[schema(value_type = Object)]
    request_payload: Box<RawValue>,
    /// Size of the payload in bytes (0 once it is gone).
    request_payload_bytes: i64,
    /// `present`, `expired` (`--payload-retention` passed) or `erased` (`DELETE
    /// /calls/{call_id}`). Without a payload, `request_payload`, `response_body` and
    /// `response_headers` are `null` here and in every attempt.
    #[schema(value_type = String)]
    payload_state: PayloadState,
    /// Response body of the latest attempt (at most 16 KiB).
    response_body: Option<String>,
    #[schema(value_type = Option<Object>)]
    response_headers: Option<Box<RawValue>>,
    duration_ms: Option<i64>,
    delivered_at: Option<String>,
    error: Option<String>,
    created_at: String,
    event_id: Uuid,
    call_id: Option<String>,
    url: String,
    /// The log this one retries (Talkover retry, recover).
    original_log_id: Option<Uuid>,
    /// When the next attempt is due (pending logs).
    next_attempt_at: Option<String>,
}

/// Stored JSON text back as JSON; `null` if it somehow is not.
pub fn raw_json(text: String) -> Box<RawValue> {
    RawValue::from_string(text)
        .unwrap_or_else(|_| RawValue::from_string("null".into()).expect("null is JSON"))
}

impl From<DeliveryLog> for LogView {
    fn from(log: DeliveryLog) -> Self {
        let payload = log
            .payload
            .filter(|_| log.payload_state.is_present())
            .map_or_else(|| "null".into(), |p| String::from_utf8(p).unwrap_or_default());
        Self {
            id: log.id,
            webhook_id: log.webhook_id,
            event: log.event_type,
            attempt: log.attempt_count,
            status: log.status,
            http_status: log.http_status,
            request_payload: raw_json(payload),
            request_payload_bytes: log.payload_bytes,
            payload_state: log.payload_state,
            response_body: log.response_body,
            response_headers: log.response_headers.map(raw_json),
            duration_ms: log.duration_ms,
            delivered_at: log.delivered_at.map(format_ms),
            error: log.error,
            created_at: format_ms(log.created_at),
            event_id: log.event_id,
            call_id: log.call_id,
            url: log.url,
            original_log_id: log.original_log_id,
            next_attempt_at: log.next_attempt_at.map(format_ms),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptView {
    id: Uuid,
    /// 1 for the log's first attempt.
    attempt: i64,
    /// `spawn`, `retry`, `manual`, `resend`, `create`, `recover` or `test`.
    #[schema(value_type = String)]
    send_type: SendType,
    sent_at: String,
    /// `null` when no response arrived (network error, timeout).
    http_status: Option<u16>,
    duration_ms: i64,
    response_body: Option<String>,
    #[schema(value_type = Option<Object>)]
    response_headers: Option<Box<RawValue>>,
    error: Option<String>,
}

impl From<Attempt> for AttemptView {
    fn from(attempt: Attempt) -> Self {
        Self {
            id: attempt.id,
            attempt: attempt.number,
            send_type: attempt.send_type,
            sent_at: format_ms(attempt.sent_at),
            http_status: attempt.response_code,
            duration_ms: attempt.duration_ms,
            response_body: attempt.response_body,
            response_headers: attempt.response_headers.map(raw_json),
            error: attempt.error,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LogDetail {
    #[serde(flatten)]
    log: LogView,
    /// Every attempt, oldest first.
    attempts: Vec<AttemptView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LogList {
    logs: Vec<LogView>,
    /// Present for numbered pages.
    pagination: Option<Pagination>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    next_cursor: Option<String>,
}

impl LogList {
    /// A page of `listing`, with Talkover's pagination for numbered pages.
    pub fn new(listing: LogListing, page: LogPage) -> Self {
        let pagination = match (page, listing.total) {
            (LogPage::Number { page, per_page }, Some(total)) => {
                Some(Pagination::new(page, per_page, total).estimated(listing.total_estimated))
            }
            _ => None,
        };
        Self {
            logs: listing.logs.into_iter().map(LogView::from).collect(),
            pagination,
            next_cursor: listing.next_cursor.map(|id| id.to_string()),
        }
    }
}

impl LogDetail {
    pub fn new(log: DeliveryLog, attempts: Vec<Attempt>) -> Self {
        Self { log: log.into(), attempts: attempts.into_iter().map(AttemptView::from).collect() }
    }
}

#[derive(Debug, Deserialize)]
pub struct LogPath {
    pub agent_id: Uuid,
    pub webhook_id: Uuid,
    pub log_id: Uuid,
}

impl LogPath {
    pub fn webhook(&self) -> WebhookPath {
        WebhookPath { agent_id: self.agent_id, webhook_id: self.webhook_id }
    }
}

pub(crate) fn parse_query(query: LogQuery) -> Result<(LogFilter, LogPage), ApiError> {
    let (page, per_page) = PageParams { page: query.page, per_page: query.per_page }.resolve()?;
    let mut errors = FieldErrors::default();
    let text = |errors: &mut FieldErrors, field: &str, value: Option<String>| {
        value.and_then(|value| errors.check(field, text::parse_filter(&value, FILTER_MAX)))
    };
    let mut filter = LogFilter {
        event: text(&mut errors, "event", query.event),
        call_id: text(&mut errors, "call_id", query.call_id),
        ..LogFilter::default()
    };
    if let Some(status) = query.status {
        filter.status = errors.check(
            "status",
            LogStatus::parse(&status).ok_or("must be pending, success, failed or skipped"),
        );
    }
    let timestamp =
        |value: &str| parse_timestamp(value).ok_or("must be RFC 3339 or unix seconds".to_string());
    filter.since = query.since.and_then(|since| errors.check("since", timestamp(&since)));
    filter.until = query.until.and_then(|until| errors.check("until", timestamp(&until)));
    let cursor = query.cursor.and_then(|cursor| {
        errors.check(
            "cursor",
            Uuid::parse_str(&cursor).map_err(|_| "is not a cursor from next_cursor"),
        )
    });
    errors.finish()?;
    let page = match cursor {
        Some(cursor) => LogPage::After { cursor: Some(cursor), per_page },
        None => LogPage::Number { page, per_page },
    };
    Ok((filter, page))
}

/// List a webhook's delivery logs, newest first.
#[utoipa::path(get, path = "/agents/{agent_id}/webhooks/{webhook_id}/logs", tag = "logs",
    params(("agent_id" = Uuid, Path), ("webhook_id" = Uuid, Path), LogQuery),
    responses(
        (status = 200, body = Envelope<LogList>),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody),
    ))]
async fn list_logs(
    State(state): State<AppState>,
    CurrentOrg(org_id): CurrentOrg,
    ApiPath(path): ApiPath<WebhookPath>,
    ApiQuery(query): ApiQuery<LogQuery>,
) -> Result<Json<Envelope<LogList>>, ApiError> {
    let (filter, page) = parse_query(query)?;
    let webhook = find_webhook(&state, org_id, &path).await?;
    let listing = state.store.list_logs(&webhook, &filter, page).await?;
    Ok(ok("Webhook logs retrieved successfully", LogList::new(listing, page)))
}

/// Read one delivery log with every attempt.
#[utoipa::path(get, path = "/agents/{agent_id}/webhooks/{webhook_id}/logs/{log_id}", tag = "logs",
    params(("agent_id" = Uuid, Path), ("webhook_id" = Uuid, Path), ("log_id" = Uuid, Path)),
    responses(
        (status = 200, body = Envelope<LogDetail>),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
    ))]
async fn get_log(
    State(state): State<AppState>,
    CurrentOrg(org_id): CurrentOrg,
    ApiPath(path): ApiPath<LogPath>,
) -> Result<Json<Envelope<LogDetail>>, ApiError> {
    let webhook = find_webhook(&state, org_id, &path.webhook()).await?;
    let found = state.store.log_with_attempts(org_id, webhook.id, path.log_id).await?;
    let (log, attempts) = found.ok_or(ApiError::NotFound(Missing::Log))?;
    Ok(ok("Webhook log retrieved successfully", LogDetail::new(log, attempts)))
}
