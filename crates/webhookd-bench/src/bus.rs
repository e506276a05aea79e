//! `--source nats|amqp`: events reach webhookd through a message bus instead of the API. A stream
//! (or queue) of the run's own is made, webhookd consumes it with `--source`, and the bench
//! publishes every event to it — flat out, or at `--rate` — timing each publish, so latency runs
//! from the publish to the delivery. Ingestion is done when webhookd's
//! `webhookd_source_messages_total{outcome="ingested"}` reaches the count.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use async_nats::jetstream;
use clap::ValueEnum;
use lapin::options::{BasicPublishOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};

use crate::payload::event_data;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Bus {
    Nats,
    Amqp,
}

/// Publishes acknowledged by the broker in flight at once (JetStream acks, AMQP confirms).
const PUBLISH_WINDOW: usize = 1_000;

pub enum Publisher {
    Nats { jetstream: jetstream::Context, stream: String },
    Amqp { channel: lapin::Channel, _connection: Box<Connection>, queue: String },
}

/// What was published: each event's index → when its publish began and when the broker
/// confirmed it.
pub struct Published {
    pub sent: HashMap<u128, Instant>,
    pub acked: HashMap<u128, Instant>,
    pub first_send: Instant,
}

impl Publisher {
    /// A stream or queue of this run's own on the broker at `url`; returns it with the
    /// `--source` URL that consumes it and the source's name in webhookd's metrics.
    pub async fn prepare(bus: Bus, url: &str) -> anyhow::Result<(Publisher, String, String)> {
        let name = format!("bench_{}", uuid::Uuid::new_v4().simple());
        match bus {
            Bus::Nats => {
                let client = async_nats::connect(url)
                    .await
                    .with_context(|| format!("cannot connect to NATS at {url}"))?;
                let jetstream = jetstream::new(client);
                jetstream
                    .create_stream(jetstream::stream::Config {
                        name: name.clone(),
                        subjects: vec![format!("{name}.>")],
                        ..Default::default()
                    })
                    .await
                    .context("cannot create the bench's stream")?;
                let host = url.trim_start_matches("nats://").trim_end_matches('/');
                let source = format!("nats://{host}/{name}?subject={name}.calls&consumer=webhookd");
                let metric = format!("nats:{name}/webhookd");
                Ok((Publisher::Nats { jetstream, stream: name }, source, metric))
            }
            Bus::Amqp => {
                let properties = ConnectionProperties::default()
                    .with_executor(tokio_executor_trait::Tokio::current())
                    .with_reactor(tokio_reactor_trait::Tokio::current());
                let connection = Connection::connect(url, properties)
                    .await
                    .with_context(|| format!("cannot connect to RabbitMQ at {url}"))?;
                let channel = connection.create_channel().await?;
                channel.confirm_select(Default::default()).await?;
                let options = QueueDeclareOptions { durable: true, ..Default::default() };
                channel.queue_declare(&name, options, FieldTable::default()).await?;
                let base = url.split('?').next().unwrap_or(url);
                let source = format!("{base}?queue={name}");
                let metric = format!("amqp:{name}");
                Ok((
                    Publisher::Amqp { channel, _connection: Box::new(connection), queue: name },
                    source,
                    metric,
                ))
            }
        }
    }

    /// Publishes events `0..events` for `agent`, each with its index as message id; flat out
    /// (`rate` 0) or one every 1/rate s.
    pub async fn publish(
        &self,
        agent: &str,
        events: u64,
        rate: u64,
        payload_bytes: usize,
    ) -> anyhow::Result<Published> {
        let capacity = usize::try_from(events).unwrap_or(0);
        let mut sent = HashMap::with_capacity(capacity);
        let mut acked = HashMap::with_capacity(capacity);
        let mut waiting = std::collections::VecDeque::with_capacity(PUBLISH_WINDOW);
        let start = tokio::time::Instant::now();
        let first_send = Instant::now();
        for index in 0..events {
            if rate > 0 {
                let at = start + Duration::from_secs_f64(index as f64 / rate as f64);
                tokio::time::sleep_until(at).await;
            }
            let body = format!(
                "{{\"agent_id\":\"{agent}\",\"event\":\"call.completed\",\"call_id\":\"c_{index}\",\"data\":{}}}",
                event_data(index, payload_bytes)
            );
            sent.insert(u128::from(index), Instant::now());
            waiting.push_back((index, self.send(index, body).await?));
            while waiting.len() >= PUBLISH_WINDOW
                || waiting.front().is_some_and(|(_, confirm)| confirm.is_finished())
            {
                let Some((index, confirm)) = waiting.pop_front() else { break };
                confirm.await.context("publish task failed")??;
                acked.insert(u128::from(index), Instant::now());
            }
        }
        for (index, confirm) in waiting {
            confirm.await.context("publish task failed")??;
            acked.insert(u128::from(index), Instant::now());
        }
        Ok(Published { sent, acked, first_send })
    }

    /// Sends one message; the task ends when the broker has it.
    async fn send(
        &self,
        index: u64,
        body: String,
    ) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<()>>> {
        let id = format!("m-{index}");
        Ok(match self {
            Publisher::Nats { jetstream, stream } => {
                let mut headers = async_nats::HeaderMap::new();
                headers.insert("Nats-Msg-Id", id.as_str());
                let ack = jetstream
                    .publish_with_headers(format!("{stream}.calls"), headers, body.into())
                    .await
                    .context("publish failed")?;
                tokio::spawn(async move {
                    ack.await.context("the stream did not store a message")?;
                    Ok(())
                })
            }
            Publisher::Amqp { channel, queue, .. } => {
                let properties = BasicProperties::default().with_message_id(id.as_str().into());
                let confirm = channel
                    .basic_publish(
                        "",
                        queue,
                        BasicPublishOptions::default(),
                        body.as_bytes(),
                        properties,
                    )
                    .await
                    .context("publish failed")?;
                tokio::spawn(async move {
                    if !confirm.await.context("no publisher confirm")?.is_ack() {
                        bail!("RabbitMQ refused a message");
                    }
                    Ok(())
                })
            }
        })
    }

    /// Removes the run's stream or queue.
    pub async fn remove(&self) {
        match self {
            Publisher::Nats { jetstream, stream } => {
                let _ = jetstream.delete_stream(stream).await;
            }
            Publisher::Amqp { channel, queue, .. } => {
                let _ = channel.queue_delete(queue, QueueDeleteOptions::default()).await;
            }
        }
    }
}

/// Waits until webhookd at `api` has ingested `events` messages of `source`; returns when.
pub async fn wait_ingested(
    client: &reqwest::Client,
    api: SocketAddr,
    source: &str,
    events: u64,
    deadline: Instant,
) -> anyhow::Result<Instant> {
    let selector =
        format!("webhookd_source_messages_total{{source=\"{source}\",outcome=\"ingested\"}}");
    loop {
        let text = client.get(format!("http://{api}/metrics")).send().await?.text().await?;
        let ingested: f64 = text
            .lines()
            .find_map(|line| line.strip_prefix(selector.as_str()))
            .and_then(|rest| rest.trim().parse().ok())
            .unwrap_or(0.0);
        if ingested >= events as f64 {
            return Ok(Instant::now());
        }
        if Instant::now() >= deadline {
            bail!("webhookd ingested {ingested} of {events} messages in time");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
