//! Addresses as the gateway speaks of them: what clients dial (`MatchAddr`, `HostPort`),
//! where a connection meant to go (`Destination`), and the two ends of an accepted connection.

use std::{fmt, net::SocketAddr, str::FromStr};

/// The client's address on an accepted connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub SocketAddr);

/// The gateway's own address on an accepted connection (what the client was sent to).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenAddr(pub SocketAddr);

/// Where the client meant to go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Socket(SocketAddr),
    /// Explicit mode: resolved when dialing.
    Name(HostPort),
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Socket(a) => a.fmt(f),
            Self::Name(h) => h.fmt(f),
        }
    }
}

/// What a client dials that the gateway intercepts.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MatchAddr {
    Socket(SocketAddr),
    /// Resolved by DNS, again every `dns_refresh`.
    Host(HostPort),
    /// `*:PORT`: any address with this port.
    AnyAddr(u16),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for MatchAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Socket(addr) => addr.fmt(f),
            Self::Host(host) => host.fmt(f),
            Self::AnyAddr(port) => write!(f, "*:{port}"),
        }
    }
}

/// Why a `match` entry or an `intercept add` argument is not an address the gateway can
/// intercept; the message quotes what was given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddrError {
    #[error("`{input}` is not HOST:PORT")]
    NotHostPort { input: String },
    #[error("`{input}`: `{port}` is not a port (1-65535)")]
    Port { input: String, port: String },
    #[error("`{input}`: `{host}` is neither an IP address nor a host name")]
    Host { input: String, host: String },
}

impl FromStr for MatchAddr {
    type Err = AddrError;

    fn from_str(s: &str) -> Result<Self, AddrError> {
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return Ok(Self::Socket(canonical(addr)));
        }
        let (host, port) = s
            .rsplit_once(':')
            .ok_or_else(|| AddrError::NotHostPort { input: s.into() })?;
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| AddrError::Port {
                input: s.into(),
                port: port.into(),
            })?;
        if host == "*" {
            return Ok(Self::AnyAddr(port));
        }
        let valid_name = !host.is_empty()
            && host.len() <= 253
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_');
        if !valid_name {
            return Err(AddrError::Host {
                input: s.into(),
                host: host.into(),
            });
        }
        Ok(Self::Host(HostPort {
            host: host.to_ascii_lowercase(),
            port,
        }))
    }
}

impl MatchAddr {
    /// Whether clients may dial this over native IPv6: an IPv6 address, a host name (AAAA
    /// answers) or any address. Such targets need the gateway's `[::1]` listener.
    pub fn may_be_ipv6(&self) -> bool {
        match self {
            Self::Socket(a) => a.is_ipv6(),
            Self::Host(_) | Self::AnyAddr(_) => true,
        }
    }
}

/// IPv4-mapped IPv6 addresses are IPv4: one spelling per destination.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}
