//! `/ui/event-types`: the event catalog for dashboard and portal users alike, each type with its
//! description and, where the catalog has them, the schema and an example of its body.

use askama::Template;
use axum::extract::State;
use axum::response::Response;

use super::error::UiError;
use super::session::Session;
use super::views::{render, Chrome};
use crate::api::AppState;

pub struct EventTypeRow {
    pub name: String,
    pub description: String,
    /// Pretty JSON; empty where none.
    pub schema: String,
    pub example: String,
}

#[derive(Template)]
#[template(path = "event_types.html")]
struct EventTypesPage {
    chrome: Chrome,
    types: Vec<EventTypeRow>,
}

pub async fn list(State(state): State<AppState>, session: Session) -> Result<Response, UiError> {
    let pretty = |value: Option<&serde_json::Value>| {
        value.and_then(|v| serde_json::to_string_pretty(v).ok()).unwrap_or_default()
    };
    let types = state
        .catalog
        .kinds()
        .map(|(name, kind)| EventTypeRow {
            name: name.to_string(),
            description: kind.description.clone(),
            schema: pretty(kind.schema.as_ref()),
            example: pretty(kind.example.as_ref()),
        })
        .collect();
    render(&EventTypesPage { chrome: Chrome::of(&session).crumb("Event types", ""), types })
}
