//! Payloads that go before their history (SPEC §8): expiry after `--payload-retention`, a small
//! batch per transaction, and erasure of one call's on request.
//!
//! Either way the events keep their rows with an empty payload and a `payload_state` (`expired`,
//! `erased`, mirrored on each of their logs), the response bodies and headers of their logs and
//! attempts become NULL, and their pending logs end `failed` with the error `payload expired` or
//! `payload erased`: nothing is ever sent without its payload. Everything else (ids, statuses,
//! codes, times, durations, errors, URLs) stays until `--retention`.
//!
//! Statements lock the logs first, then the attempts, then the events: a recorder holding a log
//! is waited for, so the attempt it moved into `attempts` is cleared too, and a recorder that
//! comes later finds the log's `payload_state` and writes no body (`record.rs`).

use uuid::Uuid;

use super::announce::Announcement;
use super::backend::INSERT_CHUNK;
use super::{on_writer, Store, StoreError};
use crate::domain::clock::{now_ms, UnixMs};
use crate::domain::event::CallId;
use crate::domain::PayloadState;

/// Events per payload expiry transaction at first; the maintenance task sizes later batches by
/// how long the last one held the writer.
pub const PAYLOAD_BATCH: i64 = 200;

/// What one expiry batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Expired {
    /// Events whose payload went.
    pub events: u64,
    /// Of those, events that had pending logs, now ended `failed` (`payload expired`).
    pub ended: u64,
}

/// What erasing a call touched: every event of the call and every log of those events (the
/// same counts on a repeated erasure).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErasedCall {
    pub events: i64,
    pub logs: i64,
}

/// Removes the payloads of the events `$ids` inside transaction `$tx`, leaving them in `$state`;
/// `$only`, a condition, narrows which rows change (expiry leaves erased ones alone). Evaluates
/// to the ids of the events whose pending logs it ended. The state, its error and the time are
/// webhookd's own values, written into the statements; the ids are bound.
macro_rules! remove_payloads {
    ($tx:ident, $ids:expr, $state:expr, $only:expr, $now:expr) => {{
        let ids: &[Uuid] = $ids;
        let state: PayloadState = $state;
        let (state, error, only, now): (&str, &str, &str, i64) =
            (state.as_str(), state.error().unwrap_or("payload removed"), $only, $now);
        let mut ended: Vec<Uuid> = Vec::new();
        for chunk in ids.chunks($crate::store::backend::INSERT_CHUNK) {
            let ids = || chunk.iter().copied();
            let ended_now: Vec<(Uuid,)> = $crate::store::with_ids(
                format!(
                    "UPDATE delivery_logs SET status = 'failed', error = '{error}',
                        next_attempt_at = NULL, claimed_at = NULL, updated_at = {now}
                     WHERE status = 'pending' AND ({only}) AND event_id IN "
                ),
                ids(),
            )
            .push(" RETURNING event_id")
            .build_query_as()
            .fetch_all(&mut *$tx)
            .await?;
            ended.extend(ended_now.into_iter().map(|(id,)| id));
            $crate::store::with_ids(
                format!(
                    "UPDATE delivery_logs SET payload_state = '{state}', response_body = NULL,
                        response_headers = NULL
                     WHERE ({only}) AND event_id IN "
                ),
                ids(),
            )
            .build()
            .execute(&mut *$tx)
            .await?;
            $crate::store::with_ids(
                "UPDATE attempts SET response_body = NULL, response_headers = NULL
                 WHERE (response_body IS NOT NULL OR response_headers IS NOT NULL)
                   AND log_id IN (SELECT id FROM delivery_logs WHERE event_id IN ",
                ids(),
            )
            .push(")")
            .build()
            .execute(&mut *$tx)
            .await?;
            // `SUBSTR(payload, 1, 0)`: an empty value of the column's own type (BLOB, BYTEA).
            // SQLite answers NULL for a payload that is already empty (an erasure repeated),
            // and the column is NOT NULL: the empty payload then stays as it is.
            $crate::store::with_ids(
                format!(
                    "UPDATE events
                     SET payload = COALESCE(SUBSTR(payload, 1, 0), payload),
                         payload_state = '{state}'
                     WHERE ({only}) AND id IN "
                ),
                ids(),
            )
            .build()
            .execute(&mut *$tx)
            .await?;
        }
        ended.sort_unstable();
        ended.dedup();
        ended
    }};
}
pub(super) use remove_payloads;

impl Store {
    /// Removes the payloads of up to `limit` events created before `cutoff` that still
    /// hold one, oldest first (`events_payload_present`), in one short transaction.
    pub async fn expire_payloads_batch(
        &self,
        cutoff: UnixMs,
        limit: i64,
    ) -> Result<Expired, StoreError> {
        let now = now_ms();
        let (events, ended) = on_writer!(self, |pool| {
            let mut tx = pool.begin().await?;
            let ids: Vec<(Uuid,)> = sqlx::query_as(
                "SELECT id FROM events WHERE payload_state = 'present' AND created_at < $1
                 ORDER BY created_at LIMIT $2",
            )
            .bind(cutoff)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?;
            if ids.is_empty() {
                return Ok(Expired::default());
            }
            let ids: Vec<Uuid> = ids.into_iter().map(|(id,)| id).collect();
            let ended =
                remove_payloads!(tx, &ids, PayloadState::Expired, "payload_state = 'present'", now);
            tx.commit().await?;
            (ids.len(), ended)
        });
        let count = ended.len();
        self.announce_gone(&ended, PayloadState::Expired).await;
        Ok(Expired { events: events as u64, ended: count as u64 })
    }

    /// Erases the payloads of every event of `call_id` in `org_id`, of their logs and attempts,
    /// and ends their pending logs; `None` when the organization has no event of that call.
    /// Every node hears of it before this returns (this one at once, others by `NOTIFY`), so
    /// none sends a log of the call it held in memory.
    pub async fn erase_call(
        &self,
        org_id: Uuid,
        call_id: &CallId,
    ) -> Result<Option<ErasedCall>, StoreError> {
        let now = now_ms();
        let erased = on_writer!(self, |pool| {
            let mut tx = pool.begin().await?;
            let ids: Vec<(Uuid,)> =
                sqlx::query_as("SELECT id FROM events WHERE org_id = $1 AND call_id = $2")
                    .bind(org_id)
                    .bind(call_id.as_str())
                    .fetch_all(&mut *tx)
                    .await?;
            if ids.is_empty() {
                return Ok(None);
            }
            let ids: Vec<Uuid> = ids.into_iter().map(|(id,)| id).collect();
            remove_payloads!(tx, &ids, PayloadState::Erased, "TRUE", now);
            let mut logs = 0_i64;
            for chunk in ids.chunks(INSERT_CHUNK) {
                let count: i64 = super::with_ids(
                    "SELECT COUNT(*) FROM delivery_logs WHERE event_id IN ",
                    chunk.iter().copied(),
                )
                .build_query_scalar()
                .fetch_one(&mut *tx)
                .await?;
                logs += count;
            }
            tx.commit().await?;
            (ids, logs)
        });
        let (ids, logs) = erased;
        self.announce_gone(&ids, PayloadState::Erased).await;
        self.scrub_after_erasure().await;
        Ok(Some(ErasedCall { events: i64::try_from(ids.len()).unwrap_or(i64::MAX), logs }))
    }

    /// The agents of the events of `call_id` in `org_id`.
    pub async fn call_agents(
        &self,
        org_id: Uuid,
        call_id: &CallId,
    ) -> Result<Vec<Uuid>, StoreError> {
        let agents: Vec<(Uuid,)> = super::on_reader!(self, |pool| {
            sqlx::query_as(
                "SELECT DISTINCT agent_id FROM events WHERE org_id = $1 AND call_id = $2",
            )
            .bind(org_id)
            .bind(call_id.as_str())
            .fetch_all(pool)
            .await?
        });
        Ok(agents.into_iter().map(|(agent,)| agent).collect())
    }

    /// Tells every dispatcher (this one at once) that these events' payloads are gone.
    pub(super) async fn announce_gone(&self, events: &[Uuid], state: PayloadState) {
        if events.is_empty() {
            return;
        }
        self.payloads.forget(events);
        let items = events.iter().map(|&event| Announcement::PayloadGone { event, state });
        self.announce(items.collect()).await;
    }
}
