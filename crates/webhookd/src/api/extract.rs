//! Request extractors that turn every bad input into the contract's envelope. The framework's own
//! extractors answer in plain text, so handlers use these instead.

use axum::body::Bytes;
use axum::extract::path::ErrorKind;
use axum::extract::rejection::PathRejection;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::auth::KeyCheck;
use super::error::{ApiError, Missing};
use super::AppState;
use crate::domain::secrets::hash_api_key;

/// A JSON body: 400 `INVALID_JSON` when it is not JSON (or not UTF-8), 422 `VALIDATION_FAILED`
/// naming the field when a value has the wrong type, 413 past the body limit.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(request, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge
            } else if crate::server::is_body_timeout(&rejection) {
                ApiError::RequestTimeout
            } else {
                ApiError::InvalidJson(format!("Could not read the request body: {rejection}"))
            }
        })?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Parses `bytes` as one JSON document into `T`, reporting the path of a mistyped field.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::InvalidJson("Request body is empty; expected JSON".into()));
    }
    // serde_json skips unknown fields without checking their UTF-8, so check the whole body.
    let text = std::str::from_utf8(bytes)
        .map_err(|_| ApiError::InvalidJson("Request body is not valid UTF-8".into()))?;
    // Syntax first, so a truncated document is always 400 and never a type error on its prefix.
    serde_json::from_str::<serde::de::IgnoredAny>(text)
        .map_err(|e| ApiError::InvalidJson(format!("Malformed JSON: {e}")))?;
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                let field = if path == "." { "body".to_string() } else { path };
                ApiError::field(&field, without_position(&inner))
            }
            _ => ApiError::InvalidJson(format!("Malformed JSON: {inner}")),
        }
    })?;
    deserializer.end().map_err(|e| ApiError::InvalidJson(format!("Malformed JSON: {e}")))?;
    Ok(value)
}

/// serde_json appends "at line L column C"; for a field error the field name says more.
fn without_position(error: &serde_json::Error) -> String {
    let message = error.to_string();
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_string(),
        None => message,
    }
}

/// Query parameters: 422 `VALIDATION_FAILED` naming the parameter when one does not parse.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or_default();
        let deserializer =
            serde_urlencoded::Deserializer::new(url::form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(deserializer).map(ApiQuery).map_err(|error| {
            let field = error.path().to_string();
            let field = if field == "." { "query".to_string() } else { field };
            ApiError::field(&field, error.into_inner().to_string())
        })
    }
}

/// Path parameters. An id that is not a UUID cannot name anything, so it is the same 404 as an
/// unknown id: `AGENT_NOT_FOUND` for `agent_id`, and so on.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let not_found = |_| ApiError::NotFound(Missing::Resource);
        let raw = Path::<Vec<(String, String)>>::from_request_parts(parts, state).await;
        let Path(raw) = raw.map_err(|rejection| match rejection {
            PathRejection::FailedToDeserializePathParams(error) => match error.kind() {
                ErrorKind::InvalidUtf8InPathParam { key } => {
                    ApiError::NotFound(missing_for_key(key))
                }
                _ => ApiError::NotFound(Missing::Resource),
            },
            _ => ApiError::NotFound(Missing::Resource),
        })?;
        for (key, value) in &raw {
            let missing = missing_for_key(key);
            if missing != Missing::Resource && Uuid::parse_str(value).is_err() {
                return Err(ApiError::NotFound(missing));
            }
        }
        let Path(value) = Path::<T>::from_request_parts(parts, state).await.map_err(not_found)?;
        Ok(ApiPath(value))
    }
}

/// Which resource an id path parameter names.
fn missing_for_key(key: &str) -> Missing {
    match key {
        "agent_id" => Missing::Agent,
        "webhook_id" => Missing::Webhook,
        "log_id" => Missing::Log,
        _ => Missing::Resource,
    }
}

/// The organization the request's API key belongs to. Accepts `Authorization: Bearer <key>` and a
/// bare `Authorization: <key>` (Bland clients send that).
#[derive(Debug, Clone, Copy)]
pub struct CurrentOrg(pub Uuid);

impl FromRequestParts<AppState> for CurrentOrg {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            return Err(ApiError::Unauthorized(
                "Missing API key: send Authorization: Bearer <key>",
            ));
        };
        let key = value.to_str().ok().map(bearer_token).unwrap_or_default();
        if key.is_empty() {
            return Err(ApiError::Unauthorized("Invalid API key"));
        }
        let key_hash = hash_api_key(key);
        let client = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|info| info.0.ip());
        let org_id = match state.auth.check_key(&state.store, &key_hash, client).await? {
            KeyCheck::Valid(org_id) => org_id,
            KeyCheck::Unknown => return Err(ApiError::Unauthorized("Invalid API key")),
            KeyCheck::Throttled { retry_after_secs } => {
                return Err(ApiError::RateLimited { retry_after_secs })
            }
        };
        state
            .auth
            .check_rate(&key_hash)
            .map_err(|retry_after_secs| ApiError::RateLimited { retry_after_secs })?;
        Ok(CurrentOrg(org_id))
    }
}

/// The key in `Bearer <key>` (scheme case-insensitive) or a bare `<key>`.
fn bearer_token(value: &str) -> &str {
    let value = value.trim();
    match value.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
        _ => value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_and_bare_keys_are_both_accepted() {
        assert_eq!(bearer_token("Bearer whk_abc"), "whk_abc");
        assert_eq!(bearer_token("bearer   whk_abc "), "whk_abc");
        assert_eq!(bearer_token("whk_abc"), "whk_abc");
        assert_eq!(bearer_token("Bearer"), "Bearer");
    }

    #[derive(Debug, serde::Deserialize)]
    struct Probe {
        #[allow(dead_code)]
        timeout: Option<i64>,
    }

    #[test]
    fn malformed_json_is_400_and_a_mistyped_field_is_422_naming_it() {
        let err = parse_json::<Probe>(b"{\"timeout\": ").unwrap_err();
        assert!(matches!(err, ApiError::InvalidJson(_)));
        let err = parse_json::<Probe>(b"").unwrap_err();
        assert!(matches!(err, ApiError::InvalidJson(_)));
        let err = parse_json::<Probe>(b"{} trailing").unwrap_err();
        assert!(matches!(err, ApiError::InvalidJson(_)));
        let err = parse_json::<Probe>(b"{\"name\": \"\xff\"}").unwrap_err();
        assert!(matches!(err, ApiError::InvalidJson(_)));
        match parse_json::<Probe>(b"{\"timeout\": \"soon\"}").unwrap_err() {
            ApiError::Validation(errors) => assert!(errors.into_map().contains_key("timeout")),
            other => panic!("expected a validation error, got {other:?}"),
        }
    }
}
