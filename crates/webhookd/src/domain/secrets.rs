//! Credentials webhookd issues: API keys (shown once, stored as a SHA-256 hash) and signing
//! secrets in the Standard Webhooks `whsec_<base64>` form.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

pub const API_KEY_PREFIX: &str = "whk_";
pub const SIGNING_SECRET_PREFIX: &str = "whsec_";

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes
}

/// A new API key: `whk_` and 32 random bytes, URL-safe base64.
pub fn generate_api_key() -> String {
    format!("{API_KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(random_bytes::<32>()))
}

/// API keys carry 256 bits of entropy, so one SHA-256 is enough: no password hashing needed, and
/// lookups stay a single indexed equality.
pub fn hash_api_key(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}

/// The part of a key that is safe to show in listings and logs.
pub fn api_key_prefix(key: &str) -> String {
    key.chars().take(API_KEY_PREFIX.len() + 6).collect()
}

/// A new signing secret: `whsec_` and 24 random bytes, standard base64 (Standard Webhooks form).
pub fn generate_signing_secret() -> String {
    format!("{SIGNING_SECRET_PREFIX}{}", STANDARD.encode(random_bytes::<24>()))
}

/// Shortest and longest key a `whsec_` secret may decode to (Standard Webhooks uses 24–64 bytes).
const WHSEC_KEY_BYTES: std::ops::RangeInclusive<usize> = 24..=64;

/// A signing secret a customer brings (`webhook_secret`): 1–255 characters without surrounding
/// whitespace or control characters. One in the `whsec_` form must carry valid base64 of a 24–64
/// byte key, since receivers decode it that way; any other string signs with its own bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningSecret(String);

impl SigningSecret {
    pub fn parse(value: &str) -> Result<Self, String> {
        if value != value.trim() {
            return Err("must not start or end with whitespace".into());
        }
        let value = super::text::parse_exact(value, super::webhook::SECRET_MAX)?;
        if let Some(encoded) = value.strip_prefix(SIGNING_SECRET_PREFIX) {
            let key = STANDARD
                .decode(encoded)
                .map_err(|_| "a whsec_ secret must be whsec_ followed by base64".to_string())?;
            if !WHSEC_KEY_BYTES.contains(&key.len()) {
                return Err(format!(
                    "a whsec_ secret must carry a 24 to 64 byte key, not {} bytes",
                    key.len()
                ));
            }
        }
        Ok(Self(value.to_string()))
    }

    /// A new `whsec_` secret.
    pub fn generate() -> Self {
        Self(generate_signing_secret())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// The HMAC key of a secret: the decoded bytes of a `whsec_` secret, otherwise the secret's own
/// bytes (customers may bring any string, as Talkover's `webhook_secret` allows).
pub fn signing_key(secret: &str) -> Vec<u8> {
    secret
        .strip_prefix(SIGNING_SECRET_PREFIX)
        .and_then(|encoded| STANDARD.decode(encoded).ok())
        .unwrap_or_else(|| secret.as_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_keys_are_unique_prefixed_and_hash_stably() {
        let (a, b) = (generate_api_key(), generate_api_key());
        assert!(a.starts_with(API_KEY_PREFIX));
        assert_ne!(a, b);
        assert_eq!(hash_api_key(&a), hash_api_key(&a));
        assert_ne!(hash_api_key(&a), hash_api_key(&b));
        assert_eq!(api_key_prefix(&a).len(), 10);
    }

    #[test]
    fn customer_secrets_in_the_whsec_form_must_carry_a_real_key() {
        assert!(SigningSecret::parse(&generate_signing_secret()).is_ok());
        assert!(SigningSecret::parse("any string works").is_ok());
        for bad in ["whsec_", "whsec_!!!", "whsec_AAAA", " padded", "nul\0"] {
            assert!(SigningSecret::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn whsec_secrets_decode_to_their_key_and_other_strings_are_used_as_is() {
        let secret = generate_signing_secret();
        assert_eq!(signing_key(&secret).len(), 24);
        assert_eq!(signing_key("plain-secret"), b"plain-secret");
        assert_eq!(signing_key("whsec_***not base64"), b"whsec_***not base64");
    }
}
