//! Reading delivery logs: a webhook's logs newest first (offset or keyset pages, filters), and one
//! log with its attempts.

use uuid::Uuid;

use super::models::Attempt;
use super::{offset, on_reader, on_snapshot, Store, StoreError};
use crate::domain::clock::UnixMs;
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

impl DeliveryLog {
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

#[derive(Debug, Clone)]
pub struct LogListing {
    pub logs: Vec<DeliveryLog>,
    /// Only for numbered pages.
    pub total: Option<i64>,
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
fn conditions(org_id: Uuid, scope: LogScope, filter: &LogFilter) -> (String, Vec<Arg>) {
    let mut args = vec![Arg::Uuid(org_id), Arg::Uuid(scope.id(org_id))];
    let mut sql = format!("l.org_id = $1 AND {}", scope.condition(2));
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
    if let Some(since) = filter.since {
        add("l.created_at >=", Arg::Int(since));
    }
    if let Some(until) = filter.until {
        add("l.created_at <=", Arg::Int(until));
    }
    (sql, args)
}

impl Store {
    /// A webhook's logs, newest first.
    pub async fn list_logs(
        &self,
        org_id: Uuid,
        webhook_id: Uuid,
        filter: &LogFilter,
        page: LogPage,
    ) -> Result<LogListing, StoreError> {
        self.list_logs_of(org_id, LogScope::Webhook(webhook_id), filter, page).await
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
        let count_sql = format!("SELECT COUNT(*) FROM delivery_logs l WHERE {where_sql}");
        let count_args = args.clone();
        let per_page = match page {
            LogPage::Number { per_page, .. } | LogPage::After { per_page, .. } => per_page,
        };
        if let LogPage::After { cursor: Some(cursor), .. } = page {
            args.push(Arg::Uuid(cursor));
            where_sql.push_str(&format!(" AND l.id < ${}", args.len()));
        }
        // One extra row tells whether another page follows.
        args.push(Arg::Int(per_page + 1));
        let mut sql = format!(
            "SELECT {LISTED_LOG_COLUMNS} FROM delivery_logs l JOIN events e ON e.id = l.event_id
             WHERE {where_sql} ORDER BY l.id DESC LIMIT ${}",
            args.len()
        );
        if let LogPage::Number { page, per_page } = page {
            args.push(Arg::Int(offset(page, per_page)));
            sql.push_str(&format!(" OFFSET ${}", args.len()));
        }
        let (mut logs, total): (Vec<DeliveryLog>, Option<i64>) = on_snapshot!(self, |tx| {
            let logs = bind_all!(sqlx::query_as(&sql), &args).fetch_all(&mut *tx).await?;
            let total = match page {
                LogPage::Number { .. } => Some(
                    bind_all!(sqlx::query_scalar(&count_sql), &count_args)
                        .fetch_one(&mut *tx)
                        .await?,
                ),
                LogPage::After { .. } => None,
            };
            (logs, total)
        });
        let per_page = usize::try_from(per_page).unwrap_or(usize::MAX);
        let next_cursor = if logs.len() > per_page {
            logs.truncate(per_page);
            logs.last().map(|log| log.id)
        } else {
            None
        };
        Ok(LogListing { logs, total, next_cursor })
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
        on_reader!(self, |pool| {
            let log: Option<DeliveryLog> = sqlx::query_as(&sql)
                .bind(log_id)
                .bind(org_id)
                .bind(scope.id(org_id))
                .fetch_optional(pool)
                .await?;
            let Some(log) = log else { return Ok(None) };
            let attempts = self.attempts_of(&log).await?;
            Ok(Some((log, attempts)))
        })
    }

    /// A log's attempts, oldest first: the earlier ones from `attempts`, the latest from the
    /// log row. `log` must have been read for an organization the caller may see.
    pub async fn attempts_of(&self, log: &DeliveryLog) -> Result<Vec<Attempt>, StoreError> {
        let mut attempts: Vec<Attempt> = on_reader!(self, |pool| {
            sqlx::query_as(
                "SELECT id, number, send_type, sent_at, response_code, duration_ms,
                    response_body, response_headers, error
                 FROM attempts WHERE log_id = $1 ORDER BY number, sent_at",
            )
            .bind(log.id)
            .fetch_all(pool)
            .await?
        });
        attempts.extend(log.latest_attempt());
        Ok(attempts)
    }
}
