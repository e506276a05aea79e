//! SQLite specifics: connection setup for the embedded default.

use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

use super::claims::{LaneClaim, LaneClaimed, ELIGIBLE};
use super::models::{QueuedLog, QUEUED_COLUMNS};
use super::record::{AttemptRecord, UpdateLogs};
use super::StoreError;

pub(super) static MIGRATOR: Migrator = sqlx::migrate!("migrations/sqlite");

const READ_CONNECTIONS: u32 = 4;

/// A write pool of one connection and a read pool. WAL lets readers run beside the writer;
/// `synchronous = NORMAL` keeps every committed transaction across a process crash (only an OS
/// crash or power loss can lose the last commits), which is the at-least-once promise.
pub(super) async fn connect(url: &str) -> Result<(SqlitePool, SqlitePool), StoreError> {
    let options = SqliteConnectOptions::from_str(url)
        .map_err(StoreError::unreachable)?
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(10))
        .foreign_keys(true)
        .pragma("temp_store", "memory")
        .pragma("cache_size", "-8000");
    let in_memory = url.contains(":memory:") || url.contains("mode=memory");
    let write = SqlitePoolOptions::new()
        .max_connections(1)
        .min_connections(1)
        .acquire_timeout(Duration::from_secs(30))
        .idle_timeout(None)
        .max_lifetime(None)
        .connect_with(options.clone().create_if_missing(true).journal_mode(SqliteJournalMode::Wal))
        .await
        .map_err(StoreError::unreachable)?;
    if in_memory {
        // Each connection to `:memory:` is its own database: share the single one.
        return Ok((write.clone(), write));
    }
    let read = SqlitePoolOptions::new()
        .max_connections(READ_CONNECTIONS)
        .acquire_timeout(Duration::from_secs(30))
        .connect_with(options.read_only(true))
        .await
        .map_err(StoreError::unreachable)?;
    Ok((write, read))
}

/// One process per file and a single writer connection: bootstrap transactions already run one
/// at a time.
impl super::orgs::BootstrapLock for sqlx::Transaction<'_, sqlx::Sqlite> {
    async fn lock_bootstrap(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Claims are reads: one process owns the file, and its dispatcher holds what it reads (and
/// tells the query which logs it holds, since no claim is written). Logs created for this process
/// (ingestion hand-offs, explicit sends) carry `claimed_at` and are skipped.
pub(super) async fn claim_lanes(
    pool: &SqlitePool,
    claims: &[LaneClaim],
    now: i64,
) -> Result<Vec<LaneClaimed>, StoreError> {
    let select = format!(
        "SELECT {QUEUED_COLUMNS} FROM delivery_logs l JOIN events e ON e.id = l.event_id
         WHERE l.lane_id = $1 AND l.status = 'pending' AND l.next_attempt_at <= $2
           AND l.claimed_at IS NULL AND {ELIGIBLE}
         ORDER BY l.next_attempt_at LIMIT $3"
    );
    let mut claimed = Vec::with_capacity(claims.len());
    for claim in claims {
        let limit = i64::try_from(claim.want + claim.held.len()).unwrap_or(i64::MAX);
        let logs: Vec<QueuedLog> =
            sqlx::query_as(&select).bind(claim.lane).bind(now).bind(limit).fetch_all(pool).await?;
        let mut logs: Vec<QueuedLog> =
            logs.into_iter().filter(|log| !claim.held.contains(&log.id)).collect();
        logs.truncate(claim.want);
        let next_due = next_due(pool, claim.lane, now).await?;
        claimed.push(LaneClaimed { lane: claim.lane, logs, next_due });
    }
    Ok(claimed)
}

async fn next_due(
    pool: &SqlitePool,
    lane: uuid::Uuid,
    now: i64,
) -> Result<Option<i64>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT MIN(next_attempt_at) FROM delivery_logs
         WHERE lane_id = $1 AND status = 'pending' AND next_attempt_at > $2",
    )
    .bind(lane)
    .bind(now)
    .fetch_one(pool)
    .await?)
}

/// SQLite runs in process: one prepared `UPDATE` per log costs no round trip.
impl UpdateLogs for sqlx::Transaction<'_, sqlx::Sqlite> {
    async fn update_logs(
        &mut self,
        attempts: &[AttemptRecord],
        now: i64,
    ) -> Result<(), StoreError> {
        for a in attempts {
            let attempt = &a.attempt;
            sqlx::query(
                "UPDATE delivery_logs SET status = $1, attempt_count = attempt_count + 1,
                    retries = retries + $2, http_status = $3, response_body = $4,
                    response_headers = $5, duration_ms = $6, error = $7,
                    delivered_at = CASE WHEN $1 = 'success' THEN $8 ELSE delivered_at END,
                    next_attempt_at = $9, claimed_at = NULL, updated_at = $10,
                    last_attempt_id = $11, last_attempt_at = $12, last_send_type = $13
                 WHERE id = $14",
            )
            .bind(a.status)
            .bind(i64::from(a.counts_as_retry))
            .bind(attempt.response_code.map(i64::from))
            .bind(&attempt.response_body)
            .bind(&attempt.response_headers)
            .bind(attempt.duration_ms)
            .bind(&attempt.error)
            .bind(attempt.sent_at + attempt.duration_ms)
            .bind(a.next_attempt_at)
            .bind(now)
            .bind(attempt.id)
            .bind(attempt.sent_at)
            .bind(attempt.send_type)
            .bind(a.log_id)
            .execute(&mut **self)
            .await?;
        }
        Ok(())
    }
}
