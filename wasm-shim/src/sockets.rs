//! Which sockets a guest may use: nothing unless a rule allows it.
//!
//! Rules apply to WASI preview 2 sockets (`wasi:sockets`); preview 1 modules cannot open
//! sockets at all. Each rule names what it allows (connecting out, listening, UDP), an address
//! range and a port range.

use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::str::FromStr;
use std::sync::Arc;

use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi::WasiCtxBuilder;

/// Why a network range was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NetworkError {
    /// Not an address or `address/prefix`, or the prefix is too long for the address family.
    #[error(
        "invalid network {input:?}: expected an IP address or address/prefix, e.g. 10.0.0.0/8"
    )]
    Invalid {
        /// The refused text (truncated to 100 characters).
        input: String,
    },
}

/// An IP address range in CIDR form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNetwork {
    addr: IpAddr,
    prefix: u8,
}

impl IpNetwork {
    /// All IPv4 addresses; add [`IpNetwork::ANY_V6`] for "anywhere".
    pub const ANY_V4: Self = Self {
        addr: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        prefix: 0,
    };
    /// All IPv6 addresses.
    pub const ANY_V6: Self = Self {
        addr: IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        prefix: 0,
    };

    /// The range of `addr` with the first `prefix` bits fixed; `None` if `prefix` is too long.
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Self> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Self { addr, prefix })
    }

    /// Whether `ip` is in the range (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            IpAddr::V4(_) => ip,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => prefix_matches(
                u128::from(u32::from(net)) << 96,
                u128::from(u32::from(ip)) << 96,
                self.prefix,
            ),
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_matches(u128::from(net), u128::from(ip), self.prefix)
            }
            _ => false,
        }
    }
}

fn prefix_matches(net: u128, ip: u128, prefix: u8) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
    net & mask == ip & mask
}

impl FromStr for IpNetwork {
    type Err = NetworkError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let invalid = || NetworkError::Invalid {
            input: input.chars().take(100).collect(),
        };
        let (addr, prefix) = match input.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (input, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| invalid())?;
        let prefix = match prefix {
            Some(text) => text.parse::<u8>().map_err(|_| invalid())?,
            None if addr.is_ipv4() => 32,
            None => 128,
        };
        Self::new(addr, prefix).ok_or_else(invalid)
    }
}

/// What a [`SocketRule`] allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketAction {
    /// TCP connections to the matching remote addresses.
    Connect,
    /// TCP listening on the matching local addresses (accepting from anyone).
    Listen,
    /// UDP: binding the matching local addresses and exchanging datagrams with matching peers.
    Udp,
}

/// One allowed use of the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketRule {
    /// What is allowed.
    pub action: SocketAction,
    /// Addresses it applies to.
    pub network: IpNetwork,
    /// Ports it applies to.
    pub ports: RangeInclusive<u16>,
}

impl SocketRule {
    fn matches(&self, action: SocketAction, addr: SocketAddr) -> bool {
        self.action == action
            && self.network.contains(addr.ip())
            && self.ports.contains(&addr.port())
    }
}

/// The sockets one guest may use. The default allows nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SocketPolicy {
    /// Allowed uses; empty means no networking.
    pub rules: Vec<SocketRule>,
    /// Whether the guest may resolve host names (`wasi:sockets/ip-name-lookup`).
    pub name_lookup: bool,
}

impl SocketPolicy {
    fn any(&self, action: SocketAction) -> bool {
        self.rules.iter().any(|rule| rule.action == action)
    }

    fn matches(&self, action: SocketAction, addr: SocketAddr) -> bool {
        self.rules.iter().any(|rule| rule.matches(action, addr))
    }

    /// Whether a guest may use `addr` the way `usage` says.
    pub fn allows(&self, addr: SocketAddr, usage: SocketAddrUse) -> bool {
        // Binding the wildcard address to port 0 is what the OS does implicitly before a
        // connect or send; the connect or send itself is checked separately.
        let implicit_bind = addr.ip().is_unspecified() && addr.port() == 0;
        match usage {
            SocketAddrUse::TcpConnect => self.matches(SocketAction::Connect, addr),
            SocketAddrUse::TcpBind => {
                (implicit_bind && self.any(SocketAction::Connect))
                    || self.matches(SocketAction::Listen, addr)
            }
            SocketAddrUse::TcpListen => self.matches(SocketAction::Listen, addr),
            // The listener was allowed; who may connect to it is the network's business.
            SocketAddrUse::TcpAccept => self.any(SocketAction::Listen),
            SocketAddrUse::UdpBind => {
                (implicit_bind && self.any(SocketAction::Udp))
                    || self.matches(SocketAction::Udp, addr)
            }
            SocketAddrUse::UdpSend | SocketAddrUse::UdpReceive => {
                self.matches(SocketAction::Udp, addr)
            }
        }
    }

    /// Configures `builder` to enforce this policy.
    pub(crate) fn apply(&self, builder: &mut WasiCtxBuilder) {
        builder.allow_tcp(self.any(SocketAction::Connect) || self.any(SocketAction::Listen));
        builder.allow_udp(self.any(SocketAction::Udp));
        builder.allow_ip_name_lookup(self.name_lookup);
        let policy = Arc::new(self.clone());
        builder.socket_addr_check(move |addr, usage| {
            let allowed = policy.allows(addr, usage);
            Box::pin(async move { allowed })
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().expect("socket address")
    }

    fn rule(action: SocketAction, network: &str, ports: RangeInclusive<u16>) -> SocketRule {
        SocketRule {
            action,
            network: network.parse().expect("network"),
            ports,
        }
    }

    #[test]
    fn networks_parse_and_match() {
        let net: IpNetwork = "10.1.0.0/16".parse().expect("v4");
        assert!(net.contains("10.1.200.3".parse().expect("ip")));
        assert!(!net.contains("10.2.0.1".parse().expect("ip")));
        assert!(net.contains("::ffff:10.1.0.9".parse().expect("mapped")));
        let host: IpNetwork = "fd00::1".parse().expect("v6");
        assert!(host.contains("fd00::1".parse().expect("ip")));
        assert!(!host.contains("fd00::2".parse().expect("ip")));
        assert!(IpNetwork::ANY_V4.contains("203.0.113.9".parse().expect("ip")));
        assert!(!IpNetwork::ANY_V4.contains("::1".parse().expect("ip")));
        assert!(IpNetwork::ANY_V6.contains("::1".parse().expect("ip")));
    }

    #[test]
    fn malformed_networks_are_refused() {
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "10.0.0.0/",
            "10.0.0.0/-1",
            "host",
        ] {
            assert!(bad.parse::<IpNetwork>().is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn the_default_policy_allows_nothing() {
        let policy = SocketPolicy::default();
        for usage in [
            SocketAddrUse::TcpConnect,
            SocketAddrUse::TcpBind,
            SocketAddrUse::TcpListen,
            SocketAddrUse::TcpAccept,
            SocketAddrUse::UdpBind,
            SocketAddrUse::UdpSend,
            SocketAddrUse::UdpReceive,
        ] {
            assert!(!policy.allows(addr("0.0.0.0:0"), usage), "{usage:?}");
            assert!(!policy.allows(addr("127.0.0.1:80"), usage), "{usage:?}");
        }
    }

    #[test]
    fn connect_rules_allow_only_their_addresses_and_ports() {
        let policy = SocketPolicy {
            rules: vec![rule(SocketAction::Connect, "10.0.0.0/8", 5432..=5432)],
            name_lookup: false,
        };
        assert!(policy.allows(addr("10.3.2.1:5432"), SocketAddrUse::TcpConnect));
        assert!(!policy.allows(addr("10.3.2.1:5433"), SocketAddrUse::TcpConnect));
        assert!(!policy.allows(addr("192.168.1.1:5432"), SocketAddrUse::TcpConnect));
        // The implicit bind before connecting is fine; binding a chosen port is not.
        assert!(policy.allows(addr("0.0.0.0:0"), SocketAddrUse::TcpBind));
        assert!(!policy.allows(addr("0.0.0.0:8080"), SocketAddrUse::TcpBind));
        assert!(!policy.allows(addr("0.0.0.0:8080"), SocketAddrUse::TcpListen));
        assert!(!policy.allows(addr("10.3.2.1:5432"), SocketAddrUse::UdpSend));
    }

    #[test]
    fn listen_rules_allow_binding_listening_and_accepting() {
        let policy = SocketPolicy {
            rules: vec![rule(SocketAction::Listen, "0.0.0.0/32", 8080..=8081)],
            name_lookup: false,
        };
        assert!(policy.allows(addr("0.0.0.0:8080"), SocketAddrUse::TcpBind));
        assert!(policy.allows(addr("0.0.0.0:8081"), SocketAddrUse::TcpListen));
        assert!(policy.allows(addr("198.51.100.7:40000"), SocketAddrUse::TcpAccept));
        assert!(!policy.allows(addr("0.0.0.0:22"), SocketAddrUse::TcpListen));
        assert!(!policy.allows(addr("10.0.0.1:8080"), SocketAddrUse::TcpConnect));
    }

    #[test]
    fn udp_rules_cover_bind_send_and_receive() {
        let policy = SocketPolicy {
            rules: vec![rule(SocketAction::Udp, "127.0.0.0/8", 53..=53)],
            name_lookup: true,
        };
        assert!(policy.allows(addr("0.0.0.0:0"), SocketAddrUse::UdpBind));
        assert!(policy.allows(addr("127.0.0.53:53"), SocketAddrUse::UdpSend));
        assert!(policy.allows(addr("127.0.0.53:53"), SocketAddrUse::UdpReceive));
        assert!(!policy.allows(addr("8.8.8.8:53"), SocketAddrUse::UdpSend));
        assert!(!policy.allows(addr("127.0.0.53:53"), SocketAddrUse::TcpConnect));
    }
}
