//! `webhookd-bench`: a reproducible end-to-end benchmark of webhookd. It starts its own receiver
//! and webhookd processes on 127.0.0.1, measures the machine's raw HTTP ceiling, ingests events,
//! and reports delivery throughput (also as a fraction of that ceiling), latency percentiles and
//! webhookd's memory and CPU use.

mod bus;
mod cli;
mod database;
mod history;
mod history_sql;
mod hog;
mod idle;
mod load;
mod otlp_sink;
mod payload;
mod raw;
mod receiver;
mod report;
mod run;
mod scenario;
mod server;
mod setup;
mod usage;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("webhookd-bench: error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    // On Ctrl-C or SIGTERM the run is dropped mid-way; the Drop of each webhookd child and of
    // the database stops the children and removes temporary files and schemas.
    let outcome = runtime.block_on(async {
        tokio::select! {
            outcome = run::run(args) => outcome,
            signal = interrupted() => Err(anyhow::anyhow!("interrupted by {signal}")),
        }
    });
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("webhookd-bench: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on the first Ctrl-C or SIGTERM, naming it.
async fn interrupted() -> &'static str {
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(terminate) => terminate,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return "Ctrl-C";
            }
        };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "Ctrl-C",
        _ = terminate.recv() => "SIGTERM",
    }
}
