//! The HTTP API: the native `/api/v1` (Talkover-compatible), health, and the OpenAPI document
//! generated from the handlers. Handlers parse, call the store (or the dispatcher, for explicit
//! sends) and shape responses; they never call customer endpoints themselves.

pub(crate) mod agents;
mod auth;
pub(crate) mod bland;
pub(crate) mod calls;
mod envelope;
pub mod error;
mod event_types;
pub(crate) mod events;
pub mod extract;
mod health;
pub(crate) mod key_lookups;
pub(crate) mod limits;
pub(crate) mod logs;
mod operational;
mod organization;
pub(crate) mod portal;
pub(crate) mod redelivery;
pub(crate) mod secrets;
pub(crate) mod webhooks;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

use crate::config::Config;
use crate::dispatch::Dispatcher;
use crate::domain::destination::Destinations;
use crate::domain::EventCatalog;
use crate::ingest::Ingestor;
use crate::store::Store;
use crate::ui::sign_in_limits::SignInLimits;
use error::{ApiError, Missing};

pub use auth::{AuthCache, KeyCheck};

/// Request bodies larger than this are refused with 413 `PAYLOAD_TOO_LARGE`.
pub const BODY_LIMIT: usize = 1024 * 1024;
/// Requests with more header bytes (names and values) or more headers are refused with 431.
pub const HEADER_BYTES_LIMIT: usize = 32 * 1024;
pub const HEADER_COUNT_LIMIT: usize = 100;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub catalog: Arc<EventCatalog>,
    pub auth: Arc<AuthCache>,
    /// Sends explicit sends (test, Bland resend/create) through the lanes.
    pub dispatcher: Dispatcher,
    /// Ingestion with group commit.
    pub ingest: Ingestor,
    pub config: Arc<Config>,
    /// This node's delivery workers' running flag, when it runs them (readiness).
    pub workers: Option<Arc<AtomicBool>>,
    /// False once one of the node's background tasks stopped (readiness).
    pub healthy: Arc<AtomicBool>,
    /// Makes ingestion spans when traces are exported (`--otlp-endpoint`).
    pub tracer: Option<crate::telemetry::traces::Tracer>,
    /// Where webhooks may point: `--allow-private-targets`, and never this service's own origins
    /// (`--public-url` and the bound address).
    pub destinations: Arc<Destinations>,
    /// Failed dashboard sign-ins per client address and per key prefix.
    pub sign_in_limits: Arc<SignInLimits>,
    /// The node's event sources and their state (readiness names them).
    pub sources: crate::source::SourceStates,
}

impl AppState {
    pub fn new(store: Store, config: &Config, dispatcher: Dispatcher, ingest: Ingestor) -> Self {
        Self {
            store,
            catalog: Arc::new(EventCatalog::with_extra(&config.extra_event_types)),
            auth: Arc::new(AuthCache::new(config.rate_limit)),
            dispatcher,
            ingest,
            config: Arc::new(config.clone()),
            workers: None,
            healthy: Arc::new(AtomicBool::new(true)),
            tracer: None,
            destinations: Arc::new(Destinations::new(
                config.allow_private_targets,
                config.public_url.as_deref(),
            )),
            sign_in_limits: Arc::new(SignInLimits::default()),
            sources: crate::source::SourceStates::default(),
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "webhookd", description = "Webhook delivery service: signed deliveries, delivery logs, retries and redelivery."),
    modifiers(&BearerAuth),
    security(("api_key" = [])),
    tags(
        (name = "agents", description = "Voice agents: the containers of webhooks"),
        (name = "webhooks", description = "Customer endpoints under an agent"),
        (name = "events", description = "Event ingestion"),
        (name = "logs", description = "Delivery logs and their attempts"),
        (name = "redelivery", description = "Talkover's retry and bulk recovery"),
        (name = "calls", description = "A call's data: erasure"),
        (name = "bland", description = "Bland's post-call webhook endpoints, with Bland's envelope"),
        (name = "portal", description = "Links to the customer portal of one agent"),
        (name = "organization", description = "The caller's organization"),
        (name = "operational", description = "The organization's operational webhook: events about its webhooks (disabled, circuit opened or closed, delivery failed), and their delivery logs"),
        (name = "health", description = "Liveness and readiness"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The routes and their OpenAPI description, built from the same handler list.
fn routes() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let v1 = OpenApiRouter::new()
        .merge(organization::router())
        .merge(operational::router())
        .merge(agents::router())
        .merge(webhooks::router())
        .merge(secrets::router())
        .merge(events::router())
        .merge(event_types::router())
        .merge(logs::router())
        .merge(redelivery::router())
        .merge(calls::router())
        .merge(portal::router());
    let (router, mut openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .nest("/api/v1", v1)
        .merge(bland::router())
        .merge(health::router())
        .split_for_parts();
    document_common_responses(&mut openapi);
    (router, openapi)
}

/// Responses any authenticated operation can give, added to each so the document describes every
/// answer: 401 without a valid key, 429 past the rate limit, 503 while the database is
/// unavailable, 507 (writes) while it is out of space, 500 on a server fault.
fn document_common_responses(openapi: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    let error = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build(),
            )
            .build()
    };
    for (path, item) in openapi.paths.paths.iter_mut() {
        let authenticated = path.starts_with("/api/") || path.starts_with("/v1/");
        let reads = [&mut item.get].map(|operation| (operation, false));
        let writes = [&mut item.put, &mut item.post, &mut item.delete, &mut item.patch]
            .map(|operation| (operation, true));
        let operations = reads.into_iter().chain(writes);
        for (operation, writes) in operations.filter_map(|(op, w)| op.as_mut().map(|op| (op, w))) {
            let responses = &mut operation.responses.responses;
            if authenticated && writes {
                responses.entry("507".into()).or_insert_with(|| {
                    error("`STORAGE_FULL`: the database is out of space; nothing was stored").into()
                });
            }
            if authenticated {
                responses
                    .entry("401".into())
                    .or_insert_with(|| error("Missing or invalid API key").into());
                responses
                    .entry("429".into())
                    .or_insert_with(|| error("Rate limit exceeded; see Retry-After").into());
                responses.entry("503".into()).or_insert_with(|| {
                    error("`DATABASE_UNAVAILABLE`: nothing was done; try again after Retry-After")
                        .into()
                });
            }
            responses
                .entry("500".into())
                .or_insert_with(|| error("Server fault (details in the server log)").into());
        }
    }
}

/// The OpenAPI document generated from the handlers (without `webhooks`, which depend on the
/// catalog: see [`document`]).
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes().1
}

/// The document served at `/openapi.json`: the generated one, plus OpenAPI 3.1's `webhooks`
/// (one per event type of `catalog`), which utoipa cannot express.
fn document(openapi: &utoipa::openapi::OpenApi, catalog: &EventCatalog) -> serde_json::Value {
    let mut document = serde_json::to_value(openapi).unwrap_or_default();
    if let Some(object) = document.as_object_mut() {
        object.insert("webhooks".into(), event_types::webhooks_section(catalog));
        // Described by the `webhooks` entries' tag.
        if let Some(tags) = object.get_mut("tags").and_then(serde_json::Value::as_array_mut) {
            tags.push(serde_json::json!({"name": "event types",
                "description": "The requests webhookd sends: one per event type of the catalog"}));
        }
    }
    document
}

pub fn router(state: AppState) -> Router {
    let (routes, openapi) = routes();
    // Serialized once; every request answers the same bytes.
    let openapi = bytes::Bytes::from(document(&openapi, &state.catalog).to_string());
    let serve_openapi = move || {
        let body = openapi.clone();
        async move { ([(header::CONTENT_TYPE, "application/json")], body) }
    };
    routes
        .route("/openapi.json", get(serve_openapi))
        .route("/metrics", get(render_metrics))
        .nest("/ui", crate::ui::router())
        .route("/ui/", get(|| async { axum::response::Redirect::to("/ui") }))
        .fallback(|| async { ApiError::NotFound(Missing::Resource) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn(limits::refuse_oversized_body))
        .layer(middleware::from_fn(limit_headers))
        .layer(middleware::from_fn(limits::retry_after_at_least_a_second))
        .layer(middleware::from_fn_with_state(state.clone(), database_condition))
        .layer(middleware::from_fn(track_request))
        .layer(TraceLayer::new_for_http())
        .layer(CatchPanicLayer::custom(|_| panic_response()))
        .with_state(state)
}

/// Shares what requests learn of the database with the whole node, and answers API requests at
/// once while the database is known unreachable (503 with `Retry-After`), rather than letting
/// each wait for a connection that will not come. Health, metrics and the OpenAPI document stay
/// served.
async fn database_condition(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    let uses_database = path.starts_with("/api/") || path.starts_with("/v1/");
    let availability = state.store.availability();
    if uses_database && availability.fault() == Some(crate::store::Fault::Unavailable) {
        let refusal = ApiError::DatabaseUnavailable;
        return if path.starts_with("/v1/") {
            bland::BlandFailure::from(refusal).into_response()
        } else {
            refusal.into_response()
        };
    }
    let response = next.run(request).await;
    if let Some(fault) = response.extensions().get::<crate::store::Fault>() {
        availability.report(*fault);
    }
    response
}

/// Prometheus text exposition of every `webhookd_*` metric.
async fn render_metrics() -> impl IntoResponse {
    let body = crate::telemetry::metrics::handle().render();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}

/// Refuses requests whose headers exceed the limits, in the envelope.
async fn limit_headers(request: Request, next: Next) -> Response {
    let headers = request.headers();
    let bytes: usize = headers.iter().map(|(name, value)| name.as_str().len() + value.len()).sum();
    if bytes > HEADER_BYTES_LIMIT || headers.len() > HEADER_COUNT_LIMIT {
        return ApiError::HeadersTooLarge.into_response();
    }
    next.run(request).await
}

/// Counts and times each request by its route template (bounded labels: no ids).
async fn track_request(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |path| path.as_str().to_string());
    let response = next.run(request).await;
    crate::telemetry::metrics::http_request(
        &method,
        &route,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// A panicking handler is a bug; the client still gets the envelope, never a dropped connection.
fn panic_response() -> Response {
    tracing::error!("request handler panicked");
    let body = error::ErrorBody {
        success: false,
        message: "Internal server error".into(),
        code: "INTERNAL_SERVER_ERROR",
        errors: None,
        reason: None,
    };
    (StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response()
}
