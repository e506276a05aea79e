//! The way out to customer endpoints (SPEC §9): which destinations may be reached (the SSRF
//! rule) and the egress proxy every outbound request goes through.
//!
//! Without a proxy the client's resolver (`resolver.rs`) checks each name on the addresses it
//! connects to. Behind an HTTP or HTTPS proxy the client never resolves a destination (the proxy
//! does), so [`Egress::admit`] resolves it first, by the resolver's own rule, and the request is
//! sent only when every address it found is allowed. Behind SOCKS5 the client resolves the
//! destination through its resolver too, and sends the proxy the address that was checked.

use reqwest::Proxy;
use url::{Host, Url};

use super::resolver::{allowed_addrs, GuardedResolver, Unresolved};
use crate::domain::destination::check_url;
use crate::domain::egress::EgressProxy;

#[derive(Debug, Clone, Default)]
pub struct Egress {
    /// `--allow-private-targets`: any address is a destination, nothing is checked.
    pub allow_private: bool,
    pub proxy: Option<EgressProxy>,
}

impl Egress {
    /// A client builder with the SSRF resolver (unless private targets are allowed) and the
    /// proxy, if any; the caller adds the rest of the shared settings.
    pub fn builder(&self) -> reqwest::Result<reqwest::ClientBuilder> {
        // Proxies from the environment (`HTTPS_PROXY`…) are ignored: only `--egress-proxy`.
        let mut builder = reqwest::Client::builder().no_proxy();
        if !self.allow_private {
            let proxy_host = self.proxy.as_ref().map(EgressProxy::host);
            builder = builder.dns_resolver(std::sync::Arc::new(GuardedResolver::new(proxy_host)));
        }
        if let Some(proxy) = &self.proxy {
            builder = builder.proxy(Proxy::all(proxy.url())?);
        }
        Ok(builder)
    }

    /// `Ok` when a request to `url` may be sent; otherwise why not, as the attempt records it.
    /// `field` names the setting `url` came from (`webhook_url`, `oauth2_token_url`).
    pub async fn admit(&self, url: &str, field: &str) -> Result<(), String> {
        // IP literals never reach a resolver: checked here (URLs saved before the guard was
        // switched on included).
        check_url(url, self.allow_private)
            .map_err(|reason| format!("destination refused: {field} {reason}"))?;
        if self.allow_private || self.proxy.is_none() {
            return Ok(());
        }
        let Some(Host::Domain(name)) =
            Url::parse(url).ok().and_then(|u| u.host().map(|h| h.to_owned()))
        else {
            return Ok(());
        };
        match allowed_addrs(&name).await {
            Ok(_) => Ok(()),
            Err(Unresolved::Refused(refused)) => Err(refused.to_string()),
            Err(Unresolved::Lookup(error)) => {
                Err(format!("connection failed: dns error: {name}: {error}"))
            }
        }
    }
}
