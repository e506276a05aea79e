//! Background housekeeping on worker nodes: payload retention (old payloads removed), retention
//! (old events, logs and attempts deleted), both in small batches, and the gauges that need a
//! database count.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::domain::clock::now_ms;
use crate::store::{Deleted, Expired, Store, StoreError, PAYLOAD_BATCH, RETENTION_BATCH};
use crate::telemetry::metrics;

/// How often the gauges are refreshed.
const GAUGE_INTERVAL: Duration = Duration::from_secs(5);
/// Pause between two deletion batches, so retention never monopolises the writer.
const BATCH_PAUSE: Duration = Duration::from_millis(50);

/// How long rows and payloads are kept (`--retention`, `--payload-retention`).
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub rows: Duration,
    pub payloads: Duration,
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Removes the payloads older than `retention.payloads`, then deletes what is older than
/// `retention.rows`, then sleeps; repeats until `stop`. It runs at start and then every tenth of
/// the shorter period (at least every second, at most every hour). Each batch is a short
/// transaction with a pause after it, so neither pass holds the writer long.
pub async fn run_retention(store: Store, retention: Retention, stop: CancellationToken) {
    let shorter = retention.rows.min(retention.payloads);
    let interval = (shorter / 10).clamp(Duration::from_secs(1), Duration::from_secs(3600));
    while !stop.is_cancelled() {
        expire_payloads(&store, now_ms().saturating_sub(millis(retention.payloads)), &stop).await;
        delete_expired(&store, now_ms().saturating_sub(millis(retention.rows)), &stop).await;
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

/// Calls `batch` until one comes back short of `full` rows (or `stop`), pausing between batches
/// so no pass holds the writer long; `count` takes each batch's result into the pass's totals and
/// says how many rows it covered. `what` names the pass in the line an error leaves; the next
/// round tries again.
async fn in_batches<T, Batch>(
    stop: &CancellationToken,
    full: u64,
    what: &str,
    mut batch: impl FnMut() -> Batch,
    mut count: impl FnMut(&T) -> u64,
) where
    Batch: std::future::Future<Output = Result<T, StoreError>>,
{
    loop {
        match batch().await {
            Ok(done) if count(&done) < full || stop.is_cancelled() => return,
            Ok(_) => tokio::time::sleep(BATCH_PAUSE).await,
            Err(error) => {
                tracing::error!(error = %error, "{what} failed; will try again");
                return;
            }
        }
    }
}

/// Payloads of events created before `cutoff`, batch by batch.
async fn expire_payloads(store: &Store, cutoff: i64, stop: &CancellationToken) {
    let mut total = Expired::default();
    let batch = || store.expire_payloads_batch(cutoff);
    in_batches(stop, PAYLOAD_BATCH.unsigned_abs(), "payload expiry", batch, |expired: &Expired| {
        total.events += expired.events;
        total.ended += expired.ended;
        metrics::payloads_expired(expired.events);
        expired.events
    })
    .await;
    if total.events > 0 {
        tracing::info!(
            events = total.events,
            with_pending_logs_ended = total.ended,
            "payload retention removed expired payloads"
        );
    }
}

/// Events created before `cutoff` with their logs and attempts, batch by batch.
async fn delete_expired(store: &Store, cutoff: i64, stop: &CancellationToken) {
    let mut total = Deleted::default();
    let batch = || store.delete_expired_batch(cutoff);
    in_batches(stop, RETENTION_BATCH.unsigned_abs(), "retention", batch, |deleted: &Deleted| {
        total.events += deleted.events;
        total.delivery_logs += deleted.delivery_logs;
        total.attempts += deleted.attempts;
        metrics::retention_deleted("events", deleted.events);
        metrics::retention_deleted("delivery_logs", deleted.delivery_logs);
        metrics::retention_deleted("attempts", deleted.attempts);
        deleted.events
    })
    .await;
    if total.events > 0 {
        tracing::info!(
            events = total.events,
            delivery_logs = total.delivery_logs,
            attempts = total.attempts,
            "retention deleted expired rows"
        );
    }
}

/// How often a faulted database is asked whether it is well again, and how long one probe waits.
const PROBE_EVERY: Duration = Duration::from_millis(500);
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Waits for a database fault to be reported, then probes until it is gone (the store records
/// the recovery); repeats until `stop`. A healthy database costs nothing here.
pub async fn watch_database(store: Store, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = store.availability().faulted() => {}
        }
        while let Some(fault) = store.availability().fault() {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(PROBE_EVERY) => {}
            }
            match tokio::time::timeout(PROBE_TIMEOUT, store.probe(fault)).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    // The fault may have changed (a full disk became an unreachable database).
                    if let Some(now) = error.fault().filter(|now| *now != fault) {
                        store.availability().report(now);
                    }
                    tracing::debug!(%error, "the database is still faulted");
                }
                Err(_) => tracing::debug!("the database did not answer the probe in time"),
            }
        }
    }
}

/// Refreshes the gauges that come from the database until `stop`.
pub async fn run_gauges(store: Store, stop: CancellationToken) {
    while !stop.is_cancelled() {
        match store.due_count().await {
            Ok(due) => metrics::logs_due(due),
            Err(error) => tracing::warn!(error = %error, "cannot count due logs"),
        }
        match store.disabled_webhooks_count().await {
            Ok(disabled) => metrics::webhooks_disabled(disabled),
            Err(error) => tracing::warn!(error = %error, "cannot count disabled webhooks"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(GAUGE_INTERVAL) => {}
        }
    }
}
