//! The HTTP clients that send to customer endpoints: the settings they all share, and the
//! clients of webhooks with mutual TLS settings — built once per webhook and settings (a rustls
//! configuration and a connection pool each) and reused by every attempt, not per request.

use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use super::egress::Egress;
use crate::domain::webhook::TlsSettings;

/// The settings every outbound client shares: the SSRF resolver and the egress proxy
/// (`egress.rs`), no redirects, timeouts.
pub(super) fn client_builder(egress: &Egress) -> reqwest::Result<reqwest::ClientBuilder> {
    Ok(egress
        .builder()?
        .user_agent(concat!("webhookd/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .tcp_nodelay(true)
        .pool_max_idle_per_host(256)
        .pool_idle_timeout(Duration::from_secs(90))
        .connect_timeout(Duration::from_secs(10)))
}

/// Clients of webhooks with TLS settings, by webhook id.
#[derive(Clone)]
pub(super) struct TlsClients {
    egress: Egress,
    built: moka::sync::Cache<Uuid, Arc<(TlsSettings, reqwest::Client)>>,
}

impl TlsClients {
    pub fn new(egress: Egress) -> Self {
        let built = moka::sync::Cache::builder()
            .max_capacity(10_000)
            .time_to_idle(Duration::from_secs(3600))
            .build();
        Self { egress, built }
    }

    /// `webhook`'s client for `tls`: the one built before, unless the settings changed since.
    /// However many attempts ask at once, one of them builds it (the cache's per-key init).
    pub fn client(&self, webhook: Uuid, tls: &TlsSettings) -> Result<reqwest::Client, String> {
        let built = self.built_for(webhook, tls)?;
        if built.0 == *tls {
            return Ok(built.1.clone());
        }
        // Saved since: the old client goes, the next asker builds the new one.
        self.built.invalidate(&webhook);
        Ok(self.built_for(webhook, tls)?.1.clone())
    }

    fn built_for(
        &self,
        webhook: Uuid,
        tls: &TlsSettings,
    ) -> Result<Arc<(TlsSettings, reqwest::Client)>, String> {
        self.built
            .try_get_with(webhook, || self.build(tls).map(|client| Arc::new((tls.clone(), client))))
            .map_err(|error| error.to_string())
    }

    fn build(&self, tls: &TlsSettings) -> Result<reqwest::Client, String> {
        let mut builder = client_builder(&self.egress).map_err(|e| format!("TLS client: {e}"))?;
        if let Some(identity) = &tls.client {
            let pem = format!("{}\n{}", identity.key_pem, identity.cert_pem);
            let identity = reqwest::Identity::from_pem(pem.as_bytes())
                .map_err(|e| format!("tls_client_cert: {e}"))?;
            builder = builder.identity(identity);
        }
        if let Some(ca) = &tls.ca {
            let roots = reqwest::Certificate::from_pem_bundle(ca.pem.as_bytes())
                .map_err(|e| format!("tls_ca_cert: {e}"))?;
            builder = roots.into_iter().fold(builder, |b, root| b.add_root_certificate(root));
        }
        builder.build().map_err(|e| format!("TLS client: {e}"))
    }
}
