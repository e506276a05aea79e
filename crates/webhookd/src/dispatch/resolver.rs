//! DNS resolution that refuses forbidden destinations. The HTTP client connects only to the
//! addresses returned here, so the address checked is the address connected to (no second lookup
//! an attacker's DNS could answer differently).

use std::net::SocketAddr;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::domain::destination::forbidden_reason;

#[derive(Debug, Default, Clone, Copy)]
pub struct GuardedResolver;

#[derive(Debug, thiserror::Error)]
#[error("destination refused: {name} resolves to {ip}, a {reason} address")]
struct Refused {
    name: String,
    ip: std::net::IpAddr,
    reason: &'static str,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let host = name.as_str().to_string();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = found
                .iter()
                .copied()
                .filter(|addr| forbidden_reason(addr.ip()).is_none())
                .collect();
            if allowed.is_empty() {
                if let Some(addr) = found.first() {
                    let reason = forbidden_reason(addr.ip()).unwrap_or("forbidden");
                    return Err(Box::new(Refused { name: host, ip: addr.ip(), reason }) as _);
                }
            }
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
        let error = match GuardedResolver.resolve(name).await {
            Err(error) => error.to_string(),
            Ok(_) => panic!("localhost was allowed"),
        };
        assert!(error.contains("destination refused: localhost resolves to"), "{error}");
    }
}
