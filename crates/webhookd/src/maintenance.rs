//! Background housekeeping on worker nodes: retention (whole expired days dropped on
//! PostgreSQL, old rows deleted in batches elsewhere), payload retention (old payloads removed in
//! batches), and the gauges that need a database count.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::domain::clock::now_ms;
use crate::store::{Deleted, Expired, Store, StoreError, PAYLOAD_BATCH, RETENTION_BATCH};
use crate::telemetry::metrics;

/// How often the gauges are refreshed.
const GAUGE_INTERVAL: Duration = Duration::from_secs(5);
/// How soon a pass runs again after a day's partitions were too busy to drop: a long read holds
/// a day only for a moment, and waiting a whole interval (up to an hour) would let the history
/// grow past its retention.
const BUSY_RETRY: Duration = Duration::from_secs(5);
/// Busy passes in a row that leave out the row deletes and payload expiry (a minute of retries).
const BUSY_PASSES_BEFORE_THE_REST: u32 = 12;

/// How long one batch should hold the writer: short enough that a delivery waiting behind it
/// stays far inside its latency budget, long enough that a large backlog goes quickly.
const BATCH_TARGET: Duration = Duration::from_millis(25);
/// Bounds of a batch, in events.
const BATCH_MIN: i64 = 50;
const BATCH_MAX: i64 = 20_000;
/// The least pause between two batches; otherwise a pause half as long as the batch took, so the
/// writer is free a third of the time during a pass (each wait behind it stays one batch long;
/// a pause as long as the batch left 1,000,000 expired events on SQLite 93 s to go).
const PAUSE_MIN: Duration = Duration::from_millis(5);

/// How long rows and payloads are kept (`--retention`, `--payload-retention`).
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub rows: Duration,
    pub payloads: Duration,
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Makes the coming days' partitions and drops the expired ones (PostgreSQL), deletes what is
/// older than `retention.rows` row by row (SQLite, and PostgreSQL's default partitions), then
/// removes the payloads older than `retention.payloads`, then sleeps; repeats until `stop`. Rows
/// go before payloads, so an expiring history is not first rewritten without its payloads. It
/// runs at start and then every tenth of the shorter period (at least every second, at most every
/// hour), or after [`BUSY_RETRY`] when a day could not be dropped for its locks.
pub async fn run_retention(store: Store, retention: Retention, stop: CancellationToken) {
    let shorter = retention.rows.min(retention.payloads);
    let interval = (shorter / 10).clamp(Duration::from_secs(1), Duration::from_secs(3600));
    let mut busy_passes = 0;
    while !stop.is_cancelled() {
        let busy = drop_expired_days(&store, now_ms().saturating_sub(millis(retention.rows))).await;
        busy_passes = if busy { busy_passes + 1 } else { 0 };
        // While expired days wait for their drop, the rest of the pass waits too: payload
        // expiry would otherwise first rewrite every row about to be dropped (at a million
        // events, minutes of writes before the retry). Not for ever: payloads still expire if
        // the days stay busy.
        if busy_passes == 0 || busy_passes > BUSY_PASSES_BEFORE_THE_REST {
            delete_expired(&store, now_ms().saturating_sub(millis(retention.rows)), &stop).await;
            let cutoff = now_ms().saturating_sub(millis(retention.payloads));
            expire_payloads(&store, cutoff, &stop).await;
        }
        let pause = if busy { interval.min(BUSY_RETRY) } else { interval };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

/// The size of the next batch, from how long the last one took.
#[derive(Debug, Clone, Copy)]
struct Pace {
    limit: i64,
}

impl Pace {
    /// After a full batch of `self.limit` events that took `took`: the next limit, scaled toward
    /// [`BATCH_TARGET`] (at most doubled or halved at a time), and the pause before it.
    fn after(&mut self, took: Duration) -> Duration {
        let ratio = BATCH_TARGET.as_secs_f64() / took.as_secs_f64().max(1e-6);
        let scaled = (self.limit as f64 * ratio.clamp(0.5, 2.0)) as i64;
        self.limit = scaled.clamp(BATCH_MIN, BATCH_MAX);
        (took / 2).max(PAUSE_MIN)
    }
}

/// Calls `batch` with a limit until one comes back short of it (or `stop`), pausing between
/// batches so no pass holds the writer long; `count` takes each batch's result into the pass's
/// totals and says how many events it covered. `what` names the pass in the line an error leaves;
/// the next round tries again.
async fn in_batches<T, Batch>(
    stop: &CancellationToken,
    first: i64,
    what: &str,
    mut batch: impl FnMut(i64) -> Batch,
    mut count: impl FnMut(&T) -> u64,
) where
    Batch: std::future::Future<Output = Result<T, StoreError>>,
{
    let mut pace = Pace { limit: first };
    loop {
        let started = Instant::now();
        match batch(pace.limit).await {
            Ok(done) if count(&done) < pace.limit.unsigned_abs() || stop.is_cancelled() => return,
            Ok(_) => tokio::time::sleep(pace.after(started.elapsed())).await,
            Err(error) => {
                tracing::error!(error = %error, "{what} failed; will try again");
                return;
            }
        }
    }
}

/// Makes the coming days' partitions, then drops the days that ended before `cutoff`
/// (PostgreSQL; nothing on SQLite). True when a day was left because its tables were busy.
async fn drop_expired_days(store: &Store, cutoff: i64) -> bool {
    if let Err(error) = store.make_partitions(now_ms()).await {
        tracing::warn!(error = %error, "cannot make the coming days' partitions; will try again");
    }
    match store.drop_expired_days(cutoff).await {
        Ok(dropped) => {
            count_deleted(&dropped.deleted);
            dropped.busy
        }
        Err(error) => {
            tracing::error!(error = %error, "dropping expired days failed; will try again");
            false
        }
    }
}

fn count_deleted(deleted: &Deleted) {
    metrics::retention_deleted("events", deleted.events);
    metrics::retention_deleted("delivery_logs", deleted.delivery_logs);
    metrics::retention_deleted("attempts", deleted.attempts);
}

/// Payloads of events created before `cutoff`, batch by batch.
async fn expire_payloads(store: &Store, cutoff: i64, stop: &CancellationToken) {
    let mut total = Expired::default();
    let batch = |limit| store.expire_payloads_batch(cutoff, limit);
    in_batches(stop, PAYLOAD_BATCH, "payload expiry", batch, |expired: &Expired| {
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
    let batch = |limit| store.delete_expired_batch(cutoff, limit);
    in_batches(stop, RETENTION_BATCH, "retention", batch, |deleted: &Deleted| {
        total.events += deleted.events;
        total.delivery_logs += deleted.delivery_logs;
        total.attempts += deleted.attempts;
        count_deleted(deleted);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quick_batch_grows_and_a_slow_one_shrinks_within_bounds() {
        let mut pace = Pace { limit: 1_000 };
        assert_eq!(pace.after(Duration::from_millis(5)), Duration::from_millis(5));
        assert_eq!(pace.limit, 2_000, "at most doubled");
        pace.after(Duration::from_millis(100));
        assert_eq!(pace.limit, 1_000, "at most halved");
        pace.after(Duration::from_millis(50));
        assert_eq!(pace.limit, 500, "scaled toward the target");
        for _ in 0..20 {
            pace.after(Duration::from_secs(1));
        }
        assert_eq!(pace.limit, BATCH_MIN);
        for _ in 0..40 {
            pace.after(Duration::from_micros(10));
        }
        assert_eq!(pace.limit, BATCH_MAX);
        assert_eq!(pace.after(Duration::from_micros(10)), PAUSE_MIN, "a pause of at least");
    }
}
