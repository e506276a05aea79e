//! Faults of the write path: a 202 means the event and its logs are committed, whatever the
//! database does. A full disk (a real, small tmpfs), a failing member of a group commit, and an
//! unreachable database (a connection cut by a proxy between webhookd and PostgreSQL).

use std::collections::HashSet;
use std::process::Command;
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::backend_tests;
use crate::harness::{
    postgres_base_url, retry_on_deadlock, send, Backend, TestApp, TestDb, TEST_SECRET_KEY,
};
use crate::process::ServeProcess;
use crate::proxy::Proxy;
use crate::receiver::Receiver;

backend_tests!(one_failing_member_of_a_group_commit_fails_alone);

/// Whether this machine lets the test mount a tmpfs in a mount namespace of its own (root, or
/// an unprivileged user namespace). Under CI it must: a skipped fault test proves nothing.
fn can_mount_tmpfs() -> bool {
    let works = Command::new("unshare")
        .args([
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
            "mount -t tmpfs -o size=1M tmpfs /mnt",
        ])
        .status()
        .is_ok_and(|status| status.success());
    if !works && std::env::var_os("CI").is_some_and(|ci| !ci.is_empty() && ci != "false") {
        panic!("CI is set but this test cannot mount a tmpfs (it needs root and unshare)");
    }
    works
}

/// Fills the filesystem at `dir` (seen from outside the namespace) with one file; returns it.
fn fill(dir: &std::path::Path) -> std::path::PathBuf {
    use std::io::Write as _;
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    while file.write_all(&chunk).is_ok() {}
    let _ = file.sync_all();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_answers_507_never_202_and_writes_resume_when_space_returns() {
    if !can_mount_tmpfs() {
        eprintln!("skipped: cannot mount a tmpfs here (needs root and unshare)");
        return;
    }
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}/webhookd.db", dir.path().display());
    // The database lives on an 8 MiB tmpfs mounted over `dir` inside webhookd's own mount
    // namespace; the test reaches that filesystem through /proc/<pid>/root.
    let mut command = Command::new("unshare");
    command
        .args(["-m", "--propagation", "private", "sh", "-c"])
        .arg(r#"mount -t tmpfs -o size=8M tmpfs "$1" && shift && exec "$@""#)
        .arg("sh")
        .arg(dir.path())
        .arg(env!("CARGO_BIN_EXE_webhookd"))
        .args(["serve", "--listen", "127.0.0.1:0", "--database", &database])
        .arg("--allow-private-targets")
        .env("WEBHOOKD_SECRET_KEY", TEST_SECRET_KEY)
        .env_remove("RUST_LOG");
    let mut node = ServeProcess::spawn(command);
    let inside = std::path::PathBuf::from(format!("/proc/{}/root", node.child.id()))
        .join(dir.path().strip_prefix("/").unwrap());
    let key = first_api_key(&mut node);
    let client = reqwest::Client::new();
    let api = |path: &str| node.url(&format!("/api/v1{path}"));
    let (_, agent) =
        send(client.post(api("/agents")).bearer_auth(&key).json(&json!({"name": "a"}))).await;
    let agent = agent["data"]["id"].as_str().unwrap().to_string();
    let (_, hook) =
        send(client.post(api(&format!("/agents/{agent}/webhooks"))).bearer_auth(&key).json(
            &json!({"name": "h", "webhook_url": receiver.url("/h"), "events": ["call.completed"]}),
        ))
        .await;
    let hook = hook["data"]["id"].as_str().unwrap().to_string();

    let filler = fill(&inside);
    let events = api(&format!("/agents/{agent}/events"));
    let statuses = post_events(&client, &events, &key, "full", 300).await;
    let accepted: Vec<&String> =
        statuses.iter().filter(|(status, _)| *status == 202).map(|(_, call)| call).collect();
    let refused = statuses.iter().filter(|(status, _)| *status == 507).count();
    assert_eq!(accepted.len() + refused, statuses.len(), "only 202 or 507: {statuses:?}");
    assert!(refused > 0, "the disk never filled up");
    let (code, ready) = send(client.get(node.url("/readyz"))).await;
    assert_eq!(code, 503, "{ready}");
    assert!(ready["reason"].as_str().unwrap().contains("out of space"), "{ready}");

    std::fs::remove_file(filler).unwrap();
    wait_until_ready(&client, &node).await;
    let after = post_events(&client, &events, &key, "after", 20).await;
    assert!(after.iter().all(|(status, _)| *status == 202), "{after:?}");

    // Every 202 stored its event and its log: each accepted call has its log, and nothing else.
    let mut stored = HashSet::new();
    for page in 1.. {
        let url = format!(
            "{}?per_page=100&page={page}",
            api(&format!("/agents/{agent}/webhooks/{hook}/logs"))
        );
        let (code, body) = send(client.get(url).bearer_auth(&key)).await;
        assert_eq!(code, 200, "{body}");
        let logs = body["data"]["logs"].as_array().unwrap();
        if logs.is_empty() {
            break;
        }
        stored.extend(logs.iter().map(|log| log["call_id"].as_str().unwrap().to_string()));
    }
    let expected: HashSet<String> =
        accepted.into_iter().cloned().chain(after.iter().map(|(_, call)| call.clone())).collect();
    assert_eq!(stored, expected, "the logs stored are those of the accepted events");
}

/// The API key a first `serve` prints on an empty database.
fn first_api_key(node: &mut ServeProcess) -> String {
    use std::io::BufRead as _;
    let stdout = node.stdout.as_mut().unwrap();
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    line.split_whitespace().last().unwrap().to_string()
}

async fn wait_until_ready(client: &reqwest::Client, node: &ServeProcess) {
    for _ in 0..400 {
        if client.get(node.url("/readyz")).send().await.is_ok_and(|r| r.status() == 200) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the node never became ready again");
}

/// Posts `count` events at once (call ids `<tag>-<n>`); their statuses, with the call ids.
async fn post_events(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    tag: &str,
    count: usize,
) -> Vec<(u16, String)> {
    let requests = (0..count).map(|n| {
        let call = format!("{tag}-{n}");
        let body = json!({"event": "call.completed", "call_id": call, "data": {"transcript": "x".repeat(4000)}});
        let request = client.post(url).bearer_auth(key).json(&body);
        async move {
            let (status, body) = send(request).await;
            if status != 202 {
                assert!(body["code"].is_string(), "an error in the envelope: {body}");
            }
            (status, call)
        }
    });
    futures::future::join_all(requests).await
}

/// A poisoned event (a trigger refuses its row) in a group of concurrent requests: it alone
/// fails; every other request is answered 202 and stored with its log.
async fn one_failing_member_of_a_group_commit_fails_alone(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let agent = app.create_agent().await;
    let hook = app
        .create_webhook(
            &agent,
            json!({"webhook_url": "http://127.0.0.1:9/nowhere", "max_retries": 0}),
        )
        .await;
    poison_events(app.db(), "poison").await;
    let url = app.url(&format!("/api/v1/agents/{agent}/events"));
    let requests = (0..100).map(|n| {
        let call = if n % 20 == 7 { "poison".to_string() } else { format!("ok-{n}") };
        let body = json!({"event": "call.completed", "call_id": call, "data": {"n": n}});
        let request = app.client.post(&url).bearer_auth(&app.api_key).json(&body);
        async move { (send(request).await, call) }
    });
    let answers = futures::future::join_all(requests).await;
    for ((status, body), call) in &answers {
        if call == "poison" {
            assert_eq!(*status, 500, "{body}");
        } else {
            assert_eq!(*status, 202, "{call}: {body}");
        }
    }
    let (status, page) = app
        .call(
            Method::GET,
            &format!(
                "/api/v1/agents/{agent}/webhooks/{}/logs?per_page=100",
                hook["id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(page["data"]["pagination"]["total"], 95, "every accepted event has its log");
    let calls: HashSet<&str> = page["data"]["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["call_id"].as_str().unwrap())
        .collect();
    assert!(!calls.contains("poison"));
}

/// Makes every insert of an event with this call id fail inside its transaction.
async fn poison_events(db: &TestDb, call_id: &str) {
    match db.backend {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
            sqlx::query(&format!(
                "CREATE TRIGGER poison BEFORE INSERT ON events WHEN NEW.call_id = '{call_id}'
                 BEGIN SELECT RAISE(ABORT, 'injected fault'); END"
            ))
            .execute(&pool)
            .await
            .unwrap();
            pool.close().await;
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
            sqlx::raw_sql(&format!(
                "CREATE FUNCTION poison() RETURNS trigger AS $$ BEGIN
                   IF NEW.call_id = '{call_id}' THEN RAISE EXCEPTION 'injected fault'; END IF;
                   RETURN NEW; END $$ LANGUAGE plpgsql;
                 CREATE TRIGGER poison BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION poison();"
            ))
            .execute(&pool)
            .await
            .unwrap();
            pool.close().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_answers_503_with_retry_after_and_recovers() {
    if postgres_base_url().is_none() {
        return;
    }
    webhookd::telemetry::init(webhookd::cli::LogFormat::Text);
    let db = TestDb::new(Backend::Postgres).await;
    let (proxy, through_proxy) = Proxy::before_postgres(&db.url).await;
    let mut config = crate::harness::test_config(&db);
    config.database_url = through_proxy;
    let store =
        webhookd::app::open_sealed_store(&config.database_url, config.secret_key.as_deref())
            .await
            .unwrap();
    let key = store.create_org("outage").await.unwrap().api_key;
    let app = webhookd::app::App::start(&config, store).await.unwrap();
    let base = format!("http://{}", app.local_addr().unwrap());
    let stop = app.shutdown_token();
    tokio::spawn(app.wait());
    let client = reqwest::Client::new();
    let (status, agent) = send(
        client.post(format!("{base}/api/v1/agents")).bearer_auth(&key).json(&json!({"name": "a"})),
    )
    .await;
    assert_eq!(status, 201, "{agent}");
    let agent = agent["data"]["id"].as_str().unwrap().to_string();
    let event = json!({"event": "call.completed", "call_id": "c1", "data": {}});
    let events = format!("{base}/api/v1/agents/{agent}/events");

    proxy.cut().await;
    // Readiness learns of the outage by itself, within its own timeout.
    let (status, ready) = send(client.get(format!("{base}/readyz"))).await;
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["reason"], "database unreachable", "{ready}");
    // Known down: the API answers at once, in the envelope, with when to try again.
    let response = client.post(&events).bearer_auth(&key).json(&event).send().await.unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "DATABASE_UNAVAILABLE", "{body}");
    assert!(body["message"].as_str().unwrap().contains("idempotency"), "{body}");
    let (status, bland) =
        send(client.get(format!("{base}/v1/postcall/webhooks/c1")).header("authorization", &key))
            .await;
    assert_eq!(status, 503, "{bland}");
    assert_eq!(bland["errors"][0]["error"], "database_unavailable", "{bland}");

    proxy.restore().await;
    for _ in 0..400 {
        if client.get(format!("{base}/readyz")).send().await.is_ok_and(|r| r.status() == 200) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let (status, body) = send(client.post(&events).bearer_auth(&key).json(&event)).await;
    assert_eq!(status, 202, "{body}");
    stop.cancel();
}

/// PostgreSQL out of space: its `disk_full` error (SQLSTATE 53100), raised where the insert of
/// the event runs, is a 507 for every request of the group, never a 202 nor a 500, and readiness
/// says so until a write succeeds again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_out_of_space_answers_507_and_readiness_says_so() {
    if postgres_base_url().is_none() {
        return;
    }
    let app = TestApp::spawn(Backend::Postgres).await;
    let agent = app.create_agent().await;
    let pool = sqlx::PgPool::connect(&app.db().url).await.unwrap();
    // The disk is "full" while `disk_full` holds a row: space comes back by a DELETE, not by
    // DDL on the partitioned `events` that could deadlock with webhookd's own queries.
    sqlx::raw_sql(
        "CREATE TABLE disk_full (since BIGINT);
         INSERT INTO disk_full VALUES (0);
         CREATE FUNCTION full_disk() RETURNS trigger AS $$ BEGIN
           IF EXISTS (SELECT 1 FROM disk_full) THEN
             RAISE EXCEPTION 'could not extend file: No space left on device' USING ERRCODE = 'disk_full';
           END IF;
           RETURN NEW;
         END $$ LANGUAGE plpgsql;",
    )
    .execute(&pool)
    .await
    .unwrap();
    retry_on_deadlock(|| {
        sqlx::query(
            "CREATE TRIGGER full_disk BEFORE INSERT ON events
             FOR EACH ROW EXECUTE FUNCTION full_disk()",
        )
        .execute(&pool)
    })
    .await;
    let url = app.url(&format!("/api/v1/agents/{agent}/events"));
    let requests = (0..20).map(|n| {
        let body = json!({"event": "call.completed", "call_id": format!("c{n}"), "data": {}});
        send(app.client.post(&url).bearer_auth(&app.api_key).json(&body))
    });
    for (status, body) in futures::future::join_all(requests).await {
        assert_eq!(status, 507, "{body}");
        assert_eq!(body["code"], "STORAGE_FULL", "{body}");
    }
    let (status, ready) = send(app.client.get(app.url("/readyz"))).await;
    assert_eq!(status, 503, "{ready}");
    sqlx::query("DELETE FROM disk_full").execute(&pool).await.unwrap();
    pool.close().await;
    for _ in 0..400 {
        if app.client.get(app.url("/readyz")).send().await.is_ok_and(|r| r.status() == 200) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let (status, body) = app
        .call(
            Method::POST,
            &format!("/api/v1/agents/{agent}/events"),
            Some(json!({"event": "call.completed", "data": {}})),
        )
        .await;
    assert_eq!(status, 202, "{body}");
}

/// SQLite locked by another process past the busy timeout: 503 `DATABASE_UNAVAILABLE`, nothing
/// stored; once the lock is gone, writes go through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_database_locked_by_another_process_answers_503_and_stores_nothing() {
    use sqlx::Connection as _;
    let app = TestApp::spawn(Backend::Sqlite).await;
    let agent = app.create_agent().await;
    let mut holder = sqlx::SqliteConnection::connect(&app.db().url).await.unwrap();
    sqlx::query("BEGIN EXCLUSIVE").execute(&mut holder).await.unwrap();
    let (status, body) = app
        .call(
            Method::POST,
            &format!("/api/v1/agents/{agent}/events"),
            Some(json!({"event": "call.completed", "call_id": "locked", "data": {}})),
        )
        .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["code"], "DATABASE_UNAVAILABLE", "{body}");
    sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();
    holder.close().await.unwrap();
    let mut accepted = None;
    for _ in 0..400 {
        let (status, body) = app
            .call(
                Method::POST,
                &format!("/api/v1/agents/{agent}/events"),
                Some(json!({"event": "call.completed", "call_id": "after", "data": {}})),
            )
            .await;
        if status == 202 {
            accepted = Some(body);
            break;
        }
        assert_eq!(status, 503, "{body}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(accepted.is_some(), "writes never resumed");
    let (_, bland) = send(
        app.client
            .get(app.url("/v1/postcall/webhooks/locked"))
            .header("authorization", &app.api_key),
    )
    .await;
    assert_eq!(
        bland["errors"][0]["error"], "invalid_parameter",
        "the refused event was not stored: {bland}"
    );
}
