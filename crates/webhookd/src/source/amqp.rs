//! A RabbitMQ (AMQP 0-9-1) source: one queue, consumed with a prefetch of the node's bound of
//! unacknowledged messages (`basic.qos`), so a flood waits in the queue. Each message is
//! acknowledged after its event's commit, rejected without requeue when it can never be
//! ingested (to the queue's dead-letter exchange, when it has one), and requeued after a delay
//! when the database is down.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions, BasicRejectOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use super::intake::{Flow, Incoming, Intake};
use super::state::SourceState;
use super::LAG_EVERY;

/// Messages taken together into the group commit, at most.
const CHUNK: usize = 512;

pub struct AmqpSource {
    pub name: String,
    pub uri: String,
    pub queue: String,
    /// The node's bound of unacknowledged messages of this source: the prefetch.
    pub max_unacked: usize,
}

/// One connection's life: connect, check the queue, consume until `stop` (`Ok`) or until the
/// connection or channel is lost (`Err`, and the caller reconnects).
pub async fn consume(
    source: &AmqpSource,
    intake: &Intake,
    state: &SourceState,
    room: &Arc<Semaphore>,
    stop: &CancellationToken,
) -> anyhow::Result<()> {
    let properties = ConnectionProperties::default()
        .with_executor(tokio_executor_trait::Tokio::current())
        .with_reactor(tokio_reactor_trait::Tokio::current());
    let connect = Connection::connect(&source.uri, properties);
    let connection = tokio::time::timeout(Duration::from_secs(5), connect)
        .await
        .context("timed out")
        .and_then(|connected| connected.map_err(anyhow::Error::new))
        .with_context(|| {
            format!("cannot connect to RabbitMQ at {}", crate::app::redact(&source.uri))
        })?;
    let channel = connection.create_channel().await.context("cannot open a channel")?;
    // The queue is the operator's (its durability, its dead-letter exchange): only checked.
    let passive = QueueDeclareOptions { passive: true, ..Default::default() };
    channel
        .queue_declare(&source.queue, passive, FieldTable::default())
        .await
        .with_context(|| format!("cannot open the queue {} (does it exist?)", source.queue))?;
    let prefetch = u16::try_from(source.max_unacked).unwrap_or(u16::MAX);
    channel.basic_qos(prefetch, BasicQosOptions::default()).await.context("basic.qos failed")?;
    let consumer = channel
        .basic_consume(&source.queue, "", BasicConsumeOptions::default(), FieldTable::default())
        .await
        .with_context(|| format!("cannot consume from the queue {}", source.queue))?;
    state.consuming();
    tracing::info!(source = %source.name, "consuming from RabbitMQ");
    let lag = report_lag(source.name.clone(), source.queue.clone(), channel.clone());
    let _lag = AbortOnDropHandle::new(tokio::spawn(lag));
    let mut chunks = consumer.ready_chunks(CHUNK);
    loop {
        let chunk = tokio::select! {
            _ = stop.cancelled() => {
                let _ = connection.close(200, "webhookd is stopping").await;
                return Ok(());
            }
            chunk = chunks.next() => chunk.context("the consumer was cancelled")?,
        };
        let mut deliveries = Vec::with_capacity(chunk.len());
        let mut failure = None;
        for item in chunk {
            match item {
                Ok(delivery) => deliveries.push(delivery),
                Err(error) => failure = Some(error),
            }
        }
        if !deliveries.is_empty() {
            // The broker keeps to the prefetch; the permits count what is held here, for the
            // same bound as the other brokers.
            let permits = room.clone().acquire_many_owned(deliveries.len() as u32).await?;
            let (intake, name) = (intake.clone(), source.name.clone());
            tokio::spawn(async move {
                settle(&intake, &name, deliveries).await;
                drop(permits);
            });
        }
        if let Some(error) = failure {
            return Err(anyhow::Error::new(error).context("the connection to RabbitMQ was lost"));
        }
    }
}

/// Stores a chunk of deliveries: acknowledged, rejected without requeue (to the queue's
/// dead-letter exchange, if it has one), or requeued after the delay (AMQP has no delayed
/// requeue: holding the deliveries is the delay).
async fn settle(intake: &Intake, source: &str, deliveries: Vec<Delivery>) {
    let incoming = |delivery: &Delivery| Incoming {
        body: bytes::Bytes::copy_from_slice(&delivery.data),
        broker_id: delivery
            .properties
            .message_id()
            .as_ref()
            .map(|id| id.as_str().to_string())
            .filter(|id| !id.is_empty()),
    };
    let tell = |delivery: &Delivery, flow: Flow| {
        let acker = delivery.acker.clone();
        async move {
            match flow {
                Flow::Ack => acker.ack(BasicAckOptions::default()).await,
                Flow::Drop => acker.reject(BasicRejectOptions { requeue: false }).await,
                Flow::Redeliver => {
                    acker.nack(BasicNackOptions { requeue: true, multiple: false }).await
                }
            }
            .map(drop)
            .map_err(|error| error.to_string())
        }
    };
    intake.settle(source, &deliveries, incoming, tell).await;
}

/// The queue's ready messages, as a gauge.
async fn report_lag(source: String, queue: String, channel: Channel) {
    let mut every = tokio::time::interval(LAG_EVERY);
    let passive = QueueDeclareOptions { passive: true, ..Default::default() };
    loop {
        every.tick().await;
        if let Ok(declared) = channel.queue_declare(&queue, passive, FieldTable::default()).await {
            crate::telemetry::metrics::source_pending(&source, u64::from(declared.message_count()));
        }
    }
}
