//! Domain types: values that have been parsed and validated, so code past the API boundary can
//! trust them. Nothing here touches the network or the database.

pub mod catalog;
pub mod circuit;
pub mod clock;
pub mod destination;
pub mod egress;
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

/// Status of a recovery (`POST …/recover`): continuing in the background, or done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryStatus {
    Running,
    Completed,
}

impl RecoveryStatus {
    pub const ALL: [RecoveryStatus; 2] = [Self::Running, Self::Completed];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Completed => "completed",
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

/// Whether an event's payload is still stored (SPEC §8, `payload_state`). Without it, the event's
/// `data`, its logs' `request_payload` and their attempts' response bodies and headers are gone;
/// ids, statuses, codes, times, durations, errors and URLs stay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PayloadState {
    #[default]
    Present,
    /// `--payload-retention` passed.
    Expired,
    /// Erased on request (`DELETE /api/v1/calls/{call_id}`).
    Erased,
}

impl PayloadState {
    pub const ALL: [PayloadState; 3] = [Self::Present, Self::Expired, Self::Erased];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Present => "present",
            Self::Expired => "expired",
            Self::Erased => "erased",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == s)
    }

    pub fn is_present(self) -> bool {
        self == Self::Present
    }

    /// The error a pending log ends with when its payload goes, and why it cannot be sent again
    /// (`reason` of `LOG_NOT_RETRIABLE`). `None` while the payload is present.
    pub fn error(self) -> Option<&'static str> {
        match self {
            Self::Present => None,
            Self::Expired => Some("payload expired"),
            Self::Erased => Some("payload erased"),
        }
    }

    pub fn reason(self) -> Option<&'static str> {
        match self {
            Self::Present => None,
            Self::Expired => Some("payload_expired"),
            Self::Erased => Some("payload_erased"),
        }
    }
}
