//! `forward.allow`: who may ask `/forward` (and `/healthz`, `/metrics`): `/forward` is unauthenticated and its
//! answers name clients, so beyond loopback the admin lists the client addresses
//! (`forward.allow`: addresses or networks such as `10.0.0.0/24`). The host itself is always
//! allowed: it is where the dialplan asks from.

use std::net::{IpAddr, SocketAddr};

/// The addresses and networks `forward.allow` lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    networks: Vec<(IpAddr, u8)>,
}

impl AllowList {
    /// Parses `entries` (`"192.0.2.7"`, `"10.0.0.0/24"`, `"2001:db8::/32"`); `Err` names the bad one.
    pub fn parse(entries: &[String]) -> Result<AllowList, String> {
        let mut networks = Vec::with_capacity(entries.len());
        for entry in entries {
            let (address, prefix) = match entry.trim().split_once('/') {
                Some((address, prefix)) => (address, Some(prefix)),
                None => (entry.trim(), None),
            };
            let address: IpAddr = address.parse().map_err(|_| {
                format!("{entry:?} is not an address, expected an IP or a network such as \"10.0.0.0/24\"")
            })?;
            let width = if address.is_ipv4() { 32 } else { 128 };
            let prefix = match prefix {
                None => width,
                Some(prefix) => prefix
                    .parse::<u8>()
                    .ok()
                    .filter(|prefix| *prefix <= width)
                    .ok_or_else(|| format!("{entry:?} has no valid prefix length, expected /0 to /{width}"))?,
            };
            networks.push((address, prefix));
        }
        Ok(AllowList { networks })
    }

    /// No list: everyone who can reach the listener may ask.
    pub(crate) fn is_open(&self) -> bool {
        self.networks.is_empty()
    }

    /// Whether `peer` may ask: loopback always, else when a listed network holds it.
    pub(crate) fn allows(&self, peer: IpAddr) -> bool {
        let peer = match peer {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer, IpAddr::V4),
            v4 => v4,
        };
        self.is_open()
            || peer.is_loopback()
            || self.networks.iter().any(|(network, prefix)| contains(*network, *prefix, peer))
    }
}

fn contains(network: IpAddr, prefix: u8, peer: IpAddr) -> bool {
    match (network, peer) {
        (IpAddr::V4(network), IpAddr::V4(peer)) => {
            let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(prefix)) };
            u32::from(network) & mask == u32::from(peer) & mask
        }
        (IpAddr::V6(network), IpAddr::V6(peer)) => {
            let mask = if prefix == 0 { 0 } else { u128::MAX << (128 - u32::from(prefix)) };
            u128::from(network) & mask == u128::from(peer) & mask
        }
        _ => false,
    }
}

/// Why `listen` with `allow` is a risk: reachable beyond the host, and nobody's address
/// checked. `None` when it is fine.
pub(crate) fn exposure_warning(listen: &str, allow: &AllowList) -> Option<String> {
    let address: SocketAddr = listen.parse().ok()?;
    (!address.ip().is_loopback() && allow.is_open()).then(|| {
        format!(
            "[forward] listen {address} is reachable beyond this host and /forward is unauthenticated: anyone who \
             reaches it learns which manager each phone number belongs to; list the PBXes that may ask in \
             forward.allow (e.g. allow = [\"10.0.0.5\"]) or listen on 127.0.0.1"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> AllowList {
        AllowList::parse(&entries.iter().map(|entry| entry.to_string()).collect::<Vec<_>>()).expect("valid")
    }

    #[test]
    fn addresses_and_networks_are_matched_and_loopback_is_always_in() {
        let allow = list(&["10.0.0.0/24", "192.0.2.7", "2001:db8::/32"]);
        let ip = |text: &str| text.parse::<IpAddr>().expect("ip");
        assert!(allow.allows(ip("10.0.0.200")));
        assert!(!allow.allows(ip("10.0.1.1")));
        assert!(allow.allows(ip("192.0.2.7")) && !allow.allows(ip("192.0.2.8")));
        assert!(allow.allows(ip("2001:db8:1::5")) && !allow.allows(ip("2001:db9::1")));
        assert!(allow.allows(ip("::ffff:10.0.0.3")), "IPv4 seen through an IPv6 socket");
        assert!(allow.allows(ip("127.0.0.1")) && allow.allows(ip("::1")));
        assert!(list(&[]).allows(ip("203.0.113.9")), "no list: open");
        assert!(AllowList::parse(&["10.0.0.0/33".into()]).is_err());
        assert!(AllowList::parse(&["pbx.example".into()]).is_err());
    }

    #[test]
    fn only_an_open_listener_beyond_loopback_is_a_risk() {
        assert!(exposure_warning("0.0.0.0:8077", &list(&[])).is_some());
        assert!(exposure_warning("0.0.0.0:8077", &list(&["10.0.0.5"])).is_none());
        assert!(exposure_warning("127.0.0.1:8077", &list(&[])).is_none());
    }
}
