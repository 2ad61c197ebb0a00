//! Accepted connections: recover the original destination and the process, then hand the
//! connection to the MCP data path (`http`) when it is for a `[[servers]]` entry, or relay it
//! byte for byte (run-time targets without a server entry, `non_http = "pass"`). A connection
//! whose destination cannot be established is closed, never forwarded anywhere else.

use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
};

use serde::Serialize;
use tokio::net::{TcpListener, TcpStream};

use crate::{
    http::{Route, ServeError, L7},
    intercept::{
        socket_factory::SocketFactory, targets::TargetTable, ClientAddr, Destination,
        InterceptError, ListenAddr, OrigDstSource,
    },
};

/// How many finished connections `mcpgw status` shows.
const RECENT_CONNECTIONS: usize = 256;

/// Why the gateway closed a connection instead of forwarding it; the message is logged and
/// shown in `mcpgw status` as the connection's outcome.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("local address: {0}")]
    LocalAddr(#[source] std::io::Error),
    /// Where the connection meant to go is unknown: it is never sent anywhere else.
    #[error(transparent)]
    OrigDst(#[from] InterceptError),
    /// The MCP data path gave up on the connection.
    #[error("{0}")]
    Serve(String),
    #[error("upstream {destination}: {source}")]
    Upstream {
        destination: Destination,
        source: std::io::Error,
    },
    #[error("relay: {0}")]
    Relay(#[source] std::io::Error),
}

#[derive(Debug, Clone, Serialize)]
pub struct ConnectionRecord {
    pub client: String,
    pub orig_dst: Option<String>,
    pub pid: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub cgroup_id: Option<u64>,
    pub exe: Option<String>,
    pub cgroup: Option<String>,
    /// The `[[servers]]` entry that handled it; `None`: relayed byte for byte.
    pub server: Option<String>,
    pub outcome: ConnectionOutcome,
    /// Relayed connections only; MCP connections are accounted per message.
    pub bytes_up: Option<u64>,
    pub bytes_down: Option<u64>,
}

/// How a connection ended, as `mcpgw status` shows it: `forwarded`, or `failed: REASON`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ConnectionOutcome {
    /// Still being handled.
    #[default]
    Open,
    Forwarded,
    Failed(String),
}

impl Serialize for ConnectionOutcome {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Open => s.serialize_str(""),
            Self::Forwarded => s.serialize_str("forwarded"),
            Self::Failed(reason) => s.serialize_str(&format!("failed: {reason}")),
        }
    }
}

#[derive(Default)]
pub struct ProxyStats {
    pub accepted: AtomicU64,
    pub forwarded: AtomicU64,
    pub failed: AtomicU64,
    recent: Mutex<VecDeque<ConnectionRecord>>,
}

impl ProxyStats {
    fn remember(&self, record: ConnectionRecord) {
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if recent.len() == RECENT_CONNECTIONS {
            recent.pop_front();
        }
        recent.push_back(record);
    }

    pub fn recent(&self) -> Vec<ConnectionRecord> {
        self.recent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

pub struct Proxy {
    pub orig_dst: Arc<dyn OrigDstSource>,
    pub sockets: SocketFactory,
    pub stats: ProxyStats,
    pub l7: Arc<L7>,
    /// `[[servers]]` by name.
    pub routes: std::collections::HashMap<String, Arc<Route>>,
    pub targets: Arc<Mutex<TargetTable>>,
}

impl Proxy {
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => {
                    let proxy = self.clone();
                    tokio::spawn(async move { proxy.handle(stream, peer).await });
                }
                Err(error) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }

    async fn handle(&self, client: TcpStream, peer: SocketAddr) {
        self.stats.accepted.fetch_add(1, Ordering::Relaxed);
        let mut record = ConnectionRecord {
            client: peer.to_string(),
            orig_dst: None,
            pid: None,
            uid: None,
            gid: None,
            cgroup_id: None,
            exe: None,
            cgroup: None,
            server: None,
            outcome: ConnectionOutcome::Open,
            bytes_up: None,
            bytes_down: None,
        };
        let outcome = self.forward(client, peer, &mut record).await;
        match outcome {
            Ok(()) => {
                self.stats.forwarded.fetch_add(1, Ordering::Relaxed);
                record.outcome = ConnectionOutcome::Forwarded;
                tracing::info!(
                    client = %record.client,
                    orig_dst = record.orig_dst.as_deref().unwrap_or("-"),
                    pid = ?record.pid,
                    uid = ?record.uid,
                    exe = record.exe.as_deref().unwrap_or("-"),
                    server = record.server.as_deref().unwrap_or("-"),
                    up = ?record.bytes_up,
                    down = ?record.bytes_down,
                    "connection closed"
                );
            }
            Err(reason) => {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(client = %record.client, orig_dst = record.orig_dst.as_deref().unwrap_or("-"), %reason, "connection refused by gateway");
                record.outcome = ConnectionOutcome::Failed(reason.to_string());
            }
        }
        self.stats.remember(record);
    }

    async fn forward(
        &self,
        client: TcpStream,
        peer: SocketAddr,
        record: &mut ConnectionRecord,
    ) -> Result<(), ProxyError> {
        let local = client.local_addr().map_err(ProxyError::LocalAddr)?;
        let orig = self
            .orig_dst
            .orig_dst(ClientAddr(peer), ListenAddr(local))?;
        record.orig_dst = Some(orig.destination.to_string());
        if let Some(p) = &orig.process {
            record.pid = Some(p.pid);
            record.uid = Some(p.uid);
            record.gid = Some(p.gid);
            record.cgroup_id = Some(p.cgroup_id);
            record.exe = p.exe.as_ref().map(|e| e.display().to_string());
            record.cgroup = p.cgroup.clone();
        }
        let _ = client.set_nodelay(true);
        let server = orig.server.clone().or_else(|| match &orig.destination {
            Destination::Socket(addr) => self
                .targets
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .server_for(*addr)
                .map(str::to_owned),
            Destination::Name(_) => None,
        });
        record.server = server.clone();
        // Targets added at run time without a server entry are relayed as they are.
        let Some(route) = server.and_then(|s| self.routes.get(&s).cloned()) else {
            return self.relay(client, &orig.destination, record).await;
        };
        match self.l7.clone().serve(client, peer, &orig, route).await {
            Ok(()) => Ok(()),
            Err(ServeError::Failed(reason)) => Err(ProxyError::Serve(reason)),
            Err(ServeError::PassThrough(client, what)) => {
                tracing::info!(client = %peer, orig_dst = %orig.destination, what, "relaying unchecked (servers.non_http = \"pass\")");
                self.relay(client, &orig.destination, record).await
            }
        }
    }

    /// Byte-for-byte relay to the original destination.
    async fn relay(
        &self,
        mut client: TcpStream,
        destination: &Destination,
        record: &mut ConnectionRecord,
    ) -> Result<(), ProxyError> {
        let mut upstream =
            self.sockets
                .connect(destination)
                .await
                .map_err(|source| ProxyError::Upstream {
                    destination: destination.clone(),
                    source,
                })?;
        // copy_bidirectional shuts down each write side when the other side's read ends,
        // which carries a client's half-close through to the server and back.
        match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
            Ok((up, down)) => {
                record.bytes_up = Some(up);
                record.bytes_down = Some(down);
                Ok(())
            }
            // A reset after data flowed is the peer's choice, not a gateway failure.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Ok(()),
            Err(e) => Err(ProxyError::Relay(e)),
        }
    }
}
