//! Startup and shutdown: connect and migrate the store, create the first organization on an empty
//! database, serve the API, stop cleanly on SIGTERM or Ctrl-C.

use std::net::SocketAddr;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::api::{self, AppState};
use crate::config::Config;
use crate::dispatch::retry::RetryPolicy;
use crate::dispatch::sender::Sender;
use crate::dispatch::{DispatchConfig, Dispatcher};
use crate::domain::sealing::Sealer;
use crate::maintenance;
use crate::server::{self, ServerLimits};
use crate::store::Store;

/// Most logs one claim query takes.
const CLAIM_BATCH: usize = 256;

/// Opens and migrates the database, sealing secrets at rest with the server key: `secret_key`
/// if given; for an embedded SQLite database, else the key file beside it (made on first start);
/// PostgreSQL nodes must all be given the same key.
pub async fn open_sealed_store(url: &str, secret_key: Option<&str>) -> anyhow::Result<Store> {
    let key = match secret_key {
        Some(key) => key.to_string(),
        None if is_postgres(url) => anyhow::bail!(
            "PostgreSQL needs --secret-key (or WEBHOOKD_SECRET_KEY), the same on every node; \
             make one with `openssl rand -base64 32`"
        ),
        None => sqlite_key_file(url)?,
    };
    let sealer = Sealer::from_base64(&key).map_err(|e| anyhow::anyhow!("--secret-key: {e}"))?;
    let store = Store::connect(url, sealer)
        .await
        .with_context(|| format!("cannot open database {}", redact(url)))?;
    store.migrate().await.context("cannot migrate the database")?;
    Ok(store)
}

/// `webhookd migrate`: brings the schema up to date without touching any secret.
pub async fn migrate(url: &str) -> anyhow::Result<()> {
    crate::store::migrate_database(url)
        .await
        .with_context(|| format!("cannot migrate database {}", redact(url)))
}

fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// The key in `<database file>.key`, created (readable by this user only) when missing. An
/// in-memory database gets a key of its own lifetime.
fn sqlite_key_file(url: &str) -> anyhow::Result<String> {
    let path = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
    let path = path.split('?').next().unwrap_or_default();
    if path.is_empty() || path.contains(":memory:") {
        return Ok(Sealer::generate_key());
    }
    let key_path = std::path::PathBuf::from(format!("{path}.key"));
    if let Ok(key) = std::fs::read_to_string(&key_path) {
        return Ok(key.trim().to_string());
    }
    let key = Sealer::generate_key();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&key_path)
        .with_context(|| format!("cannot create the key file {}", key_path.display()))?;
    std::io::Write::write_all(&mut file, format!("{key}\n").as_bytes())?;
    tracing::info!(path = %key_path.display(), "created the key that seals secrets at rest; back it up with the database");
    Ok(key)
}

/// A running webhookd: its API address (when it serves the API) and its background tasks.
pub struct App {
    local_addr: Option<SocketAddr>,
    shutdown: CancellationToken,
    tasks: JoinSet<anyhow::Result<()>>,
    store: Store,
}

impl App {
    /// Starts the roles `config` asks for on an opened, migrated `store`.
    pub async fn start(config: &Config, store: Store) -> anyhow::Result<App> {
        crate::telemetry::metrics::handle();
        let shutdown = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let mut local_addr = None;
        let sender =
            Sender::new(config.allow_private_targets).context("cannot build the HTTP client")?;
        let mut workers = None;
        if config.run_worker {
            let dispatcher = Dispatcher::new(
                store.clone(),
                sender.clone(),
                DispatchConfig {
                    concurrency: config.concurrency,
                    claim_batch: CLAIM_BATCH,
                    shutdown_grace: config.shutdown_grace,
                    policy: RetryPolicy { schedule: config.retry_schedule.clone() },
                },
            );
            workers = Some(dispatcher.running_flag());
            let stop = shutdown.clone();
            tasks.spawn(async move {
                dispatcher.run(stop).await;
                Ok(())
            });
            tokio::spawn(maintenance::run_retention(
                store.clone(),
                config.retention,
                shutdown.clone(),
            ));
            tokio::spawn(maintenance::run_gauges(store.clone(), shutdown.clone()));
        }
        if config.run_api {
            let listener = TcpListener::bind(config.listen)
                .await
                .with_context(|| format!("cannot listen on {}", config.listen))?;
            local_addr = Some(listener.local_addr()?);
            let mut state = AppState::new(store.clone(), config, sender.clone());
            state.workers = workers;
            let router = api::router(state);
            let limits = ServerLimits::from_config(config);
            let stop = shutdown.clone();
            tasks.spawn(async move {
                server::serve(listener, router, limits, stop).await;
                Ok(())
            });
        }
        Ok(App { local_addr, shutdown, tasks, store })
    }

    /// Where the API listens (useful with port 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// Cancel this token to begin a graceful shutdown.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Waits for every task to finish (after a shutdown, or the first to fail) and closes the store.
    pub async fn wait(mut self) -> anyhow::Result<()> {
        let mut outcome = Ok(());
        while let Some(joined) = self.tasks.join_next().await {
            let result = joined.context("a webhookd task panicked").and_then(|r| r);
            if let Err(error) = result {
                self.shutdown.cancel();
                if outcome.is_ok() {
                    outcome = Err(error);
                }
            }
        }
        self.store.close().await;
        outcome
    }
}

/// `webhookd serve`: runs until SIGTERM or Ctrl-C.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let store = open_sealed_store(&config.database_url, config.secret_key.as_deref()).await?;
    if let Some(created) = store.bootstrap_org("default").await? {
        println!(
            "Created organization {} (\"default\"). Its API key, shown only this once: {}",
            created.org.id, created.api_key
        );
    }
    let app = App::start(&config, store).await?;
    match app.local_addr() {
        Some(addr) => {
            tracing::info!(%addr, database = %redact(&config.database_url), "webhookd listening");
        }
        None => {
            tracing::info!(database = %redact(&config.database_url), "webhookd started without the API")
        }
    }
    let shutdown = app.shutdown_token();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        shutdown.cancel();
    });
    app.wait().await
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = ctrl_c => {},
                    _ = terminate.recv() => {},
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// The database URL without its password, for messages and logs.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_string(),
    }
}
