//! Secrets at rest: webhook and organization signing secrets and webhook credentials are stored
//! sealed with AES-256-GCM under the server key (`--secret-key`, or a key file made on first start
//! beside an embedded SQLite database). A stored value reads `enc:v1:<base64(nonce ‖ ciphertext)>`;
//! a value without that prefix is refused (the store seals plaintext left by versions from
//! before sealing when it migrates, see `Store::migrate`).
//!
//! The same server key is the root of the keys that sign the dashboard's portal links: each is
//! derived with HKDF-SHA256 for one purpose, so no derived key can open a sealed secret and every
//! node holding the server key derives the same ones.

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hkdf::Hkdf;
use sha2::Sha256;

const PREFIX: &str = "enc:v1:";
const NONCE_LEN: usize = 12;

pub struct Sealer {
    cipher: Aes256Gcm,
    /// HKDF state extracted from the server key, for [`Sealer::derive_key`].
    derivation: Hkdf<Sha256>,
}

impl Sealer {
    /// A sealer from a base64 key of 32 bytes (`openssl rand -base64 32` makes one).
    pub fn from_base64(key: &str) -> Result<Self, String> {
        let bytes = STANDARD
            .decode(key.trim())
            .map_err(|_| "the secret key must be base64 (openssl rand -base64 32)".to_string())?;
        if bytes.len() != 32 {
            return Err(format!("the secret key must be 32 bytes, not {}", bytes.len()));
        }
        Ok(Self {
            cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&bytes)),
            derivation: Hkdf::<Sha256>::new(Some(b"webhookd derived keys"), &bytes),
        })
    }

    /// A 32-byte key for `purpose` (e.g. `"portal link v1"`), derived from the server key with
    /// HKDF-SHA256: the same on every node that has the same server key, unrelated for another
    /// purpose.
    pub fn derive_key(&self, purpose: &str) -> [u8; 32] {
        let mut key = [0u8; 32];
        // 32 bytes is far below HKDF-SHA256's limit of 255 × 32, so expansion cannot fail.
        self.derivation.expand(purpose.as_bytes(), &mut key).expect("HKDF expands 32 bytes");
        key
    }

    /// A new random key, base64.
    pub fn generate_key() -> String {
        STANDARD.encode(Aes256Gcm::generate_key(OsRng))
    }

    pub fn seal(&self, plaintext: &str) -> String {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        // Encryption with a fresh nonce and a valid key cannot fail.
        let ciphertext =
            self.cipher.encrypt(&nonce, plaintext.as_bytes()).expect("AES-GCM encrypts");
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&ciphertext);
        format!("{PREFIX}{}", STANDARD.encode(sealed))
    }

    /// Whether `stored` is a sealed value (plaintext from before sealing is not).
    pub fn is_sealed(stored: &str) -> bool {
        stored.starts_with(PREFIX)
    }

    /// The plaintext of a stored value; an error when it was sealed under another key or is not
    /// sealed at all.
    pub fn open(&self, stored: &str) -> Result<String, String> {
        let Some(encoded) = stored.strip_prefix(PREFIX) else {
            return Err("a secret is stored unsealed".into());
        };
        let sealed =
            STANDARD.decode(encoded).map_err(|_| "sealed value is not base64".to_string())?;
        if sealed.len() < NONCE_LEN {
            return Err("sealed value is too short".into());
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let plaintext = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), ciphertext)
            .map_err(|_| "cannot open a sealed secret: wrong --secret-key?".to_string())?;
        String::from_utf8(plaintext).map_err(|_| "sealed value is not UTF-8".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_with_the_same_key_only() {
        let sealer = Sealer::from_base64(&Sealer::generate_key()).unwrap();
        let sealed = sealer.seal("whsec_secret");
        assert!(sealed.starts_with(PREFIX));
        assert!(!sealed.contains("whsec_secret"));
        assert_ne!(sealer.seal("whsec_secret"), sealed, "a fresh nonce every time");
        assert_eq!(sealer.open(&sealed).unwrap(), "whsec_secret");
        let other = Sealer::from_base64(&Sealer::generate_key()).unwrap();
        assert!(other.open(&sealed).is_err());
        assert!(sealer.open("legacy-plaintext").is_err());
        assert!(!Sealer::is_sealed("legacy-plaintext") && Sealer::is_sealed(&sealed));
    }

    #[test]
    fn derived_keys_depend_on_the_server_key_and_the_purpose_only() {
        let key = Sealer::generate_key();
        let (one, same) = (Sealer::from_base64(&key).unwrap(), Sealer::from_base64(&key).unwrap());
        assert_eq!(one.derive_key("portal link v1"), same.derive_key("portal link v1"));
        assert_ne!(one.derive_key("portal link v1"), one.derive_key("other purpose"));
        let other = Sealer::from_base64(&Sealer::generate_key()).unwrap();
        assert_ne!(one.derive_key("portal link v1"), other.derive_key("portal link v1"));
    }

    #[test]
    fn keys_must_be_32_bytes_of_base64() {
        assert!(Sealer::from_base64("not base64!").is_err());
        assert!(Sealer::from_base64(&STANDARD.encode([0u8; 16])).is_err());
        assert!(Sealer::from_base64(&STANDARD.encode([7u8; 32])).is_ok());
    }
}
