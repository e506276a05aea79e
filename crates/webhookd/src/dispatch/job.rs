//! A ticket made ready to send: the request (`Outgoing`) built from its lane's settings.

use uuid::Uuid;

use super::lane::LaneSettings;
use super::limiter::Started;
use super::sender::{Destination, Outgoing};
use super::ticket::Ticket;
use crate::domain::clock::UnixMs;
use crate::domain::webhook::MaxRetries;
use crate::domain::{LogStatus, SendType};
use crate::store::SkipRecord;

/// One attempt about to be sent.
#[derive(Debug)]
pub struct Job {
    pub ticket: Ticket,
    pub outgoing: Outgoing,
    pub send_type: SendType,
    pub max_retries: u32,
    /// The attempt is its circuit's probe.
    pub probe: bool,
    pub started: Started,
    /// Identifies the attempt to the dispatcher (stall and finish reports).
    pub attempt: u64,
}

impl Job {
    pub fn lane(&self) -> Uuid {
        self.ticket.lane()
    }
}

/// The job for `ticket` in a lane with `settings`, or why it is closed without an attempt (its
/// webhook is gone or disabled, its payload expired or was erased).
pub fn build(
    ticket: Ticket,
    settings: &LaneSettings,
    started: Started,
    probe: bool,
    attempt: u64,
    now: UnixMs,
) -> Result<Job, (Ticket, SkipRecord)> {
    let skip = |ticket: Ticket, status: LogStatus, error: &str| {
        let record = SkipRecord { log_id: ticket.log.id, status, error: error.to_string() };
        Err((ticket, record))
    };
    // Never sent without its payload: expired or erased since it was claimed or handed over.
    if let Some(error) = ticket.log.payload_state.error() {
        return skip(ticket, LogStatus::Failed, error);
    }
    let send_type = ticket.send_type();
    let log = &ticket.log;
    let (destination, max_retries) = match settings {
        LaneSettings::Gone => return skip(ticket, LogStatus::Skipped, "Webhook no longer exists"),
        LaneSettings::Webhook(webhook) => {
            if !webhook.settings.enabled && !ticket.is_explicit() {
                return skip(ticket, LogStatus::Skipped, "Webhook is disabled");
            }
            (Destination::Webhook(webhook), webhook.settings.max_retries.get())
        }
        LaneSettings::PerCall(secrets) => {
            (Destination::PerCall(secrets), MaxRetries::DEFAULT.get())
        }
    };
    let outgoing = Outgoing::new(
        destination,
        &log.url,
        log.event_id,
        &log.event_type,
        log.payload.0.clone(),
        now,
    );
    Ok(Job { ticket, outgoing, send_type, max_retries, probe, started, attempt })
}
