//! webhookd: a webhook delivery service. See `docs/ARCHITECTURE.md` for the map.

pub mod api;
pub mod app;
pub mod cli;
pub mod config;
pub mod dispatch;
pub mod domain;
pub mod listen;
pub mod maintenance;
pub mod server;
pub mod signing;
pub mod store;
pub mod telemetry;

use cli::{Cli, Command, OrgCommand};

/// Runs one parsed command line to completion.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => app::serve(args.into_config()).await,
        Command::Migrate(args) => app::migrate(&args.database).await,
        Command::Listen(args) => listen::run(args.port, args.secret).await,
        Command::Org { command: OrgCommand::Create(args) } => {
            let name = domain::webhook::Name::parse(&args.name)
                .map_err(|e| anyhow::anyhow!("--name {e}"))?;
            let database = &args.database;
            let store =
                app::open_sealed_store(&database.database, database.secret_key.as_deref()).await?;
            let created = store.create_org(name.as_str()).await?;
            store.close().await;
            println!(
                r#"{{"org_id": {}, "api_key": {}}}"#,
                serde_json::Value::from(created.org.id.to_string()),
                serde_json::Value::from(created.api_key)
            );
            Ok(())
        }
    }
}
