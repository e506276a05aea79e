//! Customer portal links. A link is `<public URL>/ui/portal/v1.<payload>.<mac>`: the payload
//! (URL-safe base64) is the organization id, the agent id and the expiry in unix seconds; the mac
//! is HMAC-SHA256 over `v1.<payload>` with a key derived from the server key (so every node
//! verifies every node's links, and no API key is in the link). Verification is constant-time and
//! happens before the expiry is even read. Opening a valid link starts a session scoped to that
//! one agent, ending when the link expires.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

use super::error::UiError;
use super::session;
use super::views::{render, Chrome};
use crate::api::AppState;
use crate::domain::clock::{now_ms, UnixMs, SECOND_MS};

/// What the portal key is derived for (see `domain::sealing`); a new format gets a new purpose.
pub const KEY_PURPOSE: &str = "portal link v1";
const VERSION: &str = "v1";
const PAYLOAD_LEN: usize = 16 + 16 + 8;

type HmacSha256 = Hmac<Sha256>;

/// Who a link lets in, and until when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortalGrant {
    pub org_id: Uuid,
    pub agent_id: Uuid,
    /// Unix seconds.
    pub expires_at_secs: i64,
}

fn mac(key: &[u8; 32], signed: &str) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(signed.as_bytes());
    mac
}

/// The token of a link granting `grant`, signed with `key`.
pub fn sign(grant: &PortalGrant, key: &[u8; 32]) -> String {
    let mut payload = Vec::with_capacity(PAYLOAD_LEN);
    payload.extend_from_slice(grant.org_id.as_bytes());
    payload.extend_from_slice(grant.agent_id.as_bytes());
    payload.extend_from_slice(&grant.expires_at_secs.to_be_bytes());
    let signed = format!("{VERSION}.{}", URL_SAFE_NO_PAD.encode(payload));
    let tag = URL_SAFE_NO_PAD.encode(mac(key, &signed).finalize().into_bytes());
    format!("{signed}.{tag}")
}

/// The grant of a token signed with `key` and not expired at `now`.
pub fn verify(token: &str, key: &[u8; 32], now: UnixMs) -> Result<PortalGrant, &'static str> {
    const INVALID: &str = "is not valid (it was changed or cut short)";
    let (signed, tag) = token.rsplit_once('.').ok_or(INVALID)?;
    let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| INVALID)?;
    mac(key, signed).verify_slice(&tag).map_err(|_| INVALID)?;
    let payload = signed.strip_prefix("v1.").ok_or(INVALID)?;
    let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| INVALID)?;
    if payload.len() != PAYLOAD_LEN {
        return Err(INVALID);
    }
    let id = |range: std::ops::Range<usize>| Uuid::from_slice(&payload[range]).map_err(|_| INVALID);
    let mut expiry = [0u8; 8];
    expiry.copy_from_slice(&payload[32..]);
    let grant = PortalGrant {
        org_id: id(0..16)?,
        agent_id: id(16..32)?,
        expires_at_secs: i64::from_be_bytes(expiry),
    };
    if grant.expires_at_secs.saturating_mul(SECOND_MS) <= now {
        return Err("has expired");
    }
    Ok(grant)
}

/// The key this server signs and verifies portal links with.
pub fn key(state: &AppState) -> [u8; 32] {
    state.store.derived_key(KEY_PURPOSE)
}

/// The URL of a link granting `grant`.
pub fn link_url(state: &AppState, grant: &PortalGrant) -> String {
    let base = state.config.public_url.as_deref().unwrap_or_default();
    format!("{base}/ui/portal/{}", sign(grant, &key(state)))
}

#[derive(Template)]
#[template(path = "portal_open.html")]
struct OpeningPage {
    chrome: Chrome,
    agent_name: String,
    target: String,
}

/// `GET /ui/portal/{token}`: verifies the link, starts a session scoped to its agent, and moves
/// on to the agent's page (by a meta refresh from this page, not a redirect, so the browser sends
/// the new `SameSite=Strict` cookie even when the link was followed from another site).
pub async fn open(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> Result<Response, UiError> {
    let grant = verify(&token, &key(&state), now_ms()).map_err(UiError::BadPortalLink)?;
    let agent = state.store.agent(grant.org_id, grant.agent_id).await?;
    let agent = agent.ok_or(UiError::NotFound)?;
    let expires_at = grant.expires_at_secs.saturating_mul(SECOND_MS);
    let (name, cookie) =
        session::start(&state, &headers, grant.org_id, Some(agent.id), None, expires_at).await?;
    let page = OpeningPage {
        chrome: Chrome::signed_out(),
        agent_name: agent.name,
        target: format!("/ui/agents/{}", agent.id),
    };
    let mut response = render(&page)?;
    response.headers_mut().append(name, cookie);
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(expires_at_secs: i64) -> PortalGrant {
        PortalGrant { org_id: Uuid::now_v7(), agent_id: Uuid::now_v7(), expires_at_secs }
    }

    #[test]
    fn a_signed_link_verifies_until_it_expires() {
        let key = [7u8; 32];
        let grant = grant(2_000_000_000);
        let token = sign(&grant, &key);
        assert_eq!(verify(&token, &key, 1_999_999_999_000), Ok(grant));
        assert_eq!(verify(&token, &key, 2_000_000_000_000), Err("has expired"));
    }

    #[test]
    fn a_changed_token_or_another_key_is_refused() {
        let key = [7u8; 32];
        let token = sign(&grant(2_000_000_000), &key);
        assert!(verify(&token, &[8u8; 32], 0).is_err());
        let mut bytes = token.clone().into_bytes();
        bytes[10] = if bytes[10] == b'A' { b'B' } else { b'A' };
        assert!(verify(&String::from_utf8(bytes).unwrap(), &key, 0).is_err());
        assert!(verify(&token[..token.len() - 2], &key, 0).is_err());
        assert!(verify("v1.x.y", &key, 0).is_err());
        // A longer expiry cannot be spliced in: the mac covers the whole payload.
        let later = sign(&grant(2_100_000_000), &key);
        let (payload, _) = later.rsplit_once('.').unwrap();
        let (_, tag) = token.rsplit_once('.').unwrap();
        assert!(verify(&format!("{payload}.{tag}"), &key, 0).is_err());
    }
}
