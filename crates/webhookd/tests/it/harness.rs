//! Test harness: the real app on port 0 with its own database (a temp SQLite file, or a private
//! schema in the PostgreSQL database named by `WEBHOOKD_TEST_POSTGRES_URL`, else in one this
//! test process makes on the machine's PostgreSQL).

use std::io::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use reqwest::{Client, Method, RequestBuilder};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use webhookd::app::{open_sealed_store, App};
use webhookd::config::Config;
use webhookd::store::Store;

pub const POSTGRES_URL_VAR: &str = "WEBHOOKD_TEST_POSTGRES_URL";
/// The server key of PostgreSQL test nodes (SQLite ones make their own key file).
pub const TEST_SECRET_KEY: &str = "dGVzdC1rZXktdGhhdC1pcy0zMi1ieXRlcy1sb25nISE=";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs an async test body once per backend: `backend_tests!(name_one, name_two);` expects
/// `async fn name_one(backend: Backend)` and makes `name_one::sqlite` and `name_one::postgres`.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::harness::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if $crate::harness::postgres_base_url().is_some() {
                    super::$name($crate::harness::Backend::Postgres).await
                }
            }
        }
    )*};
}

/// The machine's own PostgreSQL, used when [`POSTGRES_URL_VAR`] is unset and it answers.
const LOCAL_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432";
/// Databases this harness makes on the machine's PostgreSQL: `webhookd_test_<pid>`.
const RUN_DATABASE_PREFIX: &str = "webhookd_test_";

/// The base PostgreSQL URL: [`POSTGRES_URL_VAR`], else a database of this test process's own on
/// the machine's PostgreSQL when one answers on 127.0.0.1:5432 (so a plain `cargo test` tests
/// both backends), else `None` with a notice (a panic under CI).
pub fn postgres_base_url() -> Option<String> {
    static FOUND: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    if let Some(url) = FOUND.get_or_init(find_postgres) {
        return Some(url.clone());
    }
    // Under CI a PostgreSQL test never skips: a run that tested one backend must not pass.
    if std::env::var_os("CI").is_some_and(|ci| !ci.is_empty() && ci != "false") {
        panic!("CI is set but {POSTGRES_URL_VAR} is not: set it to a PostgreSQL database URL");
    }
    // Written to the stderr handle itself: libtest captures `eprintln!` of a passing test, and
    // a skip must show in the test output.
    let _ = writeln!(
        std::io::stderr(),
        "skipped: PostgreSQL test (no PostgreSQL on 127.0.0.1:5432; set {POSTGRES_URL_VAR})"
    );
    None
}

fn find_postgres() -> Option<String> {
    if let Ok(url) = std::env::var(POSTGRES_URL_VAR) {
        return (!url.is_empty()).then_some(url);
    }
    let local = SocketAddr::from(([127, 0, 0, 1], 5432));
    std::net::TcpStream::connect_timeout(&local, Duration::from_secs(1)).ok()?;
    // A runtime of its own on a thread of its own: the caller may already be inside one.
    let made = std::thread::spawn(|| {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        runtime.block_on(make_run_database())
    });
    match made.join().expect("the database maker panicked") {
        Ok(url) => Some(url),
        Err(error) => {
            let _ = writeln!(
                std::io::stderr(),
                "the local PostgreSQL did not take a test database: {error}"
            );
            None
        }
    }
}

/// Creates `webhookd_test_<pid>` for this process, after dropping those of processes that have
/// ended (a test run cannot clean up after itself: libtest has no end-of-run hook).
async fn make_run_database() -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    let admin = sqlx::PgPool::connect(&format!("{LOCAL_POSTGRES}/postgres")).await?;
    let existing: Vec<(String,)> =
        sqlx::query_as("SELECT datname FROM pg_database WHERE datname LIKE $1")
            .bind(format!("{RUN_DATABASE_PREFIX}%"))
            .fetch_all(&admin)
            .await?;
    for (name,) in existing {
        let pid = name.trim_start_matches(RUN_DATABASE_PREFIX);
        let ended =
            pid.parse::<u32>().is_ok() && !std::path::Path::new(&format!("/proc/{pid}")).exists();
        if ended {
            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&admin)
                .await?;
        }
    }
    let name = format!("{RUN_DATABASE_PREFIX}{}", std::process::id());
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&admin).await?;
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&admin).await?;
    admin.close().await;
    Ok(format!("{LOCAL_POSTGRES}/{name}"))
}

/// A database for one test. SQLite: a file in a temp dir removed on drop. PostgreSQL: a fresh
/// schema, selected through the connection's `search_path`.
pub struct TestDb {
    pub url: String,
    pub backend: Backend,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub async fn new(backend: Backend) -> TestDb {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("webhookd.db").display());
                TestDb { url, backend, _dir: Some(dir) }
            }
            Backend::Postgres => {
                let base = postgres_base_url().expect("PostgreSQL URL");
                let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
                let admin = sqlx::PgPool::connect(&base).await.expect("connect to PostgreSQL");
                sqlx::query(&format!("CREATE SCHEMA {schema}"))
                    .execute(&admin)
                    .await
                    .expect("create test schema");
                admin.close().await;
                let separator = if base.contains('?') { '&' } else { '?' };
                let url = format!("{base}{separator}options=-c%20search_path%3D{schema}");
                TestDb { url, backend, _dir: None }
            }
        }
    }
}

/// The store of a test database, sealed with the key every test process uses.
pub async fn open_test_store(url: &str) -> Store {
    open_sealed_store(url, Some(TEST_SECRET_KEY)).await.expect("open store")
}

/// A running app with an organization and its API key.
pub struct TestApp {
    pub addr: SocketAddr,
    pub api_key: String,
    pub org_id: String,
    pub store: Store,
    pub client: Client,
    _db: TestDb,
    shutdown: CancellationToken,
}

/// A node started by [`TestApp::spawn_on`]; stopped when dropped.
pub struct Node {
    shutdown: CancellationToken,
}

impl Drop for Node {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Tests deliver to a local receiver and retry quickly.
pub fn test_config(db: &TestDb) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().expect("address"),
        database_url: db.url.clone(),
        allow_private_targets: true,
        retry_schedule: vec![Duration::from_millis(50)],
        shutdown_grace: Duration::from_secs(2),
        secret_key: (db.backend == Backend::Postgres).then(|| TEST_SECRET_KEY.to_string()),
        ..Config::default()
    }
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> TestApp {
        Self::spawn_with(backend, |_| {}).await
    }

    pub async fn spawn_with(backend: Backend, configure: impl FnOnce(&mut Config)) -> TestApp {
        webhookd::telemetry::init(webhookd::cli::LogFormat::Text);
        let db = TestDb::new(backend).await;
        let mut config = test_config(&db);
        configure(&mut config);
        let store =
            open_sealed_store(&db.url, config.secret_key.as_deref()).await.expect("open store");
        let created = store.create_org("test org").await.expect("create org");
        let app = App::start(&config, store.clone()).await.expect("start app");
        let addr = app.local_addr().expect("API address");
        let shutdown = app.shutdown_token();
        tokio::spawn(app.wait());
        TestApp {
            addr,
            api_key: created.api_key,
            org_id: created.org.id.to_string(),
            store,
            client: Client::new(),
            _db: db,
            shutdown,
        }
    }

    /// Another node (its own `App` and store) on this app's database, e.g. a worker-only one.
    pub async fn spawn_on(&self, configure: impl FnOnce(&mut Config)) -> Node {
        let mut config = test_config(&self._db);
        configure(&mut config);
        let store = open_sealed_store(&self._db.url, config.secret_key.as_deref())
            .await
            .expect("open store");
        let app = App::start(&config, store).await.expect("start node");
        let shutdown = app.shutdown_token();
        tokio::spawn(app.wait());
        Node { shutdown }
    }

    pub fn db(&self) -> &TestDb {
        &self._db
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// A request with this app's API key.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, self.url(path)).bearer_auth(&self.api_key)
    }

    /// Sends a request with this app's key and returns the status and the JSON body.
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self.request(method, path);
        if let Some(body) = body {
            request = request.json(&body);
        }
        send(request).await
    }

    /// The API key of a second organization in the same database.
    pub async fn other_org_key(&self) -> String {
        self.store.create_org("other org").await.expect("create org").api_key
    }

    pub async fn create_agent(&self) -> String {
        let (status, body) = self
            .call(Method::POST, "/api/v1/agents", Some(serde_json::json!({"name": "Sales"})))
            .await;
        assert_eq!(status, 201, "{body}");
        body["data"]["id"].as_str().expect("agent id").to_string()
    }

    /// A webhook under `agent_id` with the given extra fields merged over valid defaults.
    pub async fn create_webhook(&self, agent_id: &str, fields: Value) -> Value {
        let mut body = serde_json::json!({
            "name": "Primary",
            "webhook_url": "https://example.com/hooks",
            "events": ["call.completed"],
        });
        merge(&mut body, fields);
        let (status, body) = self
            .call(Method::POST, &format!("/api/v1/agents/{agent_id}/webhooks"), Some(body))
            .await;
        assert_eq!(status, 201, "{body}");
        body["data"].clone()
    }
}

impl TestApp {
    /// Ingests one event for `agent_id`; returns `data` of the 202.
    pub async fn ingest(&self, agent_id: &str, event: Value) -> Value {
        let (status, body) = self
            .call(Method::POST, &format!("/api/v1/agents/{agent_id}/events"), Some(event))
            .await;
        assert_eq!(status, 202, "{body}");
        body["data"].clone()
    }

    /// Ingests `events` in one batch request, asserting its 202; returns the response's `data`.
    pub async fn ingest_batch(&self, agent_id: &str, events: Vec<Value>) -> Value {
        let (status, body) = self
            .call(
                Method::POST,
                &format!("/api/v1/agents/{agent_id}/events/batch"),
                Some(serde_json::json!({"events": events})),
            )
            .await;
        assert_eq!(status, 202, "{body}");
        body["data"].clone()
    }

    /// Polls a log until its status is `status`; returns the log with its attempts.
    pub async fn wait_for_log(&self, agent: &str, webhook: &str, log: &str, status: &str) -> Value {
        let path = format!("/api/v1/agents/{agent}/webhooks/{webhook}/logs/{log}");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (code, body) = self.call(Method::GET, &path, None).await;
            assert_eq!(code, 200, "{body}");
            if body["data"]["status"] == status {
                return body["data"].clone();
            }
            assert!(Instant::now() < deadline, "log never became {status}: {body}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

pub async fn send(request: RequestBuilder) -> (u16, Value) {
    let response = request.send().await.expect("request sent");
    let status = response.status().as_u16();
    let text = response.text().await.expect("response body");
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("response is not JSON (status {status}): {text:?}"));
    (status, body)
}

pub fn merge(target: &mut Value, fields: Value) {
    if let (Some(target), Value::Object(fields)) = (target.as_object_mut(), fields) {
        target.extend(fields);
    }
}

/// Asserts the error envelope: `success: false`, the code, and a message.
#[track_caller]
pub fn assert_error(status: u16, body: &Value, expected_status: u16, code: &str) {
    assert_eq!(status, expected_status, "{body}");
    assert_eq!(body["success"], false, "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
}

/// Runs `work` (one statement or one transaction of the test's own, beside a running webhookd)
/// until PostgreSQL does not pick it as a deadlock victim. DDL on the partitioned history locks the
/// parent and every day; a webhookd query that joins the tables in the other order is a deadlock
/// the server breaks by aborting one side after `deadlock_timeout`, and the test's side is retried.
pub async fn retry_on_deadlock<T, F, Fut>(mut work: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, sqlx::Error>>,
{
    for _ in 0..20 {
        match work().await {
            Ok(value) => return value,
            Err(sqlx::Error::Database(error)) if error.code().as_deref() == Some("40P01") => {}
            Err(error) => panic!("{error}"),
        }
    }
    panic!("still a deadlock victim after 20 tries")
}
