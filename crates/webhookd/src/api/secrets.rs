//! How signing secrets are shown by the `/secret` endpoints: the only place they are read back.

use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::clock::{format_ms, now_ms, DAY_MS};
use crate::store::WebhookSecrets;

/// After a rotation the old secret keeps signing (as a second signature) for 24 hours.
pub const SECRET_GRACE_MS: i64 = DAY_MS;

#[derive(Debug, Serialize, ToSchema)]
pub struct SecretView {
    /// The current secret, `whsec_…` unless the customer brought their own.
    signing_secret: String,
    /// Until when the previous secret still signs, if a rotation is in its grace period.
    #[serde(skip_serializing_if = "Option::is_none")]
    previous_secret_expires_at: Option<String>,
}

impl SecretView {
    pub fn of(secrets: &WebhookSecrets) -> Self {
        let in_grace = secrets.previous_expires_at.filter(|expires| *expires > now_ms());
        Self {
            signing_secret: secrets.current.clone(),
            previous_secret_expires_at: in_grace.map(format_ms),
        }
    }
}
