//! Lanes: the unit of scheduling (SPEC §4). Every webhook is its own lane; a per-call
//! `webhook_url` belongs to the lane of its organization and host, so one slow host does not
//! hold up another and tenants never share a lane.

use url::Url;
use uuid::Uuid;

/// Names the lanes of per-call destinations (UUIDv5 namespace).
const PER_CALL_NAMESPACE: Uuid = Uuid::from_u128(0x6a1c_52f4_0b8e_4b1d_9c3e_7f20_d4a1_5e07);

/// The lane of a delivery to `url`: its webhook's, or for a per-call URL (no webhook) the lane
/// of `org_id` and the URL's host and port.
pub fn lane_of(webhook_id: Option<Uuid>, org_id: Uuid, url: &str) -> Uuid {
    if let Some(webhook_id) = webhook_id {
        return webhook_id;
    }
    let authority = Url::parse(url)
        .ok()
        .and_then(|url| {
            let host = url.host_str()?.to_ascii_lowercase();
            Some(format!("{host}:{}", url.port_or_known_default().unwrap_or(0)))
        })
        .unwrap_or_default();
    let mut name = org_id.as_bytes().to_vec();
    name.extend_from_slice(authority.as_bytes());
    Uuid::new_v5(&PER_CALL_NAMESPACE, &name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_call_urls_share_a_lane_per_organization_and_host() {
        let (org, other) = (Uuid::now_v7(), Uuid::now_v7());
        let a = lane_of(None, org, "https://crm.example.com/a");
        assert_eq!(a, lane_of(None, org, "https://CRM.example.com:443/b?x=1"));
        assert_ne!(a, lane_of(None, org, "https://crm.example.com:8443/a"));
        assert_ne!(a, lane_of(None, other, "https://crm.example.com/a"));
        let webhook = Uuid::now_v7();
        assert_eq!(lane_of(Some(webhook), org, "https://crm.example.com/a"), webhook);
    }
}
