#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use uuid::Uuid;

use super::*;
use crate::dispatch::limiter::Limiter;
use crate::domain::circuit::CircuitState;
use crate::domain::SendType;
use crate::store::QueuedLog;

fn limits(concurrency: usize) -> Limits {
    Limits { concurrency, stalled: 100, stalled_per_org: 50 }
}

fn ticket(lane: Uuid, org: Uuid) -> Ticket {
    Ticket::automatic(QueuedLog::sample(lane, org), None)
}

/// A scheduler whose lanes are already loaded (per-call settings: adaptive, no limits).
fn ready_lane(s: &mut Scheduler, lane: Uuid, org: Uuid, tickets: usize) {
    s.lane_mut(lane, org);
    s.settings_loaded(lane, 0, LaneSettings::PerCall(Arc::new(secrets())), 0);
    for _ in 0..tickets {
        s.push(ticket(lane, org));
    }
}

fn secrets() -> crate::store::WebhookSecrets {
    crate::store::WebhookSecrets { current: "s".into(), previous: None, previous_expires_at: None }
}

/// Takes decisions until none is left; returns the lanes of the starts, in order.
fn starts(s: &mut Scheduler, now: UnixMs) -> Vec<(Uuid, Started)> {
    let mut started = Vec::new();
    while let Some(decision) = s.next(now, now * 1_000) {
        if let Decision::Start { ticket, started: handle, .. } = decision {
            started.push((ticket.lane(), handle));
        }
    }
    started
}

#[test]
fn a_new_lane_loads_its_settings_before_it_sends() {
    let mut s = Scheduler::new(limits(8));
    let (lane, org) = (Uuid::now_v7(), Uuid::now_v7());
    s.push(ticket(lane, org));
    assert!(matches!(s.next(0, 0), Some(Decision::Load { .. })));
    assert!(s.next(0, 0).is_none(), "nothing more until the settings arrive");
    s.settings_loaded(lane, 0, LaneSettings::PerCall(Arc::new(secrets())), 0);
    assert!(matches!(s.next(0, 0), Some(Decision::Start { .. })));
}

#[test]
fn lanes_take_turns_so_a_backlog_never_stands_in_front_of_a_fresh_event() {
    let mut s = Scheduler::new(limits(2));
    let org = Uuid::now_v7();
    let (busy, fresh) = (Uuid::now_v7(), Uuid::now_v7());
    ready_lane(&mut s, busy, org, 1_000);
    let held = starts(&mut s, 0);
    assert_eq!(held.len(), 2, "the backlog fills every slot");
    ready_lane(&mut s, fresh, org, 1);
    assert!(s.next(0, 0).is_none(), "no slot is free");
    let (_, handle) = held[0];
    s.finished(busy, handle, false, Some(Signal::Success));
    let next: Vec<Uuid> = starts(&mut s, 0).into_iter().map(|(lane, _)| lane).collect();
    assert_eq!(next.first(), Some(&fresh), "the fresh event takes the first free slot: {next:?}");
}

#[test]
fn organizations_take_turns_however_many_lanes_each_has() {
    let mut s = Scheduler::new(limits(20));
    let (many, few) = (Uuid::now_v7(), Uuid::now_v7());
    for _ in 0..50 {
        ready_lane(&mut s, Uuid::now_v7(), many, 4);
    }
    let small: Vec<Uuid> = (0..5).map(|_| Uuid::now_v7()).collect();
    for lane in &small {
        ready_lane(&mut s, *lane, few, 4);
    }
    let started = starts(&mut s, 0);
    assert_eq!(started.len(), 20, "every active slot is used");
    let of_few = started.iter().filter(|(lane, _)| small.contains(lane)).count();
    assert_eq!(of_few, 10, "a tenant with 5 lanes gets half the slots against one with 50");
}

#[test]
fn a_lane_at_its_limit_waits_and_costs_nothing_until_an_attempt_ends() {
    let mut s = Scheduler::new(limits(100));
    let (lane, org) = (Uuid::now_v7(), Uuid::now_v7());
    ready_lane(&mut s, lane, org, 50);
    let started = starts(&mut s, 0);
    assert_eq!(started.len(), 2, "a new lane starts at the initial limit");
    assert!(s.next(0, 0).is_none());
    let (_, handle) = started[1];
    s.finished(lane, handle, false, Some(Signal::Success));
    assert_eq!(starts(&mut s, 0).len(), 2, "a saturated success grows the limit to 3");
}

#[test]
fn stalled_attempts_free_active_slots_for_healthy_lanes() {
    let mut s = Scheduler::new(Limits { concurrency: 4, stalled: 1_000, stalled_per_org: 1_000 });
    let org = Uuid::now_v7();
    let holes: Vec<Uuid> = (0..300).map(|_| Uuid::now_v7()).collect();
    for hole in &holes {
        ready_lane(&mut s, *hole, org, 10);
    }
    // Black holes take the active slots, then stall one by one and give them back.
    let mut stalled = 0;
    for _ in 0..400 {
        let started = starts(&mut s, 0);
        if started.is_empty() {
            break;
        }
        for (lane, handle) in started {
            assert!(s.stalled(lane, handle));
            stalled += 1;
        }
    }
    // A new lane may send 2; its first stall halves that to 1. One socket per hanging endpoint
    // here (two at most, when both start before the first stall), and no active slot.
    assert_eq!(stalled, 300, "each black hole settles at one stalled attempt");
    let healthy = Uuid::now_v7();
    ready_lane(&mut s, healthy, Uuid::now_v7(), 1);
    let next = starts(&mut s, 0);
    assert_eq!(next.iter().map(|(lane, _)| *lane).collect::<Vec<_>>(), vec![healthy]);
}

#[test]
fn an_unproven_lane_starts_only_with_a_place_to_stall() {
    let mut s = Scheduler::new(Limits { concurrency: 2, stalled: 1, stalled_per_org: 1 });
    let (lane, org) = (Uuid::now_v7(), Uuid::now_v7());
    ready_lane(&mut s, lane, org, 5);
    let started = starts(&mut s, 0);
    assert_eq!(started.len(), 1, "one place in the pool: one attempt of an unknown endpoint");
    assert!(started[0].1.reserved);
    s.finished(lane, started[0].1, false, Some(Signal::Success));
    let proven = starts(&mut s, 0);
    assert_eq!(proven.len(), 2, "an endpoint that answered sends without places");
    assert!(proven.iter().all(|(_, handle)| !handle.reserved));
}

#[test]
fn a_proven_lane_that_stalls_into_a_full_pool_keeps_its_active_slot() {
    let mut s = Scheduler::new(Limits { concurrency: 2, stalled: 1, stalled_per_org: 1 });
    let (lane, org) = (Uuid::now_v7(), Uuid::now_v7());
    ready_lane(&mut s, lane, org, 5);
    let first = starts(&mut s, 0);
    s.finished(lane, first[0].1, false, Some(Signal::Success));
    let started = starts(&mut s, 0);
    assert!(s.stalled(lane, started[0].1));
    assert!(!s.stalled(lane, started[1].1), "the pool holds one");
    assert_eq!(s.in_flight(), (1, 1));
}

/// Every attempt that starts hangs: it stalls, and stays stalled. Returns how many started.
fn hang_everything(s: &mut Scheduler) -> usize {
    let mut hanging = 0;
    loop {
        let started = starts(s, 0);
        if started.is_empty() {
            return hanging;
        }
        for (lane, handle) in started {
            assert!(s.stalled(lane, handle), "a reserved place is always there");
            hanging += 1;
        }
    }
}

#[test]
fn five_thousand_black_holes_of_one_tenant_leave_every_other_tenant_its_slots() {
    let mut s = Scheduler::new(Limits { concurrency: 256, stalled: 1_024, stalled_per_org: 256 });
    let abuser = Uuid::now_v7();
    let holes: Vec<Uuid> = (0..5_000).map(|_| Uuid::now_v7()).collect();
    for hole in &holes {
        ready_lane(&mut s, *hole, abuser, 10);
    }
    let hanging = hang_everything(&mut s);
    assert_eq!(hanging, 256, "one tenant holds at most a quarter of the stalled pool");
    assert_eq!(s.in_flight(), (0, 256), "and no active slot");
    // Another tenant's new endpoint and a proven one both start at once, every time.
    let (tenant, fresh) = (Uuid::now_v7(), Uuid::now_v7());
    ready_lane(&mut s, fresh, tenant, 3);
    let started = starts(&mut s, 0);
    assert_eq!(started.len(), 2, "{started:?}");
    assert!(started.iter().all(|(lane, _)| *lane == fresh));
    for (_, handle) in started {
        s.finished(fresh, handle, false, Some(Signal::Success));
    }
    assert_eq!(starts(&mut s, 0).len(), 1, "the last ticket goes as soon as it can");
    // When hanging attempts end, waiting black holes take their places, never more.
    let stalled: Vec<Uuid> =
        holes.iter().copied().filter(|h| s.lane(*h).unwrap().in_flight > 0).collect();
    for hole in stalled.iter().take(10) {
        let mut handle = Limiter::new(1).start(0, false);
        handle.reserved = true;
        s.finished(*hole, handle, true, Some(Signal::Unavailable));
    }
    assert_eq!(hang_everything(&mut s), 10, "ten places freed, ten black holes wait in them");
}

#[test]
fn fifty_tenants_with_a_hundred_black_holes_each_leave_room_for_another() {
    let mut s = Scheduler::new(Limits { concurrency: 256, stalled: 1_024, stalled_per_org: 256 });
    for _ in 0..50 {
        let tenant = Uuid::now_v7();
        for _ in 0..100 {
            ready_lane(&mut s, Uuid::now_v7(), tenant, 10);
        }
    }
    let hanging = hang_everything(&mut s);
    assert!(hanging <= 1_024, "the pool bounds the sockets: {hanging}");
    assert_eq!(s.in_flight().0, 0, "no active slot is held by a black hole");
    let (tenant, fresh) = (Uuid::now_v7(), Uuid::now_v7());
    ready_lane(&mut s, fresh, tenant, 1);
    let started = starts(&mut s, 0);
    assert_eq!(started.iter().map(|(lane, _)| *lane).collect::<Vec<_>>(), vec![fresh]);
}

#[test]
fn an_open_circuit_gives_tickets_back_and_probes_once_its_cooldown_passed() {
    let mut s = Scheduler::new(limits(10));
    let (lane, org) = (Uuid::now_v7(), Uuid::now_v7());
    ready_lane(&mut s, lane, org, 3);
    let open = Circuit { state: CircuitState::Open, retry_at: Some(1_000), failures: 0, level: 0 };
    s.circuit(lane, open);
    assert!(matches!(s.next(0, 0), Some(Decision::Release(held)) if held.len() == 3));
    assert!(s.next(0, 0).is_none());
    s.due(lane, org, 0);
    assert!(s.next(500, 500_000).is_none(), "still cooling down");
    assert_eq!(s.next_timer(), Some(1_000));
    s.fire_timers(1_000);
    assert!(matches!(s.next(1_000, 1_000_000), Some(Decision::Probe { .. })));
    s.probe_taken(lane, true, 0);
    assert!(matches!(s.next(1_000, 1_000_000), Some(Decision::Claim { want: 1, .. })));
    s.claimed(lane, vec![ticket(lane, org), ticket(lane, org)], 1, None);
    let probes: Vec<bool> = std::iter::from_fn(|| match s.next(1_000, 1_000_000) {
        Some(Decision::Start { probe, .. }) => Some(probe),
        _ => None,
    })
    .collect();
    assert_eq!(probes, vec![true], "exactly one probe goes");
}

#[test]
fn explicit_sends_skip_the_circuit_and_the_adaptive_limit() {
    let mut s = Scheduler::new(limits(10));
    let (lane, org) = (Uuid::now_v7(), Uuid::now_v7());
    ready_lane(&mut s, lane, org, 0);
    s.circuit(
        lane,
        Circuit { state: CircuitState::Open, retry_at: Some(10_000), ..Circuit::default() },
    );
    let (batch, _answer) = super::super::ticket::ExplicitBatch::new(6);
    for _ in 0..6 {
        let mut t = ticket(lane, org);
        t.kind = super::super::ticket::Kind::Explicit {
            send_type: SendType::Test,
            batch: batch.clone(),
        };
        s.push(t);
    }
    assert_eq!(starts(&mut s, 0).len(), 6, "beyond the initial limit of 4, circuit open");
}

#[test]
fn a_rate_limited_lane_sends_only_with_a_slot() {
    let mut s = Scheduler::new(limits(10));
    let (lane, org) = (Uuid::now_v7(), Uuid::now_v7());
    s.lane_mut(lane, org);
    let mut webhook = webhook();
    webhook.settings.rate_limit = Some(crate::domain::webhook::RateLimit::parse(10).unwrap());
    s.settings_loaded(lane, 0, LaneSettings::Webhook(Arc::new(webhook)), 0);
    for _ in 0..5 {
        s.push(ticket(lane, org));
    }
    let Some(Decision::Slots { want, step_us, .. }) = s.next(0, 0) else { panic!("slots first") };
    assert_eq!(step_us, 100_000);
    assert!(s.next(0, 0).is_none());
    s.slots_granted(lane, &crate::domain::pacing::grant(None, 0, want, step_us));
    assert_eq!(starts(&mut s, 0).len(), 1, "one slot is due now");
    assert_eq!(starts(&mut s, 50).len(), 0, "the next is at 100 ms");
    assert!(s.next_timer().is_some_and(|at| at <= 101), "a timer wakes the lane for it");
    s.fire_timers(101);
    assert_eq!(starts(&mut s, 101).len(), 1);
}

#[test]
fn settings_loaded_before_a_change_are_discarded() {
    let mut s = Scheduler::new(limits(10));
    let (lane, org) = (Uuid::now_v7(), Uuid::now_v7());
    s.push(ticket(lane, org));
    let Some(Decision::Load { epoch, .. }) = s.next(0, 0) else { panic!("load first") };
    s.forget_settings(lane);
    s.settings_loaded(lane, epoch, LaneSettings::PerCall(Arc::new(secrets())), 0);
    let Some(Decision::Load { epoch: newer, .. }) = s.next(0, 0) else { panic!("a new load") };
    assert_ne!(newer, epoch);
}

#[test]
fn a_short_claim_keeps_work_announced_while_it_ran() {
    let mut s = Scheduler::new(limits(10));
    let (lane, org) = (Uuid::now_v7(), Uuid::now_v7());
    ready_lane(&mut s, lane, org, 0);
    s.due(lane, org, 0);
    assert!(matches!(s.next(0, 0), Some(Decision::Claim { .. })));
    s.due(lane, org, 5);
    s.claimed(lane, vec![], 6, None);
    assert_eq!(s.lane(lane).and_then(|l| l.db_due), Some(5));
}

fn webhook() -> crate::store::Webhook {
    use crate::domain::webhook::*;
    let catalog = crate::domain::EventCatalog::default();
    let events = ["call.completed".to_string()];
    let changes = WebhookChanges {
        name: Some("w"),
        webhook_url: Some("https://example.com/"),
        events: Some(&events),
        ..Default::default()
    };
    let destinations = crate::domain::destination::Destinations::STRICT;
    let context = Context { catalog: &catalog, destinations: &destinations };
    crate::store::Webhook {
        id: Uuid::now_v7(),
        org_id: Uuid::now_v7(),
        agent_id: Uuid::now_v7(),
        settings: WebhookSettings::apply(None, &changes, context).unwrap().settings,
        disabled_reason: None,
        secrets: secrets(),
        failing_since: None,
        circuit: Circuit::default(),
        created_at: 0,
        updated_at: 0,
    }
}
