//! SQLite specifics: connection setup for the embedded default.

use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

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

/// SQLite has one writer, so a plain `UPDATE … RETURNING` over the due index is a safe claim.
pub(super) async fn claim_due(
    pool: &SqlitePool,
    now: i64,
    limit: i64,
) -> Result<Vec<super::delivery::ClaimedLog>, StoreError> {
    let query = format!(
        "UPDATE delivery_logs SET next_attempt_at = {lease}, claimed_at = $1, updated_at = $1
         WHERE id IN (SELECT id FROM delivery_logs
                      WHERE status = 'pending' AND next_attempt_at <= $1
                      ORDER BY next_attempt_at LIMIT $2)
         RETURNING {returning}",
        lease = super::delivery::lease_expression("delivery_logs"),
        returning = super::delivery::CLAIM_RETURNING,
    );
    Ok(sqlx::query_as(&query).bind(now).bind(limit).fetch_all(pool).await?)
}

/// SQLite runs in process: one prepared `UPDATE` per log costs no round trip.
impl super::delivery::UpdateLogs for sqlx::Transaction<'_, sqlx::Sqlite> {
    async fn update_logs(
        &mut self,
        attempts: &[&super::AttemptRecord],
        now: i64,
    ) -> Result<(), StoreError> {
        for a in attempts {
            sqlx::query(
                "UPDATE delivery_logs SET status = $1, attempt_count = attempt_count + 1,
                    retries = retries + $2, http_status = $3, response_body = $4,
                    response_headers = $5, duration_ms = $6, error = $7,
                    delivered_at = CASE WHEN $1 = 'success' THEN $8 ELSE delivered_at END,
                    next_attempt_at = $9, claimed_at = NULL, updated_at = $10
                 WHERE id = $11",
            )
            .bind(a.status.as_str())
            .bind(i64::from(a.counts_as_retry))
            .bind(a.response_code)
            .bind(&a.response_body)
            .bind(&a.response_headers)
            .bind(a.duration_ms)
            .bind(&a.error)
            .bind(a.sent_at + a.duration_ms)
            .bind(a.next_attempt_at)
            .bind(now)
            .bind(a.log_id)
            .execute(&mut **self)
            .await?;
        }
        Ok(())
    }
}
