//! One API connection: hyper's HTTP/1.1 (keep-alive) under the connection's clock, ended by
//! hyper, by a timeout, or by shutdown.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::response::Response;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::body::DeadlineBody;
use super::clock::{ConnectionClock, Expiry, WatchedIo};
use super::ServerLimits;
use crate::api::HEADER_BYTES_LIMIT;
use crate::telemetry::metrics;

/// hyper's read buffer bound, which bounds a request head: above the API's own header limit (so
/// its 431 answers in the envelope), far below hyper's default of ~400 KiB per connection.
const READ_BUFFER_MAX: usize = 4 * HEADER_BYTES_LIMIT;

/// How long a closed connection keeps reading what its client still sends. A socket closed with
/// unread input is reset, and the reset can destroy an answer (a 413 to a body that was never
/// read) before the client has read it.
const LINGER: Duration = Duration::from_secs(1);

enum Ended {
    /// hyper finished: the client closed, or the connection could not be kept alive.
    Closed,
    Failed(hyper::Error),
    TimedOut(Expiry),
    /// Still busy when the shutdown grace ran out.
    Abandoned,
}

/// Serves `stream` until it ends; `_slot` is its place under the connection limit.
pub(super) async fn serve(
    mut stream: TcpStream,
    remote: SocketAddr,
    router: Router,
    limits: Arc<ServerLimits>,
    shutdown: CancellationToken,
    abandon: CancellationToken,
    _slot: OwnedSemaphorePermit,
) {
    metrics::http_connection_opened();
    let clock = Arc::new(ConnectionClock::new(limits.header_timeout, limits.idle_timeout));
    let input_left_unread = Arc::new(AtomicBool::new(false));
    let ended = {
        let io = TokioIo::new(WatchedIo::new(&mut stream, clock.clone()));
        let service = hyper::service::service_fn({
            let clock = clock.clone();
            let body_timeout = limits.body_timeout;
            let left_unread = input_left_unread.clone();
            move |request: Request<Incoming>| {
                let busy = clock.request_started();
                let left_unread = left_unread.clone();
                let mut request =
                    request.map(|body| DeadlineBody::new(body, body_timeout, left_unread));
                request.extensions_mut().insert(ConnectInfo(remote));
                let router = router.clone();
                async move {
                    let response: Result<Response, Infallible> = router.oneshot(request).await;
                    drop(busy);
                    response
                }
            }
        });
        let connection = http1::Builder::new()
            .keep_alive(true)
            // The clock enforces it, telling a slow head from an idle connection.
            .header_read_timeout(None)
            .max_buf_size(READ_BUFFER_MAX)
            .serve_connection(io, service);
        tokio::pin!(connection);
        let mut draining = false;
        loop {
            let deadline = clock.deadline();
            tokio::select! {
                result = connection.as_mut() => break match result {
                    Ok(()) => Ended::Closed,
                    Err(error) => Ended::Failed(error),
                },
                () = shutdown.cancelled(), if !draining => {
                    draining = true;
                    connection.as_mut().graceful_shutdown();
                }
                () = abandon.cancelled() => break Ended::Abandoned,
                () = sleep_until(deadline.map(|(at, _)| at)) => {
                    if let Some(expiry) = clock.expired(tokio::time::Instant::now()) {
                        break Ended::TimedOut(expiry);
                    }
                }
                () = clock.changed.notified() => {}
            }
        }
    };
    match ended {
        Ended::Closed if input_left_unread.load(Ordering::Relaxed) => linger(&mut stream).await,
        Ended::Closed => {}
        Ended::Failed(error) => {
            tracing::debug!(%remote, error = %error, "API connection failed");
        }
        Ended::TimedOut(expiry) => {
            tracing::debug!(%remote, reason = expiry.label(), "API connection timed out");
            metrics::http_connection_timed_out(expiry.label());
        }
        Ended::Abandoned => {}
    }
    metrics::http_connection_closed();
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// For a connection closed with a request body left unread: sends our end-of-stream, then
/// discards what the client still sends until it closes too, for at most [`LINGER`].
async fn linger(stream: &mut TcpStream) {
    let _ = stream.shutdown().await;
    let mut sink = vec![0u8; 16 * 1024];
    let _ =
        tokio::time::timeout(LINGER, async { while let Ok(1..) = stream.read(&mut sink).await {} })
            .await;
}
