//! Bland's `{"data", "errors"}` envelope: its success shape, its errors (every failure of a
//! Bland endpoint, including bad keys and malformed bodies, leaves in this shape), and the
//! extractors that produce them.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::api::error::ApiError;
use crate::api::extract::{CurrentOrg, JsonBody};
use crate::api::AppState;

/// Bland's envelope. `errors` is `null` when there is nothing to report.
#[derive(Debug, Serialize, ToSchema)]
pub struct BlandEnvelope<T> {
    pub data: T,
    pub errors: Option<Vec<BlandError>>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BlandError {
    /// `invalid_parameter`, `unauthorized`, `rate_limited`, `request_timeout` or
    /// `INTERNAL_SERVER_ERROR`.
    error: String,
    pub message: String,
}

impl BlandError {
    pub fn invalid(message: impl Into<String>) -> Self {
        Self { error: "invalid_parameter".into(), message: message.into() }
    }
}

/// A whole-request failure in Bland's envelope.
#[derive(Debug)]
pub struct BlandFailure {
    pub status: StatusCode,
    pub error: BlandError,
    /// A database fault behind the failure (shared with the node, with its `Retry-After`).
    pub fault: Option<crate::store::Fault>,
}

impl BlandFailure {
    pub fn invalid(message: impl Into<String>) -> Self {
        Self { status: StatusCode::BAD_REQUEST, error: BlandError::invalid(message), fault: None }
    }
}

impl From<ApiError> for BlandFailure {
    fn from(error: ApiError) -> Self {
        let fault = error.fault();
        let (status, code, message) = match &error {
            ApiError::InvalidJson(message) => {
                (StatusCode::BAD_REQUEST, "invalid_parameter", message.clone())
            }
            ApiError::Validation(_) => {
                (StatusCode::BAD_REQUEST, "invalid_parameter", describe_validation(&error))
            }
            ApiError::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_parameter",
                "Request body is larger than 1 MiB".into(),
            ),
            ApiError::Unauthorized(message) => {
                (StatusCode::UNAUTHORIZED, "unauthorized", message.to_string())
            }
            ApiError::NotFound(_) => {
                (StatusCode::NOT_FOUND, "invalid_parameter", "Not found".into())
            }
            ApiError::RequestTimeout => {
                (StatusCode::REQUEST_TIMEOUT, "request_timeout", error.to_string())
            }
            ApiError::RateLimited { .. } => {
                (StatusCode::TOO_MANY_REQUESTS, "rate_limited", "Too many requests".into())
            }
            ApiError::DatabaseUnavailable => {
                (StatusCode::SERVICE_UNAVAILABLE, "database_unavailable", error.message())
            }
            ApiError::StorageFull => {
                (StatusCode::INSUFFICIENT_STORAGE, "storage_full", error.message())
            }
            _ => {
                // Logged once, with its cause, by the API error's own response.
                let _ = error.into_response();
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "INTERNAL_SERVER_ERROR",
                    "Internal server error".into(),
                )
            }
        };
        Self { status, error: BlandError { error: code.into(), message }, fault }
    }
}

fn describe_validation(error: &ApiError) -> String {
    match error {
        ApiError::Validation(errors) => errors
            .clone()
            .into_map()
            .into_iter()
            .map(|(field, messages)| format!("{field} {}", messages.join(", ")))
            .collect::<Vec<_>>()
            .join("; "),
        other => other.to_string(),
    }
}

impl IntoResponse for BlandFailure {
    fn into_response(self) -> Response {
        let body = BlandEnvelope::<Option<()>> { data: None, errors: Some(vec![self.error]) };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(fault) = self.fault {
            if fault == crate::store::Fault::Unavailable {
                response.headers_mut().insert(
                    axum::http::header::RETRY_AFTER,
                    crate::api::error::DATABASE_RETRY_AFTER_SECS.into(),
                );
            }
            response.extensions_mut().insert(fault);
        }
        response
    }
}

/// The caller's organization, with failures in Bland's envelope.
pub struct BlandOrg(pub Uuid);

impl FromRequestParts<AppState> for BlandOrg {
    type Rejection = BlandFailure;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, BlandFailure> {
        let CurrentOrg(org_id) = CurrentOrg::from_request_parts(parts, state).await?;
        Ok(BlandOrg(org_id))
    }
}

/// A JSON body, with failures in Bland's envelope.
pub struct BlandJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for BlandJson<T> {
    type Rejection = BlandFailure;

    async fn from_request(request: Request, state: &S) -> Result<Self, BlandFailure> {
        let JsonBody(value) = JsonBody::<T>::from_request(request, state).await?;
        Ok(BlandJson(value))
    }
}

pub fn envelope<T>(data: T, errors: Vec<BlandError>) -> Json<BlandEnvelope<T>> {
    Json(BlandEnvelope { data, errors: (!errors.is_empty()).then_some(errors) })
}
