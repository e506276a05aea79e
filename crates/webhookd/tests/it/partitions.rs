//! The day partitions of the history on PostgreSQL (SPEC §8, migration 0009): retention drops
//! whole days, a pending log in an expiring day ends before its day goes, and an unpartitioned
//! database upgrades by `migrate` without losing a row.

use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;
use sqlx::migrate::Migrator;
use sqlx::PgPool;
use time::macros::format_description;
use time::OffsetDateTime;
use uuid::Uuid;
use webhookd::domain::clock::{now_ms, DAY_MS};

use crate::harness::{
    open_test_store, postgres_base_url, retry_on_deadlock, Backend, TestApp, TestDb,
};
use crate::receiver::{Receiver, Reply};

/// Moves `events` (with their logs and attempts) `days` into the past, as if they had been made
/// then: each event gets the id it would have had (its UUIDv7 time shifted, the rest kept), so it
/// lands in that day's partition.
pub async fn age_events(url: &str, events: &[Uuid], days: i64) {
    let pool = PgPool::connect(url).await.unwrap();
    retry_on_deadlock(|| try_age_events(&pool, events, days * DAY_MS)).await;
    pool.close().await;
}

async fn try_age_events(pool: &PgPool, events: &[Uuid], shift: i64) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT webhookd_make_partitions($1, $2)")
        .bind(now_ms() - shift - 60_000)
        .bind(now_ms() - shift + 1)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "CREATE TEMP TABLE aged ON COMMIT DROP AS
         SELECT id AS old_id,
            (lpad(to_hex(('x' || substr(replace(id::text, '-', ''), 1, 12))::bit(48)::BIGINT - $2),
                12, '0') || substr(replace(id::text, '-', ''), 13))::uuid AS new_id
         FROM events WHERE id = ANY($1)",
    )
    .bind(events)
    .bind(shift)
    .execute(&mut *tx)
    .await?;
    for statement in [
        "UPDATE events e SET id = a.new_id, created_at = e.created_at - $1
         FROM aged a WHERE e.id = a.old_id",
        "UPDATE delivery_logs l SET event_id = a.new_id, created_at = l.created_at - $1
         FROM aged a WHERE l.event_id = a.old_id",
        "UPDATE attempts t SET event_id = a.new_id, sent_at = t.sent_at - $1
         FROM aged a WHERE t.event_id = a.old_id",
    ] {
        sqlx::query(statement).bind(shift).execute(&mut *tx).await?;
    }
    tx.commit().await
}

/// The name suffix of the day partition `days` before today (after it, for a negative `days`).
fn day_suffix(days: i64) -> String {
    let at = OffsetDateTime::from_unix_timestamp((now_ms() - days * DAY_MS) / 1000).unwrap();
    format!("p{}", at.format(format_description!("[year][month][day]")).unwrap())
}

async fn exists(pool: &PgPool, table: &str) -> bool {
    sqlx::query_scalar::<_, bool>("SELECT to_regclass($1) IS NOT NULL")
        .bind(table)
        .fetch_one(pool)
        .await
        .unwrap()
}

fn id(value: &serde_json::Value) -> Uuid {
    value.as_str().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_drops_an_expired_day_whole_and_keeps_the_others() {
    if postgres_base_url().is_none() {
        return;
    }
    let app = TestApp::spawn(Backend::Postgres).await;
    let receiver = Receiver::start().await;
    let agent = app.create_agent().await;
    let webhook = app.create_webhook(&agent, json!({"webhook_url": receiver.url("/")})).await;
    let webhook = webhook["id"].as_str().unwrap();
    let mut logs = Vec::new();
    for n in 0..3 {
        let accepted =
            app.ingest(&agent, json!({"event": "call.completed", "data": {"n": n}})).await;
        let log = accepted["logs"][0]["log_id"].as_str().unwrap().to_string();
        app.wait_for_log(&agent, webhook, &log, "success").await;
        logs.push((id(&accepted["event_id"]), log));
    }
    // Two of them forty days old, one of today.
    let old: Vec<Uuid> = logs[..2].iter().map(|(event, _)| *event).collect();
    age_events(&app.db().url, &old, 40).await;
    let pool = PgPool::connect(&app.db().url).await.unwrap();
    let old_day = day_suffix(40);
    assert!(exists(&pool, &format!("events_{old_day}")).await);

    let dropped = app.store.drop_expired_days(now_ms() - 30 * DAY_MS).await.unwrap();
    assert!(dropped.days >= 1 && dropped.ended == 0 && !dropped.busy, "{dropped:?}");
    assert_eq!(
        (dropped.deleted.events, dropped.deleted.delivery_logs, dropped.deleted.attempts),
        (2, 2, 2)
    );
    for table in ["events", "delivery_logs", "attempts"] {
        assert!(!exists(&pool, &format!("{table}_{old_day}")).await, "{table} of {old_day}");
        assert!(exists(&pool, &format!("{table}_{}", day_suffix(0))).await, "today's {table}");
    }
    let base = format!("/api/v1/agents/{agent}/webhooks/{webhook}/logs");
    for (n, (_, log)) in logs.iter().enumerate() {
        let (status, _) = app.call(Method::GET, &format!("{base}/{log}"), None).await;
        assert_eq!(status, if n < 2 { 404 } else { 200 }, "log {n}");
    }
    // Days ahead are made and a second pass finds nothing more to drop.
    app.store.make_partitions(now_ms()).await.unwrap();
    assert!(exists(&pool, &format!("events_{}", day_suffix(-3))).await);
    let again = app.store.drop_expired_days(now_ms() - 30 * DAY_MS).await.unwrap();
    assert_eq!(again.days, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_held_by_a_long_read_is_dropped_soon_after_the_read_ends() {
    if postgres_base_url().is_none() {
        return;
    }
    // Thirty days of retention: a pass an hour, so only the retry after a busy day can drop it.
    let thirty_days = Duration::from_secs(30 * 86_400);
    let app = TestApp::spawn_with(Backend::Postgres, |c| c.retention = thirty_days).await;
    let receiver = Receiver::start().await;
    let agent = app.create_agent().await;
    let webhook = app.create_webhook(&agent, json!({"webhook_url": receiver.url("/")})).await;
    let webhook = webhook["id"].as_str().unwrap();
    let accepted = app.ingest(&agent, json!({"event": "call.completed", "data": {}})).await;
    let log = accepted["logs"][0]["log_id"].as_str().unwrap();
    app.wait_for_log(&agent, webhook, log, "success").await;
    age_events(&app.db().url, &[id(&accepted["event_id"])], 40).await;
    let table = format!("delivery_logs_{}", day_suffix(40));

    // A long read holds the day while a second node's first pass tries to drop it.
    let pool = PgPool::connect(&app.db().url).await.unwrap();
    let mut read = pool.begin().await.unwrap();
    sqlx::query(&format!("LOCK TABLE {table} IN ACCESS SHARE MODE"))
        .execute(&mut *read)
        .await
        .unwrap();
    let _node = app.spawn_on(|c| c.retention = thirty_days).await;
    let waiting = format!(
        "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE NOT granted AND relation = '{table}'::regclass)"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !sqlx::query_scalar::<_, bool>(&waiting).fetch_one(&pool).await.unwrap() {
        assert!(Instant::now() < deadline, "the second node never tried to drop {table}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The read ends only after the drop gave up waiting for it, so the pass found the day busy.
    while sqlx::query_scalar::<_, bool>(&waiting).fetch_one(&pool).await.unwrap() {
        assert!(Instant::now() < deadline, "the drop never gave up waiting for {table}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    read.commit().await.unwrap();

    let deadline = Instant::now() + Duration::from_secs(60);
    while exists(&pool, &table).await {
        assert!(Instant::now() < deadline, "{table} was not dropped after the read ended");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let path = format!("/api/v1/agents/{agent}/webhooks/{webhook}/logs/{log}");
    assert_eq!(app.call(Method::GET, &path, None).await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_log_in_an_expiring_day_ends_failed_before_the_day_goes() {
    if postgres_base_url().is_none() {
        return;
    }
    // The first attempt fails; the retry is an hour away, so the log waits in the database.
    let app = TestApp::spawn_with(Backend::Postgres, |c| {
        c.retry_schedule = vec![Duration::from_secs(3600)];
    })
    .await;
    let receiver = Receiver::start().await;
    receiver.otherwise(Reply::status(500));
    let agent = app.create_agent().await;
    let webhook = app
        .create_webhook(&agent, json!({"webhook_url": receiver.url("/"), "max_retries": 5}))
        .await;
    let webhook = webhook["id"].as_str().unwrap();
    let accepted = app.ingest(&agent, json!({"event": "call.completed", "data": {"n": 1}})).await;
    let log = accepted["logs"][0]["log_id"].as_str().unwrap();
    let path = format!("/api/v1/agents/{agent}/webhooks/{webhook}/logs/{log}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, body) = app.call(Method::GET, &path, None).await;
        if body["data"]["attempt"] == 1 && body["data"]["status"] == "pending" {
            break;
        }
        assert!(Instant::now() < deadline, "the first attempt was never recorded: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    age_events(&app.db().url, &[id(&accepted["event_id"])], 40).await;

    let dropped = app.store.drop_expired_days(now_ms() - 30 * DAY_MS).await.unwrap();
    assert!(dropped.days >= 1 && dropped.ended == 1, "{dropped:?}");
    let (status, _) = app.call(Method::GET, &path, None).await;
    assert_eq!(status, 404);
    assert_eq!(receiver.received().len(), 1, "sent once, before its day expired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unpartitioned_database_upgrades_without_losing_a_row() {
    if postgres_base_url().is_none() {
        return;
    }
    let db = TestDb::new(Backend::Postgres).await;
    let pool = PgPool::connect(&db.url).await.unwrap();
    let mut before =
        Migrator::new(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres")))
            .await
            .unwrap();
    before.migrations.to_mut().retain(|m| m.version <= 8);
    before.run(&pool).await.unwrap();

    // A history written by the schema before partitions: today, twenty days ago, and 500 days
    // ago (older than the days the upgrade makes: it lands in the default partitions).
    let (org, agent, webhook) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    sqlx::raw_sql(&format!(
        "INSERT INTO organizations (id, name, signing_secret, created_at, updated_at)
            VALUES ('{org}', 'o', 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 0, 0);
         INSERT INTO agents (id, org_id, name, created_at, updated_at)
            VALUES ('{agent}', '{org}', 'a', 0, 0);
         INSERT INTO webhooks (id, org_id, agent_id, name, url, events, timeout_secs, max_retries,
            enabled, http_method, auth_config, custom_headers, signing_secret, created_at,
            updated_at)
            VALUES ('{webhook}', '{org}', '{agent}', 'w', 'https://example.com/', '[]', 30, 3,
            TRUE, 'POST', '{{\"scheme\":\"none\"}}', '[]',
            'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 0, 0);"
    ))
    .execute(&pool)
    .await
    .unwrap();
    for (n, days) in [0_i64, 0, 0, 20, 20, 500].into_iter().enumerate() {
        let at = now_ms() - days * DAY_MS;
        let ts = uuid::Timestamp::from_unix(uuid::NoContext, (at / 1000) as u64, 0);
        let (event, log) = (Uuid::new_v7(ts), Uuid::new_v7(ts));
        sqlx::query(
            "INSERT INTO events (id, org_id, agent_id, event_type, call_id, payload, created_at)
             VALUES ($1, $2, $3, 'call.completed', $4, '\\x7b7d', $5)",
        )
        .bind(event)
        .bind(org)
        .bind(agent)
        .bind(format!("c{n}"))
        .bind(at)
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO delivery_logs (id, org_id, agent_id, webhook_id, lane_id, event_id,
                event_type, call_id, url, status, first_send_type, attempt_count, created_at,
                updated_at)
             VALUES ($1, $2, $3, $4, $4, $5, 'call.completed', $6, 'https://example.com/',
                'failed', 'automatic', 2, $7, $7)",
        )
        .bind(log)
        .bind(org)
        .bind(agent)
        .bind(webhook)
        .bind(event)
        .bind(format!("c{n}"))
        .bind(at)
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO attempts (id, log_id, number, send_type, sent_at, duration_ms, error)
             VALUES ($1, $2, 1, 'automatic', $3, 5, 'connection refused')",
        )
        .bind(Uuid::now_v7())
        .bind(log)
        .bind(at)
        .execute(&pool)
        .await
        .unwrap();
    }
    let expected_attempts = 6;
    pool.close().await;

    let store = open_test_store(&db.url).await;
    let pool = PgPool::connect(&db.url).await.unwrap();
    let count = |sql: &'static str| {
        let pool = pool.clone();
        async move { sqlx::query_scalar::<_, i64>(sql).fetch_one(&pool).await.unwrap() }
    };
    assert_eq!(count("SELECT COUNT(*) FROM events").await, 6);
    assert_eq!(count("SELECT COUNT(*) FROM delivery_logs").await, 6);
    assert_eq!(count("SELECT COUNT(*) FROM attempts").await, expected_attempts);
    assert_eq!(
        count(
            "SELECT COUNT(*) FROM attempts a JOIN delivery_logs l
             ON l.id = a.log_id AND l.event_id = a.event_id"
        )
        .await,
        expected_attempts,
        "every attempt names its log's event"
    );
    assert_eq!(count("SELECT COUNT(*) FROM ONLY events_default").await, 1);
    assert_eq!(count("SELECT COUNT(*) FROM ONLY delivery_logs_default").await, 1);
    assert!(exists(&pool, &format!("events_{}", day_suffix(20))).await);
    assert!(exists(&pool, &format!("delivery_logs_{}", day_suffix(-1))).await);

    // Retention then drops the old day whole and empties the default partition row by row.
    let cutoff = now_ms() - 10 * DAY_MS;
    let dropped = store.drop_expired_days(cutoff).await.unwrap();
    assert!(dropped.days >= 1 && dropped.deleted.events == 2, "{dropped:?}");
    let deleted = store.delete_expired_batch(cutoff, 100).await.unwrap();
    assert_eq!((deleted.events, deleted.delivery_logs), (1, 1));
    assert_eq!(count("SELECT COUNT(*) FROM events").await, 3);
    assert_eq!(count("SELECT COUNT(*) FROM attempts").await, 3);
}
