//! The scheduling scenario (`--black-holes`, `--slow-backlog`): before the measured events, load
//! webhooks whose endpoints hang (accept a connection, never answer), in organizations of their
//! own (`--black-hole-tenants`), and a large backlog at a slow endpoint of the measured agent.
//! The measured webhook's latency then shows whether they hold it up.

use std::net::SocketAddr;

use anyhow::{bail, Context};
use serde_json::json;
use tokio::net::TcpListener;

use crate::payload::typed_batch_body;

/// Events of these types go to the black holes and the slow endpoint; measured events are
/// `call.completed`.
const BLACK_HOLE_EVENT: &str = "call.started";
const SLOW_EVENT: &str = "call.ended";
const LOAD_BATCH: u64 = 1_000;

/// What was loaded.
#[derive(Debug, Default, Clone, Copy)]
pub struct Loaded {
    pub black_holes: u64,
    pub black_hole_logs: u64,
    pub slow_backlog: u64,
}

/// An endpoint that accepts connections and holds them, never answering.
async fn black_hole() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    Ok(addr)
}

pub struct Scenario<'a> {
    pub client: &'a reqwest::Client,
    pub api: SocketAddr,
    pub api_key: &'a str,
    pub agent: &'a str,
    pub receiver: SocketAddr,
    /// The black holes' tenants: (API key, agent id) each.
    pub tenants: Vec<(String, String)>,
}

impl Scenario<'_> {
    /// Creates `black_holes` hanging webhooks with `per_hole` events pending each, and a slow
    /// webhook with `slow_backlog` events pending.
    pub async fn load(
        &self,
        black_holes: u64,
        per_hole: u64,
        slow_backlog: u64,
    ) -> anyhow::Result<Loaded> {
        let mut loaded = Loaded::default();
        if black_holes > 0 && !self.tenants.is_empty() {
            let hole = black_hole().await?;
            let tenants = self.tenants.len() as u64;
            for (t, (key, agent)) in self.tenants.iter().enumerate() {
                let t = t as u64;
                let holes = black_holes / tenants + u64::from(t < black_holes % tenants);
                for k in 0..holes {
                    let name = format!("black-hole-{t}-{k}");
                    self.webhook(key, agent, &name, &format!("http://{hole}/"), BLACK_HOLE_EVENT)
                        .await?;
                }
                self.ingest(key, agent, BLACK_HOLE_EVENT, per_hole).await?;
            }
            loaded.black_holes = black_holes;
            loaded.black_hole_logs = black_holes * per_hole;
        }
        if slow_backlog > 0 {
            let slow = format!("http://{}/slow/0", self.receiver);
            self.webhook(self.api_key, self.agent, "slow", &slow, SLOW_EVENT).await?;
            self.ingest(self.api_key, self.agent, SLOW_EVENT, slow_backlog).await?;
            loaded.slow_backlog = slow_backlog;
        }
        Ok(loaded)
    }

    async fn webhook(
        &self,
        key: &str,
        agent: &str,
        name: &str,
        url: &str,
        event: &str,
    ) -> anyhow::Result<()> {
        let body = json!({"name": name, "webhook_url": url, "events": [event], "timeout": 30, "max_retries": 0});
        let path = format!("http://{}/api/v1/agents/{agent}/webhooks", self.api);
        let response = self.client.post(&path).bearer_auth(key).json(&body).send().await?;
        if response.status() != reqwest::StatusCode::CREATED {
            bail!("creating the {name} webhook answered {}", response.status());
        }
        Ok(())
    }

    async fn ingest(&self, key: &str, agent: &str, event: &str, count: u64) -> anyhow::Result<()> {
        let path = format!("http://{}/api/v1/agents/{agent}/events/batch", self.api);
        let mut first = 0;
        while first < count {
            let n = LOAD_BATCH.min(count - first);
            let body = typed_batch_body(event, first, n, 256);
            let response = self
                .client
                .post(&path)
                .bearer_auth(key)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .context("loading the scenario's backlog")?;
            if response.status() != reqwest::StatusCode::ACCEPTED {
                bail!("loading the scenario's backlog answered {}", response.status());
            }
            first += n;
        }
        Ok(())
    }
}
