//! Interception: how connections reach the gateway and where they were going.
//!
//! Only this module touches aya and socket options. `ebpf` redirects connects in the kernel;
//! `explicit` serves hosts where BPF is not allowed (clients dial the gateway themselves).

pub mod ebpf;
pub mod explicit;
pub mod socket_factory;
pub mod targets;

use std::{net::SocketAddr, path::PathBuf};

use serde::{Deserialize, Serialize};

pub use crate::addr::{ClientAddr, Destination, ListenAddr};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FailMode {
    /// While the gateway is down, intercepted connects are refused (links stay pinned).
    Closed,
    /// While the gateway is down, intercepted connects go directly to the server.
    Open,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InterceptMode {
    Ebpf,
    Explicit,
}

/// `intercept.udp`: UDP (QUIC) to a target would go around the gateway's TCP path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Udp {
    /// `connect()` and `sendto()` to a target fail with EPERM (clients fall back to TCP).
    #[default]
    Refuse,
    Pass,
}

#[derive(Debug, Clone)]
pub struct InterceptConfig {
    pub mode: InterceptMode,
    /// cgroup v2 path relative to the cgroup2 mount, starting with `/`.
    pub cgroup: String,
    pub bypass_mark: u32,
    pub pin_dir: PathBuf,
    pub dns_refresh: std::time::Duration,
    /// What UDP to a target gets (eBPF mode).
    pub udp: Udp,
}

/// The process that made the connection, as the kernel saw it at `connect()`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProcessInfo {
    pub pid: u32,
    pub uid: u32,
    pub gid: u32,
    pub cgroup_id: u64,
    /// Read from /proc when the connection is accepted; `None` if the process is gone.
    pub exe: Option<PathBuf>,
    pub cgroup: Option<String>,
}

impl ProcessInfo {
    /// Completes the kernel's attribution with what /proc still knows about the process.
    pub fn from_kernel(pid: u32, uid: u32, gid: u32, cgroup_id: u64) -> Self {
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
        let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .ok()
            .and_then(|text| {
                text.lines()
                    .find_map(|l| l.strip_prefix("0::").map(str::to_owned))
            });
        Self {
            pid,
            uid,
            gid,
            cgroup_id,
            exe,
            cgroup,
        }
    }
}

/// An accepted connection's original destination and who made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrigDst {
    pub destination: Destination,
    pub process: Option<ProcessInfo>,
    /// The `[[servers]]` entry, when the source knows it (explicit mode: by listen address).
    pub server: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum InterceptError {
    #[error("no original destination recorded for {client} -> {listen} (not a redirected connection, or the entry was evicted)")]
    UnknownConnection {
        client: SocketAddr,
        listen: SocketAddr,
    },
    #[error("{call}: {source}")]
    Map {
        call: &'static str,
        source: aya::maps::MapError,
    },
    #[error("loading the eBPF programs: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("program {name}: {source}")]
    Program {
        name: &'static str,
        source: aya::programs::ProgramError,
    },
    #[error("link of program {name}: {source}")]
    Link {
        name: &'static str,
        source: aya::programs::links::LinkError,
    },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no cgroup2 file system mounted (looked in /proc/self/mounts)")]
    NoCgroup2,
    #[error("{0} is not a bpf file system; mount one with `mount -t bpf bpf /sys/fs/bpf`")]
    NoBpffs(PathBuf),
    #[error("pinning link {path}: {source}")]
    Pin {
        path: PathBuf,
        source: aya::pin::PinError,
    },
    #[error("explicit mode has no run-time targets: clients dial servers[].listen")]
    NotInterceptable,
}

/// Recovers the original destination of an accepted connection.
pub trait OrigDstSource: Send + Sync {
    fn orig_dst(&self, client: ClientAddr, listen: ListenAddr) -> Result<OrigDst, InterceptError>;
}
