//! Event sources (SPEC §11): webhookd as a consumer of the platform's message bus, beside the
//! HTTP API and on the same write path. Each `--source` runs one task that connects, consumes
//! and, when the connection is lost, reconnects with backoff. A message is parsed by the API's
//! own parser (`message.rs`), stored by the API's group commit (`intake.rs`, through
//! `crate::ingest`), and acknowledged only after its commit (`nats.rs`, `amqp.rs`).

pub mod amqp;
pub mod intake;
pub mod message;
pub mod nats;
pub mod state;
pub mod url;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

pub use intake::Intake;
pub use state::{SourceHealth, SourceStates};
pub use url::SourceUrl;

/// Default of `--source-max-unacked`: messages of one source delivered to a node and not yet
/// acknowledged. About a second of flat-out ingestion: enough to fill group commits, little
/// enough that a flood waits in the broker.
pub const DEFAULT_MAX_UNACKED: usize = 1_000;
/// How long a message that was not stored (the database is down) waits before it comes back.
pub const RETRY_DELAY: Duration = Duration::from_secs(2);
/// How often the broker is asked for the lag.
pub const LAG_EVERY: Duration = Duration::from_secs(5);
/// Reconnection backoff: the first delay, doubled up to the last.
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Starts one consuming task per source.
pub fn start(
    sources: &[SourceUrl],
    max_unacked: usize,
    intake: &Intake,
    states: &SourceStates,
    stop: &CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    sources
        .iter()
        .map(|source| {
            let state = states.add(source.name());
            let (intake, stop) = (intake.clone(), stop.clone());
            let max_unacked = max_unacked.max(1);
            let room = Arc::new(Semaphore::new(max_unacked));
            let source = source.clone();
            tokio::spawn(async move {
                let name = source.name();
                let mut backoff = BACKOFF_FIRST;
                loop {
                    let started = tokio::time::Instant::now();
                    let outcome = match &source {
                        SourceUrl::Nats { server, stream, subject, consumer } => {
                            let nats = nats::NatsSource {
                                name: name.clone(),
                                server: server.clone(),
                                stream: stream.clone(),
                                subject: subject.clone(),
                                consumer: consumer.clone(),
                                max_unacked,
                            };
                            nats::consume(&nats, &intake, &state, &room, &stop).await
                        }
                        SourceUrl::Amqp { uri, queue, .. } => {
                            let amqp = amqp::AmqpSource {
                                name: name.clone(),
                                uri: uri.clone(),
                                queue: queue.clone(),
                                max_unacked,
                            };
                            amqp::consume(&amqp, &intake, &state, &room, &stop).await
                        }
                    };
                    let Err(error) = outcome else { return };
                    // A connection that lasted a while starts the backoff afresh.
                    if started.elapsed() > BACKOFF_MAX {
                        backoff = BACKOFF_FIRST;
                    }
                    state.reconnecting(&error);
                    tracing::warn!(source = %name, error = format!("{error:#}"), retry_in_ms = backoff.as_millis() as u64, "event source disconnected; reconnecting");
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            })
        })
        .collect()
}
