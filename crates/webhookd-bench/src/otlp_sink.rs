//! With `--otlp`: a stand-in OTLP/HTTP collector that accepts every export and discards it,
//! counting requests and bytes, so a run measures what exporting spans costs webhookd and not
//! what a real collector costs the machine.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// What the sink received.
#[derive(Default)]
pub struct Exports {
    pub requests: AtomicU64,
    pub bytes: AtomicU64,
}

/// Starts the sink on 127.0.0.1:0; it runs until the process exits. Every request is answered
/// 200 with an empty body, which is an empty `ExportTraceServiceResponse`: all spans accepted.
pub async fn start() -> anyhow::Result<(SocketAddr, Arc<Exports>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let exports = Arc::new(Exports::default());
    let shared = Arc::clone(&exports);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let exports = Arc::clone(&shared);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let exports = Arc::clone(&exports);
                    async move { Ok::<_, Infallible>(discard(&exports, req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok((addr, exports))
}

async fn discard(exports: &Exports, req: Request<Incoming>) -> Response<Empty<Bytes>> {
    let mut body = req.into_body();
    let mut bytes = 0;
    while let Some(Ok(frame)) = body.frame().await {
        bytes += frame.data_ref().map_or(0, |data| data.len() as u64);
    }
    exports.requests.fetch_add(1, Relaxed);
    exports.bytes.fetch_add(bytes, Relaxed);
    let mut response = Response::new(Empty::new());
    response
        .headers_mut()
        .insert("content-type", hyper::header::HeaderValue::from_static("application/x-protobuf"));
    response
}
