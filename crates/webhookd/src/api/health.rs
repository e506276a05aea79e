//! `/healthz` (the process answers) and `/readyz` (the database answers within a second and takes
//! writes, migrations applied, this node's workers run).

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use crate::source::SourceHealth;
use crate::store::{Fault, StoreError};

/// Readiness answers within this, whatever the database does: an orchestrator's probe must not
/// hang on a database that stopped answering.
const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(healthz)).routes(routes!(readyz))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`, `ready` or `unavailable`.
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    /// This node's event sources (`--source`) and the state of each: `connecting`,
    /// `consuming` or `reconnecting` (with the last `error`). A source that is down does not
    /// make the node unready: the API still ingests, and the broker keeps the messages.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    sources: Vec<SourceHealth>,
}

/// Liveness: the process is up and serving.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, body = Health)))]
async fn healthz() -> Json<Health> {
    Json(Health { status: "ok", reason: None, sources: Vec::new() })
}

/// Readiness: the database answers, the schema is current, and this node's delivery workers (if
/// it runs them) are running.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses((status = 200, body = Health), (status = 503, body = Health)))]
async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let unavailable = |reason: String| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health {
                status: "unavailable",
                reason: Some(reason),
                sources: state.sources.snapshot(),
            }),
        )
    };
    let availability = state.store.availability();
    match availability.fault() {
        Some(Fault::DiskFull) => {
            return unavailable(
                "the database is out of space: writes are refused until space is freed".into(),
            )
        }
        Some(Fault::Unavailable) => return unavailable("database unreachable".into()),
        None => {}
    }
    let workers_down =
        state.workers.as_ref().is_some_and(|running| !running.load(Ordering::Relaxed));
    let task_stopped = !state.healthy.load(Ordering::Relaxed);
    let answer = tokio::time::timeout(READY_TIMEOUT, state.store.is_ready())
        .await
        .unwrap_or(Err(StoreError::Refused(Fault::Unavailable)));
    if let Err(fault) = answer.as_ref().map_err(StoreError::fault) {
        availability.report(fault.unwrap_or(Fault::Unavailable));
    }
    match answer {
        Ok(true) if workers_down => unavailable("delivery workers are not running".into()),
        Ok(true) if task_stopped => unavailable("a background task stopped; see the log".into()),
        Ok(true) => (
            StatusCode::OK,
            Json(Health { status: "ready", reason: None, sources: state.sources.snapshot() }),
        ),
        Ok(false) => unavailable("database migrations are not applied".into()),
        Err(error) => {
            tracing::warn!(error = %error, "readiness check failed");
            unavailable("database unreachable".into())
        }
    }
}
