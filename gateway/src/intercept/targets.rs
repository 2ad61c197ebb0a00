//! The set of intercepted destinations: `[[servers]].match` entries from the config plus
//! entries added at run time (`mcpgw intercept add`, kept in `state_dir`), with host names
//! resolved to addresses and resolved again every `dns_refresh`.

use std::{
    collections::{BTreeSet, HashMap},
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
};

use gateway_ebpf::{v4_mapped, TargetKey};
use serde::Serialize;

use super::InterceptError;
use crate::addr::{canonical, HostPort, MatchAddr};

#[derive(Debug, Clone, Serialize)]
pub struct TargetView {
    pub entry: String,
    /// `config` (server name) or `runtime`.
    pub source: String,
    pub addresses: Vec<String>,
}

#[derive(Debug)]
pub struct TargetTable {
    /// (entry, server name) from the config; these cannot be removed at run time.
    configured: Vec<(MatchAddr, String)>,
    runtime: BTreeSet<MatchAddr>,
    resolved: HashMap<HostPort, Vec<SocketAddr>>,
    runtime_file: PathBuf,
}

impl TargetTable {
    /// `configured`: each `[[servers]]` match entry with its server's name.
    pub fn new(
        configured: Vec<(MatchAddr, String)>,
        state_dir: &Path,
    ) -> Result<Self, InterceptError> {
        let runtime_file = state_dir.join("targets.json");
        let runtime = match std::fs::read_to_string(&runtime_file) {
            Ok(text) => serde_json::from_str::<Vec<String>>(&text)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
                .and_then(|entries| {
                    entries
                        .iter()
                        .map(|e| {
                            e.parse().map_err(|e: crate::addr::AddrError| {
                                std::io::Error::new(std::io::ErrorKind::InvalidData, e)
                            })
                        })
                        .collect()
                })
                .map_err(|source| InterceptError::Io {
                    what: "reading run-time targets",
                    path: runtime_file.clone(),
                    source,
                })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeSet::new(),
            Err(source) => {
                return Err(InterceptError::Io {
                    what: "reading run-time targets",
                    path: runtime_file,
                    source,
                });
            }
        };
        Ok(Self {
            configured,
            runtime,
            resolved: HashMap::new(),
            runtime_file,
        })
    }

    fn entries(&self) -> impl Iterator<Item = &MatchAddr> {
        self.configured
            .iter()
            .map(|(m, _)| m)
            .chain(self.runtime.iter())
    }

    /// Host names to resolve.
    pub fn hosts(&self) -> Vec<HostPort> {
        let mut hosts: Vec<HostPort> = self
            .entries()
            .filter_map(|m| match m {
                MatchAddr::Host(h) => Some(h.clone()),
                _ => None,
            })
            .collect();
        hosts.sort();
        hosts.dedup();
        hosts
    }

    /// Records a DNS answer. A failed lookup keeps the previous addresses: an outage of the
    /// resolver must not silently stop interception.
    pub fn set_resolved(&mut self, host: HostPort, answer: std::io::Result<Vec<SocketAddr>>) {
        match answer {
            Ok(addrs) => {
                let mut addrs: Vec<SocketAddr> = addrs.into_iter().map(canonical).collect();
                addrs.sort();
                addrs.dedup();
                if self.resolved.get(&host) != Some(&addrs) {
                    tracing::info!(%host, ?addrs, "target resolved");
                }
                self.resolved.insert(host, addrs);
            }
            Err(error) => {
                tracing::warn!(%host, %error, "cannot resolve target; keeping previous addresses");
            }
        }
    }

    fn addresses(&self, m: &MatchAddr) -> Vec<SocketAddr> {
        match m {
            MatchAddr::Socket(a) => vec![*a],
            MatchAddr::Host(h) => self.resolved.get(h).cloned().unwrap_or_default(),
            MatchAddr::AnyAddr(_) => Vec::new(),
        }
    }

    /// What the kernel's TARGETS map should hold.
    pub fn keys(&self) -> BTreeSet<TargetKey> {
        self.entries()
            .flat_map(|m| match m {
                MatchAddr::AnyAddr(port) => vec![TargetKey::wildcard(*port)],
                other => self.addresses(other).into_iter().map(target_key).collect(),
            })
            .collect()
    }

    /// The configured server a connection to `addr` is for.
    pub fn server_for(&self, addr: SocketAddr) -> Option<&str> {
        let addr = canonical(addr);
        let hit = |m: &MatchAddr| match m {
            MatchAddr::Socket(a) => *a == addr,
            MatchAddr::AnyAddr(port) => *port == addr.port(),
            MatchAddr::Host(h) => self
                .resolved
                .get(h)
                .is_some_and(|addrs| addrs.contains(&addr)),
        };
        // Exact entries win over wildcards.
        self.configured
            .iter()
            .find(|(m, _)| !matches!(m, MatchAddr::AnyAddr(_)) && hit(m))
            .or_else(|| self.configured.iter().find(|(m, _)| hit(m)))
            .map(|(_, server)| server.as_str())
    }

    pub fn add(&mut self, entry: MatchAddr) -> Result<bool, InterceptError> {
        if self.entries().any(|m| *m == entry) {
            return Ok(false);
        }
        self.runtime.insert(entry);
        self.persist()?;
        Ok(true)
    }

    /// Removes a run-time entry. Entries from the config stay until the config changes.
    pub fn remove(&mut self, entry: &MatchAddr) -> Result<RemoveOutcome, InterceptError> {
        if self.runtime.remove(entry) {
            self.persist()?;
            Ok(RemoveOutcome::Removed)
        } else if let Some((_, server)) = self.configured.iter().find(|(m, _)| m == entry) {
            Ok(RemoveOutcome::Configured(server.clone()))
        } else {
            Ok(RemoveOutcome::NotFound)
        }
    }

    pub fn view(&self) -> Vec<TargetView> {
        let configured = self
            .configured
            .iter()
            .map(|(m, server)| (m, format!("config:{server}")));
        let runtime = self.runtime.iter().map(|m| (m, "runtime".to_string()));
        configured
            .chain(runtime)
            .map(|(m, source)| TargetView {
                entry: m.to_string(),
                source,
                addresses: match m {
                    MatchAddr::AnyAddr(port) => vec![format!("*:{port}")],
                    other => self
                        .addresses(other)
                        .iter()
                        .map(ToString::to_string)
                        .collect(),
                },
            })
            .collect()
    }

    fn persist(&self) -> Result<(), InterceptError> {
        let entries: Vec<String> = self.runtime.iter().map(ToString::to_string).collect();
        let io = |source| InterceptError::Io {
            what: "saving run-time targets",
            path: self.runtime_file.clone(),
            source,
        };
        // Write then rename, so a crash never leaves a half-written file.
        let tmp = self.runtime_file.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(&entries).map_err(|e| io(e.into()))?;
        std::fs::write(&tmp, text).map_err(io)?;
        std::fs::rename(&tmp, &self.runtime_file).map_err(io)
    }
}

pub enum RemoveOutcome {
    Removed,
    Configured(String),
    NotFound,
}

/// The kernel key for a socket address (IPv4 as v4-mapped).
pub fn target_key(addr: SocketAddr) -> TargetKey {
    TargetKey::new(ip_bytes(addr.ip()), addr.port())
}

pub fn ip_bytes(ip: IpAddr) -> [u8; 16] {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4_mapped(v4.octets()),
        IpAddr::V6(v6) => v6.octets(),
    }
}

#[cfg(test)]
mod tests;
