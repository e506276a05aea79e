//! Bulk recovery of a time window: the failed and skipped logs of a webhook that have no later
//! success get a new log each (`send_type: recover`), page by page. A large recovery is a row in
//! `recoveries` whose cursor advances in the same transaction as each page, so it resumes where
//! it stopped after a restart and two workers never queue the same page.

use uuid::Uuid;

use super::log_inserts::{announcements, insert_logs, LogIds, NewLog};
use super::logs::{
    bind_all, estimate_total, estimated_count, id_bound_until, lowest_id_since, Arg,
    EXACT_TOTAL_MAX,
};
use super::{on_reader, on_snapshot, on_writer, Store, StoreError, Webhook};
use crate::domain::clock::{now_ms, UnixMs};
use crate::domain::{LogStatus, RecoveryStatus, SendType};

/// The conditions (on log `l`, bound `$1` webhook, `$2`/`$3` window, `$4`/`$5` the window as
/// log ids, which the `(webhook_id, status, id)` index seeks to) of the candidates below, but
/// their status.
macro_rules! candidate_conditions {
    () => {
        "l.webhook_id = $1 AND l.created_at >= $2 AND l.created_at <= $3
      AND l.id >= $4 AND l.id < $5
      AND NOT EXISTS (
          SELECT 1 FROM delivery_logs o
          WHERE o.event_id = l.event_id AND o.webhook_id = l.webhook_id AND o.id <> l.id
            AND (o.status IN ('success', 'pending')
                 OR (o.id > l.id AND o.created_at <= $3)))"
    };
}

/// The logs a recovery re-queues: failed or skipped, created in the window, with no success or
/// pending log for the same event and webhook, and no later failed/skipped one in the window
/// (one new log per event), whose payload is still stored.
const CANDIDATES: &str = concat!(
    "FROM delivery_logs l WHERE l.status IN ('failed', 'skipped') AND ",
    candidate_conditions!(),
    " AND EXISTS (SELECT 1 FROM events e WHERE e.id = l.event_id AND e.payload_state = 'present')"
);

/// The candidates of one status (`$6`) whatever their payload: the `(webhook_id, status, id)`
/// index gives them newest first, so counting stops after the newest few.
const CANDIDATES_OF_STATUS: &str =
    concat!("FROM delivery_logs l WHERE l.status = $6 AND ", candidate_conditions!());

/// The logs of one status (`$6`) in the window as ids, whatever else: index entries alone, no row
/// visited (`$2 <= $3` only keeps the statement's parameters those of the candidates).
const OF_STATUS: &str = "FROM delivery_logs l WHERE l.webhook_id = $1 AND l.status = $6
      AND l.id >= $4 AND l.id < $5 AND $2 <= $3";

/// Logs queued per transaction.
pub const RECOVER_PAGE: i64 = 500;

/// Candidates of each status counted exactly; beyond, the count is estimated from these newest
/// ones. Fewer than a listing's 10,000: each candidate costs a visit to its row and a probe for a
/// later log of its event, so this keeps a dry run over any history to a few milliseconds.
pub const RECOVER_EXACT_MAX: i64 = 500;

#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub since: UnixMs,
    pub until: UnixMs,
}

/// What a recovery of a window would queue (see [`Store::recover_count`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecoverCount {
    pub count: i64,
    pub without_payload: i64,
    /// More than [`RECOVER_EXACT_MAX`] logs of a status matched: the counts are estimates.
    pub estimated: bool,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Recovery {
    pub id: Uuid,
    pub org_id: Uuid,
    pub webhook_id: Uuid,
    pub since: UnixMs,
    pub until: UnixMs,
    pub status: RecoveryStatus,
    pub total: i64,
    pub queued: i64,
    pub cursor: Option<Uuid>,
    pub created_at: UnixMs,
    pub updated_at: UnixMs,
}

#[derive(sqlx::FromRow)]
struct Candidate {
    id: Uuid,
    agent_id: Uuid,
    event_id: Uuid,
    event_type: String,
    call_id: Option<String>,
}

const RECOVERY_COLUMNS: &str =
    "id, org_id, webhook_id, since, until, status, total, queued, cursor, created_at, updated_at";

impl Store {
    /// How many logs a recovery of `window` would queue now, and how many more it leaves alone
    /// because their payload expired or was erased. Exact up to [`RECOVER_EXACT_MAX`] logs of
    /// each status; beyond, the logs of that status in the window (counted from the index alone,
    /// itself estimated past [`EXACT_TOTAL_MAX`]) times the share of candidates among the newest
    /// ones, so a dry run over a history of millions costs what one over a thousand does.
    pub async fn recover_count(
        &self,
        webhook: &Webhook,
        window: Window,
    ) -> Result<RecoverCount, StoreError> {
        let newest_sql = format!(
            "SELECT l.id, l.payload_state {CANDIDATES_OF_STATUS} ORDER BY l.id DESC LIMIT {}",
            RECOVER_EXACT_MAX + 1
        );
        let oldest_sql = format!("SELECT l.id {CANDIDATES_OF_STATUS} ORDER BY l.id LIMIT 1");
        let capped = |condition: &str| {
            format!(
                "SELECT COUNT(*) FROM (SELECT 1 {OF_STATUS}{condition} LIMIT {}) AS capped",
                EXACT_TOTAL_MAX + 1
            )
        };
        let (all_sql, since_kth_sql) = (capped(""), capped(" AND l.id >= $7"));
        let mut total = RecoverCount::default();
        for status in [LogStatus::Failed, LogStatus::Skipped] {
            let mut args = vec![
                Arg::Uuid(webhook.id),
                Arg::Int(window.since),
                Arg::Int(window.until),
                Arg::Uuid(lowest_id_since(window.since)),
                Arg::Uuid(id_bound_until(window.until)),
                Arg::Text(status.as_str().into()),
            ];
            // The generic plan: a custom one probed every day partition for each candidate's
            // later logs (seconds at a million logs); the generic one prunes to the event's day.
            let (newest, share) = on_snapshot!(self, generic_plans, |tx| {
                let newest: Vec<(Uuid, String)> =
                    bind_all!(sqlx::query_as(&newest_sql), &args).fetch_all(&mut *tx).await?;
                let share = 'share: {
                    let kth = match newest.last() {
                        Some(&(kth, _)) if newest.len() as i64 > RECOVER_EXACT_MAX => kth,
                        _ => break 'share None,
                    };
                    let oldest: Uuid = bind_all!(sqlx::query_scalar(&oldest_sql), &args)
                        .fetch_one(&mut *tx)
                        .await?;
                    if oldest == kth {
                        // The oldest candidate is the last one read: exactly this many.
                        break 'share None;
                    }
                    let mut all: i64 =
                        bind_all!(sqlx::query_scalar(&all_sql), &args).fetch_one(&mut *tx).await?;
                    if all > EXACT_TOTAL_MAX {
                        all = estimated_count!(tx, OF_STATUS, &args);
                    }
                    args.push(Arg::Uuid(kth));
                    let since_kth: i64 = bind_all!(sqlx::query_scalar(&since_kth_sql), &args)
                        .fetch_one(&mut *tx)
                        .await?;
                    Some((all, since_kth))
                };
                (newest, share)
            });
            let counted = newest.len() as i64;
            let without = newest.iter().filter(|(_, state)| state != "present").count() as i64;
            let Some((all, since_kth)) = share else {
                total.count += counted - without;
                total.without_payload += without;
                continue;
            };
            // The newest logs' shares of candidates, and of those without a payload, stand for
            // the whole window's.
            let scale = |part: i64| {
                i64::try_from(i128::from(all) * i128::from(part) / i128::from(since_kth.max(1)))
                    .unwrap_or(i64::MAX)
            };
            let (estimate, without) = (scale(counted).max(counted), scale(without));
            total.count += estimate - without;
            total.without_payload += without;
            total.estimated = true;
        }
        Ok(total)
    }

    /// Queues the next page of the window after `after` (log id order). With `recovery`, the page
    /// only commits if that recovery's cursor is still `after`, and advances it. Returns how many
    /// were queued and the new cursor (`None` when the window is exhausted).
    pub async fn recover_page(
        &self,
        webhook: &Webhook,
        window: Window,
        after: Option<Uuid>,
        recovery: Option<Uuid>,
    ) -> Result<(i64, Option<Uuid>), StoreError> {
        let now = now_ms();
        let select = format!(
            "SELECT l.id, l.agent_id, l.event_id, l.event_type, l.call_id {CANDIDATES}
               AND l.id > $6 ORDER BY l.id LIMIT $7"
        );
        let lock = self.row_lock();
        let lock_webhook = format!("SELECT id FROM webhooks WHERE id = $1{lock}");
        let announce;
        let queued = on_writer!(self, |pool| {
            let mut tx = pool.begin().await?;
            // Recoveries of one webhook take turns: the next one's candidate query then sees the
            // logs this one queued (pending) and leaves their events alone.
            sqlx::query(&lock_webhook).bind(webhook.id).execute(&mut *tx).await?;
            let candidates: Vec<Candidate> = sqlx::query_as(&select)
                .bind(webhook.id)
                .bind(window.since)
                .bind(window.until)
                .bind(lowest_id_since(window.since))
                .bind(id_bound_until(window.until))
                .bind(after.unwrap_or(Uuid::nil()))
                .bind(RECOVER_PAGE)
                .fetch_all(&mut *tx)
                .await?;
            let cursor = candidates.last().map(|c| c.id);
            let logs: Vec<NewLog> = candidates
                .iter()
                .map(|c| {
                    let ids = LogIds {
                        org_id: webhook.org_id,
                        agent_id: c.agent_id,
                        webhook_id: Some(webhook.id),
                        event_id: c.event_id,
                    };
                    let url = webhook.settings.url.as_str();
                    let log = NewLog::pending(
                        ids,
                        &c.event_type,
                        c.call_id.as_deref(),
                        url,
                        SendType::Recover,
                        now,
                    );
                    NewLog { original_log_id: Some(c.id), ..log }
                })
                .collect();
            insert_logs(&mut tx, &logs).await?;
            announce = announcements(&logs);
            let count = i64::try_from(candidates.len()).unwrap_or(i64::MAX);
            if let Some(recovery) = recovery {
                let done = count < RECOVER_PAGE;
                let advanced = sqlx::query(
                    "UPDATE recoveries SET cursor = COALESCE($1, cursor), queued = queued + $2,
                        status = CASE WHEN $3 THEN 'completed' ELSE status END, updated_at = $4
                     WHERE id = $5 AND status = 'running' AND cursor IS NOT DISTINCT FROM $6",
                )
                .bind(cursor)
                .bind(count)
                .bind(done)
                .bind(now)
                .bind(recovery)
                .bind(after)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if advanced == 0 {
                    // Another worker queued this page first.
                    return Ok((0, None));
                }
            }
            tx.commit().await?;
            (count, if count < RECOVER_PAGE { None } else { cursor })
        });
        self.announce(announce).await;
        Ok(queued)
    }

    /// Records a recovery to run in the background.
    pub async fn create_recovery(
        &self,
        webhook: &Webhook,
        window: Window,
        total: i64,
    ) -> Result<Recovery, StoreError> {
        let now = now_ms();
        let recovery = Recovery {
            id: Uuid::now_v7(),
            org_id: webhook.org_id,
            webhook_id: webhook.id,
            since: window.since,
            until: window.until,
            status: RecoveryStatus::Running,
            total,
            queued: 0,
            cursor: None,
            created_at: now,
            updated_at: now,
        };
        on_writer!(self, |pool| {
            sqlx::query(
                "INSERT INTO recoveries (id, org_id, webhook_id, since, until, status, total, queued,
                    created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8, $8)",
            )
            .bind(recovery.id)
            .bind(recovery.org_id)
            .bind(recovery.webhook_id)
            .bind(recovery.since)
            .bind(recovery.until)
            .bind(recovery.status)
            .bind(total)
            .bind(now)
            .execute(pool)
            .await?;
        });
        self.recoveries.notify_one();
        Ok(recovery)
    }

    pub async fn recovery(
        &self,
        org_id: Uuid,
        webhook_id: Uuid,
        id: Uuid,
    ) -> Result<Option<Recovery>, StoreError> {
        let sql = format!(
            "SELECT {RECOVERY_COLUMNS} FROM recoveries WHERE id = $1 AND org_id = $2 AND webhook_id = $3"
        );
        on_reader!(self, |pool| {
            Ok(sqlx::query_as(&sql)
                .bind(id)
                .bind(org_id)
                .bind(webhook_id)
                .fetch_optional(pool)
                .await?)
        })
    }

    /// Recoveries still running, oldest first.
    pub async fn running_recoveries(&self) -> Result<Vec<Recovery>, StoreError> {
        let sql = format!(
            "SELECT {RECOVERY_COLUMNS} FROM recoveries WHERE status = 'running' ORDER BY id"
        );
        on_reader!(self, |pool| Ok(sqlx::query_as(&sql).fetch_all(pool).await?))
    }

    /// Ends a recovery whose webhook is gone or disabled.
    pub async fn complete_recovery(&self, id: Uuid) -> Result<(), StoreError> {
        on_writer!(self, |pool| {
            sqlx::query(
                "UPDATE recoveries SET status = 'completed', updated_at = $1 WHERE id = $2",
            )
            .bind(now_ms())
            .bind(id)
            .execute(pool)
            .await?;
        });
        Ok(())
    }
}
