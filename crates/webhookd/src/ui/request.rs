//! Path parameters of UI pages. An id that does not parse names nothing: the same 404 page as an
//! unknown id.

use axum::extract::{FromRequestParts, Path, Query};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::error::UiError;
use crate::api::error::ApiError;

pub use crate::api::agents::AgentPath;
pub use crate::api::logs::LogPath;
pub use crate::api::redelivery::RecoveryPath;
pub use crate::api::webhooks::WebhookPath;

pub struct UiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for UiPath<T> {
    type Rejection = UiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, UiError> {
        let Path(value) =
            Path::<T>::from_request_parts(parts, state).await.map_err(|_| UiError::NotFound)?;
        Ok(UiPath(value))
    }
}

/// Query parameters; one that does not parse is a 422 page naming it.
pub struct UiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for UiQuery<T> {
    type Rejection = UiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, UiError> {
        let Query(value) = Query::<T>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| UiError::Api(ApiError::field("query", rejection.body_text())))?;
        Ok(UiQuery(value))
    }
}
