//! How deliveries leave the network (SPEC §9): the egress proxy every outbound request goes
//! through (`--egress-proxy`), and the source addresses customers are told to allow
//! (`--egress-ips`).

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use url::Url;

/// The shapes `--egress-proxy` takes, for messages.
const PROXY_USAGE: &str = "give http://HOST:PORT, https://HOST:PORT or socks5://HOST:PORT, with \
                           USER:PASSWORD@ before the host if the proxy asks for credentials";

/// A parsed `--egress-proxy`: an HTTP, HTTPS or SOCKS5 proxy, with its credentials if any. Its
/// `Display` leaves the credentials out, so it can be logged.
#[derive(Clone, PartialEq, Eq)]
pub struct EgressProxy {
    url: Url,
}

impl EgressProxy {
    /// The proxy of `value`; the error names the shape to give and never repeats a password.
    pub fn parse(value: &str) -> Result<Self, String> {
        let value = value.trim();
        let shown = without_credentials(value);
        let url =
            Url::parse(value).map_err(|e| format!("{shown} is not a URL ({e}); {PROXY_USAGE}"))?;
        if !matches!(url.scheme(), "http" | "https" | "socks5") {
            return Err(format!("{shown} has the scheme {:?}; {PROXY_USAGE}", url.scheme()));
        }
        if url.host().is_none() {
            return Err(format!("{shown} has no host; {PROXY_USAGE}"));
        }
        if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
            return Err(format!("{shown} has a path, query or fragment; {PROXY_USAGE}"));
        }
        Ok(Self { url })
    }

    /// The whole URL, credentials included: for the HTTP client only.
    pub fn url(&self) -> &str {
        self.url.as_str()
    }

    /// The proxy's host as the HTTP client resolves it (an IPv6 literal without brackets).
    pub fn host(&self) -> String {
        match self.url.host() {
            Some(url::Host::Ipv6(v6)) => v6.to_string(),
            Some(host) => host.to_string(),
            None => String::new(),
        }
    }
}

impl fmt::Display for EgressProxy {
    /// `scheme://host:port`, without credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = self.url.host_str().unwrap_or_default();
        match self.url.port() {
            Some(port) => write!(f, "{}://{host}:{port}", self.url.scheme()),
            None => write!(f, "{}://{host}", self.url.scheme()),
        }
    }
}

impl fmt::Debug for EgressProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EgressProxy({self})")
    }
}

/// `value` with anything between `scheme://` and the last `@` replaced, for messages about a
/// URL that may not even parse.
fn without_credentials(value: &str) -> String {
    let Some((scheme, rest)) = value.split_once("://") else {
        return value.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => value.to_string(),
    }
}

/// A parsed `--egress-ips`: the addresses and CIDR blocks deliveries come from, as customers
/// should allow them. Empty when the operator gave none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EgressIps(Vec<IpNet>);

impl EgressIps {
    /// A comma-separated list of addresses (`203.0.113.7`, `2001:db8::7`) and CIDR blocks
    /// (`203.0.113.0/28`); the error names the item that is neither.
    pub fn parse(value: &str) -> Result<Self, String> {
        let items = value.split(',').map(str::trim).filter(|item| !item.is_empty());
        items.map(parse_block).collect::<Result<Vec<_>, _>>().map(Self)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Each as customers read it: an address alone, a block with its prefix length.
    pub fn to_strings(&self) -> Vec<String> {
        self.0
            .iter()
            .map(|block| {
                if block.prefix_len() == block.max_prefix_len() {
                    block.addr().to_string()
                } else {
                    block.to_string()
                }
            })
            .collect()
    }
}

fn parse_block(item: &str) -> Result<IpNet, String> {
    if let Ok(ip) = item.parse::<IpAddr>() {
        return Ok(IpNet::from(ip));
    }
    let block: IpNet = item.parse().map_err(|_| {
        format!("{item:?} is not an IP address or CIDR block (e.g. 203.0.113.7 or 203.0.113.0/28)")
    })?;
    if block.trunc() != block {
        return Err(format!(
            "{item:?} has bits set past its prefix length; the block is {}",
            block.trunc()
        ));
    }
    Ok(block)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxies_are_http_https_or_socks5_urls_with_a_host() {
        for url in ["http://127.0.0.1:3128", "https://proxy.example.com", "socks5://[::1]:1080/"] {
            assert!(EgressProxy::parse(url).is_ok(), "{url}");
        }
        for (url, expected) in [
            ("ftp://proxy:21", "scheme \"ftp\""),
            ("socks4://proxy:1080", "scheme \"socks4\""),
            ("proxy.example.com:3128", "socks5://HOST:PORT"),
            ("http://proxy:3128/path", "path"),
            ("http://proxy:99999", "not a URL"),
        ] {
            let error = EgressProxy::parse(url).unwrap_err();
            assert!(error.contains(expected), "{url}: {error}");
        }
    }

    #[test]
    fn proxy_credentials_are_used_but_never_shown() {
        let proxy = EgressProxy::parse("http://alice:s3cret@127.0.0.1:3128").unwrap();
        assert_eq!(proxy.url(), "http://alice:s3cret@127.0.0.1:3128/");
        assert_eq!(proxy.to_string(), "http://127.0.0.1:3128");
        assert_eq!(format!("{proxy:?}"), "EgressProxy(http://127.0.0.1:3128)");
        assert_eq!(proxy.host(), "127.0.0.1");
        assert_eq!(EgressProxy::parse("socks5://[::1]:1080").unwrap().host(), "::1");
        for url in
            ["ftp://alice:s3cret@proxy:21", "http://alice:s3cret@proxy:3128/x", "http://a:s3cret@"]
        {
            let error = EgressProxy::parse(url).unwrap_err();
            assert!(!error.contains("s3cret") && !error.contains("alice"), "{error}");
        }
    }

    #[test]
    fn egress_ips_are_addresses_and_blocks_shown_as_written() {
        let ips =
            EgressIps::parse(" 203.0.113.7, 198.51.100.0/28,2001:db8::/48 ,2001:db8::9").unwrap();
        assert_eq!(
            ips.to_strings(),
            ["203.0.113.7", "198.51.100.0/28", "2001:db8::/48", "2001:db8::9"]
        );
        assert!(EgressIps::parse("").unwrap().is_empty());
        let error = EgressIps::parse("203.0.113.7,proxy.example.com").unwrap_err();
        assert!(error.contains("\"proxy.example.com\" is not an IP address"), "{error}");
        let error = EgressIps::parse("203.0.113.7/24").unwrap_err();
        assert!(error.contains("the block is 203.0.113.0/24"), "{error}");
        assert!(EgressIps::parse("10.0.0.0/33").is_err());
    }
}
