//! The request-body timeout: a body must arrive in full within `--body-timeout` of its first
//! read. A deadline for the whole body, not per chunk (tower-http's `TimeoutBody` restarts its
//! timer on every chunk), so a client trickling one byte at a time cannot hold a connection for
//! hours either.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::Sleep;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request body that fails with [`BodyTimedOut`] once its deadline passes.
pub struct DeadlineBody {
    inner: Incoming,
    limit: Duration,
    /// Starts at the first read, so time a handler spends before reading is not counted.
    deadline: Option<Pin<Box<Sleep>>>,
    /// Set when the body is dropped before its end: the client may still be sending it.
    left_unread: Arc<AtomicBool>,
}

impl DeadlineBody {
    pub fn new(inner: Incoming, limit: Duration, left_unread: Arc<AtomicBool>) -> Self {
        Self { inner, limit, deadline: None, left_unread }
    }
}

impl Drop for DeadlineBody {
    fn drop(&mut self) {
        if !self.inner.is_end_stream() {
            self.left_unread.store(true, Ordering::Relaxed);
        }
    }
}

impl Body for DeadlineBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let limit = this.limit;
        let deadline = this.deadline.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|result| result.map_err(Into::into)));
        }
        match deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimedOut(limit))))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The body did not arrive within its deadline.
#[derive(Debug)]
pub struct BodyTimedOut(Duration);

impl std::fmt::Display for BodyTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the request body did not arrive within {:?}", self.0)
    }
}

impl std::error::Error for BodyTimedOut {}

/// Whether `error` (or one of its causes) is a body that timed out: extractors wrap it.
pub fn is_body_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if error.is::<BodyTimedOut>() {
            return true;
        }
        cause = error.source();
    }
    false
}
