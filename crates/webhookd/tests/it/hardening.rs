//! The limits that keep clients from holding the server or growing what it keeps. Each test is
//! the failure it prevents (issue 16).

use reqwest::Method;

use crate::backend_tests;
use crate::harness::{Backend, TestApp};
use crate::process::webhookd;

backend_tests!(unknown_methods_do_not_grow_the_metrics);

/// Each unknown method name used to make a new metric series, forever.
async fn unknown_methods_do_not_grow_the_metrics(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let marker = format!("HARDENING{}", uuid::Uuid::new_v4().simple()).to_uppercase();
    for (i, path) in ["/healthz", "/api/v1/agents", "/no/such/route"].iter().cycle().enumerate() {
        if i == 30 {
            break;
        }
        let method = Method::from_bytes(format!("{marker}{i}").as_bytes()).unwrap();
        let response = app.request(method, path).send().await.unwrap();
        assert!(response.status().is_client_error(), "{path}: {}", response.status());
    }
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(!metrics.contains(&marker), "a method name became a label");
    assert!(metrics.contains(r#"method="other""#), "unknown methods are counted as other");
}

/// Values that overflowed the clock or destroyed data are refused at start, naming the bound.
#[test]
fn out_of_range_settings_are_refused_at_start_with_one_line() {
    for (flag, value, expected) in [
        ("--retry-schedule", "5s,99999999999999h", "maximum of 30days"),
        ("--retention", "0s", "minimum of 1h"),
        ("--retention", "99999999999999h", "maximum of 10years"),
        ("--retry-window", "0s", "minimum of 1m"),
        ("--shutdown-grace", "99999999999999h", "maximum of 1h"),
    ] {
        let output = webhookd().args(["serve", flag, value]).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{flag} {value}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(stderr.trim_end().lines().count(), 1, "{flag} {value}: {stderr}");
        assert!(stderr.starts_with("error:"), "{flag} {value}: {stderr}");
        assert!(stderr.contains(flag), "{flag} {value}: {stderr}");
        assert!(stderr.contains(expected), "{flag} {value}: {stderr}");
    }
}
