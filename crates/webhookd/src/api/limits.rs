//! Limits answered before a handler runs: bodies declared larger than the limit, and the
//! `Retry-After` of every 429.

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::bland::BlandFailure;
use super::error::ApiError;
use super::BODY_LIMIT;

/// Bland's endpoints answer in Bland's envelope.
const BLAND_PREFIX: &str = "/v1/postcall/";

/// A request whose `Content-Length` is over [`BODY_LIMIT`] gets its 413 before any of its body is
/// read: no `100 Continue` goes out (hyper sends it on the first read), and a client announcing
/// terabytes is not waited for.
pub async fn refuse_oversized_body(request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok());
    if declared.is_some_and(|length| length > BODY_LIMIT as u64) {
        return if request.uri().path().starts_with(BLAND_PREFIX) {
            BlandFailure::from(ApiError::PayloadTooLarge).into_response()
        } else {
            ApiError::PayloadTooLarge.into_response()
        };
    }
    next.run(request).await
}

/// A wait as a `Retry-After`: whole seconds, rounded up, at least 1.
pub fn retry_after_secs(wait: std::time::Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

/// Every 429 says when to come back, in whole seconds and never `0` (which invites an immediate
/// retry): the rate limits compute it, and an answer that lacks it (Bland's envelope) gets 1.
pub async fn retry_after_at_least_a_second(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    if response.status() == StatusCode::TOO_MANY_REQUESTS {
        let seconds = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u64>().ok())
            .unwrap_or(0);
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
    }
    response
}
