//! Sends one signed HTTP request to a customer endpoint with one shared, pooled client, and
//! captures what came back within bounds: the whole attempt ends within its timeout, and at most
//! 16 KiB of response body and of response headers is kept.

use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use reqwest::StatusCode;
use uuid::Uuid;

use super::clients::{client_builder, TlsClients};
use super::egress::Egress;
use super::oauth2::TokenCache;
use super::retry::{parse_retry_after, AttemptOutcome};
use crate::domain::clock::{now_ms, UnixMs};
use crate::domain::egress::EgressProxy;
use crate::domain::webhook::{Timeout, TlsSettings};
use crate::domain::{Authorization, CustomHeader, HttpMethod};
use crate::signing;
use crate::store::{Webhook, WebhookSecrets};

/// Stored response bodies and headers are cut at this many bytes.
pub const RESPONSE_LIMIT: usize = 16 * 1024;

/// Everything one HTTP attempt needs.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The webhook sent to; `None` for per-call URLs. Keys what is kept per webhook (tokens).
    pub webhook_id: Option<Uuid>,
    pub method: HttpMethod,
    pub url: String,
    /// The Standard Webhooks `webhook-id`: the event id, the same on every attempt.
    pub message_id: String,
    /// Sent as `x-webhook-event`, so receivers can route without parsing the body.
    pub event_type: String,
    pub body: Bytes,
    /// Active signing secrets, current first.
    pub secrets: Vec<String>,
    pub authorization: Authorization,
    pub custom_headers: Vec<CustomHeader>,
    /// The webhook's client certificate and trusted CA (mutual TLS), if any.
    pub tls: TlsSettings,
    pub timeout: Duration,
    /// The W3C `traceparent` of this attempt (`telemetry::traces`), set just before it is sent.
    pub traceparent: Option<String>,
}

/// Where a request goes, which decides everything about it but the event it carries.
#[derive(Debug, Clone, Copy)]
pub enum Destination<'a> {
    /// A webhook: its method, authorization, custom headers, mutual TLS, timeout and secrets.
    Webhook(&'a Webhook),
    /// A per-call `webhook_url`: a plain POST with the default timeout, signed with the
    /// organization's secrets.
    PerCall(&'a WebhookSecrets),
}

impl Outgoing {
    /// The request delivering event `event_id` of `event_type` (its payload `body`) to `url` at
    /// `destination`, signed with the secrets active at `at`. The dispatcher and the dashboard's
    /// display of sent headers both build it here, so they cannot drift apart.
    pub fn new(
        destination: Destination<'_>,
        url: &str,
        event_id: Uuid,
        event_type: &str,
        body: Bytes,
        at: UnixMs,
    ) -> Self {
        let secrets = match destination {
            Destination::Webhook(webhook) => &webhook.secrets,
            Destination::PerCall(secrets) => secrets,
        };
        // A per-call request is the plain one; a webhook's settings replace its defaults.
        let plain = Outgoing {
            webhook_id: None,
            method: HttpMethod::Post,
            url: url.to_string(),
            message_id: event_id.to_string(),
            event_type: event_type.to_string(),
            body,
            secrets: secrets.active_at(at).into_iter().map(String::from).collect(),
            authorization: Authorization::None,
            custom_headers: Vec::new(),
            tls: TlsSettings::default(),
            timeout: Timeout::DEFAULT.duration(),
            traceparent: None,
        };
        match destination {
            Destination::PerCall(_) => plain,
            Destination::Webhook(webhook) => {
                let settings = &webhook.settings;
                Outgoing {
                    webhook_id: Some(webhook.id),
                    method: settings.http_method,
                    authorization: settings.authorization.clone(),
                    custom_headers: settings.custom_headers.as_slice().to_vec(),
                    tls: settings.tls.clone(),
                    timeout: settings.timeout.duration(),
                    ..plain
                }
            }
        }
    }
}

/// What one attempt produced.
#[derive(Debug, Clone)]
pub struct Sent {
    pub sent_at: i64,
    pub duration_ms: i64,
    pub status: Option<u16>,
    pub body: Option<String>,
    pub headers: Option<String>,
    pub error: Option<String>,
    pub retry_after: Option<Duration>,
}

impl Sent {
    pub fn outcome(&self) -> AttemptOutcome {
        match self.status {
            Some(status) if (200..300).contains(&status) && self.error.is_none() => {
                AttemptOutcome::Delivered
            }
            status => AttemptOutcome::Failed { status, retry_after: self.retry_after },
        }
    }
}

#[derive(Clone)]
pub struct Sender {
    client: reqwest::Client,
    egress: Egress,
    tokens: TokenCache,
    tls_clients: TlsClients,
}

impl Sender {
    /// A client with the SSRF guard (unless `allow_private`: then any address is a
    /// destination), sending through `proxy` when there is one.
    pub fn new(allow_private: bool, proxy: Option<EgressProxy>) -> anyhow::Result<Self> {
        let egress = Egress { allow_private, proxy };
        let client = client_builder(&egress)?.build()?;
        let tls_clients = TlsClients::new(egress.clone());
        Ok(Self { client, egress, tokens: TokenCache::default(), tls_clients })
    }

    /// Sends `outgoing` once. Never fails: a failure is an attempt with an error.
    pub async fn send(&self, outgoing: &Outgoing) -> Sent {
        let sent_at = now_ms();
        let started = Instant::now();
        let attempt = tokio::time::timeout(outgoing.timeout, self.deliver(outgoing, sent_at)).await;
        let duration_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
        let mut sent = Sent {
            sent_at,
            duration_ms,
            status: None,
            body: None,
            headers: None,
            error: None,
            retry_after: None,
        };
        match attempt {
            Err(_) => {
                sent.error = Some(format!("timed out after {}s", outgoing.timeout.as_secs()));
            }
            Ok(Err(error)) => sent.error = Some(error),
            Ok(Ok(response)) => {
                sent.status = Some(response.status);
                sent.retry_after = response.retry_after;
                sent.headers = Some(response.headers);
                sent.body = Some(response.body);
                sent.error = response.body_error;
            }
        }
        sent
    }

    /// The request with its authorization: an `oauth2` webhook's token is fetched first (or
    /// taken from the cache), and fetched anew once when the endpoint answers 401 to it.
    async fn deliver(&self, outgoing: &Outgoing, sent_at: i64) -> Result<Captured, String> {
        // Within the attempt's timeout: behind a proxy this resolves the destination's name.
        self.egress.admit(&outgoing.url, "webhook_url").await?;
        // A webhook with TLS settings sends through its own client (`clients.rs`).
        let http = &match outgoing.webhook_id.filter(|_| !outgoing.tls.is_default()) {
            None => self.client.clone(),
            Some(webhook) => self.tls_clients.client(webhook, &outgoing.tls)?,
        };
        let (Authorization::OAuth2(client), Some(webhook)) =
            (&outgoing.authorization, outgoing.webhook_id)
        else {
            return self.exchange(http, outgoing, sent_at, None).await.map_err(|e| describe(&e));
        };
        let token = |rejected: Option<String>| async move {
            let rejected = rejected.as_deref();
            let got = self.tokens.token(&self.client, &self.egress, webhook, client, rejected);
            got.await.map_err(|reason| format!("oauth2 token: {reason}"))
        };
        let first = token(None).await?;
        let captured =
            self.exchange(http, outgoing, sent_at, Some(&first)).await.map_err(|e| describe(&e))?;
        if captured.status != StatusCode::UNAUTHORIZED.as_u16() {
            return Ok(captured);
        }
        let second = token(Some(first)).await?;
        self.exchange(http, outgoing, sent_at, Some(&second)).await.map_err(|e| describe(&e))
    }

    async fn exchange(
        &self,
        http: &reqwest::Client,
        outgoing: &Outgoing,
        sent_at: i64,
        bearer: Option<&str>,
    ) -> Result<Captured, reqwest::Error> {
        let method = match outgoing.method {
            HttpMethod::Post => reqwest::Method::POST,
            HttpMethod::Put => reqwest::Method::PUT,
            HttpMethod::Patch => reqwest::Method::PATCH,
        };
        // The headers are built again for the one resend rather than copied for every send.
        let send = || {
            let headers = request_headers(outgoing, sent_at / 1000, bearer);
            let request = http.request(method.clone(), &outgoing.url).headers(headers);
            request.body(outgoing.body.clone()).send()
        };
        let response = match send().await {
            Err(error) if closed_unanswered(&error) => send().await?,
            sent => sent?,
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let headers = headers_json(response.headers());
        let (body, body_error) = read_bounded(response, RESPONSE_LIMIT).await;
        let body = String::from_utf8_lossy(&body).into_owned();
        Ok(Captured { status, retry_after, headers, body, body_error })
    }
}

/// The peer closed the connection before answering a byte: the usual cause is a pooled
/// keep-alive connection closed by the other side as it was being reused (an endpoint's idle
/// timeout shorter than the pool's, or a proxy such as tinyproxy that serves one request per
/// connection without saying so). The request is then sent once more, at once, on another
/// connection, as Go's HTTP client does for requests carrying an idempotency key: `webhook-id`
/// is one, and a consumer that got the first copy drops the second. Once only, so an endpoint
/// that closes on every request still fails the attempt.
fn closed_unanswered(error: &reqwest::Error) -> bool {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if cause.downcast_ref::<hyper::Error>().is_some_and(hyper::Error::is_incomplete_message) {
            return true;
        }
        source = cause.source();
    }
    false
}

/// At most `limit` bytes of `response`'s body, and why the rest could not be read, if it could
/// not. The rest of a longer body is not read: dropping the response closes it.
pub(super) async fn read_bounded(
    mut response: reqwest::Response,
    limit: usize,
) -> (Vec<u8>, Option<String>) {
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = limit - body.len();
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if body.len() >= limit {
                    return (body, None);
                }
            }
            Ok(None) => return (body, None),
            Err(error) => {
                return (body, Some(format!("response body failed: {}", describe(&error))));
            }
        }
    }
}

struct Captured {
    status: u16,
    retry_after: Option<Duration>,
    headers: String,
    body: String,
    body_error: Option<String>,
}

/// The signed request headers (SPEC §4). Custom headers and the auth header were validated when
/// the webhook was saved; one that no longer parses is left out rather than failing the attempt.
/// `bearer` is the access token of an `oauth2` webhook.
pub fn request_headers(outgoing: &Outgoing, timestamp: i64, bearer: Option<&str>) -> HeaderMap {
    let secrets: Vec<&str> = outgoing.secrets.iter().map(String::as_str).collect();
    let signature =
        signing::standard_signature(&secrets, &outgoing.message_id, timestamp, &outgoing.body);
    let body_signature = secrets
        .first()
        .map(|secret| signing::body_signature(secret, &outgoing.body))
        .unwrap_or_default();
    let mut headers = HeaderMap::with_capacity(7 + outgoing.custom_headers.len());
    let mut put = |name: &str, value: &str| {
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value))
        {
            headers.insert(name, value);
        }
    };
    for header in &outgoing.custom_headers {
        put(&header.key, &header.value);
    }
    if let Some((name, value)) = outgoing.authorization.header() {
        put(&name, &value);
    }
    if let Some(token) = bearer {
        put("authorization", &format!("Bearer {token}"));
    }
    put(CONTENT_TYPE.as_str(), "application/json");
    put("webhook-id", &outgoing.message_id);
    put("x-webhook-event", &outgoing.event_type);
    put("webhook-timestamp", &timestamp.to_string());
    put("webhook-signature", &signature);
    put("x-webhook-signature", &body_signature);
    if let Some(traceparent) = &outgoing.traceparent {
        put("traceparent", traceparent);
    }
    headers
}

/// Response headers as a JSON object (repeated names joined with ", "), cut at the limit.
fn headers_json(headers: &HeaderMap) -> String {
    let mut object = serde_json::Map::new();
    let mut size = 2;
    for name in headers.keys() {
        let value = headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect::<Vec<_>>()
            .join(", ");
        size += name.as_str().len() + value.len() + 6;
        if size > RESPONSE_LIMIT {
            break;
        }
        object.insert(name.as_str().to_string(), serde_json::Value::String(value));
    }
    serde_json::Value::Object(object).to_string()
}

/// A transport error as one readable line with its causes.
pub(super) fn describe(error: &reqwest::Error) -> String {
    let kind = if error.is_connect() {
        "connection failed"
    } else if error.is_timeout() {
        "timed out"
    } else if error.is_body() || error.is_decode() {
        "response body failed"
    } else {
        "request failed"
    };
    let mut message = kind.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
