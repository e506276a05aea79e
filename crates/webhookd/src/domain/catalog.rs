//! The catalog of event types a webhook may subscribe to: built in for call platforms, extendable
//! by configuration (`--extra-event-types`).

use std::collections::BTreeMap;

const BUILT_IN: &[(&str, &str)] = &[
    ("call.started", "A call was connected and the agent started talking."),
    ("call.ended", "A call hung up; the recording and analysis may still be processing."),
    (
        "call.completed",
        "The post-call webhook: the call is over and its transcript and analysis are final.",
    ),
    ("call.failed", "A call could not be placed or was dropped before it connected."),
    ("call.transferred", "A call was transferred to another number or agent."),
    ("voicemail.detected", "The call reached a voicemail box."),
    ("recording.ready", "The call recording is available."),
    ("transcript.ready", "The call transcript is available."),
    ("webhook.test", "A test event sent from the webhook's test endpoint."),
];

/// The post-call event: what Bland's resend/create endpoints re-deliver.
pub const POST_CALL_EVENT: &str = "call.completed";
/// The event the `test` endpoint sends.
pub const TEST_EVENT: &str = "webhook.test";

#[derive(Debug, Clone)]
pub struct EventCatalog {
    events: BTreeMap<String, String>,
}

impl Default for EventCatalog {
    fn default() -> Self {
        Self::with_extra(&[])
    }
}

impl EventCatalog {
    /// The built-in catalog plus `extra` entries, each `name` or `name=description`.
    pub fn with_extra(extra: &[String]) -> Self {
        let mut events: BTreeMap<String, String> = BUILT_IN
            .iter()
            .map(|(name, description)| (name.to_string(), description.to_string()))
            .collect();
        for entry in extra {
            let (name, description) = entry.split_once('=').unwrap_or((entry, "Custom event."));
            let name = name.trim();
            if !name.is_empty() {
                events.insert(name.to_string(), description.trim().to_string());
            }
        }
        Self { events }
    }

    pub fn contains(&self, event: &str) -> bool {
        self.events.contains_key(event)
    }

    /// `Ok` for a known event type; otherwise a message that lists the catalog, so the fix is in
    /// the error itself.
    pub fn check(&self, event: &str) -> Result<(), String> {
        if self.contains(event) {
            return Ok(());
        }
        let known: Vec<&str> = self.events.keys().map(String::as_str).collect();
        let shown = if event.chars().count() > 64 {
            format!("{}…", event.chars().take(64).collect::<String>())
        } else {
            event.to_string()
        };
        Err(format!("unknown event type {shown:?}; available: {}", known.join(", ")))
    }

    /// Event name → description, as `available_events` shows it.
    pub fn descriptions(&self) -> &BTreeMap<String, String> {
        &self.events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_catalog_has_the_post_call_event() {
        let catalog = EventCatalog::default();
        assert!(catalog.contains(POST_CALL_EVENT));
        assert!(catalog.contains(TEST_EVENT));
        assert!(!catalog.contains("call.exploded"));
    }

    #[test]
    fn configuration_adds_event_types_with_or_without_description() {
        let catalog =
            EventCatalog::with_extra(&["sms.sent=An SMS was sent".into(), " sms.failed ".into()]);
        assert_eq!(catalog.descriptions()["sms.sent"], "An SMS was sent");
        assert!(catalog.contains("sms.failed"));
    }
}
