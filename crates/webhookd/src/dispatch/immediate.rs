//! Sending outside the dispatcher loop, for requests that answer with the result: the test
//! endpoint and Bland's resend/create. The caller has claimed the logs; results are recorded
//! before this returns.

use futures::stream::{self, StreamExt};

use super::plan::{self, decide, Job};
use super::retry::RetryPolicy;
use super::sender::Sender;
use crate::domain::SendType;
use crate::store::{AttemptRecord, ClaimedLog, Store, StoreError};

/// Sends each claimed log once as a `send_type` attempt, at most `concurrency` at a time, and
/// records every attempt. Returns each job with its recorded attempt, in the order of `claimed`
/// minus skipped logs.
pub async fn send_now(
    store: &Store,
    sender: &Sender,
    policy: &RetryPolicy,
    claimed: Vec<ClaimedLog>,
    send_type: SendType,
    concurrency: usize,
) -> Result<Vec<(Job, AttemptRecord)>, StoreError> {
    let (jobs, skips) = plan::prepare(store, claimed, Some(send_type)).await?;
    let results: Vec<(Job, AttemptRecord)> = stream::iter(jobs)
        .map(|job| async move {
            let sent = sender.send(&job.outgoing).await;
            let record = decide(&job, &sent, policy, rand::random());
            plan::observe(&job, &record);
            (job, record)
        })
        .buffered(concurrency.max(1))
        .collect()
        .await;
    let attempts: Vec<AttemptRecord> = results.iter().map(|(_, record)| record.clone()).collect();
    store.record(&attempts, &skips).await?;
    if attempts.iter().any(|a| a.next_attempt_at.is_some()) {
        store.wake_dispatcher();
    }
    Ok(results)
}
