//! `/api/v1/organization`: the caller's tenant and its org-level signing secret, which signs
//! deliveries to per-call `webhook_url` destinations.

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::envelope::{ok, Envelope};
use super::error::{ApiError, ErrorBody, Missing};
use super::extract::CurrentOrg;
use super::secrets::{SecretView, SECRET_GRACE_MS};
use super::AppState;
use crate::domain::clock::{format_ms, now_ms};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_organization))
        .routes(routes!(get_org_secret))
        .routes(routes!(rotate_org_secret))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OrganizationView {
    id: Uuid,
    name: String,
    created_at: String,
    /// The source addresses (IP addresses and CIDR blocks) deliveries come from, for endpoint
    /// allowlists; empty when the operator has not published them (`--egress-ips`).
    #[schema(example = json!(["203.0.113.7", "198.51.100.0/28"]))]
    egress_ips: Vec<String>,
}

/// The organization the API key belongs to.
#[utoipa::path(get, path = "/organization", tag = "organization",
    responses((status = 200, body = Envelope<OrganizationView>), (status = 401, body = ErrorBody)))]
async fn get_organization(
    State(state): State<AppState>,
    CurrentOrg(org_id): CurrentOrg,
) -> Result<Json<Envelope<OrganizationView>>, ApiError> {
    let org = state.store.org(org_id).await?.ok_or(ApiError::NotFound(Missing::Resource))?;
    let view = OrganizationView {
        id: org.id,
        name: org.name,
        created_at: format_ms(org.created_at),
        egress_ips: state.config.egress_ips.to_strings(),
    };
    Ok(ok("Organization retrieved successfully", view))
}

/// The org-level signing secret.
#[utoipa::path(get, path = "/organization/secret", tag = "organization",
    responses((status = 200, body = Envelope<SecretView>), (status = 401, body = ErrorBody)))]
async fn get_org_secret(
    State(state): State<AppState>,
    CurrentOrg(org_id): CurrentOrg,
) -> Result<Json<Envelope<SecretView>>, ApiError> {
    let secrets =
        state.store.org_secrets(org_id).await?.ok_or(ApiError::NotFound(Missing::Resource))?;
    Ok(ok("Organization secret retrieved successfully", SecretView::of(&secrets)))
}

/// Replace the org-level secret; the old one keeps signing for 24 hours.
#[utoipa::path(post, path = "/organization/secret/rotate", tag = "organization",
    responses((status = 200, body = Envelope<SecretView>), (status = 401, body = ErrorBody)))]
async fn rotate_org_secret(
    State(state): State<AppState>,
    CurrentOrg(org_id): CurrentOrg,
) -> Result<Json<Envelope<SecretView>>, ApiError> {
    let grace_until = now_ms() + SECRET_GRACE_MS;
    let secrets = state.store.rotate_org_secret(org_id, grace_until).await?;
    let secrets = secrets.ok_or(ApiError::NotFound(Missing::Resource))?;
    Ok(ok("Organization secret rotated successfully", SecretView::of(&secrets)))
}
