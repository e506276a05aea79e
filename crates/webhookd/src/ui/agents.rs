//! The organization's agents, and one agent's webhooks with their health.

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;
use uuid::Uuid;

use super::csrf::CsrfForm;
use super::error::UiError;
use super::request::{AgentPath, UiPath, UiQuery};
use super::session::Session;
use super::sign_in::see_other;
use super::views::{optional_time, render, time, Chrome};
use crate::api::portal::portal_link;
use crate::api::AppState;
use crate::domain::circuit::CircuitState;
use crate::store::{Agent, Webhook, WebhookHealth, PENDING_CAP};

const AGENTS_PER_PAGE: i64 = 100;

#[derive(Template)]
#[template(path = "agents.html")]
struct AgentsPage {
    chrome: Chrome,
    agents: Vec<AgentRow>,
    page: i64,
    has_next: bool,
    /// `--egress-ips`, for the note that asks customers to allow them.
    egress_ips: Vec<String>,
}

#[derive(Debug, Deserialize)]
pub struct PageQuery {
    page: Option<i64>,
}

#[derive(Debug, Deserialize)]
pub struct AgentQuery {
    done: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    session: Session,
    UiQuery(query): UiQuery<PageQuery>,
) -> Result<Response, UiError> {
    if let Some(agent_id) = session.agent_scope() {
        return Ok(see_other(&format!("/ui/agents/{agent_id}")));
    }
    let page = query.page.unwrap_or(1).max(1);
    let found = state.store.list_agents(session.org_id(), page, AGENTS_PER_PAGE).await?;
    let has_next = page * AGENTS_PER_PAGE < found.total;
    let agents = found.items.into_iter().map(AgentRow::from).collect();
    let egress_ips = state.config.egress_ips.to_strings();
    render(&AgentsPage { chrome: Chrome::of(&session), agents, page, has_next, egress_ips })
}

pub struct AgentRow {
    pub id: Uuid,
    pub name: String,
    pub created_at: String,
}

impl From<Agent> for AgentRow {
    fn from(agent: Agent) -> Self {
        Self { id: agent.id, name: agent.name, created_at: time(agent.created_at) }
    }
}

/// One webhook's row on its agent's page.
pub struct WebhookRow {
    pub id: Uuid,
    pub name: String,
    pub url: String,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    /// The client certificate expires within 14 days, or has expired.
    pub certificate_warning: Option<String>,
    pub circuit: &'static str,
    pub circuit_retry_at: String,
    pub success_rate: String,
    pub last_error: Option<String>,
    pub last_error_at: String,
    pub last_error_log: Option<Uuid>,
    pub pending: String,
}

impl WebhookRow {
    pub fn new(webhook: &Webhook, health: &WebhookHealth) -> Self {
        let circuit = webhook.circuit;
        let last_error = health.last_error.as_ref();
        Self {
            id: webhook.id,
            name: webhook.settings.name.as_str().to_string(),
            url: webhook.settings.url.as_str().to_string(),
            enabled: webhook.settings.enabled,
            disabled_reason: webhook.disabled_reason.clone(),
            certificate_warning: webhook
                .settings
                .tls
                .client
                .as_ref()
                .and_then(|identity| identity.expiry_warning(crate::domain::clock::now_ms())),
            circuit: circuit.state.as_str(),
            circuit_retry_at: optional_time(
                circuit.retry_at.filter(|_| circuit.state != CircuitState::Closed),
            ),
            success_rate: match health.success_rate() {
                Some(rate) => format!("{rate:.1}% of {}", health.finished),
                None => "no finished deliveries".into(),
            },
            last_error: last_error.map(|e| match (&e.error, e.http_status) {
                (Some(error), _) => error.clone(),
                (None, Some(status)) => format!("HTTP {status}"),
                (None, None) => "failed".into(),
            }),
            last_error_at: last_error.map(|e| time(e.at)).unwrap_or_default(),
            last_error_log: last_error.map(|e| e.log_id),
            pending: if health.pending >= PENDING_CAP {
                format!("{PENDING_CAP} or more")
            } else {
                health.pending.to_string()
            },
        }
    }
}

#[derive(Template)]
#[template(path = "agent.html")]
struct AgentPage {
    chrome: Chrome,
    agent: Agent,
    webhooks: Vec<WebhookRow>,
    portal: Option<crate::api::portal::PortalLink>,
    /// `--egress-ips`, for the note that asks customers to allow them.
    egress_ips: Vec<String>,
}

/// The agent named by the path, when this session may see it.
pub async fn find_agent(
    state: &AppState,
    session: &Session,
    agent_id: Uuid,
) -> Result<Agent, UiError> {
    session.may_see(agent_id)?;
    state.store.agent(session.org_id(), agent_id).await?.ok_or(UiError::NotFound)
}

async fn agent_page(
    state: &AppState,
    session: &Session,
    agent_id: Uuid,
    portal: Option<crate::api::portal::PortalLink>,
    notice: Option<&str>,
) -> Result<Response, UiError> {
    let agent = find_agent(state, session, agent_id).await?;
    let webhooks = state.store.list_webhooks(session.org_id(), agent.id).await?;
    let mut rows = Vec::with_capacity(webhooks.len());
    for webhook in &webhooks {
        rows.push(WebhookRow::new(webhook, &state.store.webhook_health(webhook).await?));
    }
    let chrome = Chrome::of(session)
        .crumb(agent.name.clone(), format!("/ui/agents/{}", agent.id))
        .notice(notice);
    let egress_ips = state.config.egress_ips.to_strings();
    render(&AgentPage { chrome, agent, webhooks: rows, portal, egress_ips })
}

pub async fn show(
    State(state): State<AppState>,
    session: Session,
    UiPath(path): UiPath<AgentPath>,
    UiQuery(query): UiQuery<AgentQuery>,
) -> Result<Response, UiError> {
    let notice = (query.done.as_deref() == Some("deleted")).then_some("Webhook deleted.");
    agent_page(&state, &session, path.agent_id, None, notice).await
}

/// Makes a customer portal link for the agent, as `POST …/portal` does, and shows it once.
pub async fn make_portal_link(
    State(state): State<AppState>,
    UiPath(path): UiPath<AgentPath>,
    form: CsrfForm,
) -> Result<Response, UiError> {
    let session = form.session;
    if session.agent_scope().is_some() {
        // A portal session cannot extend itself.
        return Err(UiError::NotFound);
    }
    let link = portal_link(&state, session.org_id(), path.agent_id, None).await?;
    agent_page(&state, &session, path.agent_id, Some(link), None).await
}
