//! The webhook receiver: a bare hyper HTTP/1.1 server on 127.0.0.1:0 that records, for each
//! delivery (webhook-id, path), the arrival of its first success. It is on the measured path, so
//! it does as little as possible per request: no routing framework, no body buffering, one short
//! lock on one of many shards.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::payload::{fails_first, mix};

const SHARDS: usize = 64;

/// One delivery's history at the receiver.
#[derive(Default)]
struct Delivery {
    first_ok: Option<Instant>,
    failed_once: bool,
    /// The event's `data.i`: the bench's own index of it, known before webhookd names the event.
    index: Option<u64>,
}

type Shard = HashMap<(u128, u32), Delivery>;

/// What the receiver has seen; shared by every connection.
pub struct Store {
    shards: Vec<Mutex<Shard>>,
    fail_ratio: f64,
    delay: Duration,
    /// How long `/slow/…` (the scheduling scenario's slow endpoint) takes to answer.
    slow_delay: Duration,
    /// Requests answered at `/slow/…`.
    pub slow_served: AtomicU64,
    /// Distinct deliveries answered 2xx.
    pub delivered: AtomicU64,
    /// Arrivals of a delivery that had already been answered 2xx.
    pub duplicates: AtomicU64,
    /// First attempts answered 500 on purpose.
    pub failed_on_purpose: AtomicU64,
    /// Requests to `/raw` (the ceiling measurement).
    pub raw: AtomicU64,
    /// Requests without a parseable `webhook-id` or to an unknown path.
    pub malformed: AtomicU64,
}

/// A delivery's first success: which event, when.
pub struct Arrival {
    pub event_id: u128,
    pub at: Instant,
    /// The event's `data.i`, when its body began with it.
    pub index: Option<u64>,
}

impl Store {
    fn new(fail_ratio: f64, delay: Duration, slow_delay: Duration, expected: usize) -> Self {
        let per_shard = expected / SHARDS + 16;
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::with_capacity(per_shard))).collect(),
            fail_ratio,
            delay,
            slow_delay,
            slow_served: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            failed_on_purpose: AtomicU64::new(0),
            raw: AtomicU64::new(0),
            malformed: AtomicU64::new(0),
        }
    }

    /// Decides the answer to one delivery attempt and records it.
    fn record(&self, event_id: u128, hook: u32, now: Instant, index: Option<u64>) -> StatusCode {
        // Low bits pick the shard; fail selection uses the high bits of the same mix.
        let shard = &self.shards[(mix(event_id, hook) as usize) % SHARDS];
        let mut shard = shard.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let delivery = shard.entry((event_id, hook)).or_default();
        delivery.index = delivery.index.or(index);
        if delivery.first_ok.is_some() {
            self.duplicates.fetch_add(1, Relaxed);
            StatusCode::OK
        } else if !delivery.failed_once && fails_first(event_id, hook, self.fail_ratio) {
            delivery.failed_once = true;
            self.failed_on_purpose.fetch_add(1, Relaxed);
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            delivery.first_ok = Some(now);
            self.delivered.fetch_add(1, Relaxed);
            StatusCode::OK
        }
    }

    /// Every delivery's first success (taken after the run; order is unspecified).
    pub fn arrivals(&self) -> Vec<Arrival> {
        let mut arrivals =
            Vec::with_capacity(usize::try_from(self.delivered.load(Relaxed)).unwrap_or(0));
        for shard in &self.shards {
            let shard = shard.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            arrivals.extend(shard.iter().filter_map(|(&(event_id, _hook), d)| {
                d.first_ok.map(|at| Arrival { event_id, at, index: d.index })
            }));
        }
        arrivals
    }
}

/// Starts the receiver; it runs until the process exits.
pub async fn start(
    fail_ratio: f64,
    delay: Duration,
    slow_delay: Duration,
    expected: usize,
) -> anyhow::Result<(SocketAddr, Arc<Store>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let store = Arc::new(Store::new(fail_ratio, delay, slow_delay, expected));
    let shared = Arc::clone(&store);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                // Out of file descriptors, usually: back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let _ = stream.set_nodelay(true);
            let store = Arc::clone(&shared);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let store = Arc::clone(&store);
                    async move { Ok::<_, Infallible>(handle(&store, req).await) }
                });
                // A connection error (the peer hung up) ends only that connection.
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok((addr, store))
}

async fn handle(store: &Store, req: Request<Incoming>) -> Response<Empty<Bytes>> {
    let now = Instant::now();
    let path = req.uri().path();
    let status = if path == "/raw" {
        store.raw.fetch_add(1, Relaxed);
        // Read the body to its end so the connection can be reused (keep-alive); discard it.
        let mut body = req.into_body();
        while let Some(Ok(_)) = body.frame().await {}
        StatusCode::OK
    } else if path.starts_with("/slow/") {
        let mut body = req.into_body();
        while let Some(Ok(_)) = body.frame().await {}
        tokio::time::sleep(store.slow_delay).await;
        store.slow_served.fetch_add(1, Relaxed);
        return Response::new(Empty::new());
    } else {
        let hook = path.strip_prefix("/hook/").and_then(|k| k.parse::<u32>().ok());
        let event_id = req
            .headers()
            .get("webhook-id")
            .and_then(|v| uuid::Uuid::try_parse_ascii(v.as_bytes()).ok())
            .map(|id| id.as_u128());
        let mut body = req.into_body();
        // `{"i":INDEX,…`: the first frame holds the index (events published to a bus are
        // matched to their publish by it).
        let first = body.frame().await.and_then(Result::ok).and_then(|f| f.into_data().ok());
        let index = first.as_deref().and_then(index_of);
        while let Some(Ok(_)) = body.frame().await {}
        match (event_id, hook) {
            (Some(event_id), Some(hook)) => store.record(event_id, hook, now, index),
            _ => {
                store.malformed.fetch_add(1, Relaxed);
                StatusCode::BAD_REQUEST
            }
        }
    };
    if !store.delay.is_zero() {
        tokio::time::sleep(store.delay).await;
    }
    let mut response = Response::new(Empty::new());
    *response.status_mut() = status;
    response
}

/// The `i` of a body that begins `{"i":INDEX`.
fn index_of(body: &[u8]) -> Option<u64> {
    let rest = body.strip_prefix(b"{\"i\":")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}
