//! `webhookd listen`: a local receiver for trying webhookd out (like `stripe listen`). It answers
//! 200 to everything and prints one line per request — webhook id, event, size, and whether the
//! signature verifies — followed by the pretty-printed body.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::Router;

use crate::signing;

pub async fn run(port: u16, secret: Option<String>) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .with_context(|| format!("cannot listen on port {port}"))?;
    let addr = listener.local_addr()?;
    let check = if secret.is_some() {
        "verifying signatures"
    } else {
        "not verifying signatures: no --secret"
    };
    println!("Listening on http://{addr}/ ({check}). Ctrl-C to stop.");
    let _ = std::io::stdout().flush();
    let app = Router::new().fallback(receive).with_state(Arc::new(secret));
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("listener failed")
}

async fn receive(
    State(secret): State<Arc<Option<String>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", describe(&method, &uri, &headers, &body, secret.as_deref()));
    let _ = writeln!(out, "{}", pretty(&body));
    let _ = out.flush();
    StatusCode::OK
}

/// The one-line summary of a request.
pub fn describe(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    secret: Option<&str>,
) -> String {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let id = header("webhook-id");
    let event = match header("x-webhook-event") {
        "" => serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("event").and_then(|e| e.as_str()).map(str::to_string))
            .unwrap_or_else(|| "-".into()),
        event => event.to_string(),
    };
    let signature = match secret {
        None => "not checked",
        Some(secret) => {
            let verified = header("webhook-timestamp").parse::<i64>().is_ok_and(|timestamp| {
                signing::verify_standard(secret, id, timestamp, body, header("webhook-signature"))
            });
            if verified {
                "verified"
            } else {
                "INVALID"
            }
        }
    };
    let id = if id.is_empty() { "-" } else { id };
    format!(
        "{method} {uri} webhook-id={id} event={event} size={}B signature: {signature}",
        body.len()
    )
}

fn pretty(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|value| serde_json::to_string_pretty(&value).ok())
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed(secret: &str, body: &[u8]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("webhook-id", "evt_1".parse().unwrap());
        headers.insert("webhook-timestamp", "1700000000".parse().unwrap());
        headers.insert("x-webhook-event", "call.completed".parse().unwrap());
        let signature = signing::standard_signature(&[secret], "evt_1", 1_700_000_000, body);
        headers.insert("webhook-signature", signature.parse().unwrap());
        headers
    }

    #[test]
    fn the_line_names_the_id_event_size_and_verdict() {
        let body = br#"{"a":1}"#;
        let headers = signed("whsec_c2VjcmV0", body);
        let uri: Uri = "/hook".parse().unwrap();
        let line = describe(&Method::POST, &uri, &headers, body, Some("whsec_c2VjcmV0"));
        assert_eq!(
            line,
            "POST /hook webhook-id=evt_1 event=call.completed size=7B signature: verified"
        );
        let line = describe(&Method::POST, &uri, &headers, body, Some("whsec_b3RoZXI="));
        assert!(line.ends_with("signature: INVALID"));
        let line = describe(&Method::POST, &uri, &headers, body, None);
        assert!(line.ends_with("signature: not checked"));
        assert_eq!(pretty(body), "{\n  \"a\": 1\n}");
    }
}
