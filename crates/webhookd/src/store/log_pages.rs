//! The dashboard's pages of a webhook's logs: keyset pages in both directions ("older" and
//! "newer" than a log) on the `(webhook_id, id)` index, with the API's filters plus the HTTP
//! status of the latest attempt. No page counts the whole log, so a page costs the same with a
//! million logs as with ten.

use sqlx::QueryBuilder;
use uuid::Uuid;

use super::logs::LOG_COLUMNS;
use super::{on_reader, DeliveryLog, LogFilter, Store, StoreError, Webhook};

/// The latest attempt's HTTP status: one code, a class (`5` for 5xx), or no response at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusCodeFilter {
    Exact(i64),
    Class(i64),
    NoResponse,
}

#[derive(Debug, Clone, Default)]
pub struct LogPageFilter {
    pub base: LogFilter,
    pub http_status: Option<StatusCodeFilter>,
}

/// Where a page starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keyset {
    Newest,
    /// The logs just older than this one.
    Older(Uuid),
    /// The logs just newer than this one.
    Newer(Uuid),
}

/// One page, newest first, and whether pages lie on either side of it.
#[derive(Debug, Clone)]
pub struct LogSlice {
    pub logs: Vec<DeliveryLog>,
    pub has_older: bool,
    pub has_newer: bool,
}

/// The page's query: conditions, the keyset bound, order and limit (one extra row tells whether
/// the page in that direction continues).
fn page_query<'args, DB>(
    webhook_id: Uuid,
    filter: &'args LogPageFilter,
    keyset: Keyset,
    per_page: i64,
) -> QueryBuilder<'args, DB>
where
    DB: sqlx::Database,
    Uuid: sqlx::Encode<'args, DB> + sqlx::Type<DB>,
    &'args str: sqlx::Encode<'args, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'args, DB> + sqlx::Type<DB>,
{
    // The webhook alone names whose logs they are (see `logs::conditions`).
    let mut query = QueryBuilder::new(format!(
        "SELECT {LOG_COLUMNS} FROM delivery_logs l JOIN events e ON e.id = l.event_id
         WHERE l.webhook_id = "
    ));
    query.push_bind(webhook_id);
    let base = &filter.base;
    if let Some(status) = base.status {
        query.push(" AND l.status = ").push_bind(status.as_str());
    }
    if let Some(event) = &base.event {
        query.push(" AND l.event_type = ").push_bind(event.as_str());
    }
    if let Some(call_id) = &base.call_id {
        query.push(" AND l.call_id = ").push_bind(call_id.as_str());
    }
    if let Some(since) = base.since {
        query.push(" AND l.created_at >= ").push_bind(since);
    }
    if let Some(until) = base.until {
        query.push(" AND l.created_at <= ").push_bind(until);
    }
    match filter.http_status {
        Some(StatusCodeFilter::Exact(code)) => {
            query.push(" AND l.http_status = ").push_bind(code);
        }
        Some(StatusCodeFilter::Class(class)) => {
            // A class is a range: on the status index it would be every log of the class sorted
            // by id. `+` keeps the planners on the `(webhook_id, id)` order instead, which stops
            // at the page's end (a class is common when it is looked for).
            query.push(" AND +l.http_status >= ").push_bind(class * 100);
            query.push(" AND +l.http_status < ").push_bind(class * 100 + 100);
        }
        Some(StatusCodeFilter::NoResponse) => {
            query.push(" AND l.http_status IS NULL AND l.attempt_count > 0");
        }
        None => {}
    }
    match keyset {
        Keyset::Newest => query.push(" ORDER BY l.id DESC"),
        Keyset::Older(id) => query.push(" AND l.id < ").push_bind(id).push(" ORDER BY l.id DESC"),
        Keyset::Newer(id) => query.push(" AND l.id > ").push_bind(id).push(" ORDER BY l.id ASC"),
    };
    query.push(" LIMIT ").push_bind(per_page + 1);
    query
}

impl Store {
    /// A page of `per_page` of the webhook's logs matching `filter`, starting at `keyset`.
    pub async fn log_slice(
        &self,
        webhook: &Webhook,
        filter: &LogPageFilter,
        keyset: Keyset,
        per_page: i64,
    ) -> Result<LogSlice, StoreError> {
        let mut logs: Vec<DeliveryLog> = on_reader!(self, |pool| {
            page_query(webhook.id, filter, keyset, per_page)
                .build_query_as()
                .fetch_all(pool)
                .await?
        });
        let more = logs.len() > usize::try_from(per_page).unwrap_or(usize::MAX);
        logs.truncate(usize::try_from(per_page).unwrap_or(usize::MAX));
        let (has_older, has_newer) = match keyset {
            Keyset::Newest => (more, false),
            Keyset::Older(_) => (more, true),
            Keyset::Newer(_) => {
                logs.reverse();
                (true, more)
            }
        };
        Ok(LogSlice { logs, has_older, has_newer })
    }
}
