//! The one API error type. Every failure leaves the API as the contract's envelope
//! `{"success": false, "message", "code", "errors"?}`; server faults are an opaque 500 whose cause
//! goes to the server log only.

use std::collections::BTreeMap;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::validation::FieldErrors;
use crate::domain::PayloadState;
use crate::store::{Fault, NotRetriable, StoreError};

/// Which kind of resource a 404 is about: it decides the error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    Agent,
    Webhook,
    Log,
    /// No operational webhook is set (`NOT_FOUND`, with the way to set one).
    OperationalWebhook,
    /// No event of the organization has this call id (`NOT_FOUND`).
    Call,
    Resource,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    InvalidJson(String),
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("not found")]
    NotFound(Missing),
    #[error("{0}")]
    Conflict(String),
    #[error("request body is larger than 1 MiB")]
    PayloadTooLarge,
    #[error("request body did not arrive in time")]
    RequestTimeout,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("request headers too large")]
    HeadersTooLarge,
    #[error("validation failed")]
    Validation(FieldErrors),
    #[error("log cannot be retried")]
    LogNotRetriable,
    /// `LOG_NOT_RETRIABLE` because the log's payload expired or was erased: the envelope says
    /// which in `reason`.
    #[error("log cannot be retried: its payload is gone")]
    PayloadGone(PayloadState),
    #[error("rate limited")]
    RateLimited { retry_after_secs: u64 },
    /// The database is unreachable or busy past its timeout: nothing was done; try again.
    #[error("database unavailable")]
    DatabaseUnavailable,
    /// The database has no room left: nothing was stored.
    #[error("database storage full")]
    StorageFull,
    #[error("internal error: {0}")]
    Internal(#[source] anyhow::Error),
}

/// The error envelope, as documented in the OpenAPI document.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Always `false`.
    pub success: bool,
    pub message: String,
    /// `UPPER_SNAKE` error code, e.g. `VALIDATION_FAILED`.
    pub code: &'static str,
    /// Per-field messages; only for `VALIDATION_FAILED`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<BTreeMap<String, Vec<String>>>,
    /// Why, where a code has several causes: `payload_expired` or `payload_erased` for a
    /// `LOG_NOT_RETRIABLE` log whose payload is gone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
}

impl ApiError {
    pub fn internal(error: impl Into<anyhow::Error>) -> Self {
        Self::Internal(error.into())
    }

    /// A validation error on one field.
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        let mut errors = FieldErrors::default();
        errors.add(field, message);
        Self::Validation(errors)
    }

    /// The message the client reads.
    pub fn message(&self) -> String {
        self.parts().2
    }

    fn parts(&self) -> (StatusCode, &'static str, String) {
        use ApiError::*;
        match self {
            InvalidJson(message) => (StatusCode::BAD_REQUEST, "INVALID_JSON", message.clone()),
            Unauthorized(message) => {
                (StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message.to_string())
            }
            NotFound(missing) => {
                let (code, message) = match missing {
                    Missing::Agent => ("AGENT_NOT_FOUND", "Agent not found"),
                    Missing::Webhook => ("WEBHOOK_NOT_FOUND", "Webhook not found"),
                    Missing::Log => ("LOG_NOT_FOUND", "Log not found"),
                    Missing::OperationalWebhook => (
                        "NOT_FOUND",
                        "No operational webhook is set; set one with PUT \
                         /api/v1/organization/operational-webhook",
                    ),
                    Missing::Call => ("NOT_FOUND", "No event with this call id"),
                    Missing::Resource => ("NOT_FOUND", "Resource not found"),
                };
                (StatusCode::NOT_FOUND, code, message.to_string())
            }
            Conflict(message) => (StatusCode::CONFLICT, "CONFLICT", message.clone()),
            PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
                "Request body is larger than 1 MiB".into(),
            ),
            RequestTimeout => (
                StatusCode::REQUEST_TIMEOUT,
                "REQUEST_TIMEOUT",
                "The request body did not arrive in time; send it at once after the headers".into(),
            ),
            HeadersTooLarge => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "HEADERS_TOO_LARGE",
                "Request headers exceed 32 KiB or 100 fields".into(),
            ),
            MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "METHOD_NOT_ALLOWED",
                "Method not allowed on this path".into(),
            ),
            Validation(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "VALIDATION_FAILED",
                "The given data was invalid.".into(),
            ),
            LogNotRetriable | PayloadGone(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "LOG_NOT_RETRIABLE",
                "Log cannot be retried".into(),
            ),
            RateLimited { .. } => {
                (StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED", "Too many requests".into())
            }
            DatabaseUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "DATABASE_UNAVAILABLE",
                "The database is unavailable, so nothing was done. Try again after the \
                 Retry-After delay; give an ingested event an idempotency_key (or an \
                 Idempotency-Key header), so a retry of a request that was in fact stored \
                 creates nothing twice."
                    .into(),
            ),
            StorageFull => (
                StatusCode::INSUFFICIENT_STORAGE,
                "STORAGE_FULL",
                "The database is out of space (its disk or file is full), so nothing was \
                 stored. Free space on the database's volume; writes resume by themselves."
                    .into(),
            ),
            Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL_SERVER_ERROR",
                "Internal server error".into(),
            ),
        }
    }

    /// The database fault this error reports, if any (`api::database_condition` shares it).
    pub fn fault(&self) -> Option<Fault> {
        match self {
            Self::DatabaseUnavailable => Some(Fault::Unavailable),
            Self::StorageFull => Some(Fault::DiskFull),
            _ => None,
        }
    }

    /// Seconds a client should wait before trying again, when the answer says so.
    fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Self::RateLimited { retry_after_secs } => Some(*retry_after_secs),
            Self::DatabaseUnavailable => Some(DATABASE_RETRY_AFTER_SECS),
            _ => None,
        }
    }
}

/// What a 503 `DATABASE_UNAVAILABLE` tells clients to wait: the database watcher probes twice a
/// second, so a second is enough to learn that it is back.
pub const DATABASE_RETRY_AFTER_SECS: u64 = 1;

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error.fault() {
            Some(Fault::Unavailable) => {
                tracing::warn!(error = %error, "request refused: the database is unavailable");
                Self::DatabaseUnavailable
            }
            Some(Fault::DiskFull) => {
                tracing::warn!(error = %error, "request refused: the database is out of space");
                Self::StorageFull
            }
            None => Self::Internal(error.into()),
        }
    }
}

impl From<NotRetriable> for ApiError {
    fn from(refusal: NotRetriable) -> Self {
        match refusal {
            NotRetriable::PayloadGone(state) => Self::PayloadGone(state),
            NotRetriable::NotEnded | NotRetriable::TooOld => Self::LogNotRetriable,
        }
    }
}

impl From<FieldErrors> for ApiError {
    fn from(errors: FieldErrors) -> Self {
        Self::Validation(errors)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = self.parts();
        if let ApiError::Internal(cause) = &self {
            tracing::error!(error = format!("{cause:#}"), "request failed with an internal error");
        }
        let retry_after = self.retry_after_secs();
        let fault = self.fault();
        let reason = match &self {
            ApiError::PayloadGone(state) => state.reason(),
            _ => None,
        };
        let errors = match self {
            ApiError::Validation(errors) => Some(errors.into_map()),
            _ => None,
        };
        let body = ErrorBody { success: false, message, code, errors, reason };
        let mut response = (status, Json(body)).into_response();
        if let Some(seconds) = retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
        }
        if let Some(fault) = fault {
            response.extensions_mut().insert(fault);
        }
        response
    }
}
