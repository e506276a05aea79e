//! Taking pending logs for sending, lane by lane, and giving them back.
//!
//! A claim asks for up to `want` due logs of one lane, so a lane with a large backlog never stands
//! in front of another lane's fresh log. A claimed log is marked held (`claimed_at`), out of every
//! later claim's due range. How long it is held differs per backend:
//! - SQLite has one process per file: a claim is one statement per lane and holds its logs with no
//!   due time at all; at start the process makes whatever a dead one held due again.
//! - PostgreSQL nodes share the database: a claim takes its logs with `FOR UPDATE SKIP LOCKED`
//!   and marks them with a lease (`claimed_at`, `next_attempt_at` = lease end); a node that dies
//!   loses nothing, its logs fall due when the lease ends. A lane with `max_concurrency` counts
//!   the claims in flight on every node under its webhook's row lock, so the sum stays within it.
//!
//! Under `ordering: call`, a log is eligible only when no earlier pending log of its call waits
//! in the same lane (`backend::ELIGIBLE`): its predecessor's retries included, on every node, across
//! restarts.

use uuid::Uuid;

use super::backend::{LaneClaim, LaneClaimed, INSERT_CHUNK};
use super::models::{QueuedLog, QUEUED_COLUMNS};
use super::{on_reader, on_writer, postgres, sqlite, with_ids, Db, Store, StoreError};
use crate::domain::clock::{now_ms, UnixMs};
use crate::domain::webhook::Timeout;

/// Room for the recorder to write an attempt's result before its lease ends.
pub const LEASE_MARGIN_MS: i64 = 10_000;

/// How long a claim holds a log sent with `timeout`: the attempt may wait for one other attempt
/// of its lane before it starts, and its result must be written before the lease ends.
pub fn lease_ms(timeout: Timeout) -> i64 {
    2 * timeout.millis() + LEASE_MARGIN_MS
}

/// A lane with pending logs, found by [`Store::lanes_due`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct LaneDue {
    pub lane_id: Uuid,
    pub org_id: Uuid,
    pub due_at: UnixMs,
}

impl Store {
    /// Claims due logs for each lane of `claims`.
    pub async fn claim_lanes(&self, claims: &[LaneClaim]) -> Result<Vec<LaneClaimed>, StoreError> {
        let now = now_ms();
        let mut claimed = match &self.db {
            Db::Sqlite { write, .. } => {
                let (logs, mut claimed) = sqlite::claim_lanes(write, claims, now).await?;
                for log in logs {
                    if let Some(lane) = claimed.iter_mut().find(|c| c.lane == log.lane_id) {
                        lane.logs.push(log);
                    }
                }
                claimed
            }
            Db::Postgres(pool) => postgres::claim_lanes(pool, claims, now).await?,
        };
        self.fill_payloads(claimed.iter_mut().flat_map(|lane| lane.logs.iter_mut()).collect())
            .await?;
        Ok(claimed)
    }

    /// Every lane with pending logs and when its first one falls due: one index probe per lane,
    /// whatever the number of logs (a loose index scan).
    pub async fn lanes_due(&self) -> Result<Vec<LaneDue>, StoreError> {
        on_reader!(self, |pool| {
            Ok(sqlx::query_as(
                "WITH RECURSIVE lanes(lane_id) AS (
                    SELECT (SELECT lane_id FROM delivery_logs WHERE status = 'pending'
                            ORDER BY lane_id LIMIT 1)
                    UNION ALL
                    SELECT (SELECT l.lane_id FROM delivery_logs l
                            WHERE l.status = 'pending' AND l.lane_id > lanes.lane_id
                            ORDER BY l.lane_id LIMIT 1)
                    FROM lanes WHERE lanes.lane_id IS NOT NULL)
                 SELECT * FROM (
                    SELECT lane_id,
                        (SELECT l.org_id FROM delivery_logs l
                         WHERE l.lane_id = lanes.lane_id AND l.status = 'pending' LIMIT 1) AS org_id,
                        (SELECT MIN(l.next_attempt_at) FROM delivery_logs l
                         WHERE l.lane_id = lanes.lane_id AND l.status = 'pending') AS due_at
                    FROM lanes WHERE lane_id IS NOT NULL) due
                 -- A lane whose pending logs are all held by this process has no due time.
                 WHERE due_at IS NOT NULL",
            )
            .fetch_all(pool)
            .await?)
        })
    }

    /// Takes these logs of `org_id` for an explicit send (Bland resend), whatever their status,
    /// unless another send holds them. A claim older than any attempt can last was left by a
    /// process that died, and is taken over.
    pub async fn claim_for_send(
        &self,
        org_id: Uuid,
        log_ids: &[Uuid],
        lease_ms: i64,
    ) -> Result<Vec<QueuedLog>, StoreError> {
        if log_ids.is_empty() {
            return Ok(Vec::new());
        }
        let now = now_ms();
        let stale = now - self::lease_ms(Timeout::LARGEST);
        let mut taken = Vec::with_capacity(log_ids.len());
        on_writer!(self, |pool| {
            for id in log_ids {
                let claimed: Option<(Uuid,)> = sqlx::query_as(
                    "UPDATE delivery_logs SET claimed_at = $1, updated_at = $1,
                        next_attempt_at = CASE WHEN status = 'pending' THEN $2
                                               ELSE next_attempt_at END
                     WHERE id = $3 AND org_id = $4 AND (claimed_at IS NULL OR claimed_at < $5)
                     RETURNING id",
                )
                .bind(now)
                .bind(now + lease_ms)
                .bind(id)
                .bind(org_id)
                .bind(stale)
                .fetch_optional(pool)
                .await?;
                taken.extend(claimed.map(|(id,)| id));
            }
        });
        self.queued_logs(&taken).await
    }

    /// These logs as they stand, ready to send (payload included).
    pub(super) async fn queued_logs(&self, ids: &[Uuid]) -> Result<Vec<QueuedLog>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {QUEUED_COLUMNS} FROM delivery_logs l JOIN events e ON e.id = l.event_id
             WHERE l.id IN "
        );
        let mut logs: Vec<QueuedLog> = on_writer!(self, |pool| {
            with_ids(sql, ids.iter().copied()).build_query_as().fetch_all(pool).await?
        });
        self.fill_payloads(logs.iter_mut().collect()).await?;
        Ok(logs)
    }

    /// Gives claimed logs back, due now: logs a node took but will not send (it is shutting
    /// down, or their lane's circuit opened).
    pub async fn release(&self, log_ids: &[Uuid]) -> Result<(), StoreError> {
        if log_ids.is_empty() {
            return Ok(());
        }
        // The due time is a literal integer, so the ids are the only bound values.
        let sql = format!(
            "UPDATE delivery_logs SET claimed_at = NULL, next_attempt_at = {}
             WHERE status = 'pending' AND id IN ",
            now_ms()
        );
        on_writer!(self, |pool| {
            for chunk in log_ids.chunks(INSERT_CHUNK) {
                with_ids(sql.clone(), chunk.iter().copied()).build().execute(pool).await?;
            }
        });
        Ok(())
    }

    /// SQLite only, at start: a claim found then was left by a process that died (there is one
    /// process per file), so its logs are due again at once.
    pub async fn release_orphaned_claims(&self) -> Result<u64, StoreError> {
        let Db::Sqlite { write, .. } = &self.db else {
            return Ok(0);
        };
        let released = sqlx::query(
            "UPDATE delivery_logs SET claimed_at = NULL,
                next_attempt_at = CASE WHEN status = 'pending' THEN $1 ELSE next_attempt_at END
             WHERE claimed_at IS NOT NULL",
        )
        .bind(now_ms())
        .execute(write)
        .await?
        .rows_affected();
        Ok(released)
    }

    /// Lets exactly one node send the probe of an open circuit whose cooldown has passed: turns
    /// it half-open with a lease, so a probe that never reports does not hold it forever.
    pub async fn take_probe(
        &self,
        webhook_id: Uuid,
        lease_until: UnixMs,
    ) -> Result<bool, StoreError> {
        let now = now_ms();
        let taken = on_writer!(self, |pool| {
            sqlx::query(
                "UPDATE webhooks SET circuit_state = 'half_open', circuit_retry_at = $1
                 WHERE id = $2 AND circuit_state <> 'closed'
                   AND (circuit_retry_at IS NULL OR circuit_retry_at <= $3)",
            )
            .bind(lease_until)
            .bind(webhook_id)
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(taken == 1)
    }
}
