//! Access tokens of `oauth2` webhooks (SPEC §9): fetched with the client-credentials grant,
//! cached per webhook until `expires_in` − 30 s, and fetched by one attempt at a time per
//! webhook on this node (the others wait for its token rather than asking the endpoint too).
//!
//! A cached token belongs to one webhook id *and* to the client settings it was fetched with: an
//! edit of the token URL, client or scope fetches a new one, and no webhook ever reads another's.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::ACCEPT;
use serde::Deserialize;
use uuid::Uuid;

use super::egress::Egress;
use super::sender::{describe, read_bounded};
use crate::domain::webhook::OAuth2Client;

/// A token is used until this long before the expiry its endpoint announced.
const EXPIRY_MARGIN: Duration = Duration::from_secs(30);
/// How long a token whose response had no `expires_in` is reused (a 401 ends it sooner).
const LIFETIME_UNANNOUNCED: Duration = Duration::from_secs(300);
/// A token response larger than this is refused.
const RESPONSE_MAX: usize = 64 * 1024;
/// A token endpoint that does not answer within this fails the attempt as `oauth2 token: …`,
/// before the attempt's own timeout would record it as a plain timeout.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(10);

/// Tokens per webhook, on this node.
#[derive(Clone)]
pub struct TokenCache {
    slots: moka::sync::Cache<Uuid, Arc<Slot>>,
}

/// One webhook's token; the async lock is the "one fetch in flight" rule.
struct Slot {
    client: OAuth2Client,
    token: tokio::sync::Mutex<Option<Token>>,
}

struct Token {
    access_token: String,
    fresh_until: Instant,
}

impl Default for TokenCache {
    fn default() -> Self {
        // Webhooks deleted or no longer `oauth2` leave a slot behind; idle ones are dropped.
        let slots = moka::sync::Cache::builder()
            .max_capacity(100_000)
            .time_to_idle(Duration::from_secs(24 * 3600))
            .build();
        Self { slots }
    }
}

impl TokenCache {
    /// A token for `webhook` (fresh from the cache, or fetched now). `rejected` is a token the
    /// endpoint just answered 401 to: it is not returned again, a new one is fetched (unless
    /// another attempt already did).
    pub async fn token(
        &self,
        http: &reqwest::Client,
        egress: &Egress,
        webhook: Uuid,
        client: &OAuth2Client,
        rejected: Option<&str>,
    ) -> Result<String, String> {
        let slot = self.slot(webhook, client);
        let mut held = slot.token.lock().await;
        if let Some(token) = held.as_ref() {
            let usable = Some(token.access_token.as_str()) != rejected;
            if usable && Instant::now() < token.fresh_until {
                return Ok(token.access_token.clone());
            }
        }
        *held = None;
        let (access_token, lifetime) = fetch(http, egress, client).await?;
        if let Some(fresh_for) = lifetime.checked_sub(EXPIRY_MARGIN).filter(|d| !d.is_zero()) {
            let fresh_until = Instant::now() + fresh_for;
            *held = Some(Token { access_token: access_token.clone(), fresh_until });
        }
        Ok(access_token)
    }

    /// The webhook's slot, a new one when its client settings changed since it was made.
    fn slot(&self, webhook: Uuid, client: &OAuth2Client) -> Arc<Slot> {
        let make = || Arc::new(Slot { client: client.clone(), token: Default::default() });
        let slot = self.slots.get_with(webhook, make);
        if slot.client == *client {
            return slot;
        }
        let fresh = make();
        self.slots.insert(webhook, fresh.clone());
        fresh
    }
}

/// A successful token response (RFC 6749 §5.1).
#[derive(Deserialize)]
struct Issued {
    access_token: String,
    token_type: String,
    #[serde(default)]
    expires_in: Option<Seconds>,
}

/// `expires_in` as a number, or as a string of digits (some endpoints quote it).
#[derive(Deserialize)]
#[serde(untagged)]
enum Seconds {
    Number(u64),
    Text(String),
}

/// An error response (RFC 6749 §5.2).
#[derive(Deserialize)]
struct Refused {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

/// The access token and how long it lives; the error says why there is none, in words an
/// operator can act on (recorded on the attempt as `oauth2 token: <reason>`).
async fn fetch(
    http: &reqwest::Client,
    egress: &Egress,
    client: &OAuth2Client,
) -> Result<(String, Duration), String> {
    // The token URL obeys the webhook URL's rule, proxy or not.
    egress.admit(&client.token_url, "oauth2_token_url").await?;
    let mut form = vec![("grant_type", "client_credentials")];
    form.extend(client.scope.as_deref().map(|scope| ("scope", scope)));
    form.extend(client.audience.as_deref().map(|audience| ("audience", audience)));
    // RFC 6749 §2.3.1: the id and secret are form-encoded before they are put in Basic.
    let encode = |value: &str| url::form_urlencoded::byte_serialize(value.as_bytes()).collect();
    let (user, password): (String, String) =
        (encode(&client.client_id), encode(&client.client_secret));
    let response = http
        .post(&client.token_url)
        .basic_auth(user, Some(password))
        .header(ACCEPT, "application/json")
        .form(&form)
        .timeout(TOKEN_TIMEOUT)
        .send()
        .await
        .map_err(|error| describe(&error))?;
    let status = response.status();
    let (body, _) = read_bounded(response, RESPONSE_MAX).await;
    if !status.is_success() {
        return Err(match serde_json::from_slice::<Refused>(&body) {
            Ok(Refused { error, error_description: Some(description) }) => {
                format!("the token endpoint answered {status}: {error} ({description})")
            }
            Ok(Refused { error, .. }) => format!("the token endpoint answered {status}: {error}"),
            Err(_) => format!("the token endpoint answered {status}"),
        });
    }
    let issued: Issued = serde_json::from_slice(&body)
        .map_err(|error| format!("the token endpoint's answer is not a token response: {error}"))?;
    if !issued.token_type.eq_ignore_ascii_case("bearer") {
        let kind = issued.token_type;
        return Err(format!("token_type is {kind:?}; only Bearer tokens can be sent"));
    }
    if reqwest::header::HeaderValue::from_str(&issued.access_token).is_err() {
        return Err("access_token is not a valid header value".into());
    }
    let lifetime = match issued.expires_in {
        None => LIFETIME_UNANNOUNCED,
        Some(Seconds::Number(seconds)) => Duration::from_secs(seconds),
        Some(Seconds::Text(text)) => text
            .trim()
            .parse()
            .map(Duration::from_secs)
            .map_err(|_| format!("expires_in {text:?} is not a number of seconds"))?,
    };
    Ok((issued.access_token, lifetime))
}
