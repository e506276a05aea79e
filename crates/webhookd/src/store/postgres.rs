//! PostgreSQL specifics: connection setup for scale-out.

use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};

use uuid::Uuid;

use super::backend::{AttemptRecord, BootstrapLock, LaneClaim, LaneClaimed, UpdateLogs, ELIGIBLE};
use super::error::StoreError;
use super::models::{QueuedLog, QUEUED_COLUMNS};

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
impl BootstrapLock for sqlx::Transaction<'_, sqlx::Postgres> {
    async fn lock_bootstrap(&mut self) -> Result<(), StoreError> {
        sqlx::query("SELECT pg_advisory_xact_lock(7301)").execute(&mut **self).await?;
        Ok(())
    }
}

/// Claims due logs lane by lane in one statement: per lane, the first `want` due and eligible
/// logs that no other node holds (`SKIP LOCKED`), each under a lease. Lanes with
/// `max_concurrency` go one at a time under their webhook's row lock (see [`claim_capped`]).
pub(super) async fn claim_lanes(
    pool: &PgPool,
    claims: &[LaneClaim],
    now: i64,
) -> Result<Vec<LaneClaimed>, StoreError> {
    let (capped, free): (Vec<&LaneClaim>, Vec<&LaneClaim>) =
        claims.iter().partition(|c| c.max_concurrency.is_some());
    let mut logs = claim(pool, &free, now).await?;
    // Lanes whose claim the cap cut short: more is due than they could take.
    let mut at_cap = Vec::new();
    for claim in capped {
        let (taken, cut_short) = claim_capped(pool, claim, now).await?;
        logs.extend(taken);
        if cut_short {
            at_cap.push(claim.lane);
        }
    }
    let lanes: Vec<Uuid> = claims.iter().map(|c| c.lane).collect();
    let next_due: Vec<(Uuid, Option<i64>)> = sqlx::query_as(
        "SELECT lane_id, MIN(next_attempt_at) FROM delivery_logs
         WHERE lane_id = ANY($1) AND status = 'pending' AND next_attempt_at > $2
         GROUP BY lane_id",
    )
    .bind(&lanes)
    .bind(now)
    .fetch_all(pool)
    .await?;
    let mut claimed: Vec<LaneClaimed> = claims
        .iter()
        .map(|c| LaneClaimed {
            lane: c.lane,
            logs: Vec::new(),
            next_due: if at_cap.contains(&c.lane) {
                Some(now)
            } else {
                next_due.iter().find(|(lane, _)| *lane == c.lane).and_then(|(_, due)| *due)
            },
        })
        .collect();
    for log in logs {
        if let Some(lane) = claimed.iter_mut().find(|c| c.lane == log.lane_id) {
            lane.logs.push(log);
        }
    }
    Ok(claimed)
}

async fn claim<'e, E>(
    executor: E,
    claims: &[&LaneClaim],
    now: i64,
) -> Result<Vec<QueuedLog>, StoreError>
where
    E: sqlx::Executor<'e, Database = sqlx::Postgres>,
{
    if claims.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "WITH wanted AS (
            SELECT * FROM UNNEST($1::uuid[], $2::int8[], $3::int8[]) AS w(lane_id, n, lease_ms)),
         picked AS (
            SELECT c.id, w.lease_ms FROM wanted w CROSS JOIN LATERAL (
                SELECT l.id FROM delivery_logs l
                WHERE l.lane_id = w.lane_id AND l.status = 'pending' AND l.next_attempt_at <= $4
                  AND {ELIGIBLE}
                ORDER BY l.next_attempt_at LIMIT w.n
                FOR UPDATE SKIP LOCKED) c)
         UPDATE delivery_logs l
         SET claimed_at = $4, next_attempt_at = $4 + k.lease_ms, updated_at = $4
         FROM picked k, events e
         WHERE l.id = k.id AND e.id = l.event_id
         RETURNING {QUEUED_COLUMNS}"
    );
    let count = |c: &&LaneClaim| i64::try_from(c.want).unwrap_or(i64::MAX);
    Ok(sqlx::query_as(&sql)
        .bind(claims.iter().map(|c| c.lane).collect::<Vec<_>>())
        .bind(claims.iter().map(count).collect::<Vec<_>>())
        .bind(claims.iter().map(|c| c.lease_ms).collect::<Vec<_>>())
        .bind(now)
        .fetch_all(executor)
        .await?)
}

/// A lane with `max_concurrency`: under its webhook's row lock, counts the claims in flight on
/// every node and claims only what fits. The lock serialises the nodes' claims for this lane,
/// so two nodes cannot both see room for the same slot. Also says whether the cap cut the claim
/// short.
async fn claim_capped(
    pool: &PgPool,
    lane: &LaneClaim,
    now: i64,
) -> Result<(Vec<QueuedLog>, bool), StoreError> {
    let cap = i64::from(lane.max_concurrency.unwrap_or(u32::MAX));
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT id FROM webhooks WHERE id = $1 FOR UPDATE")
        .bind(lane.lane)
        .execute(&mut *tx)
        .await?;
    let in_flight: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM delivery_logs
         WHERE lane_id = $1 AND claimed_at IS NOT NULL AND next_attempt_at > $2",
    )
    .bind(lane.lane)
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    let room = usize::try_from((cap - in_flight).max(0)).unwrap_or(0).min(lane.want);
    let logs = if room == 0 {
        Vec::new()
    } else {
        let fitted = LaneClaim { want: room, ..lane.clone() };
        claim(&mut *tx, &[&fitted], now).await?
    };
    tx.commit().await?;
    Ok((logs, room < lane.want))
}

/// Sends a `NOTIFY` on `channel`.
pub(super) async fn notify(pool: &PgPool, channel: &str, payload: &str) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_notify($1, $2)").bind(channel).bind(payload).execute(pool).await?;
    Ok(())
}

/// What a `LISTEN` connection hears.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Heard<'a> {
    /// The connection listens (again): notifications sent meanwhile may have been missed.
    Listening,
    /// A notification's payload.
    Notification(&'a str),
}

/// Listens on `channel` until `stop`, telling `heard` of each notification and of each
/// (re)connection. Reconnects on errors.
pub(super) async fn listen(
    pool: PgPool,
    channel: &'static str,
    heard: impl Fn(Heard<'_>) + Send + 'static,
    stop: tokio_util::sync::CancellationToken,
) {
    loop {
        let mut listener = match sqlx::postgres::PgListener::connect_with(&pool).await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(%error, "cannot LISTEN for announcements; retrying");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        if let Err(error) = listener.listen(channel).await {
            tracing::warn!(%error, "cannot LISTEN for announcements; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        heard(Heard::Listening);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                received = listener.recv() => match received {
                    Ok(notification) => heard(Heard::Notification(notification.payload())),
                    Err(error) => {
                        tracing::warn!(%error, "LISTEN connection lost; reconnecting");
                        break;
                    }
                },
            }
        }
    }
}

/// One statement for the whole batch: the values travel as arrays and are joined by id, so a
/// batch costs one round trip however many logs it holds.
impl UpdateLogs for sqlx::Transaction<'_, sqlx::Postgres> {
    async fn update_logs(
        &mut self,
        attempts: &[AttemptRecord],
        now: i64,
    ) -> Result<(), StoreError> {
        if attempts.is_empty() {
            return Ok(());
        }
        let ints = |f: &dyn Fn(&AttemptRecord) -> Option<i64>| -> Vec<Option<i64>> {
            attempts.iter().map(f).collect()
        };
        let text = |f: &dyn Fn(&AttemptRecord) -> Option<String>| -> Vec<Option<String>> {
            attempts.iter().map(f).collect()
        };
        sqlx::query(
            "UPDATE delivery_logs AS l SET attempt_count = l.attempt_count + 1,
                retries = l.retries + v.retry, http_status = v.http_status,
                duration_ms = v.duration_ms, claimed_at = NULL, updated_at = $11,
                status = CASE WHEN l.payload_state = 'present' THEN v.status ELSE l.status END,
                response_body = CASE WHEN l.payload_state = 'present' THEN v.response_body END,
                response_headers =
                    CASE WHEN l.payload_state = 'present' THEN v.response_headers END,
                error = CASE WHEN l.payload_state = 'present' THEN v.error ELSE l.error END,
                delivered_at = CASE WHEN v.status = 'success' AND l.payload_state = 'present'
                                    THEN v.finished_at ELSE l.delivered_at END,
                next_attempt_at =
                    CASE WHEN l.payload_state = 'present' THEN v.next_attempt_at END,
                last_attempt_id = v.attempt_id, last_attempt_at = v.sent_at,
                last_send_type = v.send_type
             FROM UNNEST($1::uuid[], $2::text[], $3::int8[], $4::int8[], $5::text[], $6::text[],
                         $7::int8[], $8::text[], $9::int8[], $10::int8[], $12::uuid[],
                         $13::int8[], $14::text[])
                  AS v(id, status, retry, http_status, response_body, response_headers,
                       duration_ms, error, finished_at, next_attempt_at, attempt_id, sent_at,
                       send_type)
             WHERE l.id = v.id",
        )
        .bind(attempts.iter().map(|a| a.log_id).collect::<Vec<_>>())
        .bind(attempts.iter().map(|a| a.status.as_str()).collect::<Vec<_>>())
        .bind(ints(&|a| Some(i64::from(a.counts_as_retry))))
        .bind(ints(&|a| a.attempt.response_code.map(i64::from)))
        .bind(text(&|a| a.attempt.response_body.clone()))
        .bind(text(&|a| a.attempt.response_headers.clone()))
        .bind(ints(&|a| Some(a.attempt.duration_ms)))
        .bind(text(&|a| a.attempt.error.clone()))
        .bind(ints(&|a| Some(a.attempt.sent_at + a.attempt.duration_ms)))
        .bind(ints(&|a| a.next_attempt_at))
        .bind(now)
        .bind(attempts.iter().map(|a| a.attempt.id).collect::<Vec<_>>())
        .bind(ints(&|a| Some(a.attempt.sent_at)))
        .bind(attempts.iter().map(|a| a.attempt.send_type.as_str()).collect::<Vec<_>>())
        .execute(&mut **self)
        .await?;
        Ok(())
    }
}
