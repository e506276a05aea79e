//! What a connection is doing, and so when it must be closed: waiting for a request head
//! (`--header-timeout`, counted from the connection's start or from the first byte of a later
//! request), idle between requests (`--idle-timeout`, counted from the last byte moved), or busy
//! with a request (no connection deadline: the body has its own, the handler is ours).
//!
//! hyper has a header-read timeout, but it also runs while a keep-alive connection waits for its
//! next request, so it cannot tell a slow head from an idle connection; this clock can.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Why a connection was closed by its clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    Header,
    Idle,
}

impl Expiry {
    pub fn label(self) -> &'static str {
        match self {
            Expiry::Header => "header_timeout",
            Expiry::Idle => "idle_timeout",
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Waiting for (the rest of) a request head.
    Head { since: Instant },
    /// A request is being handled.
    Busy { requests: usize },
    /// Between requests, nothing moving.
    Idle { since: Instant },
}

pub struct ConnectionClock {
    phase: Mutex<Phase>,
    /// Woken when the deadline may have come closer.
    pub changed: Notify,
    header_timeout: Duration,
    idle_timeout: Duration,
}

impl ConnectionClock {
    pub fn new(header_timeout: Duration, idle_timeout: Duration) -> Self {
        Self {
            phase: Mutex::new(Phase::Head { since: Instant::now() }),
            changed: Notify::new(),
            header_timeout,
            idle_timeout,
        }
    }

    fn phase(&self) -> MutexGuard<'_, Phase> {
        self.phase.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// When the connection is to be closed unless something happens first, and why.
    pub fn deadline(&self) -> Option<(Instant, Expiry)> {
        match *self.phase() {
            Phase::Head { since } => Some((since + self.header_timeout, Expiry::Header)),
            Phase::Idle { since } => Some((since + self.idle_timeout, Expiry::Idle)),
            Phase::Busy { .. } => None,
        }
    }

    /// The deadline, when it has passed.
    pub fn expired(&self, now: Instant) -> Option<Expiry> {
        self.deadline().filter(|(at, _)| *at <= now).map(|(_, expiry)| expiry)
    }

    /// The first byte after an idle spell starts a request head, and its header timeout.
    fn bytes_read(&self) {
        let mut phase = self.phase();
        if let Phase::Idle { .. } = *phase {
            *phase = Phase::Head { since: Instant::now() };
            drop(phase);
            self.changed.notify_one();
        }
    }

    /// An answer still being written is not idleness.
    fn bytes_written(&self) {
        let mut phase = self.phase();
        if let Phase::Idle { .. } = *phase {
            *phase = Phase::Idle { since: Instant::now() };
        }
    }

    /// Marks a request as being handled until the returned guard is dropped.
    pub fn request_started(self: &Arc<Self>) -> BusyGuard {
        let mut phase = self.phase();
        *phase = match *phase {
            Phase::Busy { requests } => Phase::Busy { requests: requests + 1 },
            _ => Phase::Busy { requests: 1 },
        };
        BusyGuard(self.clone())
    }

    fn request_finished(&self) {
        let mut phase = self.phase();
        *phase = match *phase {
            Phase::Busy { requests } if requests > 1 => Phase::Busy { requests: requests - 1 },
            _ => Phase::Idle { since: Instant::now() },
        };
        drop(phase);
        self.changed.notify_one();
    }
}

/// Held while a request is handled (and dropped with it if the connection goes away).
pub struct BusyGuard(Arc<ConnectionClock>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

/// The connection's socket, telling its clock when bytes move.
pub struct WatchedIo<'a> {
    stream: &'a mut TcpStream,
    clock: Arc<ConnectionClock>,
}

impl<'a> WatchedIo<'a> {
    pub fn new(stream: &'a mut TcpStream, clock: Arc<ConnectionClock>) -> Self {
        Self { stream, clock }
    }
}

impl AsyncRead for WatchedIo<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut *this.stream).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.clock.bytes_read();
        }
        result
    }
}

impl AsyncWrite for WatchedIo<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut *this.stream).poll_write(cx, buf);
        if matches!(result, Poll::Ready(Ok(written)) if written > 0) {
            this.clock.bytes_written();
        }
        result
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut *this.stream).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(written)) if written > 0) {
            this.clock.bytes_written();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: Duration = Duration::from_secs(10);
    const IDLE: Duration = Duration::from_secs(75);

    #[tokio::test(start_paused = true)]
    async fn a_new_connection_has_the_header_timeout_and_a_busy_one_none() {
        let clock = Arc::new(ConnectionClock::new(HEADER, IDLE));
        let started = Instant::now();
        assert_eq!(clock.deadline(), Some((started + HEADER, Expiry::Header)));
        let busy = clock.request_started();
        assert_eq!(clock.deadline(), None);
        tokio::time::advance(Duration::from_secs(300)).await;
        assert_eq!(clock.expired(Instant::now()), None, "a long request is not a slow client");
        drop(busy);
        assert_eq!(clock.deadline(), Some((Instant::now() + IDLE, Expiry::Idle)));
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_byte_after_idling_starts_the_header_timeout() {
        let clock = Arc::new(ConnectionClock::new(HEADER, IDLE));
        drop(clock.request_started());
        tokio::time::advance(Duration::from_secs(30)).await;
        clock.bytes_written();
        assert_eq!(clock.deadline(), Some((Instant::now() + IDLE, Expiry::Idle)));
        tokio::time::advance(Duration::from_secs(5)).await;
        clock.bytes_read();
        let head_started = Instant::now();
        assert_eq!(clock.deadline(), Some((head_started + HEADER, Expiry::Header)));
        tokio::time::advance(Duration::from_secs(5)).await;
        clock.bytes_read();
        assert_eq!(
            clock.deadline(),
            Some((head_started + HEADER, Expiry::Header)),
            "more bytes of a head do not extend it (slowloris)"
        );
        tokio::time::advance(HEADER).await;
        assert_eq!(clock.expired(Instant::now()), Some(Expiry::Header));
    }
}
