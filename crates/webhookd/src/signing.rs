//! Request signatures. Standard Webhooks: `webhook-signature: v1,<base64 HMAC-SHA256 of
//! "id.timestamp.body">`, one per active secret, space-separated. Bland-style
//! `x-webhook-signature`: hex HMAC-SHA256 of the body alone, with the current secret.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::domain::secrets::signing_key;

type HmacSha256 = Hmac<Sha256>;

fn hmac(secret: &str) -> HmacSha256 {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    HmacSha256::new_from_slice(&signing_key(secret)).expect("HMAC accepts any key length")
}

/// The `webhook-signature` header value for `secrets` (current first).
pub fn standard_signature(secrets: &[&str], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut signatures = Vec::with_capacity(secrets.len());
    for secret in secrets {
        let mut mac = hmac(secret);
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        signatures.push(format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes())));
    }
    signatures.join(" ")
}

/// The `x-webhook-signature` header value: hex HMAC-SHA256 of the body.
pub fn body_signature(secret: &str, body: &[u8]) -> String {
    let mut mac = hmac(secret);
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Whether any `v1,` signature in `header` matches one of `secrets`; used by `webhookd listen`
/// and by tests. Comparison is constant-time.
pub fn verify_standard(
    secret: &str,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
    header: &str,
) -> bool {
    header.split(' ').filter_map(|s| s.strip_prefix("v1,")).any(|candidate| {
        let Ok(candidate) = STANDARD.decode(candidate) else {
            return false;
        };
        let mut mac = hmac(secret);
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.verify_slice(&candidate).is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification.
    #[test]
    fn matches_the_standard_webhooks_specification_example() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
        let body = br#"{"test": 2432232314}"#;
        let signature = standard_signature(&[secret], id, 1_614_265_330, body);
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert!(verify_standard(secret, id, 1_614_265_330, body, &signature));
        assert!(!verify_standard(secret, id, 1_614_265_331, body, &signature));
    }

    #[test]
    fn signs_with_every_active_secret_space_separated() {
        let header = standard_signature(&["whsec_AAAA", "old"], "id", 1, b"{}");
        let parts: Vec<_> = header.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert!(verify_standard("whsec_AAAA", "id", 1, b"{}", &header));
        assert!(verify_standard("old", "id", 1, b"{}", &header));
        assert!(!verify_standard("other", "id", 1, b"{}", &header));
    }

    #[test]
    fn body_signature_is_hex_hmac_of_the_body() {
        // HMAC-SHA256(key="key", "The quick brown fox jumps over the lazy dog"), RFC 4231 style vector.
        assert_eq!(
            body_signature("key", b"The quick brown fox jumps over the lazy dog"),
            "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
    }
}
