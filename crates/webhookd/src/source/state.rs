//! Each source's condition on this node, as `/readyz` names it.

use std::sync::{Arc, Mutex};

use serde::Serialize;
use utoipa::ToSchema;

/// One source as `/readyz` shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SourceHealth {
    /// `nats:STREAM/CONSUMER` or `amqp:VHOST/QUEUE`.
    pub source: String,
    /// `connecting`, `consuming` or `reconnecting`.
    pub state: &'static str,
    /// Why the last connection ended or failed, while `reconnecting`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The sources of a node; empty when it has none.
#[derive(Debug, Clone, Default)]
pub struct SourceStates {
    sources: Arc<Mutex<Vec<SourceHealth>>>,
}

impl SourceStates {
    /// Registers a source, `connecting`; its handle reports what becomes of it.
    pub fn add(&self, source: String) -> SourceState {
        let mut sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        sources.push(SourceHealth { source, state: "connecting", error: None });
        SourceState { states: self.clone(), index: sources.len() - 1 }
    }

    pub fn snapshot(&self) -> Vec<SourceHealth> {
        self.sources.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set(&self, index: usize, state: &'static str, error: Option<String>) {
        let mut sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(source) = sources.get_mut(index) {
            source.state = state;
            source.error = error;
        }
    }
}

/// One source's handle on its entry.
#[derive(Debug, Clone)]
pub struct SourceState {
    states: SourceStates,
    index: usize,
}

impl SourceState {
    pub fn consuming(&self) {
        self.states.set(self.index, "consuming", None);
    }

    pub fn reconnecting(&self, error: &anyhow::Error) {
        self.states.set(self.index, "reconnecting", Some(format!("{error:#}")));
    }
}
