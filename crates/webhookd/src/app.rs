//! Startup and shutdown: connect and migrate the store, create the first organization on an empty
//! database, serve the API, stop cleanly on SIGTERM or Ctrl-C.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::api::{self, AppState};
use crate::config::Config;
use crate::dispatch::retry::RetryPolicy;
use crate::dispatch::sender::Sender;
use crate::dispatch::{recovery, DispatchConfig, Dispatcher};
use crate::domain::destination::Destinations;
use crate::domain::sealing::Sealer;
use crate::domain::EventCatalog;
use crate::ingest::Ingestor;
use crate::maintenance;
use crate::server::{self, ServerLimits};
use crate::store::{Backend, Store, StoreError};
use crate::telemetry::traces::Tracing;

/// Opens and migrates the database, sealing secrets at rest with the server key: `secret_key`
/// if given; for an embedded SQLite database, else the key file beside it (made on first start);
/// PostgreSQL nodes must all be given the same key. A key other than the one the database's
/// secrets are sealed with is refused here, before anything starts, rather than answering 500s
/// on the first secret it cannot open.
pub async fn open_sealed_store(url: &str, secret_key: Option<&str>) -> anyhow::Result<Store> {
    let (key, source) = match secret_key {
        Some(key) => (key.to_string(), KeySource::Flag),
        None if is_postgres(url) => anyhow::bail!(
            "PostgreSQL needs --secret-key (or WEBHOOKD_SECRET_KEY), the same on every node; \
             make one with `openssl rand -base64 32`"
        ),
        None => sqlite_key_file(url)?,
    };
    let sealer = Sealer::from_base64(&key).map_err(|e| anyhow::anyhow!("{source}: {e}"))?;
    let store = Store::connect(url, sealer)
        .await
        .with_context(|| format!("cannot open database {}", redact(url)))?;
    match store.migrate().await {
        Ok(()) => {
            if let KeySource::NewFile(path) = &source {
                tracing::info!(path = %path.display(), "created the key that seals secrets at rest; back it up with the database");
            }
            Ok(store)
        }
        Err(StoreError::SealedWithAnotherKey) => {
            store.close().await;
            if let KeySource::NewFile(path) = &source {
                // The key made a moment ago must not stay: it would be taken for the original.
                let _ = std::fs::remove_file(path);
            }
            Err(source.refusal())
        }
        Err(error) => Err(anyhow::Error::new(error).context("cannot migrate the database")),
    }
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

/// Where the server key came from, so that a refusal names the one to fix.
enum KeySource {
    Flag,
    File(std::path::PathBuf),
    /// A key file made just now, because there was none.
    NewFile(std::path::PathBuf),
    /// An in-memory database's own key, which nothing can contradict.
    Generated,
}

impl KeySource {
    /// The one line that refuses this key for a database sealed with another.
    fn refusal(&self) -> anyhow::Error {
        const ORIGINAL_FILE: &str = "put the original key file back (from the backup of the \
            database and its key), or give the original key with --secret-key";
        match self {
            KeySource::Flag => anyhow::anyhow!(
                "the --secret-key does not match the key this database's secrets were sealed \
                 with; start with the original key (the --secret-key or WEBHOOKD_SECRET_KEY the \
                 database was first started with)"
            ),
            KeySource::File(path) => anyhow::anyhow!(
                "the key file {} does not match the key this database's secrets were sealed \
                 with; {ORIGINAL_FILE}",
                path.display()
            ),
            KeySource::NewFile(path) => anyhow::anyhow!(
                "the key file {} is missing, and this database holds secrets sealed with it; \
                 {ORIGINAL_FILE}",
                path.display()
            ),
            KeySource::Generated => anyhow::anyhow!("the generated key cannot open this database"),
        }
    }
}

impl std::fmt::Display for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::Flag => f.write_str("--secret-key"),
            KeySource::File(path) | KeySource::NewFile(path) => {
                write!(f, "the key file {}", path.display())
            }
            KeySource::Generated => f.write_str("the generated key"),
        }
    }
}

/// The key in `<database file>.key`, created (readable by this user only) when missing; when
/// the database turns out to be sealed with another key, `open_sealed_store` removes it again.
/// An in-memory database gets a key of its own lifetime.
fn sqlite_key_file(url: &str) -> anyhow::Result<(String, KeySource)> {
    let Some(path) = sqlite_file(url) else {
        return Ok((Sealer::generate_key(), KeySource::Generated));
    };
    let key_path = std::path::PathBuf::from(format!("{path}.key"));
    if let Ok(key) = std::fs::read_to_string(&key_path) {
        return Ok((key.trim().to_string(), KeySource::File(key_path)));
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
    Ok((key, KeySource::NewFile(key_path)))
}

/// The file of an embedded SQLite database URL; `None` for an in-memory one.
fn sqlite_file(url: &str) -> Option<&str> {
    let path = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
    let path = path.split('?').next().unwrap_or_default();
    (!path.is_empty() && !path.contains(":memory:")).then_some(path)
}

/// The lock that makes one `serve` per SQLite file true: `<database file>.lock`, held until the
/// process ends (the OS lets go of it on any exit, kill -9 included). A second node on the same
/// file would release the first one's claims at its start and send them again, so it is refused
/// before it opens the database. PostgreSQL and in-memory databases need none.
fn lock_sqlite_file(url: &str) -> anyhow::Result<Option<std::fs::File>> {
    let Some(path) = sqlite_file(url).filter(|_| !is_postgres(url)) else {
        return Ok(None);
    };
    let lock_path = format!("{path}.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("cannot create the lock file {lock_path}"))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "database {path} is in use by another webhookd serve (it holds {lock_path}); stop \
             that process first, or give this one its own --database-url (several nodes need \
             PostgreSQL)"
        ),
        Err(std::fs::TryLockError::Error(error)) => {
            Err(anyhow::Error::new(error).context(format!("cannot lock {lock_path}")))
        }
    }
}

/// Payload bytes (KiB) a node's dispatcher holds in memory straight from ingestion. Beyond this,
/// new logs wait in the database and are claimed as room frees. (32 MiB cost 70 MB of RSS in
/// tickets and queues for no throughput gain over 8: docs/BENCHMARKS.md.)
const HANDOFF_KIB: usize = 8 * 1024;
/// Stalled attempts a node keeps open: four per sending slot, and at least this many, since a
/// stalled attempt costs a socket and a little memory, not CPU (300 hanging endpoints hold at most
/// 600 of them, two each).
const STALLED_PER_SLOT: usize = 4;
const STALLED_MIN: usize = 1_024;

/// The background tasks of a running node, each with a name for the log.
struct Tasks {
    set: JoinSet<(&'static str, anyhow::Result<()>)>,
}

impl Tasks {
    fn spawn(
        &mut self,
        name: &'static str,
        task: impl Future<Output = anyhow::Result<()>> + Send + 'static,
    ) {
        self.set.spawn(async move { (name, task.await) });
    }

    fn adopt(&mut self, name: &'static str, handle: tokio::task::JoinHandle<()>) {
        self.spawn(name, async move {
            match handle.await {
                Err(error) if error.is_panic() => {
                    Err(anyhow::Error::new(error).context("it panicked"))
                }
                _ => Ok(()),
            }
        });
    }
}

/// A running webhookd: its API address (when it serves the API) and its background tasks.
pub struct App {
    local_addr: Option<SocketAddr>,
    shutdown: CancellationToken,
    tasks: Tasks,
    store: Store,
    /// False once a background task stopped on its own (readiness fails).
    healthy: Arc<AtomicBool>,
    /// Span export, with `--otlp-endpoint`; flushed last, after every task has stopped.
    tracing: Option<Tracing>,
}

impl App {
    /// Starts the roles `config` asks for on an opened, migrated `store`, with the event catalog
    /// it names.
    pub async fn start(config: &Config, store: Store) -> anyhow::Result<App> {
        let catalog = load_catalog(config)?;
        Self::start_with(config, store, catalog).await
    }

    /// Starts the roles `config` asks for, with an event catalog already loaded.
    pub async fn start_with(
        config: &Config,
        store: Store,
        catalog: Arc<EventCatalog>,
    ) -> anyhow::Result<App> {
        config.check().map_err(anyhow::Error::msg)?;
        crate::telemetry::metrics::handle();
        let shutdown = CancellationToken::new();
        let mut tasks = Tasks { set: JoinSet::new() };
        let healthy = Arc::new(AtomicBool::new(true));
        let proxy = config.egress_proxy.clone();
        if let Some(proxy) = &proxy {
            // Its `Display` has no credentials.
            tracing::info!(egress_proxy = %proxy, "outbound requests go through the egress proxy");
        }
        let sender = Sender::new(config.allow_private_targets, proxy)
            .context("cannot build the HTTP client")?;
        let tracing = config.otlp_endpoint.as_deref().map(start_tracing).transpose()?;
        let tracer = tracing.as_ref().map(Tracing::tracer);
        let dispatch = DispatchConfig {
            concurrency: config.concurrency,
            stalled: (config.concurrency * STALLED_PER_SLOT).max(STALLED_MIN),
            shutdown_grace: config.shutdown_grace,
            policy: RetryPolicy { schedule: config.retry_schedule.clone() },
            breaker: config.breaker(),
            handoff_kib: HANDOFF_KIB,
            feed_from_database: config.run_worker,
            tracer: tracer.clone(),
        };
        let (dispatcher, handles) =
            Dispatcher::start(store.clone(), sender, dispatch, shutdown.clone());
        handles.into_iter().for_each(|handle| tasks.adopt("dispatcher", handle));
        let writers = if store.backend() == Backend::Postgres { 4 } else { 1 };
        let (ingestor, handles) = Ingestor::start(store.clone(), dispatcher.clone(), writers);
        handles.into_iter().for_each(|handle| tasks.adopt("ingestion", handle));
        let (store_, stop) = (store.clone(), shutdown.clone());
        tasks.spawn("database watcher", async move {
            maintenance::watch_database(store_, stop).await;
            Ok(())
        });
        if config.run_worker {
            let (store_, stop) = (store.clone(), shutdown.clone());
            tasks.spawn("recovery", async move {
                recovery::run(store_, stop).await;
                Ok(())
            });
            let (store_, stop) = (store.clone(), shutdown.clone());
            let retention = maintenance::Retention {
                rows: config.retention,
                payloads: config.payload_retention(),
            };
            tasks.spawn("retention", async move {
                maintenance::run_retention(store_, retention, stop).await;
                Ok(())
            });
            let (store_, stop) = (store.clone(), shutdown.clone());
            tasks.spawn("gauges", async move {
                maintenance::run_gauges(store_, stop).await;
                Ok(())
            });
            if let Some(listener) = store.spawn_listener(shutdown.clone()) {
                tasks.adopt("listener", listener);
            }
        }
        let sources = crate::source::SourceStates::default();
        let mut local_addr = None;
        if config.run_api {
            let listener = TcpListener::bind(config.listen)
                .await
                .with_context(|| format!("cannot listen on {}", config.listen))?;
            let bound = listener.local_addr()?;
            local_addr = Some(bound);
            let mut config = config.clone();
            config.public_url.get_or_insert_with(|| format!("http://{bound}"));
            let mut state =
                AppState::new(store.clone(), &config, dispatcher.clone(), ingestor.clone());
            state.catalog = catalog.clone();
            state.workers = config.run_worker.then(|| dispatcher.running_flag());
            state.healthy = healthy.clone();
            state.tracer = tracer;
            state.sources = sources.clone();
            let own = [config.public_url.clone().unwrap_or_default(), format!("http://{bound}")];
            state.destinations = Arc::new(Destinations::new(
                config.allow_private_targets,
                own.iter().map(String::as_str),
            ));
            let router = api::router(state);
            let limits = ServerLimits::from_config(&config);
            let stop = shutdown.clone();
            tasks.spawn("api", async move {
                server::serve(listener, router, limits, stop).await;
                Ok(())
            });
        }
        if config.run_worker && !config.sources.is_empty() {
            // A message's per-call `webhook_url` is held to the API's rule, this node's own
            // addresses included.
            let mut own = vec![config.public_url.clone().unwrap_or_default()];
            own.extend(local_addr.map(|addr| format!("http://{addr}")));
            let destinations = Arc::new(Destinations::new(
                config.allow_private_targets,
                own.iter().map(String::as_str),
            ));
            let intake = crate::source::Intake::new(ingestor, store.clone(), catalog, destinations);
            let handles = crate::source::start(
                &config.sources,
                config.source_max_unacked,
                &intake,
                &sources,
                &shutdown,
            );
            handles.into_iter().for_each(|handle| tasks.adopt("event source", handle));
        }
        Ok(App { local_addr, shutdown, tasks, store, healthy, tracing })
    }

    /// Where the API listens (useful with port 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// Cancel this token to begin a graceful shutdown.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Waits for every task to finish after a shutdown, then closes the store. A task that stops
    /// on its own before that is logged and makes the node unready; one that fails (the API
    /// server) stops the node.
    pub async fn wait(mut self) -> anyhow::Result<()> {
        let mut outcome = Ok(());
        while let Some(joined) = self.tasks.set.join_next().await {
            let (name, result) = match joined {
                Ok(named) => named,
                // Aborted with the runtime (a test ending): nothing to report.
                Err(error) if error.is_cancelled() => continue,
                Err(error) => ("a task", Err(anyhow::Error::new(error).context("it panicked"))),
            };
            if self.shutdown.is_cancelled() {
                if let Err(error) = result {
                    tracing::warn!(
                        task = name,
                        error = format!("{error:#}"),
                        "task failed while stopping"
                    );
                }
                continue;
            }
            self.healthy.store(false, Ordering::Relaxed);
            match result {
                Ok(()) => tracing::error!(
                    task = name,
                    "a background task stopped; this node is no longer ready"
                ),
                Err(error) => {
                    tracing::error!(
                        task = name,
                        error = format!("{error:#}"),
                        "a task failed; stopping"
                    );
                    self.shutdown.cancel();
                    if outcome.is_ok() {
                        outcome = Err(error);
                    }
                }
            }
        }
        self.store.close().await;
        if let Some(tracing) = self.tracing {
            tracing.shutdown().await;
        }
        outcome
    }
}

/// Span export to the OTLP/HTTP collector at `endpoint`, with a client of its own: the
/// collector is the operator's (often on loopback or a private network), so the destination
/// guard of customer deliveries does not apply.
fn start_tracing(endpoint: &str) -> anyhow::Result<Tracing> {
    let endpoint = crate::config::parse_otlp_endpoint(endpoint)
        .map_err(|e| anyhow::anyhow!("--otlp-endpoint: {e}"))?;
    let endpoint = endpoint.as_str();
    let client = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(5))
        .build()
        .context("cannot build the HTTP client of span export")?;
    let tracing = Tracing::start(endpoint, client)
        .with_context(|| format!("cannot export spans to --otlp-endpoint {endpoint}"))?;
    tracing::info!(endpoint, "exporting spans over OTLP/HTTP");
    Ok(tracing)
}

/// The event catalog of `config`: built in, `--event-catalog`, `--extra-event-types`. Its
/// schemas are compiled here, once; any problem is one line naming the file and the type.
pub fn load_catalog(config: &Config) -> anyhow::Result<Arc<EventCatalog>> {
    let catalog = EventCatalog::load(config.event_catalog.as_deref(), &config.extra_event_types)
        .map_err(anyhow::Error::msg)?;
    Ok(Arc::new(catalog))
}

/// `webhookd serve`: runs until SIGTERM or Ctrl-C.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    // Before the database: bad settings or a bad catalog stop here, having changed nothing.
    config.check().map_err(anyhow::Error::msg)?;
    let catalog = load_catalog(&config)?;
    let _one_node_per_file = lock_sqlite_file(&config.database_url)?;
    let store = open_sealed_store(&config.database_url, config.secret_key.as_deref()).await?;
    if let Some(created) = store.bootstrap_org("default").await? {
        println!(
            "Created organization {} (\"default\"). Its API key, shown only this once: {}",
            created.org.id, created.api_key
        );
    }
    let app = App::start_with(&config, store, catalog).await?;
    // Listening for the signals before the address is logged: a supervisor that stops the node
    // as soon as it is up must find the graceful path, not the default action of SIGTERM.
    let signals = Signals::register();
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
        signals.received().await;
        tracing::info!("shutting down");
        shutdown.cancel();
    });
    app.wait().await
}

/// SIGTERM (on Unix) and Ctrl-C, listened for from the moment this is made.
struct Signals {
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn register() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Self { terminate: signal(SignalKind::terminate()).ok() }
        }
        #[cfg(not(unix))]
        Self {}
    }

    async fn received(self) {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        if let Some(mut terminate) = self.terminate {
            tokio::select! {
                _ = ctrl_c => {},
                _ = terminate.recv() => {},
            }
            return;
        }
        let _ = ctrl_c.await;
    }
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
