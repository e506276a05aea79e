//! The OTLP exporter's HTTP client: webhookd's own reqwest client (one HTTP stack in the binary)
//! driven on the Tokio runtime. The SDK's batch processor exports from a plain thread, where an
//! async client cannot run, so each request is spawned onto the runtime and awaited from there.
//! A collector that cannot be reached or refuses spans is reported, at most once a minute.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};

use crate::domain::clock::now_ms;

/// Export failures are logged at most this often (a collector that is down fails every batch).
const WARN_EVERY_MS: i64 = 60_000;

#[derive(Debug, Clone)]
pub struct OnRuntime {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
    /// When an export failure was last logged (unix ms).
    warned_at: Arc<AtomicI64>,
}

impl OnRuntime {
    pub fn new(client: reqwest::Client, runtime: tokio::runtime::Handle) -> Self {
        Self { client, runtime, warned_at: Arc::new(AtomicI64::new(i64::MIN / 2)) }
    }

    fn warn(&self, problem: &str) {
        let now = now_ms();
        let last = self.warned_at.load(Ordering::Relaxed);
        if now - last >= WARN_EVERY_MS
            && self
                .warned_at
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                problem,
                "spans could not be exported to --otlp-endpoint; they are dropped"
            );
        }
    }
}

#[async_trait::async_trait]
impl HttpClient for OnRuntime {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        let exchange = self.runtime.spawn(async move {
            let response = client.execute(reqwest::Request::try_from(request)?).await?;
            let mut answer = Response::builder().status(response.status());
            if let Some(headers) = answer.headers_mut() {
                *headers = response.headers().clone();
            }
            // A collector answers with a small protobuf message (or an error status).
            Ok::<_, HttpError>(answer.body(response.bytes().await?)?)
        });
        let answer = exchange.await.map_err(HttpError::from).and_then(|answer| answer);
        match &answer {
            Ok(response) if !response.status().is_success() => {
                self.warn(&format!("the collector answered {}", response.status()));
            }
            Ok(_) => {}
            Err(error) => self.warn(&error.to_string()),
        }
        answer
    }
}
