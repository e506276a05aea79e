//! `/api/v1/agents`: the containers of webhooks.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::envelope::{ok, Envelope, PageParams, Pagination};
use super::error::{ApiError, ErrorBody, Missing};
use super::extract::{ApiPath, ApiQuery, CurrentOrg, JsonBody};
use super::AppState;
use crate::domain::clock::format_ms;
use crate::domain::validation::FieldErrors;
use crate::domain::webhook::{Name, NAME_MAX};
use crate::store::Agent;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create_agent, list_agents)).routes(routes!(
        get_agent,
        update_agent,
        delete_agent
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct AgentInput {
    /// 1–255 characters.
    #[schema(max_length = 255)]
    name: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AgentView {
    id: Uuid,
    name: String,
    created_at: String,
    updated_at: String,
}

impl From<Agent> for AgentView {
    fn from(agent: Agent) -> Self {
        Self {
            id: agent.id,
            name: agent.name,
            created_at: format_ms(agent.created_at),
            updated_at: format_ms(agent.updated_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AgentList {
    agents: Vec<AgentView>,
    pagination: Pagination,
}

#[derive(Debug, Deserialize)]
pub struct AgentPath {
    pub agent_id: Uuid,
}

fn parse_agent_input(input: AgentInput) -> Result<Name, ApiError> {
    let mut errors = FieldErrors::default();
    let name = match input.name {
        Some(name) => errors.check("name", Name::parse(&name)),
        None => {
            errors.add("name", "is required");
            None
        }
    };
    errors.finish()?;
    name.ok_or_else(|| ApiError::field("name", format!("must be 1–{NAME_MAX} characters")))
}

/// Create an agent.
#[utoipa::path(post, path = "/agents", tag = "agents", request_body = AgentInput,
    responses(
        (status = 201, body = Envelope<AgentView>),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 422, body = ErrorBody),
    ))]
async fn create_agent(
    State(state): State<AppState>,
    CurrentOrg(org_id): CurrentOrg,
    JsonBody(input): JsonBody<AgentInput>,
) -> Result<(StatusCode, Json<Envelope<AgentView>>), ApiError> {
    let name = parse_agent_input(input)?;
    let agent = state.store.create_agent(org_id, name.as_str()).await?;
    Ok((StatusCode::CREATED, ok("Agent created successfully", agent.into())))
}

/// List the organization's agents, oldest first.
#[utoipa::path(get, path = "/agents", tag = "agents", params(PageParams),
    responses(
        (status = 200, body = Envelope<AgentList>),
        (status = 401, body = ErrorBody), (status = 422, body = ErrorBody),
    ))]
async fn list_agents(
    State(state): State<AppState>,
    CurrentOrg(org_id): CurrentOrg,
    ApiQuery(params): ApiQuery<PageParams>,
) -> Result<Json<Envelope<AgentList>>, ApiError> {
    let (page, per_page) = params.resolve()?;
    let found = state.store.list_agents(org_id, page, per_page).await?;
    let list = AgentList {
        agents: found.items.into_iter().map(AgentView::from).collect(),
        pagination: Pagination::new(page, per_page, found.total),
    };
    Ok(ok("Agents retrieved successfully", list))
}

/// Read one agent.
#[utoipa::path(get, path = "/agents/{agent_id}", tag = "agents",
    params(("agent_id" = Uuid, Path)),
    responses(
        (status = 200, body = Envelope<AgentView>),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
    ))]
async fn get_agent(
    State(state): State<AppState>,
    CurrentOrg(org_id): CurrentOrg,
    ApiPath(path): ApiPath<AgentPath>,
) -> Result<Json<Envelope<AgentView>>, ApiError> {
    let agent = state.store.agent(org_id, path.agent_id).await?;
    let agent = agent.ok_or(ApiError::NotFound(Missing::Agent))?;
    Ok(ok("Agent retrieved successfully", agent.into()))
}

/// Rename an agent.
#[utoipa::path(put, path = "/agents/{agent_id}", tag = "agents", request_body = AgentInput,
    params(("agent_id" = Uuid, Path)),
    responses(
        (status = 200, body = Envelope<AgentView>),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody),
    ))]
async fn update_agent(
    State(state): State<AppState>,
    CurrentOrg(org_id): CurrentOrg,
    ApiPath(path): ApiPath<AgentPath>,
    JsonBody(input): JsonBody<AgentInput>,
) -> Result<Json<Envelope<AgentView>>, ApiError> {
    let name = parse_agent_input(input)?;
    let agent = state.store.rename_agent(org_id, path.agent_id, name.as_str()).await?;
    let agent = agent.ok_or(ApiError::NotFound(Missing::Agent))?;
    Ok(ok("Agent updated successfully", agent.into()))
}

/// Delete an agent with its webhooks, events and delivery logs.
#[utoipa::path(delete, path = "/agents/{agent_id}", tag = "agents",
    params(("agent_id" = Uuid, Path)),
    responses(
        (status = 200, body = Envelope<Option<String>>),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
    ))]
async fn delete_agent(
    State(state): State<AppState>,
    CurrentOrg(org_id): CurrentOrg,
    ApiPath(path): ApiPath<AgentPath>,
) -> Result<Json<Envelope<Option<String>>>, ApiError> {
    if !state.store.delete_agent(org_id, path.agent_id).await? {
        return Err(ApiError::NotFound(Missing::Agent));
    }
    Ok(ok("Agent deleted successfully", None))
}
