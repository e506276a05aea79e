//! The dispatcher's side of the store: claim due logs under a lease, load what sending needs, and
//! record attempt results in batches.

use std::collections::{HashMap, HashSet};

use sqlx::QueryBuilder;
use uuid::Uuid;

use super::models::WebhookRow;
use super::queue::{insert_logs, LogIds, NewLog};
use super::{
    on_reader, on_writer, postgres, sqlite, with_ids, Db, Store, StoreError, Webhook,
    WebhookSecrets,
};
use crate::domain::clock::{now_ms, UnixMs, DAY_MS};
use crate::domain::{LogStatus, SendType};

/// A claim lasts the webhook's timeout plus this margin, which covers recording the result. A
/// claim outlives its worker only if the worker dies; then the log becomes due again.
pub const LEASE_MARGIN_MS: i64 = 10_000;
/// A webhook failing without a single success for this long is disabled.
pub const FAILING_DISABLE_AFTER_MS: i64 = 5 * DAY_MS;

/// A due log, claimed for one attempt.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ClaimedLog {
    pub id: Uuid,
    pub org_id: Uuid,
    pub webhook_id: Option<Uuid>,
    pub event_id: Uuid,
    pub event_type: String,
    pub url: String,
    pub attempt_count: i64,
    pub retries: i64,
    pub first_send_type: String,
    pub created_at: UnixMs,
}

impl ClaimedLog {
    /// The `send_type` of the attempt about to be made.
    pub fn next_send_type(&self) -> SendType {
        if self.attempt_count == 0 {
            SendType::parse(&self.first_send_type).unwrap_or(SendType::Spawn)
        } else {
            SendType::Retry
        }
    }
}

/// One finished HTTP attempt and what it means for its log.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub log_id: Uuid,
    pub webhook_id: Option<Uuid>,
    pub send_type: SendType,
    pub sent_at: UnixMs,
    pub response_code: Option<i64>,
    pub duration_ms: i64,
    pub response_body: Option<String>,
    pub response_headers: Option<String>,
    pub error: Option<String>,
    /// The log's status after this attempt.
    pub status: LogStatus,
    /// When to try again (status `pending`), else `None`.
    pub next_attempt_at: Option<UnixMs>,
    /// Whether this attempt used one of the log's automatic retries.
    pub counts_as_retry: bool,
    /// Disable the webhook with this reason (410 Gone).
    pub disable_webhook: Option<String>,
}

/// A claimed log that is closed without an attempt (its webhook is gone or disabled).
#[derive(Debug, Clone)]
pub struct SkipRecord {
    pub log_id: Uuid,
    pub status: LogStatus,
    pub error: String,
}

impl Store {
    /// Claims up to `limit` due logs: each becomes invisible to other claimers until its lease
    /// (its webhook's timeout plus [`LEASE_MARGIN_MS`]) runs out.
    pub async fn claim_due(&self, limit: usize) -> Result<Vec<ClaimedLog>, StoreError> {
        let now = now_ms();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        match &self.db {
            Db::Sqlite { write, .. } => sqlite::claim_due(write, now, limit).await,
            Db::Postgres(pool) => postgres::claim_due(pool, now, limit).await,
        }
    }

    /// The earliest time any pending log becomes due (a lease expiry included).
    pub async fn next_due_at(&self) -> Result<Option<UnixMs>, StoreError> {
        on_reader!(self, |pool| {
            Ok(sqlx::query_scalar(
                "SELECT MIN(next_attempt_at) FROM delivery_logs WHERE status = 'pending'",
            )
            .fetch_one(pool)
            .await?)
        })
    }

    /// Event payloads by event id.
    pub async fn payloads(&self, event_ids: &[Uuid]) -> Result<HashMap<Uuid, Vec<u8>>, StoreError> {
        if event_ids.is_empty() {
            return Ok(HashMap::new());
        }
        on_reader!(self, |pool| {
            let mut query =
                with_ids("SELECT id, payload FROM events WHERE id IN ", event_ids.iter().copied());
            let rows: Vec<(Uuid, Vec<u8>)> = query.build_query_as().fetch_all(pool).await?;
            Ok(rows.into_iter().collect())
        })
    }

    /// Webhooks by id, whatever their organization (the dispatcher works for all of them).
    pub async fn webhooks_by_id(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, Webhook>, StoreError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let rows: Vec<WebhookRow> = on_reader!(self, |pool| {
            let sql =
                format!("SELECT {} FROM webhooks WHERE id IN ", super::models::WEBHOOK_COLUMNS);
            let mut query = with_ids(sql, ids.iter().copied());
            query.build_query_as().fetch_all(pool).await?
        });
        rows.into_iter().map(|row| row.into_webhook(&self.sealer).map(|w| (w.id, w))).collect()
    }

    /// Org-level secrets by organization id (they sign per-call `webhook_url` deliveries).
    pub async fn org_secrets_by_id(
        &self,
        ids: &[Uuid],
    ) -> Result<HashMap<Uuid, WebhookSecrets>, StoreError> {
        let mut secrets = HashMap::with_capacity(ids.len());
        for id in ids {
            if let Some(found) = self.org_secrets(*id).await? {
                secrets.insert(*id, found);
            }
        }
        Ok(secrets)
    }

    /// Writes a batch of attempt results and skips in one transaction: the attempts, each log's
    /// new state, and each webhook's failure streak (disabling webhooks that answered 410 or have
    /// failed for five days). Results for logs deleted meanwhile are dropped.
    pub async fn record(
        &self,
        attempts: &[AttemptRecord],
        skips: &[SkipRecord],
    ) -> Result<(), StoreError> {
        if attempts.is_empty() && skips.is_empty() {
            return Ok(());
        }
        let now = now_ms();
        let streaks = failure_streaks(attempts);
        on_writer!(self, |pool| {
            let mut tx = pool.begin().await?;
            // A webhook may have been deleted (with its logs) while its attempt was in flight.
            let mut existing = HashSet::with_capacity(attempts.len());
            for chunk in attempts.chunks(super::queue::INSERT_CHUNK) {
                let mut query = with_ids(
                    "SELECT id FROM delivery_logs WHERE id IN ",
                    chunk.iter().map(|a| a.log_id),
                );
                let rows: Vec<(Uuid,)> = query.build_query_as().fetch_all(&mut *tx).await?;
                existing.extend(rows.into_iter().map(|(id,)| id));
            }
            let attempts: Vec<&AttemptRecord> =
                attempts.iter().filter(|a| existing.contains(&a.log_id)).collect();
            for chunk in attempts.chunks(super::queue::INSERT_CHUNK) {
                let mut insert = QueryBuilder::new(
                    "INSERT INTO attempts (id, log_id, number, send_type, sent_at, response_code,
                        duration_ms, response_body, response_headers, error) ",
                );
                insert.push_values(chunk, |mut row, a| {
                    row.push_bind(Uuid::now_v7())
                        .push_bind(a.log_id)
                        .push("(SELECT attempt_count + 1 FROM delivery_logs WHERE id = ")
                        .push_bind_unseparated(a.log_id)
                        .push_unseparated(")")
                        .push_bind(a.send_type.as_str())
                        .push_bind(a.sent_at)
                        .push_bind(a.response_code)
                        .push_bind(a.duration_ms)
                        .push_bind(&a.response_body)
                        .push_bind(&a.response_headers)
                        .push_bind(&a.error);
                });
                insert.build().execute(&mut *tx).await?;
            }
            tx.update_logs(&attempts, now).await?;
            for skip in skips {
                sqlx::query(
                    "UPDATE delivery_logs SET status = $1, error = $2, next_attempt_at = NULL,
                        claimed_at = NULL, updated_at = $3
                     WHERE id = $4 AND status = 'pending'",
                )
                .bind(skip.status.as_str())
                .bind(&skip.error)
                .bind(now)
                .bind(skip.log_id)
                .execute(&mut *tx)
                .await?;
            }
            for (webhook_id, streak) in &streaks {
                match streak {
                    Streak::Succeeded => {
                        sqlx::query(
                            "UPDATE webhooks SET failing_since = NULL
                             WHERE id = $1 AND failing_since IS NOT NULL",
                        )
                        .bind(webhook_id)
                        .execute(&mut *tx)
                        .await?;
                    }
                    Streak::Failing { since } => {
                        sqlx::query(
                            "UPDATE webhooks SET failing_since = $1
                             WHERE id = $2 AND failing_since IS NULL",
                        )
                        .bind(since)
                        .bind(webhook_id)
                        .execute(&mut *tx)
                        .await?;
                        sqlx::query(
                            "UPDATE webhooks SET enabled = FALSE, updated_at = $1,
                                disabled_reason = 'Deliveries failed for 5 days without a success'
                             WHERE id = $2 AND enabled AND failing_since <= $3",
                        )
                        .bind(now)
                        .bind(webhook_id)
                        .bind(now - FAILING_DISABLE_AFTER_MS)
                        .execute(&mut *tx)
                        .await?;
                    }
                }
            }
            for a in attempts.iter().filter(|a| a.disable_webhook.is_some()) {
                sqlx::query(
                    "UPDATE webhooks SET enabled = FALSE, disabled_reason = $1, updated_at = $2
                     WHERE id = $3 AND enabled",
                )
                .bind(&a.disable_webhook)
                .bind(now)
                .bind(a.webhook_id)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok::<(), StoreError>(())
        })?;
        Ok(())
    }

    /// Makes every claimed log due now. Only for SQLite at startup: it has one process, so a claim
    /// found then was left by a process that died, and waiting for its lease would only delay.
    pub async fn release_orphaned_claims(&self) -> Result<u64, StoreError> {
        let Db::Sqlite { write, .. } = &self.db else {
            return Ok(0);
        };
        let released = sqlx::query(
            "UPDATE delivery_logs SET next_attempt_at = $1, claimed_at = NULL
             WHERE status = 'pending' AND claimed_at IS NOT NULL",
        )
        .bind(now_ms())
        .execute(write)
        .await?
        .rows_affected();
        Ok(released)
    }

    /// How many logs wait for an attempt (due, scheduled or claimed).
    pub async fn pending_count(&self) -> Result<i64, StoreError> {
        on_reader!(self, |pool| {
            Ok(sqlx::query_scalar("SELECT COUNT(*) FROM delivery_logs WHERE status = 'pending'")
                .fetch_one(pool)
                .await?)
        })
    }

    /// How many logs are claimed right now (attempts in flight, on any node).
    pub async fn claimed_count(&self) -> Result<i64, StoreError> {
        on_reader!(self, |pool| {
            Ok(sqlx::query_scalar(
                "SELECT COUNT(*) FROM delivery_logs WHERE status = 'pending' AND claimed_at IS NOT NULL",
            )
            .fetch_one(pool)
            .await?)
        })
    }

    /// Gives claimed logs back, due again at `due_at`: a worker shutting down with attempts it
    /// could not finish (due now), or one deferring a destination that has enough in flight.
    pub async fn release(&self, log_ids: &[Uuid], due_at: UnixMs) -> Result<(), StoreError> {
        if log_ids.is_empty() {
            return Ok(());
        }
        on_writer!(self, |pool| {
            // The due time is a literal integer, so the ids are the only bound values.
            let sql = format!(
                "UPDATE delivery_logs SET claimed_at = NULL, next_attempt_at = {due_at}
                 WHERE status = 'pending' AND id IN "
            );
            with_ids(sql, log_ids.iter().copied()).build().execute(pool).await?;
        });
        self.wake_dispatcher();
        Ok(())
    }
}

/// Writes each attempt's outcome onto its log; the fastest way differs per backend.
pub(super) trait UpdateLogs {
    async fn update_logs(
        &mut self,
        attempts: &[&AttemptRecord],
        now: UnixMs,
    ) -> Result<(), StoreError>;
}

enum Streak {
    Succeeded,
    Failing { since: UnixMs },
}

/// Per webhook, whether its latest attempt in the batch succeeded, or since when it has failed.
fn failure_streaks(attempts: &[AttemptRecord]) -> HashMap<Uuid, Streak> {
    let mut ordered: Vec<&AttemptRecord> =
        attempts.iter().filter(|a| a.webhook_id.is_some()).collect();
    ordered.sort_by_key(|a| a.sent_at);
    let mut streaks = HashMap::new();
    for a in ordered {
        let Some(webhook_id) = a.webhook_id else { continue };
        let succeeded = a.status == LogStatus::Success;
        match streaks.get(&webhook_id) {
            _ if succeeded => {
                streaks.insert(webhook_id, Streak::Succeeded);
            }
            Some(Streak::Failing { .. }) => {}
            _ => {
                streaks.insert(webhook_id, Streak::Failing { since: a.sent_at });
            }
        }
    }
    streaks
}

pub(super) const CLAIM_RETURNING: &str = "id, org_id, webhook_id, event_id, event_type, url,
    attempt_count, retries, first_send_type, created_at";

/// `next_attempt_at` of a claimed log: now plus its webhook's timeout plus the margin.
pub(super) fn lease_expression(log_alias: &str) -> String {
    format!(
        "$1 + COALESCE((SELECT w.timeout_secs FROM webhooks w WHERE w.id = {log_alias}.webhook_id), 30) * 1000 + {LEASE_MARGIN_MS}"
    )
}

impl Store {
    /// A `webhook.test` event and its log, created already claimed so that the caller sends it
    /// now and the dispatcher leaves it alone.
    pub async fn create_test_delivery(
        &self,
        webhook: &Webhook,
        payload: Vec<u8>,
    ) -> Result<ClaimedLog, StoreError> {
        let now = now_ms();
        let log = ClaimedLog {
            id: Uuid::now_v7(),
            org_id: webhook.org_id,
            webhook_id: Some(webhook.id),
            event_id: Uuid::now_v7(),
            event_type: crate::domain::catalog::TEST_EVENT.to_string(),
            url: webhook.settings.url.as_str().to_string(),
            attempt_count: 0,
            retries: 0,
            first_send_type: SendType::Test.as_str().to_string(),
            created_at: now,
        };
        let lease_until = now + webhook.settings.timeout.millis() + LEASE_MARGIN_MS;
        on_writer!(self, |pool| {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO events (id, org_id, agent_id, event_type, payload, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(log.event_id)
            .bind(webhook.org_id)
            .bind(webhook.agent_id)
            .bind(&log.event_type)
            .bind(payload)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            let ids = LogIds {
                org_id: webhook.org_id,
                agent_id: webhook.agent_id,
                webhook_id: Some(webhook.id),
                event_id: log.event_id,
            };
            let row = NewLog::pending(ids, &log.event_type, None, &log.url, SendType::Test, now);
            let row = NewLog {
                id: log.id,
                next_attempt_at: Some(lease_until),
                claimed_at: Some(now),
                ..row
            };
            insert_logs(&mut tx, std::slice::from_ref(&row)).await?;
            tx.commit().await?;
        });
        Ok(log)
    }
}
