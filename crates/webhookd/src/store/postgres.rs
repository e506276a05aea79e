//! PostgreSQL specifics: connection setup for scale-out.

use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

use super::StoreError;

pub(super) static MIGRATOR: Migrator = sqlx::migrate!("migrations/postgres");

const MAX_CONNECTIONS: u32 = 16;

pub(super) async fn connect(url: &str) -> Result<PgPool, StoreError> {
    let pool = PgPoolOptions::new()
        .max_connections(MAX_CONNECTIONS)
        .acquire_timeout(Duration::from_secs(5))
        .connect(url)
        .await?;
    Ok(pool)
}
