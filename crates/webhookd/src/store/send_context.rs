//! What the dispatcher loads to send: webhooks (with secrets opened) and organizations' signing
//! secrets, a query per batch whatever its size, and the shared rate-limit timeline.

use std::collections::HashMap;

use uuid::Uuid;

use super::models::{WebhookRow, WEBHOOK_COLUMNS};
use super::orgs::secrets_from_columns;
use super::{on_reader, on_writer, with_ids, Store, StoreError, Webhook, WebhookSecrets};
use crate::domain::pacing::{grant, Grant};

impl Store {
    /// Webhooks by id, whatever their organization: the dispatcher works for all of them. An id
    /// with no webhook (deleted) is absent from the map.
    pub async fn webhooks_by_id(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, Webhook>, StoreError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let sql = format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id IN ");
        let rows: Vec<WebhookRow> = on_reader!(self, |pool| {
            with_ids(sql, ids.iter().copied()).build_query_as().fetch_all(pool).await?
        });
        rows.into_iter().map(|row| row.into_webhook(&self.sealer).map(|w| (w.id, w))).collect()
    }

    /// Organizations' signing secrets (they sign per-call `webhook_url` deliveries), by id.
    pub async fn org_secrets_by_id(
        &self,
        ids: &[Uuid],
    ) -> Result<HashMap<Uuid, WebhookSecrets>, StoreError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let sql = "SELECT id, signing_secret, previous_signing_secret, previous_secret_expires_at
                   FROM organizations WHERE id IN ";
        let rows: Vec<(Uuid, String, Option<String>, Option<i64>)> = on_reader!(self, |pool| {
            with_ids(sql, ids.iter().copied()).build_query_as().fetch_all(pool).await?
        });
        rows.into_iter()
            .map(|(id, current, previous, expires)| {
                let secrets =
                    self.open_secrets(secrets_from_columns((current, previous, expires)))?;
                Ok((id, secrets))
            })
            .collect()
    }

    /// Takes up to `want` send slots of a rate-limited webhook from its timeline, which every
    /// node shares, so the sum over nodes stays within the limit (`domain::pacing`).
    pub async fn take_rate_slots(
        &self,
        webhook_id: Uuid,
        want: usize,
        now_us: i64,
        step_us: i64,
    ) -> Result<Grant, StoreError> {
        // PostgreSQL nodes lock the row for the arithmetic; SQLite has one writer.
        let lock = self.row_lock();
        let select = format!("SELECT rate_tat FROM webhooks WHERE id = $1{lock}");
        on_writer!(self, |pool| {
            let mut tx = pool.begin().await?;
            let tat: Option<Option<i64>> =
                sqlx::query_scalar(&select).bind(webhook_id).fetch_optional(&mut *tx).await?;
            let granted = grant(tat.flatten(), now_us, want, step_us);
            sqlx::query("UPDATE webhooks SET rate_tat = $1 WHERE id = $2")
                .bind(granted.tat)
                .bind(webhook_id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(granted)
        })
    }
}
