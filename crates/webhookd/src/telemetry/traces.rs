//! Distributed tracing (SPEC §4 "Tracing"): the W3C `traceparent` of every attempt, and, with
//! `--otlp-endpoint`, spans exported over OTLP/HTTP.
//!
//! The trace of an event: the platform's span (when its ingest request carried a
//! `traceparent`) → the ingest request's span → the event's transaction span → one span per
//! attempt, whose id is the `traceparent` the customer's endpoint receives. Attempts happen
//! later, maybe on another node, so the event keeps the context they continue in
//! `events.traceparent`: the platform's own when spans are not exported, the event span's when
//! they are. An event with none (nothing to continue, nothing exported; operational and test
//! events) is a trace of its own whose id is the event id, so every attempt of it, retries
//! included, shares one trace at no storage cost.
//!
//! Off by default and free when off: no exporter, no span processor, no span; an attempt's
//! header is the stored (or event-id) trace id and a random span id. When on, spans are made
//! with the OpenTelemetry API directly (their parents are explicit, often read back from the
//! database, rather than the current `tracing` span) and handed to a batch processor, which
//! exports from a thread of its own and drops spans rather than block when its queue is full.
//! Attributes are ids, status codes and durations: never payloads, URLs or secrets.

use std::cell::Cell;
use std::collections::HashMap;
use std::time::Duration;

use axum::http::HeaderMap;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{
    Link, Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId,
    Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, IdGenerator, SdkTracer, SdkTracerProvider, Span,
};
use opentelemetry_sdk::Resource;
use uuid::Uuid;

mod export;

/// Spans waiting for export; past this many, new ones are dropped (the hot path never waits).
const QUEUE: usize = 16_384;
/// How often the batch processor exports what it holds.
const EXPORT_EVERY: Duration = Duration::from_secs(1);

/// A W3C trace context: what a `traceparent` header carries (tracestate is not kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub sampled: bool,
}

impl TraceParent {
    /// A valid `traceparent` value, as the W3C propagator reads it; `None` for anything else.
    pub fn parse(value: &str) -> Option<Self> {
        let carrier = HashMap::from([("traceparent".to_string(), value.to_string())]);
        Self::extract(&carrier)
    }

    /// The `traceparent` header of a request, if it has a valid one.
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        headers.contains_key("traceparent").then_some(())?;
        Self::extract(&opentelemetry_http::HeaderExtractor(headers))
    }

    fn extract(carrier: &dyn opentelemetry::propagation::Extractor) -> Option<Self> {
        let context = TraceContextPropagator::new().extract(carrier);
        let span = context.span();
        let remote = span.span_context();
        remote.is_valid().then(|| Self::of(remote))
    }

    fn of(context: &SpanContext) -> Self {
        Self {
            trace_id: context.trace_id(),
            span_id: context.span_id(),
            sampled: context.is_sampled(),
        }
    }

    /// The header value: `00-<trace id>-<span id>-<flags>`.
    pub fn header(&self) -> String {
        format!("00-{}-{}-{:02x}", self.trace_id, self.span_id, u8::from(self.sampled))
    }

    /// As the remote parent of a span made here.
    fn as_parent(&self) -> Context {
        let flags = if self.sampled { TraceFlags::SAMPLED } else { TraceFlags::default() };
        let remote = SpanContext::new(self.trace_id, self.span_id, flags, true, Default::default());
        Context::new().with_remote_span_context(remote)
    }
}

/// The trace of an event with no stored context: the event id, whose last 7 bytes are random
/// as W3C asks of a trace id.
fn event_trace_id(event_id: Uuid) -> TraceId {
    TraceId::from(event_id.as_u128())
}

fn random_span_id() -> SpanId {
    SpanId::from(rand::random::<u64>().max(1))
}

thread_local! {
    /// The trace id the next root span made on this thread is to have (see [`EventIds`]).
    static NEXT_TRACE_ID: Cell<Option<TraceId>> = const { Cell::new(None) };
}

/// Random ids, except that a root span may be given its trace id: the SDK takes a root span's
/// trace id from the generator, and an attempt of an event without stored context belongs to the
/// event-id trace. The id is set just before the span is built, on the same thread, and cleared
/// right after.
#[derive(Debug)]
struct EventIds;

impl IdGenerator for EventIds {
    fn new_trace_id(&self) -> TraceId {
        NEXT_TRACE_ID.take().unwrap_or_else(|| TraceId::from(rand::random::<u128>().max(1)))
    }

    fn new_span_id(&self) -> SpanId {
        random_span_id()
    }
}

/// The exporting side, when `--otlp-endpoint` is set: owns the provider; stop it with
/// [`Tracing::shutdown`] to export what is still queued.
pub struct Tracing {
    provider: SdkTracerProvider,
}

/// Makes spans; cheap to clone.
#[derive(Debug, Clone)]
pub struct Tracer(SdkTracer);

impl Tracing {
    /// Exports to `endpoint` (a full OTLP/HTTP traces URL) through `client`, whose requests run
    /// on the current Tokio runtime.
    pub fn start(endpoint: &str, client: reqwest::Client) -> anyhow::Result<Self> {
        let client = export::OnRuntime::new(client, tokio::runtime::Handle::current());
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(client)
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(endpoint)
            .with_timeout(Duration::from_secs(10))
            .build()?;
        let batch = BatchConfigBuilder::default()
            .with_max_queue_size(QUEUE)
            .with_scheduled_delay(EXPORT_EVERY)
            .build();
        let processor = BatchSpanProcessor::builder(exporter).with_batch_config(batch).build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_id_generator(EventIds)
            .with_resource(Resource::builder().with_service_name("webhookd").build())
            .build();
        Ok(Self { provider })
    }

    pub fn tracer(&self) -> Tracer {
        Tracer(self.provider.tracer("webhookd"))
    }

    /// Exports what is queued and stops. Blocking work, done off the runtime's threads (the
    /// export itself runs on the runtime).
    pub async fn shutdown(self) {
        let provider = self.provider;
        let stopped = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        if let Ok(Err(error)) = stopped {
            tracing::warn!(%error, "spans still queued could not be exported");
        }
    }
}

/// The spans of one ingest request: the request's own, and one per event for its transaction.
pub struct IngestTrace {
    tracer: Option<Tracer>,
    /// The platform's context, when its request carried one.
    incoming: Option<TraceParent>,
    /// The request's span, as the context its children are made in.
    request: Option<Context>,
    events: Vec<Span>,
}

impl IngestTrace {
    /// Starts the request's span (when exporting) as a child of the platform's `traceparent`.
    pub fn begin(tracer: Option<&Tracer>, headers: &HeaderMap, route: &'static str) -> Self {
        let incoming = TraceParent::from_headers(headers);
        let request = tracer.map(|tracer| {
            let parent = incoming.map_or_else(Context::new, |p| p.as_parent());
            let builder = tracer
                .0
                .span_builder(format!("POST {route}"))
                .with_kind(SpanKind::Server)
                .with_attributes([
                    KeyValue::new("http.request.method", "POST"),
                    KeyValue::new("http.route", route),
                ]);
            Context::new().with_span(tracer.0.build_with_context(builder, &parent))
        });
        Self { tracer: tracer.cloned(), incoming, request, events: Vec::new() }
    }

    /// The trace context to store with the next event of this request, starting its span when
    /// exporting. The events of a request continue the platform's trace when it sent one; else
    /// a lone event continues the request's trace, and each event of a batch starts its own
    /// (linked to the request), so that a trace is one event's story.
    pub fn event(&mut self, alone: bool) -> Option<String> {
        let (Some(tracer), Some(request)) = (&self.tracer, &self.request) else {
            return self.incoming.map(|p| p.header());
        };
        let mut builder = tracer.0.span_builder("event transaction").with_kind(SpanKind::Internal);
        let parent = if self.incoming.is_some() || alone {
            request.clone()
        } else {
            let link = Link::with_context(request.span().span_context().clone());
            builder = builder.with_links(vec![link]);
            Context::new()
        };
        let span = tracer.0.build_with_context(builder, &parent);
        let header = TraceParent::of(span.span_context()).header();
        self.events.push(span);
        Some(header)
    }

    /// After the commit: each event's id (in the order of [`Self::event`] calls; `None` when it
    /// was not stored) onto its span, the answer's status onto the request's; ends them all.
    pub fn finish(self, event_ids: impl IntoIterator<Item = Option<Uuid>>, status: u16) {
        for (mut span, id) in self.events.into_iter().zip(event_ids) {
            match id {
                Some(id) => span.set_attribute(KeyValue::new("event.id", id.to_string())),
                None => span.set_status(Status::error("not stored")),
            }
            span.end();
        }
        if let Some(request) = self.request {
            let span = request.span();
            span.set_attribute(KeyValue::new("http.response.status_code", i64::from(status)));
            span.end();
        }
    }
}

/// One attempt's trace: the header the endpoint gets and, when exporting, the attempt's span.
pub struct AttemptTrace {
    pub traceparent: String,
    span: Option<Span>,
}

/// What an attempt's span says about it.
#[derive(Debug, Clone, Copy)]
pub struct AttemptIds {
    pub event_id: Uuid,
    pub log_id: Uuid,
    pub webhook_id: Option<Uuid>,
    pub send_type: &'static str,
}

impl AttemptTrace {
    /// Starts the trace of an attempt of an event whose stored context is `stored`.
    pub fn start(tracer: Option<&Tracer>, stored: Option<&str>, ids: AttemptIds) -> Self {
        let stored = stored.and_then(TraceParent::parse);
        let Some(tracer) = tracer else {
            let parent = TraceParent {
                trace_id: stored.map_or_else(|| event_trace_id(ids.event_id), |p| p.trace_id),
                span_id: random_span_id(),
                sampled: stored.is_none_or(|p| p.sampled),
            };
            return Self { traceparent: parent.header(), span: None };
        };
        let mut attributes = vec![
            KeyValue::new("event.id", ids.event_id.to_string()),
            KeyValue::new("log.id", ids.log_id.to_string()),
            KeyValue::new("send_type", ids.send_type),
        ];
        if let Some(webhook_id) = ids.webhook_id {
            attributes.push(KeyValue::new("webhook.id", webhook_id.to_string()));
        }
        let builder = tracer
            .0
            .span_builder("webhook attempt")
            .with_kind(SpanKind::Client)
            .with_attributes(attributes);
        let span = match stored {
            Some(parent) => tracer.0.build_with_context(builder, &parent.as_parent()),
            None => {
                NEXT_TRACE_ID.set(Some(event_trace_id(ids.event_id)));
                let span = tracer.0.build_with_context(builder, &Context::new());
                NEXT_TRACE_ID.set(None);
                span
            }
        };
        let traceparent = TraceParent::of(span.span_context()).header();
        Self { traceparent, span: Some(span) }
    }

    /// Ends the attempt's span with how it went.
    pub fn finish(self, status: Option<u16>, duration_ms: i64, delivered: bool) {
        let Some(mut span) = self.span else { return };
        if let Some(status) = status {
            span.set_attribute(KeyValue::new("http.response.status_code", i64::from(status)));
        }
        span.set_attribute(KeyValue::new("duration_ms", duration_ms));
        span.set_status(if delivered { Status::Ok } else { Status::error("delivery failed") });
        span.end();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLATFORM: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn traceparents_round_trip_and_invalid_ones_are_ignored() {
        let parsed = TraceParent::parse(PLATFORM).unwrap();
        assert_eq!(parsed.header(), PLATFORM);
        assert!(parsed.sampled);
        for bad in [
            "",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn without_export_an_attempt_continues_the_stored_trace_or_the_event_id() {
        let ids = AttemptIds {
            event_id: Uuid::now_v7(),
            log_id: Uuid::now_v7(),
            webhook_id: None,
            send_type: "spawn",
        };
        let continued = AttemptTrace::start(None, Some(PLATFORM), ids);
        let header = TraceParent::parse(&continued.traceparent).unwrap();
        assert_eq!(header.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_ne!(header.span_id.to_string(), "00f067aa0ba902b7");
        let own = TraceParent::parse(&AttemptTrace::start(None, None, ids).traceparent).unwrap();
        assert_eq!(own.trace_id.to_string(), ids.event_id.simple().to_string());
        assert!(own.sampled);
        let unsampled = PLATFORM.replace("-01", "-00");
        let header = AttemptTrace::start(None, Some(&unsampled), ids).traceparent;
        assert!(header.ends_with("-00"), "{header}");
    }
}
