//! `--idle SECS`: what a node costs when nothing happens. webhookd is started on the run's fresh
//! database, one agent with ten webhooks is created through the API (as a load run would), nothing
//! is sent, and after a short settling time the bench measures, over SECS seconds, webhookd's CPU
//! time (from /proc, as every run does) and, on PostgreSQL, the transactions committed or rolled
//! back in the run's database (`pg_stat_database`: every session on that database counts, so give
//! the bench a database of its own to read the node's alone).

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use serde_json::{json, Value};

use crate::cli::Args;
use crate::database::Database;
use crate::server::Webhookd;
use crate::{receiver, setup};

/// Webhooks the idle node holds.
pub const WEBHOOKS: u64 = 10;
/// After the webhooks are created, before the window opens: startup work and the first ticks of
/// every periodic task are left out.
const SETTLE: Duration = Duration::from_secs(5);
const CHECK_EVERY: Duration = Duration::from_secs(1);

fn progress(message: &str) {
    eprintln!("webhookd-bench: {message}");
}

struct IdleReport {
    backend: &'static str,
    window_s: f64,
    cpu_s: f64,
    peak_rss_mb: f64,
    /// PostgreSQL only.
    transactions: Option<u64>,
    /// Requests that reached the receiver during the whole run (none are expected).
    deliveries: u64,
    cpu_hog: bool,
}

/// Runs the idle scenario and prints its report.
pub async fn run(args: &Args, secs: u64) -> anyhow::Result<bool> {
    let binary = args.webhookd_binary()?;
    let (receiver, store) = receiver::start(0.0, Duration::ZERO, Duration::ZERO, 16).await?;
    let database = Database::prepare(&args.database)?;
    let api_key = setup::create_org(&binary, &database.url).await?;
    let serve = crate::run::serve_args(args, &database.url);
    let mut node = Webhookd::start(&binary, &serve).await?;
    let api = node.addr.ok_or_else(|| anyhow!("webhookd did not log its API address"))?;
    let client = setup::client()?;
    setup::create_agent(&client, api, &api_key, receiver, WEBHOOKS, None).await?;
    progress(&format!(
        "idle on {}: {WEBHOOKS} webhooks, nothing sent; settling {} s, then measuring {secs} s",
        database.backend,
        SETTLE.as_secs()
    ));
    tokio::time::sleep(SETTLE).await;
    node.check_alive()?;

    let transactions_before = database.pg_transactions()?;
    let cpu_before = node.usage().cpu_s;
    let started = Instant::now();
    let window = Duration::from_secs(secs);
    while started.elapsed() < window {
        tokio::time::sleep(CHECK_EVERY.min(window.saturating_sub(started.elapsed()))).await;
        node.check_alive()?;
    }
    let usage = node.usage();
    let window_s = started.elapsed().as_secs_f64();
    let transactions_after = database.pg_transactions()?;
    node.stop().await.context("stopping webhookd")?;

    let report = IdleReport {
        backend: database.backend,
        window_s,
        cpu_s: usage.cpu_s - cpu_before,
        peak_rss_mb: usage.peak_rss_mb,
        transactions: transactions_before
            .zip(transactions_after)
            .map(|(before, after)| after.saturating_sub(before)),
        deliveries: store.delivered.load(Relaxed),
        cpu_hog: args.cpu_hog,
    };
    report.print();
    if args.json {
        println!("{}", report.to_json());
    }
    Ok(true)
}

impl IdleReport {
    fn per_min(&self, count: f64) -> f64 {
        count * 60.0 / self.window_s
    }

    fn print(&self) {
        println!(
            "webhookd-bench: idle, {WEBHOOKS} webhooks on {}, nothing sent, measured {:.0} s after {} s settling{}",
            self.backend,
            self.window_s,
            SETTLE.as_secs(),
            if self.cpu_hog { ", beside a busy-loop CPU hog" } else { "" }
        );
        println!(
            "  webhookd     CPU {:.2} s in the window = {:.3} CPU s/min ({:.2}% of one core), peak RSS {:.1} MB",
            self.cpu_s,
            self.per_min(self.cpu_s),
            self.cpu_s / self.window_s * 100.0,
            self.peak_rss_mb
        );
        if let Some(transactions) = self.transactions {
            println!(
                "  postgres     {transactions} transactions in the window = {:.1}/min (pg_stat_database: \
                 every session on the database counts, the bench's own read included)",
                self.per_min(transactions as f64)
            );
        }
        if self.deliveries > 0 {
            println!("  receiver     {} unexpected deliveries", self.deliveries);
        }
    }

    fn to_json(&self) -> Value {
        json!({
            "scenario": "idle",
            "backend": self.backend,
            "webhooks": WEBHOOKS,
            "settle_s": SETTLE.as_secs(),
            "window_s": round(self.window_s, 2),
            "server_cpu_s": round(self.cpu_s, 3),
            "cpu_s_per_min": round(self.per_min(self.cpu_s), 4),
            "server_peak_rss_mb": round(self.peak_rss_mb, 1),
            "pg_transactions": self.transactions,
            "pg_transactions_per_min": self.transactions.map(|t| round(self.per_min(t as f64), 1)),
            "deliveries": self.deliveries,
            "cpu_hog": self.cpu_hog,
        })
    }
}

fn round(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}
