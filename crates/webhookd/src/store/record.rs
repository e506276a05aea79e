//! Recording attempt results, a batch per transaction: each log's new state with its latest
//! attempt in the log row (the previous latest, if any, moves to `attempts`: a first attempt that
//! succeeds costs one row write), logs closed without an attempt, and what the attempts say about
//! each webhook's endpoint (`domain::health`: failure streak, 410, circuit breaker). What that
//! changed is also written to the operational outbox in the same transaction (`operational.rs`).

use std::collections::HashMap;

use uuid::Uuid;

use super::backend::{AttemptRecord, UpdateLogs, INSERT_CHUNK};
use super::outbox::{facts_of_batch, Outbox};
use super::{on_writer, with_ids, Store, StoreError};
use crate::domain::circuit::{Breaker, Circuit, CircuitState, Transition};
use crate::domain::clock::now_ms;
use crate::domain::health::{Health, Observation};
use crate::domain::LogStatus;

/// A claimed log closed without an attempt (its webhook is gone or disabled).
#[derive(Debug, Clone)]
pub struct SkipRecord {
    pub log_id: Uuid,
    pub status: LogStatus,
    pub error: String,
}

/// What a batch changed about webhooks.
#[derive(Debug, Clone, Default)]
pub struct Recorded {
    /// Circuits that changed state, with their new state.
    pub circuits: Vec<(Uuid, Circuit, Transition)>,
    /// Webhooks disabled by this batch, with the reason.
    pub disabled: Vec<(Uuid, &'static str)>,
}

#[derive(sqlx::FromRow)]
struct HealthRow {
    id: Uuid,
    enabled: bool,
    failing_since: Option<i64>,
    circuit_state: String,
    circuit_retry_at: Option<i64>,
    circuit_failures: i64,
    circuit_level: i64,
}

impl HealthRow {
    fn health(&self) -> Result<Health, StoreError> {
        let corrupt = |detail: String| StoreError::Corrupt { table: "webhooks", detail };
        let count = |v: i64| u32::try_from(v).map_err(|e| corrupt(e.to_string()));
        Ok(Health {
            enabled: self.enabled,
            failing_since: self.failing_since,
            circuit: Circuit {
                state: CircuitState::parse(&self.circuit_state).map_err(corrupt)?,
                retry_at: self.circuit_retry_at,
                failures: count(self.circuit_failures)?,
                level: count(self.circuit_level)?,
            },
        })
    }
}

impl Store {
    /// Writes a batch of results and skips in one transaction. Results for logs deleted
    /// meanwhile (their webhook was deleted) change nothing. A log whose payload went meanwhile
    /// (`payload_state` of its row) counts the attempt but keeps its status, error and due time
    /// and stores no response body or headers: an erasure is never undone by a late result.
    pub async fn record(
        &self,
        attempts: &[AttemptRecord],
        skips: &[SkipRecord],
        breaker: &Breaker,
    ) -> Result<Recorded, StoreError> {
        if attempts.is_empty() && skips.is_empty() {
            return Ok(Recorded::default());
        }
        let now = now_ms();
        let mut observed: HashMap<Uuid, Vec<Observation>> = HashMap::new();
        for a in attempts {
            if let Some(webhook_id) = a.webhook_id {
                observed.entry(webhook_id).or_default().push(Observation {
                    sent_at: a.attempt.sent_at,
                    status: a.attempt.response_code,
                    probe: a.probe,
                });
            }
        }
        let lock = self.row_lock();
        let (recorded, outbox) = on_writer!(self, |pool| {
            let mut tx = pool.begin().await?;
            // The earlier latest attempt of logs that had one moves to `attempts`.
            let retried: Vec<Uuid> =
                attempts.iter().filter(|a| a.attempt.number > 1).map(|a| a.log_id).collect();
            for chunk in retried.chunks(INSERT_CHUNK) {
                // Locked (PostgreSQL) so that an erasure in progress is waited for and its
                // cleared row is what moves; an erasure that comes later clears this row too.
                with_ids(
                    "INSERT INTO attempts (id, log_id, event_id, number, send_type, sent_at,
                        response_code, duration_ms, response_body, response_headers, error)
                     SELECT last_attempt_id, id, event_id, attempt_count, last_send_type,
                        last_attempt_at, http_status, duration_ms,
                        CASE WHEN payload_state = 'present' THEN response_body END,
                        CASE WHEN payload_state = 'present' THEN response_headers END, error
                     FROM delivery_logs WHERE attempt_count > 0 AND id IN ",
                    chunk.iter().copied(),
                )
                .push(lock)
                .build()
                .execute(&mut *tx)
                .await?;
            }
            tx.update_logs(attempts, now).await?;
            for skip in skips {
                sqlx::query(
                    "UPDATE delivery_logs SET status = $1, error = $2, next_attempt_at = NULL,
                        claimed_at = NULL, updated_at = $3
                     WHERE id = $4 AND status = 'pending'",
                )
                .bind(skip.status)
                .bind(&skip.error)
                .bind(now)
                .bind(skip.log_id)
                .execute(&mut *tx)
                .await?;
            }
            let mut recorded = Recorded::default();
            if !observed.is_empty() {
                let sql = format!(
                    "SELECT id, enabled, failing_since, circuit_state, circuit_retry_at,
                        circuit_failures, circuit_level FROM webhooks WHERE id IN {{ids}}{lock}"
                );
                let (head, tail) = sql.split_once("{ids}").unwrap_or((&sql, ""));
                let mut ids: Vec<Uuid> = observed.keys().copied().collect();
                ids.sort_unstable(); // one lock order on every node: no deadlocks
                let mut query = with_ids(head, ids);
                query.push(tail);
                let rows: Vec<HealthRow> = query.build_query_as().fetch_all(&mut *tx).await?;
                for row in rows {
                    let before = row.health()?;
                    let change = before.observe(&observed[&row.id], breaker, now);
                    if change.health == before {
                        continue;
                    }
                    let circuit = change.health.circuit;
                    sqlx::query(
                        "UPDATE webhooks SET failing_since = $1, circuit_state = $2,
                            circuit_retry_at = $3, circuit_failures = $4, circuit_level = $5,
                            enabled = $6,
                            disabled_reason = CASE WHEN $7 IS NULL THEN disabled_reason ELSE $7 END,
                            updated_at = CASE WHEN $7 IS NULL THEN updated_at ELSE $8 END
                         WHERE id = $9",
                    )
                    .bind(change.health.failing_since)
                    .bind(circuit.state.as_str())
                    .bind(circuit.retry_at)
                    .bind(i64::from(circuit.failures))
                    .bind(i64::from(circuit.level))
                    .bind(change.health.enabled)
                    .bind(change.disabled)
                    .bind(now)
                    .bind(row.id)
                    .execute(&mut *tx)
                    .await?;
                    if let Some(transition) = change.transition {
                        recorded.circuits.push((row.id, circuit, transition));
                    }
                    if let Some(reason) = change.disabled {
                        recorded.disabled.push((row.id, reason));
                    }
                }
            }
            let outbox = tx.write_outbox(&facts_of_batch(attempts, &recorded), now).await?;
            tx.commit().await?;
            (recorded, outbox)
        });
        self.announce(outbox).await;
        Ok(recorded)
    }
}
