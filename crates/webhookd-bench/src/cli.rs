//! The command line. Defaults describe the reference run (50 000 events flat out on SQLite), so
//! `webhookd-bench` with no flags is the number quoted in the benchmarks.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Parser;

/// webhookd's own default for `serve --concurrency`; the raw ceiling uses the same when the flag
/// is not given, so both sides of the ratio keep the same number of requests in flight.
pub const WEBHOOKD_DEFAULT_CONCURRENCY: usize = 256;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "webhookd-bench",
    version,
    about = "End-to-end webhookd benchmark: ingest → deliver → receive, next to the raw HTTP ceiling"
)]
pub struct Args {
    /// Events to ingest.
    #[arg(long, default_value_t = 50_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub events: u64,
    /// `sqlite` (a fresh temporary file) or a `postgres://` URL (a fresh schema per run).
    #[arg(long, default_value = "sqlite")]
    pub database: String,
    /// The webhookd binary [default: `webhookd` next to this binary].
    #[arg(long, value_name = "PATH")]
    pub webhookd: Option<PathBuf>,
    /// Offered events per second; 0 sends flat out.
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Events per ingest request (1–1000) [default: 1000 flat out, rate/100 with --rate].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub batch_size: Option<u64>,
    /// Ingest requests in flight at once when sending flat out.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub ingest_concurrency: u64,
    /// Approximate size in bytes of each event's `data`.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(16..=1_000_000))]
    pub payload_bytes: u64,
    /// Webhooks subscribed to every event (each on its own receiver path).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=100))]
    pub webhooks: u64,
    /// Milliseconds the receiver waits before answering.
    #[arg(long, default_value_t = 0)]
    pub receiver_delay_ms: u64,
    /// Fraction (0–1) of deliveries whose first attempt is answered 500.
    #[arg(long, default_value_t = 0.0)]
    pub fail_ratio: f64,
    /// Load everything with an API-only node, then time a worker-only node draining it.
    #[arg(long)]
    pub backlog: bool,
    /// Passed to `webhookd serve --concurrency` [default: webhookd's own, 256].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=65_536))]
    pub concurrency: Option<u64>,
    /// Export webhookd's spans (`serve --otlp-endpoint`) to a sink in the bench that accepts and
    /// discards them, to compare tracing on and off.
    #[arg(long)]
    pub otlp: bool,
    /// Passed to `webhookd serve --egress-proxy`: every delivery goes through this proxy (e.g. a
    /// local tinyproxy), to compare with direct connections. The raw ceiling stays direct.
    #[arg(long, value_name = "URL")]
    pub egress_proxy: Option<String>,
    /// Start webhookd with an event catalog whose `call.completed` schema (JSON Schema 2020-12)
    /// every measured event is checked against: the cost of validation at ingest.
    #[arg(long)]
    pub schema: bool,
    /// Give every measured webhook a content filter of five clauses that every event matches:
    /// the cost of filters at ingest.
    #[arg(long)]
    pub filters: bool,
    /// Publish the events to a message bus that webhookd consumes (`serve --source`) instead of
    /// posting them to the API: a JetStream stream or a RabbitMQ queue of the run's own.
    /// Latency then runs from each publish.
    #[arg(long, value_enum)]
    pub source: Option<crate::bus::Bus>,
    /// The NATS server of `--source nats`.
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
    /// The RabbitMQ server (and vhost) of `--source amqp`.
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    pub amqp_url: String,
    /// After the summary, print one line holding a JSON object.
    #[arg(long)]
    pub json: bool,
    /// Scheduling scenario: this many webhooks whose endpoint accepts connections and never
    /// answers, loaded before the measured events, in organizations other than the measured
    /// webhook's (see `--black-hole-tenants`).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pub black_holes: u64,
    /// The organizations the black holes are spread over (each its own tenant, with one agent).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=100))]
    pub black_hole_tenants: u64,
    /// Events pending at each black-hole webhook.
    #[arg(long, default_value_t = 1_000)]
    pub black_hole_events: u64,
    /// Scheduling scenario: a backlog of this many events at one slow endpoint, loaded before
    /// the measured events.
    #[arg(long, default_value_t = 0)]
    pub slow_backlog: u64,
    /// Milliseconds the slow endpoint takes to answer.
    #[arg(long, default_value_t = 200)]
    pub slow_delay_ms: u64,
    /// History scenario: write this many events, each with one delivery log on one webhook
    /// (and an earlier attempt for each failed log), spread over 30 days, straight into the
    /// database; then time every log read of the API and the dashboard over it, and the bytes it
    /// takes on disk. The other load options do not apply.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(100..=100_000_000))]
    pub history: Option<u64>,
    /// `--history`: timed requests per read (after two warm-ups).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub history_runs: u64,
    /// `--history`: after the reads, restart webhookd with `--retention 1h` (the whole history
    /// expired) while a second webhook is offered events at a steady rate; time until the history
    /// is gone and report that webhook's delivery latency meanwhile.
    #[arg(long)]
    pub retention_check: bool,
    /// `--retention-check`: events per second offered to the healthy webhook.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub healthy_rate: u64,
    /// Idle scenario: start webhookd, create ten webhooks, send nothing, let it settle, then
    /// measure for SECS seconds webhookd's CPU time and, on PostgreSQL, the database's
    /// transactions (every session's). The load options do not apply.
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub idle: Option<u64>,
    /// Keep one core busy with a busy-loop thread in the bench for the whole run (started
    /// before webhookd, stopped at the end): latency beside a CPU-heavy neighbour.
    #[arg(long)]
    pub cpu_hog: bool,
    /// Stop waiting for deliveries after this many seconds (counted from the first ingest).
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout_secs: u64,
}

impl Args {
    /// Checks what clap cannot express.
    pub fn validate(&self) -> anyhow::Result<()> {
        if !(0.0..=1.0).contains(&self.fail_ratio) {
            bail!("--fail-ratio must be between 0 and 1, got {}", self.fail_ratio);
        }
        if self.database != "sqlite"
            && !self.database.starts_with("postgres://")
            && !self.database.starts_with("postgresql://")
        {
            bail!("--database must be `sqlite` or a postgres:// URL, got {:?}", self.database);
        }
        if self.retention_check && self.history.is_none() {
            bail!("--retention-check is part of the --history scenario");
        }
        if self.idle.is_some()
            && (self.history.is_some()
                || self.source.is_some()
                || self.backlog
                || self.black_holes > 0
                || self.slow_backlog > 0)
        {
            bail!(
                "--idle sends nothing: leave out --history, --source, --backlog and the scenarios"
            );
        }
        if self.source.is_some() && (self.backlog || self.black_holes > 0 || self.slow_backlog > 0)
        {
            bail!("--source measures ingestion from the bus alone: leave out --backlog and the scenarios");
        }
        Ok(())
    }

    /// Every event goes to every webhook.
    pub fn expected(&self) -> u64 {
        self.events * self.webhooks
    }

    pub fn concurrency(&self) -> usize {
        self.concurrency
            .and_then(|c| usize::try_from(c).ok())
            .unwrap_or(WEBHOOKD_DEFAULT_CONCURRENCY)
    }

    /// Events per ingest request: given, or sized so one request goes out every 10 ms; never
    /// more than fit in webhookd's 1 MiB request body.
    pub fn batch_size(&self) -> u64 {
        let fits = (900 * 1024 / (self.payload_bytes + 96)).max(1);
        match (self.batch_size, self.rate) {
            (Some(size), _) => size,
            (None, 0) => 1000.min(fits),
            (None, rate) => (rate / 100).clamp(1, 1000).min(fits),
        }
    }

    /// The webhookd binary: given, or the one cargo builds next to this binary. Under
    /// `cargo run` (which sets `CARGO`), webhookd is built first, so a fresh clone needs one
    /// command and a stale binary is never measured.
    pub fn webhookd_binary(&self) -> anyhow::Result<PathBuf> {
        let path = match &self.webhookd {
            Some(path) => path.clone(),
            None => {
                let beside = std::env::current_exe()
                    .context("cannot find this binary's directory")?
                    .with_file_name("webhookd");
                if let Some(cargo) = std::env::var_os("CARGO") {
                    build_webhookd(&cargo, &beside)?;
                }
                beside
            }
        };
        if !path.is_file() {
            bail!(
                "webhookd binary not found at {}; run `cargo build --release -p webhookd` \
                 or pass --webhookd PATH",
                path.display()
            );
        }
        Ok(path)
    }
}

/// `cargo build -p webhookd` in the profile this binary was built in (its directory's name).
fn build_webhookd(cargo: &std::ffi::OsStr, beside: &std::path::Path) -> anyhow::Result<()> {
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.toml");
    let release =
        beside.parent().and_then(|dir| dir.file_name()).is_some_and(|name| name == "release");
    let mut command = std::process::Command::new(cargo);
    command.args(["build", "-p", "webhookd", "--manifest-path", manifest]);
    if release {
        command.arg("--release");
    }
    eprintln!("webhookd-bench: building webhookd ({})", if release { "release" } else { "debug" });
    let status = command.status().context("cannot run cargo to build webhookd")?;
    if !status.success() {
        bail!("building webhookd failed ({status})");
    }
    Ok(())
}
