use thiserror::Error;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("unsupported database URL: expected sqlite://PATH or postgres://USER@HOST/DB")]
    UnsupportedUrl,
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The request came while this node was stopping.
    #[error("webhookd is shutting down")]
    ShuttingDown,
    /// A stored value that webhookd itself wrote no longer parses.
    #[error("corrupt row in {table}: {detail}")]
    Corrupt { table: &'static str, detail: String },
}
