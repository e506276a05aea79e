//! Signing in with an API key, and out. The sign-in form is itself protected against CSRF (so
//! no other site can sign a browser into its own organization): the page sets a short-lived
//! `SameSite=Strict` cookie with a random nonce and repeats it in a hidden field, and a POST is
//! accepted only when the two match.

use askama::Template;
use axum::extract::{ConnectInfo, State};
use axum::http::header::{LOCATION, RETRY_AFTER, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::net::SocketAddr;

use super::csrf::{tokens_match, CsrfForm, FormFields};
use super::error::UiError;
use super::request::UiQuery;
use super::session::{self, cookie_value, over_tls, random_token, set_cookie, Session};
use super::sign_in_limits::{Limit, Limited};
use super::views::{render_with, Chrome};
use crate::api::AppState;
use crate::api::KeyCheck;
use crate::domain::clock::{now_ms, HOUR_MS};
use crate::domain::secrets::hash_api_key;

const NONCE_COOKIE: &str = "webhookd_sign_in";
const NONCE_PATH: &str = "/ui/sign-in";

#[derive(Template)]
#[template(path = "sign_in.html")]
struct SignInPage {
    chrome: Chrome,
    nonce: String,
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct SignInQuery {
    signed_out: Option<String>,
}

/// The sign-in page, with a fresh nonce in a cookie and in the form.
fn page(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    error: Option<&str>,
    notice: Option<&str>,
) -> Result<Response, UiError> {
    let nonce = random_token();
    let cookie = set_cookie(NONCE_COOKIE, &nonce, NONCE_PATH, HOUR_MS, over_tls(state, headers));
    let error = error.map(str::to_string);
    let page = SignInPage { chrome: Chrome::signed_out().notice(notice), nonce, error };
    let mut response = render_with(status, &page)?;
    response.headers_mut().append(SET_COOKIE, cookie);
    Ok(response)
}

pub async fn form(
    State(state): State<AppState>,
    session: Option<Session>,
    headers: HeaderMap,
    UiQuery(query): UiQuery<SignInQuery>,
) -> Result<Response, UiError> {
    if session.is_some() {
        return Ok(see_other("/ui"));
    }
    let notice = query.signed_out.map(|_| "You are signed out.");
    page(&state, &headers, StatusCode::OK, None, notice)
}

pub async fn submit(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, UiError> {
    let fields = FormFields::parse(&body);
    let nonce = cookie_value(&headers, NONCE_COOKIE).unwrap_or_default();
    if !tokens_match(fields.get("nonce").unwrap_or_default(), &nonce) {
        return Err(UiError::Csrf);
    }
    let key = fields.get("api_key").unwrap_or_default().trim();
    // While this address or this key's prefix has failed too often, no key is looked at.
    if let Err(limited) = state.sign_in_limits.check(client.ip(), key) {
        return too_many_failures(&state, &headers, limited);
    }
    let key_hash = hash_api_key(key);
    // The API's key check first: unknown keys are remembered and a client trying many is slowed
    // down, on this form as on the API.
    let checked = state.auth.check_key(&state.store, &key_hash, Some(client.ip())).await?;
    if let KeyCheck::Throttled { retry_after_secs } = checked {
        let error = "Too many sign-in attempts with unknown keys from here; wait a moment.";
        return refused(&state, &headers, error, retry_after_secs);
    }
    let Some((key_id, org_id)) = state.store.api_key_by_hash(&key_hash).await? else {
        if let Err(limited) = state.sign_in_limits.failed(client.ip(), key) {
            // Once per pause; no key material (the prefix names a key), only the address.
            tracing::warn!(
                client = %client.ip(),
                limit = limited.limit.as_str(),
                retry_after_secs = limited.retry_after_secs,
                "dashboard sign-in paused after too many failed attempts"
            );
            return too_many_failures(&state, &headers, limited);
        }
        let error = if key.is_empty() {
            "Enter an API key: paste the whole key, starting with whk_."
        } else {
            "That API key is not valid. Paste the whole key, starting with whk_ (a new one can \
             be made with `webhookd org create`)."
        };
        return page(&state, &headers, StatusCode::UNAUTHORIZED, Some(error), None);
    };
    let expires_at = now_ms() + session::DASHBOARD_SESSION_MS;
    let cookie = session::start(&state, &headers, org_id, None, Some(key_id), expires_at).await?;
    let mut response = see_other("/ui/agents");
    let headers_out = response.headers_mut();
    headers_out.append(cookie.0, cookie.1);
    headers_out.append(SET_COOKIE, set_cookie(NONCE_COOKIE, "", NONCE_PATH, 0, false));
    Ok(response)
}

pub async fn sign_out(
    State(state): State<AppState>,
    headers: HeaderMap,
    _form: CsrfForm,
) -> Result<Response, UiError> {
    let removal = session::end(&state, &headers).await?;
    let mut response = see_other("/ui/sign-in?signed_out=1");
    response.headers_mut().append(SET_COOKIE, removal);
    Ok(response)
}

/// The sign-in page answering 429: too many failed sign-ins from this address or with this key.
fn too_many_failures(
    state: &AppState,
    headers: &HeaderMap,
    limited: Limited,
) -> Result<Response, UiError> {
    let whose = match limited.limit {
        Limit::ClientAddress => "from your address",
        Limit::KeyPrefix => "with this key",
    };
    let error = format!(
        "Too many failed sign-ins {whose}. Try again in {} seconds, pasting the whole key, \
         starting with whk_.",
        limited.retry_after_secs
    );
    refused(state, headers, &error, limited.retry_after_secs)
}

/// The sign-in page answering 429 with `error`, and when to try again.
fn refused(
    state: &AppState,
    headers: &HeaderMap,
    error: &str,
    retry_after_secs: u64,
) -> Result<Response, UiError> {
    let mut response = page(state, headers, StatusCode::TOO_MANY_REQUESTS, Some(error), None)?;
    response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(retry_after_secs.max(1)));
    Ok(response)
}

/// A 303 to `location` (built here so headers can be added to it).
pub fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(LOCATION, value);
    }
    response
}
