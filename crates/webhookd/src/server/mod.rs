//! The API's HTTP server: hyper's HTTP/1.1 with keep-alive, served with what `axum::serve` has no
//! settings for — a limit on open connections, and header, idle and body timeouts — so silent,
//! slow or idle clients cannot hold the descriptors and memory real requests need. Shutdown is
//! graceful: no new connections, idle ones closed, requests in flight finish within the grace.

mod body;
mod clock;
mod connection;

use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use body::is_body_timeout;

use crate::config::Config;

/// Fewest and most connections the default allows (see [`default_max_connections`]).
const DEFAULT_CONNECTIONS_MIN: usize = 16;
const DEFAULT_CONNECTIONS_MAX: usize = 4096;
/// Descriptors a node needs besides API connections and delivery sockets: database pool,
/// listeners, files, the runtime.
const DESCRIPTORS_RESERVED: u64 = 64;

#[derive(Debug, Clone)]
pub struct ServerLimits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub body_timeout: Duration,
    pub max_connections: usize,
    /// After a shutdown, how long requests in flight may take before their connections are closed.
    pub shutdown_grace: Duration,
}

impl ServerLimits {
    pub fn from_config(config: &Config) -> Self {
        let limits = Self {
            header_timeout: config.header_timeout,
            idle_timeout: config.idle_timeout,
            body_timeout: config.body_timeout,
            max_connections: config.max_connections.unwrap_or_else(default_max_connections),
            shutdown_grace: config.shutdown_grace,
        };
        let needed = (limits.max_connections + config.concurrency) as u64 + DESCRIPTORS_RESERVED;
        if let Some(available) = open_file_limit().filter(|available| *available < needed) {
            tracing::warn!(
                max_connections = limits.max_connections,
                concurrency = config.concurrency,
                open_file_limit = available,
                "the open-file limit (ulimit -n) is below what these connection and delivery \
                 limits may need; raise it, or lower --max-connections or --concurrency"
            );
        }
        limits
    }
}

/// Half the open-file limit, between 16 and 4096. The other half is left to delivery sockets (one
/// per attempt in flight, and pooled idle ones), the database and files; past 4096, memory (each
/// connection has its buffers) runs short before descriptors do.
pub fn default_max_connections() -> usize {
    connections_for(open_file_limit())
}

fn connections_for(open_file_limit: Option<u64>) -> usize {
    let half = open_file_limit.map_or(u64::MAX, |limit| limit / 2);
    usize::try_from(half)
        .unwrap_or(usize::MAX)
        .clamp(DEFAULT_CONNECTIONS_MIN, DEFAULT_CONNECTIONS_MAX)
}

/// The soft limit on open descriptors (`ulimit -n`); `None` when unlimited or unknown.
#[cfg(unix)]
pub fn open_file_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

#[cfg(not(unix))]
pub fn open_file_limit() -> Option<u64> {
    None
}

/// Serves `router` on `listener` until `shutdown` is cancelled, then drains.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
    shutdown: CancellationToken,
) {
    tracing::info!(
        max_connections = limits.max_connections,
        header_timeout = ?limits.header_timeout,
        idle_timeout = ?limits.idle_timeout,
        body_timeout = ?limits.body_timeout,
        "API connection limits"
    );
    let limits = Arc::new(limits);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let connections = TaskTracker::new();
    let abandon = CancellationToken::new();
    loop {
        // A free slot before accepting: beyond the limit, new connections wait in the listen
        // backlog and hold no descriptor of ours; accepting resumes as soon as one closes.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_closed) => break,
            },
            () = shutdown.cancelled() => break,
        };
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    pause_after_accept_error(error, &shutdown).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        connections.spawn(connection::serve(
            stream,
            remote,
            router.clone(),
            limits.clone(),
            shutdown.clone(),
            abandon.clone(),
            slot,
        ));
    }
    drop(listener);
    connections.close();
    if tokio::time::timeout(limits.shutdown_grace, connections.wait()).await.is_err() {
        tracing::warn!(
            connections = connections.len(),
            "API requests still in flight after the shutdown grace; closing their connections"
        );
        abandon.cancel();
        connections.wait().await;
    }
}

/// A connection that failed before it was accepted concerns that client only; anything else
/// (out of descriptors, out of memory) is the node's, and retrying at once would spin.
async fn pause_after_accept_error(error: io::Error, shutdown: &CancellationToken) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(error.kind(), ConnectionAborted | ConnectionRefused | ConnectionReset) {
        return;
    }
    tracing::error!(error = %error, "cannot accept API connections; retrying in a second");
    tokio::select! {
        () = tokio::time::sleep(Duration::from_secs(1)) => {}
        () = shutdown.cancelled() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_connection_limit_is_half_the_open_file_limit_within_bounds() {
        assert_eq!(connections_for(Some(1024)), 512);
        assert_eq!(connections_for(Some(20_000)), 4096);
        assert_eq!(connections_for(Some(20)), 16);
        assert_eq!(connections_for(None), 4096);
    }
}
