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
    let options = SqliteConnectOptions::from_str(url)?
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(10))
        .foreign_keys(true)
        .pragma("temp_store", "memory")
        .pragma("cache_size", "-32000");
    let in_memory = url.contains(":memory:") || url.contains("mode=memory");
    let write = SqlitePoolOptions::new()
        .max_connections(1)
        .min_connections(1)
        .acquire_timeout(Duration::from_secs(30))
        .idle_timeout(None)
        .max_lifetime(None)
        .connect_with(options.clone().create_if_missing(true).journal_mode(SqliteJournalMode::Wal))
        .await?;
    if in_memory {
        // Each connection to `:memory:` is its own database: share the single one.
        return Ok((write.clone(), write));
    }
    let read = SqlitePoolOptions::new()
        .max_connections(READ_CONNECTIONS)
        .acquire_timeout(Duration::from_secs(30))
        .connect_with(options.read_only(true))
        .await?;
    Ok((write, read))
}
