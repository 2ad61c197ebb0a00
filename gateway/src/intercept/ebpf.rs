//! The kernel side from user space: load the programs from gateway-ebpf, attach them to the
//! configured cgroup, keep the TARGETS map current, answer original-destination lookups.
//!
//! fail_mode closed pins the links under `pin_dir`, so they outlive the process and clients
//! keep being sent to the (dead) listener: connection refused, never a silent bypass. A new
//! gateway attaches its own links first and only then removes the pinned ones of its
//! predecessor, so there is no window without interception.

use std::{
    collections::BTreeSet,
    fs::File,
    net::SocketAddr,
    os::fd::AsFd as _,
    path::{Path, PathBuf},
    sync::Mutex,
};

use aya::{
    maps::{Array, HashMap, MapData, PerCpuArray},
    programs::{
        links::{FdLink, PinnedLink},
        CgroupAttachMode, CgroupSockAddr, SockOps,
    },
    Ebpf, EbpfLoader,
};
use gateway_ebpf::{as_v4, counter, ConnKey, OrigDstEntry, Settings, TargetKey};
use serde::Serialize;

use super::{
    ClientAddr, Destination, InterceptError, ListenAddr, OrigDst, OrigDstSource, ProcessInfo,
};
use super::{FailMode, InterceptConfig, Udp};

/// The object file built by gateway/build.rs.
static PROGRAMS_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/gateway-ebpf"));

/// Program names (as in gateway-ebpf), attached in this order.
pub const PROGRAMS: [&str; 7] = [
    "sock_ops",
    "getpeername4",
    "getpeername6",
    "sendmsg4",
    "sendmsg6",
    "connect4",
    "connect6",
];

#[derive(Debug, Clone, Serialize)]
pub struct ProgramView {
    pub name: &'static str,
    pub pinned: bool,
    pub pin: Option<PathBuf>,
}

/// A link we hold: either only by our fd (detached when we exit) or pinned in bpffs.
enum HeldLink {
    Owned(#[expect(dead_code, reason = "held for its Drop, which detaches")] FdLink),
    Pinned(PathBuf),
}

pub struct EbpfInterception {
    targets: Mutex<HashMap<MapData, TargetKey, u8>>,
    orig_by_conn: Mutex<HashMap<MapData, ConnKey, OrigDstEntry>>,
    /// Cookies of the gateway's own sockets: the only ones the programs let through.
    gateway_sockets: Mutex<HashMap<MapData, u64, u8>>,
    counters: PerCpuArray<MapData, u64>,
    links: Vec<(&'static str, HeldLink)>,
    cgroup: String,
    // Keeps the programs loaded and the log ring buffer open for the lifetime of the gateway.
    _ebpf: Ebpf,
}

impl EbpfInterception {
    /// Loads and attaches the programs with `targets` already in their map. Call after the
    /// listeners are bound, so the first redirected connect finds someone listening.
    pub fn start(
        config: &InterceptConfig,
        fail_mode: FailMode,
        listen: &[SocketAddr],
        targets: &BTreeSet<TargetKey>,
    ) -> Result<Self, InterceptError> {
        // Debug lines (one per redirect) are only produced in the kernel when someone reads them.
        let log_level = if tracing::enabled!(target: "gateway_ebpf", tracing::Level::DEBUG) {
            aya_log::Level::Debug
        } else {
            aya_log::Level::Info
        } as u8;
        let mut ebpf = EbpfLoader::new()
            .override_global(aya_log::LEVEL, &log_level, true)
            .load(PROGRAMS_OBJECT)?;
        start_log_forwarding(&mut ebpf);

        let port_of = |want_v4: bool| {
            listen
                .iter()
                .find(|a| a.ip().is_loopback() && a.is_ipv4() == want_v4)
                .map_or(0, |a| a.port())
        };
        let settings = Settings {
            listen_port_v4: port_of(true),
            listen_port_v6: port_of(false),
            bypass_mark: config.bypass_mark,
            refuse_udp: u32::from(config.udp == Udp::Refuse),
        };
        let mut settings_map: Array<_, Settings> = take_map(&mut ebpf, "SETTINGS")?;
        settings_map
            .set(0, settings, 0)
            .map_err(|source| InterceptError::Map {
                call: "SETTINGS set",
                source,
            })?;
        let mut target_map: HashMap<MapData, TargetKey, u8> = take_map(&mut ebpf, "TARGETS")?;
        // The map is complete before anything is attached: the predecessor's links go only
        // once ours redirect every target (no window in which a target goes direct).
        for key in targets {
            target_map
                .insert(key, 1, 0)
                .map_err(|source| InterceptError::Map {
                    call: "TARGETS insert",
                    source,
                })?;
        }
        let targets = target_map;
        let orig_by_conn = take_map(&mut ebpf, "ORIG_BY_CONN")?;
        let gateway_sockets = take_map(&mut ebpf, "GATEWAY_SOCKETS")?;
        let counters = take_map(&mut ebpf, "COUNTERS")?;

        let cgroup_path = cgroup2_mount()?.join(config.cgroup.trim_start_matches('/'));
        let cgroup = File::open(&cgroup_path).map_err(|source| InterceptError::Io {
            what: "opening cgroup",
            path: cgroup_path.clone(),
            source,
        })?;
        let mut attached = Vec::new();
        for name in PROGRAMS {
            attached.push((name, attach(&mut ebpf, name, &cgroup)?));
        }

        // Our links are live: now the predecessor's pinned links can go.
        remove_pinned_links(&config.pin_dir);
        let mut links = Vec::new();
        for (name, link) in attached {
            let held = match fail_mode {
                FailMode::Open => HeldLink::Owned(link),
                FailMode::Closed => {
                    ensure_bpffs(&config.pin_dir)?;
                    let path = config.pin_dir.join(name);
                    link.pin(&path).map_err(|source| InterceptError::Pin {
                        path: path.clone(),
                        source,
                    })?;
                    HeldLink::Pinned(path)
                }
            };
            links.push((name, held));
        }
        tracing::info!(cgroup = %cgroup_path.display(), ?settings, ?fail_mode, "eBPF programs attached");
        Ok(Self {
            targets: Mutex::new(targets),
            orig_by_conn: Mutex::new(orig_by_conn),
            gateway_sockets: Mutex::new(gateway_sockets),
            counters,
            links,
            cgroup: config.cgroup.clone(),
            _ebpf: ebpf,
        })
    }

    /// Makes the kernel's TARGETS map equal to `wanted`.
    pub fn sync_targets(&self, wanted: &BTreeSet<TargetKey>) -> Result<(), InterceptError> {
        let mut map = self.targets.lock().unwrap_or_else(|e| e.into_inner());
        let present: BTreeSet<TargetKey> = map.keys().filter_map(Result::ok).collect();
        for key in wanted.difference(&present) {
            map.insert(key, 1, 0)
                .map_err(|source| InterceptError::Map {
                    call: "TARGETS insert",
                    source,
                })?;
        }
        for key in present.difference(wanted) {
            map.remove(key).map_err(|source| InterceptError::Map {
                call: "TARGETS remove",
                source,
            })?;
        }
        Ok(())
    }

    /// Lets the socket with this cookie (one of the gateway's own, not yet connected) past
    /// the redirect.
    pub fn exempt(&self, cookie: u64) -> std::io::Result<()> {
        self.gateway_sockets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(cookie, 1, 0)
            .map_err(std::io::Error::other)
    }

    /// Kernel counters summed over CPUs, by name.
    pub fn counters(&self) -> Vec<(&'static str, u64)> {
        counter::NAMES
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let total = self
                    .counters
                    .get(&(i as u32), 0)
                    .map(|values| values.iter().sum())
                    .unwrap_or(0);
                (*name, total)
            })
            .collect()
    }

    pub fn programs(&self) -> Vec<ProgramView> {
        self.links
            .iter()
            .map(|(name, held)| ProgramView {
                name,
                pinned: matches!(held, HeldLink::Pinned(_)),
                pin: match held {
                    HeldLink::Pinned(path) => Some(path.clone()),
                    HeldLink::Owned(_) => None,
                },
            })
            .collect()
    }

    pub fn cgroup(&self) -> &str {
        &self.cgroup
    }
}

impl OrigDstSource for EbpfInterception {
    fn orig_dst(&self, client: ClientAddr, listen: ListenAddr) -> Result<OrigDst, InterceptError> {
        let key = conn_key(client.0, listen.0);
        let mut map = self.orig_by_conn.lock().unwrap_or_else(|e| e.into_inner());
        let entry = map
            .get(&key, 0)
            .map_err(|_| InterceptError::UnknownConnection {
                client: client.0,
                listen: listen.0,
            })?;
        // One accept per entry: free the slot now rather than waiting for LRU eviction.
        let _ = map.remove(&key);
        drop(map);
        let ip = match as_v4(&entry.addr) {
            Some(v4) => std::net::IpAddr::from(v4),
            None => std::net::IpAddr::from(entry.addr),
        };
        Ok(OrigDst {
            destination: Destination::Socket(SocketAddr::new(ip, entry.port)),
            process: Some(ProcessInfo::from_kernel(
                entry.tgid,
                entry.uid,
                entry.gid,
                entry.cgroup_id,
            )),
            server: None,
        })
    }
}

/// The key sock_ops wrote for this connection (see gateway-ebpf `ConnKey`).
pub fn conn_key(client: SocketAddr, listen: SocketAddr) -> ConnKey {
    ConnKey {
        client_addr: super::targets::ip_bytes(client.ip()),
        gateway_addr: super::targets::ip_bytes(listen.ip()),
        client_port: client.port(),
        gateway_port: listen.port(),
    }
}

fn take_map<T>(ebpf: &mut Ebpf, name: &'static str) -> Result<T, InterceptError>
where
    T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = ebpf.take_map(name).ok_or(InterceptError::Map {
        call: name,
        source: aya::maps::MapError::InvalidName { name: name.into() },
    })?;
    T::try_from(map).map_err(|source| InterceptError::Map { call: name, source })
}

fn attach(ebpf: &mut Ebpf, name: &'static str, cgroup: &File) -> Result<FdLink, InterceptError> {
    let err = |source| InterceptError::Program { name, source };
    let program = ebpf
        .program_mut(name)
        .ok_or_else(|| err(aya::programs::ProgramError::UnexpectedProgramType))?;
    if name == "sock_ops" {
        let program: &mut SockOps = program.try_into().map_err(err)?;
        program.load().map_err(err)?;
        let id = program
            .attach(cgroup.as_fd(), CgroupAttachMode::Single)
            .map_err(err)?;
        let link = program.take_link(id).map_err(err)?;
        FdLink::try_from(link).map_err(|source| InterceptError::Link { name, source })
    } else {
        let program: &mut CgroupSockAddr = program.try_into().map_err(err)?;
        program.load().map_err(err)?;
        let id = program
            .attach(cgroup.as_fd(), CgroupAttachMode::Single)
            .map_err(err)?;
        let link = program.take_link(id).map_err(err)?;
        FdLink::try_from(link).map_err(|source| InterceptError::Link { name, source })
    }
}

/// Detaches links a previous gateway pinned (several programs on one hook would all run).
fn remove_pinned_links(pin_dir: &Path) {
    for name in PROGRAMS {
        let path = pin_dir.join(name);
        if !path.exists() {
            continue;
        }
        match PinnedLink::from_pin(&path).map(PinnedLink::unpin) {
            // Dropping the last fd of an unpinned link detaches it.
            Ok(Ok(link)) => drop(link),
            Ok(Err(error)) => {
                tracing::warn!(path = %path.display(), %error, "cannot unpin old link")
            }
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "cannot open old pinned link; removing the pin");
                let _ = std::fs::remove_file(&path);
            }
        }
    }
}

/// Removes the pinned links, as `fail_mode = "open"` wants when the gateway stops.
pub fn unpin_all(pin_dir: &Path) {
    remove_pinned_links(pin_dir);
}

/// The mount point of the cgroup2 file system (not always /sys/fs/cgroup: hybrid layouts
/// mount it at /sys/fs/cgroup/unified).
pub fn cgroup2_mount() -> Result<PathBuf, InterceptError> {
    let mounts =
        std::fs::read_to_string("/proc/self/mounts").map_err(|source| InterceptError::Io {
            what: "reading",
            path: "/proc/self/mounts".into(),
            source,
        })?;
    mounts
        .lines()
        .find_map(|line| {
            let mut fields = line.split_whitespace();
            let (_dev, dir, fstype) = (fields.next()?, fields.next()?, fields.next()?);
            (fstype == "cgroup2").then(|| PathBuf::from(dir))
        })
        .ok_or(InterceptError::NoCgroup2)
}

fn ensure_bpffs(pin_dir: &Path) -> Result<(), InterceptError> {
    std::fs::create_dir_all(pin_dir).map_err(|source| InterceptError::Io {
        what: "creating pin directory",
        path: pin_dir.to_owned(),
        source,
    })?;
    let stat = nix::sys::statfs::statfs(pin_dir).map_err(|e| InterceptError::Io {
        what: "statfs",
        path: pin_dir.to_owned(),
        source: e.into(),
    })?;
    if stat.filesystem_type() != nix::sys::statfs::BPF_FS_MAGIC {
        return Err(InterceptError::NoBpffs(pin_dir.to_owned()));
    }
    Ok(())
}

/// Forwards aya-log records from the programs to `log`, which tracing picks up.
fn start_log_forwarding(ebpf: &mut Ebpf) {
    match aya_log::EbpfLogger::init(ebpf) {
        Ok(mut logger) => {
            // The programs log only rare events; polling the ring buffer keeps this free of
            // raw fd registration.
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(std::time::Duration::from_millis(250));
                loop {
                    tick.tick().await;
                    logger.flush();
                }
            });
        }
        Err(error) => tracing::warn!(%error, "eBPF logs unavailable"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conn_key_matches_kernel_encoding() {
        let key = conn_key(
            "127.0.0.1:40000".parse().unwrap(),
            "127.0.0.1:15001".parse().unwrap(),
        );
        assert_eq!(key.client_addr, gateway_ebpf::v4_mapped([127, 0, 0, 1]));
        assert_eq!((key.client_port, key.gateway_port), (40000, 15001));
        let key6 = conn_key(
            "[::1]:40000".parse().unwrap(),
            "[::1]:15001".parse().unwrap(),
        );
        assert_eq!(key6.gateway_addr[15], 1);
        assert_eq!(key6.gateway_addr[..15], [0; 15]);
    }
}
