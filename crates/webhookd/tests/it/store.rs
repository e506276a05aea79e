//! The store suite: the same assertions against SQLite and PostgreSQL.

use uuid::Uuid;
use webhookd::domain::circuit::Breaker;
use webhookd::domain::clock::{now_ms, DAY_MS};
use webhookd::domain::destination::Destinations;
use webhookd::domain::secrets::hash_api_key;
use webhookd::domain::webhook::{
    CustomHeaders, EventTypes, MaxConcurrency, MaxRetries, Name, Ordering, RateLimit, Timeout,
    WebhookUrl,
};
use webhookd::domain::{
    Authorization, CustomHeader, EventCatalog, HttpMethod, LogStatus, SendType, WebhookSettings,
};
use webhookd::store::{Attempt, AttemptRecord};

use crate::backend_tests;
use crate::harness::{open_test_store as open_store, Backend, TestDb};

backend_tests!(
    migrations_are_idempotent_and_readiness_sees_them,
    bootstrap_creates_exactly_one_organization,
    api_keys_resolve_to_their_organization_by_hash_only,
    agents_are_scoped_to_their_organization,
    webhook_settings_round_trip_exactly,
    toggling_and_rotating_change_only_what_they_name,
    a_webhook_failing_for_five_days_is_disabled_with_a_reason,
    claimed_logs_of_one_event_share_one_payload_in_memory,
);

fn settings() -> WebhookSettings {
    let catalog = EventCatalog::default();
    let headers = [CustomHeader { key: "X-Team".into(), value: "blue".into() }];
    WebhookSettings {
        name: Name::parse("hook").unwrap(),
        url: WebhookUrl::parse("https://example.com/h", &Destinations::STRICT).unwrap(),
        events: EventTypes::parse(&["call.completed".into(), "call.ended".into()], &catalog)
            .unwrap(),
        timeout: Timeout::parse(12).unwrap(),
        max_retries: MaxRetries::parse(7).unwrap(),
        enabled: true,
        http_method: HttpMethod::Patch,
        authorization: Authorization::ApiKey { header: "X-Key".into(), key: "k".into() },
        custom_headers: CustomHeaders::parse(&headers).unwrap(),
        rate_limit: Some(RateLimit::parse(40).unwrap()),
        max_concurrency: Some(MaxConcurrency::parse(3).unwrap()),
        ordering: Ordering::Call,
        filter: None,
        tls: Default::default(),
    }
}

async fn migrations_are_idempotent_and_readiness_sees_them(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = open_store(&db.url).await;
    store.migrate().await.unwrap();
    assert!(store.is_ready().await.unwrap());
    let again = open_store(&db.url).await;
    assert!(again.is_ready().await.unwrap());
}

async fn bootstrap_creates_exactly_one_organization(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = open_store(&db.url).await;
    let (a, b) = tokio::join!(store.bootstrap_org("default"), store.bootstrap_org("default"));
    let created: Vec<_> = [a.unwrap(), b.unwrap()].into_iter().flatten().collect();
    assert_eq!(created.len(), 1);
    assert!(store.bootstrap_org("default").await.unwrap().is_none());
}

async fn api_keys_resolve_to_their_organization_by_hash_only(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = open_store(&db.url).await;
    let one = store.create_org("one").await.unwrap();
    let two = store.create_org("two").await.unwrap();
    assert_ne!(one.api_key, two.api_key);
    let org_of = |found: Option<(Uuid, Uuid)>| found.map(|(_, org_id)| org_id);
    let found = store.api_key_by_hash(&hash_api_key(&one.api_key)).await.unwrap();
    assert_eq!(org_of(found), Some(one.org.id));
    let found = store.api_key_by_hash(&hash_api_key(&two.api_key)).await.unwrap();
    assert_eq!(org_of(found), Some(two.org.id));
    assert_eq!(store.api_key_by_hash(&hash_api_key("whk_nope")).await.unwrap(), None);
    // The plaintext is nowhere: looking it up as if it were a hash finds nothing.
    assert_eq!(store.api_key_by_hash(one.api_key.as_bytes()).await.unwrap(), None);
}

async fn agents_are_scoped_to_their_organization(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = open_store(&db.url).await;
    let one = store.create_org("one").await.unwrap().org.id;
    let two = store.create_org("two").await.unwrap().org.id;
    let agent = store.create_agent(one, "a").await.unwrap();
    assert!(store.agent(two, agent.id).await.unwrap().is_none());
    assert!(store.rename_agent(two, agent.id, "x").await.unwrap().is_none());
    assert!(!store.delete_agent(two, agent.id).await.unwrap());
    assert_eq!(store.list_agents(two, 1, 10).await.unwrap().total, 0);
    let page = store.list_agents(one, 1, 10).await.unwrap();
    assert_eq!((page.total, page.items[0].id), (1, agent.id));
    assert_eq!(store.rename_agent(one, agent.id, "b").await.unwrap().unwrap().name, "b");
    assert!(store.delete_agent(one, agent.id).await.unwrap());
    assert!(store.agent(one, agent.id).await.unwrap().is_none());
}

async fn webhook_settings_round_trip_exactly(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = open_store(&db.url).await;
    let org = store.create_org("one").await.unwrap().org.id;
    let agent = store.create_agent(org, "a").await.unwrap().id;
    let created = store.create_webhook(org, agent, settings(), "whsec_abc".into()).await.unwrap();
    let read = store.webhook(org, agent, created.id).await.unwrap().unwrap();
    assert_eq!(read.settings, settings());
    assert_eq!(read.secrets.current, "whsec_abc");
    assert!(store.webhook(org, Uuid::now_v7(), created.id).await.unwrap().is_none());
    let other = store.create_org("two").await.unwrap().org.id;
    assert!(store.webhook(other, agent, created.id).await.unwrap().is_none());

    let mut changed = settings();
    changed.authorization = Authorization::None;
    changed.enabled = false;
    let updated = store.update_webhook(&read, &changed).await.unwrap().unwrap();
    assert_eq!(updated.settings, changed);
    assert_eq!(store.list_webhooks(org, agent).await.unwrap().len(), 1);
    assert!(store.delete_webhook(&updated).await.unwrap());
    assert!(store.list_webhooks(org, agent).await.unwrap().is_empty());
}

async fn toggling_and_rotating_change_only_what_they_name(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = open_store(&db.url).await;
    let org = store.create_org("one").await.unwrap().org.id;
    let agent = store.create_agent(org, "a").await.unwrap().id;
    let webhook = store.create_webhook(org, agent, settings(), "whsec_old".into()).await.unwrap();
    let off = store.toggle_webhook(&webhook).await.unwrap().unwrap();
    assert!(!off.settings.enabled);
    assert_eq!(off.settings.name, webhook.settings.name);
    let on = store.toggle_webhook(&off).await.unwrap().unwrap();
    assert!(on.settings.enabled);

    let rotated = store.replace_webhook_secret(&on, "whsec_new", 2_000).await.unwrap().unwrap();
    assert_eq!(rotated.secrets.current, "whsec_new");
    assert_eq!(rotated.secrets.previous.as_deref(), Some("whsec_old"));
    assert_eq!(rotated.secrets.active_at(1_999), vec!["whsec_new", "whsec_old"]);
    assert_eq!(rotated.secrets.active_at(2_000), vec!["whsec_new"]);
    assert_eq!(rotated.settings, on.settings);
}

fn failure(webhook_id: Uuid, sent_at: i64, status: LogStatus) -> AttemptRecord {
    AttemptRecord {
        log_id: Uuid::now_v7(),
        webhook_id: Some(webhook_id),
        lane_id: webhook_id,
        org_id: Uuid::now_v7(),
        attempt: Attempt {
            id: Uuid::now_v7(),
            number: 1,
            send_type: SendType::Spawn,
            sent_at,
            response_code: Some(if status == LogStatus::Success { 200 } else { 500 }),
            duration_ms: 5,
            response_body: None,
            response_headers: None,
            error: None,
        },
        status,
        next_attempt_at: None,
        counts_as_retry: false,
        probe: false,
    }
}

async fn a_webhook_failing_for_five_days_is_disabled_with_a_reason(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = open_store(&db.url).await;
    let org = store.create_org("one").await.unwrap().org.id;
    let agent = store.create_agent(org, "a").await.unwrap().id;
    let webhook = store.create_webhook(org, agent, settings(), "whsec_x".into()).await.unwrap();
    let now = now_ms();
    let read = || async { store.webhook(org, agent, webhook.id).await.unwrap().unwrap() };

    // A streak that started four days ago does not disable; a success ends the streak.
    store
        .record(
            &[failure(webhook.id, now - 4 * DAY_MS, LogStatus::Failed)],
            &[],
            &Breaker::default(),
        )
        .await
        .unwrap();
    store
        .record(&[failure(webhook.id, now, LogStatus::Pending)], &[], &Breaker::default())
        .await
        .unwrap();
    assert!(read().await.settings.enabled);
    assert_eq!(read().await.failing_since, Some(now - 4 * DAY_MS));
    store
        .record(&[failure(webhook.id, now, LogStatus::Success)], &[], &Breaker::default())
        .await
        .unwrap();
    assert_eq!(read().await.failing_since, None);

    // Failing since six days ago, and failing still: disabled, with the reason.
    store
        .record(
            &[failure(webhook.id, now - 6 * DAY_MS, LogStatus::Failed)],
            &[],
            &Breaker::default(),
        )
        .await
        .unwrap();
    store
        .record(&[failure(webhook.id, now, LogStatus::Failed)], &[], &Breaker::default())
        .await
        .unwrap();
    let disabled = read().await;
    assert!(!disabled.settings.enabled);
    assert_eq!(
        disabled.disabled_reason.as_deref(),
        Some("Deliveries failed for 5 days without a success")
    );
}

/// A fan-out claimed from the database holds its payload once: every log of the event points at
/// the same bytes (a 1 MiB event to 500 webhooks used to cost 500 copies).
async fn claimed_logs_of_one_event_share_one_payload_in_memory(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = open_store(&db.url).await;
    let org = store.create_org("fan").await.unwrap().org.id;
    let agent = store.create_agent(org, "a").await.unwrap().id;
    let mut lanes = Vec::new();
    for _ in 0..5 {
        let mut hook = settings();
        hook.rate_limit = None;
        hook.max_concurrency = None;
        hook.ordering = Ordering::None;
        lanes.push(
            store.create_webhook(org, agent, hook, "whsec_c2VjcmV0".into()).await.unwrap().id,
        );
    }
    let catalog = EventCatalog::default();
    let event = webhookd::domain::event::NewEvent {
        event_type: webhookd::domain::event::EventType::parse("call.completed", &catalog).unwrap(),
        call_id: None,
        payload: bytes::Bytes::from(vec![b'7'; 64 * 1024]),
        data: None,
        idempotency_key: None,
        webhook_url: None,
        traceparent: None,
    };
    let request =
        webhookd::store::IngestRequest { org_id: org, agent_id: agent, events: vec![event] };
    store.ingest(&[request], None).await.unwrap();
    let claims: Vec<webhookd::store::LaneClaim> = lanes
        .iter()
        .map(|lane| webhookd::store::LaneClaim {
            lane: *lane,
            want: 10,
            lease_ms: 60_000,
            max_concurrency: None,
        })
        .collect();
    let claimed = store.claim_lanes(&claims).await.unwrap();
    let payloads: Vec<bytes::Bytes> =
        claimed.into_iter().flat_map(|lane| lane.logs).map(|log| log.payload.0).collect();
    assert_eq!(payloads.len(), 5);
    assert!(payloads.iter().all(|p| p.len() == 64 * 1024 && p.as_ptr() == payloads[0].as_ptr()));
}
