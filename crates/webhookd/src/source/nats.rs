//! A NATS JetStream source: a durable pull consumer (created if missing) on a stream and a
//! subject filter. Messages are pulled only as far as the node's bound of unacknowledged
//! messages has room, so a flood waits in the stream; each is acknowledged after its event's
//! commit, terminated when it can never be ingested, and nak'ed after a delay when the database
//! is down.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_nats::jetstream::consumer::{pull, AckPolicy, PullConsumer};
use async_nats::jetstream::{self, AckKind, Message};
use futures::StreamExt;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use super::intake::{Flow, Incoming, Intake};
use super::state::SourceState;
use super::LAG_EVERY;

/// Most messages asked for in one pull request.
const PULL_MAX: usize = 1_000;
/// How long a pull request waits for messages; the server's heartbeats within it tell a dead
/// connection from a quiet stream.
const PULL_EXPIRES: Duration = Duration::from_secs(5);
const PULL_HEARTBEAT: Duration = Duration::from_secs(1);
/// Messages taken together into the group commit, at most.
const CHUNK: usize = 512;

pub struct NatsSource {
    pub name: String,
    pub server: String,
    pub stream: String,
    pub subject: String,
    pub consumer: String,
    /// The node's bound of unacknowledged messages of this source.
    pub max_unacked: usize,
}

/// One connection's life: connect, find the stream, make or find the consumer, and pull until
/// `stop` (`Ok`) or until the connection is lost (`Err`, and the caller reconnects).
pub async fn consume(
    source: &NatsSource,
    intake: &Intake,
    state: &SourceState,
    room: &Arc<Semaphore>,
    stop: &CancellationToken,
) -> anyhow::Result<()> {
    let (lost_tx, mut lost) = mpsc::unbounded_channel();
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(5))
        // This loop reconnects (and says so in /readyz); the client does not retry by itself.
        .max_reconnects(Some(1))
        .event_callback(move |event| {
            let lost_tx = lost_tx.clone();
            async move {
                if matches!(event, async_nats::Event::Disconnected | async_nats::Event::Closed) {
                    let _ = lost_tx.send(());
                }
            }
        })
        .connect(&source.server)
        .await
        .with_context(|| {
            format!("cannot connect to NATS at {}", crate::app::redact(&source.server))
        })?;
    let jetstream = jetstream::new(client);
    let stream = jetstream.get_stream(&source.stream).await.with_context(|| {
        format!("cannot open the JetStream stream {} (does it exist?)", source.stream)
    })?;
    let config = pull::Config {
        durable_name: Some(source.consumer.clone()),
        filter_subject: source.subject.clone(),
        ack_policy: AckPolicy::Explicit,
        // Room for every node's own bound; each node keeps to its own.
        max_ack_pending: i64::try_from(source.max_unacked * 16).unwrap_or(-1),
        ..Default::default()
    };
    let consumer: PullConsumer = stream
        .get_or_create_consumer(&source.consumer, config)
        .await
        .with_context(|| format!("cannot create the consumer {}", source.consumer))?;
    state.consuming();
    tracing::info!(source = %source.name, "consuming from NATS JetStream");
    let _lag =
        AbortOnDropHandle::new(tokio::spawn(report_lag(source.name.clone(), consumer.clone())));
    loop {
        // Wait for room, then ask for as many messages as there is room for.
        let mut reservation = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = lost.recv() => anyhow::bail!("the connection to NATS was lost"),
            permit = room.clone().acquire_many_owned(1) => permit?,
        };
        let more = room.available_permits().min(PULL_MAX - 1);
        if let Ok(extra) = room.clone().try_acquire_many_owned(more as u32) {
            reservation.merge(extra);
        }
        let wanted = reservation.num_permits();
        let batch = consumer
            .batch()
            .max_messages(wanted)
            .expires(PULL_EXPIRES)
            .heartbeat(PULL_HEARTBEAT)
            .messages()
            .await
            .context("cannot pull from the consumer")?;
        let mut chunks = batch.ready_chunks(CHUNK);
        loop {
            let chunk = tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                _ = lost.recv() => anyhow::bail!("the connection to NATS was lost"),
                chunk = chunks.next() => match chunk {
                    Some(chunk) => chunk,
                    None => break, // the request is fulfilled or expired: ask again
                },
            };
            let mut messages = Vec::with_capacity(chunk.len());
            let mut failure = None;
            for item in chunk {
                match item {
                    Ok(message) => messages.push(message),
                    Err(error) => failure = Some(error),
                }
            }
            if !messages.is_empty() {
                let permits = reservation.split(messages.len());
                let (intake, name) = (intake.clone(), source.name.clone());
                tokio::spawn(async move {
                    settle(&intake, &name, messages).await;
                    drop(permits);
                });
            }
            if let Some(error) = failure {
                anyhow::bail!("pulling from the consumer failed: {error}");
            }
        }
    }
}

/// Stores a chunk of messages: acknowledged, terminated, or nak'ed after the delay.
async fn settle(intake: &Intake, source: &str, messages: Vec<Message>) {
    let incoming = |message: &Message| Incoming {
        body: message.payload.clone(),
        broker_id: message_id(message),
    };
    let tell = |message: &Message, flow: Flow| {
        let kind = match flow {
            Flow::Ack => AckKind::Ack,
            Flow::Drop => AckKind::Term,
            Flow::Redeliver => AckKind::Nak(None),
        };
        // An owned message per answer: the answer's future must not borrow the chunk.
        let message = message.clone();
        async move { message.ack_with(kind).await.map_err(|error| error.to_string()) }
    };
    intake.settle(source, &messages, incoming, tell).await;
}

/// The JetStream message id (`Nats-Msg-Id`, the publisher's de-duplication id), else the
/// message's sequence in its stream: both are the same on every redelivery.
fn message_id(message: &Message) -> Option<String> {
    let header = message
        .headers
        .as_ref()
        .and_then(|headers| headers.get("Nats-Msg-Id"))
        .map(|id| id.as_str().to_string())
        .filter(|id| !id.is_empty());
    header.or_else(|| {
        let info = message.info().ok()?;
        Some(format!("nats:{}:{}", info.stream, info.stream_sequence))
    })
}

/// The consumer's pending count (messages in the stream not yet delivered to it), as a gauge.
async fn report_lag(source: String, consumer: PullConsumer) {
    let mut every = tokio::time::interval(LAG_EVERY);
    loop {
        every.tick().await;
        if let Ok(info) = consumer.get_info().await {
            crate::telemetry::metrics::source_pending(&source, info.num_pending);
        }
    }
}
