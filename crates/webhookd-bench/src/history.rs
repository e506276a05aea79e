//! The `--history N` scenario (SPEC §8, history at scale): N events with one delivery log each on
//! ONE webhook, written straight into a database that `webhookd org create` migrated
//! (`history_sql.rs`); then every read a customer or the dashboard makes of that history, timed
//! through the real HTTP API; the bytes it takes on disk; and with `--retention-check`, the time
//! retention takes to remove all of it while a second, healthy webhook keeps receiving events.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context};
use serde_json::{json, Value};
use sqlx::Connection;
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::cli::Args;
use crate::database::Database;
use crate::history_sql::{Backend, Plan, EVENT_TYPES};
use crate::receiver::{self, Store};
use crate::report::{percentile, Latency};
use crate::server::Webhookd;
use crate::{payload, setup};

const DAY_MS: i64 = 86_400_000;
/// The history spans this many days, ending at the last UTC midnight (a whole day before the
/// retention cutoff, so PostgreSQL's retention can drop every one of its days).
const HISTORY_DAYS: i64 = 30;
/// Untimed requests before each read's timed ones.
const WARM_UPS: u64 = 2;
/// The goal of every read, and of a deep numbered page (SPEC §8's issue).
const READ_GOAL_MS: f64 = 20.0;
const DEEP_PAGE_GOAL_MS: f64 = 100.0;
const PER_PAGE: u64 = 100;
const POLL_EVERY: Duration = Duration::from_millis(1000);
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

fn progress(message: &str) {
    eprintln!("webhookd-bench: {message}");
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The two webhooks of the scenario and what the reads need to know about the history.
struct Tenant {
    api_key: String,
    org: Uuid,
    agent: Uuid,
    history: Uuid,
}

pub async fn run(args: &Args, events: u64) -> anyhow::Result<bool> {
    let binary = args.webhookd_binary()?;
    let (receiver, store) = receiver::start(0.0, Duration::ZERO, Duration::ZERO, 1024).await?;
    let database = Database::prepare(&args.database)?;
    let backend = if database.backend == "sqlite" { Backend::Sqlite } else { Backend::Postgres };
    let api_key = setup::create_org(&binary, &database.url).await?;
    let client = setup::client()?;

    // Tenant setup through the API, as the other scenarios do.
    let serve = serve_args(&database.url, "3650d");
    let node = Webhookd::start(&binary, &serve).await?;
    let api = node.addr.ok_or_else(|| anyhow!("webhookd did not log its API address"))?;
    let tenant = create_tenant(&client, api, api_key, receiver).await?;
    node.stop().await.context("stopping webhookd before the load")?;

    // The load, straight into the database while no webhookd runs.
    let until = now_ms() / DAY_MS * DAY_MS - 1;
    let from = until - HISTORY_DAYS * DAY_MS;
    let step = ((until - from) / i64::try_from(events).unwrap_or(i64::MAX)).max(1);
    let plan = Plan {
        backend,
        events,
        org: tenant.org,
        agent: tenant.agent,
        webhook: tenant.history,
        url: format!("http://{receiver}/hook/0"),
        from_ms: from,
        step_ms: step,
    };
    let mut sql = Sql::connect(&database).await?;
    let size_before = sql.size(&database).await?;
    progress(&format!("writing {events} events, logs and attempts on {}", database.backend));
    let started = Instant::now();
    sql.script(&format!("BEGIN;\n{}COMMIT;\n", plan.script())).await?;
    let load_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    sql.script("ANALYZE;").await?;
    if backend == Backend::Sqlite {
        sql.script("PRAGMA wal_checkpoint(TRUNCATE);").await?;
    }
    let analyze_s = started.elapsed().as_secs_f64();
    let counts = sql.counts(backend).await?;
    let size_after = sql.size(&database).await?;
    progress(&format!(
        "loaded in {load_s:.1} s (ANALYZE {analyze_s:.1} s): {} events, {} logs, {} attempts, \
         {} rows in default partitions",
        counts.events, counts.logs, counts.attempts, counts.in_default
    ));
    if counts.logs != events {
        bail!("the load wrote {} logs, not {events}", counts.logs);
    }

    // The reads, against a fresh webhookd that keeps the whole history.
    let node = Webhookd::start(&binary, &serve).await?;
    let api = node.addr.ok_or_else(|| anyhow!("webhookd did not log its API address"))?;
    let reads = measure_reads(&client, api, &tenant, &plan, args.history_runs).await?;
    let usage = node.usage();
    node.stop().await.context("stopping webhookd after the reads")?;

    let retention = if args.retention_check {
        let serve = serve_args(&database.url, "1h");
        Some(retention_check(&binary, &serve, &tenant, &plan, &mut sql, &store, args).await?)
    } else {
        None
    };
    drop(sql);

    let report = HistoryReport {
        backend: database.backend,
        events,
        runs: args.history_runs,
        load_s,
        analyze_s,
        counts,
        bytes_per_event: (size_after.saturating_sub(size_before)) as f64 / events as f64,
        size_mb: size_after as f64 / 1e6,
        reads,
        retention,
        peak_rss_mb: usage.peak_rss_mb,
        cpu_s: usage.cpu_s,
        cpu_hog: args.cpu_hog,
    };
    report.print();
    if args.json {
        println!("{}", report.to_json());
    }
    Ok(report.retention.as_ref().is_none_or(|r| r.gone_after_s.is_some()))
}

fn serve_args(database: &str, retention: &str) -> Vec<String> {
    [
        "--listen",
        "127.0.0.1:0",
        "--database",
        database,
        "--allow-private-targets",
        "--rate-limit",
        "0",
        "--retention",
        retention,
    ]
    .iter()
    .map(|s| (*s).to_string())
    .collect()
}

/// One agent with two webhooks: the history's (every type of the mix; its endpoint is never
/// called, since no log is pending) and a healthy one (`call.failed` only) for the retention
/// check.
async fn create_tenant(
    client: &reqwest::Client,
    api: SocketAddr,
    api_key: String,
    receiver: SocketAddr,
) -> anyhow::Result<Tenant> {
    let base = format!("http://{api}/api/v1");
    let organization = get_json(client, &format!("{base}/organization"), &api_key).await?;
    let agent =
        setup::post(client, &format!("{base}/agents"), &api_key, &json!({"name": "bench"})).await?;
    let agent = uuid_at(&agent, "id")?;
    let hooks = format!("{base}/agents/{agent}/webhooks");
    let history = setup::post(
        client,
        &hooks,
        &api_key,
        &json!({"name": "history", "webhook_url": format!("http://{receiver}/hook/0"),
                "events": EVENT_TYPES}),
    )
    .await?;
    setup::post(
        client,
        &hooks,
        &api_key,
        &json!({"name": "healthy", "webhook_url": format!("http://{receiver}/hook/1"),
                "events": ["call.failed"]}),
    )
    .await?;
    Ok(Tenant {
        org: uuid_at(&organization["data"], "id")?,
        agent,
        history: uuid_at(&history, "id")?,
        api_key,
    })
}

fn uuid_at(value: &Value, field: &str) -> anyhow::Result<Uuid> {
    value[field]
        .as_str()
        .and_then(|s| Uuid::try_parse(s).ok())
        .ok_or_else(|| anyhow!("no `{field}` in {value}"))
}

async fn get_json(client: &reqwest::Client, url: &str, api_key: &str) -> anyhow::Result<Value> {
    let response = client.get(url).bearer_auth(api_key).send().await?;
    let status = response.status();
    let body: Value = response.json().await.with_context(|| format!("GET {url}"))?;
    if !status.is_success() {
        bail!("GET {url} answered {status}: {body}");
    }
    Ok(body)
}

/// A connection of the bench's own to webhookd's database.
enum Sql {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    events: u64,
    logs: u64,
    attempts: u64,
    /// PostgreSQL: rows of the three tables in their `_default` partitions (should be none).
    in_default: u64,
}

impl Sql {
    async fn connect(database: &Database) -> anyhow::Result<Self> {
        if database.backend == "sqlite" {
            let options = sqlx::sqlite::SqliteConnectOptions::from_str(&database.url)?
                .busy_timeout(Duration::from_secs(30));
            Ok(Self::Sqlite(sqlx::SqliteConnection::connect_with(&options).await?))
        } else {
            Ok(Self::Postgres(sqlx::PgConnection::connect(&database.url).await?))
        }
    }

    async fn script(&mut self, sql: &str) -> anyhow::Result<()> {
        match self {
            Self::Sqlite(c) => sqlx::raw_sql(sql).execute(c).await.map(drop),
            Self::Postgres(c) => sqlx::raw_sql(sql).execute(c).await.map(drop),
        }
        .with_context(|| format!("running {}…", sql.chars().take(60).collect::<String>()))
    }

    async fn count(&mut self, sql: &str) -> anyhow::Result<u64> {
        let n: i64 = match self {
            Self::Sqlite(c) => sqlx::query_scalar(sql).fetch_one(c).await,
            Self::Postgres(c) => sqlx::query_scalar(sql).fetch_one(c).await,
        }
        .with_context(|| format!("running {sql}"))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn counts(&mut self, backend: Backend) -> anyhow::Result<Counts> {
        let mut counts = Counts {
            events: self.count("SELECT count(*) FROM events").await?,
            logs: self.count("SELECT count(*) FROM delivery_logs").await?,
            attempts: self.count("SELECT count(*) FROM attempts").await?,
            in_default: 0,
        };
        if backend == Backend::Postgres {
            counts.in_default = self
                .count(
                    "SELECT (SELECT count(*) FROM events_default) \
                     + (SELECT count(*) FROM delivery_logs_default) \
                     + (SELECT count(*) FROM attempts_default)",
                )
                .await?;
        }
        Ok(counts)
    }

    /// Bytes on disk: the SQLite file and its -wal; PostgreSQL's whole database.
    async fn size(&mut self, database: &Database) -> anyhow::Result<u64> {
        match self {
            Self::Sqlite(_) => {
                let path = database.sqlite_path().ok_or_else(|| anyhow!("no SQLite path"))?;
                let mut wal = path.clone().into_os_string();
                wal.push("-wal");
                let len = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
                Ok(len(&path) + len(std::path::Path::new(&wal)))
            }
            Self::Postgres(_) => self.count("SELECT pg_database_size(current_database())").await,
        }
    }
}

/// p50 / p99 / max of one read, in ms, and what its answer said.
#[derive(Debug, Clone)]
struct Read {
    name: String,
    p50: f64,
    p99: f64,
    max: f64,
    goal_ms: f64,
    /// `pagination.total` (and whether estimated), `data.count` or the like.
    note: String,
}

/// One request the reads repeat.
struct Request {
    name: String,
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
    /// The dashboard's session cookie, or the API key.
    cookie: Option<String>,
    goal_ms: f64,
}

async fn send(
    client: &reqwest::Client,
    api_key: &str,
    request: &Request,
) -> anyhow::Result<(f64, hyper::body::Bytes)> {
    let mut builder = client.request(request.method.clone(), &request.url);
    builder = match &request.cookie {
        Some(cookie) => builder.header(reqwest::header::COOKIE, cookie),
        None => builder.bearer_auth(api_key),
    };
    if let Some(body) = &request.body {
        builder = builder.json(body);
    }
    let started = Instant::now();
    let response = builder.send().await.with_context(|| request.name.to_string())?;
    let status = response.status();
    let body = response.bytes().await?;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    if !status.is_success() {
        bail!(
            "{} ({}) answered {status}: {}",
            request.name,
            request.url,
            String::from_utf8_lossy(&body[..body.len().min(300)])
        );
    }
    Ok((ms, body))
}

async fn time(
    client: &reqwest::Client,
    api_key: &str,
    request: &Request,
    runs: u64,
) -> anyhow::Result<(Read, Value)> {
    let mut last = hyper::body::Bytes::new();
    for _ in 0..WARM_UPS {
        last = send(client, api_key, request).await?.1;
    }
    let mut ms = Vec::new();
    for _ in 0..runs {
        let (took, body) = send(client, api_key, request).await?;
        ms.push(took);
        last = body;
    }
    ms.sort_by(f64::total_cmp);
    let answer: Value = serde_json::from_slice(&last).unwrap_or(Value::Null);
    let read = Read {
        name: request.name.clone(),
        p50: percentile(&ms, 0.50),
        p99: percentile(&ms, 0.99),
        max: ms.last().copied().unwrap_or(0.0),
        goal_ms: request.goal_ms,
        note: note_of(&answer, &last),
    };
    progress(&format!(
        "{:<44} p50 {:>8.1} ms  p99 {:>8.1} ms  {}",
        read.name, read.p50, read.p99, read.note
    ));
    Ok((read, answer))
}

/// What a read's answer says about its size: the page's total, a count, or the rows shown.
fn note_of(answer: &Value, body: &[u8]) -> String {
    let data = &answer["data"];
    if let Some(p) = data.get("pagination").filter(|p| p.is_object()) {
        return format!(
            "{} logs, total {}{}",
            data["logs"].as_array().map_or(0, Vec::len),
            p["total"],
            if p["total_estimated"].as_bool() == Some(true) { " (estimated)" } else { "" }
        );
    }
    if let Some(logs) = data.get("logs").and_then(Value::as_array) {
        return format!("{} logs", logs.len());
    }
    if let Some(count) = data.get("count") {
        return format!("count {count}");
    }
    if let Some(attempts) = data.get("attempts").and_then(Value::as_array) {
        return format!("{} attempts", attempts.len());
    }
    if answer.is_null() {
        // An HTML page: its rows.
        let html = String::from_utf8_lossy(body);
        return format!(
            "{} table rows, {} kB",
            html.matches("<tr").count().saturating_sub(1),
            body.len() / 1000
        );
    }
    String::new()
}

async fn measure_reads(
    client: &reqwest::Client,
    api: SocketAddr,
    tenant: &Tenant,
    plan: &Plan,
    runs: u64,
) -> anyhow::Result<Vec<Read>> {
    let agent = tenant.agent;
    let logs = format!("http://{api}/api/v1/agents/{agent}/webhooks/{}/logs", tenant.history);
    let middle = plan.events / 2;
    let call = Plan::call_of(middle.max(1));
    let deep_page =
        if plan.events >= 500_000 { 5000 } else { (plan.events / (2 * PER_PAGE)).max(1) };
    let get = |name: &str, url: String, goal_ms: f64| Request {
        name: name.to_string(),
        method: reqwest::Method::GET,
        url,
        body: None,
        cookie: None,
        goal_ms,
    };
    let list = |name: &str, query: &str| {
        get(name, format!("{logs}?per_page={PER_PAGE}{query}"), READ_GOAL_MS)
    };
    let key = tenant.api_key.as_str();
    let mut reads = Vec::new();
    let (read, first) = time(client, key, &list("logs, first page", ""), runs).await?;
    reads.push(read);
    for (name, query) in [
        ("logs ?status=failed", "&status=failed".to_string()),
        ("logs ?status=skipped", "&status=skipped".to_string()),
        ("logs ?event=call.completed", "&event=call.completed".to_string()),
        ("logs ?call_id=<one call>", format!("&call_id={call}")),
        ("logs ?status=failed&event=call.completed", "&status=failed&event=call.completed".into()),
    ] {
        reads.push(time(client, key, &list(name, &query), runs).await?.0);
    }
    let deep = get(
        &format!("logs ?page={deep_page}&per_page={PER_PAGE}"),
        format!("{logs}?page={deep_page}&per_page={PER_PAGE}"),
        DEEP_PAGE_GOAL_MS,
    );
    reads.push(time(client, key, &deep, runs).await?.0);
    let cursor = first["data"]["next_cursor"].as_str().map(str::to_string);
    match cursor {
        Some(cursor) => {
            let next = list("logs ?cursor=<next of the first page>", &format!("&cursor={cursor}"));
            reads.push(time(client, key, &next, runs).await?.0);
        }
        None => progress("warning: the first page has no next_cursor; cursor read skipped"),
    }
    let one_failed = get("(a failed log's id)", format!("{logs}?status=failed&per_page=1"), 0.0);
    let (_, failed) = time(client, key, &one_failed, 1).await?;
    let log_id = failed["data"]["logs"][0]["id"]
        .as_str()
        .ok_or_else(|| anyhow!("no failed log to read"))?
        .to_string();
    reads.push(
        time(
            client,
            key,
            &get("one log by id (failed, 2 attempts)", format!("{logs}/{log_id}"), READ_GOAL_MS),
            runs,
        )
        .await?
        .0,
    );
    let bland = get(
        "Bland GET /v1/postcall/webhooks/{call_id}",
        format!("http://{api}/v1/postcall/webhooks/{call}"),
        READ_GOAL_MS,
    );
    reads.push(time(client, key, &bland, runs).await?.0);
    let recover = Request {
        name: "recover dry_run, whole window".into(),
        method: reqwest::Method::POST,
        url: format!("http://{api}/api/v1/agents/{agent}/webhooks/{}/recover", tenant.history),
        body: Some(json!({"since": plan.from_ms / 1000 - 1, "dry_run": true})),
        cookie: None,
        goal_ms: READ_GOAL_MS,
    };
    reads.push(time(client, key, &recover, runs).await?.0);

    match sign_in(api, key).await {
        Ok(cookie) => {
            let page = format!("http://{api}/ui/agents/{agent}/webhooks/{}", tenant.history);
            for (name, query) in [
                ("dashboard logs page", ""),
                (
                    "dashboard ?status=failed&event=call.completed",
                    "?status=failed&event=call.completed",
                ),
                ("dashboard ?http_status=none", "?http_status=none"),
                ("dashboard ?http_status=500", "?http_status=500"),
            ] {
                let mut request = get(name, format!("{page}{query}"), READ_GOAL_MS);
                request.cookie = Some(cookie.clone());
                reads.push(time(client, key, &request, runs).await?.0);
            }
        }
        Err(error) => progress(&format!("warning: dashboard reads skipped: {error:#}")),
    }
    Ok(reads)
}

/// Signs in to the dashboard as a person does (the form's nonce, then the API key); returns the
/// `Cookie` header of the session.
async fn sign_in(api: SocketAddr, api_key: &str) -> anyhow::Result<String> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let form = client.get(format!("http://{api}/ui/sign-in")).send().await?;
    let nonce = cookie(&form, "webhookd_sign_in").ok_or_else(|| anyhow!("no sign-in nonce"))?;
    let answer = client
        .post(format!("http://{api}/ui/sign-in"))
        .header(reqwest::header::COOKIE, format!("webhookd_sign_in={nonce}"))
        .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(format!("nonce={nonce}&api_key={api_key}"))
        .send()
        .await?;
    let session = cookie(&answer, "webhookd_session")
        .ok_or_else(|| anyhow!("sign-in answered {} without a session", answer.status()))?;
    Ok(format!("webhookd_session={session}"))
}

fn cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    response.headers().get_all(reqwest::header::SET_COOKIE).iter().find_map(|value| {
        let value = value.to_str().ok()?;
        let pair = value.split(';').next()?;
        let (key, value) = pair.split_once('=')?;
        (key.trim() == name && !value.is_empty()).then(|| value.to_string())
    })
}

/// What `--retention-check` measured.
#[derive(Debug, Clone)]
struct Retention {
    /// From webhookd's start to no row of the history left; `None` if not within the timeout.
    gone_after_s: Option<f64>,
    waited_s: f64,
    left_logs: u64,
    healthy_sent: u64,
    healthy_delivered: u64,
    /// Ingest request → arrival.
    healthy: Latency,
    /// Ingest request → 202.
    accept_p50: f64,
    accept_p99: f64,
    healthy_rate: u64,
}

async fn retention_check(
    binary: &std::path::Path,
    serve: &[String],
    tenant: &Tenant,
    plan: &Plan,
    sql: &mut Sql,
    store: &Arc<Store>,
    args: &Args,
) -> anyhow::Result<Retention> {
    progress("retention check: restarting webhookd with --retention 1h");
    let mut node = Webhookd::start(binary, serve).await?;
    let api = node.addr.ok_or_else(|| anyhow!("webhookd did not log its API address"))?;
    let stop = Arc::new(AtomicBool::new(false));
    let sender = tokio::spawn(offer(
        setup::client()?,
        format!("http://{api}/api/v1/agents/{}/events", tenant.agent),
        tenant.api_key.clone(),
        args.healthy_rate,
        Arc::clone(&stop),
    ));
    // Polled with one index probe, not a count: a count of a large history would hold its
    // partitions long enough to make PostgreSQL's retention find its days busy.
    let webhook = literal(plan, tenant.history);
    let any_left =
        format!("SELECT count(*) FROM (SELECT 1 FROM delivery_logs WHERE webhook_id = {webhook} LIMIT 1) AS one");
    let deadline = node.spawned + Duration::from_secs(args.timeout_secs);
    let mut next_progress = Instant::now() + PROGRESS_EVERY;
    let (gone_after_s, left_logs) = loop {
        node.check_alive()?;
        if sql.count(&any_left).await? == 0 {
            break (Some(node.spawned.elapsed().as_secs_f64()), 0);
        }
        if Instant::now() >= deadline {
            let all = format!("SELECT count(*) FROM delivery_logs WHERE webhook_id = {webhook}");
            break (None, sql.count(&all).await?);
        }
        if Instant::now() >= next_progress {
            progress(&format!(
                "history logs still there after {:.0} s, {} healthy deliveries",
                node.spawned.elapsed().as_secs_f64(),
                store.delivered.load(Relaxed)
            ));
            next_progress += PROGRESS_EVERY;
        }
        tokio::time::sleep(POLL_EVERY).await;
    };
    let waited_s = node.spawned.elapsed().as_secs_f64();
    stop.store(true, Relaxed);
    let offered = sender.await.context("the healthy sender panicked")??;
    // The last events' deliveries, a moment to arrive.
    let settle = Instant::now() + Duration::from_secs(10);
    while store.delivered.load(Relaxed) < offered.sent.len() as u64 && Instant::now() < settle {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    node.stop().await.context("stopping webhookd after the retention check")?;
    let arrivals = store.arrivals();
    let mut accept: Vec<f64> = offered
        .sent
        .iter()
        .filter_map(|(id, sent)| {
            Some(offered.acked.get(id)?.saturating_duration_since(*sent).as_secs_f64() * 1000.0)
        })
        .collect();
    accept.sort_by(f64::total_cmp);
    Ok(Retention {
        gone_after_s,
        waited_s,
        left_logs,
        healthy_sent: offered.sent.len() as u64,
        healthy_delivered: store.delivered.load(Relaxed),
        healthy: Latency::of(&arrivals, &offered.sent),
        accept_p50: percentile(&accept, 0.50),
        accept_p99: percentile(&accept, 0.99),
        healthy_rate: args.healthy_rate,
    })
}

fn literal(plan: &Plan, id: Uuid) -> String {
    match plan.backend {
        Backend::Postgres => format!("'{id}'::uuid"),
        Backend::Sqlite => format!("X'{}'", id.simple()),
    }
}

struct Offered {
    sent: HashMap<u128, Instant>,
    acked: HashMap<u128, Instant>,
}

/// One `call.failed` event every 1/rate s to the agent (open loop: each request its own task)
/// until `stop`; only the healthy webhook subscribes to that type.
async fn offer(
    client: reqwest::Client,
    url: String,
    api_key: String,
    rate: u64,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<Offered> {
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    let mut tasks = JoinSet::new();
    let mut k = 0u64;
    while !stop.load(Relaxed) {
        ticker.tick().await;
        k += 1;
        let body = format!(
            "{{\"event\":\"call.failed\",\"call_id\":\"healthy-{k}\",\"data\":{}}}",
            payload::event_data(k, 200)
        );
        let (client, url, api_key) = (client.clone(), url.clone(), api_key.clone());
        tasks.spawn(async move {
            let sent = Instant::now();
            let response = client
                .post(&url)
                .bearer_auth(&api_key)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await?;
            let acked = Instant::now();
            let status = response.status();
            let envelope: Value = response.json().await?;
            if status != reqwest::StatusCode::ACCEPTED {
                bail!("healthy ingest answered {status}: {}", envelope["message"]);
            }
            let id = envelope["data"]["event_id"]
                .as_str()
                .and_then(|id| Uuid::try_parse(id).ok())
                .ok_or_else(|| anyhow!("ingest answer has no data.event_id"))?;
            Ok::<_, anyhow::Error>((id.as_u128(), sent, acked))
        });
    }
    let mut offered = Offered { sent: HashMap::new(), acked: HashMap::new() };
    while let Some(joined) = tasks.join_next().await {
        let (id, sent, acked) = joined.context("healthy ingest task panicked")??;
        offered.sent.insert(id, sent);
        offered.acked.insert(id, acked);
    }
    Ok(offered)
}

struct HistoryReport {
    backend: &'static str,
    events: u64,
    runs: u64,
    load_s: f64,
    analyze_s: f64,
    counts: Counts,
    bytes_per_event: f64,
    size_mb: f64,
    reads: Vec<Read>,
    retention: Option<Retention>,
    peak_rss_mb: f64,
    cpu_s: f64,
    cpu_hog: bool,
}

fn round(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}

impl HistoryReport {
    fn print(&self) {
        println!(
            "webhookd-bench: history of {} events (one log each) on one webhook, {}, {} timed \
             requests per read after {WARM_UPS} warm-ups{}",
            self.events,
            self.backend,
            self.runs,
            if self.cpu_hog { ", beside a busy-loop CPU hog" } else { "" }
        );
        println!(
            "  loaded       {:.1} s in SQL (ANALYZE {:.1} s): {} events, {} logs, {} attempts, {} rows in default partitions",
            self.load_s, self.analyze_s, self.counts.events, self.counts.logs, self.counts.attempts, self.counts.in_default
        );
        println!(
            "  on disk      {:.0} bytes per event ({:.1} MB in all)",
            self.bytes_per_event, self.size_mb
        );
        for read in &self.reads {
            let slow = if read.p99 > read.goal_ms { "  SLOW" } else { "" };
            println!(
                "  {:<46} p50 {:>8.1}  p99 {:>8.1}  max {:>8.1} ms  (goal {} ms){slow}  {}",
                read.name, read.p50, read.p99, read.max, read.goal_ms, read.note
            );
        }
        println!(
            "  webhookd     peak RSS {:.1} MB, CPU {:.2} s (reads)",
            self.peak_rss_mb, self.cpu_s
        );
        if let Some(r) = &self.retention {
            match r.gone_after_s {
                Some(s) => println!("  retention    the whole history gone {s:.1} s after webhookd started (--retention 1h)"),
                None => println!(
                    "  retention    {} history logs still there after {:.0} s",
                    r.left_logs, r.waited_s
                ),
            }
            println!(
                "  healthy      {} of {} events delivered (offered {}/s meanwhile); latency p50 {:.1}  p99 {:.1}  max {:.1} ms; 202 p50 {:.1}  p99 {:.1} ms",
                r.healthy_delivered, r.healthy_sent, r.healthy_rate, r.healthy.p50, r.healthy.p99, r.healthy.max, r.accept_p50, r.accept_p99
            );
        }
        println!();
        println!("| read ({}, {} events) | p50 ms | p99 ms | answer |", self.backend, self.events);
        println!("|---|---|---|---|");
        for read in &self.reads {
            let p99 = if read.p99 > read.goal_ms {
                format!("**{:.1}** (> {})", read.p99, read.goal_ms)
            } else {
                format!("{:.1}", read.p99)
            };
            println!(
                "| {} | {:.1} | {p99} | {} |",
                read.name.replace('|', "\\|"),
                read.p50,
                read.note
            );
        }
        println!(
            "| bytes on disk per event | {:.0} | | {:.1} MB in all |",
            self.bytes_per_event, self.size_mb
        );
        if let Some(r) = &self.retention {
            let gone = r
                .gone_after_s
                .map_or(format!("not done in {:.0} s", r.waited_s), |s| format!("{s:.1} s"));
            println!("| retention of the whole history | {gone} | | |");
            println!(
                "| healthy webhook during retention ({}/s) | {:.1} | {:.1} | {} of {} delivered |",
                r.healthy_rate, r.healthy.p50, r.healthy.p99, r.healthy_delivered, r.healthy_sent
            );
        }
    }

    fn to_json(&self) -> Value {
        json!({
            "scenario": "history",
            "backend": self.backend,
            "cpu_hog": self.cpu_hog,
            "events": self.events,
            "runs": self.runs,
            "load_s": round(self.load_s, 2),
            "analyze_s": round(self.analyze_s, 2),
            "logs": self.counts.logs,
            "attempts": self.counts.attempts,
            "rows_in_default_partitions": self.counts.in_default,
            "bytes_per_event": round(self.bytes_per_event, 0),
            "reads": self.reads.iter().map(|r| json!({
                "read": r.name,
                "p50_ms": round(r.p50, 2),
                "p99_ms": round(r.p99, 2),
                "max_ms": round(r.max, 2),
                "goal_ms": r.goal_ms,
                "answer": r.note,
            })).collect::<Vec<_>>(),
            "retention_gone_s": self.retention.as_ref().and_then(|r| r.gone_after_s.map(|s| round(s, 2))),
            "retention_left_logs": self.retention.as_ref().map(|r| r.left_logs),
            "healthy_p50_ms": self.retention.as_ref().map(|r| round(r.healthy.p50, 2)),
            "healthy_p99_ms": self.retention.as_ref().map(|r| round(r.healthy.p99, 2)),
            "healthy_sent": self.retention.as_ref().map(|r| r.healthy_sent),
            "healthy_delivered": self.retention.as_ref().map(|r| r.healthy_delivered),
            "server_peak_rss_mb": round(self.peak_rss_mb, 1),
            "server_cpu_s": round(self.cpu_s, 2),
        })
    }
}
