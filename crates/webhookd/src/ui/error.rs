//! What a UI request that fails shows: an HTML page with a clear message and the right status,
//! never the API's JSON envelope or a blank page. Server faults are logged once, with their
//! cause, and shown without detail.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};

use super::views::{render_with, Chrome};
use crate::api::error::ApiError;
use crate::store::StoreError;

#[derive(Debug)]
pub enum UiError {
    /// No session (or an expired one): to the sign-in page.
    SignedOut,
    /// Unknown, another organization's, or outside a portal session's agent: always the same 404.
    NotFound,
    /// A form without this session's CSRF token.
    Csrf,
    /// A portal link that does not verify or has expired.
    BadPortalLink(&'static str),
    Api(ApiError),
    Internal(anyhow::Error),
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    chrome: Chrome,
    title: String,
    message: String,
    details: Vec<String>,
}

impl From<ApiError> for UiError {
    fn from(error: ApiError) -> Self {
        match error {
            ApiError::NotFound(_) => Self::NotFound,
            other => Self::Api(other),
        }
    }
}

impl From<StoreError> for UiError {
    fn from(error: StoreError) -> Self {
        Self::Internal(error.into())
    }
}

impl From<askama::Error> for UiError {
    fn from(error: askama::Error) -> Self {
        Self::Internal(error.into())
    }
}

/// How a failed request is answered: elsewhere, or with an error page (status, title, message,
/// and details such as one line per invalid field).
enum Answer {
    Redirect(&'static str),
    Page(StatusCode, &'static str, String, Vec<String>),
}

impl UiError {
    fn answer(self) -> Answer {
        match self {
            UiError::SignedOut => Answer::Redirect("/ui/sign-in"),
            UiError::NotFound => Answer::Page(
                StatusCode::NOT_FOUND,
                "Not found",
                "There is nothing here, or it is not yours to see. Go back to the start page."
                    .into(),
                Vec::new(),
            ),
            UiError::Csrf => Answer::Page(
                StatusCode::FORBIDDEN,
                "Form refused",
                "This form did not carry the security token of your session (CSRF protection), \
                 so nothing was changed. Reload the page you came from and submit it again."
                    .into(),
                Vec::new(),
            ),
            UiError::BadPortalLink(why) => Answer::Page(
                StatusCode::FORBIDDEN,
                "Portal link refused",
                format!("This portal link {why}. Ask for a new link."),
                Vec::new(),
            ),
            UiError::Api(ApiError::Validation(errors)) => {
                let details = errors
                    .into_map()
                    .into_iter()
                    .flat_map(|(field, messages)| {
                        messages.into_iter().map(move |m| format!("{field} {m}"))
                    })
                    .collect();
                Answer::Page(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Not done",
                    "The input was invalid.".into(),
                    details,
                )
            }
            UiError::Api(ApiError::LogNotRetriable) => Answer::Page(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Log cannot be retried",
                "Only a failed or skipped log of an enabled webhook, within the retry window, \
                 can be retried. Succeeded and pending logs cannot."
                    .into(),
                Vec::new(),
            ),
            UiError::Api(ApiError::PayloadGone(state)) => Answer::Page(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Log cannot be retried",
                format!(
                    "Its payload is gone ({}): there is nothing left to send.",
                    state.error().unwrap_or("payload removed")
                ),
                Vec::new(),
            ),
            UiError::Api(ApiError::Conflict(message)) => {
                Answer::Page(StatusCode::CONFLICT, "Not done", message, Vec::new())
            }
            UiError::Api(ApiError::PayloadTooLarge) => Answer::Page(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Form too large",
                "The form is larger than 1 MiB; nothing was changed.".into(),
                Vec::new(),
            ),
            UiError::Api(ApiError::RateLimited { .. }) => Answer::Page(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many requests",
                "Wait a moment and try again.".into(),
                Vec::new(),
            ),
            UiError::Api(other) => {
                tracing::error!(error = format!("{other:#}"), "dashboard request failed");
                server_fault()
            }
            UiError::Internal(cause) => {
                tracing::error!(error = format!("{cause:#}"), "dashboard request failed");
                server_fault()
            }
        }
    }
}

fn server_fault() -> Answer {
    Answer::Page(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Server error",
        "Something went wrong on the server; the details are in its log. Try again.".into(),
        Vec::new(),
    )
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let (status, title, message, details) = match self.answer() {
            Answer::Redirect(to) => return Redirect::to(to).into_response(),
            Answer::Page(status, title, message, details) => (status, title, message, details),
        };
        let page =
            ErrorPage { chrome: Chrome::signed_out(), title: title.into(), message, details };
        render_with(status, &page).unwrap_or_else(|_| (status, title).into_response())
    }
}
