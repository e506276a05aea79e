//! The catalog of event types a webhook may subscribe to: built in for call platforms, extended or
//! replaced entry by entry by `--event-catalog FILE` (with a JSON Schema and an example per type)
//! and by `--extra-event-types`. Schemas are compiled once, when the catalog is built.

mod file;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde_json::Value;

use super::validation::FieldErrors;

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
/// Most schema errors reported for one event's `data`.
const DATA_ERRORS_MAX: usize = 20;

/// One event type: what it means, and optionally the JSON Schema of its `data` and an example.
#[derive(Debug, Clone)]
pub struct EventKind {
    pub description: String,
    pub schema: Option<Value>,
    pub example: Option<Value>,
    /// `schema`, compiled (draft 2020-12).
    validator: Option<Arc<jsonschema::Validator>>,
}

impl EventKind {
    fn described(description: impl Into<String>) -> Self {
        Self { description: description.into(), schema: None, example: None, validator: None }
    }

    /// Whether a value needs checking at all: only types with a schema do.
    pub fn has_schema(&self) -> bool {
        self.validator.is_some()
    }
}

#[derive(Debug, Clone)]
pub struct EventCatalog {
    kinds: BTreeMap<String, EventKind>,
    /// Name → description, as `available_events` shows it (kept, so listing is a clone).
    descriptions: BTreeMap<String, String>,
}

impl Default for EventCatalog {
    fn default() -> Self {
        Self::with_extra(&[])
    }
}

impl EventCatalog {
    /// The built-in catalog plus `extra` entries, each `name` or `name=description`.
    pub fn with_extra(extra: &[String]) -> Self {
        let kinds = BUILT_IN
            .iter()
            .map(|(name, description)| (name.to_string(), EventKind::described(*description)))
            .collect();
        let mut catalog = Self { kinds, descriptions: BTreeMap::new() };
        catalog.add_extra(extra);
        catalog
    }

    /// The catalog `serve` runs with: the built-in types, each entry of `file` replacing the type
    /// of its name or adding one, then `extra`. A file that cannot be read or parsed, or a schema
    /// that does not compile, is one line naming the file, the type and the problem.
    pub fn load(file: Option<&Path>, extra: &[String]) -> Result<Self, String> {
        let mut catalog = Self::with_extra(&[]);
        if let Some(path) = file {
            let prefix = |message: String| format!("--event-catalog {}: {message}", path.display());
            for (name, kind) in file::read(path).map_err(prefix)? {
                catalog.kinds.insert(name, kind);
            }
        }
        catalog.add_extra(extra);
        Ok(catalog)
    }

    fn add_extra(&mut self, extra: &[String]) {
        for entry in extra {
            let (name, description) = entry.split_once('=').unwrap_or((entry, "Custom event."));
            let name = name.trim();
            if !name.is_empty() {
                self.kinds.insert(name.to_string(), EventKind::described(description.trim()));
            }
        }
        self.descriptions = self
            .kinds
            .iter()
            .map(|(name, kind)| (name.clone(), kind.description.clone()))
            .collect();
    }

    pub fn contains(&self, event: &str) -> bool {
        self.kinds.contains_key(event)
    }

    pub fn get(&self, event: &str) -> Option<&EventKind> {
        self.kinds.get(event)
    }

    /// Every type, by name.
    pub fn kinds(&self) -> impl Iterator<Item = (&str, &EventKind)> {
        self.kinds.iter().map(|(name, kind)| (name.as_str(), kind))
    }

    /// The names of every type.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.kinds.keys().map(String::as_str)
    }

    /// `Ok` for a known event type; otherwise a message that lists the catalog, so the fix is in
    /// the error itself.
    pub fn check(&self, event: &str) -> Result<(), String> {
        if self.contains(event) {
            return Ok(());
        }
        Err(format!("unknown event type {:?}; available: {}", shown(event), self.listing()))
    }

    /// The catalog's names, comma-separated, for messages.
    pub fn listing(&self) -> String {
        self.names().collect::<Vec<_>>().join(", ")
    }

    /// Event name → description, as `available_events` shows it.
    pub fn descriptions(&self) -> &BTreeMap<String, String> {
        &self.descriptions
    }

    /// Checks `data` against the schema of `event`, if it has one. Errors are keyed `data` plus
    /// the JSON pointer of the offending value (`data/duration`) and say what was expected; the
    /// value itself is never echoed.
    pub fn validate_data(&self, event: &str, data: &Value) -> Result<(), FieldErrors> {
        let Some(validator) = self.kinds.get(event).and_then(|kind| kind.validator.as_ref()) else {
            return Ok(());
        };
        schema_errors(validator, data)
    }
}

/// Every way `data` fails `validator` (at most [`DATA_ERRORS_MAX`]), keyed by where.
fn schema_errors(validator: &jsonschema::Validator, data: &Value) -> Result<(), FieldErrors> {
    let mut errors = FieldErrors::default();
    for error in validator.iter_errors(data).take(DATA_ERRORS_MAX) {
        errors.add(format!("data{}", error.instance_path()), error.masked().to_string());
    }
    errors.finish()
}

/// An event name cut to 64 characters, for messages.
fn shown(event: &str) -> String {
    if event.chars().count() > 64 {
        format!("{}…", event.chars().take(64).collect::<String>())
    } else {
        event.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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

    #[test]
    fn data_is_checked_against_its_types_schema_with_errors_keyed_by_pointer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.json");
        let schema = json!({"type": "object", "required": ["call_id"],
            "properties": {"duration": {"type": "integer", "minimum": 0}}});
        let entries = json!([{"name": "call.completed", "description": "Done.", "schema": schema}]);
        std::fs::write(&path, entries.to_string()).unwrap();
        let catalog = EventCatalog::load(Some(&path), &[]).unwrap();
        assert!(catalog.validate_data("call.completed", &json!({"call_id": "c"})).is_ok());
        let errors = catalog
            .validate_data("call.completed", &json!({"duration": "long"}))
            .unwrap_err()
            .into_map();
        assert!(errors["data/duration"][0].contains("integer"), "{errors:?}");
        assert!(errors["data"][0].contains("call_id"), "{errors:?}");
        assert!(!errors["data/duration"][0].contains("long"), "the value is not echoed");
        // Types without a schema take any data.
        assert!(catalog.validate_data("call.started", &json!(42)).is_ok());
    }
}
