//! Domain types: values that have been parsed and validated, so code past the API boundary can
//! trust them. Nothing here touches the network or the database.

pub mod catalog;
pub mod circuit;
pub mod clock;
pub mod destination;
pub mod event;
pub mod filter;
pub mod health;
pub mod lane;
pub mod operational;
pub mod pacing;
pub mod sealing;
pub mod secrets;
pub mod text;
pub mod validation;
pub mod webhook;

pub use catalog::EventCatalog;
pub use webhook::{Authorization, CustomHeader, HttpMethod, WebhookSettings};

/// Status of a delivery log (SPEC §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogStatus {
    Pending,
    Success,
    Failed,
    Skipped,
}

impl LogStatus {
    pub const ALL: [LogStatus; 4] = [Self::Pending, Self::Success, Self::Failed, Self::Skipped];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Success => "success",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == s)
    }
}

/// How an attempt came to be sent (SPEC §1, `send_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SendType {
    Spawn,
    Retry,
    Manual,
    Resend,
    Create,
    Recover,
    Test,
}

impl SendType {
    pub const ALL: [SendType; 7] = [
        Self::Spawn,
        Self::Retry,
        Self::Manual,
        Self::Resend,
        Self::Create,
        Self::Recover,
        Self::Test,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Spawn => "spawn",
            Self::Retry => "retry",
            Self::Manual => "manual",
            Self::Resend => "resend",
            Self::Create => "create",
            Self::Recover => "recover",
            Self::Test => "test",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|send_type| send_type.as_str() == s)
    }
}
