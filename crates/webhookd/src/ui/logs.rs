//! A webhook's page: its health and settings, its actions, and its delivery logs newest first,
//! with filters and keyset pages ("older" / "newer") so a page costs the same with a million logs.

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;
use uuid::Uuid;

use super::agents::{find_agent, WebhookRow};
use super::error::UiError;
use super::request::{UiPath, UiQuery, WebhookPath};
use super::session::Session;
use super::views::{render, time, Chrome, Label};
use crate::api::webhooks::find_webhook;
use crate::api::AppState;
use crate::domain::clock::{parse_timestamp, UnixMs};
use crate::domain::event::ID_MAX;
use crate::domain::{text, LogStatus};
use crate::store::{
    Agent, DeliveryLog, Keyset, LogFilter, LogPageFilter, StatusCodeFilter, Webhook,
};

const LOGS_PER_PAGE: i64 = 50;

/// The filters and the page, as the filter form and the older/newer links send them.
#[derive(Debug, Default, Deserialize)]
pub struct LogQuery {
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub event: String,
    #[serde(default)]
    pub call_id: String,
    #[serde(default)]
    pub http_status: String,
    #[serde(default)]
    pub since: String,
    #[serde(default)]
    pub until: String,
    pub older: Option<Uuid>,
    pub newer: Option<Uuid>,
    /// The result of the action that led here.
    pub done: Option<String>,
}

/// `2024-01-15T11:30` (a datetime-local field, read as UTC), RFC 3339 or unix seconds.
pub fn parse_time(value: &str) -> Option<UnixMs> {
    let value = value.trim();
    parse_timestamp(value).or_else(|| {
        let with_seconds = if value.len() == 16 { format!("{value}:00") } else { value.into() };
        parse_timestamp(&format!("{with_seconds}Z"))
    })
}

fn parse_status_code(value: &str) -> Result<StatusCodeFilter, String> {
    let value = value.trim().to_ascii_lowercase();
    if value == "none" {
        return Ok(StatusCodeFilter::NoResponse);
    }
    if let Some(class) = value.strip_suffix("xx").and_then(|c| c.parse::<i64>().ok()) {
        if (1..=5).contains(&class) {
            return Ok(StatusCodeFilter::Class(class));
        }
    }
    match value.parse::<i64>() {
        Ok(code) if (100..=599).contains(&code) => Ok(StatusCodeFilter::Exact(code)),
        _ => Err("HTTP status must be a code such as 500, a class such as 5xx, or none".into()),
    }
}

impl LogQuery {
    /// The store filter, or what is wrong with the form.
    pub fn filter(&self) -> Result<LogPageFilter, Vec<String>> {
        let mut errors = Vec::new();
        let mut base = LogFilter::default();
        if !self.status.is_empty() {
            base.status = LogStatus::parse(&self.status);
            if base.status.is_none() {
                errors.push("Status must be pending, success, failed or skipped".into());
            }
        }
        let mut text_filter = |label: &str, value: &str| match value.trim() {
            "" => None,
            value => match text::parse_exact(value, ID_MAX) {
                Ok(value) => Some(value.to_string()),
                Err(e) => {
                    errors.push(format!("{label} {e}"));
                    None
                }
            },
        };
        base.event = text_filter("Event", &self.event);
        base.call_id = text_filter("Call ID", &self.call_id);
        let mut time_filter = |label: &str, value: &str| match value.trim() {
            "" => None,
            value => parse_time(value).or_else(|| {
                errors.push(format!("{label} must be a date and time such as 2024-01-15T11:30"));
                None
            }),
        };
        base.since = time_filter("From", &self.since);
        base.until = time_filter("To", &self.until);
        let http_status = match self.http_status.trim() {
            "" => None,
            value => parse_status_code(value).map_err(|e| errors.push(e)).ok(),
        };
        if errors.is_empty() {
            Ok(LogPageFilter { base, http_status })
        } else {
            Err(errors)
        }
    }

    /// The query string of the same filters starting at `keyset`.
    pub fn link(&self, keyset: (&str, Uuid)) -> String {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        for (name, value) in [
            ("status", &self.status),
            ("event", &self.event),
            ("call_id", &self.call_id),
            ("http_status", &self.http_status),
            ("since", &self.since),
            ("until", &self.until),
        ] {
            if !value.is_empty() {
                query.append_pair(name, value);
            }
        }
        query.append_pair(keyset.0, &keyset.1.to_string());
        query.finish()
    }
}

/// One row of the logs table.
pub struct LogRow {
    pub id: Uuid,
    pub created_at: String,
    pub event: String,
    pub call_id: String,
    pub status: String,
    pub http_status: String,
    pub attempts: i64,
    pub duration: String,
    pub error: String,
}

impl From<&DeliveryLog> for LogRow {
    fn from(log: &DeliveryLog) -> Self {
        Self {
            id: log.id,
            created_at: time(log.created_at),
            event: log.event_type.clone(),
            call_id: log.call_id.clone().unwrap_or_default(),
            status: log.status.label().to_string(),
            http_status: log.http_status.map(|s| s.to_string()).unwrap_or_default(),
            attempts: log.attempt_count,
            duration: log.duration_ms.map(|d| format!("{d} ms")).unwrap_or_default(),
            error: log.error.clone().unwrap_or_default(),
        }
    }
}

/// The settings shown on a webhook's page.
pub struct Settings {
    pub events: String,
    pub method: &'static str,
    pub timeout: u32,
    pub max_retries: u32,
    pub authorization: &'static str,
    pub rate_limit: String,
    pub max_concurrency: String,
    pub ordering: &'static str,
}

impl From<&Webhook> for Settings {
    fn from(webhook: &Webhook) -> Self {
        let s = &webhook.settings;
        Self {
            events: s.events.as_slice().join(", "),
            method: s.http_method.as_str(),
            timeout: s.timeout.get(),
            max_retries: s.max_retries.get(),
            authorization: s.authorization.scheme(),
            rate_limit: s.rate_limit.map_or("none".into(), |l| format!("{}/s", l.get())),
            max_concurrency: s.max_concurrency.map_or("adaptive".into(), |c| c.get().to_string()),
            ordering: s.ordering.as_str(),
        }
    }
}

#[derive(Template)]
#[template(path = "webhook.html")]
struct WebhookPage {
    chrome: Chrome,
    /// `/ui/agents/{agent_id}/webhooks/{webhook_id}`
    base: String,
    webhook: WebhookRow,
    settings: Settings,
    query: LogQuery,
    statuses: [&'static str; 4],
    errors: Vec<String>,
    logs: Vec<LogRow>,
    older: Option<String>,
    newer: Option<String>,
}

/// What an action's `done` code says on the page it leads back to.
fn done_message(done: Option<&str>) -> Option<&'static str> {
    Some(match done? {
        "created" => "Webhook created.",
        "updated" => "Webhook updated successfully.",
        "enabled" => "Webhook enabled.",
        "disabled" => "Webhook disabled.",
        _ => return None,
    })
}

/// The webhook named by `path`, when this session may see its agent.
pub async fn find(
    state: &AppState,
    session: &Session,
    path: &WebhookPath,
) -> Result<(Agent, Webhook), UiError> {
    let agent = find_agent(state, session, path.agent_id).await?;
    let webhook = find_webhook(state, session.org_id(), path).await?;
    Ok((agent, webhook))
}

/// The breadcrumbs down to a webhook.
pub fn chrome_for(session: &Session, agent: &Agent, webhook: &Webhook) -> Chrome {
    Chrome::of(session).crumb(agent.name.clone(), format!("/ui/agents/{}", agent.id)).crumb(
        webhook.settings.name.as_str().to_string(),
        format!("/ui/agents/{}/webhooks/{}", agent.id, webhook.id),
    )
}

pub async fn list(
    State(state): State<AppState>,
    session: Session,
    UiPath(path): UiPath<WebhookPath>,
    UiQuery(query): UiQuery<LogQuery>,
) -> Result<Response, UiError> {
    let (agent, webhook) = find(&state, &session, &path).await?;
    let health = state.store.webhook_health(&webhook).await?;
    let keyset = match (query.older, query.newer) {
        (Some(id), _) => Keyset::Older(id),
        (None, Some(id)) => Keyset::Newer(id),
        (None, None) => Keyset::Newest,
    };
    let (logs, older, newer, errors) = match query.filter() {
        Ok(filter) => {
            let slice = state.store.log_slice(&webhook, &filter, keyset, LOGS_PER_PAGE).await?;
            let older =
                slice.logs.last().filter(|_| slice.has_older).map(|l| query.link(("older", l.id)));
            let newer =
                slice.logs.first().filter(|_| slice.has_newer).map(|l| query.link(("newer", l.id)));
            (slice.logs.iter().map(LogRow::from).collect(), older, newer, Vec::new())
        }
        Err(errors) => (Vec::new(), None, None, errors),
    };
    let chrome = chrome_for(&session, &agent, &webhook).notice(done_message(query.done.as_deref()));
    render(&WebhookPage {
        chrome,
        base: format!("/ui/agents/{}/webhooks/{}", agent.id, webhook.id),
        settings: Settings::from(&webhook),
        webhook: WebhookRow::new(&webhook, &health),
        query,
        statuses: LogStatus::ALL.map(LogStatus::as_str),
        errors,
        logs,
        older,
        newer,
    })
}
