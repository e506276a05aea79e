//! Reading delivery logs: a webhook's logs newest first (offset or keyset pages, filters), and one
//! log with its attempts.

use uuid::Uuid;

use super::{offset, on_reader, Store, StoreError};
use crate::domain::clock::UnixMs;
use crate::domain::LogStatus;

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
    pub status: String,
    pub first_send_type: String,
    pub attempt_count: i64,
    pub retries: i64,
    pub http_status: Option<i64>,
    pub response_body: Option<String>,
    pub response_headers: Option<String>,
    pub duration_ms: Option<i64>,
    pub delivered_at: Option<UnixMs>,
    pub error: Option<String>,
    pub original_log_id: Option<Uuid>,
    pub next_attempt_at: Option<UnixMs>,
    pub created_at: UnixMs,
    pub updated_at: UnixMs,
    /// The event's `data`, as delivered.
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Attempt {
    pub id: Uuid,
    pub log_id: Uuid,
    pub number: i64,
    pub send_type: String,
    pub sent_at: UnixMs,
    pub response_code: Option<i64>,
    pub duration_ms: i64,
    pub response_body: Option<String>,
    pub response_headers: Option<String>,
    pub error: Option<String>,
}

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

pub(super) const LOG_COLUMNS: &str = "l.id, l.org_id, l.agent_id, l.webhook_id, l.event_id,
    l.event_type, l.call_id, l.url, l.status, l.first_send_type, l.attempt_count, l.retries,
    l.http_status, l.response_body, l.response_headers, l.duration_ms, l.delivered_at, l.error,
    l.original_log_id, l.next_attempt_at, l.created_at, l.updated_at, e.payload";

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

/// `WHERE` conditions for a webhook's logs and their arguments, numbered from `$1`.
fn conditions(org_id: Uuid, webhook_id: Uuid, filter: &LogFilter) -> (String, Vec<Arg>) {
    let mut args = vec![Arg::Uuid(org_id), Arg::Uuid(webhook_id)];
    let mut sql = String::from("l.org_id = $1 AND l.webhook_id = $2");
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
        let (mut where_sql, mut args) = conditions(org_id, webhook_id, filter);
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
            "SELECT {LOG_COLUMNS} FROM delivery_logs l JOIN events e ON e.id = l.event_id
             WHERE {where_sql} ORDER BY l.id DESC LIMIT ${}",
            args.len()
        );
        if let LogPage::Number { page, per_page } = page {
            args.push(Arg::Int(offset(page, per_page)));
            sql.push_str(&format!(" OFFSET ${}", args.len()));
        }
        let (mut logs, total): (Vec<DeliveryLog>, Option<i64>) = on_reader!(self, |pool| {
            let logs = bind_all!(sqlx::query_as(&sql), &args).fetch_all(pool).await?;
            let total = match page {
                LogPage::Number { .. } => Some(
                    bind_all!(sqlx::query_scalar(&count_sql), &count_args).fetch_one(pool).await?,
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
        let sql = format!(
            "SELECT {LOG_COLUMNS} FROM delivery_logs l JOIN events e ON e.id = l.event_id
             WHERE l.id = $1 AND l.org_id = $2 AND l.webhook_id = $3"
        );
        on_reader!(self, |pool| {
            let log: Option<DeliveryLog> = sqlx::query_as(&sql)
                .bind(log_id)
                .bind(org_id)
                .bind(webhook_id)
                .fetch_optional(pool)
                .await?;
            let Some(log) = log else { return Ok(None) };
            let attempts = self.attempts_of(log.id).await?;
            Ok(Some((log, attempts)))
        })
    }

    /// A log's attempts, oldest first.
    pub async fn attempts_of(&self, log_id: Uuid) -> Result<Vec<Attempt>, StoreError> {
        on_reader!(self, |pool| {
            Ok(sqlx::query_as(
                "SELECT id, log_id, number, send_type, sent_at, response_code, duration_ms,
                    response_body, response_headers, error
                 FROM attempts WHERE log_id = $1 ORDER BY number, sent_at",
            )
            .bind(log_id)
            .fetch_all(pool)
            .await?)
        })
    }
}
