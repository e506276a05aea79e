//! Reading delivery logs: a webhook's logs newest first (offset or keyset pages, filters), and one
//! log with its attempts.

use uuid::Uuid;

use super::models::Attempt;
use super::{offset, on_snapshot, Store, StoreError, Webhook};
use crate::domain::clock::{UnixMs, SECOND_MS};
use crate::domain::{LogStatus, PayloadState, SendType};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeliveryLog {
    pub id: Uuid,
    pub org_id: Uuid,
    pub agent_id: Uuid,
    pub webhook_id: Option<Uuid>,
    pub event_id: Uuid,
    pub event_type: String,
    pub call_id: Option<String>,
    pub url: String,
    pub status: LogStatus,
    pub first_send_type: SendType,
    pub attempt_count: i64,
    pub retries: i64,
    pub http_status: Option<i64>,
    pub response_body: Option<String>,
    pub response_headers: Option<String>,
    pub duration_ms: Option<i64>,
    pub delivered_at: Option<UnixMs>,
    pub error: Option<String>,
    pub last_attempt_id: Option<Uuid>,
    pub last_attempt_at: Option<UnixMs>,
    pub last_send_type: Option<SendType>,
    pub original_log_id: Option<Uuid>,
    pub next_attempt_at: Option<UnixMs>,
    pub created_at: UnixMs,
    pub updated_at: UnixMs,
    /// The event's `data` as delivered; `None` in a listing when it is larger than
    /// [`LISTED_PAYLOAD_MAX`] (read the log itself for it).
    pub payload: Option<Vec<u8>>,
    pub payload_bytes: i64,
    /// Whether the event's payload (and the response bodies and headers) is still stored.
    pub payload_state: PayloadState,
}

/// Why a log may not be sent again by hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotRetriable {
    /// Its payload expired or was erased: there is nothing left to send.
    PayloadGone(PayloadState),
    /// It succeeded or is still pending: only a log that ended without success is retried.
    NotEnded,
    /// It was created before the retry window (`--retry-window`).
    TooOld,
}

impl DeliveryLog {
    /// The one rule for a retry by hand (API, operational logs, dashboard): a failed or skipped
    /// log, with its payload, created within `window_ms` of `now`.
    pub fn retriable(&self, now: UnixMs, window_ms: i64) -> Result<(), NotRetriable> {
        if !self.payload_state.is_present() {
            return Err(NotRetriable::PayloadGone(self.payload_state));
        }
        if !matches!(self.status, LogStatus::Failed | LogStatus::Skipped) {
            return Err(NotRetriable::NotEnded);
        }
        if self.created_at < now.saturating_sub(window_ms) {
            return Err(NotRetriable::TooOld);
        }
        Ok(())
    }

    /// The log's latest attempt, which its row holds.
    pub fn latest_attempt(&self) -> Option<Attempt> {
        Some(Attempt {
            id: self.last_attempt_id?,
            number: self.attempt_count,
            send_type: self.last_send_type?,
            sent_at: self.last_attempt_at?,
            response_code: self.http_status.and_then(|code| u16::try_from(code).ok()),
            duration_ms: self.duration_ms.unwrap_or_default(),
            response_body: self.response_body.clone(),
            response_headers: self.response_headers.clone(),
            error: self.error.clone(),
        })
    }
}

/// A listing carries payloads up to this size, so a page of logs stays bounded in memory
/// whatever the events weigh (at most 100 × 16 KiB of payloads); larger ones are left out.
pub const LISTED_PAYLOAD_MAX: i64 = 16 * 1024;

#[derive(Debug, Clone, Default)]
pub struct LogFilter {
    pub status: Option<LogStatus>,
    pub event: Option<String>,
    pub call_id: Option<String>,
    /// Created at or after.
    pub since: Option<UnixMs>,
    /// Created at or before.
    pub until: Option<UnixMs>,
}

/// Which page of logs: by number (with a total), or after a keyset cursor (no total).
#[derive(Debug, Clone, Copy)]
pub enum LogPage {
    Number { page: i64, per_page: i64 },
    After { cursor: Option<Uuid>, per_page: i64 },
}

/// Matching logs are counted exactly up to this many; beyond it the total is estimated.
pub const EXACT_TOTAL_MAX: i64 = 10_000;

#[derive(Debug, Clone)]
pub struct LogListing {
    pub logs: Vec<DeliveryLog>,
    /// Only for numbered pages.
    pub total: Option<i64>,
    /// The total is an estimate: more than [`EXACT_TOTAL_MAX`] logs match.
    pub total_estimated: bool,
    /// The cursor of the next page, when there is one.
    pub next_cursor: Option<Uuid>,
}

/// The columns of a [`DeliveryLog`] but its payload (log `l`, event `e`).
macro_rules! log_columns {
    () => {
        "l.id, l.org_id, l.agent_id, l.webhook_id, l.event_id, l.event_type, l.call_id, l.url,
        l.status, l.first_send_type, l.attempt_count, l.retries, l.http_status, l.response_body,
        l.response_headers, l.duration_ms, l.delivered_at, l.error, l.last_attempt_id,
        l.last_attempt_at, l.last_send_type, l.original_log_id, l.next_attempt_at, l.created_at,
        l.updated_at, CAST(LENGTH(e.payload) AS BIGINT) AS payload_bytes, e.payload_state"
    };
}

/// A whole log, payload included.
pub(super) const LOG_COLUMNS: &str = concat!(log_columns!(), ", e.payload");
/// A log in a listing: the payload only up to [`LISTED_PAYLOAD_MAX`] (16 KiB).
const LISTED_LOG_COLUMNS: &str =
    concat!(log_columns!(), ", CASE WHEN LENGTH(e.payload) <= 16384 THEN e.payload END AS payload");

/// A bind value of a query assembled at run time.
#[derive(Debug, Clone)]
pub(super) enum Arg {
    Uuid(Uuid),
    Text(String),
    Int(i64),
}

/// Binds `$args` in order onto `$query` (any backend).
macro_rules! bind_all {
    ($query:expr, $args:expr) => {{
        let mut query = $query;
        for arg in $args {
            query = match arg {
                Arg::Uuid(value) => query.bind(*value),
                Arg::Text(value) => query.bind(value.clone()),
                Arg::Int(value) => query.bind(*value),
            };
        }
        query
    }};
}

/// The estimated count of the logs `$from_where` (`FROM … WHERE …` on log `l`, bound by
/// `$args`) selects, once more than [`EXACT_TOTAL_MAX`] of them were counted: three seeks read
/// the newest, the (limit + 1)th newest and the oldest id (see [`estimate_total`]).
macro_rules! estimated_count {
    ($tx:expr, $from_where:expr, $args:expr) => {{
        let mut edges = [Uuid::nil(); 3];
        let seeks = [("DESC", 0), ("DESC", EXACT_TOTAL_MAX), ("ASC", 0)];
        for (edge, (order, offset)) in edges.iter_mut().zip(seeks) {
            let sql = format!(
                "SELECT l.id {} ORDER BY l.id {order} LIMIT 1 OFFSET {offset}",
                $from_where
            );
            *edge = bind_all!(sqlx::query_scalar(&sql), $args).fetch_one(&mut *$tx).await?;
        }
        estimate_total(EXACT_TOTAL_MAX + 1, edges[0], edges[1], edges[2])
    }};
}
pub(super) use {bind_all, estimated_count};

/// Whose logs: a webhook's, or the organization's operational deliveries (no webhook, in its
/// operational lane; see `operational.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogScope {
    Webhook(Uuid),
    Operational,
}

impl LogScope {
    /// The condition on log `l`, with [`Self::id`] bound as `$n`.
    fn condition(self, n: usize) -> String {
        match self {
            Self::Webhook(_) => format!("l.webhook_id = ${n}"),
            Self::Operational => format!("l.webhook_id IS NULL AND l.lane_id = ${n}"),
        }
    }

    fn id(self, org_id: Uuid) -> Uuid {
        match self {
            Self::Webhook(webhook_id) => webhook_id,
            Self::Operational => crate::domain::operational::lane(org_id),
        }
    }
}

/// `WHERE` conditions for the logs of `scope` and their arguments, numbered from `$1`.
///
/// The scope alone names whose logs they are: a webhook belongs to one organization (callers
/// hold a [`Webhook`] found in it) and the operational lane is the organization's own. No
/// `org_id` condition is added, so counts, offsets and edges are index-only scans of the
/// `(webhook_id, …, id)` / `(lane_id, id)` indexes, never a visit to each row.
fn conditions(org_id: Uuid, scope: LogScope, filter: &LogFilter) -> (String, Vec<Arg>) {
    let mut args = vec![Arg::Uuid(scope.id(org_id))];
    let mut sql = scope.condition(1);
    let mut add = |condition: &str, arg: Arg| {
        args.push(arg);
        sql.push_str(&format!(" AND {condition} ${}", args.len()));
    };
    if let Some(status) = filter.status {
        add("l.status =", Arg::Text(status.as_str().into()));
    }
    if let Some(event) = &filter.event {
        add("l.event_type =", Arg::Text(event.clone()));
    }
    if let Some(call_id) = &filter.call_id {
        add("l.call_id =", Arg::Text(call_id.clone()));
    }
    // Log ids are UUIDv7, so a time range is also an id range, which the `(…, id)` indexes seek
    // to; `created_at` stays the exact condition.
    if let Some(since) = filter.since {
        add("l.id >=", Arg::Uuid(lowest_id_since(since)));
        add("l.created_at >=", Arg::Int(since));
    }
    if let Some(until) = filter.until {
        add("l.id <", Arg::Uuid(id_bound_until(until)));
        add("l.created_at <=", Arg::Int(until));
    }
    (sql, args)
}

/// Log ids are UUIDv7: their first 48 bits are the creation time in ms. A log's id and its
/// `created_at` are taken a moment apart, hence a second of slack: every log created at or after
/// `since` has an id at or above this one.
pub(super) fn lowest_id_since(since: UnixMs) -> Uuid {
    id_at(since.saturating_sub(SECOND_MS))
}

/// Every log created at or before `until` has an id below this one (see [`lowest_id_since`]).
pub(super) fn id_bound_until(until: UnixMs) -> Uuid {
    id_at(until.saturating_add(SECOND_MS))
}

/// The smallest UUIDv7 of millisecond `ms` (clamped to the 48 bits a UUIDv7 has for it).
fn id_at(ms: UnixMs) -> Uuid {
    let ms = u64::try_from(ms).unwrap_or(0).min((1 << 48) - 1);
    let mut bytes = [0_u8; 16];
    bytes[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    Uuid::from_bytes(bytes)
}

/// The millisecond a UUIDv7 was made at.
fn ms_of(id: Uuid) -> i64 {
    let bytes = id.as_bytes();
    let mut ms = [0_u8; 8];
    ms[2..].copy_from_slice(&bytes[..6]);
    i64::try_from(u64::from_be_bytes(ms)).unwrap_or(i64::MAX)
}

/// The total of more matching logs than were counted (`counted`, from `newest` to `kth`, the
/// oldest of them): the matches seem to arrive at the rate of those newest ones, so the whole span
/// from `oldest` holds that many times more. Never less than what was counted.
pub(super) fn estimate_total(counted: i64, newest: Uuid, kth: Uuid, oldest: Uuid) -> i64 {
    let recent = (ms_of(newest) - ms_of(kth)).max(1);
    let whole = (ms_of(newest) - ms_of(oldest)).max(recent);
    let estimate = i128::from(counted) * i128::from(whole) / i128::from(recent);
    i64::try_from(estimate).unwrap_or(i64::MAX).max(counted)
}

impl Store {
    /// A webhook's logs, newest first.
    pub async fn list_logs(
        &self,
        webhook: &Webhook,
        filter: &LogFilter,
        page: LogPage,
    ) -> Result<LogListing, StoreError> {
        self.list_logs_of(webhook.org_id, LogScope::Webhook(webhook.id), filter, page).await
    }

    /// The logs of `scope`, newest first.
    pub async fn list_logs_of(
        &self,
        org_id: Uuid,
        scope: LogScope,
        filter: &LogFilter,
        page: LogPage,
    ) -> Result<LogListing, StoreError> {
        let (mut where_sql, mut args) = conditions(org_id, scope, filter);
        // Counting stops past the exact limit: a count costs at most that many index entries.
        let count_sql = format!(
            "SELECT COUNT(*) FROM (SELECT 1 FROM delivery_logs l WHERE {where_sql} LIMIT {})
             AS capped",
            EXACT_TOTAL_MAX + 1
        );
        let from_where = format!("FROM delivery_logs l WHERE {where_sql}");
        let count_args = args.clone();
        let per_page = match page {
            LogPage::Number { per_page, .. } | LogPage::After { per_page, .. } => per_page,
        };
        if let LogPage::After { cursor: Some(cursor), .. } = page {
            args.push(Arg::Uuid(cursor));
            where_sql.push_str(&format!(" AND l.id < ${}", args.len()));
        }
        // One extra row tells whether another page follows. The page's ids are found first, on
        // the index alone (a deep `OFFSET` steps over index entries, not over rows joined with
        // their events); only the page's own rows are then read with their events.
        args.push(Arg::Int(per_page + 1));
        let mut ids_sql = format!(
            "SELECT l.id FROM delivery_logs l WHERE {where_sql} ORDER BY l.id DESC LIMIT ${}",
            args.len()
        );
        if let LogPage::Number { page, per_page } = page {
            args.push(Arg::Int(offset(page, per_page)));
            ids_sql.push_str(&format!(" OFFSET ${}", args.len()));
        }
        let sql = format!(
            "SELECT {LISTED_LOG_COLUMNS} FROM delivery_logs l JOIN events e ON e.id = l.event_id
             WHERE l.id IN ({ids_sql}) ORDER BY l.id DESC"
        );
        let (mut logs, total, total_estimated): (Vec<DeliveryLog>, Option<i64>, bool) =
            on_snapshot!(self, |tx| {
                let logs = bind_all!(sqlx::query_as(&sql), &args).fetch_all(&mut *tx).await?;
                let mut estimated = false;
                let total = match page {
                    LogPage::Number { .. } => {
                        let mut total: i64 = bind_all!(sqlx::query_scalar(&count_sql), &count_args)
                            .fetch_one(&mut *tx)
                            .await?;
                        if total > EXACT_TOTAL_MAX {
                            total = estimated_count!(tx, &from_where, &count_args);
                            estimated = true;
                        }
                        Some(total)
                    }
                    LogPage::After { .. } => None,
                };
                (logs, total, estimated)
            });
        let per_page = usize::try_from(per_page).unwrap_or(usize::MAX);
        let next_cursor = if logs.len() > per_page {
            logs.truncate(per_page);
            logs.last().map(|log| log.id)
        } else {
            None
        };
        Ok(LogListing { logs, total, total_estimated, next_cursor })
    }

    /// One of a webhook's logs with its attempts, oldest first.
    pub async fn log_with_attempts(
        &self,
        org_id: Uuid,
        webhook_id: Uuid,
        log_id: Uuid,
    ) -> Result<Option<(DeliveryLog, Vec<Attempt>)>, StoreError> {
        self.log_of(org_id, LogScope::Webhook(webhook_id), log_id).await
    }

    /// One log of `scope` with its attempts, oldest first.
    pub async fn log_of(
        &self,
        org_id: Uuid,
        scope: LogScope,
        log_id: Uuid,
    ) -> Result<Option<(DeliveryLog, Vec<Attempt>)>, StoreError> {
        let condition = scope.condition(3);
        let sql = format!(
            "SELECT {LOG_COLUMNS} FROM delivery_logs l JOIN events e ON e.id = l.event_id
             WHERE l.id = $1 AND l.org_id = $2 AND {condition}"
        );
        let log: Option<DeliveryLog> = on_snapshot!(self, generic_plans, |tx| {
            sqlx::query_as(&sql)
                .bind(log_id)
                .bind(org_id)
                .bind(scope.id(org_id))
                .fetch_optional(&mut *tx)
                .await?
        });
        let Some(log) = log else { return Ok(None) };
        let attempts = self.attempts_of(&log).await?;
        Ok(Some((log, attempts)))
    }

    /// A log's attempts, oldest first: the earlier ones from `attempts`, the latest from the
    /// log row. `log` must have been read for an organization the caller may see.
    pub async fn attempts_of(&self, log: &DeliveryLog) -> Result<Vec<Attempt>, StoreError> {
        let mut attempts: Vec<Attempt> = on_snapshot!(self, generic_plans, |tx| {
            sqlx::query_as(
                "SELECT id, number, send_type, sent_at, response_code, duration_ms,
                    response_body, response_headers, error
                 FROM attempts WHERE log_id = $1 AND event_id = $2 ORDER BY number, sent_at",
            )
            .bind(log.id)
            // The event names the day partition that holds the attempts (PostgreSQL).
            .bind(log.event_id)
            .fetch_all(&mut *tx)
            .await?
        });
        attempts.extend(log.latest_attempt());
        Ok(attempts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_is_the_smallest_id_of_its_millisecond() {
        let id = Uuid::now_v7();
        let ms = ms_of(id);
        assert!(id_at(ms) <= id && id < id_at(ms + 1));
        assert_eq!(ms_of(id_at(1_700_000_000_123)), 1_700_000_000_123);
        assert_eq!(id_at(-5), Uuid::nil());
    }

    #[test]
    fn a_large_total_is_extrapolated_from_the_rate_of_the_newest_logs() {
        let at = |ms: i64| id_at(ms);
        // 10,001 logs in the last 10 s of a 100 s span: about ten times as many.
        assert_eq!(estimate_total(EXACT_TOTAL_MAX + 1, at(100_000), at(90_000), at(0)), 100_010);
        // All in one millisecond: no rate to go by, never below what was counted.
        assert_eq!(estimate_total(EXACT_TOTAL_MAX + 1, at(5), at(5), at(5)), EXACT_TOTAL_MAX + 1);
    }
}
