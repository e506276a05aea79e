//! Sessions. Signing in (with an API key) or opening a portal link stores a session row and sets
//! a cookie holding a random token; the row is found by the token's SHA-256, so the database never
//! holds a usable token. Sessions live in the database rather than in signed cookies so that they
//! work on every node, and signing out ends them everywhere at once.
//!
//! The cookie is `HttpOnly` (no script reads it), `SameSite=Strict` (no other site's page sends
//! it), scoped to `/ui`, and `Secure` when the request came over TLS: when `--public-url` is an
//! `https://` URL, or a TLS-terminating proxy in front says `X-Forwarded-Proto: https`.

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use cookie::{Cookie, SameSite};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::error::UiError;
use crate::api::AppState;
use crate::domain::clock::{now_ms, UnixMs, HOUR_MS};
use crate::store::UiSession;

pub const SESSION_COOKIE: &str = "webhookd_session";
/// A dashboard session lasts this long from sign-in.
pub const DASHBOARD_SESSION_MS: i64 = 12 * HOUR_MS;

/// 32 random bytes, URL-safe base64: session tokens, CSRF tokens, sign-in nonces.
pub fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// The value of cookie `name` in the request, if any.
pub fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|cookie| cookie.name() == name)
        .map(|cookie| cookie.value().to_string())
}

/// Whether the browser reached webhookd over TLS (see the module documentation).
pub fn over_tls(state: &AppState, headers: &HeaderMap) -> bool {
    let forwarded_https = headers
        .get("x-forwarded-proto")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(',').next())
        .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"));
    let public_https =
        state.config.public_url.as_deref().is_some_and(|url| url.starts_with("https://"));
    forwarded_https || public_https
}

/// A `Set-Cookie` value with the UI's attributes; `max_age_ms` 0 removes the cookie.
pub fn set_cookie(
    name: &str,
    value: &str,
    path: &str,
    max_age_ms: i64,
    secure: bool,
) -> HeaderValue {
    let cookie = Cookie::build((name, value))
        .path(path)
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(secure)
        .max_age(cookie::time::Duration::milliseconds(max_age_ms.max(0)))
        .build();
    HeaderValue::from_str(&cookie.to_string()).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Stores a new session and returns the `Set-Cookie` header that hands it to the browser.
pub async fn start(
    state: &AppState,
    headers: &HeaderMap,
    org_id: Uuid,
    agent_id: Option<Uuid>,
    api_key_id: Option<Uuid>,
    expires_at: UnixMs,
) -> Result<(&'static str, HeaderValue), UiError> {
    let token = random_token();
    let now = now_ms();
    let session = UiSession {
        token_hash: token_hash(&token),
        org_id,
        agent_id,
        api_key_id,
        csrf_token: random_token(),
        expires_at,
        created_at: now,
    };
    state.store.create_ui_session(&session).await?;
    let secure = over_tls(state, headers);
    let cookie = set_cookie(SESSION_COOKIE, &token, "/ui", expires_at - now, secure);
    Ok((SET_COOKIE.as_str(), cookie))
}

/// Ends the request's session, if it has one; returns the header that removes the cookie.
pub async fn end(state: &AppState, headers: &HeaderMap) -> Result<HeaderValue, UiError> {
    if let Some(token) = cookie_value(headers, SESSION_COOKIE) {
        state.store.delete_ui_session(&token_hash(&token)).await?;
    }
    Ok(set_cookie(SESSION_COOKIE, "", "/ui", 0, over_tls(state, headers)))
}

/// The signed-in session of a request; pages that need one redirect to sign-in without it.
#[derive(Debug, Clone)]
pub struct Session(UiSession);

impl Session {
    pub fn org_id(&self) -> Uuid {
        self.0.org_id
    }

    /// The one agent a portal session may see; `None` for a dashboard session.
    pub fn agent_scope(&self) -> Option<Uuid> {
        self.0.agent_id
    }

    pub fn csrf_token(&self) -> &str {
        &self.0.csrf_token
    }

    /// `Ok` when this session may see `agent_id`; any other agent is the same 404 as an unknown
    /// one, so a portal user learns nothing about the rest of the organization.
    pub fn may_see(&self, agent_id: Uuid) -> Result<(), UiError> {
        match self.0.agent_id {
            Some(scope) if scope != agent_id => Err(UiError::NotFound),
            _ => Ok(()),
        }
    }
}

impl OptionalFromRequestParts<AppState> for Session {
    type Rejection = UiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Option<Self>, UiError> {
        match <Self as FromRequestParts<AppState>>::from_request_parts(parts, state).await {
            Ok(session) => Ok(Some(session)),
            Err(UiError::SignedOut) => Ok(None),
            Err(other) => Err(other),
        }
    }
}

impl FromRequestParts<AppState> for Session {
    type Rejection = UiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, UiError> {
        let token = cookie_value(&parts.headers, SESSION_COOKIE).ok_or(UiError::SignedOut)?;
        let session = state.store.ui_session(&token_hash(&token)).await?;
        session.map(Session).ok_or(UiError::SignedOut)
    }
}
