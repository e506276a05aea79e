//! Announcements: the one way the store tells dispatchers that work is due in a lane or that a
//! webhook changed. Inside the writing transaction they become a PostgreSQL `NOTIFY` (delivered
//! to other nodes only if the transaction commits); after the commit they are published to this
//! process's dispatcher. A dispatcher that misses one (a dropped `LISTEN` connection) finds the
//! work at its next rescan.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use uuid::Uuid;

use super::postgres::{self, Heard};
use super::{Db, Store};
use crate::domain::clock::UnixMs;
use crate::domain::PayloadState;

/// The `NOTIFY` channel nodes listen on.
pub(super) const CHANNEL: &str = "webhookd_work";
/// A `NOTIFY` payload must stay under 8000 bytes; past this many items a rescan is asked instead.
const ITEMS_PER_NOTIFY: usize = 80;
/// How long a node remembers that an event's payload is gone: longer than any ticket waits in
/// memory (a claim's lease is minutes; a hand-off is sent or released long before).
const GONE_MEMORY: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Announcement {
    /// Logs of `lane` (of organization `org`) are due at `due`.
    Work { lane: Uuid, org: Uuid, due: UnixMs },
    /// A webhook's settings, secret or circuit changed: reload it.
    Changed { webhook: Uuid },
    /// An organization's signing secret changed: reload its per-call lanes.
    OrgChanged { org: Uuid },
    /// Look for due work in every lane.
    Rescan,
    /// The payload of `event` was erased or expired: a ticket of it held in memory must not be
    /// sent. Never folded into a rescan: it travels in `NOTIFY`s of its own.
    PayloadGone { event: Uuid, state: PayloadState },
}

/// What has been announced since the dispatcher last looked.
#[derive(Debug, Default)]
pub struct Pending {
    /// Per lane, its organization and the earliest announced due time.
    pub work: HashMap<Uuid, (Uuid, UnixMs)>,
    pub changed: HashSet<Uuid>,
    pub orgs_changed: HashSet<Uuid>,
    pub rescan: bool,
}

impl Pending {
    fn add(&mut self, item: Announcement) {
        match item {
            Announcement::Work { lane, org, due } => {
                let entry = self.work.entry(lane).or_insert((org, due));
                entry.1 = entry.1.min(due);
            }
            Announcement::Changed { webhook } => {
                self.changed.insert(webhook);
            }
            Announcement::OrgChanged { org } => {
                self.orgs_changed.insert(org);
            }
            Announcement::Rescan => self.rescan = true,
            Announcement::PayloadGone { .. } => {}
        }
    }

    pub fn is_empty(&self) -> bool {
        self.work.is_empty()
            && self.changed.is_empty()
            && self.orgs_changed.is_empty()
            && !self.rescan
    }
}

/// The in-process side: announcements gathered until the dispatcher takes them.
#[derive(Debug, Default)]
pub struct Announcer {
    pending: Mutex<Pending>,
    notify: Notify,
    /// Events whose payload went, and when this node heard of it.
    gone: Mutex<HashMap<Uuid, (PayloadState, Instant)>>,
}

impl Announcer {
    pub fn publish(&self, items: impl IntoIterator<Item = Announcement>) {
        let mut any = false;
        {
            let mut pending =
                self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            for item in items {
                if let Announcement::PayloadGone { event, state } = item {
                    self.remember_gone(event, state);
                    continue;
                }
                pending.add(item);
                any = true;
            }
        }
        if any {
            self.notify.notify_one();
        }
    }

    fn remember_gone(&self, event: Uuid, state: PayloadState) {
        let mut gone = self.gone.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        if gone.len() >= 1024 && gone.len().is_power_of_two() {
            gone.retain(|_, (_, at)| now.duration_since(*at) < GONE_MEMORY);
        }
        let entry = gone.entry(event).or_insert((state, now));
        // An erasure outranks an expiry.
        if state == PayloadState::Erased {
            *entry = (state, now);
        }
    }

    /// Whether this node heard that `event`'s payload is gone (and how).
    pub fn payload_gone(&self, event: Uuid) -> Option<PayloadState> {
        let gone = self.gone.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        gone.get(&event).map(|(state, _)| *state)
    }

    /// What this node's `LISTEN` connection heard, published as announcements: each
    /// notification's items, and a rescan whenever it listens (again), since announcements may
    /// have been missed meanwhile.
    pub(super) fn hear(&self, heard: Heard<'_>) {
        match heard {
            Heard::Listening => self.publish([Announcement::Rescan]),
            Heard::Notification(payload) => self.publish(decode(payload)),
        }
    }

    /// Everything announced since the last call.
    pub fn take(&self) -> Pending {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Resolves when something was published (register before calling [`Self::take`]).
    pub fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.notify.notified()
    }
}

impl Store {
    /// Announces `items` to this process's dispatcher and, on PostgreSQL, to every other node.
    /// Called after the write they describe has committed; a failed `NOTIFY` is logged and left
    /// to the other nodes' rescans (the work itself is safely stored).
    pub async fn announce(&self, items: Vec<Announcement>) {
        if items.is_empty() {
            return;
        }
        if let Db::Postgres(pool) = &self.db {
            let (gone, work): (Vec<_>, Vec<_>) =
                items.iter().partition(|item| matches!(item, Announcement::PayloadGone { .. }));
            let mut payloads: Vec<String> = gone
                .chunks(ITEMS_PER_NOTIFY)
                .map(|chunk| chunk.iter().copied().map(encode).collect::<Vec<_>>().join(","))
                .collect();
            if work.len() > ITEMS_PER_NOTIFY {
                payloads.push("r".to_string());
            } else if !work.is_empty() {
                payloads.push(work.iter().copied().map(encode).collect::<Vec<_>>().join(","));
            }
            for payload in payloads {
                if let Err(error) = postgres::notify(pool, CHANNEL, &payload).await {
                    tracing::warn!(%error, "cannot announce work to other nodes; their rescan will find it");
                }
            }
        }
        self.announcer.publish(items);
    }

    /// The announcements of this process (and, on PostgreSQL, of the others once listening).
    pub fn announcer(&self) -> &Announcer {
        &self.announcer
    }
}

fn encode(item: &Announcement) -> String {
    match item {
        Announcement::Work { lane, org, due } => {
            format!("w:{}:{}:{due}", lane.simple(), org.simple())
        }
        Announcement::Changed { webhook } => format!("c:{}", webhook.simple()),
        Announcement::OrgChanged { org } => format!("o:{}", org.simple()),
        Announcement::Rescan => "r".into(),
        Announcement::PayloadGone { event, state } => {
            let kind = if *state == PayloadState::Erased { "x" } else { "y" };
            format!("{kind}:{}", event.simple())
        }
    }
}

/// The announcements in a `NOTIFY` payload; unreadable items ask for a rescan.
fn decode(payload: &str) -> Vec<Announcement> {
    payload
        .split(',')
        .filter(|item| !item.is_empty())
        .map(|item| {
            let parts: Vec<&str> = item.split(':').collect();
            let uuid = |i: usize| parts.get(i).and_then(|p| Uuid::parse_str(p).ok());
            match parts.first() {
                Some(&"w") => match (uuid(1), uuid(2), parts.get(3).and_then(|d| d.parse().ok())) {
                    (Some(lane), Some(org), Some(due)) => Announcement::Work { lane, org, due },
                    _ => Announcement::Rescan,
                },
                Some(&"c") => uuid(1)
                    .map_or(Announcement::Rescan, |webhook| Announcement::Changed { webhook }),
                Some(&"o") => {
                    uuid(1).map_or(Announcement::Rescan, |org| Announcement::OrgChanged { org })
                }
                Some(&kind @ ("x" | "y")) => {
                    let state =
                        if kind == "x" { PayloadState::Erased } else { PayloadState::Expired };
                    uuid(1).map_or(Announcement::Rescan, |event| Announcement::PayloadGone {
                        event,
                        state,
                    })
                }
                _ => Announcement::Rescan,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_and_garbage_asks_for_a_rescan() {
        let items = vec![
            Announcement::Work {
                lane: Uuid::now_v7(),
                org: Uuid::now_v7(),
                due: 1_700_000_000_123,
            },
            Announcement::Changed { webhook: Uuid::now_v7() },
            Announcement::OrgChanged { org: Uuid::now_v7() },
            Announcement::Rescan,
            Announcement::PayloadGone { event: Uuid::now_v7(), state: PayloadState::Erased },
            Announcement::PayloadGone { event: Uuid::now_v7(), state: PayloadState::Expired },
        ];
        let payload = items.iter().map(encode).collect::<Vec<_>>().join(",");
        assert!(payload.len() < 8000 / ITEMS_PER_NOTIFY * 3);
        assert_eq!(decode(&payload), items);
        assert_eq!(decode("w:nope"), vec![Announcement::Rescan]);
    }

    #[test]
    fn pending_work_keeps_the_earliest_due_time_per_lane() {
        let announcer = Announcer::default();
        let (lane, org) = (Uuid::now_v7(), Uuid::now_v7());
        announcer.publish([
            Announcement::Work { lane, org, due: 50 },
            Announcement::Work { lane, org, due: 20 },
        ]);
        let pending = announcer.take();
        assert_eq!(pending.work[&lane], (org, 20));
        assert!(announcer.take().is_empty());
    }
}

#[cfg(test)]
mod gone_tests {
    use super::*;

    #[test]
    fn a_gone_payload_is_remembered_and_an_erasure_outranks_an_expiry() {
        let announcer = Announcer::default();
        let event = Uuid::now_v7();
        assert_eq!(announcer.payload_gone(event), None);
        announcer.publish([Announcement::PayloadGone { event, state: PayloadState::Expired }]);
        assert_eq!(announcer.payload_gone(event), Some(PayloadState::Expired));
        announcer.publish([Announcement::PayloadGone { event, state: PayloadState::Erased }]);
        announcer.publish([Announcement::PayloadGone { event, state: PayloadState::Expired }]);
        assert_eq!(announcer.payload_gone(event), Some(PayloadState::Erased));
        // Not work for the dispatcher.
        assert!(announcer.take().is_empty());
    }
}
