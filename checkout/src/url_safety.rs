//! Which webhook URLs we are willing to call (SSRF protection). A URL must be https, carry no
//! credentials, and every address its host resolves to must be globally routable: no loopback,
//! private, link-local, cloud metadata, CGNAT, documentation, multicast or reserved ranges, in
//! any IPv4 or IPv6 spelling (mapped, NAT64, 6to4, integer and octal forms). The check runs at
//! registration and again before every delivery, and the connection goes to the vetted address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use url::{Host, Url};

/// What the operator allows beyond the rules above.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UrlPolicy {
    /// Local mode only (`ACP_ALLOW_LOOPBACK_WEBHOOKS=1`): loopback targets, over http or https.
    pub allow_loopback: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("the URL could not be parsed: {0}")]
    Unparseable(String),
    #[error("the URL must be longer than nothing and at most 2048 characters")]
    Length,
    #[error("the scheme '{0}' is not allowed; use https")]
    Scheme(String),
    #[error("plain http is not allowed; use https")]
    PlainHttp,
    #[error("URLs with a user name or password are not allowed")]
    Credentials,
    #[error("the URL has no host")]
    NoHost,
    #[error("port 0 is not allowed: no receiver can listen on it")]
    PortZero,
    #[error("the host resolves to {0}, which is not a public address")]
    NotGlobal(IpAddr),
    #[error("the host '{0}' could not be resolved")]
    Unresolvable(String),
}

/// A URL that passed the syntactic checks; its addresses still need [`check_addresses`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookUrl {
    pub url: Url,
    pub host: String,
    pub port: u16,
    /// The host is an IP literal: no resolution needed.
    pub literal: Option<IpAddr>,
}

pub const MAX_URL_LEN: usize = 2048;

pub fn parse_webhook_url(raw: &str, policy: UrlPolicy) -> Result<WebhookUrl, UrlError> {
    if raw.is_empty() || raw.len() > MAX_URL_LEN {
        return Err(UrlError::Length);
    }
    // The WHATWG parser normalizes every IPv4 spelling (2130706433, 0177.0.0.1, 0x7f.1) to
    // dotted decimal, so the literal check below sees the real address.
    let url = Url::parse(raw).map_err(|e| UrlError::Unparseable(e.to_string()))?;
    match url.scheme() {
        "https" | "http" => {}
        other => return Err(UrlError::Scheme(other.to_owned())),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlError::Credentials);
    }
    let literal = match url.host() {
        None => return Err(UrlError::NoHost),
        Some(Host::Ipv4(v4)) => Some(IpAddr::V4(v4)),
        Some(Host::Ipv6(v6)) => Some(IpAddr::V6(v6)),
        Some(Host::Domain(_)) => None,
    };
    let host = url
        .host_str()
        .ok_or(UrlError::NoHost)?
        .trim_matches(['[', ']'])
        .to_owned();
    let port = url.port_or_known_default().ok_or(UrlError::NoHost)?;
    if port == 0 {
        return Err(UrlError::PortZero);
    }
    let checked = WebhookUrl {
        url,
        host,
        port,
        literal,
    };
    if let Some(ip) = literal {
        check_addresses(&checked, &[ip], policy)?;
    } else if checked.url.scheme() == "http" && !(policy.allow_loopback && checked.host == "localhost") {
        return Err(UrlError::PlainHttp);
    }
    Ok(checked)
}

/// Every address the host resolved to must be acceptable; one bad address refuses the URL,
/// since the connection could go to any of them.
pub fn check_addresses(url: &WebhookUrl, addresses: &[IpAddr], policy: UrlPolicy) -> Result<(), UrlError> {
    if addresses.is_empty() {
        return Err(UrlError::Unresolvable(url.host.clone()));
    }
    for ip in addresses {
        if !address_allowed(*ip, policy) {
            return Err(UrlError::NotGlobal(*ip));
        }
        if url.url.scheme() == "http" && !loopback_allowed(*ip, policy) {
            return Err(UrlError::PlainHttp);
        }
    }
    Ok(())
}

/// Whether a webhook may connect to `ip`: a public address, or loopback when the operator
/// allows it.
pub fn address_allowed(ip: IpAddr, policy: UrlPolicy) -> bool {
    is_global(ip) || loopback_allowed(ip, policy)
}

fn loopback_allowed(ip: IpAddr, policy: UrlPolicy) -> bool {
    policy.allow_loopback && canonical(ip).is_loopback()
}

/// An IPv6 address that only wraps an IPv4 one (mapped, compatible, NAT64, 6to4) as that IPv4
/// address; anything else unchanged.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => embedded_v4(v6).map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let o = v6.octets();
    let last32 = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    match s {
        // ::ffff:a.b.c.d (mapped) and ::a.b.c.d (compatible, deprecated)
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some(last32),
        [0, 0, 0, 0, 0, 0, hi, _] if hi != 0 => Some(last32),
        // 64:ff9b::a.b.c.d, the well-known NAT64 prefix
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(last32),
        // 2002:AABB:CCDD::/48, 6to4
        [0x2002, hi, lo, ..] => Some(Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8)),
        _ => None,
    }
}

pub fn is_global(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => is_global_v4(v4),
        IpAddr::V6(v6) => is_global_v6(v6),
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u32) -> bool {
    let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) };
    (u32::from(ip) & mask) == (u32::from(Ipv4Addr::from(net)) & mask)
}

fn is_global_v4(ip: Ipv4Addr) -> bool {
    const NOT_GLOBAL: [([u8; 4], u32); 17] = [
        ([0, 0, 0, 0], 8),       // "this network"
        ([10, 0, 0, 0], 8),      // private
        ([100, 64, 0, 0], 10),   // carrier-grade NAT
        ([127, 0, 0, 0], 8),     // loopback
        ([169, 254, 0, 0], 16),  // link-local, incl. cloud metadata 169.254.169.254
        ([172, 16, 0, 0], 12),   // private
        ([192, 0, 0, 0], 24),    // IETF protocol assignments
        ([192, 0, 2, 0], 24),    // documentation
        ([192, 31, 196, 0], 24), // AS112
        ([192, 52, 193, 0], 24), // AMT
        ([192, 88, 99, 0], 24),  // 6to4 relay anycast
        ([192, 168, 0, 0], 16),  // private
        ([198, 18, 0, 0], 15),   // benchmarking
        ([198, 51, 100, 0], 24), // documentation
        ([203, 0, 113, 0], 24),  // documentation
        ([224, 0, 0, 0], 4),     // multicast
        ([240, 0, 0, 0], 4),     // reserved, incl. broadcast
    ];
    !NOT_GLOBAL.iter().any(|(net, prefix)| in_v4(ip, *net, *prefix))
}

fn is_global_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    let global_unicast = (s[0] & 0xe000) == 0x2000; // 2000::/3
    let documentation = s[0] == 0x2001 && s[1] == 0x0db8; // 2001:db8::/32
    let ietf_special = s[0] == 0x2001 && s[1] < 0x0200; // 2001::/23 (Teredo, benchmarking, ORCHID…)
    let documentation_3fff = s[0] == 0x3fff && s[1] < 0x1000; // 3fff::/20
    global_unicast && !documentation && !ietf_special && !documentation_3fff
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_addresses_are_global() {
        for ip in ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "2a00:1450:4001:82a::200e"] {
            assert!(is_global(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn special_addresses_are_not() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "169.254.169.254",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00:ec2::254",
            "fc00::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::1",
            "2001:db8::1",
            "2001::1",
            "::127.0.0.1",
        ] {
            assert!(!is_global(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn port_zero_is_refused() {
        let policy = UrlPolicy { allow_loopback: true };
        assert_eq!(
            parse_webhook_url("https://hooks.example.com:0/acp", policy),
            Err(UrlError::PortZero)
        );
        assert!(parse_webhook_url("https://hooks.example.com:8443/acp", policy).is_ok());
    }

    #[test]
    fn numeric_ipv4_spellings_are_normalized_then_refused() {
        for raw in [
            "https://2130706433/",
            "https://0177.0.0.1/",
            "https://0x7f.0.0.1/",
            "https://127.1/",
        ] {
            let err = parse_webhook_url(raw, UrlPolicy::default()).unwrap_err();
            assert!(
                matches!(err, UrlError::NotGlobal(ip) if ip.is_loopback()),
                "{raw}: {err:?}"
            );
        }
    }

    #[test]
    fn loopback_is_allowed_only_when_the_operator_says_so() {
        let local = UrlPolicy { allow_loopback: true };
        assert!(parse_webhook_url("http://127.0.0.1:9000/hook", local).is_ok());
        assert!(parse_webhook_url("http://localhost:9000/hook", local).is_ok());
        assert!(parse_webhook_url("http://[::1]:9000/hook", local).is_ok());
        assert!(parse_webhook_url("http://10.0.0.1/hook", local).is_err());
        assert!(parse_webhook_url("http://127.0.0.1:9000/hook", UrlPolicy::default()).is_err());
        assert_eq!(
            parse_webhook_url("http://example.com/hook", local).unwrap_err(),
            UrlError::PlainHttp
        );
    }

    #[test]
    fn a_name_is_checked_through_every_address_it_resolves_to() {
        let url = parse_webhook_url("https://hooks.example.com/in", UrlPolicy::default()).unwrap();
        let public: IpAddr = "93.184.216.34".parse().unwrap();
        let private: IpAddr = "10.0.0.5".parse().unwrap();
        assert!(check_addresses(&url, &[public], UrlPolicy::default()).is_ok());
        assert_eq!(
            check_addresses(&url, &[public, private], UrlPolicy::default()),
            Err(UrlError::NotGlobal(private))
        );
        assert!(matches!(
            check_addresses(&url, &[], UrlPolicy::default()),
            Err(UrlError::Unresolvable(_))
        ));
    }
}
