//! Recovering a time window, as `POST …/recover` does: first a dry run that counts what would be
//! queued, then the recovery itself; a large one continues in the background and its page shows
//! the progress.

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use uuid::Uuid;

use super::csrf::CsrfForm;
use super::error::UiError;
use super::logs::{chrome_for, find, parse_time};
use super::request::{RecoveryPath, UiPath, WebhookPath};
use super::session::Session;
use super::sign_in::see_other;
use super::views::{render, render_with, time, Chrome};
use crate::api::error::ApiError;
use crate::api::redelivery::{find_recovery, recover_window, RecoverInput, TimeInput};
use crate::api::AppState;
use crate::domain::clock::format_ms;
use crate::domain::RecoveryStatus;

#[derive(Template)]
#[template(path = "recover.html")]
struct RecoverPage {
    chrome: Chrome,
    action: String,
    since: String,
    until: String,
    errors: Vec<String>,
    /// After a dry run: how many logs the recovery would queue.
    dry_run_count: Option<i64>,
    /// After a recovery queued at once: how many it queued.
    queued: Option<i64>,
    logs_href: String,
}

fn webhook_href(path: &WebhookPath) -> String {
    format!("/ui/agents/{}/webhooks/{}", path.agent_id, path.webhook_id)
}

fn page(chrome: Chrome, path: &WebhookPath, since: &str, until: &str) -> RecoverPage {
    RecoverPage {
        chrome,
        action: format!("{}/recover", webhook_href(path)),
        since: since.into(),
        until: until.into(),
        errors: Vec::new(),
        dry_run_count: None,
        queued: None,
        logs_href: webhook_href(path),
    }
}

pub async fn form(
    State(state): State<AppState>,
    session: Session,
    UiPath(path): UiPath<WebhookPath>,
) -> Result<Response, UiError> {
    let (agent, webhook) = find(&state, &session, &path).await?;
    render(&page(chrome_for(&session, &agent, &webhook), &path, "", ""))
}

/// A form time as the API's `TimeInput`: a datetime-local value becomes RFC 3339 (UTC); anything
/// else goes through unchanged so the API's own validation names the problem.
fn time_input(value: &str) -> Option<TimeInput> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    Some(TimeInput::Text(parse_time(value).map_or_else(|| value.to_string(), format_ms)))
}

pub async fn submit(
    State(state): State<AppState>,
    UiPath(path): UiPath<WebhookPath>,
    form: CsrfForm,
) -> Result<Response, UiError> {
    let session = &form.session;
    let (agent, webhook) = find(&state, session, &path).await?;
    let since = form.fields.get("since").unwrap_or_default();
    let until = form.fields.get("until").unwrap_or_default();
    let dry_run = form.fields.get("intent") != Some("start");
    let input =
        RecoverInput { since: time_input(since), until: time_input(until), dry_run: Some(dry_run) };
    let mut page = page(chrome_for(session, &agent, &webhook), &path, since, until);
    match recover_window(&state, session.org_id(), &path, &input).await {
        Ok(result) if result.dry_run => page.dry_run_count = Some(result.count),
        Ok(result) => match result.recovery_id {
            Some(recovery_id) => {
                let href = format!("{}/recover/{recovery_id}", webhook_href(&path));
                return Ok(see_other(&href));
            }
            None => page.queued = Some(result.count),
        },
        Err(ApiError::Validation(errors)) => {
            page.errors = errors
                .into_map()
                .into_iter()
                .flat_map(|(field, messages)| {
                    messages.into_iter().map(move |m| format!("{field} {m}"))
                })
                .collect();
            return render_with(axum::http::StatusCode::UNPROCESSABLE_ENTITY, &page);
        }
        Err(other) => return Err(other.into()),
    }
    render(&page)
}

#[derive(Template)]
#[template(path = "recovery.html")]
struct RecoveryPage {
    chrome: Chrome,
    href: String,
    logs_href: String,
    id: Uuid,
    running: bool,
    total: i64,
    queued: i64,
    since: String,
    until: String,
    updated_at: String,
}

pub async fn progress(
    State(state): State<AppState>,
    session: Session,
    UiPath(path): UiPath<RecoveryPath>,
) -> Result<Response, UiError> {
    let webhook_path = WebhookPath { agent_id: path.agent_id, webhook_id: path.webhook_id };
    let (agent, webhook) = find(&state, &session, &webhook_path).await?;
    let recovery = find_recovery(&state, session.org_id(), &path).await?;
    render(&RecoveryPage {
        chrome: chrome_for(&session, &agent, &webhook),
        href: format!("{}/recover/{}", webhook_href(&webhook_path), recovery.id),
        logs_href: webhook_href(&webhook_path),
        id: recovery.id,
        running: recovery.status == RecoveryStatus::Running,
        total: recovery.total,
        queued: recovery.queued,
        since: time(recovery.since),
        until: time(recovery.until),
        updated_at: time(recovery.updated_at),
    })
}
