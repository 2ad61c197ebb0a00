//! Map types shared by the eBPF programs (`src/main.rs`) and the gateway in user space.
//!
//! Byte order is documented per field. Addresses are always 16 bytes in network order:
//! IPv6 as is, IPv4 as the v4-mapped form `::ffff:a.b.c.d`, so one key type serves both families.
#![no_std]

/// Size of the connection tables; least-recently-used entries are evicted first.
pub const CONN_TABLE_SIZE: u32 = 65_536;
/// Size of the target table (exact addresses plus wildcard ports).
pub const TARGET_TABLE_SIZE: u32 = 4_096;

/// `AF_INET`, `AF_INET6` as the kernel reports them in `bpf_sock_addr`/`bpf_sock_ops`.
pub const AF_INET: u32 = 2;
pub const AF_INET6: u32 = 10;

/// An intercepted destination. `addr` all zero means "any address with this port".
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TargetKey {
    /// Network order, v4-mapped for IPv4.
    pub addr: [u8; 16],
    /// Host order.
    pub port: u16,
    pub _pad: [u8; 2],
}

impl TargetKey {
    pub const fn new(addr: [u8; 16], port: u16) -> Self {
        Self {
            addr,
            port,
            _pad: [0; 2],
        }
    }

    pub const fn wildcard(port: u16) -> Self {
        Self::new([0; 16], port)
    }

    pub fn is_wildcard(&self) -> bool {
        self.addr == [0; 16]
    }
}

/// Where a redirected connection was going, and which process dialed it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrigDstEntry {
    /// Network order, v4-mapped for IPv4.
    pub addr: [u8; 16],
    /// Host order.
    pub port: u16,
    /// Address family of the client's socket (`AF_INET` or `AF_INET6`).
    pub family: u16,
    /// Process (thread group) id of the caller of `connect()`.
    pub tgid: u32,
    pub uid: u32,
    pub gid: u32,
    /// cgroup v2 id (the inode number of the cgroup directory).
    pub cgroup_id: u64,
}

/// A redirected connection as the gateway sees it after `accept()`: (peer, local).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnKey {
    /// The client's address, network order, v4-mapped for IPv4.
    pub client_addr: [u8; 16],
    /// The gateway's listen address the client was redirected to, same encoding.
    pub gateway_addr: [u8; 16],
    /// Host order.
    pub client_port: u16,
    /// Host order.
    pub gateway_port: u16,
}

/// Run-time settings written by the gateway into the `SETTINGS` array (index 0).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Settings {
    /// Host order; the redirect goes to 127.0.0.1 / ::ffff:127.0.0.1 with this port. 0 = off.
    pub listen_port_v4: u16,
    /// Host order; native IPv6 goes to [::1] with this port. 0 = off.
    pub listen_port_v6: u16,
    /// The gateway's own upstream dials carry this `SO_MARK`. It exempts nothing: the mark can
    /// be set with CAP_NET_RAW or in a namespace the caller owns. Only sockets the gateway
    /// registered in `GATEWAY_SOCKETS` are exempt; marked others are counted.
    pub bypass_mark: u32,
    /// 1: UDP to a target is refused (connect and sendmsg), so QUIC cannot go around the TCP
    /// path; 0: it passes.
    pub refuse_udp: u32,
}

/// Sockets the gateway's own dials may have open at once (an LRU: old cookies age out).
pub const GATEWAY_SOCKETS_SIZE: u32 = 65536;

/// Indexes into the per-CPU `COUNTERS` array.
pub mod counter {
    /// Connects rewritten to the gateway.
    pub const REDIRECTED: u32 = 0;
    /// Connects to a target left alone because the socket carries the bypass mark.
    pub const BYPASSED: u32 = 1;
    /// `sock_ops`/`getpeername` found no entry for a socket that looked redirected.
    pub const LOOKUP_MISSES: u32 = 2;
    /// Internal errors (map full, helper failure); the traffic was let through.
    pub const ERRORS: u32 = 3;
    /// UDP connects and sends to a target refused.
    pub const UDP_REFUSED: u32 = 4;
    /// Sockets with the bypass mark that the gateway did not register (redirected all the same).
    pub const MARK_IGNORED: u32 = 5;
    pub const COUNT: u32 = 6;
    pub const NAMES: [&str; COUNT as usize] = [
        "redirected",
        "bypassed",
        "lookup_misses",
        "errors",
        "udp_refused",
        "mark_ignored",
    ];
}

/// IPv4 address bytes (network order) in the v4-mapped 16-byte form.
pub const fn v4_mapped(octets: [u8; 4]) -> [u8; 16] {
    [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, octets[0], octets[1], octets[2], octets[3],
    ]
}

/// The IPv4 octets if `addr` is v4-mapped.
pub fn as_v4(addr: &[u8; 16]) -> Option<[u8; 4]> {
    if addr[..10] == [0; 10] && addr[10] == 0xff && addr[11] == 0xff {
        Some([addr[12], addr[13], addr[14], addr[15]])
    } else {
        None
    }
}

/// Port of `bpf_sock_addr.user_port`: network order in the low 16 bits.
pub const fn port_from_user_port(user_port: u32) -> u16 {
    u16::from_be(user_port as u16)
}

/// Value to store in `bpf_sock_addr.user_port` for a host-order port.
pub const fn user_port_from_port(port: u16) -> u32 {
    port.to_be() as u32
}

/// Port of `bpf_sock_ops.remote_port`: network order, shifted into the high 16 bits.
pub const fn port_from_sock_ops_remote(remote_port: u32) -> u16 {
    u16::from_be((remote_port >> 16) as u16)
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain #[repr(C)] structs of integers with explicit padding fields.
    #[expect(unsafe_code, reason = "aya::Pod is an unsafe marker trait")]
    unsafe impl aya::Pod for super::TargetKey {}
    #[expect(unsafe_code, reason = "aya::Pod is an unsafe marker trait")]
    unsafe impl aya::Pod for super::OrigDstEntry {}
    #[expect(unsafe_code, reason = "aya::Pod is an unsafe marker trait")]
    unsafe impl aya::Pod for super::ConnKey {}
    #[expect(unsafe_code, reason = "aya::Pod is an unsafe marker trait")]
    unsafe impl aya::Pod for super::Settings {}
}

#[cfg(test)]
mod tests;
