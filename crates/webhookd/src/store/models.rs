//! What the store hands out: rows decoded into domain values.

use uuid::Uuid;

use super::StoreError;
use crate::domain::clock::UnixMs;
use crate::domain::{Authorization, CustomHeader, HttpMethod, WebhookSettings};

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
    pub created_at: UnixMs,
    pub updated_at: UnixMs,
}

/// The `webhooks` table as stored; JSON columns still text.
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
    signing_secret: String,
    previous_signing_secret: Option<String>,
    previous_secret_expires_at: Option<i64>,
    failing_since: Option<i64>,
    created_at: i64,
    updated_at: i64,
}

impl WebhookRow {
    /// The row with its sealed columns (secrets, credentials) opened by `open`.
    pub(super) fn opened(
        mut self,
        open: impl Fn(String) -> Result<String, StoreError>,
    ) -> Result<Self, StoreError> {
        self.signing_secret = open(self.signing_secret)?;
        self.previous_signing_secret = self.previous_signing_secret.map(&open).transpose()?;
        self.auth_config = open(self.auth_config)?;
        Ok(self)
    }
}

fn corrupt(detail: impl ToString) -> StoreError {
    StoreError::Corrupt { table: "webhooks", detail: detail.to_string() }
}

impl TryFrom<WebhookRow> for Webhook {
    type Error = StoreError;

    fn try_from(row: WebhookRow) -> Result<Self, StoreError> {
        let events: Vec<String> = serde_json::from_str(&row.events).map_err(corrupt)?;
        let authorization: Authorization =
            serde_json::from_str(&row.auth_config).map_err(corrupt)?;
        let custom_headers: Vec<CustomHeader> =
            serde_json::from_str(&row.custom_headers).map_err(corrupt)?;
        let http_method = HttpMethod::parse(&row.http_method).map_err(corrupt)?;
        Ok(Webhook {
            id: row.id,
            org_id: row.org_id,
            agent_id: row.agent_id,
            settings: WebhookSettings {
                name: row.name,
                url: row.url,
                events,
                timeout_secs: row.timeout_secs,
                max_retries: row.max_retries,
                enabled: row.enabled,
                http_method,
                authorization,
                custom_headers,
            },
            disabled_reason: row.disabled_reason,
            secrets: WebhookSecrets {
                current: row.signing_secret,
                previous: row.previous_signing_secret,
                previous_expires_at: row.previous_secret_expires_at,
            },
            failing_since: row.failing_since,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

/// The settings as the columns store them.
pub(super) struct SettingsColumns<'a> {
    pub settings: &'a WebhookSettings,
    pub events: String,
    pub authorization: String,
    pub custom_headers: String,
}

impl<'a> SettingsColumns<'a> {
    pub fn new(settings: &'a WebhookSettings) -> Self {
        // Serialising plain strings and enums cannot fail.
        let json = |value: Result<String, serde_json::Error>| value.unwrap_or_default();
        Self {
            settings,
            events: json(serde_json::to_string(&settings.events)),
            authorization: json(serde_json::to_string(&settings.authorization)),
            custom_headers: json(serde_json::to_string(&settings.custom_headers)),
        }
    }
}
