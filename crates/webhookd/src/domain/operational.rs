//! Operational events (SPEC §4): what an organization's own endpoint is told about its webhooks,
//! the set of them it subscribes to, why a webhook was disabled, the body sent, and the lane of
//! operational deliveries.

use serde_json::{json, Value};
use uuid::Uuid;

use super::clock::{format_ms, UnixMs};
use super::health::{FAILING_REASON, GONE_REASON};

/// Names the lane of an organization's operational deliveries (UUIDv5 namespace). Version 5,
/// like per-call lanes, so the dispatcher signs them with the organization's secret.
const OPERATIONAL_LANE_NAMESPACE: Uuid = Uuid::from_u128(0x0b7e_57a1_91c4_4d2e_a6f3_1c58_e02d_7b94);

/// The lane of `org_id`'s operational deliveries: its own, so a slow operational endpoint holds
/// up neither the organization's webhooks nor its per-call deliveries, and a log in it is known
/// to be operational without a read.
pub fn lane(org_id: Uuid) -> Uuid {
    Uuid::new_v5(&OPERATIONAL_LANE_NAMESPACE, org_id.as_bytes())
}

/// The kinds of operational event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    WebhookDisabled,
    CircuitOpened,
    CircuitClosed,
    DeliveryFailed,
}

impl Kind {
    pub const ALL: [Kind; 4] =
        [Self::WebhookDisabled, Self::CircuitOpened, Self::CircuitClosed, Self::DeliveryFailed];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::WebhookDisabled => "webhook.disabled",
            Self::CircuitOpened => "webhook.circuit_opened",
            Self::CircuitClosed => "webhook.circuit_closed",
            Self::DeliveryFailed => "delivery.failed",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == value)
    }
}

/// A non-empty set of operational event kinds, in catalog order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription(Vec<Kind>);

impl Subscription {
    pub fn all() -> Self {
        Self(Kind::ALL.to_vec())
    }

    /// `events` of a request: absent means every kind; an empty list or an unknown name is an
    /// error that lists the names allowed.
    pub fn parse(events: Option<&[String]>) -> Result<Self, String> {
        let Some(events) = events else { return Ok(Self::all()) };
        if events.is_empty() {
            return Err(format!("must contain at least 1 event; allowed: {}", names()));
        }
        let mut kinds = Vec::with_capacity(events.len());
        for event in events {
            let kind = Kind::parse(event.trim()).ok_or_else(|| {
                format!("{event:?} is not an operational event; allowed: {}", names())
            })?;
            kinds.push(kind);
        }
        kinds.sort_unstable();
        kinds.dedup();
        Ok(Self(kinds))
    }

    pub fn contains(&self, kind: Kind) -> bool {
        self.0.contains(&kind)
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.0.iter().map(|kind| kind.as_str()).collect()
    }

    pub fn to_json(&self) -> String {
        Value::from(self.names()).to_string()
    }

    /// The stored JSON array; a name this version does not know is reported, not dropped.
    pub fn from_stored(json: &str) -> Result<Self, String> {
        let names: Vec<String> = serde_json::from_str(json).map_err(|e| e.to_string())?;
        Self::parse(Some(&names))
    }
}

fn names() -> String {
    Kind::ALL.map(Kind::as_str).join(", ")
}

/// Why a webhook was disabled: `data.reason` of `webhook.disabled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisabledReason {
    /// Its endpoint answered `410 Gone`.
    EndpointGone,
    /// Its deliveries failed for 5 days without a success.
    FailingFor5Days,
    /// Someone turned it off (the toggle or an update with `enabled: false`, by API or dashboard).
    DisabledByApi,
}

impl DisabledReason {
    /// The reason of a webhook disabled by its deliveries (`domain::health`).
    pub fn of_health(reason: &str) -> Self {
        match reason {
            GONE_REASON => Self::EndpointGone,
            FAILING_REASON => Self::FailingFor5Days,
            // `Health::observe` has no other reason; a new one would read as the longer outage.
            _ => Self::FailingFor5Days,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Self::EndpointGone => "endpoint_gone",
            Self::FailingFor5Days => "failing_for_5_days",
            Self::DisabledByApi => "disabled_by_api",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Self::EndpointGone => GONE_REASON,
            Self::FailingFor5Days => FAILING_REASON,
            Self::DisabledByApi => "Disabled through the API or the dashboard",
        }
    }
}

/// The body of an operational event: `{type, timestamp, data}`.
pub fn body(kind: Kind, at: UnixMs, data: Value) -> Vec<u8> {
    json!({"type": kind.as_str(), "timestamp": format_ms(at), "data": data})
        .to_string()
        .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_default_to_every_kind_and_reject_empty_or_unknown_lists() {
        assert_eq!(Subscription::parse(None), Ok(Subscription::all()));
        assert!(Subscription::parse(Some(&[])).unwrap_err().contains("delivery.failed"));
        let unknown = Subscription::parse(Some(&["call.completed".to_string()])).unwrap_err();
        assert!(unknown.contains("not an operational event"), "{unknown}");
        let some =
            ["delivery.failed".to_string(), "webhook.disabled".into(), "delivery.failed".into()];
        let parsed = Subscription::parse(Some(&some)).unwrap();
        assert_eq!(parsed.names(), ["webhook.disabled", "delivery.failed"]);
        assert_eq!(Subscription::from_stored(&parsed.to_json()), Ok(parsed));
    }

    #[test]
    fn health_reasons_map_to_stable_codes() {
        assert_eq!(DisabledReason::of_health(GONE_REASON).code(), "endpoint_gone");
        assert_eq!(DisabledReason::of_health(FAILING_REASON).code(), "failing_for_5_days");
        assert_eq!(DisabledReason::DisabledByApi.code(), "disabled_by_api");
    }

    #[test]
    fn operational_lanes_are_per_organization_and_name_based() {
        let (org, other) = (Uuid::now_v7(), Uuid::now_v7());
        assert_eq!(lane(org), lane(org));
        assert_ne!(lane(org), lane(other));
        assert_eq!(lane(org).get_version_num(), 5);
        assert_ne!(lane(org), super::super::lane::lane_of(None, org, "https://ops.example.com"));
    }

    #[test]
    fn the_body_has_type_timestamp_and_data() {
        let body = body(Kind::CircuitClosed, 1_705_318_200_123, json!({"webhook_id": "w"}));
        let value: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["type"], "webhook.circuit_closed");
        assert_eq!(value["timestamp"], "2024-01-15T11:30:00.123Z");
        assert_eq!(value["data"]["webhook_id"], "w");
    }
}
