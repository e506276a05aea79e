//! `/api/v1/agents/{agent_id}/events`: ingestion. The event and its delivery logs are committed
//! before the 202; no network I/O happens here (the dispatcher sends).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::agents::AgentPath;
use super::envelope::{ok, Envelope};
use super::error::{ApiError, ErrorBody, Missing};
use super::extract::{parse_json, ApiPath, CurrentOrg, JsonBody};
use super::AppState;
use crate::domain::destination::Destinations;
use crate::domain::event::{CallId, EventType, IdempotencyKey, NewEvent};
use crate::domain::validation::FieldErrors;
use crate::domain::webhook::WebhookUrl;
use crate::domain::{EventCatalog, LogStatus};
use crate::ingest::Outcome;
use crate::store::{CreatedLog, IngestRequest, IngestedEvent};
use crate::telemetry::traces::IngestTrace;

/// Most events in one batch request.
pub const BATCH_MAX: usize = 1_000;
/// The routes, as their spans name them.
const EVENT_ROUTE: &str = "/api/v1/agents/{agent_id}/events";
const BATCH_ROUTE: &str = "/api/v1/agents/{agent_id}/events/batch";

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(ingest_event)).routes(routes!(ingest_batch))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct EventInput {
    /// An event type from the catalog (`GET /event-types`), e.g. `call.completed`.
    event: Option<String>,
    /// The call this event is about (at most 255 characters).
    call_id: Option<String>,
    /// Any JSON value, checked against the event type's schema when the catalog has one (422
    /// `VALIDATION_FAILED` with errors keyed `data/<JSON pointer>`); delivered byte for byte as
    /// the request body.
    #[schema(value_type = Object)]
    data: Option<Box<RawValue>>,
    /// Repeats within 24 h return the first event and create nothing (per organization).
    idempotency_key: Option<String>,
    /// A one-off destination for this event, signed with the organization's secret.
    webhook_url: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct BatchInput {
    /// 1–1000 events, each shaped like a single ingestion body.
    #[schema(value_type = Vec<EventInput>)]
    events: Option<Vec<Box<RawValue>>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LogRef {
    log_id: Uuid,
    /// `null` for a per-call `webhook_url`.
    webhook_id: Option<Uuid>,
    url: String,
    /// `pending`, or `skipped` for a disabled webhook.
    #[schema(value_type = String)]
    status: LogStatus,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventAccepted {
    event_id: Uuid,
    /// The idempotency key had been used: this is the first event; nothing new was created.
    duplicate: bool,
    logs: Vec<LogRef>,
    /// Webhooks subscribed to this event type whose `filter` the event's `data` did not pass:
    /// no log was made for them. Empty for a duplicate.
    filtered: Vec<Uuid>,
}

impl From<IngestedEvent> for EventAccepted {
    fn from(event: IngestedEvent) -> Self {
        Self {
            event_id: event.event_id,
            duplicate: event.duplicate,
            logs: event.logs.into_iter().map(LogRef::from).collect(),
            filtered: event.filtered,
        }
    }
}

impl From<CreatedLog> for LogRef {
    fn from(log: CreatedLog) -> Self {
        Self { log_id: log.id, webhook_id: log.webhook_id, url: log.url, status: log.status }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BatchItem {
    /// Position in the request's `events`.
    index: usize,
    success: bool,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    accepted: Option<EventAccepted>,
    /// `VALIDATION_FAILED` when `success` is false.
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<BTreeMap<String, Vec<String>>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BatchAccepted {
    accepted: usize,
    failed: usize,
    results: Vec<BatchItem>,
}

/// One ingestion body as a [`NewEvent`], or every problem with it.
fn parse_event(
    input: EventInput,
    catalog: &EventCatalog,
    destinations: &Destinations,
) -> Result<NewEvent, FieldErrors> {
    let mut errors = FieldErrors::default();
    let event_type = match &input.event {
        None => {
            errors.add("event", "is required");
            None
        }
        Some(event) => errors.check("event", EventType::parse(event, catalog)),
    };
    let call_id = input.call_id.and_then(|id| errors.check("call_id", CallId::parse(&id)));
    let idempotency_key = input
        .idempotency_key
        .and_then(|key| errors.check("idempotency_key", IdempotencyKey::parse(&key)));
    let webhook_url = input
        .webhook_url
        .and_then(|url| errors.check("webhook_url", WebhookUrl::parse(&url, destinations)));
    let mut parsed = None;
    match (&event_type, &input.data) {
        (_, None) => errors.add("data", "is required"),
        (Some(event_type), Some(data)) => {
            parsed = check_data(catalog, event_type, data).map_err(|e| errors.merge(e)).ok();
        }
        (None, Some(_)) => {}
    }
    errors.finish()?;
    match (event_type, input.data) {
        (Some(event_type), Some(data)) => Ok(NewEvent {
            event_type,
            call_id,
            payload: Bytes::copy_from_slice(data.get().as_bytes()),
            data: parsed.flatten(),
            idempotency_key,
            webhook_url,
            traceparent: None,
        }),
        _ => Err(FieldErrors::default()),
    }
}

/// One event of a message bus (SPEC §11): the single-ingestion body (any other member, such as
/// its `agent_id`, ignored), parsed and checked exactly as the API does, with `fallback_key` (the
/// broker's message id) as its idempotency key when the body names none.
pub(crate) fn parse_source_event(
    body: &[u8],
    fallback_key: Option<&str>,
    catalog: &EventCatalog,
    destinations: &Destinations,
) -> Result<NewEvent, ApiError> {
    let mut input: EventInput = parse_json(body)?;
    if input.idempotency_key.is_none() {
        input.idempotency_key = fallback_key.map(str::to_string);
    }
    Ok(parse_event(input, catalog, destinations)?)
}

/// The Standard Webhooks header webhookd sets to the event id on every delivery.
const WEBHOOK_ID: &str = "webhook-id";

/// Refuses a request that is one of this webhookd's own deliveries sent back to its ingest API (a
/// webhook pointing at it, e.g. by another spelling of its address): its `webhook-id` is the id
/// of an event in this database. Ingesting it would deliver it again, in a loop that multiplies
/// with every such webhook. Another deployment's deliveries carry ids this database does not
/// have, and are accepted; so is a `user-agent` of `webhookd/…` on its own.
async fn refuse_own_delivery(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(event_id) = headers
        .get(WEBHOOK_ID)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| Uuid::try_parse(value.trim()).ok())
    else {
        return Ok(());
    };
    if !state.store.event_exists(event_id).await? {
        return Ok(());
    }
    tracing::warn!(%event_id, "ingestion refused a delivery of this webhookd's own event");
    Err(ApiError::field(
        WEBHOOK_ID,
        format!(
            "is {event_id}, an event this webhookd delivered: this request is one of its own \
             deliveries sent back to its ingest API, and ingesting it would deliver it again, in \
             a loop. Point the webhook at the service that should receive the events, not at \
             webhookd's /api/v1/agents/{{agent_id}}/events"
        ),
    ))
}

/// Checks `data` against its type's schema (SPEC §10); a type without one costs nothing. The
/// parsed value is kept for webhook filters.
fn check_data(
    catalog: &EventCatalog,
    event_type: &EventType,
    data: &RawValue,
) -> Result<Option<Arc<Value>>, FieldErrors> {
    if !catalog.get(event_type.as_str()).is_some_and(|kind| kind.has_schema()) {
        return Ok(None);
    }
    // The body was parsed as JSON already, so this cannot fail; if it did, it is the client's.
    let value: Value = serde_json::from_str(data.get()).map_err(|_| {
        let mut errors = FieldErrors::default();
        errors.add("data", "must be JSON");
        errors
    })?;
    catalog.validate_data(event_type.as_str(), &value)?;
    Ok(Some(Arc::new(value)))
}

/// Stores `events` for the agent: `Ok(None)` when the agent does not exist.
async fn ingest(
    state: &AppState,
    org_id: Uuid,
    agent_id: Uuid,
    events: Vec<NewEvent>,
) -> Result<Vec<IngestedEvent>, ApiError> {
    let request = IngestRequest { org_id, agent_id, events };
    match state.ingest.ingest(request).await? {
        Outcome::AgentNotFound => Err(ApiError::NotFound(Missing::Agent)),
        Outcome::Events(events) => Ok(events),
    }
}

/// Ingest one event: it is stored, with one delivery log per subscribed webhook (and one for a
/// per-call `webhook_url`), before this answers.
#[utoipa::path(post, path = "/agents/{agent_id}/events", tag = "events",
    params(("agent_id" = Uuid, Path)), request_body = EventInput,
    responses(
        (status = 202, body = Envelope<EventAccepted>),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 422, body = ErrorBody),
    ))]
async fn ingest_event(
    State(state): State<AppState>,
    CurrentOrg(org_id): CurrentOrg,
    ApiPath(path): ApiPath<AgentPath>,
    headers: HeaderMap,
    JsonBody(mut input): JsonBody<EventInput>,
) -> Result<(StatusCode, Json<Envelope<EventAccepted>>), ApiError> {
    refuse_own_delivery(&state, &headers).await?;
    let mut trace = IngestTrace::begin(state.tracer.as_ref(), &headers, EVENT_ROUTE);
    if input.idempotency_key.is_none() {
        input.idempotency_key = idempotency_header(&headers)?.map(str::to_string);
    }
    let mut event = parse_event(input, &state.catalog, &state.destinations)?;
    event.traceparent = trace.event(true);
    let mut ingested = ingest(&state, org_id, path.agent_id, vec![event]).await?;
    trace.finish(ingested.iter().map(|e| Some(e.event_id)), StatusCode::ACCEPTED.as_u16());
    let accepted = EventAccepted::from(ingested.remove(0));
    let message = if accepted.duplicate { "Event already accepted" } else { "Event accepted" };
    Ok((StatusCode::ACCEPTED, ok(message, accepted)))
}

/// The de-facto standard `Idempotency-Key` request header: the event's idempotency key when its
/// body names none, so a client that retries a request it got no answer to (a timeout, a 503)
/// never stores the event twice.
fn idempotency_header(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    match headers.get("idempotency-key") {
        None => Ok(None),
        Some(value) => value.to_str().map(Some).map_err(|_| {
            ApiError::field("Idempotency-Key", "must be printable ASCII (the header's value)")
        }),
    }
}

/// Ingest up to 1000 events in one transaction. Each item is validated on its own: invalid items
/// are reported by index and the valid ones are accepted.
#[utoipa::path(post, path = "/agents/{agent_id}/events/batch", tag = "events",
    params(("agent_id" = Uuid, Path)), request_body = BatchInput,
    responses(
        (status = 202, body = Envelope<BatchAccepted>),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 422, body = ErrorBody),
    ))]
async fn ingest_batch(
    State(state): State<AppState>,
    CurrentOrg(org_id): CurrentOrg,
    ApiPath(path): ApiPath<AgentPath>,
    headers: HeaderMap,
    JsonBody(input): JsonBody<BatchInput>,
) -> Result<(StatusCode, Json<Envelope<BatchAccepted>>), ApiError> {
    refuse_own_delivery(&state, &headers).await?;
    let mut trace = IngestTrace::begin(state.tracer.as_ref(), &headers, BATCH_ROUTE);
    let items = input.events.ok_or_else(|| ApiError::field("events", "is required"))?;
    if items.is_empty() || items.len() > BATCH_MAX {
        return Err(ApiError::field("events", format!("must contain 1 to {BATCH_MAX} events")));
    }
    let mut results: Vec<BatchItem> = Vec::with_capacity(items.len());
    let mut valid = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let parsed = match parse_json::<EventInput>(item.get().as_bytes()) {
            Ok(input) => parse_event(input, &state.catalog, &state.destinations),
            Err(ApiError::Validation(errors)) => Err(errors),
            Err(_) => Err({
                let mut errors = FieldErrors::default();
                errors.add("body", "must be an event object");
                errors
            }),
        };
        match parsed {
            Ok(mut event) => {
                event.traceparent = trace.event(items.len() == 1);
                valid.push(event);
                results.push(BatchItem {
                    index,
                    success: true,
                    accepted: None,
                    code: None,
                    errors: None,
                });
            }
            Err(errors) => results.push(BatchItem {
                index,
                success: false,
                accepted: None,
                code: Some("VALIDATION_FAILED"),
                errors: Some(errors.into_map()),
            }),
        }
    }
    let ingested = ingest(&state, org_id, path.agent_id, valid).await?;
    trace.finish(ingested.iter().map(|e| Some(e.event_id)), StatusCode::ACCEPTED.as_u16());
    let mut ingested = ingested.into_iter();
    for item in results.iter_mut().filter(|item| item.success) {
        item.accepted = ingested.next().map(EventAccepted::from);
    }
    let accepted = results.iter().filter(|item| item.success).count();
    let batch = BatchAccepted { accepted, failed: results.len() - accepted, results };
    Ok((StatusCode::ACCEPTED, ok(format!("{accepted} events accepted"), batch)))
}
