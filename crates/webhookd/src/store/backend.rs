//! The vocabulary the two backends share with the rest of the store: which backend a store runs
//! on, the pieces of SQL and the limits both kinds of query use, and the types and traits that
//! `sqlite.rs` and `postgres.rs` implement. A leaf: it imports nothing of `store/` but decoded
//! rows (`models.rs`) and the error, so the backends import from here and nothing of theirs is
//! imported back.

use uuid::Uuid;

use super::error::StoreError;
use super::models::{Attempt, QueuedLog};
use crate::domain::clock::UnixMs;
use crate::domain::LogStatus;

/// Which database a [`Store`](super::Store) runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// What a `SELECT` appends to lock the rows the transaction will update: `FOR UPDATE` on
    /// PostgreSQL (other nodes wait); nothing on SQLite, whose one writer already runs alone.
    pub(crate) fn row_lock(self) -> &'static str {
        match self {
            Backend::Postgres => " FOR UPDATE",
            Backend::Sqlite => "",
        }
    }
}

/// Rows (or ids) per multi-row statement: well under SQLite's 32,766 bound variables.
pub(super) const INSERT_CHUNK: usize = 500;

/// The condition (on log `l`) that makes a log of an ordered call eligible for a claim: no
/// earlier pending log of its call waits in the same lane.
pub(super) const ELIGIBLE: &str = "(l.order_key IS NULL OR NOT EXISTS (
        SELECT 1 FROM delivery_logs p
        WHERE p.lane_id = l.lane_id AND p.order_key = l.order_key AND p.status = 'pending'
          AND p.id < l.id))";

/// `sql` followed by `(id, id, …)`: an `IN` list of bound ids, for any backend.
pub(crate) fn with_ids<'args, DB>(
    sql: impl Into<String>,
    ids: impl IntoIterator<Item = Uuid>,
) -> sqlx::QueryBuilder<'args, DB>
where
    DB: sqlx::Database,
    Uuid: sqlx::Encode<'args, DB> + sqlx::Type<DB>,
{
    let mut query = sqlx::QueryBuilder::new(sql);
    query.push("(");
    let mut list = query.separated(", ");
    for id in ids {
        list.push_bind(id);
    }
    query.push(")");
    query
}

/// A claim for one lane.
#[derive(Debug, Clone)]
pub struct LaneClaim {
    pub lane: Uuid,
    pub want: usize,
    /// Lease of the claimed logs (PostgreSQL).
    pub lease_ms: i64,
    /// The webhook's `max_concurrency`, counted over every node (PostgreSQL).
    pub max_concurrency: Option<u32>,
}

/// What one lane's claim took.
#[derive(Debug, Clone)]
pub struct LaneClaimed {
    pub lane: Uuid,
    pub logs: Vec<QueuedLog>,
    /// When the lane's next pending log falls due after now (a retry, a lease ending).
    pub next_due: Option<UnixMs>,
}

/// One finished attempt and what it means for its log.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub log_id: Uuid,
    pub webhook_id: Option<Uuid>,
    pub lane_id: Uuid,
    pub org_id: Uuid,
    pub attempt: Attempt,
    /// The log's status after this attempt.
    pub status: LogStatus,
    /// When to try again (status `pending`), else `None`.
    pub next_attempt_at: Option<UnixMs>,
    /// Whether this attempt used one of the log's automatic retries.
    pub counts_as_retry: bool,
    /// The attempt was its circuit's probe.
    pub probe: bool,
}

/// Writes each attempt's outcome onto its log; the fastest way differs per backend.
pub(super) trait UpdateLogs {
    async fn update_logs(
        &mut self,
        attempts: &[AttemptRecord],
        now: UnixMs,
    ) -> Result<(), StoreError>;
}

/// Makes the creation of the first organization one at a time across every node (PostgreSQL's
/// advisory lock); implemented per backend in `sqlite.rs` and `postgres.rs`.
pub(super) trait BootstrapLock {
    async fn lock_bootstrap(&mut self) -> Result<(), StoreError>;
}

/// Inserts `rows` into `into` (a table and its columns) in multi-row statements of
/// [`INSERT_CHUNK`] rows within the caller's transaction; `bind` adds one row's values in the
/// columns' order.
///
/// Arguments are built by hand, each placeholder written by the backend itself (`?` on SQLite,
/// `$n` on PostgreSQL): SQLite looks up a named parameter by scanning the statement's list, so
/// 9,000 `$n` parameters cost quadratic time, while `?` binds by position. (A `QueryBuilder`
/// does the same, but one generic over the backend cannot be executed and dropped within a
/// function.)
pub(super) async fn insert_rows<DB, R>(
    tx: &mut sqlx::Transaction<'_, DB>,
    into: &str,
    rows: &[R],
    bind: impl for<'v, 'q> Fn(&mut Values<'v, 'q, DB>, &'q R) -> Result<(), StoreError>,
) -> Result<(), StoreError>
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB> + Default,
{
    for chunk in rows.chunks(INSERT_CHUNK) {
        let (sql, args) = rows_statement(into, chunk, "", &bind)?;
        sqlx::query_with(&sql, args).execute(&mut **tx).await?;
    }
    Ok(())
}

/// [`insert_rows`] with `tail` after the rows (an `ON CONFLICT … RETURNING …` clause, values
/// written into it being constants of the code, never input), and every row returned.
pub(super) async fn insert_rows_returning<DB, R, O>(
    tx: &mut sqlx::Transaction<'_, DB>,
    into: &str,
    rows: &[R],
    tail: &str,
    bind: impl for<'v, 'q> Fn(&mut Values<'v, 'q, DB>, &'q R) -> Result<(), StoreError>,
) -> Result<Vec<O>, StoreError>
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB> + Default,
    O: for<'r> sqlx::FromRow<'r, DB::Row> + Send + Unpin,
{
    let mut returned = Vec::new();
    for chunk in rows.chunks(INSERT_CHUNK) {
        let (sql, args) = rows_statement(into, chunk, tail, &bind)?;
        returned.extend(sqlx::query_as_with(&sql, args).fetch_all(&mut **tx).await?);
    }
    Ok(returned)
}

/// One multi-row `INSERT` of `chunk` with `tail` after its rows, and its arguments.
fn rows_statement<'q, DB, R>(
    into: &str,
    chunk: &'q [R],
    tail: &str,
    bind: &impl for<'v, 'b> Fn(&mut Values<'v, 'b, DB>, &'b R) -> Result<(), StoreError>,
) -> Result<(String, DB::Arguments<'q>), StoreError>
where
    DB: sqlx::Database,
    DB::Arguments<'q>: Default,
{
    let mut sql = format!("INSERT INTO {into} VALUES ");
    let mut args = DB::Arguments::default();
    for (n, row) in chunk.iter().enumerate() {
        sql.push_str(if n == 0 { "(" } else { ", (" });
        bind(&mut Values { sql: &mut sql, args: &mut args, first: true }, row)?;
        sql.push(')');
    }
    sql.push(' ');
    sql.push_str(tail);
    Ok((sql, args))
}

/// One row's values: each bound to the arguments, its placeholder written to the statement.
pub(super) struct Values<'a, 'q, DB: sqlx::Database> {
    sql: &'a mut String,
    args: &'a mut DB::Arguments<'q>,
    first: bool,
}

impl<'q, DB: sqlx::Database> Values<'_, 'q, DB> {
    pub(super) fn add<T>(&mut self, value: T) -> Result<(), StoreError>
    where
        T: sqlx::Encode<'q, DB> + sqlx::Type<DB> + 'q,
    {
        use sqlx::Arguments;
        if !self.first {
            self.sql.push_str(", ");
        }
        self.first = false;
        self.args.add(value).map_err(sqlx::Error::Encode)?;
        self.args.format_placeholder(self.sql).map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
        Ok(())
    }
}
