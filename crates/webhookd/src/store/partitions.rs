//! Day partitions of the history on PostgreSQL (migration 0009): events, delivery logs and
//! attempts are partitioned by their event's UUIDv7 id, one UTC day per partition. The
//! maintenance task makes days ahead of time and drops a day whole once all of it is older than
//! `--retention`: one `DROP TABLE` however many rows the day holds. SQLite has no partitions;
//! there retention deletes rows in batches (`retention.rs`).
//!
//! A pending log is never dropped: payload retention (never longer than `--retention`) has
//! already ended the logs of an expired day unless its pass is behind, so the logs still pending
//! in a day about to go end here the same way, `failed` with `payload expired`, announced to every
//! node before the day is dropped, and counted in the log line of the pass.

use sqlx::postgres::PgDatabaseError;
use uuid::Uuid;

use super::payload_removal::remove_payloads;
use super::{Db, Deleted, Store, StoreError};
use crate::domain::clock::{now_ms, UnixMs, DAY_MS};
use crate::domain::PayloadState;

/// Days made ahead of today, so a node that stops for a while still finds tomorrow's partition.
const DAYS_AHEAD: i64 = 3;
/// How long a partition change waits for the tables' locks before giving up until the next pass:
/// a `DROP` waits behind a long read, and everything else would queue behind the `DROP`.
const LOCK_TIMEOUT: &str = "SET LOCAL lock_timeout = '200ms'";
/// Above this many rows, a dropped table's count is PostgreSQL's estimate (counting a large day
/// would cost more than dropping it).
const EXACT_COUNT_UP_TO: i64 = 100_000;

/// What one pass of dropping expired days did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DroppedDays {
    pub days: u64,
    /// Rows that went with them (estimated for large tables).
    pub deleted: Deleted,
    /// Events whose logs were still pending, ended `failed` before their day went.
    pub ended: u64,
    /// A day was left for the next pass because its tables were busy.
    pub busy: bool,
}

/// One day's partitions: `events_<suffix>`, `delivery_logs_<suffix>`, `attempts_<suffix>`.
struct Day {
    suffix: String,
    /// The end of the day, unix milliseconds.
    until: UnixMs,
}

impl Store {
    /// Makes the day partitions from yesterday to [`DAYS_AHEAD`] days from `now` that do not
    /// exist yet (PostgreSQL; nothing to do on SQLite).
    pub async fn make_partitions(&self, now: UnixMs) -> Result<(), StoreError> {
        let Db::Postgres(pool) = &self.db else { return Ok(()) };
        let mut tx = pool.begin().await?;
        sqlx::query(LOCK_TIMEOUT).execute(&mut *tx).await?;
        sqlx::query("SELECT webhookd_make_partitions($1, $2)")
            .bind(now - DAY_MS)
            .bind(now + (DAYS_AHEAD + 1) * DAY_MS)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Drops every day whose end is at or before `cutoff`, oldest first, each in its own short
    /// transaction (PostgreSQL; nothing to do on SQLite). A day whose tables stay locked past
    /// [`LOCK_TIMEOUT`] is left for the next pass, which the maintenance task runs soon.
    pub async fn drop_expired_days(&self, cutoff: UnixMs) -> Result<DroppedDays, StoreError> {
        let Db::Postgres(pool) = &self.db else { return Ok(DroppedDays::default()) };
        let days: Vec<(String, i64)> = sqlx::query_as(
            "SELECT substr(c.relname, 8),
                (extract(epoch FROM to_date(substr(c.relname, 9), 'YYYYMMDD')) * 1000)::BIGINT
                    + 86400000
             FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = 'events'::regclass AND c.relname ~ '^events_p[0-9]{8}$'
             ORDER BY c.relname",
        )
        .fetch_all(pool)
        .await?;
        let mut done = DroppedDays::default();
        for (suffix, until) in days {
            let day = Day { suffix, until };
            if day.until > cutoff {
                break;
            }
            match self.drop_day(pool, &day).await {
                Ok((deleted, ended)) => {
                    done.days += 1;
                    done.ended += ended;
                    done.deleted.events += deleted.events;
                    done.deleted.delivery_logs += deleted.delivery_logs;
                    done.deleted.attempts += deleted.attempts;
                }
                Err(StoreError::Database(sqlx::Error::Database(error)))
                    if error.try_downcast_ref::<PgDatabaseError>().map(|e| e.code())
                        == Some("55P03") =>
                {
                    tracing::info!(day = %day.suffix, "a day's partitions are busy; trying again in a few seconds");
                    done.busy = true;
                    break;
                }
                Err(error) => return Err(error),
            }
        }
        Ok(done)
    }

    /// Ends the day's pending logs, counts its rows and drops its three tables, in one
    /// transaction; then tells every node which events lost their payload.
    async fn drop_day(&self, pool: &sqlx::PgPool, day: &Day) -> Result<(Deleted, u64), StoreError> {
        let (now, started) = (now_ms(), std::time::Instant::now());
        let suffix = &day.suffix;
        let mut tx = pool.begin().await?;
        sqlx::query(LOCK_TIMEOUT).execute(&mut *tx).await?;
        let pending: Vec<(Uuid,)> = sqlx::query_as(&format!(
            "SELECT DISTINCT event_id FROM delivery_logs_{suffix} WHERE status = 'pending'"
        ))
        .fetch_all(&mut *tx)
        .await?;
        let pending: Vec<Uuid> = pending.into_iter().map(|(id,)| id).collect();
        let ended = if pending.is_empty() {
            Vec::new()
        } else {
            remove_payloads!(tx, &pending, PayloadState::Expired, "payload_state = 'present'", now)
        };
        // A log's latest attempt lives in its row, the earlier ones in `attempts`.
        let (events, logs, attempts) = (
            format!("events_{suffix}"),
            format!("delivery_logs_{suffix}"),
            format!("attempts_{suffix}"),
        );
        let deleted = Deleted {
            events: rows_in(&mut tx, &events, "TRUE").await?,
            delivery_logs: rows_in(&mut tx, &logs, "TRUE").await?,
            attempts: rows_in(&mut tx, &attempts, "TRUE").await?
                + rows_in(&mut tx, &logs, "last_attempt_id IS NOT NULL").await?,
        };
        // Dropping a partition locks its parent exclusively. The parents are locked first, in
        // the order every other transaction takes them (an ingest: events, then logs; a
        // recording: logs, then attempts), so a drop never holds `attempts` while it waits for
        // a recording that holds `delivery_logs` and wants `attempts` (each would wait for the
        // other until the lock timeout, and the day would stay).
        sqlx::query(
            "LOCK TABLE ONLY events, ONLY delivery_logs, ONLY attempts IN ACCESS EXCLUSIVE MODE",
        )
        .execute(&mut *tx)
        .await?;
        sqlx::query(&format!(
            "DROP TABLE attempts_{suffix}, delivery_logs_{suffix}, events_{suffix}"
        ))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.announce_gone(&ended, PayloadState::Expired).await;
        tracing::info!(
            day = %suffix,
            events = deleted.events,
            delivery_logs = deleted.delivery_logs,
            attempts = deleted.attempts,
            pending_logs_ended = ended.len(),
            took_ms = started.elapsed().as_millis() as u64,
            "retention dropped a day of history"
        );
        Ok((deleted, ended.len() as u64))
    }
}

/// The rows of `table` that match `filter`: counted when PostgreSQL's estimate of the table says
/// it is small (or has none), else the estimate of the whole table.
async fn rows_in(
    tx: &mut sqlx::PgConnection,
    table: &str,
    filter: &str,
) -> Result<u64, StoreError> {
    let estimate: f32 =
        sqlx::query_scalar("SELECT reltuples FROM pg_class WHERE oid = $1::regclass")
            .bind(table)
            .fetch_one(&mut *tx)
            .await?;
    let rows = if estimate < 0.0 || (estimate as i64) < EXACT_COUNT_UP_TO {
        sqlx::query_scalar::<_, i64>(&format!("SELECT COUNT(*) FROM {table} WHERE {filter}"))
            .fetch_one(&mut *tx)
            .await?
    } else {
        estimate as i64
    };
    Ok(rows.unsigned_abs())
}
