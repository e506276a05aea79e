//! The `webhookd` binary itself: flags, environment variables, exit codes, first start.

use std::io::BufRead;

use crate::process::{webhookd, ServeProcess};

fn sqlite_url(dir: &tempfile::TempDir) -> String {
    format!("sqlite://{}", dir.path().join("cli.db").display())
}

#[test]
fn help_is_available_on_every_command() {
    for args in [
        &["--help"][..],
        &["serve", "--help"],
        &["migrate", "--help"],
        &["org", "create", "--help"],
        &["org", "list", "--help"],
        &["key", "create", "--help"],
        &["key", "list", "--help"],
        &["key", "revoke", "--help"],
        &["--version"],
    ] {
        let output = webhookd().args(args).output().unwrap();
        assert!(output.status.success(), "{args:?}");
        assert!(!output.stdout.is_empty(), "{args:?}");
    }
    let help = webhookd().args(["serve", "--help"]).output().unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    for flag in [
        "--listen",
        "--database",
        "--allow-private-targets",
        "--retry-schedule",
        "--retry-window",
        "--retention",
        "--no-worker",
        "--no-api",
        "WEBHOOKD_LISTEN",
        "WEBHOOKD_RETRY_SCHEDULE",
    ] {
        assert!(help.contains(flag), "serve --help lacks {flag}");
    }
    for (args, texts) in [
        (&["key", "create", "--help"][..], &["--org", "WEBHOOKD_ORG", "WEBHOOKD_DATABASE"][..]),
        (&["key", "revoke", "--help"], &["--key-prefix", "WEBHOOKD_KEY_PREFIX", "60 s"]),
        (&["key", "--help"], &["60 s"]),
        (&["org", "list", "--help"], &["--database", "WEBHOOKD_DATABASE"]),
    ] {
        let help = webhookd().args(args).output().unwrap();
        let help = String::from_utf8(help.stdout).unwrap();
        for text in texts {
            assert!(help.contains(text), "{args:?} --help lacks {text}: {help}");
        }
    }
}

#[test]
fn no_command_prints_the_usage_and_exits_2() {
    for args in [&[][..], &["org"]] {
        let output = webhookd().args(args).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert!(stderr.contains("Usage:"), "{args:?}: {stderr}");
        assert!(output.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn bad_flags_are_one_clear_line_and_a_non_zero_exit() {
    for args in [
        &["--bogus"][..],
        &["serve", "--retry-schedule", "soon"],
        &["serve", "--retry-window", "a while"],
        &["serve", "--listen", "not-an-address"],
        &["org", "create"],
        &["frobnicate"],
    ] {
        let output = webhookd().args(args).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("error:"), "{args:?}: {stderr}");
    }
}

#[test]
fn an_unreachable_or_unknown_database_is_one_line_and_exit_1() {
    for url in [
        "postgres://postgres:secret@127.0.0.1:1/none",
        "mysql://localhost/x",
        "sqlite:///nonexistent-dir/x/y.db",
    ] {
        let output = webhookd().args(["migrate", "--database", url]).output().unwrap();
        assert_eq!(output.status.code(), Some(1), "{url}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(stderr.trim_end().lines().count(), 1, "{url}: {stderr}");
        assert!(stderr.starts_with("error: "), "{url}: {stderr}");
        assert!(!stderr.contains("secret"), "the password leaked: {stderr}");
    }
}

#[test]
fn an_unreachable_postgres_is_its_cause_once_not_a_pool_timeout() {
    let closed = "postgres://postgres:secret@127.0.0.1:1/none";
    for args in [
        &["migrate", "--database", closed][..],
        &["org", "list", "--database", closed],
        &["serve", "--listen", "127.0.0.1:0", "--database", closed],
    ] {
        let output = webhookd().args(args).output().unwrap();
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("error: cannot "), "{args:?}: {stderr}");
        assert!(
            stderr.contains(" database postgres://postgres:***@127.0.0.1:1/none: "),
            "{args:?}: {stderr}"
        );
        assert_eq!(stderr.matches("Connection refused").count(), 1, "{args:?}: {stderr}");
        assert!(!stderr.contains("timed out"), "{args:?}: {stderr}");
    }

    let Some(base) = crate::harness::postgres_base_url() else { return };
    let mut unknown = url::Url::parse(&base).unwrap();
    unknown.set_path("/webhookd_no_such_database");
    let output = webhookd().args(["migrate", "--database", unknown.as_str()]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let cause = r#"database "webhookd_no_such_database" does not exist"#;
    assert_eq!(stderr.matches(cause).count(), 1, "{stderr}");
}

#[test]
fn org_create_prints_exactly_one_json_object() {
    let dir = tempfile::tempdir().unwrap();
    let output = webhookd()
        .args(["org", "create", "--name", "Acme"])
        .env("WEBHOOKD_DATABASE", sqlite_url(&dir))
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stdout.starts_with(r#"{"org_id": ""#), "{stdout}");
    let value: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let object = value.as_object().unwrap();
    assert_eq!(object.len(), 2);
    assert!(uuid::Uuid::parse_str(object["org_id"].as_str().unwrap()).is_ok());
    assert!(object["api_key"].as_str().unwrap().starts_with("whk_"));

    let output = webhookd().args(["org", "create", "--name", "  "]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
}

#[test]
fn first_serve_prints_an_api_key_once_and_sigterm_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let database = sqlite_url(&dir);

    let mut first = ServeProcess::start(&database, &[]);
    let status = first.terminate();
    assert!(status.success(), "SIGTERM exit: {status:?}");
    let printed: Vec<String> = first.stdout.take().unwrap().lines().map(Result::unwrap).collect();
    assert_eq!(printed.len(), 1, "{printed:?}");
    let key = printed[0].rsplit(' ').next().unwrap().to_string();
    assert!(key.starts_with("whk_"), "{printed:?}");

    let mut second = ServeProcess::start(&database, &[]);
    let addr = second.addr.clone();
    let response = std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let client = reqwest::Client::new();
            client
                .get(format!("http://{addr}/api/v1/organization"))
                .bearer_auth(key)
                .send()
                .await
                .unwrap()
                .status()
        })
    })
    .join()
    .unwrap();
    assert_eq!(response.as_u16(), 200, "the first key still works after a restart");
    assert!(second.terminate().success());
    assert_eq!(second.stdout.take().unwrap().lines().count(), 0, "no second key is printed");
}

#[test]
fn a_second_serve_on_one_sqlite_file_is_refused_until_the_first_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let database = sqlite_url(&dir);
    let mut first = ServeProcess::start(&database, &[]);

    let output = webhookd()
        .args(["serve", "--listen", "127.0.0.1:0", "--database", &database])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("in use by another webhookd serve"), "{stderr}");
    assert!(stderr.contains("cli.db.lock") && stderr.contains("PostgreSQL"), "{stderr}");
    assert!(output.stdout.is_empty(), "no organization was created: {:?}", output.stdout);

    // A killed node leaves its lock file behind, but not the lock: the next one starts.
    first.kill();
    let mut second = ServeProcess::start(&database, &[]);
    assert!(second.terminate().success());
}
