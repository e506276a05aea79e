//! Pure pieces: event payloads, ingest bodies, and the deterministic choice of which deliveries
//! fail once. Bodies are built as strings: formatting beats building `serde_json::Value` trees
//! for thousands of kilobyte-sized events, and keeps the bench's own CPU use small.

use std::fmt::Write as _;

/// The event's `data`: `{"i":INDEX,"pad":"xxx…"}`, padded so the whole object is about `bytes`
/// long (exactly, unless `bytes` is smaller than the object without padding).
pub fn event_data(index: u64, bytes: usize) -> String {
    let mut data = format!("{{\"i\":{index},\"pad\":\"");
    let pad = bytes.saturating_sub(data.len() + 2);
    data.extend(std::iter::repeat_n('x', pad));
    data.push_str("\"}");
    data
}

/// A `POST …/events/batch` body for events `first..first + count`.
pub fn batch_body(first: u64, count: u64, payload_bytes: usize) -> String {
    let per_event = payload_bytes + 64;
    let mut body = String::with_capacity(16 + per_event * usize::try_from(count).unwrap_or(0));
    body.push_str("{\"events\":[");
    for index in first..first + count {
        if index != first {
            body.push(',');
        }
        // Writing to a String cannot fail.
        let _ = write!(
            body,
            "{{\"event\":\"call.completed\",\"call_id\":\"c_{index}\",\"data\":{}}}",
            event_data(index, payload_bytes)
        );
    }
    body.push_str("]}");
    body
}

/// A `POST …/events` body for event `index` (one event per request).
pub fn single_body(index: u64, payload_bytes: usize) -> String {
    format!(
        "{{\"event\":\"call.completed\",\"call_id\":\"c_{index}\",\"data\":{}}}",
        event_data(index, payload_bytes)
    )
}

/// A `POST …/events/batch` body of `count` events of type `event` (scenario load: black-hole
/// and slow-endpoint backlogs), one call each.
pub fn typed_batch_body(event: &str, first: u64, count: u64, payload_bytes: usize) -> String {
    batch_body(first, count, payload_bytes).replace("\"call.completed\"", &format!("\"{event}\""))
}

/// Mixes a delivery's identity — (event id, webhook number) — into 64 well-spread bits
/// (splitmix64's finalizer), so fail selection and shard choice do not depend on UUID layout.
pub fn mix(event_id: u128, hook: u32) -> u64 {
    // Truncations are intended: both halves of the id are folded in.
    let mut z = (event_id as u64) ^ ((event_id >> 64) as u64).rotate_left(17) ^ u64::from(hook);
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Whether the first arrival of this delivery is answered 500. Deterministic per delivery, so
/// the retry (same `webhook-id`, same path) is recognised and answered 200.
pub fn fails_first(event_id: u128, hook: u32, ratio: f64) -> bool {
    if ratio <= 0.0 {
        return false;
    }
    if ratio >= 1.0 {
        return true;
    }
    // The top 53 bits as a uniform fraction in [0, 1): exactly representable in an f64.
    let fraction = (mix(event_id, hook) >> 11) as f64 / (1u64 << 53) as f64;
    fraction < ratio
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_data_has_the_requested_size_and_is_json() {
        for bytes in [32, 100, 1024, 65_536] {
            let data = event_data(12_345, bytes);
            assert_eq!(data.len(), bytes);
            let value: serde_json::Value = serde_json::from_str(&data).expect("valid JSON");
            assert_eq!(value["i"], 12_345);
        }
        // Too small to pad: the smallest valid object.
        assert_eq!(event_data(7, 1), "{\"i\":7,\"pad\":\"\"}");
    }

    #[test]
    fn batch_body_is_valid_json_with_every_event() {
        let body = batch_body(10, 3, 64);
        let value: serde_json::Value = serde_json::from_str(&body).expect("valid JSON");
        let events = value["events"].as_array().expect("events array");
        assert_eq!(events.len(), 3);
        assert_eq!(events[2]["call_id"], "c_12");
        assert_eq!(events[2]["data"]["i"], 12);
    }

    #[test]
    fn fail_selection_is_deterministic_and_close_to_the_ratio() {
        let ids = (0..20_000u128).map(|i| i.wrapping_mul(0x0123_4567_89ab_cdef_f00d_u128) ^ i);
        let chosen = ids.clone().filter(|&id| fails_first(id, 0, 0.1)).count();
        assert!((1_700..=2_300).contains(&chosen), "chose {chosen} of 20000 at 0.1");
        assert!(ids.clone().all(|id| fails_first(id, 3, 0.25) == fails_first(id, 3, 0.25)));
        assert!(!ids.clone().any(|id| fails_first(id, 0, 0.0)));
        assert!(ids.clone().all(|id| fails_first(id, 0, 1.0)));
    }
}
