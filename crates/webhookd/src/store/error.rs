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
