//! A message's body as an event for an agent, or the reason it can never be one. The event part
//! is parsed by the HTTP API's own function, so a message and a request are held to one rule.

use serde::Deserialize;
use uuid::Uuid;

use crate::api::error::ApiError;
use crate::api::events::parse_source_event;
use crate::api::BODY_LIMIT;
use crate::domain::destination::Destinations;
use crate::domain::event::NewEvent;
use crate::domain::EventCatalog;

/// An event and the agent it is for.
#[derive(Debug)]
pub struct AddressedEvent {
    pub agent_id: Uuid,
    pub event: NewEvent,
}

#[derive(Deserialize)]
struct Address {
    agent_id: Option<serde_json::Value>,
}

/// Parses a message: the single-event ingestion body plus `agent_id`. `broker_id` (the broker's
/// message id) is the idempotency key when the body has none.
pub fn parse(
    body: &[u8],
    broker_id: Option<&str>,
    catalog: &EventCatalog,
    destinations: &Destinations,
) -> Result<AddressedEvent, String> {
    if body.len() > BODY_LIMIT {
        return Err(format!("the body is larger than {} KiB", BODY_LIMIT / 1024));
    }
    let event = parse_source_event(body, broker_id, catalog, destinations).map_err(reason)?;
    // The body is a JSON object now: only `agent_id` can be wrong.
    let address: Address = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let agent_id = match address.agent_id {
        None => return Err("agent_id: is required".into()),
        Some(serde_json::Value::String(id)) => {
            Uuid::try_parse(&id).map_err(|_| format!("agent_id: {id:?} is not a UUID"))?
        }
        Some(_) => return Err("agent_id: must be a string (the agent's UUID)".into()),
    };
    Ok(AddressedEvent { agent_id, event })
}

/// What the API would have answered, as one line.
fn reason(error: ApiError) -> String {
    match error {
        ApiError::Validation(errors) => {
            let fields: Vec<String> = errors
                .into_map()
                .into_iter()
                .map(|(field, messages)| format!("{field}: {}", messages.join(", ")))
                .collect();
            format!("invalid event: {}", fields.join("; "))
        }
        ApiError::InvalidJson(message) => format!("not a JSON event: {message}"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::parse;
    use crate::domain::destination::Destinations;
    use crate::domain::EventCatalog;

    fn check(body: &str, broker_id: Option<&str>) -> Result<super::AddressedEvent, String> {
        let catalog = EventCatalog::load(None, &[]).unwrap();
        parse(body.as_bytes(), broker_id, &catalog, &Destinations::new(false, []))
    }

    #[test]
    fn a_message_is_the_ingestion_body_with_its_agent() {
        let agent = "0190a3d2-0000-7000-8000-000000000001";
        let body = format!(r#"{{"agent_id":"{agent}","event":"call.completed","data":{{"a":1}}}}"#);
        let parsed = check(&body, Some("msg-1")).unwrap();
        assert_eq!(parsed.agent_id.to_string(), agent);
        assert_eq!(parsed.event.payload.as_ref(), br#"{"a":1}"#);
        assert_eq!(parsed.event.idempotency_key.unwrap().as_str(), "msg-1");
    }

    #[test]
    fn the_body_idempotency_key_wins_over_the_broker_message_id() {
        let body = r#"{"agent_id":"0190a3d2-0000-7000-8000-000000000001","event":"call.completed","data":{},"idempotency_key":"k"}"#;
        assert_eq!(
            check(body, Some("msg-1")).unwrap().event.idempotency_key.unwrap().as_str(),
            "k"
        );
    }

    #[test]
    fn bad_messages_are_refused_with_their_reason() {
        let cases = [
            ("not json", "not a JSON event"),
            (r#"{"event":"call.completed","data":{}}"#, "agent_id: is required"),
            (r#"{"agent_id":"x","event":"call.completed","data":{}}"#, "is not a UUID"),
            (
                r#"{"agent_id":"0190a3d2-0000-7000-8000-000000000001","data":{}}"#,
                "event: is required",
            ),
        ];
        for (body, expected) in cases {
            let error = check(body, None).unwrap_err();
            assert!(error.contains(expected), "{body}: {error}");
        }
    }
}
