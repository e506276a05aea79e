//! A ticket made ready to send: the request (`Outgoing`) built from its lane's settings.

use uuid::Uuid;

use super::lane::LaneSettings;
use super::limiter::Started;
use super::sender::Outgoing;
use super::ticket::Ticket;
use crate::domain::clock::UnixMs;
use crate::domain::webhook::{MaxRetries, Timeout};
use crate::domain::{Authorization, HttpMethod, LogStatus, SendType};
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
    let (outgoing, max_retries) = match settings {
        LaneSettings::Gone => return skip(ticket, LogStatus::Skipped, "Webhook no longer exists"),
        LaneSettings::Webhook(webhook) => {
            if !webhook.settings.enabled && !ticket.is_explicit() {
                return skip(ticket, LogStatus::Skipped, "Webhook is disabled");
            }
            let settings = &webhook.settings;
            let outgoing = Outgoing {
                webhook_id: Some(webhook.id),
                method: settings.http_method,
                url: log.url.clone(),
                message_id: log.event_id.to_string(),
                event_type: log.event_type.clone(),
                body: log.payload.0.clone(),
                secrets: webhook.secrets.active_at(now).into_iter().map(String::from).collect(),
                authorization: settings.authorization.clone(),
                custom_headers: settings.custom_headers.as_slice().to_vec(),
                tls: settings.tls.clone(),
                timeout: settings.timeout.duration(),
                traceparent: None,
            };
            (outgoing, settings.max_retries.get())
        }
        LaneSettings::PerCall(secrets) => {
            let outgoing = Outgoing {
                webhook_id: None,
                method: HttpMethod::Post,
                url: log.url.clone(),
                message_id: log.event_id.to_string(),
                event_type: log.event_type.clone(),
                body: log.payload.0.clone(),
                secrets: secrets.active_at(now).into_iter().map(String::from).collect(),
                authorization: Authorization::None,
                custom_headers: Vec::new(),
                tls: Default::default(),
                timeout: Timeout::DEFAULT.duration(),
                traceparent: None,
            };
            (outgoing, MaxRetries::DEFAULT.get())
        }
    };
    Ok(Job { ticket, outgoing, send_type, max_retries, probe, started, attempt })
}
