//! Background housekeeping on worker nodes: retention (old events, logs and attempts deleted in
//! small batches) and the gauges that need a database count.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::domain::clock::now_ms;
use crate::store::{Deleted, Store, RETENTION_BATCH};
use crate::telemetry::metrics;

/// How often the gauges are refreshed.
const GAUGE_INTERVAL: Duration = Duration::from_secs(5);
/// Pause between two deletion batches, so retention never monopolises the writer.
const BATCH_PAUSE: Duration = Duration::from_millis(50);

/// Deletes what is older than `retention`, then sleeps; repeats until `stop`. It runs at start and
/// then every tenth of the retention period (at least every second, at most every hour).
pub async fn run_retention(store: Store, retention: Duration, stop: CancellationToken) {
    let interval = (retention / 10).clamp(Duration::from_secs(1), Duration::from_secs(3600));
    let retention_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    while !stop.is_cancelled() {
        let cutoff = now_ms().saturating_sub(retention_ms);
        let mut total = Deleted::default();
        loop {
            match store.delete_expired_batch(cutoff).await {
                Ok(deleted) => {
                    total.events += deleted.events;
                    total.delivery_logs += deleted.delivery_logs;
                    total.attempts += deleted.attempts;
                    metrics::retention_deleted("events", deleted.events);
                    metrics::retention_deleted("delivery_logs", deleted.delivery_logs);
                    metrics::retention_deleted("attempts", deleted.attempts);
                    if deleted.events < RETENTION_BATCH.unsigned_abs() || stop.is_cancelled() {
                        break;
                    }
                    tokio::time::sleep(BATCH_PAUSE).await;
                }
                Err(error) => {
                    tracing::error!(error = %error, "retention failed; will try again");
                    break;
                }
            }
        }
        if total.events > 0 {
            tracing::info!(
                events = total.events,
                delivery_logs = total.delivery_logs,
                attempts = total.attempts,
                "retention deleted expired rows"
            );
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
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
