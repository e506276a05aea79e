//! The JSON body of webhook create and update requests, turned into domain changes.

use serde::{Deserialize, Deserializer};
use utoipa::ToSchema;

use crate::domain::webhook::{
    AuthorizationInput, CustomHeader, OAuth2Input, TlsInput, WebhookChanges,
};

/// Webhook fields for create (`name`, `webhook_url`, `events` required) and for partial update
/// (every field optional; absent fields keep their value).
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct WebhookInput {
    /// 1–255 characters.
    #[schema(max_length = 255)]
    name: Option<String>,
    /// http(s) URL, at most 500 characters.
    #[schema(max_length = 500)]
    webhook_url: Option<String>,
    /// Signing secret; a `whsec_` secret is generated when absent. At most 255 characters; a
    /// `whsec_` value must carry base64 of a 24–64 byte key.
    #[schema(max_length = 255)]
    webhook_secret: Option<String>,
    /// At least one event type from `available_events`, or a wildcard: `*` (every type) or
    /// `prefix.*` (every type starting with `prefix.`, e.g. `call.*`, including types added to
    /// the catalog later; it must match at least one type now).
    events: Option<Vec<String>>,
    /// Seconds, 5–120 (default 30).
    #[schema(minimum = 5, maximum = 120)]
    timeout: Option<i64>,
    /// 0–10 (default 3).
    #[schema(minimum = 0, maximum = 10)]
    max_retries: Option<i64>,
    /// Default true.
    enabled: Option<bool>,
    /// `POST` (default), `PUT` or `PATCH`.
    http_method: Option<String>,
    /// `none` (default), `bearer`, `basic`, `api_key`, `custom` or `oauth2` (the
    /// client-credentials grant: `oauth2_token_url`, `oauth2_client_id` and
    /// `oauth2_client_secret` required).
    authorization_scheme: Option<String>,
    /// Token for `bearer`, key for `api_key`, full `Authorization` value for `custom`.
    auth_token: Option<String>,
    /// User name for `basic`.
    auth_username: Option<String>,
    /// Password for `basic`.
    auth_password: Option<String>,
    /// Header carrying the key for `api_key` (default `X-API-Key`).
    auth_header_name: Option<String>,
    /// `oauth2`: the token endpoint (http(s), the same destination rules as `webhook_url`).
    #[schema(max_length = 500)]
    oauth2_token_url: Option<String>,
    /// `oauth2`: the client id, sent with the secret as HTTP Basic to the token endpoint.
    oauth2_client_id: Option<String>,
    /// `oauth2`: the client secret; stored sealed, never read back. On update it may be left
    /// out while `oauth2_token_url` stays the same.
    oauth2_client_secret: Option<String>,
    /// `oauth2`: the `scope` parameter of the token request (optional).
    oauth2_scope: Option<String>,
    /// `oauth2`: the `audience` parameter of the token request (optional).
    oauth2_audience: Option<String>,
    /// Mutual TLS: the client certificate (PEM, its chain after it) presented to endpoints that
    /// ask for one; given together with `tls_client_key`. `null` removes certificate and key.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    tls_client_cert: Option<Option<String>>,
    /// Mutual TLS: the private key of `tls_client_cert` (PEM: PKCS#8, PKCS#1 or SEC1); stored
    /// sealed, never read back.
    tls_client_key: Option<String>,
    /// A CA (PEM) trusted for this endpoint besides the public roots (private PKI); `null`
    /// removes it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    tls_ca_cert: Option<Option<String>>,
    /// At most 20 extra headers.
    custom_headers: Option<Vec<CustomHeader>>,
    /// Deliveries per second, 1–10000, summed over all nodes; `null` (default): no limit.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 10000)]
    rate_limit: Option<Option<i64>>,
    /// Requests in flight at once, 1–1000, over all nodes; `null` (default): adaptive.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 1000)]
    max_concurrency: Option<Option<i64>>,
    /// `none` (default) or `call`: a call's events one at a time, in ingestion order.
    ordering: Option<String>,
    /// Conditions on the event's `data` (keys are dotted paths; values literals or operator
    /// objects: `$eq $neq $in $nin $gt $gte $lt $lte $exists $contains`, combined with `$and
    /// $or $not`); an event that does not pass makes no log for this webhook. `null` (default):
    /// every subscribed event. E.g. `{"status": "completed", "duration": {"$gte": 30}}`.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Object>)]
    filter: Option<Option<serde_json::Value>>,
}

/// A field that may be set to `null`: absent → `None`, `null` → `Some(None)`.
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

impl WebhookInput {
    /// The changes this body asks for.
    pub fn changes(&self) -> WebhookChanges<'_> {
        let credentials = AuthorizationInput {
            scheme: self.authorization_scheme.as_deref().unwrap_or_default(),
            token: self.auth_token.as_deref(),
            username: self.auth_username.as_deref(),
            password: self.auth_password.as_deref(),
            header_name: self.auth_header_name.as_deref(),
            oauth2: OAuth2Input {
                token_url: self.oauth2_token_url.as_deref(),
                client_id: self.oauth2_client_id.as_deref(),
                client_secret: self.oauth2_client_secret.as_deref(),
                scope: self.oauth2_scope.as_deref(),
                audience: self.oauth2_audience.as_deref(),
            },
        };
        let credentials_without_scheme =
            self.authorization_scheme.is_none() && credentials.has_credentials();
        WebhookChanges {
            name: self.name.as_deref(),
            webhook_url: self.webhook_url.as_deref(),
            webhook_secret: self.webhook_secret.as_deref(),
            events: self.events.as_deref(),
            timeout: self.timeout,
            max_retries: self.max_retries,
            enabled: self.enabled,
            http_method: self.http_method.as_deref(),
            authorization: self.authorization_scheme.is_some().then_some(credentials),
            credentials_without_scheme,
            custom_headers: self.custom_headers.as_deref(),
            rate_limit: self.rate_limit,
            max_concurrency: self.max_concurrency,
            ordering: self.ordering.as_deref(),
            filter: self.filter.as_ref().map(Option::as_ref),
            tls: TlsInput {
                client_cert: self.tls_client_cert.as_ref().map(Option::as_deref),
                client_key: self.tls_client_key.as_deref(),
                ca_cert: self.tls_ca_cert.as_ref().map(Option::as_deref),
            },
        }
    }
}
