//! Mutual TLS settings of a webhook (SPEC §9): a client identity (certificate chain and private
//! key, PEM) presented to endpoints that ask for one, and a CA trusted for this endpoint besides
//! the public roots. Both are parsed when given, so an identity that exists has a certificate
//! whose public key matches its private key. Stored sealed as one JSON value (`tls_config`).

use std::sync::Arc;

use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};

use crate::domain::clock::UnixMs;

/// A PEM field longer than this is refused (a chain of a few certificates fits many times).
pub const PEM_MAX: usize = 64 * 1024;

/// A certificate chain and the private key of its first certificate.
#[derive(Debug, PartialEq, Eq)]
pub struct ClientIdentity {
    pub cert_pem: String,
    pub key_pem: String,
    /// The first certificate's subject, e.g. `CN=webhookd, O=Acme`.
    pub subject: String,
    /// The first certificate's `notAfter`.
    pub expires_at: UnixMs,
}

/// One or more CA certificates trusted for one endpoint.
#[derive(Debug, PartialEq, Eq)]
pub struct TrustedCa {
    pub pem: String,
}

/// A webhook's TLS settings; the default presents nothing and trusts the public roots only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    pub client: Option<Arc<ClientIdentity>>,
    pub ca: Option<Arc<TrustedCa>>,
}

/// The stored form (sealed, in `webhooks.tls_config`).
#[derive(Serialize, Deserialize)]
struct Stored {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client_cert: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ca_cert: Option<String>,
}

fn certificates(pem: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    const NOT_PEM: &str = "must be one or more PEM certificates (-----BEGIN CERTIFICATE-----)";
    if pem.len() > PEM_MAX {
        return Err(format!("must be at most {PEM_MAX} bytes"));
    }
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|_| NOT_PEM.to_string())?;
    if certs.is_empty() {
        return Err(NOT_PEM.into());
    }
    for cert in &certs {
        x509_parser::parse_x509_certificate(cert)
            .map_err(|_| "holds a certificate that is not valid X.509".to_string())?;
    }
    Ok(certs)
}

impl ClientIdentity {
    /// The identity, or the problem and the field it is in (`tls_client_cert` or
    /// `tls_client_key`).
    pub fn parse(cert_pem: &str, key_pem: &str) -> Result<Self, (&'static str, String)> {
        let certs = certificates(cert_pem).map_err(|e| ("tls_client_cert", e))?;
        let (_, first) = x509_parser::parse_x509_certificate(&certs[0])
            .map_err(|_| ("tls_client_cert", "is not valid X.509".to_string()))?;
        let subject = first.subject().to_string();
        let expires_at = first.validity().not_after.timestamp() * 1000;
        if key_pem.len() > PEM_MAX {
            return Err(("tls_client_key", format!("must be at most {PEM_MAX} bytes")));
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|_| {
            let why = "must be a PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC)";
            ("tls_client_key", why.to_string())
        })?;
        let signing = rustls::crypto::ring::sign::any_supported_type(&key).map_err(|_| {
            let why = "is not a supported key (RSA, ECDSA P-256/P-384 or Ed25519)";
            ("tls_client_key", why.to_string())
        })?;
        CertifiedKey::new(certs, signing).keys_match().map_err(|_| {
            let why = "does not match tls_client_cert (the first certificate's public key)";
            ("tls_client_key", why.to_string())
        })?;
        Ok(Self {
            cert_pem: cert_pem.to_string(),
            key_pem: key_pem.to_string(),
            subject,
            expires_at,
        })
    }
}

/// How long before its expiry a client certificate is flagged on the dashboard.
pub const EXPIRY_WARNING_MS: UnixMs = 14 * 24 * 3600 * 1000;

impl ClientIdentity {
    /// A warning for the dashboard when the certificate expires within 14 days of `now` (or
    /// has expired): deliveries to endpoints that require it will then fail.
    pub fn expiry_warning(&self, now: UnixMs) -> Option<String> {
        let at = crate::domain::clock::format_ms(self.expires_at);
        if self.expires_at <= now {
            Some(format!("Client certificate {} expired at {at}; replace it", self.subject))
        } else if self.expires_at - now <= EXPIRY_WARNING_MS {
            Some(format!("Client certificate {} expires at {at}; replace it", self.subject))
        } else {
            None
        }
    }
}

impl TrustedCa {
    pub fn parse(pem: &str) -> Result<Self, String> {
        certificates(pem)?;
        Ok(Self { pem: pem.to_string() })
    }
}

impl TlsSettings {
    pub fn is_default(&self) -> bool {
        self.client.is_none() && self.ca.is_none()
    }

    /// The JSON stored (sealed) for these settings; `None` for the default.
    pub fn to_stored(&self) -> Option<String> {
        if self.is_default() {
            return None;
        }
        let stored = Stored {
            client_cert: self.client.as_ref().map(|c| c.cert_pem.clone()),
            client_key: self.client.as_ref().map(|c| c.key_pem.clone()),
            ca_cert: self.ca.as_ref().map(|ca| ca.pem.clone()),
        };
        serde_json::to_string(&stored).ok()
    }

    /// Settings read back from their stored JSON, parsed again (they were valid when saved).
    pub fn from_stored(json: Option<&str>) -> Result<Self, String> {
        let Some(json) = json else { return Ok(Self::default()) };
        let stored: Stored = serde_json::from_str(json).map_err(|e| e.to_string())?;
        let client = match (stored.client_cert, stored.client_key) {
            (Some(cert), Some(key)) => {
                Some(Arc::new(ClientIdentity::parse(&cert, &key).map_err(|(_, e)| e)?))
            }
            _ => None,
        };
        let ca = stored.ca_cert.as_deref().map(TrustedCa::parse).transpose()?.map(Arc::new);
        Ok(Self { client, ca })
    }
}

/// The TLS fields of a create or update request, as given; `Some(None)` is `null` (remove).
#[derive(Debug, Default, Clone, Copy)]
pub struct TlsInput<'a> {
    pub client_cert: Option<Option<&'a str>>,
    pub client_key: Option<&'a str>,
    pub ca_cert: Option<Option<&'a str>>,
}

impl TlsSettings {
    /// `current` with the changes of `input`; `None` with each problem recorded by field. A
    /// certificate and its key are given together (a key never outlives its certificate);
    /// `tls_client_cert: null` removes both.
    pub fn apply(
        current: &TlsSettings,
        input: &TlsInput<'_>,
        errors: &mut crate::domain::validation::FieldErrors,
    ) -> Option<Self> {
        let client = match (input.client_cert, input.client_key) {
            (None, None) => Some(current.client.clone()),
            (Some(None), None) => Some(None),
            (Some(Some(cert)), Some(key)) => match ClientIdentity::parse(cert, key) {
                Ok(identity) => Some(Some(Arc::new(identity))),
                Err((field, message)) => {
                    errors.add(field, message);
                    None
                }
            },
            (Some(Some(_)), None) => {
                errors.add("tls_client_key", "is required with tls_client_cert");
                None
            }
            (_, Some(_)) => {
                errors.add("tls_client_cert", "is required with tls_client_key");
                None
            }
        };
        let ca = match input.ca_cert {
            None => Some(current.ca.clone()),
            Some(None) => Some(None),
            Some(Some(pem)) => {
                errors.check("tls_ca_cert", TrustedCa::parse(pem).map(Arc::new).map(Some))
            }
        };
        Some(Self { client: client?, ca: ca? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(expires_at: UnixMs) -> ClientIdentity {
        let (cert_pem, key_pem) = (String::new(), String::new());
        ClientIdentity { cert_pem, key_pem, subject: "CN=acme".into(), expires_at }
    }

    #[test]
    fn a_certificate_is_flagged_from_14_days_before_it_expires() {
        let now = 1_800_000_000_000;
        assert_eq!(identity(now + EXPIRY_WARNING_MS + 1).expiry_warning(now), None);
        let soon = identity(now + EXPIRY_WARNING_MS).expiry_warning(now).unwrap();
        assert!(soon.starts_with("Client certificate CN=acme expires at"), "{soon}");
        let gone = identity(now - 1).expiry_warning(now).unwrap();
        assert!(gone.contains("expired at"), "{gone}");
    }

    #[test]
    fn pem_that_does_not_parse_names_its_field() {
        let (field, _) = ClientIdentity::parse("junk", "junk").unwrap_err();
        assert_eq!(field, "tls_client_cert");
        assert!(TrustedCa::parse("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
            .is_err());
    }
}
