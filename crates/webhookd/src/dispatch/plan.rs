//! From claimed logs to ready-to-send jobs (loading payloads, webhooks and secrets in one query
//! each), and from an attempt's result to what is recorded.

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Bytes;
use uuid::Uuid;

use super::retry::{AttemptOutcome, RetryPolicy, Verdict};
use super::sender::{Outgoing, Sent};
use crate::domain::clock::now_ms;
use crate::domain::webhook::{MaxRetries, Timeout};
use crate::domain::{Authorization, HttpMethod, LogStatus, SendType};
use crate::store::{AttemptRecord, ClaimedLog, SkipRecord, Store, StoreError};

/// A claimed log ready to send.
#[derive(Debug, Clone)]
pub struct Job {
    pub log: ClaimedLog,
    pub outgoing: Outgoing,
    pub send_type: SendType,
    pub max_retries: i64,
}

/// Loads what the claimed logs need. `send_type` forces the attempt's kind (explicit sends:
/// test, resend, create); otherwise each log's next kind is used. Logs whose webhook is gone, or
/// disabled for an automatic send, are closed as skipped instead of sent.
pub async fn prepare(
    store: &Store,
    claimed: Vec<ClaimedLog>,
    send_type: Option<SendType>,
) -> Result<(Vec<Job>, Vec<SkipRecord>), StoreError> {
    let event_ids = unique(claimed.iter().map(|log| log.event_id));
    let webhook_ids = unique(claimed.iter().filter_map(|log| log.webhook_id));
    let org_ids = unique(claimed.iter().filter(|log| log.webhook_id.is_none()).map(|l| l.org_id));
    let payloads = store.payloads(&event_ids).await?;
    let webhooks = store.webhooks_by_id(&webhook_ids).await?;
    let org_secrets = store.org_secrets_by_id(&org_ids).await?;
    let now = now_ms();

    let mut jobs = Vec::with_capacity(claimed.len());
    let mut skips = Vec::new();
    let payloads: HashMap<Uuid, Bytes> =
        payloads.into_iter().map(|(id, payload)| (id, Bytes::from(payload))).collect();
    for log in claimed {
        let skip = |error: &str| SkipRecord {
            log_id: log.id,
            status: LogStatus::Skipped,
            error: error.to_string(),
        };
        let Some(body) = payloads.get(&log.event_id).cloned() else {
            skips.push(SkipRecord {
                status: LogStatus::Failed,
                ..skip("Event payload no longer exists")
            });
            continue;
        };
        let send_type = send_type.unwrap_or_else(|| log.next_send_type());
        let explicit = matches!(send_type, SendType::Test | SendType::Resend | SendType::Create);
        let message_id = log.event_id.to_string();
        let (outgoing, max_retries) = match log.webhook_id {
            Some(webhook_id) => {
                let Some(webhook) = webhooks.get(&webhook_id) else {
                    skips.push(skip("Webhook no longer exists"));
                    continue;
                };
                if !webhook.settings.enabled && !explicit {
                    skips.push(skip("Webhook is disabled"));
                    continue;
                }
                let settings = &webhook.settings;
                let outgoing = Outgoing {
                    method: settings.http_method,
                    url: log.url.clone(),
                    message_id,
                    event_type: log.event_type.clone(),
                    body,
                    secrets: webhook.secrets.active_at(now).into_iter().map(String::from).collect(),
                    authorization: settings.authorization.clone(),
                    custom_headers: settings.custom_headers.as_slice().to_vec(),
                    timeout: settings.timeout.duration(),
                };
                (outgoing, i64::from(settings.max_retries.get()))
            }
            None => {
                let Some(secrets) = org_secrets.get(&log.org_id) else {
                    skips.push(SkipRecord {
                        status: LogStatus::Failed,
                        ..skip("Organization no longer exists")
                    });
                    continue;
                };
                let outgoing = Outgoing {
                    method: HttpMethod::Post,
                    url: log.url.clone(),
                    message_id,
                    event_type: log.event_type.clone(),
                    body,
                    secrets: secrets.active_at(now).into_iter().map(String::from).collect(),
                    authorization: Authorization::None,
                    custom_headers: Vec::new(),
                    timeout: Timeout::DEFAULT.duration(),
                };
                (outgoing, i64::from(MaxRetries::DEFAULT.get()))
            }
        };
        jobs.push(Job { log, outgoing, send_type, max_retries });
    }
    Ok((jobs, skips))
}

/// What an attempt means for its log: the retry policy applied to the outcome. `unit` in
/// `[0, 1)` picks the jitter. Test sends are never retried.
pub fn decide(job: &Job, sent: &Sent, policy: &RetryPolicy, unit: f64) -> AttemptRecord {
    let outcome = sent.outcome();
    let counts_as_retry = job.send_type == SendType::Retry;
    let retries_used = job.log.retries + i64::from(counts_as_retry);
    let max_retries = if job.send_type == SendType::Test { 0 } else { job.max_retries };
    let verdict = policy.verdict(&outcome, retries_used, max_retries, unit);
    let (status, next_attempt_at, disable_webhook) = match verdict {
        Verdict::Success => (LogStatus::Success, None, None),
        Verdict::RetryIn(delay) => {
            let delay_ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
            (LogStatus::Pending, Some(sent.sent_at + sent.duration_ms + delay_ms), None)
        }
        Verdict::Exhausted => (LogStatus::Failed, None, None),
        Verdict::Gone => (
            LogStatus::Failed,
            None,
            job.log.webhook_id.map(|_| "Endpoint answered 410 Gone".to_string()),
        ),
    };
    let error = sent.error.clone().or_else(|| match outcome {
        AttemptOutcome::Failed { status: Some(code), .. } => Some(format!("HTTP {code}")),
        _ => None,
    });
    AttemptRecord {
        log_id: job.log.id,
        webhook_id: job.log.webhook_id,
        send_type: job.send_type,
        sent_at: sent.sent_at,
        response_code: sent.status.map(i64::from),
        duration_ms: sent.duration_ms,
        response_body: sent.body.clone(),
        response_headers: sent.headers.clone(),
        error,
        status,
        next_attempt_at,
        counts_as_retry,
        disable_webhook,
    }
}

/// Counts a finished attempt in the metrics and the log (at debug level: one line per attempt).
pub fn observe(job: &Job, record: &AttemptRecord) {
    let success = record.status == LogStatus::Success;
    let duration = Duration::from_millis(record.duration_ms.unsigned_abs());
    let since_ingest = success.then(|| {
        Duration::from_millis(
            (record.sent_at + record.duration_ms - job.log.created_at).unsigned_abs(),
        )
    });
    crate::telemetry::metrics::attempt(success, record.response_code, duration, since_ingest);
    tracing::debug!(
        log.id = %job.log.id,
        event.id = %job.log.event_id,
        webhook.id = ?job.log.webhook_id,
        send_type = job.send_type.as_str(),
        status = ?record.response_code,
        duration_ms = record.duration_ms,
        outcome = record.status.as_str(),
        "attempt finished"
    );
    if let Some(reason) = &record.disable_webhook {
        tracing::warn!(webhook.id = ?job.log.webhook_id, reason, "disabling webhook");
    }
}

fn unique(ids: impl Iterator<Item = Uuid>) -> Vec<Uuid> {
    let mut ids: Vec<Uuid> = ids.collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}
