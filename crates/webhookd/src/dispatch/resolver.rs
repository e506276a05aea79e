//! DNS resolution that refuses forbidden destinations. The HTTP client connects only to the
//! addresses returned here, so the address checked is the address connected to (no second lookup
//! an attacker's DNS could answer differently). Behind an HTTP egress proxy the client never
//! resolves a destination: `egress.rs` asks [`allowed_addrs`] itself before the proxy is asked.

use std::net::{IpAddr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::domain::destination::forbidden_reason;

/// The resolver of clients with the SSRF guard on.
#[derive(Debug, Default, Clone)]
pub struct GuardedResolver {
    /// The egress proxy's host: an operator's setting, resolved without the rule (a proxy on
    /// loopback or in the private network is the usual case).
    proxy_host: Option<String>,
}

impl GuardedResolver {
    pub fn new(proxy_host: Option<String>) -> Self {
        Self { proxy_host }
    }
}

/// A name whose every address is forbidden.
#[derive(Debug, thiserror::Error)]
#[error("destination refused: {name} resolves to {ip}, a {reason} address")]
pub struct Refused {
    name: String,
    ip: IpAddr,
    reason: &'static str,
}

/// Why a name has no address to connect to.
#[derive(Debug, thiserror::Error)]
pub enum Unresolved {
    #[error(transparent)]
    Refused(#[from] Refused),
    #[error(transparent)]
    Lookup(#[from] std::io::Error),
}

/// The addresses of `host` that may be destinations, or why there are none: the one rule of
/// the resolver and of the check before a proxied request.
pub async fn allowed_addrs(host: &str) -> Result<Vec<SocketAddr>, Unresolved> {
    let found: Vec<SocketAddr> = tokio::net::lookup_host((host, 0)).await?.collect();
    let allowed: Vec<SocketAddr> =
        found.iter().copied().filter(|addr| forbidden_reason(addr.ip()).is_none()).collect();
    match (allowed.is_empty(), found.first()) {
        (true, Some(addr)) => {
            let reason = forbidden_reason(addr.ip()).unwrap_or("forbidden");
            Err(Refused { name: host.to_string(), ip: addr.ip(), reason }.into())
        }
        _ => Ok(allowed),
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let proxy = self.proxy_host.as_deref() == Some(name.as_str());
        Box::pin(async move {
            let host = name.as_str();
            if proxy {
                let found: Vec<SocketAddr> = tokio::net::lookup_host((host, 0)).await?.collect();
                return Ok(Box::new(found.into_iter()) as Addrs);
            }
            let allowed = allowed_addrs(host).await?;
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn names_resolving_to_loopback_are_refused() {
        let name: Name = "localhost".parse().unwrap();
        let error = match GuardedResolver::default().resolve(name).await {
            Err(error) => error.to_string(),
            Ok(_) => panic!("localhost was allowed"),
        };
        assert!(error.contains("destination refused: localhost resolves to"), "{error}");
    }

    #[tokio::test]
    async fn the_proxy_host_alone_may_resolve_to_loopback() {
        let resolver = GuardedResolver::new(Some("localhost".into()));
        let name: Name = "localhost".parse().unwrap();
        assert!(resolver.resolve(name).await.is_ok());
        assert!(allowed_addrs("localhost").await.is_err());
    }
}
