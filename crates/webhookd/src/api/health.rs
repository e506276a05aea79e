//! `/healthz` (the process answers) and `/readyz` (the database answers, migrations applied).

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(healthz)).routes(routes!(readyz))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`, `ready` or `unavailable`.
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// Liveness: the process is up and serving.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, body = Health)))]
async fn healthz() -> Json<Health> {
    Json(Health { status: "ok", reason: None })
}

/// Readiness: the database answers, the schema is current, and this node's delivery workers (if
/// it runs them) are running.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses((status = 200, body = Health), (status = 503, body = Health)))]
async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let unavailable = |reason: String| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health { status: "unavailable", reason: Some(reason) }),
        )
    };
    let workers_down =
        state.workers.as_ref().is_some_and(|running| !running.load(Ordering::Relaxed));
    let task_stopped = !state.healthy.load(Ordering::Relaxed);
    match state.store.is_ready().await {
        Ok(true) if workers_down => unavailable("delivery workers are not running".into()),
        Ok(true) if task_stopped => unavailable("a background task stopped; see the log".into()),
        Ok(true) => (StatusCode::OK, Json(Health { status: "ready", reason: None })),
        Ok(false) => unavailable("database migrations are not applied".into()),
        Err(error) => {
            tracing::warn!(error = %error, "readiness check failed");
            unavailable("database unreachable".into())
        }
    }
}
