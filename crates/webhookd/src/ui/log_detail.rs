//! One delivery log with every attempt: the request as sent (method, URL, headers with the
//! signatures, body) and what came back (status, headers, body, duration, error), each attempt's
//! send type, and the link to the log it retries.
//!
//! Request headers are not stored; they are computed again exactly as the sender computes them
//! (`dispatch::sender::request_headers`) for each attempt's timestamp, with the webhook's current
//! settings and secrets. The authorization header's credential is masked: secrets are only ever
//! shown by the explicit Reveal button.

use askama::Template;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use uuid::Uuid;

use super::error::UiError;
use super::logs::{chrome_for, find};
use super::request::{LogPath, UiPath, UiQuery};
use super::session::Session;
use super::views::{header_pairs, optional_time, render, text, time, Label};
use crate::api::AppState;
use crate::dispatch::sender::{request_headers, Destination, Outgoing};
use crate::domain::catalog::POST_CALL_EVENT;
use crate::domain::clock::{now_ms, UnixMs, SECOND_MS};
use crate::domain::{LogStatus, PayloadState};
use crate::store::{Attempt, DeliveryLog, Webhook};

#[derive(Debug, serde::Deserialize)]
pub struct Done {
    done: Option<String>,
}

fn done_message(done: &str) -> Option<&'static str> {
    match done {
        "retried" => Some(
            "Retry queued: this is the new log, sent with the webhook's current URL, headers, \
             timeout and secret. The original log is unchanged.",
        ),
        "erased" => Some(
            "Call data erased: the payloads of every event of this call, and the response bodies \
             and headers of all their logs, are gone. Nothing of the call will be sent again.",
        ),
        _ => None,
    }
}

pub fn log_href(path: &LogPath) -> String {
    format!("/ui/agents/{}/webhooks/{}/logs/{}", path.agent_id, path.webhook_id, path.log_id)
}

pub struct AttemptView {
    pub number: i64,
    pub send_type: String,
    pub sent_at: String,
    pub http_status: String,
    pub duration_ms: i64,
    pub error: String,
    pub request_headers: Vec<(String, String)>,
    pub response_headers: Vec<(String, String)>,
    pub response_body: String,
}

pub struct LogView {
    pub id: Uuid,
    pub event: String,
    pub event_id: Uuid,
    pub call_id: String,
    pub status: String,
    pub method: &'static str,
    pub url: String,
    pub created_at: String,
    pub delivered_at: String,
    pub next_attempt_at: String,
    pub original_log_id: Option<Uuid>,
    pub payload: String,
    /// `payload expired` or `payload erased` when the payload is gone, else empty.
    pub payload_gone: &'static str,
    pub pending: bool,
    pub retriable: bool,
    pub resendable: bool,
    /// The log has a call whose data is not erased yet.
    pub erasable: bool,
}

#[derive(Template)]
#[template(path = "log.html")]
struct LogPage {
    chrome: super::views::Chrome,
    /// `/ui/agents/{agent_id}/webhooks/{webhook_id}`
    base: String,
    log: LogView,
    attempts: Vec<AttemptView>,
}

/// The headers of an attempt of `log` sent at `sent_at`, as the sender builds them.
fn headers_sent(webhook: &Webhook, log: &DeliveryLog, sent_at: UnixMs) -> Vec<(String, String)> {
    let settings = &webhook.settings;
    // Each attempt's span id is its own and not kept: no `traceparent` is shown.
    let outgoing = Outgoing::new(
        Destination::Webhook(webhook),
        &log.url,
        log.event_id,
        &log.event_type,
        Bytes::from(log.payload.clone().unwrap_or_default()),
        sent_at,
    );
    // An `oauth2` token is not kept; a stand-in marks where it went, masked like the others.
    let bearer = settings.authorization.oauth2().is_some().then_some("token");
    let masked = settings.authorization.header_name();
    let mut headers: Vec<(String, String)> =
        request_headers(&outgoing, sent_at / SECOND_MS, bearer)
            .iter()
            .map(|(name, value)| {
                let value = if masked.as_deref() == Some(name.as_str()) {
                    format!("(hidden: {} credential)", settings.authorization.scheme())
                } else {
                    String::from_utf8_lossy(value.as_bytes()).into_owned()
                };
                (name.as_str().to_string(), value)
            })
            .collect();
    headers.push(("user-agent".into(), concat!("webhookd/", env!("CARGO_PKG_VERSION")).into()));
    headers
}

fn attempt_view(webhook: &Webhook, log: &DeliveryLog, attempt: Attempt) -> AttemptView {
    AttemptView {
        number: attempt.number,
        send_type: attempt.send_type.label().to_string(),
        sent_at: time(attempt.sent_at),
        http_status: attempt.response_code.map(|c| c.to_string()).unwrap_or_default(),
        duration_ms: attempt.duration_ms,
        // The status line already says "HTTP 500"; an error that only repeats it is left out.
        error: attempt
            .error
            .filter(|e| {
                Some(e.as_str()) != attempt.response_code.map(|c| format!("HTTP {c}")).as_deref()
            })
            .unwrap_or_default(),
        request_headers: headers_sent(webhook, log, attempt.sent_at),
        response_headers: header_pairs(attempt.response_headers.as_deref()),
        response_body: attempt.response_body.unwrap_or_default(),
    }
}

pub async fn show(
    State(state): State<AppState>,
    session: Session,
    UiPath(path): UiPath<LogPath>,
    UiQuery(done): UiQuery<Done>,
) -> Result<Response, UiError> {
    let (agent, webhook) = find(&state, &session, &path.webhook()).await?;
    let found = state.store.log_with_attempts(session.org_id(), webhook.id, path.log_id).await?;
    let (log, attempts) = found.ok_or(UiError::NotFound)?;
    let view = LogView {
        id: log.id,
        event: log.event_type.clone(),
        event_id: log.event_id,
        call_id: log.call_id.clone().unwrap_or_default(),
        status: log.status.label().to_string(),
        method: webhook.settings.http_method.as_str(),
        url: log.url.clone(),
        created_at: time(log.created_at),
        delivered_at: optional_time(log.delivered_at),
        next_attempt_at: optional_time(log.next_attempt_at),
        original_log_id: log.original_log_id,
        payload: text(log.payload.as_deref().unwrap_or_default()),
        payload_gone: log.payload_state.error().unwrap_or_default(),
        pending: log.status == LogStatus::Pending,
        // The same refusals as the API's retry, so the button shows only where it works.
        retriable: log.retriable(now_ms(), state.config.retry_window_ms()).is_ok()
            && webhook.settings.enabled,
        resendable: log.event_type == POST_CALL_EVENT
            && log.call_id.is_some()
            && log.payload_state.is_present(),
        erasable: log.call_id.is_some() && log.payload_state != PayloadState::Erased,
    };
    let attempts = attempts.into_iter().map(|a| attempt_view(&webhook, &log, a)).collect();
    let chrome = chrome_for(&session, &agent, &webhook)
        .crumb(format!("Log {}", log.id), log_href(&path))
        .notice(done.done.as_deref().and_then(done_message));
    let base = format!("/ui/agents/{}/webhooks/{}", agent.id, webhook.id);
    render(&LogPage { chrome, base, log: view, attempts })
}
