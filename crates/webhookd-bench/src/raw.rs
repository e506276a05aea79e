//! The raw ceiling: how many POSTs per second this machine manages against the same receiver,
//! with the same payload and the same requests in flight as webhookd, but with nothing else —
//! no database, no signing, no scheduling. webhookd's delivery rate is reported as a fraction
//! of it, which makes numbers from different machines comparable.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::task::JoinSet;

/// Requests in the measurement: as many as webhookd will deliver, within bounds that keep it
/// long enough to be steady and short enough not to dominate the run.
pub fn request_count(expected: u64) -> u64 {
    expected.clamp(20_000, 200_000)
}

/// The measurement also ends after this long: with a slow receiver (--receiver-delay-ms) and
/// few requests in flight, `count` requests could otherwise take many minutes.
const TIME_LIMIT: Duration = Duration::from_secs(30);

/// POSTs `body` to `/raw` `count` times (or for at most 30 s) with `concurrency` requests in
/// flight; returns completed requests per second.
pub async fn measure(
    receiver: SocketAddr,
    body: String,
    count: u64,
    concurrency: usize,
) -> anyhow::Result<f64> {
    // The same client settings as webhookd's sender: keep-alive, no proxy, TCP_NODELAY.
    let client = reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(256)
        .pool_idle_timeout(Duration::from_secs(90))
        .build()?;
    let url = Arc::new(format!("http://{receiver}/raw"));
    // Cloning `Bytes` shares one buffer: no copy of the payload per request.
    let body = hyper::body::Bytes::from(body);
    let next = Arc::new(AtomicU64::new(0));
    let completed = Arc::new(AtomicU64::new(0));
    let workers = concurrency.min(usize::try_from(count).unwrap_or(usize::MAX));
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for _ in 0..workers {
        let (client, url, next) = (client.clone(), Arc::clone(&url), Arc::clone(&next));
        let (bytes, completed) = (body.clone(), Arc::clone(&completed));
        tasks.spawn(async move {
            // Each worker takes the next request number until all are taken or time is up.
            while next.fetch_add(1, Relaxed) < count && start.elapsed() < TIME_LIMIT {
                let response = client
                    .post(url.as_str())
                    .header("content-type", "application/json")
                    .body(bytes.clone())
                    .send()
                    .await?;
                response.error_for_status()?.bytes().await?;
                completed.fetch_add(1, Relaxed);
            }
            Ok::<_, reqwest::Error>(())
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.context("raw ceiling worker panicked")?.context("raw ceiling request failed")?;
    }
    Ok(completed.load(Relaxed) as f64 / start.elapsed().as_secs_f64())
}
