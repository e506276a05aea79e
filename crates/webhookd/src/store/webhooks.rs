//! Webhooks: customer endpoints under an agent, with their delivery settings and secrets.

use uuid::Uuid;

use super::announce::Announcement;
use super::models::{WebhookRow, WEBHOOK_COLUMNS};
use super::outbox::{Fact, Outbox};
use super::{on_reader, on_writer, Store, StoreError, Webhook, WebhookSecrets};
use crate::domain::circuit::Circuit;
use crate::domain::clock::{now_ms, UnixMs};
use crate::domain::filter::Filter;
use crate::domain::operational::DisabledReason;
use crate::domain::WebhookSettings;

/// Enabling a webhook (it was disabled; `$6` or the toggle makes it enabled) closes its circuit:
/// a person turned it back on. Written against the row's values before the update.
const CLOSE_CIRCUIT_IF_ENABLED: &str =
    "circuit_state = CASE WHEN NOT enabled THEN 'closed' ELSE circuit_state END,
    circuit_failures = CASE WHEN NOT enabled THEN 0 ELSE circuit_failures END,
    circuit_level = CASE WHEN NOT enabled THEN 0 ELSE circuit_level END,
    circuit_retry_at = CASE WHEN NOT enabled THEN NULL ELSE circuit_retry_at END";

/// The settings as their columns hold them (JSON columns as text).
struct SettingsColumns<'a> {
    settings: &'a WebhookSettings,
    events: String,
    authorization: String,
    custom_headers: String,
    rate_limit: Option<i64>,
    max_concurrency: Option<i64>,
    filter: Option<String>,
    tls: Option<String>,
}

impl<'a> SettingsColumns<'a> {
    fn new(settings: &'a WebhookSettings) -> Self {
        Self {
            settings,
            events: settings.events.to_json(),
            // Serialising an enum of strings cannot fail.
            authorization: serde_json::to_string(&settings.authorization).unwrap_or_default(),
            custom_headers: settings.custom_headers.to_json(),
            rate_limit: settings.rate_limit.map(|limit| i64::from(limit.get())),
            max_concurrency: settings.max_concurrency.map(|cap| i64::from(cap.get())),
            filter: settings.filter.as_ref().map(Filter::to_json),
            tls: settings.tls.to_stored(),
        }
    }
}

impl Store {
    pub async fn create_webhook(
        &self,
        org_id: Uuid,
        agent_id: Uuid,
        settings: WebhookSettings,
        signing_secret: String,
    ) -> Result<Webhook, StoreError> {
        let now = now_ms();
        let webhook = Webhook {
            id: Uuid::now_v7(),
            org_id,
            agent_id,
            settings,
            disabled_reason: None,
            secrets: WebhookSecrets {
                current: signing_secret,
                previous: None,
                previous_expires_at: None,
            },
            failing_since: None,
            circuit: Circuit::default(),
            created_at: now,
            updated_at: now,
        };
        let columns = SettingsColumns::new(&webhook.settings);
        let (sealed_auth, sealed_secret) =
            (self.seal(&columns.authorization), self.seal(&webhook.secrets.current));
        let sealed_tls = columns.tls.as_deref().map(|tls| self.seal(tls));
        on_writer!(self, |pool| {
            sqlx::query(
                "INSERT INTO webhooks (id, org_id, agent_id, name, url, events, timeout_secs,
                    max_retries, enabled, http_method, auth_config, custom_headers, rate_limit,
                    max_concurrency, ordering, signing_secret, created_at, updated_at,
                    content_filter, tls_config)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
                    $17, $17, $18, $19)",
            )
            .bind(webhook.id)
            .bind(org_id)
            .bind(agent_id)
            .bind(columns.settings.name.as_str())
            .bind(columns.settings.url.as_str())
            .bind(&columns.events)
            .bind(i64::from(columns.settings.timeout.get()))
            .bind(i64::from(columns.settings.max_retries.get()))
            .bind(columns.settings.enabled)
            .bind(columns.settings.http_method.as_str())
            .bind(&sealed_auth)
            .bind(&columns.custom_headers)
            .bind(columns.rate_limit)
            .bind(columns.max_concurrency)
            .bind(columns.settings.ordering.as_str())
            .bind(&sealed_secret)
            .bind(now)
            .bind(&columns.filter)
            .bind(&sealed_tls)
            .execute(pool)
            .await?;
        });
        Ok(webhook)
    }

    /// An agent's webhooks, oldest first.
    pub async fn list_webhooks(
        &self,
        org_id: Uuid,
        agent_id: Uuid,
    ) -> Result<Vec<Webhook>, StoreError> {
        let query = format!(
            "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE agent_id = $1 AND org_id = $2 ORDER BY id"
        );
        let rows: Vec<WebhookRow> = on_reader!(self, |pool| {
            sqlx::query_as(&query).bind(agent_id).bind(org_id).fetch_all(pool).await?
        });
        rows.into_iter().map(|row| row.into_webhook(&self.sealer)).collect()
    }

    pub async fn webhook(
        &self,
        org_id: Uuid,
        agent_id: Uuid,
        webhook_id: Uuid,
    ) -> Result<Option<Webhook>, StoreError> {
        let query = format!(
            "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = $1 AND agent_id = $2 AND org_id = $3"
        );
        let row: Option<WebhookRow> = on_reader!(self, |pool| {
            sqlx::query_as(&query)
                .bind(webhook_id)
                .bind(agent_id)
                .bind(org_id)
                .fetch_optional(pool)
                .await?
        });
        row.map(|row| row.into_webhook(&self.sealer)).transpose()
    }

    /// Stores new settings. Re-enabling clears the disabled reason and the failure streak;
    /// turning an enabled webhook off queues `webhook.disabled` in the same transaction.
    pub async fn update_webhook(
        &self,
        webhook: &Webhook,
        settings: &WebhookSettings,
    ) -> Result<Option<Webhook>, StoreError> {
        let columns = SettingsColumns::new(settings);
        let sealed_auth = self.seal(&columns.authorization);
        let sealed_tls = columns.tls.as_deref().map(|tls| self.seal(tls));
        let now = now_ms();
        let query = format!(
            "UPDATE webhooks SET name = $1, url = $2, events = $3, timeout_secs = $4,
                max_retries = $5, enabled = $6, http_method = $7, auth_config = $8,
                custom_headers = $9, updated_at = $10, rate_limit = $11, max_concurrency = $12,
                ordering = $13, content_filter = $16, tls_config = $17,
                disabled_reason = CASE WHEN $6 THEN NULL ELSE disabled_reason END,
                failing_since = CASE WHEN $6 THEN NULL ELSE failing_since END,
                {CLOSE_CIRCUIT_IF_ENABLED}
             WHERE id = $14 AND org_id = $15
             RETURNING {WEBHOOK_COLUMNS}"
        );
        let lock = self.row_lock();
        let was_enabled =
            format!("SELECT enabled FROM webhooks WHERE id = $1 AND org_id = $2{lock}");
        let (updated, outbox) = on_writer!(self, |pool| {
            let mut tx = pool.begin().await?;
            let before: Option<bool> = sqlx::query_scalar(&was_enabled)
                .bind(webhook.id)
                .bind(webhook.org_id)
                .fetch_optional(&mut *tx)
                .await?;
            let row: Option<WebhookRow> = sqlx::query_as(&query)
                .bind(settings.name.as_str())
                .bind(settings.url.as_str())
                .bind(&columns.events)
                .bind(i64::from(settings.timeout.get()))
                .bind(i64::from(settings.max_retries.get()))
                .bind(settings.enabled)
                .bind(settings.http_method.as_str())
                .bind(&sealed_auth)
                .bind(&columns.custom_headers)
                .bind(now)
                .bind(columns.rate_limit)
                .bind(columns.max_concurrency)
                .bind(settings.ordering.as_str())
                .bind(webhook.id)
                .bind(webhook.org_id)
                .bind(&columns.filter)
                .bind(&sealed_tls)
                .fetch_optional(&mut *tx)
                .await?;
            let updated = row.map(|row| row.into_webhook(&self.sealer)).transpose()?;
            let turned_off = before == Some(true) && !settings.enabled;
            let outbox =
                tx.write_outbox(&disabled_by_api(updated.as_ref(), turned_off), now).await?;
            tx.commit().await?;
            (updated, outbox)
        });
        self.announce(vec![Announcement::Changed { webhook: webhook.id }]).await;
        self.announce(outbox).await;
        Ok(updated)
    }

    /// Flips `enabled` in one statement, so concurrent toggles cannot lose an update. Turning it
    /// off queues `webhook.disabled` in the same transaction.
    pub async fn toggle_webhook(&self, webhook: &Webhook) -> Result<Option<Webhook>, StoreError> {
        let now = now_ms();
        let query = format!(
            "UPDATE webhooks SET enabled = NOT enabled, disabled_reason = NULL,
                failing_since = NULL, updated_at = $1, {CLOSE_CIRCUIT_IF_ENABLED}
             WHERE id = $2 AND org_id = $3
             RETURNING {WEBHOOK_COLUMNS}"
        );
        let (toggled, outbox) = on_writer!(self, |pool| {
            let mut tx = pool.begin().await?;
            let row: Option<WebhookRow> = sqlx::query_as(&query)
                .bind(now)
                .bind(webhook.id)
                .bind(webhook.org_id)
                .fetch_optional(&mut *tx)
                .await?;
            let toggled = row.map(|row| row.into_webhook(&self.sealer)).transpose()?;
            // The flip made it disabled only if it was enabled just before.
            let turned_off = toggled.as_ref().is_some_and(|w| !w.settings.enabled);
            let outbox =
                tx.write_outbox(&disabled_by_api(toggled.as_ref(), turned_off), now).await?;
            tx.commit().await?;
            (toggled, outbox)
        });
        self.announce(vec![Announcement::Changed { webhook: webhook.id }]).await;
        self.announce(outbox).await;
        Ok(toggled)
    }

    /// Replaces the signing secret with `new_secret`; the old one keeps signing until
    /// `grace_until`.
    pub async fn replace_webhook_secret(
        &self,
        webhook: &Webhook,
        new_secret: &str,
        grace_until: UnixMs,
    ) -> Result<Option<Webhook>, StoreError> {
        let query = format!(
            "UPDATE webhooks SET previous_signing_secret = signing_secret,
                previous_secret_expires_at = $1, signing_secret = $2, updated_at = $3
             WHERE id = $4 AND org_id = $5
             RETURNING {WEBHOOK_COLUMNS}"
        );
        let row: Option<WebhookRow> = on_writer!(self, |pool| {
            sqlx::query_as(&query)
                .bind(grace_until)
                .bind(self.seal(new_secret))
                .bind(now_ms())
                .bind(webhook.id)
                .bind(webhook.org_id)
                .fetch_optional(pool)
                .await?
        });
        self.announce(vec![Announcement::Changed { webhook: webhook.id }]).await;
        row.map(|row| row.into_webhook(&self.sealer)).transpose()
    }

    /// Deletes the webhook with its delivery logs and their attempts. `false` when there was
    /// none.
    pub async fn delete_webhook(&self, webhook: &Webhook) -> Result<bool, StoreError> {
        on_writer!(self, |pool| {
            let mut tx = pool.begin().await?;
            // Attempts have no foreign key to their log (a day partition that one refers to
            // could not be dropped): they go first, by hand; the logs follow the webhook.
            sqlx::query(
                "DELETE FROM attempts WHERE log_id IN (SELECT id FROM delivery_logs
                    WHERE webhook_id = $1 AND org_id = $2)",
            )
            .bind(webhook.id)
            .bind(webhook.org_id)
            .execute(&mut *tx)
            .await?;
            let result = sqlx::query("DELETE FROM webhooks WHERE id = $1 AND org_id = $2")
                .bind(webhook.id)
                .bind(webhook.org_id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            self.announce(vec![Announcement::Changed { webhook: webhook.id }]).await;
            Ok(result.rows_affected() > 0)
        })
    }
}

/// The operational event of a webhook a person turned off, if this change did.
fn disabled_by_api(webhook: Option<&Webhook>, turned_off: bool) -> Vec<Fact> {
    webhook
        .filter(|_| turned_off)
        .map(|w| Fact::Disabled {
            org_id: w.org_id,
            webhook_id: w.id,
            reason: DisabledReason::DisabledByApi,
        })
        .into_iter()
        .collect()
}
