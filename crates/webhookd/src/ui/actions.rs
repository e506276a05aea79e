//! The buttons: each calls the API's own operation and shows its result.

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use uuid::Uuid;

use super::csrf::CsrfForm;
use super::error::UiError;
use super::log_detail::log_href;
use super::logs::{chrome_for, find};
use super::request::{LogPath, UiPath, WebhookPath};
use super::session::Session;
use super::sign_in::see_other;
use super::views::{render, Chrome};
use crate::api::bland::resend_calls;
use crate::api::calls::erase_call;
use crate::api::redelivery::retry as talkover_retry;
use crate::api::secrets::{rotate, SecretView};
use crate::api::webhooks::test::{send_test, TestResult};
use crate::api::webhooks::{delete as delete_webhook, toggle as toggle_webhook};
use crate::api::AppState;
use crate::domain::catalog::POST_CALL_EVENT;
use crate::domain::event::CallId;
use crate::store::Agent;

fn webhook_href(path: &WebhookPath) -> String {
    format!("/ui/agents/{}/webhooks/{}", path.agent_id, path.webhook_id)
}

pub async fn toggle(
    State(state): State<AppState>,
    UiPath(path): UiPath<WebhookPath>,
    form: CsrfForm,
) -> Result<Response, UiError> {
    find(&state, &form.session, &path).await?;
    let toggled = toggle_webhook(&state, form.session.org_id(), &path).await?;
    let done = if toggled.settings.enabled { "enabled" } else { "disabled" };
    Ok(see_other(&format!("{}?done={done}", webhook_href(&path))))
}

#[derive(Template)]
#[template(path = "test_result.html")]
struct TestPage {
    chrome: Chrome,
    agent_id: Uuid,
    webhook_id: Uuid,
    result: TestResult,
}

pub async fn test(
    State(state): State<AppState>,
    UiPath(path): UiPath<WebhookPath>,
    form: CsrfForm,
) -> Result<Response, UiError> {
    let (agent, webhook) = find(&state, &form.session, &path).await?;
    let result = send_test(&state, &webhook).await?;
    let chrome = chrome_for(&form.session, &agent, &webhook);
    render(&TestPage { chrome, agent_id: agent.id, webhook_id: webhook.id, result })
}

#[derive(Template)]
#[template(path = "confirm_delete.html")]
struct ConfirmDeletePage {
    chrome: Chrome,
    agent_id: Uuid,
    webhook_id: Uuid,
    name: String,
}

pub async fn confirm_delete(
    State(state): State<AppState>,
    session: Session,
    UiPath(path): UiPath<WebhookPath>,
) -> Result<Response, UiError> {
    let (agent, webhook) = find(&state, &session, &path).await?;
    let chrome = chrome_for(&session, &agent, &webhook);
    let name = webhook.settings.name.as_str().to_string();
    render(&ConfirmDeletePage { chrome, agent_id: agent.id, webhook_id: webhook.id, name })
}

pub async fn delete(
    State(state): State<AppState>,
    UiPath(path): UiPath<WebhookPath>,
    form: CsrfForm,
) -> Result<Response, UiError> {
    find(&state, &form.session, &path).await?;
    delete_webhook(&state, form.session.org_id(), &path).await?;
    Ok(see_other(&format!("/ui/agents/{}?done=deleted", path.agent_id)))
}

#[derive(Template)]
#[template(path = "secret.html")]
struct SecretPage {
    chrome: Chrome,
    agent_id: Uuid,
    webhook_id: Uuid,
    secret: SecretView,
    rotated: bool,
}

/// Shows the signing secret: only ever in answer to the Reveal button, never on a page load.
pub async fn reveal_secret(
    State(state): State<AppState>,
    UiPath(path): UiPath<WebhookPath>,
    form: CsrfForm,
) -> Result<Response, UiError> {
    let (agent, webhook) = find(&state, &form.session, &path).await?;
    let chrome = chrome_for(&form.session, &agent, &webhook);
    let secret = SecretView::of(&webhook.secrets);
    render(&SecretPage {
        chrome,
        agent_id: agent.id,
        webhook_id: webhook.id,
        secret,
        rotated: false,
    })
}

pub async fn rotate_secret(
    State(state): State<AppState>,
    UiPath(path): UiPath<WebhookPath>,
    form: CsrfForm,
) -> Result<Response, UiError> {
    let (agent, webhook) = find(&state, &form.session, &path).await?;
    let secret = rotate(&state, &webhook).await?;
    let chrome = chrome_for(&form.session, &agent, &webhook);
    render(&SecretPage {
        chrome,
        agent_id: agent.id,
        webhook_id: webhook.id,
        secret,
        rotated: true,
    })
}

/// Talkover's retry; leads to the new log.
pub async fn retry(
    State(state): State<AppState>,
    UiPath(path): UiPath<LogPath>,
    form: CsrfForm,
) -> Result<Response, UiError> {
    find(&state, &form.session, &path.webhook()).await?;
    let queued = talkover_retry(&state, form.session.org_id(), &path).await?;
    let new_log = LogPath { log_id: queued.log_id, ..path };
    Ok(see_other(&format!("{}?done=retried", log_href(&new_log))))
}

#[derive(Template)]
#[template(path = "confirm_erase.html")]
struct ConfirmErasePage {
    chrome: Chrome,
    /// The log's page.
    back: String,
    call_id: String,
}

/// The call of the log at `path`, if a session may erase it. Erasure reaches every agent's
/// events of the call, so a portal session may erase only a call all of whose events are its
/// agent's.
async fn erasable_call(
    state: &AppState,
    session: &super::session::Session,
    path: &LogPath,
) -> Result<(Agent, crate::store::Webhook, CallId), UiError> {
    let (agent, webhook) = find(state, session, &path.webhook()).await?;
    let log = state.store.log(session.org_id(), path.log_id).await?;
    let log = log.filter(|log| log.webhook_id == Some(webhook.id)).ok_or(UiError::NotFound)?;
    let Some(call_id) = log.call_id else {
        return Err(UiError::Api(crate::api::error::ApiError::Conflict(
            "This log has no call id: there is no call to erase.".into(),
        )));
    };
    let call = CallId::parse(&call_id).map_err(|_| UiError::NotFound)?;
    if let Some(scope) = session.agent_scope() {
        let agents = state.store.call_agents(session.org_id(), &call).await?;
        if agents.iter().any(|agent| *agent != scope) {
            return Err(UiError::Api(crate::api::error::ApiError::Conflict(
                "This call has events of other agents too; ask the platform to erase it.".into(),
            )));
        }
    }
    Ok((agent, webhook, call))
}

/// The confirmation step of "Erase call data".
pub async fn confirm_erase(
    State(state): State<AppState>,
    session: super::session::Session,
    UiPath(path): UiPath<LogPath>,
) -> Result<Response, UiError> {
    let (agent, webhook, call) = erasable_call(&state, &session, &path).await?;
    let chrome = chrome_for(&session, &agent, &webhook);
    render(&ConfirmErasePage { chrome, back: log_href(&path), call_id: call.as_str().to_string() })
}

/// Erases the call of this log (`DELETE /api/v1/calls/{call_id}`); back to the log.
pub async fn erase(
    State(state): State<AppState>,
    UiPath(path): UiPath<LogPath>,
    form: CsrfForm,
) -> Result<Response, UiError> {
    let (_, _, call) = erasable_call(&state, &form.session, &path).await?;
    erase_call(&state, form.session.org_id(), &call).await?;
    Ok(see_other(&format!("{}?done=erased", log_href(&path))))
}

pub struct ResentLog {
    pub url: String,
    pub response_code: String,
    pub response_time: String,
    pub send_type: String,
    pub error: String,
}

#[derive(Template)]
#[template(path = "resend_result.html")]
struct ResendPage {
    chrome: Chrome,
    agent: Agent,
    back: String,
    call_id: String,
    resent: Vec<ResentLog>,
    errors: Vec<String>,
}

/// Bland's resend of the call of this log: every post-call log of the call is sent again, now,
/// to the URL it went to before. A portal session may resend only calls whose post-call logs all
/// belong to its agent, since a resend reaches every one of them.
pub async fn resend(
    State(state): State<AppState>,
    UiPath(path): UiPath<LogPath>,
    form: CsrfForm,
) -> Result<Response, UiError> {
    let session = form.session;
    let (agent, webhook) = find(&state, &session, &path.webhook()).await?;
    let log = state.store.log(session.org_id(), path.log_id).await?;
    let log = log.filter(|log| log.webhook_id == Some(webhook.id)).ok_or(UiError::NotFound)?;
    let call_id = match (&log.call_id, log.event_type.as_str()) {
        (Some(call_id), POST_CALL_EVENT) => call_id.clone(),
        _ => {
            return Err(UiError::Api(crate::api::error::ApiError::Conflict(
                "Only post-call (call.completed) logs of a call can be resent.".into(),
            )))
        }
    };
    let call = CallId::parse(&call_id).map_err(|_| UiError::NotFound)?;
    if let Some(scope) = session.agent_scope() {
        let logs = state.store.post_call_logs(session.org_id(), &call, true).await?;
        if logs.iter().any(|log| log.agent_id != scope) {
            return Err(UiError::Api(crate::api::error::ApiError::Conflict(
                "This call's post-call webhook also went elsewhere; ask the platform to resend it."
                    .into(),
            )));
        }
    }
    let (logs, errors) = resend_calls(&state, session.org_id(), &[call]).await?;
    let resent = logs
        .into_iter()
        .map(|log| {
            let last = log.metadata.last();
            ResentLog {
                url: log.url,
                response_code: last
                    .and_then(|a| a.response_code)
                    .map_or("no response".into(), |c| c.to_string()),
                response_time: last.map(|a| a.response_time.clone()).unwrap_or_default(),
                send_type: last.map(|a| a.send_type.as_str().to_string()).unwrap_or_default(),
                error: last.and_then(|a| a.error_message.clone()).unwrap_or_default(),
            }
        })
        .collect();
    let chrome = chrome_for(&session, &agent, &webhook);
    render(&ResendPage {
        chrome,
        agent,
        back: log_href(&path),
        call_id,
        resent,
        errors: errors.into_iter().map(|e| e.message).collect(),
    })
}
