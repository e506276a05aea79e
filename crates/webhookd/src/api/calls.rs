//! `/api/v1/calls/{call_id}`: erasing a call's personal data (SPEC §8).

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::envelope::{ok, Envelope};
use super::error::{ApiError, ErrorBody, Missing};
use super::extract::{ApiPath, CurrentOrg};
use super::AppState;
use crate::domain::event::CallId;
use crate::telemetry::metrics;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(erase_call_data))
}

#[derive(Debug, Deserialize)]
pub struct CallPath {
    call_id: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CallErased {
    pub call_id: String,
    /// Events of the call whose payload is erased (every one, on a repeated erasure too).
    pub events: i64,
    /// Delivery logs of those events, now without request payload or response bodies.
    pub logs: i64,
}

/// Erase a call's personal data: the payloads of every event of this call in the caller's
/// organization, and the response bodies and headers of all their logs and attempts, at once.
/// Pending logs of the call end `failed` with error `payload erased`; nothing of the call is sent
/// after the answer, by any node. Metadata (ids, statuses, codes, times, errors, URLs) stays
/// until retention. Idempotent.
#[utoipa::path(delete, path = "/calls/{call_id}", tag = "calls",
    params(("call_id" = String, Path, description = "The call id given at ingestion")),
    responses(
        (status = 200, body = Envelope<CallErased>),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "`NOT_FOUND`: the organization has no event with this call id"),
        (status = 422, body = ErrorBody),
    ))]
async fn erase_call_data(
    State(state): State<AppState>,
    CurrentOrg(org_id): CurrentOrg,
    ApiPath(path): ApiPath<CallPath>,
) -> Result<Json<Envelope<CallErased>>, ApiError> {
    let call_id = CallId::parse(&path.call_id).map_err(|e| ApiError::field("call_id", e))?;
    let erased = erase_call(&state, org_id, &call_id).await?;
    Ok(ok("Call data erased", erased))
}

/// Erases the call's payloads in `org_id` (the dashboard's "Erase call data" runs this too).
pub async fn erase_call(
    state: &AppState,
    org_id: uuid::Uuid,
    call_id: &CallId,
) -> Result<CallErased, ApiError> {
    let erased = state.store.erase_call(org_id, call_id).await?;
    let erased = erased.ok_or(ApiError::NotFound(Missing::Call))?;
    metrics::payloads_erased(erased.events.unsigned_abs());
    tracing::info!(
        org.id = %org_id,
        events = erased.events,
        logs = erased.logs,
        "call data erased"
    );
    Ok(CallErased {
        call_id: call_id.as_str().to_string(),
        events: erased.events,
        logs: erased.logs,
    })
}
