//! `--event-catalog FILE`: a JSON (`.json`) or YAML list of `{name, description, schema?,
//! example?}`. Each schema is compiled here, once, as JSON Schema draft 2020-12 with `format`
//! asserted (no remote or file `$ref`s); an example must satisfy its schema.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use super::{schema_errors, shown, EventKind};

/// Longest event type name.
pub const NAME_MAX: usize = 100;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    description: String,
    #[serde(default)]
    schema: Option<Value>,
    #[serde(default)]
    example: Option<Value>,
}

/// The file's entries, by name. The error is one line, without the file's name (the caller adds
/// it).
pub(super) fn read(path: &Path) -> Result<BTreeMap<String, EventKind>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read it: {e}"))?;
    let json = path.extension().is_some_and(|ext| ext.eq_ignore_ascii_case("json"));
    let items: Vec<Value> = if json {
        serde_json::from_str(&text).map_err(|e| format!("not a JSON list of event types: {e}"))?
    } else {
        serde_yaml_ng::from_str(&text)
            .map_err(|e| format!("not a YAML list of event types: {}", one_line(&e.to_string())))?
    };
    if items.is_empty() {
        return Err("lists no event type".into());
    }
    let mut kinds = BTreeMap::new();
    for (index, item) in items.into_iter().enumerate() {
        let named = item.get("name").and_then(Value::as_str).map(shown);
        let at = match &named {
            Some(name) => format!("event type {name:?}"),
            None => format!("entry {}", index + 1),
        };
        let entry: Entry = serde_json::from_value(item).map_err(|e| {
            format!("{at}: {e} (an entry is {{name, description, schema?, example?}})")
        })?;
        let (name, kind) = entry.parse().map_err(|e| format!("{at}: {e}"))?;
        if kinds.insert(name, kind).is_some() {
            return Err(format!("{at} is listed twice"));
        }
    }
    Ok(kinds)
}

impl Entry {
    fn parse(self) -> Result<(String, EventKind), String> {
        check_name(&self.name)?;
        let description = self.description.trim().to_string();
        if description.is_empty() {
            return Err("description must not be blank".into());
        }
        let validator = match &self.schema {
            None => None,
            Some(schema) => Some(Arc::new(
                jsonschema::draft202012::options()
                    // `format` (date-time, uri, email, uuid, …) is checked, not only noted.
                    .should_validate_formats(true)
                    .build(schema)
                    .map_err(|e| format!("schema is not a valid JSON Schema 2020-12: {e}"))?,
            )),
        };
        if let (Some(validator), Some(example)) = (&validator, &self.example) {
            if let Err(errors) = schema_errors(validator, example) {
                let (at, messages) = errors.into_map().into_iter().next().unwrap_or_default();
                let at = at.replacen("data", "example", 1);
                return Err(format!(
                    "example does not match the schema: {at}: {}",
                    messages.join("; ")
                ));
            }
        }
        let kind = EventKind { description, schema: self.schema, example: self.example, validator };
        Ok((self.name, kind))
    }
}

/// An event type name: 1–100 of letters, digits and `. _ - :`, no wildcard.
pub fn check_name(name: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':');
    if name.is_empty() || name.len() > NAME_MAX || !name.chars().all(allowed) {
        return Err(format!(
            "name must be 1 to {NAME_MAX} letters, digits, '.', '_', '-' or ':' (e.g. call.completed)"
        ));
    }
    Ok(())
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_text(name: &str, text: &str) -> Result<BTreeMap<String, EventKind>, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        read(&path)
    }

    #[test]
    fn a_yaml_catalog_is_read_with_schemas_and_examples() {
        let kinds = read_text(
            "c.yaml",
            "- name: sms.sent\n  description: An SMS was sent.\n  schema:\n    type: object\n    \
             required: [to]\n  example: {to: '+15550100'}\n- name: sms.failed\n  description: x\n",
        )
        .unwrap();
        assert!(kinds["sms.sent"].has_schema());
        assert!(!kinds["sms.failed"].has_schema());
    }

    #[test]
    fn the_shipped_example_catalog_loads_and_its_examples_pass_their_schemas() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/event-catalog.yaml");
        let kinds = read(Path::new(path)).unwrap();
        assert!(kinds.values().all(|kind| kind.has_schema() && kind.example.is_some()));
        assert!(kinds.contains_key("call.completed") && kinds.contains_key("sms.sent"));
    }

    #[test]
    fn problems_name_the_type_and_say_what_is_wrong() {
        let bad_schema = r#"[{"name": "a.b", "description": "d", "schema": {"type": "nope"}}]"#;
        let error = read_text("c.json", bad_schema).unwrap_err();
        assert!(error.starts_with("event type \"a.b\": schema is not a valid"), "{error}");
        let bad_example = r#"[{"name": "a.b", "description": "d",
            "schema": {"properties": {"n": {"type": "integer"}}}, "example": {"n": "x"}}]"#;
        let error = read_text("c.json", bad_example).unwrap_err();
        assert!(error.contains("example/n"), "{error}");
        let error = read_text("c.json", r#"[{"name": "a.*", "description": "d"}]"#).unwrap_err();
        assert!(error.contains("name must be"), "{error}");
        let error = read_text("c.json", r#"[{"name": "a", "description": "d", "x": 1}]"#);
        assert!(error.unwrap_err().contains("unknown field"));
        let twice = r#"[{"name": "a", "description": "d"}, {"name": "a", "description": "e"}]"#;
        assert!(read_text("c.json", twice).unwrap_err().contains("listed twice"));
        assert!(read_text("c.yaml", "name: [").unwrap_err().starts_with("not a YAML list"));
        let remote = r#"[{"name": "a", "description": "d",
            "schema": {"$ref": "https://example.com/schema.json"}}]"#;
        let error = read_text("c.json", remote).unwrap_err();
        assert!(error.contains("schema is not a valid") && !error.contains('\n'), "{error}");
        let timestamp = r#"[{"name": "a", "description": "d",
            "schema": {"properties": {"at": {"format": "date-time"}}}, "example": {"at": "noon"}}]"#;
        assert!(read_text("c.json", timestamp).unwrap_err().contains("example/at"), "formats hold");
        assert!(!read_text("c.yaml", "a: [\n\n").unwrap_err().contains('\n'));
    }
}
