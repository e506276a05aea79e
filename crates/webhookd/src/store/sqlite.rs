//! SQLite specifics: connection setup for the embedded default.

use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

use super::backend::{
    with_ids, AttemptRecord, BootstrapLock, LaneClaim, LaneClaimed, UpdateLogs, ELIGIBLE,
    INSERT_CHUNK,
};
use super::error::StoreError;
use super::models::{QueuedLog, QUEUED_COLUMNS};

pub(super) static MIGRATOR: Migrator = sqlx::migrate!("migrations/sqlite");

const READ_CONNECTIONS: u32 = 4;

/// A write pool of one connection and a read pool. WAL lets readers run beside the writer;
/// `secure_delete` zeroes what deletes and updates free (docs/SECURITY.md, "Erasure");
/// `synchronous = NORMAL` keeps every committed transaction across a process crash (only an OS
/// crash or power loss can lose the last commits), which is the at-least-once promise.
pub(super) async fn connect(url: &str) -> Result<(SqlitePool, SqlitePool), StoreError> {
    let options = SqliteConnectOptions::from_str(url)
        .map_err(StoreError::unreachable)?
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(10))
        .foreign_keys(true)
        .pragma("temp_store", "memory")
        // Erased and expired payloads must leave the file, not linger in free space (SPEC §8):
        // freed content is overwritten with zeros, in b-tree and freelist pages alike.
        .pragma("secure_delete", "on")
        .pragma("cache_size", "-8000");
    let in_memory = url.contains(":memory:") || url.contains("mode=memory");
    let mut write = SqlitePoolOptions::new();
    if !in_memory {
        // An in-memory database lives in its one connection: closing it would lose everything.
        write = write.after_release(|connection, _| Box::pin(fit_for_reuse(connection)));
    }
    let write = write
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

/// Whether a connection given back to the pool may serve the next transaction. After a failed
/// write (a full disk, say) SQLite may already have rolled the transaction back itself, so the
/// `ROLLBACK` sent when the transaction was dropped fails and sqlx still counts the connection
/// as inside it: the next `begin` would open a savepoint in a transaction that never commits,
/// and every write after it would be acknowledged and lost. Such a connection is closed instead;
/// the pool opens a fresh one.
async fn fit_for_reuse(connection: &mut sqlx::SqliteConnection) -> Result<bool, sqlx::Error> {
    use sqlx::Connection;
    if !connection.is_in_transaction() {
        return Ok(true);
    }
    // A dropped transaction's rollback is queued to the connection's worker thread: one round
    // trip lets it run (commands run in order) before the depth is read again.
    if connection.ping().await.is_err() {
        return Ok(false);
    }
    let fit = !connection.is_in_transaction();
    if !fit {
        tracing::warn!("closing a database connection left inside a failed transaction");
    }
    Ok(fit)
}

/// One process per file and a single writer connection: bootstrap transactions already run one
/// at a time.
impl BootstrapLock for sqlx::Transaction<'_, sqlx::Sqlite> {
    async fn lock_bootstrap(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// One statement per lane marks its claimed logs held (`claimed_at`, no due time: out of every
/// later claim's range, however many this process holds) and returns their ids; one query then
/// reads them with their payloads. No lease: one process owns the file, and at start it makes
/// whatever a dead process held due again.
pub(super) async fn claim_lanes(
    pool: &SqlitePool,
    claims: &[LaneClaim],
    now: i64,
) -> Result<(Vec<QueuedLog>, Vec<LaneClaimed>), StoreError> {
    let mark = format!(
        "UPDATE delivery_logs SET claimed_at = $1, next_attempt_at = NULL, updated_at = $1
         WHERE id IN (SELECT l.id FROM delivery_logs l
                      WHERE l.lane_id = $2 AND l.status = 'pending' AND l.next_attempt_at <= $1
                        AND {ELIGIBLE}
                      ORDER BY l.next_attempt_at LIMIT $3)
         RETURNING id"
    );
    let mut ids = Vec::new();
    let mut claimed = Vec::with_capacity(claims.len());
    for claim in claims {
        let want = i64::try_from(claim.want).unwrap_or(i64::MAX);
        let taken: Vec<(uuid::Uuid,)> =
            sqlx::query_as(&mark).bind(now).bind(claim.lane).bind(want).fetch_all(pool).await?;
        ids.extend(taken.into_iter().map(|(id,)| id));
        let next_due = next_due(pool, claim.lane, now).await?;
        claimed.push(LaneClaimed { lane: claim.lane, logs: Vec::new(), next_due });
    }
    Ok((queued_logs(pool, &ids).await?, claimed))
}

/// These logs ready to send, payloads included.
async fn queued_logs(pool: &SqlitePool, ids: &[uuid::Uuid]) -> Result<Vec<QueuedLog>, StoreError> {
    let mut logs = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(INSERT_CHUNK) {
        let sql = format!(
            "SELECT {QUEUED_COLUMNS} FROM delivery_logs l JOIN events e ON e.id = l.event_id
             WHERE l.id IN "
        );
        let found: Vec<QueuedLog> =
            with_ids(sql, chunk.iter().copied()).build_query_as().fetch_all(pool).await?;
        logs.extend(found);
    }
    Ok(logs)
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

/// One statement per chunk: the values as a common table expression joined by id. (sqlx runs
/// SQLite on a thread of its own, so each statement is a round trip between threads; one per log
/// made the recorder's batches cost a context switch per delivery.)
impl UpdateLogs for sqlx::Transaction<'_, sqlx::Sqlite> {
    async fn update_logs(
        &mut self,
        attempts: &[AttemptRecord],
        now: i64,
    ) -> Result<(), StoreError> {
        for chunk in attempts.chunks(INSERT_CHUNK) {
            let mut update = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "WITH v(id, status, retry, http_status, response_body, response_headers,
                    duration_ms, error, finished_at, next_attempt_at, attempt_id, sent_at,
                    send_type) AS (",
            );
            update.push_values(chunk, |mut row, a| {
                let attempt = &a.attempt;
                row.push_bind(a.log_id)
                    .push_bind(a.status)
                    .push_bind(i64::from(a.counts_as_retry))
                    .push_bind(attempt.response_code.map(i64::from))
                    .push_bind(attempt.response_body.as_deref())
                    .push_bind(attempt.response_headers.as_deref())
                    .push_bind(attempt.duration_ms)
                    .push_bind(attempt.error.as_deref())
                    .push_bind(attempt.sent_at + attempt.duration_ms)
                    .push_bind(a.next_attempt_at)
                    .push_bind(attempt.id)
                    .push_bind(attempt.sent_at)
                    .push_bind(attempt.send_type);
            });
            update.push(
                ") UPDATE delivery_logs SET attempt_count = attempt_count + 1,
                    retries = retries + v.retry, http_status = v.http_status,
                    duration_ms = v.duration_ms, claimed_at = NULL,
                    status = CASE WHEN delivery_logs.payload_state = 'present' THEN v.status
                                  ELSE delivery_logs.status END,
                    response_body = CASE WHEN delivery_logs.payload_state = 'present'
                                         THEN v.response_body END,
                    response_headers = CASE WHEN delivery_logs.payload_state = 'present'
                                            THEN v.response_headers END,
                    error = CASE WHEN delivery_logs.payload_state = 'present' THEN v.error
                                 ELSE delivery_logs.error END,
                    delivered_at = CASE WHEN v.status = 'success'
                                         AND delivery_logs.payload_state = 'present'
                                        THEN v.finished_at ELSE delivery_logs.delivered_at END,
                    next_attempt_at = CASE WHEN delivery_logs.payload_state = 'present'
                                           THEN v.next_attempt_at END,
                    updated_at = ",
            );
            update.push_bind(now);
            update.push(
                ", last_attempt_id = v.attempt_id, last_attempt_at = v.sent_at,
                    last_send_type = v.send_type
                 FROM v WHERE delivery_logs.id = v.id",
            );
            update.build().execute(&mut **self).await?;
        }
        Ok(())
    }
}
