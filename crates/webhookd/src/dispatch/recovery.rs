//! Runs large recoveries in the background, page by page. Every worker node runs this loop; a
//! recovery's cursor advances in the same transaction as its page, so a restart resumes it and
//! two nodes never queue the same page.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::store::{Recovery, Store, StoreError, Window};

/// How often running recoveries are looked for when nobody announced one.
const RECHECK: Duration = Duration::from_secs(10);

pub async fn run(store: Store, stop: CancellationToken) {
    let wake = store.recovery_notifier();
    while !stop.is_cancelled() {
        let notified = wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        match store.running_recoveries().await {
            Ok(recoveries) => {
                for recovery in recoveries {
                    if let Err(error) = advance(&store, &recovery, &stop).await {
                        tracing::error!(error = %error, recovery.id = %recovery.id, "recovery failed; will resume");
                    }
                }
            }
            Err(error) => tracing::error!(error = %error, "cannot read running recoveries"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = &mut notified => {}
            _ = tokio::time::sleep(RECHECK) => {}
        }
    }
}

/// Queues the rest of one recovery, until it completes, another node takes over, or `stop`.
async fn advance(
    store: &Store,
    recovery: &Recovery,
    stop: &CancellationToken,
) -> Result<(), StoreError> {
    let webhooks = store.webhooks_by_id(&[recovery.webhook_id]).await?;
    let Some(webhook) = webhooks.get(&recovery.webhook_id).filter(|w| w.settings.enabled) else {
        tracing::info!(recovery.id = %recovery.id, "webhook gone or disabled; recovery ends");
        return store.complete_recovery(recovery.id).await;
    };
    let window = Window { since: recovery.since, until: recovery.until };
    let mut after = recovery.cursor;
    while !stop.is_cancelled() {
        let (queued, next) = store.recover_page(webhook, window, after, Some(recovery.id)).await?;
        tracing::debug!(recovery.id = %recovery.id, queued, "recovery page queued");
        match next {
            Some(cursor) => after = Some(cursor),
            None => break,
        }
    }
    Ok(())
}
