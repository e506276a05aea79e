//! Ingest: events go in batches to `POST /agents/{id}/events/batch`, or one per request to
//! `POST /agents/{id}/events` with a batch size of 1 (what a platform sends as each call ends).
//! Flat out, a fixed number of
//! requests is kept in flight (closed loop). With `--rate`, batch k leaves at `start + k ×
//! interval` whether or not earlier ones were answered (open loop), so a slow server faces the
//! offered rate instead of quietly lowering it. Each event's latency starts at the instant its
//! request was sent.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use serde_json::Value;
use tokio::task::JoinSet;

use crate::payload::{batch_body, single_body};

pub struct Plan {
    /// `…/agents/{id}/events`.
    pub url: String,
    pub api_key: String,
    pub events: u64,
    pub batch_size: u64,
    /// Events per second; 0 = flat out.
    pub rate: u64,
    /// Requests in flight when flat out.
    pub concurrency: usize,
    pub payload_bytes: usize,
}

pub struct Ingested {
    /// Event id → when the request carrying it was sent.
    pub sent: HashMap<u128, Instant>,
    /// Event id → when its 202 came back.
    pub acked: HashMap<u128, Instant>,
    pub first_send: Instant,
    pub last_ack: Instant,
}

struct Batch {
    sent: Instant,
    acked: Instant,
    ids: Vec<u128>,
}

pub async fn ingest(client: &reqwest::Client, plan: Plan) -> anyhow::Result<Ingested> {
    let plan = Arc::new(plan);
    let batches = plan.events.div_ceil(plan.batch_size);
    let interval = match plan.rate {
        0 => None,
        rate => Some(Duration::from_secs_f64(plan.batch_size as f64 / rate as f64)),
    };
    let start = tokio::time::Instant::now();
    let mut tasks = JoinSet::new();
    let mut done = Vec::with_capacity(usize::try_from(batches).unwrap_or(0));
    for k in 0..batches {
        match interval {
            Some(interval) => {
                tokio::time::sleep_until(start + interval.mul_f64(k as f64)).await;
                // Collect what has finished, so a failure stops the run early.
                while let Some(joined) = tasks.try_join_next() {
                    done.push(joined.context("ingest task panicked")??);
                }
            }
            None => {
                while tasks.len() >= plan.concurrency {
                    if let Some(joined) = tasks.join_next().await {
                        done.push(joined.context("ingest task panicked")??);
                    }
                }
            }
        }
        let first = k * plan.batch_size;
        let count = plan.batch_size.min(plan.events - first);
        let (client, plan) = (client.clone(), Arc::clone(&plan));
        tasks.spawn(async move { send_batch(&client, &plan, first, count).await });
    }
    while let Some(joined) = tasks.join_next().await {
        done.push(joined.context("ingest task panicked")??);
    }
    let first_send = done.iter().map(|b| b.sent).min().ok_or_else(|| anyhow!("no batches"))?;
    let last_ack = done.iter().map(|b| b.acked).max().unwrap_or(first_send);
    let mut sent = HashMap::with_capacity(usize::try_from(plan.events).unwrap_or(0));
    let mut acked = HashMap::with_capacity(sent.capacity());
    for batch in done {
        acked.extend(batch.ids.iter().map(|id| (*id, batch.acked)));
        sent.extend(batch.ids.into_iter().map(|id| (id, batch.sent)));
    }
    Ok(Ingested { sent, acked, first_send, last_ack })
}

async fn send_batch(
    client: &reqwest::Client,
    plan: &Plan,
    first: u64,
    count: u64,
) -> anyhow::Result<Batch> {
    // The body is built before the clock starts: it is the caller's cost, not webhookd's.
    let single = plan.batch_size == 1;
    let (url, body) = if single {
        (plan.url.clone(), single_body(first, plan.payload_bytes))
    } else {
        (format!("{}/batch", plan.url), batch_body(first, count, plan.payload_bytes))
    };
    let sent = Instant::now();
    let response = client
        .post(&url)
        .bearer_auth(&plan.api_key)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .context("ingest request failed")?;
    let status = response.status();
    let envelope: Value = response.json().await.context("ingest answer is not JSON")?;
    let acked = Instant::now();
    if status != reqwest::StatusCode::ACCEPTED {
        bail!("ingest answered {status}: {}", envelope["message"]);
    }
    if single {
        let id = envelope["data"]["event_id"]
            .as_str()
            .and_then(|id| uuid::Uuid::try_parse(id).ok())
            .ok_or_else(|| anyhow!("ingest answer has no data.event_id"))?;
        return Ok(Batch { sent, acked, ids: vec![id.as_u128()] });
    }
    let results = envelope["data"]["results"]
        .as_array()
        .ok_or_else(|| anyhow!("ingest answer has no data.results"))?;
    let ids = results
        .iter()
        .map(|item| {
            item["event_id"]
                .as_str()
                .and_then(|id| uuid::Uuid::try_parse(id).ok())
                .map(|id| id.as_u128())
                .ok_or_else(|| {
                    anyhow!("event {} was not accepted: {}", item["index"], item["errors"])
                })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    if ids.len() as u64 != count {
        bail!("ingest accepted {} of {count} events", ids.len());
    }
    Ok(Batch { sent, acked, ids })
}
