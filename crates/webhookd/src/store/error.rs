use thiserror::Error;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("unsupported database URL: expected sqlite://PATH or postgres://USER@HOST/DB")]
    UnsupportedUrl,
    /// The database could not be opened. The cause is kept as one phrase, not as a `source()`:
    /// sqlx repeats its cause in its own message, and a startup error is printed as one line.
    #[error("{0}")]
    Unreachable(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The request came while this node was stopping.
    #[error("webhookd is shutting down")]
    ShuttingDown,
    /// The server key does not open the database's sealed values (`meta.rs`); the caller knows
    /// where the key came from, so it words the message.
    #[error("the server key does not match the key this database's secrets were sealed with")]
    SealedWithAnotherKey,
    /// Refused because of the database's condition, met by another request of the same group.
    #[error("refused: {0:?}")]
    Refused(Fault),
    /// A stored value that webhookd itself wrote no longer parses.
    #[error("corrupt row in {table}: {detail}")]
    Corrupt { table: &'static str, detail: String },
}

impl StoreError {
    /// Why opening a database failed, said once: the server's own message (unknown database,
    /// authentication failed…) or the I/O error (connection refused…), without sqlx's wrapping.
    pub(super) fn unreachable(error: sqlx::Error) -> Self {
        let cause = match &error {
            sqlx::Error::Database(database) => database.message().to_string(),
            sqlx::Error::Io(io) => io.to_string(),
            sqlx::Error::Tls(tls) => format!("TLS: {tls}"),
            sqlx::Error::Configuration(config) => format!("bad database URL: {config}"),
            sqlx::Error::PoolTimedOut => "no connection within the timeout".to_string(),
            other => other.to_string(),
        };
        Self::Unreachable(cause)
    }
}

/// Why the database refused a request, when the cause is the database's condition rather than
/// the request: what a client can do about it differs (free disk space vs. try again soon).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The disk (or the database file's limit) is full: nothing can be written until space is
    /// freed. Reads still work.
    DiskFull,
    /// The database cannot be reached, or is busy past its timeout: try again shortly.
    Unavailable,
}

impl StoreError {
    /// The fault this error reveals about the database, if it is one.
    pub fn fault(&self) -> Option<Fault> {
        match self {
            Self::Unreachable(_) | Self::ShuttingDown => Some(Fault::Unavailable),
            Self::Refused(fault) => Some(*fault),
            Self::Database(error) => fault_of(error),
            Self::Migrate(sqlx::migrate::MigrateError::Execute(error)) => fault_of(error),
            _ => None,
        }
    }
}

fn fault_of(error: &sqlx::Error) -> Option<Fault> {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => Some(Fault::Unavailable),
        sqlx::Error::Database(database) => {
            let code = database.code()?;
            if database.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                sqlite_fault(&code)
            } else {
                postgres_fault(&code)
            }
        }
        _ => None,
    }
}

/// SQLite result codes (extended codes carry the primary one in their low byte).
fn sqlite_fault(code: &str) -> Option<Fault> {
    const BUSY: i64 = 5;
    const LOCKED: i64 = 6;
    const READONLY: i64 = 8;
    const IOERR: i64 = 10;
    const FULL: i64 = 13;
    const CANTOPEN: i64 = 14;
    match code.parse::<i64>().ok()? & 0xff {
        FULL => Some(Fault::DiskFull),
        BUSY | LOCKED | READONLY | IOERR | CANTOPEN => Some(Fault::Unavailable),
        _ => None,
    }
}

/// PostgreSQL SQLSTATEs: 53100 disk_full; the rest of class 53 (insufficient resources), class
/// 08 (connection exception) and 57P01–57P03 (shutting down, cannot connect now).
fn postgres_fault(sqlstate: &str) -> Option<Fault> {
    match sqlstate {
        "53100" => Some(Fault::DiskFull),
        "57P01" | "57P02" | "57P03" => Some(Fault::Unavailable),
        state if state.starts_with("53") || state.starts_with("08") => Some(Fault::Unavailable),
        _ => None,
    }
}
