//! An event to ingest (SPEC §3 "Event ingestion body"), parsed: its type from the catalog, the
//! optional call id, idempotency key and one-off destination, and the `data` bytes verbatim.

use std::sync::Arc;

use bytes::Bytes;

use super::catalog::EventCatalog;
use super::text;
use super::webhook::WebhookUrl;

/// Longest call id and idempotency key, in characters.
pub const ID_MAX: usize = 255;

/// An event type from the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EventType(String);

impl EventType {
    pub fn parse(value: &str, catalog: &EventCatalog) -> Result<Self, String> {
        catalog.check(value)?;
        Ok(Self(value.to_string()))
    }

    /// A type written by webhookd itself (test events, operational events).
    pub fn builtin(value: &'static str) -> Self {
        Self(value.to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An identifier chosen by the client: 1–255 characters, not blank, no control characters; kept
/// exactly as sent (no trimming), since it is matched exactly later.
macro_rules! client_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub struct $name(String);

        impl $name {
            pub fn parse(value: &str) -> Result<Self, String> {
                text::parse_exact(value, ID_MAX).map(|v| Self(v.to_string()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        /// Exactly as sent, for messages that name it.
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

client_id!(
    /// The call an event is about.
    CallId
);
client_id!(
    /// Repeats of this key within 24 h return the first event (per organization).
    IdempotencyKey
);

/// A parsed event, ready to store.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub event_type: EventType,
    pub call_id: Option<CallId>,
    /// The `data` bytes, delivered verbatim.
    pub payload: Bytes,
    /// `data` parsed, when ingestion already parsed it (to check its type's schema); webhook
    /// filters use it rather than parsing the bytes again.
    pub data: Option<Arc<serde_json::Value>>,
    pub idempotency_key: Option<IdempotencyKey>,
    /// A one-off destination signed with the organization's secret.
    pub webhook_url: Option<WebhookUrl>,
    /// The W3C trace context its attempts continue (`telemetry::traces`), if any.
    pub traceparent: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_are_kept_exactly_and_must_not_be_blank_or_carry_nul() {
        assert_eq!(CallId::parse(" c_1 ").unwrap().as_str(), " c_1 ");
        assert!(CallId::parse("  ").is_err());
        assert!(CallId::parse("c\u{0}1").is_err());
        assert!(IdempotencyKey::parse(&"k".repeat(256)).is_err());
        assert!(IdempotencyKey::parse(&"é".repeat(255)).is_ok());
    }

    #[test]
    fn event_types_come_from_the_catalog() {
        let catalog = EventCatalog::default();
        assert!(EventType::parse("call.completed", &catalog).is_ok());
        assert!(EventType::parse("call.exploded", &catalog).unwrap_err().contains("available"));
    }
}
