//! What the store hands out: rows decoded into domain values.

use uuid::Uuid;

use super::StoreError;
use crate::domain::circuit::{Circuit, CircuitState};
use crate::domain::clock::UnixMs;
use crate::domain::sealing::Sealer;
use crate::domain::webhook::{
    Authorization, CustomHeaders, EventTypes, HttpMethod, MaxConcurrency, MaxRetries, Name,
    Ordering, RateLimit, Timeout, WebhookSettings, WebhookUrl,
};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Organization {
    pub id: Uuid,
    pub name: String,
    pub created_at: UnixMs,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Agent {
    pub id: Uuid,
    pub org_id: Uuid,
    pub name: String,
    pub created_at: UnixMs,
    pub updated_at: UnixMs,
}

/// A signing secret and, during the grace period after a rotation, the one it replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSecrets {
    pub current: String,
    pub previous: Option<String>,
    pub previous_expires_at: Option<UnixMs>,
}

impl WebhookSecrets {
    /// The secrets that sign a request sent at `now`: the current one, then the previous one
    /// while its grace period lasts.
    pub fn active_at(&self, now: UnixMs) -> Vec<&str> {
        let mut secrets = vec![self.current.as_str()];
        if let (Some(previous), Some(expires)) = (&self.previous, self.previous_expires_at) {
            if now < expires {
                secrets.push(previous);
            }
        }
        secrets
    }
}

#[derive(Debug, Clone)]
pub struct Webhook {
    pub id: Uuid,
    pub org_id: Uuid,
    pub agent_id: Uuid,
    pub settings: WebhookSettings,
    pub disabled_reason: Option<String>,
    pub secrets: WebhookSecrets,
    pub failing_since: Option<UnixMs>,
    pub circuit: Circuit,
    pub created_at: UnixMs,
    pub updated_at: UnixMs,
}

/// The `webhooks` table as stored; JSON columns still text, secrets still sealed.
#[derive(sqlx::FromRow)]
pub(super) struct WebhookRow {
    id: Uuid,
    org_id: Uuid,
    agent_id: Uuid,
    name: String,
    url: String,
    events: String,
    timeout_secs: i64,
    max_retries: i64,
    enabled: bool,
    disabled_reason: Option<String>,
    http_method: String,
    auth_config: String,
    custom_headers: String,
    rate_limit: Option<i64>,
    max_concurrency: Option<i64>,
    ordering: String,
    circuit_state: String,
    circuit_retry_at: Option<i64>,
    circuit_failures: i64,
    circuit_level: i64,
    signing_secret: String,
    previous_signing_secret: Option<String>,
    previous_secret_expires_at: Option<i64>,
    failing_since: Option<i64>,
    created_at: i64,
    updated_at: i64,
}

/// The columns of [`WebhookRow`], in a `SELECT` list.
pub(super) const WEBHOOK_COLUMNS: &str =
    "id, org_id, agent_id, name, url, events, timeout_secs, max_retries, enabled,
    disabled_reason, http_method, auth_config, custom_headers, rate_limit, max_concurrency,
    ordering, circuit_state, circuit_retry_at, circuit_failures, circuit_level, signing_secret,
    previous_signing_secret, previous_secret_expires_at, failing_since, created_at, updated_at";

fn corrupt(detail: impl ToString) -> StoreError {
    StoreError::Corrupt { table: "webhooks", detail: detail.to_string() }
}

impl WebhookRow {
    /// The row as a [`Webhook`], its sealed columns (secrets, credentials) opened by `sealer`.
    /// A value that no longer parses is reported as a corrupt row, never replaced by a default.
    pub(super) fn into_webhook(self, sealer: &Sealer) -> Result<Webhook, StoreError> {
        let open = |stored: &str| sealer.open(stored).map_err(corrupt);
        let authorization: Authorization =
            serde_json::from_str(&open(&self.auth_config)?).map_err(corrupt)?;
        let settings = WebhookSettings {
            name: Name::from_stored(self.name),
            url: WebhookUrl::from_stored(self.url),
            events: EventTypes::from_stored(&self.events).map_err(corrupt)?,
            timeout: Timeout::from_stored(self.timeout_secs).map_err(corrupt)?,
            max_retries: MaxRetries::from_stored(self.max_retries).map_err(corrupt)?,
            enabled: self.enabled,
            http_method: HttpMethod::parse(&self.http_method).map_err(corrupt)?,
            authorization,
            custom_headers: CustomHeaders::from_stored(&self.custom_headers).map_err(corrupt)?,
            rate_limit: self.rate_limit.map(RateLimit::from_stored).transpose().map_err(corrupt)?,
            max_concurrency: self
                .max_concurrency
                .map(MaxConcurrency::from_stored)
                .transpose()
                .map_err(corrupt)?,
            ordering: Ordering::parse(&self.ordering).map_err(corrupt)?,
        };
        let count = |value: i64| u32::try_from(value).map_err(corrupt);
        let circuit = Circuit {
            state: CircuitState::parse(&self.circuit_state).map_err(corrupt)?,
            retry_at: self.circuit_retry_at,
            failures: count(self.circuit_failures)?,
            level: count(self.circuit_level)?,
        };
        Ok(Webhook {
            id: self.id,
            org_id: self.org_id,
            agent_id: self.agent_id,
            settings,
            disabled_reason: self.disabled_reason,
            secrets: WebhookSecrets {
                current: open(&self.signing_secret)?,
                previous: self.previous_signing_secret.as_deref().map(open).transpose()?,
                previous_expires_at: self.previous_secret_expires_at,
            },
            failing_since: self.failing_since,
            circuit,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}
