//! The dashboard and the customer portal (SPEC §7), served under `/ui` by the same binary.
//!
//! Pages are server-rendered from askama templates (`crates/webhookd/templates/`, checked at
//! compile time, HTML-escaped by default) by handlers that read through the same store functions
//! as the API and perform every action through the API's own operation functions
//! (`api::webhooks::create`, `api::redelivery::retry`, …), so a button does exactly what the
//! corresponding request does. Every page works without JavaScript; the embedded htmx only
//! refreshes parts of a page (a pending log, a recovery's progress, a revealed secret).
//!
//! - `session`: the session cookie and the signed-in [`session::Session`], dashboard or portal.
//! - `csrf`: the synchronizer token every state-changing form carries.
//! - `portal`: signed portal links and the session they open.
//! - `headers`: the security headers of every UI response (CSP, framing, referrer).

mod actions;
mod agents;
mod assets;
mod csrf;
mod error;
mod event_types;
mod headers;
mod log_detail;
mod logs;
pub mod portal;
mod recover;
mod request;
mod session;
mod sign_in;
pub mod sign_in_limits;
mod views;
mod webhook_form;

use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{middleware, Router};

use crate::api::AppState;
use error::UiError;
use session::Session;

/// The UI's routes, to be nested under `/ui`.
pub fn router() -> Router<AppState> {
    let webhook = "/agents/{agent_id}/webhooks/{webhook_id}";
    Router::new()
        .route("/", get(home))
        .route("/sign-in", get(sign_in::form).post(sign_in::submit))
        .route("/sign-out", post(sign_in::sign_out))
        .route("/portal/{token}", get(portal::open))
        .route("/assets/{name}", get(assets::serve))
        .route("/event-types", get(event_types::list))
        .route("/agents", get(agents::list))
        .route("/agents/{agent_id}", get(agents::show))
        .route("/agents/{agent_id}/portal", post(agents::make_portal_link))
        .route("/agents/{agent_id}/webhooks", post(webhook_form::create))
        .route("/agents/{agent_id}/webhooks/new", get(webhook_form::new))
        .route(webhook, get(logs::list).post(webhook_form::update))
        .route(&format!("{webhook}/edit"), get(webhook_form::edit))
        .route(&format!("{webhook}/toggle"), post(actions::toggle))
        .route(&format!("{webhook}/test"), post(actions::test))
        .route(&format!("{webhook}/delete"), get(actions::confirm_delete).post(actions::delete))
        .route(&format!("{webhook}/secret"), post(actions::reveal_secret))
        .route(&format!("{webhook}/secret/rotate"), post(actions::rotate_secret))
        .route(&format!("{webhook}/recover"), get(recover::form).post(recover::submit))
        .route(&format!("{webhook}/recover/{{recovery_id}}"), get(recover::progress))
        .route(&format!("{webhook}/logs/{{log_id}}"), get(log_detail::show))
        .route(&format!("{webhook}/logs/{{log_id}}/retry"), post(actions::retry))
        .route(&format!("{webhook}/logs/{{log_id}}/resend"), post(actions::resend))
        .route(
            &format!("{webhook}/logs/{{log_id}}/erase"),
            get(actions::confirm_erase).post(actions::erase),
        )
        .fallback(|| async { UiError::NotFound })
        .method_not_allowed_fallback(|| async { UiError::NotFound })
        .layer(middleware::from_fn(headers::security_headers))
}

/// `/ui`: the agents of a dashboard session, the one agent of a portal session.
async fn home(session: Session) -> Response {
    match session.agent_scope() {
        Some(agent_id) => Redirect::to(&format!("/ui/agents/{agent_id}")).into_response(),
        None => Redirect::to("/ui/agents").into_response(),
    }
}
