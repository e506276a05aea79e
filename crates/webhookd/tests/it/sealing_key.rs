//! The sealing key is checked against the database at start: a different `--secret-key`, or a
//! replaced or missing key file, is refused with one line naming the fix, instead of a server
//! that starts and then answers 500 on the first secret it cannot open.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use webhookd::app::open_sealed_store;
use webhookd::domain::sealing::Sealer;

use crate::backend_tests;
use crate::harness::{postgres_base_url, Backend, TestDb, TEST_SECRET_KEY};
use crate::process::{webhookd, ServeProcess};

backend_tests!(
    a_new_database_records_the_first_key_and_refuses_another,
    a_database_from_before_the_check_is_judged_by_its_sealed_secrets,
);

/// A key other than [`TEST_SECRET_KEY`].
const OTHER_KEY: &str = "b3RoZXIta2V5LXRoYXQtaXMtMzItYnl0ZXMtbG9uZyE=";

async fn a_new_database_records_the_first_key_and_refuses_another(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = open_sealed_store(&db.url, Some(TEST_SECRET_KEY)).await.unwrap();
    store.close().await;
    let again = open_sealed_store(&db.url, Some(TEST_SECRET_KEY)).await.unwrap();
    again.close().await;

    let error = open_sealed_store(&db.url, Some(OTHER_KEY)).await.err().unwrap();
    let message = format!("{error:#}");
    assert!(message.starts_with("the --secret-key does not match"), "{message}");
    assert!(message.contains("start with the original key"), "{message}");
}

async fn a_database_from_before_the_check_is_judged_by_its_sealed_secrets(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = open_sealed_store(&db.url, Some(TEST_SECRET_KEY)).await.unwrap();
    store.create_org("before the check").await.unwrap();
    store.close().await;
    // What a database sealed before the check existed looks like: sealed secrets, no check value.
    assert_eq!(execute(&db, "DELETE FROM meta").await, 1);

    let error = open_sealed_store(&db.url, Some(OTHER_KEY)).await.err().unwrap();
    assert!(format!("{error:#}").contains("does not match"), "{error:#}");
    assert_eq!(execute(&db, "DELETE FROM meta").await, 0, "a refused key records nothing");

    let store = open_sealed_store(&db.url, Some(TEST_SECRET_KEY)).await.unwrap();
    store.close().await;
    assert!(open_sealed_store(&db.url, Some(OTHER_KEY)).await.is_err(), "the check was recorded");
    assert_eq!(execute(&db, "DELETE FROM meta").await, 1, "one check value");
}

/// Runs one statement on the test database behind webhookd's back; the rows it touched.
async fn execute(db: &TestDb, sql: &str) -> u64 {
    match db.backend {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
            let done = sqlx::query(sql).execute(&pool).await.unwrap().rows_affected();
            pool.close().await;
            done
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
            let done = sqlx::query(sql).execute(&pool).await.unwrap().rows_affected();
            pool.close().await;
            done
        }
    }
}

/// `webhookd` without the test suite's `WEBHOOKD_SECRET_KEY`: SQLite uses its key file.
fn with_key_file() -> Command {
    let mut command = webhookd();
    command.env_remove("WEBHOOKD_SECRET_KEY");
    command
}

/// Runs a command that should fail at start; a command still running after 30 s (a server that
/// started) fails the test instead of hanging it.
fn refused(command: &mut Command) -> String {
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the command started instead of refusing its key");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let Output { status, stdout, stderr } = child.wait_with_output().unwrap();
    let stderr = String::from_utf8(stderr).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stdout.is_empty(), "nothing on stdout: {}", String::from_utf8_lossy(&stdout));
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    stderr
}

fn serve(command: &mut Command, database: &str) -> String {
    refused(command.args(["serve", "--listen", "127.0.0.1:0", "--database", database]))
}

#[test]
fn serve_refuses_a_replaced_or_missing_key_file_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sealed.db");
    let database = format!("sqlite://{}", path.display());
    let key_file = dir.path().join("sealed.db.key");
    let output = with_key_file()
        .args(["org", "create", "--name", "Acme", "--database", &database])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let original = std::fs::read_to_string(&key_file).unwrap();

    std::fs::write(&key_file, format!("{}\n", Sealer::generate_key())).unwrap();
    let stderr = serve(&mut with_key_file(), &database);
    assert!(
        stderr.starts_with(&format!("error: the key file {} does not match", key_file.display())),
        "{stderr}"
    );
    assert!(stderr.contains("put the original key file back"), "{stderr}");
    let stderr =
        refused(with_key_file().args(["org", "create", "--name", "B", "--database", &database]));
    assert!(stderr.contains("does not match"), "{stderr}");

    std::fs::remove_file(&key_file).unwrap();
    let stderr = serve(&mut with_key_file(), &database);
    assert!(
        stderr.starts_with(&format!("error: the key file {} is missing", key_file.display())),
        "{stderr}"
    );
    assert!(!key_file.exists(), "no new key is made for a database sealed with a lost one");

    // The fix the message names: the original key, as a file or as --secret-key.
    let server = ServeProcess::start(&database, &["--secret-key", original.trim()]);
    drop(server);
    std::fs::write(&key_file, &original).unwrap();
    let output = with_key_file()
        .args(["org", "create", "--name", "C", "--database", &database])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}

#[test]
fn serve_and_key_create_refuse_a_different_secret_key_on_postgres() {
    if postgres_base_url().is_none() {
        return;
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let db = runtime.block_on(TestDb::new(Backend::Postgres));
    let output = webhookd()
        .args(["org", "create", "--name", "Acme", "--database", &db.url])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let created: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let org_id = created["org_id"].as_str().unwrap();

    let stderr = serve(webhookd().env("WEBHOOKD_SECRET_KEY", OTHER_KEY), &db.url);
    assert!(stderr.starts_with("error: the --secret-key does not match the key"), "{stderr}");
    assert!(stderr.contains("start with the original key"), "{stderr}");
    let stderr = refused(webhookd().args([
        "key",
        "create",
        "--org",
        org_id,
        "--database",
        &db.url,
        "--secret-key",
        OTHER_KEY,
    ]));
    assert!(stderr.contains("the --secret-key does not match"), "{stderr}");

    let mut server = ServeProcess::start(&db.url, &[]);
    assert!(server.terminate().success(), "the original key still starts the server");
}
