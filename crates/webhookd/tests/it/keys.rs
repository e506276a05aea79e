//! `webhookd org list`, `key create`, `key list` and `key revoke`: the one-line fix for a lost
//! API key, and clear errors for ids and prefixes that name nothing.

use std::process::Output;

use serde_json::Value;

use crate::harness::{postgres_base_url, Backend, TestDb};
use crate::process::{webhookd, ServeProcess};

fn sqlite_url(dir: &tempfile::TempDir) -> String {
    format!("sqlite://{}", dir.path().join("keys.db").display())
}

fn run(args: &[&str], database: &str) -> Output {
    webhookd().args(args).args(["--database", database]).output().unwrap()
}

/// Runs a command that must succeed; its stdout as JSON objects, one per line.
fn json_lines(args: &[&str], database: &str) -> Vec<Value> {
    let output = run(args, database);
    assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8(output.stdout).unwrap();
    stdout.lines().map(|line| serde_json::from_str(line).unwrap()).collect()
}

/// Runs a command that must fail with `code` and one line on stderr; that line.
fn failure(args: &[&str], database: &str, code: i32) -> String {
    let output = run(args, database);
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(output.status.code(), Some(code), "{args:?}: {stderr}");
    assert!(output.stdout.is_empty(), "{args:?}");
    assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
    assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
    stderr
}

/// The status of `GET /api/v1/organization` with `key`, and the organization id it answers.
fn whoami(server: &ServeProcess, key: &str) -> (u16, Value) {
    let url = server.url("/api/v1/organization");
    let key = key.to_string();
    std::thread::spawn(move || {
        tokio::runtime::Runtime::new().unwrap().block_on(async {
            let response = reqwest::Client::new().get(url).bearer_auth(key).send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap()["data"]["id"].clone())
        })
    })
    .join()
    .unwrap()
}

fn field<'a>(value: &'a Value, name: &str) -> &'a str {
    value[name].as_str().unwrap_or_else(|| panic!("no {name} in {value}"))
}

/// Each backend's database for a process test; PostgreSQL only when enabled.
fn databases(test: impl Fn(&str)) {
    let dir = tempfile::tempdir().unwrap();
    test(&sqlite_url(&dir));
    if postgres_base_url().is_some() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let db = runtime.block_on(TestDb::new(Backend::Postgres));
        test(&db.url);
    }
}

#[test]
fn org_list_prints_one_json_object_per_organization_oldest_first() {
    databases(|database| {
        assert!(json_lines(&["org", "list"], database).is_empty(), "a new database has none");
        let acme = json_lines(&["org", "create", "--name", "Acme"], database).remove(0);
        let globex = json_lines(&["org", "create", "--name", "Globex"], database).remove(0);

        let listed = json_lines(&["org", "list"], database);
        let names: Vec<&str> = listed.iter().map(|org| field(org, "name")).collect();
        assert_eq!(names, ["Acme", "Globex"]);
        assert_eq!(field(&listed[0], "org_id"), field(&acme, "org_id"));
        assert_eq!(field(&listed[1], "org_id"), field(&globex, "org_id"));
        for org in &listed {
            assert_eq!(org.as_object().unwrap().len(), 3, "{org}");
            let created_at = field(org, "created_at");
            assert!(created_at.ends_with('Z') && created_at.len() == 24, "{created_at}");
        }
        let output = run(&["org", "list"], database);
        let stdout = String::from_utf8(output.stdout).unwrap();
        assert!(stdout.starts_with(r#"{"org_id": ""#), "fields in the documented order: {stdout}");
    });
}

#[test]
fn key_create_makes_a_key_that_works_against_a_running_server() {
    databases(|database| {
        let mut server = ServeProcess::start(database, &[]);
        let org = json_lines(&["org", "list"], database).remove(0);
        let org_id = field(&org, "org_id");

        let output = run(&["key", "create", "--org", org_id], database);
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let stdout = String::from_utf8(output.stdout).unwrap();
        assert_eq!(stdout.lines().count(), 1, "{stdout}");
        assert!(stdout.starts_with(r#"{"org_id": ""#), "printed like org create: {stdout}");
        let created: Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(created.as_object().unwrap().len(), 2, "{created}");
        assert_eq!(field(&created, "org_id"), org_id);
        let key = field(&created, "api_key");
        assert!(key.starts_with("whk_"), "{key}");

        let (status, id) = whoami(&server, key);
        assert_eq!(status, 200);
        assert_eq!(id, org_id);
        let keys = json_lines(&["key", "list", "--org", org_id], database);
        assert_eq!(keys.len(), 2, "the first key and the new one: {keys:?}");
        assert_eq!(field(&keys[1], "key_prefix"), &key[..10]);
        assert!(server.terminate().success());
    });
}

#[test]
fn a_revoked_key_is_refused_by_a_fresh_server_and_the_others_still_work() {
    databases(|database| {
        let first = json_lines(&["org", "create", "--name", "Acme"], database).remove(0);
        let org_id = field(&first, "org_id");
        let revoked_key = field(&first, "api_key");
        let second = json_lines(&["key", "create", "--org", org_id], database).remove(0);

        let revoked = json_lines(&["key", "revoke", "--key-prefix", &revoked_key[..10]], database);
        assert_eq!(revoked.len(), 1, "{revoked:?}");
        assert_eq!(field(&revoked[0], "key_prefix"), &revoked_key[..10]);
        assert_eq!(field(&revoked[0], "org_id"), org_id);

        let server = ServeProcess::start(database, &[]);
        assert_eq!(whoami(&server, revoked_key).0, 401);
        assert_eq!(whoami(&server, field(&second, "api_key")).0, 200);
        let left = json_lines(&["key", "list"], database);
        assert_eq!(left.len(), 1, "{left:?}");
    });
}

#[test]
fn an_unknown_org_or_key_prefix_is_one_line_naming_the_command_that_lists_them() {
    let dir = tempfile::tempdir().unwrap();
    let database = sqlite_url(&dir);
    let created = json_lines(&["org", "create", "--name", "Acme"], &database).remove(0);

    let unknown = "0193a1b2-0000-7000-8000-000000000000";
    let stderr = failure(&["key", "create", "--org", unknown], &database, 1);
    assert!(stderr.contains(&format!("no organization {unknown}")), "{stderr}");
    assert!(stderr.contains("`webhookd org list`"), "{stderr}");
    let stderr = failure(&["key", "create", "--org", "acme"], &database, 2);
    assert!(stderr.contains("is a UUID, as `webhookd org list` prints it"), "{stderr}");

    let stderr = failure(&["key", "revoke", "--key-prefix", "whk_AAAAAA"], &database, 1);
    assert!(stderr.contains("no API key starts with whk_AAAAAA"), "{stderr}");
    assert!(stderr.contains("`webhookd key list`"), "{stderr}");
    let whole_key = field(&created, "api_key");
    let stderr = failure(&["key", "revoke", "--key-prefix", whole_key], &database, 2);
    assert!(stderr.contains("give only the key's first 10 characters"), "{stderr}");
    let stderr = failure(&["key", "revoke", "--key-prefix", "abc"], &database, 2);
    assert!(stderr.contains("a key prefix is whk_ and 6 more characters"), "{stderr}");
    assert_eq!(json_lines(&["key", "list"], &database).len(), 1, "nothing was revoked");
}

#[test]
fn key_commands_take_their_flags_from_the_environment_too() {
    let dir = tempfile::tempdir().unwrap();
    let database = sqlite_url(&dir);
    let created = json_lines(&["org", "create", "--name", "Acme"], &database).remove(0);
    let output = webhookd()
        .args(["key", "create"])
        .env("WEBHOOKD_DATABASE", &database)
        .env("WEBHOOKD_ORG", field(&created, "org_id"))
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let output = webhookd()
        .args(["key", "revoke"])
        .env("WEBHOOKD_DATABASE", &database)
        .env("WEBHOOKD_KEY_PREFIX", &field(&created, "api_key")[..10])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}
