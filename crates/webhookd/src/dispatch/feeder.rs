//! The dispatcher's database work, in a task of its own so the scheduling loop never waits on
//! I/O: claims (all lanes asked for since the last round in one call), lane settings, rate-limit
//! slots, probes, releases, explicit claims and rescans. Each answer goes back as a message.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use uuid::Uuid;

use super::lane::LaneSettings;
use super::ticket::{ExplicitBatch, ExplicitResult};
use super::Message;
use crate::domain::clock::{now_ms, now_us, UnixMs};
use crate::domain::SendType;
use crate::store::{LaneClaim, Store};

/// A lane, its organization, and the settings epoch asked for.
type LaneLoad = (Uuid, Uuid, u64);

/// A failed request is tried again after this long (the lane waits meanwhile).
const RETRY_AFTER_MS: i64 = 1_000;

pub(super) enum Feed {
    Claim(Vec<LaneClaim>),
    /// Lanes, their organizations, and the settings epoch asked for.
    Load(Vec<LaneLoad>),
    Slots {
        lane: Uuid,
        want: usize,
        step_us: i64,
    },
    Probe {
        lane: Uuid,
        lease_until: UnixMs,
    },
    /// Logs whose claim this node gives back.
    Release(Vec<Uuid>),
    ClaimForSend {
        org: Uuid,
        ids: Vec<Uuid>,
        lease_ms: i64,
        send_type: SendType,
        batch: Arc<ExplicitBatch>,
    },
    Rescan,
}

pub(super) fn spawn(
    store: Store,
    mut requests: mpsc::UnboundedReceiver<Feed>,
    dispatcher: mpsc::UnboundedSender<Message>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut batch = Vec::new();
        while requests.recv_many(&mut batch, 256).await > 0 {
            let mut claims = Vec::new();
            let mut loads = Vec::new();
            for request in batch.drain(..) {
                match request {
                    Feed::Claim(more) => claims.extend(more),
                    Feed::Load(more) => loads.extend(more),
                    other => handle(&store, other, &dispatcher).await,
                }
            }
            if !loads.is_empty() {
                load(&store, loads, &dispatcher).await;
            }
            if !claims.is_empty() {
                claim(&store, claims, &dispatcher).await;
            }
        }
    })
}

async fn claim(store: &Store, claims: Vec<LaneClaim>, dispatcher: &mpsc::UnboundedSender<Message>) {
    match store.claim_lanes(&claims).await {
        Ok(claimed) => {
            for (lane, asked) in claimed.into_iter().zip(claims.iter().map(|c| c.want)) {
                let _ = dispatcher.send(Message::Claimed { claimed: lane, asked });
            }
        }
        Err(error) => {
            tracing::error!(%error, lanes = claims.len(), "claiming due deliveries failed; trying again shortly");
            for claim in claims {
                let _ = dispatcher.send(Message::ClaimFailed {
                    lane: claim.lane,
                    retry_at: now_ms() + RETRY_AFTER_MS,
                });
            }
        }
    }
}

/// Settings of webhook lanes (a lane's id is its webhook's) and of per-call lanes (their
/// organization's secret). Per-call lane ids are name-based UUIDs (version 5); webhook ids are
/// time-based (version 7), so the two can never be confused.
async fn load(store: &Store, lanes: Vec<LaneLoad>, dispatcher: &mpsc::UnboundedSender<Message>) {
    let (per_call, webhooks): (Vec<LaneLoad>, Vec<LaneLoad>) =
        lanes.iter().partition(|(lane, _, _)| lane.get_version_num() == 5);
    let webhook_ids: Vec<Uuid> = webhooks.iter().map(|(lane, _, _)| *lane).collect();
    let mut org_ids: Vec<Uuid> = per_call.iter().map(|(_, org, _)| *org).collect();
    org_ids.sort_unstable();
    org_ids.dedup();
    let loaded = async {
        let found = store.webhooks_by_id(&webhook_ids).await?;
        let secrets = store.org_secrets_by_id(&org_ids).await?;
        Ok::<_, crate::store::StoreError>((found, secrets))
    };
    match loaded.await {
        Ok((mut found, secrets)) => {
            let secrets: HashMap<Uuid, Arc<_>> =
                secrets.into_iter().map(|(id, s)| (id, Arc::new(s))).collect();
            let mut settings = Vec::with_capacity(lanes.len());
            for (lane, _, epoch) in webhooks {
                let loaded = found
                    .remove(&lane)
                    .map_or(LaneSettings::Gone, |w| LaneSettings::Webhook(Arc::new(w)));
                settings.push((lane, epoch, loaded));
            }
            for (lane, org, epoch) in per_call {
                let loaded = secrets
                    .get(&org)
                    .map_or(LaneSettings::Gone, |s| LaneSettings::PerCall(s.clone()));
                settings.push((lane, epoch, loaded));
            }
            let _ = dispatcher.send(Message::Settings(settings));
        }
        Err(error) => {
            tracing::error!(%error, "loading webhook settings failed; trying again shortly");
            let lanes = lanes.into_iter().map(|(lane, _, epoch)| (lane, epoch)).collect();
            let _ = dispatcher
                .send(Message::SettingsFailed { lanes, retry_at: now_ms() + RETRY_AFTER_MS });
        }
    }
}

async fn handle(store: &Store, request: Feed, dispatcher: &mpsc::UnboundedSender<Message>) {
    match request {
        Feed::Claim(_) | Feed::Load(_) => {}
        Feed::Slots { lane, want, step_us } => {
            let granted = store.take_rate_slots(lane, want, now_us(), step_us).await;
            if let Err(error) = &granted {
                tracing::error!(%error, webhook.id = %lane, "taking rate-limit slots failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let _ = dispatcher.send(Message::Slots { lane, grant: granted.ok() });
        }
        Feed::Probe { lane, lease_until } => {
            let taken = store.take_probe(lane, lease_until).await.unwrap_or_else(|error| {
                tracing::error!(%error, webhook.id = %lane, "taking the circuit's probe failed");
                false
            });
            let _ = dispatcher.send(Message::Probe { lane, taken, retry_at: lease_until });
        }
        Feed::Release(ids) => {
            if let Err(error) = store.release(&ids).await {
                tracing::warn!(%error, logs = ids.len(), "cannot give claims back; their leases will end");
            }
        }
        Feed::ClaimForSend { org, ids, lease_ms, send_type, batch } => {
            match store.claim_for_send(org, &ids, lease_ms).await {
                Ok(logs) => {
                    for id in ids.iter().filter(|id| !logs.iter().any(|log| log.id == **id)) {
                        batch.done(ExplicitResult::Busy(*id));
                    }
                    let _ = dispatcher.send(Message::Explicit { logs, send_type, batch });
                }
                Err(error) => {
                    tracing::error!(%error, "claiming logs for an explicit send failed");
                    ids.iter().for_each(|id| batch.done(ExplicitResult::Dropped(*id)));
                }
            }
        }
        Feed::Rescan => match store.lanes_due().await {
            Ok(lanes) => {
                let _ = dispatcher.send(Message::Rescanned(lanes));
            }
            Err(error) => tracing::error!(%error, "looking for due deliveries failed"),
        },
    }
}
