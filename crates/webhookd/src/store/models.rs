//! What the store hands out: rows decoded into domain values.

use uuid::Uuid;

use super::error::StoreError;
use crate::domain::circuit::{Circuit, CircuitState};
use crate::domain::clock::UnixMs;
use crate::domain::filter::Filter;
use crate::domain::sealing::Sealer;
use crate::domain::webhook::{
    Authorization, CustomHeaders, EventTypes, HttpMethod, MaxConcurrency, MaxRetries, Name,
    Ordering, RateLimit, Timeout, TlsSettings, WebhookSettings, WebhookUrl,
};
use crate::domain::{PayloadState, SendType};

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
    content_filter: Option<String>,
    tls_config: Option<String>,
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
    ordering, content_filter, tls_config, circuit_state, circuit_retry_at, circuit_failures, circuit_level, signing_secret,
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
        let tls = self.tls_config.as_deref().map(open).transpose()?;
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
            filter: Filter::from_column(self.content_filter.as_deref()).map_err(corrupt)?,
            tls: TlsSettings::from_stored(tls.as_deref()).map_err(corrupt)?,
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

/// A pending log on its way to a send: what a claim or an ingestion hand-off yields, with the
/// event's payload.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct QueuedLog {
    pub id: Uuid,
    pub org_id: Uuid,
    pub agent_id: Uuid,
    pub webhook_id: Option<Uuid>,
    pub lane_id: Uuid,
    pub event_id: Uuid,
    pub event_type: String,
    pub call_id: Option<String>,
    pub url: String,
    pub attempt_count: i64,
    pub retries: i64,
    pub first_send_type: SendType,
    pub created_at: UnixMs,
    /// It waits for the earlier logs of its call (`ordering: call`): its end frees the next one.
    pub ordered: bool,
    /// While claimed, when the claim's lease ends (`None`: not claimed in the database; on
    /// SQLite a claim is held in memory only).
    #[sqlx(rename = "lease_until")]
    pub lease_until: Option<UnixMs>,
    /// The event's stored trace context (`telemetry::traces`).
    pub traceparent: Option<String>,
    /// Filled after the claim, shared by every log of the event (`payloads.rs`).
    #[sqlx(skip)]
    pub payload: Payload,
    /// Whether the payload is still stored; a log without one is never sent.
    pub payload_state: PayloadState,
}

#[cfg(test)]
impl QueuedLog {
    /// A pending `call.completed` log of `lane` in `org`, for the dispatcher's unit tests.
    pub fn sample(lane: Uuid, org: Uuid) -> Self {
        QueuedLog {
            id: Uuid::now_v7(),
            org_id: org,
            agent_id: Uuid::nil(),
            webhook_id: None,
            lane_id: lane,
            event_id: Uuid::now_v7(),
            event_type: "call.completed".into(),
            call_id: None,
            url: "https://example.com/".into(),
            attempt_count: 0,
            retries: 0,
            first_send_type: crate::domain::SendType::Spawn,
            created_at: 0,
            lease_until: None,
            traceparent: None,
            ordered: false,
            payload: Payload::default(),
            payload_state: crate::domain::PayloadState::Present,
        }
    }
}

/// An event's `data` bytes, shared without copying.
#[derive(Debug, Clone, Default)]
pub struct Payload(pub bytes::Bytes);

impl From<Vec<u8>> for Payload {
    fn from(bytes: Vec<u8>) -> Self {
        Self(bytes::Bytes::from(bytes))
    }
}

impl QueuedLog {
    /// The kind of this log's next automatic attempt: its first kind, then `retry`.
    pub fn next_send_type(&self) -> SendType {
        if self.attempt_count == 0 {
            self.first_send_type
        } else {
            SendType::Retry
        }
    }
}

/// The columns of a [`QueuedLog`] (log `l`, event `e`), with the lease as `next_attempt_at`;
/// not the payload, which `Store::fill_payloads` reads once per event.
pub(super) const QUEUED_COLUMNS: &str = "l.id, l.org_id, l.agent_id, l.webhook_id, l.lane_id,
    l.event_id, l.event_type, l.call_id, l.url, l.attempt_count, l.retries, l.first_send_type,
    l.created_at, l.order_key IS NOT NULL AS ordered,
    CASE WHEN l.claimed_at IS NULL THEN NULL ELSE l.next_attempt_at END AS lease_until,
    e.traceparent, e.payload_state";

/// One HTTP attempt of a log, as sent and as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub id: Uuid,
    /// 1 for the log's first attempt.
    pub number: i64,
    pub send_type: SendType,
    pub sent_at: UnixMs,
    /// `None` when no response arrived (network error, timeout).
    pub response_code: Option<u16>,
    pub duration_ms: i64,
    pub response_body: Option<String>,
    /// Response headers as a JSON object.
    pub response_headers: Option<String>,
    pub error: Option<String>,
}

impl<'r, R: sqlx::Row> sqlx::FromRow<'r, R> for Attempt
where
    &'r str: sqlx::ColumnIndex<R>,
    Uuid: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<i64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    SendType: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
        let code: Option<i64> = row.try_get("response_code")?;
        let response_code = code.map(u16::try_from).transpose().map_err(|e| {
            sqlx::Error::ColumnDecode { index: "response_code".into(), source: e.into() }
        })?;
        Ok(Self {
            id: row.try_get("id")?,
            number: row.try_get("number")?,
            send_type: row.try_get("send_type")?,
            sent_at: row.try_get("sent_at")?,
            response_code,
            duration_ms: row.try_get("duration_ms")?,
            response_body: row.try_get("response_body")?,
            response_headers: row.try_get("response_headers")?,
            error: row.try_get("error")?,
        })
    }
}
