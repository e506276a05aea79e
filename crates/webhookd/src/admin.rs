//! `webhookd org …` and `webhookd key …`: tenants and API keys from the command line, for the
//! first organization's lost key and for scripts. Output is JSON on stdout, one object per line;
//! errors go to stderr through `main`.

use anyhow::Context;
use serde_json::Value;
use uuid::Uuid;

use crate::app;
use crate::cli::{DatabaseArgs, KeyCommand, OrgCommand};
use crate::domain::clock::format_ms;
use crate::store::{ApiKeyInfo, Store};

pub async fn org(command: OrgCommand) -> anyhow::Result<()> {
    match command {
        OrgCommand::Create(args) => {
            let name = crate::domain::webhook::Name::parse(&args.name)
                .map_err(|e| anyhow::anyhow!("--name {e}"))?;
            let store = open_sealed(&args.database).await?;
            let created = store.create_org(name.as_str()).await;
            store.close().await;
            let created = created?;
            print_key(created.org.id, &created.api_key);
        }
        OrgCommand::List(args) => {
            let store = open_sealed(&args).await?;
            let orgs = store.orgs().await;
            store.close().await;
            for org in orgs? {
                println!(
                    "{}",
                    json_line(&[
                        ("org_id", org.id.to_string()),
                        ("name", org.name),
                        ("created_at", format_ms(org.created_at)),
                    ])
                );
            }
        }
    }
    Ok(())
}

pub async fn key(command: KeyCommand) -> anyhow::Result<()> {
    match command {
        KeyCommand::Create(args) => {
            let store = open_sealed(&args.database).await?;
            let created = store.create_api_key(args.org).await;
            store.close().await;
            let Some(api_key) = created? else {
                anyhow::bail!(
                    "no organization {} in the database {}; `webhookd org list` shows its \
                     organizations",
                    args.org,
                    app::redact(&args.database.database)
                );
            };
            print_key(args.org, &api_key);
        }
        KeyCommand::List(args) => {
            let store = open_sealed(&args.database).await?;
            let keys = store.api_keys(args.org).await;
            store.close().await;
            keys?.into_iter().for_each(print_key_info);
        }
        KeyCommand::Revoke(args) => {
            let store = open_sealed(&args.database).await?;
            let revoked = store.revoke_api_keys(&args.key_prefix).await;
            store.close().await;
            let revoked = revoked.context("cannot revoke the key")?;
            if revoked.is_empty() {
                anyhow::bail!(
                    "no API key starts with {} in the database {}; `webhookd key list` shows the \
                     keys' prefixes",
                    args.key_prefix,
                    app::redact(&args.database.database)
                );
            }
            revoked.into_iter().for_each(print_key_info);
        }
    }
    Ok(())
}

/// Every store seals secrets, so every command opens it with the server key, like `serve`.
async fn open_sealed(database: &DatabaseArgs) -> anyhow::Result<Store> {
    app::open_sealed_store(&database.database, database.secret_key.as_deref()).await
}

/// `{"org_id": "...", "api_key": "..."}`: what `org create` and `key create` print.
fn print_key(org_id: Uuid, api_key: &str) {
    println!("{}", json_line(&[("org_id", org_id.to_string()), ("api_key", api_key.to_string())]));
}

fn print_key_info(key: ApiKeyInfo) {
    println!(
        "{}",
        json_line(&[
            ("key_prefix", key.key_prefix),
            ("org_id", key.org_id.to_string()),
            ("created_at", format_ms(key.created_at)),
        ])
    );
}

/// `{"a": "x", "b": "y"}` with the fields in the order given (a JSON map would sort them).
fn json_line(fields: &[(&str, String)]) -> String {
    let fields: Vec<String> = fields
        .iter()
        .map(|(name, value)| format!("{}: {}", Value::from(*name), Value::from(value.as_str())))
        .collect();
    format!("{{{}}}", fields.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_keep_the_field_order_and_escape_values() {
        let line = json_line(&[("org_id", "1".into()), ("name", "A \"B\"".into())]);
        assert_eq!(line, r#"{"org_id": "1", "name": "A \"B\""}"#);
        assert!(serde_json::from_str::<Value>(&line).is_ok());
    }
}
