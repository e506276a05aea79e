//! PostgreSQL specifics: connection setup for scale-out.

use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};

use super::StoreError;

pub(super) static MIGRATOR: Migrator = sqlx::migrate!("migrations/postgres");

const MAX_CONNECTIONS: u32 = 16;
/// How long the first connection may take before the database counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens one direct connection first, then the pool. A pool that cannot connect retries until
/// its acquire timeout and then says only "pool timed out"; the direct attempt fails at once with
/// the real cause (connection refused, unknown database, authentication failed).
pub(super) async fn connect(url: &str) -> Result<PgPool, StoreError> {
    let options = PgConnectOptions::from_str(url).map_err(StoreError::unreachable)?;
    let probe = tokio::time::timeout(CONNECT_TIMEOUT, options.connect())
        .await
        .map_err(|_| {
            StoreError::Unreachable(format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()))
        })?
        .map_err(StoreError::unreachable)?;
    let _: Result<(), _> = PgConnection::close(probe).await;
    let pool = PgPoolOptions::new()
        .max_connections(MAX_CONNECTIONS)
        .acquire_timeout(CONNECT_TIMEOUT)
        .connect_with(options)
        .await
        .map_err(StoreError::unreachable)?;
    Ok(pool)
}

/// Nodes starting at once on an empty database create one first organization between them: the
/// transaction that creates it holds this lock, released at its end.
impl super::orgs::BootstrapLock for sqlx::Transaction<'_, sqlx::Postgres> {
    async fn lock_bootstrap(&mut self) -> Result<(), StoreError> {
        sqlx::query("SELECT pg_advisory_xact_lock(7301)").execute(&mut **self).await?;
        Ok(())
    }
}

/// The channel on which nodes tell each other that new work is due.
pub(super) const WORK_CHANNEL: &str = "webhookd_work";

/// Several nodes claim at once: `FOR UPDATE SKIP LOCKED` hands each due log to exactly one.
pub(super) async fn claim_due(
    pool: &PgPool,
    now: i64,
    limit: i64,
) -> Result<Vec<super::delivery::ClaimedLog>, StoreError> {
    let query = format!(
        "WITH due AS (
            SELECT id FROM delivery_logs
            WHERE status = 'pending' AND next_attempt_at <= $1
            ORDER BY next_attempt_at LIMIT $2
            FOR UPDATE SKIP LOCKED)
         UPDATE delivery_logs d SET next_attempt_at = {lease}, claimed_at = $1, updated_at = $1
         FROM due WHERE d.id = due.id
         RETURNING {returning}",
        lease = super::delivery::lease_expression("d"),
        returning = super::delivery::CLAIM_RETURNING
            .split(',')
            .map(|column| format!("d.{}", column.trim()))
            .collect::<Vec<_>>()
            .join(", "),
    );
    Ok(sqlx::query_as(&query).bind(now).bind(limit).fetch_all(pool).await?)
}

/// Forwards `NOTIFY`s from other nodes to this node's dispatcher until `stop`. Reconnects on
/// errors; a wake-up missed meanwhile is caught by the dispatcher's timed re-check.
pub(super) async fn listen_for_work(
    pool: PgPool,
    wake: std::sync::Arc<tokio::sync::Notify>,
    stop: tokio_util::sync::CancellationToken,
) {
    loop {
        let mut listener = match sqlx::postgres::PgListener::connect_with(&pool).await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(%error, "cannot LISTEN for work; retrying");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        if let Err(error) = listener.listen(WORK_CHANNEL).await {
            tracing::warn!(%error, "cannot LISTEN for work; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                received = listener.recv() => match received {
                    Ok(_) => wake.notify_one(),
                    Err(error) => {
                        tracing::warn!(%error, "LISTEN connection lost; reconnecting");
                        wake.notify_one();
                        break;
                    }
                },
            }
        }
    }
}

/// One statement for the whole batch: the values travel as arrays and are joined by id, so a
/// batch costs one round trip however many logs it holds.
impl super::delivery::UpdateLogs for sqlx::Transaction<'_, sqlx::Postgres> {
    async fn update_logs(
        &mut self,
        attempts: &[&super::AttemptRecord],
        now: i64,
    ) -> Result<(), StoreError> {
        if attempts.is_empty() {
            return Ok(());
        }
        let column = |f: &dyn Fn(&super::AttemptRecord) -> Option<i64>| -> Vec<Option<i64>> {
            attempts.iter().map(|a| f(a)).collect()
        };
        let text = |f: &dyn Fn(&super::AttemptRecord) -> Option<String>| -> Vec<Option<String>> {
            attempts.iter().map(|a| f(a)).collect()
        };
        sqlx::query(
            "UPDATE delivery_logs AS l SET status = v.status, attempt_count = l.attempt_count + 1,
                retries = l.retries + v.retry, http_status = v.http_status,
                response_body = v.response_body, response_headers = v.response_headers,
                duration_ms = v.duration_ms, error = v.error,
                delivered_at = CASE WHEN v.status = 'success' THEN v.finished_at ELSE l.delivered_at END,
                next_attempt_at = v.next_attempt_at, claimed_at = NULL, updated_at = $11
             FROM UNNEST($1::uuid[], $2::text[], $3::int8[], $4::int8[], $5::text[], $6::text[],
                         $7::int8[], $8::text[], $9::int8[], $10::int8[])
                  AS v(id, status, retry, http_status, response_body, response_headers,
                       duration_ms, error, finished_at, next_attempt_at)
             WHERE l.id = v.id",
        )
        .bind(attempts.iter().map(|a| a.log_id).collect::<Vec<_>>())
        .bind(attempts.iter().map(|a| a.status.as_str()).collect::<Vec<_>>())
        .bind(column(&|a| Some(i64::from(a.counts_as_retry))))
        .bind(column(&|a| a.response_code))
        .bind(text(&|a| a.response_body.clone()))
        .bind(text(&|a| a.response_headers.clone()))
        .bind(column(&|a| Some(a.duration_ms)))
        .bind(text(&|a| a.error.clone()))
        .bind(column(&|a| Some(a.sent_at + a.duration_ms)))
        .bind(column(&|a| a.next_attempt_at))
        .bind(now)
        .execute(&mut **self)
        .await?;
        Ok(())
    }
}
