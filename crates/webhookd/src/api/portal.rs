//! `POST /api/v1/agents/{agent_id}/portal`: a short-lived link to the customer portal of one
//! agent (SPEC §7), for a platform to hand to its customer. The link carries no API key; see
//! `ui::portal` for its format.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::agents::AgentPath;
use super::envelope::{ok, Envelope};
use super::error::{ApiError, ErrorBody, Missing};
use super::extract::{parse_json, ApiPath, CurrentOrg};
use super::AppState;
use crate::domain::clock::{format_ms, now_ms, SECOND_MS};
use crate::ui::portal::{link_url, PortalGrant};

/// Link lifetimes accepted, in seconds: one minute to one day; one hour by default.
pub const EXPIRES_IN_MIN: i64 = 60;
pub const EXPIRES_IN_MAX: i64 = 86_400;
pub const EXPIRES_IN_DEFAULT: i64 = 3_600;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create_portal_link))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct PortalInput {
    /// Seconds until the link expires, 60–86400 (default 3600).
    #[schema(minimum = 60, maximum = 86400)]
    expires_in: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PortalLink {
    /// Opens the portal of this agent, with no API key; valid until `expires_at`.
    pub url: String,
    pub expires_at: String,
}

/// A JSON body that may be left out (an empty body means every field's default).
struct OptionalJson<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Default> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(request, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge
            } else {
                ApiError::InvalidJson(format!("Could not read the request body: {rejection}"))
            }
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(T::default()));
        }
        parse_json(&bytes).map(OptionalJson)
    }
}

/// A portal link for `agent_id` valid for `expires_in` seconds (default one hour).
pub async fn portal_link(
    state: &AppState,
    org_id: Uuid,
    agent_id: Uuid,
    expires_in: Option<i64>,
) -> Result<PortalLink, ApiError> {
    if state.store.agent(org_id, agent_id).await?.is_none() {
        return Err(ApiError::NotFound(Missing::Agent));
    }
    let expires_in = expires_in.unwrap_or(EXPIRES_IN_DEFAULT);
    if !(EXPIRES_IN_MIN..=EXPIRES_IN_MAX).contains(&expires_in) {
        return Err(ApiError::field(
            "expires_in",
            format!("must be between {EXPIRES_IN_MIN} and {EXPIRES_IN_MAX} seconds"),
        ));
    }
    let expires_at_secs = now_ms() / SECOND_MS + expires_in;
    let grant = PortalGrant { org_id, agent_id, expires_at_secs };
    Ok(PortalLink {
        url: link_url(state, &grant),
        expires_at: format_ms(expires_at_secs * SECOND_MS),
    })
}

/// Make a short-lived link to the customer portal of this agent: its webhooks and delivery logs,
/// with the dashboard's actions, and nothing else of the organization. No API key is in the link.
#[utoipa::path(post, path = "/agents/{agent_id}/portal", tag = "portal",
    params(("agent_id" = Uuid, Path)),
    request_body(content = Option<PortalInput>, description = "Optional; `{}` or no body for the defaults"),
    responses(
        (status = 200, body = Envelope<PortalLink>),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 422, body = ErrorBody),
    ))]
async fn create_portal_link(
    State(state): State<AppState>,
    CurrentOrg(org_id): CurrentOrg,
    ApiPath(path): ApiPath<AgentPath>,
    OptionalJson(input): OptionalJson<PortalInput>,
) -> Result<Json<Envelope<PortalLink>>, ApiError> {
    let link = portal_link(&state, org_id, path.agent_id, input.expires_in).await?;
    Ok(ok("Portal link created successfully", link))
}
