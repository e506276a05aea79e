//! Persistence. [`Store`] is the one storage interface the rest of webhookd sees; behind it sit
//! two backends, SQLite (the embedded default) and PostgreSQL (scale-out).
//!
//! The schema is kept portable on purpose — UUID ids, unix-millisecond `BIGINT` times, JSON as
//! text, `$n` placeholders — so each query is written once and runs on both backends through the
//! [`on_writer!`]/[`on_reader!`] dispatch. What genuinely differs (connection setup, migrations,
//! claiming with `SKIP LOCKED`, cross-process wake-ups) lives in `sqlite.rs` and `postgres.rs`.

mod agents;
mod announce;
mod availability;
mod backend;
mod claims;
mod codec;
mod error;
mod event_inserts;
mod events;
mod gauges;
mod health;
mod idempotency;
mod log_inserts;
mod log_pages;
mod logs;
mod meta;
mod models;
mod operational;
mod orgs;
mod outbox;
mod partitions;
mod payload_removal;
mod payloads;
mod postgres;
mod record;
mod recover;
mod redelivery;
mod retention;
mod sealing;
mod send_context;
mod sessions;
mod sqlite;
mod webhooks;

use std::sync::Arc;

use sqlx::{PgPool, SqlitePool};
use tokio::sync::Notify;

use crate::domain::sealing::Sealer;
use tokio_util::sync::CancellationToken;

pub use announce::{Announcement, Announcer, Pending};
pub use availability::Availability;
pub(crate) use backend::with_ids;
pub use backend::{AttemptRecord, Backend, LaneClaim, LaneClaimed};
pub use claims::{lease_ms, LaneDue, LEASE_MARGIN_MS};
pub use error::{Fault, StoreError};
pub use events::{CreatedLog, HandedLog, Handoff, IngestRequest, Ingested, IngestedEvent};
pub use health::{LastError, WebhookHealth, PENDING_CAP};
pub use log_pages::{Keyset, LogPageFilter, LogSlice, StatusCodeFilter};
pub use logs::{
    DeliveryLog, LogFilter, LogListing, LogPage, LogScope, NotRetriable, LISTED_PAYLOAD_MAX,
};
pub use models::{Agent, Attempt, Organization, Payload, QueuedLog, Webhook, WebhookSecrets};
pub use operational::OperationalWebhook;
pub use orgs::{ApiKeyInfo, CreatedOrg};
pub use partitions::DroppedDays;
pub use payload_removal::{ErasedCall, Expired, PAYLOAD_BATCH};
pub use record::{Recorded, SkipRecord};
pub use recover::{RecoverCount, Recovery, Window, RECOVER_PAGE};
pub use redelivery::PostCallEvent;
pub use retention::{Deleted, RETENTION_BATCH};
pub use sessions::UiSession;

#[derive(Clone)]
enum Db {
    /// SQLite allows one writer at a time: a single-connection write pool serialises writers in
    /// process instead of letting them spin on `SQLITE_BUSY`; reads use their own pool (WAL).
    Sqlite {
        write: SqlitePool,
        read: SqlitePool,
    },
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to the pool that takes writes, whatever the backend.
macro_rules! on_writer {
    ($store:expr, |$pool:ident| $body:expr) => {
        match &$store.db {
            $crate::store::Db::Sqlite { write: $pool, .. } => $body,
            $crate::store::Db::Postgres($pool) => $body,
        }
    };
}

/// Runs `$body` with `$pool` bound to a pool for reads, whatever the backend.
macro_rules! on_reader {
    ($store:expr, |$pool:ident| $body:expr) => {
        match &$store.db {
            $crate::store::Db::Sqlite { read: $pool, .. } => $body,
            $crate::store::Db::Postgres($pool) => $body,
        }
    };
}

/// Runs `$body` with `$tx` bound to a read-only transaction that sees one snapshot, so a page
/// and its total, read by two statements, agree even while deliveries are being recorded.
/// SQLite's read transaction keeps its first read's snapshot; PostgreSQL needs REPEATABLE READ
/// (each statement of a READ COMMITTED transaction sees its own).
///
/// `on_snapshot!(store, generic_plans, |tx| …)` is for lookups whose best plan is the same
/// whatever the values bound (a log by id, a call's logs, recover's count): on PostgreSQL they
/// run with the statement's generic plan, made once per connection and pruned to the right day
/// partitions when it runs. A custom plan is made anew on every call, and planning over every day
/// partition cost ~36 ms for 1.5 ms of execution at 34 days. Listings keep custom plans: their
/// best index depends on the values of their filters.
macro_rules! on_snapshot {
    ($store:expr, generic_plans, |$tx:ident| $body:expr) => {
        $crate::store::on_snapshot!(
            $store,
            setting = "SET LOCAL plan_cache_mode = force_generic_plan",
            |$tx| $body
        )
    };
    ($store:expr, $(setting = $setting:literal,)? |$tx:ident| $body:expr) => {
        match &$store.db {
            $crate::store::Db::Sqlite { read, .. } => {
                let mut $tx = read.begin().await?;
                let result = $body;
                $tx.commit().await?;
                result
            }
            $crate::store::Db::Postgres(pool) => {
                let mut $tx =
                    pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY").await?;
                $(sqlx::query($setting).execute(&mut *$tx).await?;)?
                let result = $body;
                $tx.commit().await?;
                result
            }
        }
    };
}
pub(crate) use {on_reader, on_snapshot, on_writer};

/// One page of a listing, with the total for Talkover's `pagination`.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: i64,
}

#[derive(Clone)]
pub struct Store {
    db: Db,
    /// Work and changes announced to this process's dispatcher.
    announcer: Arc<Announcer>,
    /// Woken when this process records a recovery to run in the background.
    recoveries: Arc<Notify>,
    /// Seals secrets and credentials at rest. Every store has one, so no code path can write a
    /// secret in plaintext.
    sealer: Arc<Sealer>,
    /// The database's known condition, shared by every user of this store.
    availability: Arc<Availability>,
    /// Payloads on their way to a send, one buffer per event.
    payloads: payloads::PayloadCache,
}

impl Store {
    /// Opens `sqlite://PATH` (created if missing) or `postgres://…`, whose secrets are sealed with
    /// `sealer`. Fails fast when the database cannot be reached.
    pub async fn connect(url: &str, sealer: Sealer) -> Result<Self, StoreError> {
        Ok(Self {
            db: Db::connect(url).await?,
            announcer: Arc::new(Announcer::default()),
            recoveries: Arc::new(Notify::new()),
            sealer: Arc::new(sealer),
            availability: Arc::new(Availability::default()),
            payloads: payloads::PayloadCache::default(),
        })
    }

    /// The database's known condition (faults reported by whoever met them).
    pub fn availability(&self) -> &Availability {
        &self.availability
    }

    /// Asks the database whether `fault` is gone: a read for an unreachable database, a small
    /// write for a full one (a read works on a full disk). Recovery is recorded on success.
    pub async fn probe(&self, fault: Fault) -> Result<(), StoreError> {
        match fault {
            Fault::Unavailable => {
                on_writer!(self, |pool| {
                    sqlx::query("SELECT 1").execute(pool).await?;
                });
            }
            Fault::DiskFull => self.write_probe().await?,
        }
        self.availability.recovered();
        Ok(())
    }

    /// The form in which a secret is stored.
    pub(crate) fn seal(&self, plaintext: &str) -> String {
        self.sealer.seal(plaintext)
    }

    /// A stored secret's plaintext.
    pub(crate) fn open(&self, stored: String) -> Result<String, StoreError> {
        self.sealer.open(&stored).map_err(|detail| StoreError::Corrupt { table: "secrets", detail })
    }

    /// The key `purpose` derived from the server key (see `domain::sealing`): the same on every
    /// node of one database.
    pub fn derived_key(&self, purpose: &str) -> [u8; 32] {
        self.sealer.derive_key(purpose)
    }

    /// A webhook and previous secret pair as stored, opened.
    fn open_secrets(&self, secrets: WebhookSecrets) -> Result<WebhookSecrets, StoreError> {
        Ok(WebhookSecrets {
            current: self.open(secrets.current)?,
            previous: secrets.previous.map(|p| self.open(p)).transpose()?,
            previous_expires_at: secrets.previous_expires_at,
        })
    }

    /// What the recovery runner waits on.
    pub fn recovery_notifier(&self) -> Arc<Notify> {
        self.recoveries.clone()
    }

    /// On PostgreSQL, publishes other nodes' announcements to this process until `stop`.
    pub fn spawn_listener(&self, stop: CancellationToken) -> Option<tokio::task::JoinHandle<()>> {
        match &self.db {
            Db::Postgres(pool) => {
                let announcer = self.announcer.clone();
                let heard = move |heard: postgres::Heard<'_>| announcer.hear(heard);
                Some(tokio::spawn(postgres::listen(pool.clone(), announce::CHANNEL, heard, stop)))
            }
            Db::Sqlite { .. } => None,
        }
    }

    /// What a `SELECT` appends to lock the rows the transaction will update: `FOR UPDATE` on
    /// PostgreSQL (other nodes wait); nothing on SQLite, whose one writer already runs alone.
    pub(crate) fn row_lock(&self) -> &'static str {
        self.backend().row_lock()
    }

    pub fn backend(&self) -> Backend {
        match self.db {
            Db::Sqlite { .. } => Backend::Sqlite,
            Db::Postgres(_) => Backend::Postgres,
        }
    }

    /// Applies the embedded migrations of this backend (idempotent; safe from several processes),
    /// checks the server key against the database (another key is
    /// [`StoreError::SealedWithAnotherKey`]), then seals any secret stored in plaintext by a
    /// version from before sealing.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        self.db.migrate().await?;
        // Before anything is sealed: plaintext sealed with a wrong key could never be read again.
        self.check_sealing_key().await?;
        self.seal_plaintext_secrets().await
    }

    /// Whether the database answers and every embedded migration has been applied.
    pub async fn is_ready(&self) -> Result<bool, StoreError> {
        let expected = match self.db {
            Db::Sqlite { .. } => sqlite::MIGRATOR.iter().count(),
            Db::Postgres(_) => postgres::MIGRATOR.iter().count(),
        } as i64;
        let applied: i64 = on_reader!(self, |pool| {
            sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success")
                .fetch_one(pool)
                .await?
        });
        Ok(applied >= expected)
    }

    pub async fn close(&self) {
        self.db.close().await
    }

    /// After an erasure, SQLite's write-ahead log may still hold the pages as they were before:
    /// copy it into the database file (whose freed content `secure_delete` zeroed) and truncate
    /// it. Best effort: a reader in the middle of a long read leaves the log for the next
    /// checkpoint (logged).
    async fn scrub_after_erasure(&self) {
        if let Db::Sqlite { write, .. } = &self.db {
            let done: Result<(i64, i64, i64), sqlx::Error> =
                sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)").fetch_one(write).await;
            match done {
                Ok((0, _, _)) => {}
                Ok(_) => tracing::warn!("erasure: the write-ahead log could not be truncated yet"),
                Err(error) => tracing::warn!(%error, "erasure: write-ahead log checkpoint failed"),
            }
        }
    }
}

impl Db {
    async fn connect(url: &str) -> Result<Db, StoreError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Db::Postgres(postgres::connect(url).await?))
        } else if url.starts_with("sqlite:") {
            let (write, read) = sqlite::connect(url).await?;
            Ok(Db::Sqlite { write, read })
        } else {
            Err(StoreError::UnsupportedUrl)
        }
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        match self {
            Db::Sqlite { write, .. } => sqlite::MIGRATOR.run(write).await?,
            Db::Postgres(pool) => postgres::MIGRATOR.run(pool).await?,
        }
        Ok(())
    }

    async fn close(&self) {
        match self {
            Db::Sqlite { write, read } => {
                read.close().await;
                write.close().await;
            }
            Db::Postgres(pool) => pool.close().await,
        }
    }
}

/// Brings the schema of the database at `url` up to date, touching no secret (`webhookd migrate`).
pub async fn migrate_database(url: &str) -> Result<(), StoreError> {
    let db = Db::connect(url).await?;
    let migrated = db.migrate().await;
    db.close().await;
    migrated
}

/// `OFFSET` of a 1-based page, saturating so absurd page numbers cannot overflow.
pub(crate) fn offset(page: i64, per_page: i64) -> i64 {
    page.saturating_sub(1).saturating_mul(per_page)
}
