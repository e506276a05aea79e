//! webhookd: a webhook delivery service. See `docs/ARCHITECTURE.md` for the map.

pub mod admin;
pub mod api;
pub mod app;
pub mod cli;
pub mod config;
pub mod dispatch;
pub mod domain;
pub mod ingest;
pub mod listen;
pub mod maintenance;
pub mod server;
pub mod signing;
pub mod source;
pub mod store;
pub mod telemetry;
pub mod ui;

use cli::{Cli, Command};

/// Runs one parsed command line to completion.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => app::serve(args.into_config().map_err(anyhow::Error::msg)?).await,
        Command::Migrate(args) => app::migrate(&args.database).await,
        Command::Listen(args) => listen::run(args.port, args.secret).await,
        Command::Org { command } => admin::org(command).await,
        Command::Key { command } => admin::key(command).await,
    }
}
