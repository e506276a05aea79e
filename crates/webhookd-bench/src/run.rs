//! One benchmark run, in order: receiver, raw ceiling (before webhookd exists, so it has the
//! machine to itself), fresh database, webhookd, tenant setup, ingest, wait for deliveries,
//! report. Locals are declared so that webhookd is dropped (stopped) before its database.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};

use crate::bus::{self, Bus, Publisher};
use crate::cli::Args;
use crate::database::Database;
use crate::hog::CpuHog;
use crate::load::{self, Ingested, Plan};
use crate::receiver::{self, Store};
use crate::report::{Latency, OtlpExports, Report};
use crate::scenario::Scenario;
use crate::server::Webhookd;
use crate::usage::Totals;
use crate::{otlp_sink, payload, raw, setup};

/// Retries come this soon with --fail-ratio, so a failed first attempt costs milliseconds.
const FAST_RETRY_SCHEDULE: &str = "100ms";
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Progress goes to stderr: stdout holds only the summary and the JSON line.
fn progress(message: &str) {
    eprintln!("webhookd-bench: {message}");
}

/// Runs the benchmark and prints its report; `Ok(false)` if deliveries are missing.
pub async fn run(args: Args) -> anyhow::Result<bool> {
    args.validate()?;
    // Started before anything else (webhookd included), stopped once everything has stopped; on
    // an error or Ctrl-C its Drop stops it.
    let hog = if args.cpu_hog {
        progress("cpu hog: one busy-loop thread keeps a core busy for the whole run");
        Some(CpuHog::start().context("cannot start the --cpu-hog thread")?)
    } else {
        None
    };
    let outcome = if let Some(events) = args.history {
        crate::history::run(&args, events).await
    } else if let Some(secs) = args.idle {
        crate::idle::run(&args, secs).await
    } else {
        measure(args).await
    };
    if let Some(hog) = hog {
        progress(&format!("cpu hog stopped after {:.1} s", hog.stop()));
    }
    outcome
}

/// The load run: ingest, deliver, report.
async fn measure(args: Args) -> anyhow::Result<bool> {
    let binary = args.webhookd_binary()?;
    let expected = args.expected();
    let concurrency = args.concurrency();
    let payload_bytes = usize::try_from(args.payload_bytes).context("--payload-bytes too large")?;
    let delay = Duration::from_millis(args.receiver_delay_ms);
    let capacity = usize::try_from(expected).unwrap_or(usize::MAX);
    let slow_delay = Duration::from_millis(args.slow_delay_ms);
    let (receiver, store) = receiver::start(args.fail_ratio, delay, slow_delay, capacity).await?;

    let raw_count = raw::request_count(expected);
    progress(&format!(
        "raw ceiling: {raw_count} POSTs (30 s at most) at concurrency {concurrency}"
    ));
    let body = payload::event_data(0, payload_bytes);
    let raw_post_per_sec = raw::measure(receiver, body, raw_count, concurrency).await?;

    let database = Database::prepare(&args.database)?;
    let api_key = setup::create_org(&binary, &database.url).await?;
    let mut serve = serve_args(&args, &database.url);
    if args.fail_ratio > 0.0 {
        serve.extend(["--retry-schedule".into(), FAST_RETRY_SCHEDULE.into()]);
    }
    let catalog = args.schema.then(write_catalog).transpose()?;
    if let Some(catalog) = &catalog {
        serve.extend(["--event-catalog".into(), catalog.path().display().to_string()]);
    }
    let bus = match args.source {
        Some(bus) => {
            let url = if bus == Bus::Nats { &args.nats_url } else { &args.amqp_url };
            let (publisher, source, metric) = Publisher::prepare(bus, url).await?;
            serve.extend(["--source".into(), source]);
            Some((publisher, metric))
        }
        None => None,
    };
    let otlp = if args.otlp { Some(otlp_sink::start().await?) } else { None };
    if let Some((sink, _)) = &otlp {
        serve.extend(["--otlp-endpoint".into(), format!("http://{sink}")]);
    }
    if let Some(proxy) = &args.egress_proxy {
        serve.extend(["--egress-proxy".into(), proxy.clone()]);
    }
    let role = if args.backlog { "--no-worker" } else { "" };
    let api_node = Webhookd::start(&binary, &with_flag(&serve, role)).await?;
    let api = api_node.addr.ok_or_else(|| anyhow!("webhookd did not log its API address"))?;
    let client = setup::client()?;
    let filter = args.filters.then(setup::five_clause_filter);
    let agent =
        setup::create_agent(&client, api, &api_key, receiver, args.webhooks, filter.as_ref())
            .await?;
    let mut tenants = Vec::new();
    if args.black_holes > 0 {
        for _ in 0..args.black_hole_tenants {
            let key = setup::create_org(&binary, &database.url).await?;
            let agent = setup::create_agent(&client, api, &key, receiver, 0, None).await?;
            tenants.push((key, agent));
        }
    }
    let scenario =
        Scenario { client: &client, api, api_key: &api_key, agent: &agent, receiver, tenants };
    let loaded = scenario.load(args.black_holes, args.black_hole_events, args.slow_backlog).await?;
    if loaded.black_holes > 0 || loaded.slow_backlog > 0 {
        progress(&format!(
            "scenario loaded: {} black holes with {} logs pending, {} logs at a {} ms endpoint",
            loaded.black_holes, loaded.black_hole_logs, loaded.slow_backlog, args.slow_delay_ms
        ));
    }

    progress(&format!("ingesting {} events on {}", args.events, database.backend));
    let ingested = match &bus {
        None => {
            let plan = Plan {
                url: format!("http://{api}/api/v1/agents/{agent}/events"),
                api_key,
                events: args.events,
                batch_size: args.batch_size(),
                rate: args.rate,
                concurrency: usize::try_from(args.ingest_concurrency).unwrap_or(1),
                payload_bytes,
            };
            load::ingest(&client, plan).await?
        }
        Some((publisher, metric)) => {
            let published =
                publisher.publish(&agent, args.events, args.rate, payload_bytes).await?;
            // The publisher's own pace bounds the ingest rate: say it, to tell the two apart.
            let last = published.acked.values().max().copied().unwrap_or(published.first_send);
            let took = last.saturating_duration_since(published.first_send).as_secs_f64();
            progress(&format!(
                "published {} events in {took:.2} s ({:.0}/s, to the broker's acks)",
                args.events,
                args.events as f64 / took.max(1e-9)
            ));
            let deadline = published.first_send + Duration::from_secs(args.timeout_secs);
            let last_ack = bus::wait_ingested(&client, api, metric, args.events, deadline).await?;
            Ingested {
                sent: published.sent,
                acked: published.acked,
                first_send: published.first_send,
                last_ack,
            }
        }
    };

    // Backlog: everything is stored; now a worker-only node drains it from a cold start.
    let (mut node, mut usage, drain_start) = if args.backlog {
        let usage = api_node.usage();
        api_node.stop().await.context("stopping the API-only node")?;
        progress("backlog loaded; starting a worker-only node");
        let worker = Webhookd::start(&binary, &with_flag(&serve, "--no-api")).await?;
        let start = worker.spawned;
        (worker, usage, Some(start))
    } else {
        (api_node, Totals::default(), None)
    };

    let deadline = ingested.first_send + Duration::from_secs(args.timeout_secs);
    wait_for_deliveries(&store, &mut node, expected, deadline).await?;
    usage = usage.add(node.usage());
    if let Err(error) = node.stop().await {
        progress(&format!("warning: {error:#}"));
    }

    let mut arrivals = store.arrivals();
    if let Some((publisher, _)) = &bus {
        // Published events are known by their index until webhookd names them.
        for arrival in &mut arrivals {
            arrival.event_id = arrival.index.map_or(u128::MAX, u128::from);
        }
        publisher.remove().await;
    }
    let last_arrival = arrivals.iter().map(|a| a.at).max();
    let delivered = store.delivered.load(Relaxed);
    let per_sec_since = |start: Instant| match last_arrival {
        Some(last) => delivered as f64 / last.saturating_duration_since(start).as_secs_f64(),
        None => 0.0,
    };
    let ingest_secs = ingested.last_ack.duration_since(ingested.first_send).as_secs_f64();
    let report = Report {
        backend: database.backend,
        source: args.source.map(|bus| if bus == Bus::Nats { "NATS JetStream" } else { "RabbitMQ" }),
        events: args.events,
        webhooks: args.webhooks,
        expected,
        delivered,
        duplicates: store.duplicates.load(Relaxed),
        failed_on_purpose: store.failed_on_purpose.load(Relaxed),
        malformed: store.malformed.load(Relaxed),
        ingest_per_sec: args.events as f64 / ingest_secs,
        delivered_per_sec: per_sec_since(ingested.first_send),
        raw_post_per_sec,
        latency: Latency::of(&arrivals, &ingested.sent),
        after_ack: Latency::of(&arrivals, &ingested.acked),
        black_holes: loaded.black_holes,
        black_hole_logs: loaded.black_hole_logs,
        slow_backlog: loaded.slow_backlog,
        slow_served: store.slow_served.load(Relaxed),
        server_peak_rss_mb: usage.peak_rss_mb,
        server_cpu_s: usage.cpu_s,
        payload_bytes: args.payload_bytes,
        rate: args.rate,
        batch_size: args.batch_size(),
        concurrency,
        ingest_concurrency: args.ingest_concurrency,
        fail_ratio: args.fail_ratio,
        receiver_delay_ms: args.receiver_delay_ms,
        backlog: args.backlog,
        drain_per_sec: drain_start.map(per_sec_since),
        egress_proxy: args.egress_proxy.is_some(),
        cpu_hog: args.cpu_hog,
        otlp: otlp.as_ref().map(|(_, exports)| OtlpExports {
            requests: exports.requests.load(Relaxed),
            bytes: exports.bytes.load(Relaxed),
        }),
    };
    report.print_summary();
    if args.json {
        println!("{}", report.to_json());
    }
    if delivered < expected {
        progress(&format!(
            "error: only {delivered} of {expected} deliveries arrived within {}s",
            args.timeout_secs
        ));
    }
    Ok(delivered >= expected)
}

/// The `webhookd serve` arguments every run starts from.
pub fn serve_args(args: &Args, database_url: &str) -> Vec<String> {
    let mut serve = vec![
        "--listen".to_string(),
        "127.0.0.1:0".into(),
        "--database".into(),
        database_url.to_string(),
        "--allow-private-targets".into(),
        // The bench is the API's only client: the per-key rate limit would only cap the load.
        "--rate-limit".into(),
        "0".into(),
    ];
    if let Some(concurrency) = args.concurrency {
        serve.extend(["--concurrency".into(), concurrency.to_string()]);
    }
    serve
}

/// The serve arguments plus one role flag (none when `flag` is empty).
/// A catalog file (`--schema`) whose `call.completed` schema describes the bench's events,
/// `{"i": INDEX, "pad": "xxx…"}`, with the constraints a platform's schema would have: types,
/// bounds, a pattern, required fields, no others.
fn write_catalog() -> anyhow::Result<tempfile::NamedTempFile> {
    let catalog = serde_json::json!([{
        "name": "call.completed",
        "description": "A call ended and its post-call analysis is ready.",
        "schema": {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": {
                "i": {"type": "integer", "minimum": 0},
                "pad": {"type": "string", "pattern": "^x*$", "maxLength": 1_048_576}
            },
            "required": ["i", "pad"],
            "additionalProperties": false
        }
    }]);
    let mut file = tempfile::Builder::new().suffix(".json").tempfile()?;
    std::io::Write::write_all(&mut file, catalog.to_string().as_bytes())?;
    Ok(file)
}

fn with_flag(serve: &[String], flag: &str) -> Vec<String> {
    let mut args = serve.to_vec();
    if !flag.is_empty() {
        args.push(flag.to_string());
    }
    args
}

/// Polls until every delivery has arrived or the deadline passes; fails if webhookd dies. The
/// receiver timestamps arrivals itself, so the polling interval does not affect the results.
async fn wait_for_deliveries(
    store: &Store,
    node: &mut Webhookd,
    expected: u64,
    deadline: Instant,
) -> anyhow::Result<()> {
    let mut next_progress = Instant::now() + PROGRESS_EVERY;
    loop {
        let delivered = store.delivered.load(Relaxed);
        if delivered >= expected || Instant::now() >= deadline {
            return Ok(());
        }
        node.check_alive()?;
        if Instant::now() >= next_progress {
            progress(&format!("{delivered} of {expected} delivered"));
            next_progress += PROGRESS_EVERY;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
