//! How a webhook is read back: never its secret or credentials (those only through `/secret`).

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::clock::format_ms;
use crate::domain::webhook::CustomHeader;
use crate::store::Webhook;

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookView {
    id: Uuid,
    agent_id: Uuid,
    name: String,
    webhook_url: String,
    events: Vec<String>,
    events_count: usize,
    timeout: u32,
    max_retries: u32,
    enabled: bool,
    /// `active` or `disabled`.
    status: &'static str,
    /// Why webhookd disabled it (410 Gone, failing for 5 days), if it did.
    disabled_reason: Option<String>,
    http_method: &'static str,
    authorization_scheme: &'static str,
    /// `oauth2`: the token endpoint; else null. (The client secret is never read back.)
    oauth2_token_url: Option<String>,
    /// `oauth2`: the client id; else null.
    oauth2_client_id: Option<String>,
    /// `oauth2`: the requested scope, if any.
    oauth2_scope: Option<String>,
    /// `oauth2`: the requested audience, if any.
    oauth2_audience: Option<String>,
    custom_headers: Vec<CustomHeader>,
    /// Mutual TLS: the subject of the client certificate presented, if any (the certificate
    /// and key themselves are never read back).
    tls_client_cert_subject: Option<String>,
    /// Mutual TLS: when the client certificate expires.
    tls_client_cert_expires_at: Option<String>,
    /// Deliveries per second over all nodes; `null`: no limit.
    rate_limit: Option<u32>,
    /// Requests in flight over all nodes; `null`: adaptive.
    max_concurrency: Option<u32>,
    /// `none` or `call`.
    ordering: &'static str,
    /// The content filter as given; `null`: every subscribed event.
    #[schema(value_type = Option<Object>)]
    filter: Option<serde_json::Value>,
    /// `closed`, `open` (deliveries paused after repeated failures) or `half_open` (a probe is
    /// being sent).
    circuit_state: &'static str,
    /// When an open circuit sends its next probe.
    circuit_retry_at: Option<String>,
    created_at: String,
    updated_at: String,
}

impl From<Webhook> for WebhookView {
    fn from(webhook: Webhook) -> Self {
        let settings = webhook.settings;
        let circuit = webhook.circuit;
        let oauth2 = settings.authorization.oauth2();
        Self {
            id: webhook.id,
            agent_id: webhook.agent_id,
            events_count: settings.events.as_slice().len(),
            name: settings.name.as_str().to_string(),
            webhook_url: settings.url.as_str().to_string(),
            events: settings.events.as_slice().to_vec(),
            timeout: settings.timeout.get(),
            max_retries: settings.max_retries.get(),
            enabled: settings.enabled,
            status: if settings.enabled { "active" } else { "disabled" },
            disabled_reason: webhook.disabled_reason,
            http_method: settings.http_method.as_str(),
            authorization_scheme: settings.authorization.scheme(),
            oauth2_token_url: oauth2.map(|c| c.token_url.clone()),
            oauth2_client_id: oauth2.map(|c| c.client_id.clone()),
            oauth2_scope: oauth2.and_then(|c| c.scope.clone()),
            oauth2_audience: oauth2.and_then(|c| c.audience.clone()),
            custom_headers: settings.custom_headers.as_slice().to_vec(),
            tls_client_cert_subject: settings.tls.client.as_ref().map(|c| c.subject.clone()),
            tls_client_cert_expires_at: settings
                .tls
                .client
                .as_ref()
                .map(|c| format_ms(c.expires_at)),
            rate_limit: settings.rate_limit.map(|limit| limit.get()),
            max_concurrency: settings.max_concurrency.map(|cap| cap.get()),
            ordering: settings.ordering.as_str(),
            filter: settings.filter.as_ref().map(|f| f.as_value().clone()),
            circuit_state: circuit.state.as_str(),
            circuit_retry_at: circuit.retry_at.filter(|_| !circuit.is_closed()).map(format_ms),
            created_at: format_ms(webhook.created_at),
            updated_at: format_ms(webhook.updated_at),
        }
    }
}

/// The create response: the webhook and, this once, its signing secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedWebhookView {
    #[serde(flatten)]
    pub webhook: WebhookView,
    pub signing_secret: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookList {
    pub webhooks: Vec<WebhookView>,
    /// Event name → description.
    pub available_events: BTreeMap<String, String>,
}
