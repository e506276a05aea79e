//! Which destinations webhookd may connect to. By default none on loopback, private, link-local,
//! unique-local, CGNAT, multicast, reserved or cloud-metadata addresses, whatever their spelling
//! (the URL parser turns `2130706433` and `0x7f.1` into `127.0.0.1`; IPv4 inside IPv6 is unwrapped).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use url::{Host, Url};

/// Why an address may not be a destination, or `None` when it may.
pub fn forbidden_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    let reason = if ip.is_loopback() {
        "loopback"
    } else if ip.is_private() {
        "private"
    } else if ip.is_link_local() {
        "link-local (cloud metadata lives here)"
    } else if a == 100 && (64..128).contains(&b) {
        "shared address space (CGNAT)"
    } else if ip.is_multicast() || ip.is_broadcast() {
        "multicast or broadcast"
    } else if a == 0 || a >= 240 {
        "reserved"
    } else if ip.is_documentation()
        || (a == 192 && b == 0 && c == 0)
        || (a == 198 && (18..20).contains(&b))
    {
        "reserved for documentation, protocols or benchmarking"
    } else {
        return None;
    };
    Some(reason)
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if let Some(embedded) = embedded_ipv4(ip) {
        return embedded.iter().find_map(|v4| forbidden_v4(*v4));
    }
    let segments = ip.segments();
    let reason = if ip.is_loopback() {
        "loopback"
    } else if ip.is_unspecified() {
        "unspecified"
    } else if ip.is_unique_local() {
        "unique-local (private)"
    } else if ip.is_unicast_link_local() || (segments[0] & 0xffc0) == 0xfec0 {
        "link-local"
    } else if ip.is_multicast() {
        "multicast"
    } else if (segments[0] == 0x2001 && segments[1] == 0x0db8) || (segments[0] & 0xfff0) == 0x3ff0 {
        // 2001:db8::/32 and 3fff::/20 (RFC 9637).
        "reserved for documentation"
    } else if segments[0] == 0x2001
        && (segments[1] == 0 // Teredo: tunnels to an IPv4 address it hides
            || (segments[1] == 2 && segments[2] == 0) // benchmarking, 2001:2::/48
            || (segments[1] & 0xfff0) == 0x0010)
    // ORCHID, 2001:10::/28
    {
        "reserved for Teredo, benchmarking or ORCHID"
    } else if segments[..4] == [0x0100, 0, 0, 0] {
        "discard-only (100::/64)"
    } else if segments[4] & 0xfdff == 0 && segments[5] == 0x5efe {
        // An ISATAP interface identifier (::0:5efe:a.b.c.d): the site's ISATAP router forwards
        // to that IPv4 address.
        let octets = ip.octets();
        return forbidden_v4(Ipv4Addr::new(octets[12], octets[13], octets[14], octets[15]));
    } else {
        return None;
    };
    Some(reason)
}

/// The IPv4 addresses an IPv6 address carries to an IPv4 host, when it is one of the transition
/// forms: each reaches that IPv4 address, so each must be allowed as IPv4 would be.
fn embedded_ipv4(ip: Ipv6Addr) -> Option<Vec<Ipv4Addr>> {
    let segments = ip.segments();
    let octets = ip.octets();
    let last32 = Ipv4Addr::new(octets[12], octets[13], octets[14], octets[15]);
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(vec![v4]); // mapped, ::ffff:a.b.c.d
    }
    if segments[..6] == [0, 0, 0, 0, 0xffff, 0] {
        return Some(vec![last32]); // SIIT IPv4-translated, ::ffff:0:a.b.c.d (RFC 7915)
    }
    if segments[..6] == [0; 6] && !ip.is_loopback() && !ip.is_unspecified() {
        return Some(vec![last32]); // compatible, ::a.b.c.d
    }
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some(vec![last32]); // well-known NAT64, 64:ff9b::/96
    }
    if segments[..3] == [0x64, 0xff9b, 1] {
        return Some(local_nat64_ipv4(octets)); // local-use NAT64, 64:ff9b:1::/48 (RFC 8215)
    }
    if segments[0] == 0x2002 {
        return Some(vec![Ipv4Addr::new(octets[2], octets[3], octets[4], octets[5])]);
        // 6to4
    }
    None
}

/// Under the local-use NAT64 prefix the operator picks the prefix length (RFC 6052 §2.2), so the
/// IPv4 address may sit in any of its layouts: the /96 one (the last 32 bits) always counts, and
/// the /48, /56 and /64 ones whenever the address has that layout's zero octets.
fn local_nat64_ipv4(octets: [u8; 16]) -> Vec<Ipv4Addr> {
    // Per prefix length: the octets holding the IPv4 address, and where the zero suffix begins.
    const LAYOUTS: [([usize; 4], usize); 3] =
        [([6, 7, 9, 10], 11), ([7, 9, 10, 11], 12), ([9, 10, 11, 12], 13)];
    let mut candidates = vec![Ipv4Addr::new(octets[12], octets[13], octets[14], octets[15])];
    for (at, suffix) in LAYOUTS {
        if octets[8] == 0 && octets[suffix..].iter().all(|octet| *octet == 0) {
            candidates.push(Ipv4Addr::new(
                octets[at[0]],
                octets[at[1]],
                octets[at[2]],
                octets[at[3]],
            ));
        }
    }
    candidates
}

/// Where webhooks may point: the address rule (`--allow-private-targets`) and this service's own
/// origins, which no webhook may name. A delivery to webhookd's own API would be ingested as a
/// new event and delivered again, in a loop.
#[derive(Debug, Clone, Default)]
pub struct Destinations {
    allow_private: bool,
    /// Scheme, host and port of `--public-url` and of the bound address.
    own: Vec<Origin>,
}

impl Destinations {
    /// No private or loopback address, and no own origin known (tests of other rules).
    pub const STRICT: Destinations = Destinations { allow_private: false, own: Vec::new() };

    /// The rule of a server that permits private addresses or not, and answers at `own_urls`
    /// (its public URL and `http://<bound address>`; URLs that do not parse are left out).
    pub fn new<'a>(allow_private: bool, own_urls: impl IntoIterator<Item = &'a str>) -> Self {
        let own = own_urls
            .into_iter()
            .filter_map(|url| Url::parse(url).ok())
            .filter_map(|url| Origin::of(&url))
            .collect();
        Self { allow_private, own }
    }

    pub fn allow_private(&self) -> bool {
        self.allow_private
    }

    /// `Ok` when `url` (already parsed as an absolute URL) may be a destination as far as its
    /// spelling shows; the message says why not otherwise.
    pub fn check(&self, url: &Url) -> Result<(), String> {
        if let Some(own) = Origin::of(url).filter(|origin| self.own.contains(origin)) {
            return Err(format!(
                "must not point at this webhookd itself ({}://{}:{}): a delivery there would be \
                 ingested as a new event and delivered again, in a loop; use the URL of the \
                 service that should receive the events",
                own.scheme, own.host, own.port
            ));
        }
        check_url(url.as_str(), self.allow_private)
    }
}

/// Scheme, host (lowercase, without a trailing dot) and port (the scheme's default when none is
/// written): two URLs with the same reach the same server.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

impl Origin {
    fn of(url: &Url) -> Option<Self> {
        let host = url.host_str()?.trim_end_matches('.').to_ascii_lowercase();
        let port = url.port_or_known_default()?;
        Some(Self { scheme: url.scheme().to_string(), host, port })
    }
}

/// `Ok` when `url` may be a destination as far as its spelling shows (names are checked when they
/// are resolved); the message says why not otherwise.
pub fn check_url(url: &str, allow_private: bool) -> Result<(), String> {
    match literal_forbidden(url) {
        Some(reason) if !allow_private => Err(format!(
            "must not point to a private or loopback address ({reason}); a server started \
                 with --allow-private-targets permits it"
        )),
        _ => Ok(()),
    }
}

/// For a URL whose host is an IP literal (or `localhost`), why it may not be a destination.
/// Names are checked when they are resolved, at delivery.
pub fn literal_forbidden(url: &str) -> Option<String> {
    let url = Url::parse(url).ok()?;
    let ip = match url.host()? {
        Host::Ipv4(v4) => IpAddr::V4(v4),
        Host::Ipv6(v6) => IpAddr::V6(v6),
        Host::Domain(name) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if name == "localhost" || name.ends_with(".localhost") {
                return Some(format!("{name} is a loopback name"));
            }
            return None;
        }
    };
    forbidden_reason(ip).map(|reason| format!("{ip} is a {reason} address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forbidden(ip: &str) -> bool {
        forbidden_reason(ip.parse().unwrap()).is_some()
    }

    #[test]
    fn private_and_special_ipv4_ranges_are_forbidden() {
        for ip in [
            "127.0.0.1",
            "127.255.0.9",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "224.0.0.1",
            "255.255.255.255",
            "0.0.0.0",
            "0.1.2.3",
            "240.0.0.1",
            "192.0.2.1",
            "198.51.100.7",
            "203.0.113.9",
            "192.0.0.8",
            "198.18.0.1",
        ] {
            assert!(forbidden(ip), "{ip}");
        }
        for ip in
            ["8.8.8.8", "1.1.1.1", "172.32.0.1", "100.128.0.1", "93.184.216.34", "192.169.0.1"]
        {
            assert!(!forbidden(ip), "{ip}");
        }
    }

    #[test]
    fn ipv6_and_ipv4_inside_ipv6_are_checked() {
        for ip in [
            "::1",
            "::",
            "fc00::1",
            "fd00:ec2::254",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
            "2001:db8::1",
        ] {
            assert!(forbidden(ip), "{ip}");
        }
        for ip in ["2606:4700:4700::1111", "::ffff:8.8.8.8", "2002:808:808::"] {
            assert!(!forbidden(ip), "{ip}");
        }
    }

    #[test]
    fn siit_local_nat64_and_isatap_carry_an_ipv4_address_that_is_checked() {
        for ip in [
            // SIIT IPv4-translated addresses, ::ffff:0:a.b.c.d.
            "::ffff:0:127.0.0.1",
            "::ffff:0:a9fe:a9fe",
            "::ffff:0:10.1.2.3",
            // Local-use NAT64, 64:ff9b:1::/48, in the /96 layout and the shorter ones.
            "64:ff9b:1::127.0.0.1",
            "64:ff9b:1::a9fe:a9fe",
            "64:ff9b:1:abcd::10.0.0.1",
            "64:ff9b:1:7f00:0:100::", // /48 layout: 127.0.0.1
            "64:ff9b:1:a9:fe:a9fe::", // /56 layout: 169.254.169.254
            "64:ff9b:1:0:a:0:100:0",  // /64 layout: 10.0.0.1
            // ISATAP interface identifiers.
            "2001:470:1:2:0:5efe:10.0.0.1",
            "2001:470:1:2:200:5efe:169.254.169.254",
            "fe80::5efe:8.8.8.8",
        ] {
            assert!(forbidden(ip), "{ip}");
        }
        for ip in ["::ffff:0:8.8.8.8", "64:ff9b:1::8.8.8.8", "64:ff9b:1:abcd::1.1.1.1"] {
            assert!(!forbidden(ip), "{ip}");
        }
    }

    #[test]
    fn other_special_purpose_ipv6_ranges_are_forbidden() {
        for ip in ["100::1", "2001::1", "2001:2::1", "2001:10::1", "2001:db8::1", "3fff::1"] {
            assert!(forbidden(ip), "{ip}");
        }
        for ip in ["2001:4860:4860::8888", "2a00:1450::1", "100:0:0:1::1"] {
            assert!(!forbidden(ip), "{ip}");
        }
    }

    #[test]
    fn urls_of_this_service_itself_are_refused_in_every_spelling_of_its_origin() {
        let own = Destinations::new(
            true,
            ["https://hooks.example.com", "http://127.0.0.1:8080", "not a url"],
        );
        for url in [
            "https://hooks.example.com/api/v1/agents/x/events",
            "https://HOOKS.example.com:443/",
            "https://hooks.example.com./x",
            "http://127.0.0.1:8080/api/v1/agents/x/events",
            "http://2130706433:8080/",
        ] {
            let error = own.check(&Url::parse(url).unwrap()).unwrap_err();
            assert!(error.contains("this webhookd itself"), "{url}: {error}");
        }
        for url in [
            "http://hooks.example.com/",
            "https://hooks.example.com:8443/",
            "https://api.hooks.example.com/",
            "http://127.0.0.1:8081/",
            "https://127.0.0.1:8080/",
        ] {
            assert_eq!(own.check(&Url::parse(url).unwrap()), Ok(()), "{url}");
        }
        let strict = Destinations::new(false, []);
        assert!(strict.check(&Url::parse("http://127.0.0.1:9/").unwrap()).is_err());
    }

    #[test]
    fn literal_urls_are_refused_in_every_spelling() {
        for url in [
            "http://127.0.0.1/",
            "http://2130706433/",
            "http://0x7f.1/",
            "http://0177.0.0.1/",
            "http://127.1/",
            "http://[::1]:8080/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:0:7f00:1]/",
            "http://[64:ff9b:1::7f00:1]/",
            "http://169.254.169.254/latest/meta-data",
            "https://10.0.0.1/x",
            "http://localhost:9000/",
            "http://LOCALHOST./",
            "http://api.localhost/",
        ] {
            assert!(literal_forbidden(url).is_some(), "{url}");
        }
        for url in ["https://example.com/hook", "http://8.8.8.8/", "https://[2606:4700::1111]/"] {
            assert_eq!(literal_forbidden(url), None, "{url}");
        }
    }
}
