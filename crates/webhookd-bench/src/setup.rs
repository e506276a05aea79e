//! Tenant setup through webhookd's own interfaces: `org create` for an API key, then one agent
//! and N webhooks over the HTTP API, exactly as a customer would.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::{anyhow, bail, Context};
use serde_json::{json, Value};

/// The bench's HTTP client for the API. Loopback only, so no proxy from the environment.
pub fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder().no_proxy().tcp_nodelay(true).build()?)
}

/// Runs `webhookd org create` (which also migrates the database) and returns the API key.
pub async fn create_org(binary: &Path, database_url: &str) -> anyhow::Result<String> {
    let mut command = crate::server::command(binary);
    command.args(["org", "create", "--name", "bench", "--database", database_url]);
    let output = tokio::process::Command::from(command)
        .output()
        .await
        .context("cannot run `webhookd org create`")?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no message");
        bail!("`webhookd org create` failed ({}): {}", output.status, last.trim());
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let created: Value = stdout
        .lines()
        .find_map(|line| serde_json::from_str(line).ok())
        .ok_or_else(|| anyhow!("`webhookd org create` printed no JSON line"))?;
    created["api_key"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow!("`webhookd org create` printed no api_key"))
}

/// A content filter of five clauses (`--filters`) that every bench event matches.
pub fn five_clause_filter() -> serde_json::Value {
    json!({
        "i": {"$gte": 0},
        "pad": {"$exists": true},
        "$or": [{"i": {"$lt": 0}}, {"pad": {"$contains": "x"}}],
        "$not": {"i": -1},
        "$and": [{"i": {"$lt": 1_000_000_000_000_i64}}]
    })
}

/// Creates the agent and its webhooks (`/hook/0` … `/hook/N-1`); returns the agent id.
pub async fn create_agent(
    client: &reqwest::Client,
    api: SocketAddr,
    api_key: &str,
    receiver: SocketAddr,
    webhooks: u64,
    filter: Option<&serde_json::Value>,
) -> anyhow::Result<String> {
    let base = format!("http://{api}/api/v1");
    let agent = post(client, &format!("{base}/agents"), api_key, &json!({"name": "bench"})).await?;
    let agent_id = id_of(&agent)?;
    for k in 0..webhooks {
        let mut body = json!({
            "name": format!("bench-{k}"),
            "webhook_url": format!("http://{receiver}/hook/{k}"),
            "events": ["call.completed"],
            "max_retries": 10,
            "timeout": 30,
        });
        if let Some(filter) = filter {
            body["filter"] = filter.clone();
        }
        post(client, &format!("{base}/agents/{agent_id}/webhooks"), api_key, &body).await?;
    }
    Ok(agent_id)
}

/// POSTs JSON, expects 201 and returns the envelope's `data`.
pub async fn post(
    client: &reqwest::Client,
    url: &str,
    api_key: &str,
    body: &Value,
) -> anyhow::Result<Value> {
    let response = client.post(url).bearer_auth(api_key).json(body).send().await?;
    let status = response.status();
    let mut envelope: Value = response.json().await.with_context(|| format!("POST {url}"))?;
    if status != reqwest::StatusCode::CREATED {
        bail!("POST {url} answered {status}: {}", envelope["message"]);
    }
    Ok(envelope["data"].take())
}

fn id_of(data: &Value) -> anyhow::Result<String> {
    data["id"].as_str().map(str::to_string).ok_or_else(|| anyhow!("created agent has no id"))
}
