//! The caller's address: the TCP peer, or what a trusted proxy says in `X-Forwarded-For`.
//!
//! Throttling counts failures per address, so a forged header must not let an attacker pick a
//! fresh address per request: only entries added by proxies we trust are believed.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use warp::http::HeaderMap;

const FORWARDED_FOR: &str = "x-forwarded-for";

/// Parses one `--trusted-proxies` entry: a CIDR block or a single address.
pub fn parse_trusted_proxy(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map(|net| net.trunc())
        .map_err(|_| format!("`{text}` is neither an IP address nor a CIDR block"))
}

fn is_trusted(address: IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|net| net.contains(&address))
}

/// `::ffff:a.b.c.d` is the IPv4 client seen through a dual-stack socket.
fn canonical(address: IpAddr) -> IpAddr {
    address.to_canonical()
}

/// One `X-Forwarded-For` entry, with or without a port.
fn parse_forwarded(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    entry
        .parse::<IpAddr>()
        .or_else(|_| entry.parse::<SocketAddr>().map(|socket| socket.ip()))
        .or_else(|_| {
            entry
                .strip_prefix('[')
                .and_then(|rest| rest.strip_suffix(']'))
                .ok_or(())
                .and_then(|inner| inner.parse::<IpAddr>().map_err(drop))
        })
        .ok()
        .map(canonical)
}

/// The address the core should count the request against.
///
/// From the right of `X-Forwarded-For`, each trusted hop vouches for the entry before it; the
/// first entry not added by a trusted proxy is the client. An unreadable entry ends the walk at
/// the last hop that could be vouched for.
pub fn client_address(peer: Option<SocketAddr>, headers: &HeaderMap, trusted: &[IpNet]) -> Option<IpAddr> {
    let peer = canonical(peer?.ip());
    if !is_trusted(peer, trusted) {
        return Some(peer);
    }
    let entries: Vec<Option<IpAddr>> = headers
        .get_all(FORWARDED_FOR)
        .iter()
        .flat_map(|value| match value.to_str() {
            Ok(text) => text
                .split(',')
                .filter(|entry| !entry.trim().is_empty())
                .map(parse_forwarded)
                .collect::<Vec<_>>(),
            Err(_) => vec![None],
        })
        .collect();
    let mut client = peer;
    for entry in entries.into_iter().rev() {
        let Some(address) = entry else { break };
        client = address;
        if !is_trusted(address, trusted) {
            break;
        }
    }
    Some(client)
}

#[cfg(test)]
mod tests {
    use warp::http::HeaderValue;

    use super::*;

    fn peer(ip: &str) -> Option<SocketAddr> {
        Some(SocketAddr::new(ip.parse().unwrap(), 40000))
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(FORWARDED_FOR, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    fn trusted(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|t| parse_trusted_proxy(t).unwrap()).collect()
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn parses_proxy_specs() {
        assert_eq!(parse_trusted_proxy("10.0.0.1").unwrap().to_string(), "10.0.0.1/32");
        assert_eq!(parse_trusted_proxy(" 10.1.2.3/8 ").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(parse_trusted_proxy("::1").unwrap().to_string(), "::1/128");
        assert_eq!(parse_trusted_proxy("fd00::/8").unwrap().to_string(), "fd00::/8");
        assert!(parse_trusted_proxy("example.com").is_err());
        assert!(parse_trusted_proxy("10.0.0.0/33").is_err());
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_the_header_says() {
        let t = trusted(&["10.0.0.0/8"]);
        assert_eq!(client_address(peer("198.51.100.9"), &xff(&["1.2.3.4"]), &t), ip("198.51.100.9"));
        assert_eq!(client_address(peer("198.51.100.9"), &xff(&[]), &[]), ip("198.51.100.9"));
        assert_eq!(client_address(None, &xff(&["1.2.3.4"]), &t), None);
    }

    #[test]
    fn trusted_peer_hands_over_to_the_header() {
        let t = trusted(&["10.0.0.0/8", "192.0.2.1"]);
        // Spoofed leftmost entries are ignored: the proxy appended the real client last.
        assert_eq!(client_address(peer("10.0.0.5"), &xff(&["6.6.6.6, 203.0.113.7"]), &t), ip("203.0.113.7"));
        // Chains of trusted proxies are skipped, across several header lines.
        assert_eq!(
            client_address(peer("10.0.0.5"), &xff(&["6.6.6.6, 203.0.113.7", "192.0.2.1, 10.9.9.9"]), &t),
            ip("203.0.113.7")
        );
        // Ports and brackets are tolerated.
        assert_eq!(client_address(peer("10.0.0.5"), &xff(&["203.0.113.7:5555"]), &t), ip("203.0.113.7"));
        assert_eq!(client_address(peer("10.0.0.5"), &xff(&["[2001:db8::1]:443"]), &t), ip("2001:db8::1"));
        assert_eq!(client_address(peer("10.0.0.5"), &xff(&["[2001:db8::2]"]), &t), ip("2001:db8::2"));
        // No header: the proxy itself.
        assert_eq!(client_address(peer("10.0.0.5"), &xff(&[]), &t), ip("10.0.0.5"));
        // Everything trusted: the leftmost.
        assert_eq!(client_address(peer("10.0.0.5"), &xff(&["10.1.1.1, 10.2.2.2"]), &t), ip("10.1.1.1"));
        // Garbage stops the walk at the last vouched-for hop.
        assert_eq!(client_address(peer("10.0.0.5"), &xff(&["203.0.113.7, junk"]), &t), ip("10.0.0.5"));
        assert_eq!(client_address(peer("10.0.0.5"), &xff(&["junk, 10.2.2.2"]), &t), ip("10.2.2.2"));
    }

    #[test]
    fn mapped_ipv4_is_canonical() {
        let t = trusted(&["127.0.0.1"]);
        assert_eq!(
            client_address(peer("::ffff:127.0.0.1"), &xff(&["::ffff:203.0.113.7"]), &t),
            ip("203.0.113.7")
        );
    }
}
