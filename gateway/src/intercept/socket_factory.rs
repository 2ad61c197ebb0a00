//! The one place that opens upstream sockets: each is registered with the kernel programs
//! (by its cookie) before it connects, so they let the gateway's own dials through instead
//! of looping them back; each also carries the bypass mark, for operators' routing rules.

use std::{io, net::SocketAddr, sync::Arc, time::Duration};

use tokio::net::{TcpSocket, TcpStream};

use super::Destination;

/// Where the gateway registers its own sockets before they connect (the eBPF programs).
pub trait Exemptions: Send + Sync {
    fn exempt(&self, cookie: u64) -> io::Result<()>;
}

impl Exemptions for super::ebpf::EbpfInterception {
    fn exempt(&self, cookie: u64) -> io::Result<()> {
        super::ebpf::EbpfInterception::exempt(self, cookie)
    }
}

#[derive(Clone)]
pub struct SocketFactory {
    bypass_mark: Option<u32>,
    connect_timeout: Duration,
    exemptions: Option<Arc<dyn Exemptions>>,
}

impl std::fmt::Debug for SocketFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketFactory")
            .field("bypass_mark", &self.bypass_mark)
            .field("connect_timeout", &self.connect_timeout)
            .field("exempts", &self.exemptions.is_some())
            .finish()
    }
}

impl SocketFactory {
    /// `bypass_mark` is `None` in explicit mode, where no kernel program needs telling.
    pub fn new(bypass_mark: Option<u32>, connect_timeout: Duration) -> Self {
        Self {
            bypass_mark,
            connect_timeout,
            exemptions: None,
        }
    }

    /// Registers every socket with `exemptions` before it connects (eBPF mode).
    pub fn with_exemptions(mut self, exemptions: Arc<dyn Exemptions>) -> Self {
        self.exemptions = Some(exemptions);
        self
    }

    pub async fn connect(&self, destination: &Destination) -> io::Result<TcpStream> {
        let addrs: Vec<SocketAddr> = match destination {
            Destination::Socket(addr) => vec![*addr],
            Destination::Name(hp) => tokio::net::lookup_host((hp.host.as_str(), hp.port))
                .await?
                .collect(),
        };
        let mut last_error = io::Error::new(
            io::ErrorKind::NotFound,
            format!("{destination}: no address"),
        );
        for addr in addrs {
            match tokio::time::timeout(self.connect_timeout, self.connect_addr(addr)).await {
                Ok(Ok(stream)) => return Ok(stream),
                Ok(Err(e)) => last_error = e,
                Err(_) => {
                    last_error = io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("connect to {addr} timed out"),
                    )
                }
            }
        }
        Err(last_error)
    }

    async fn connect_addr(&self, addr: SocketAddr) -> io::Result<TcpStream> {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        if let Some(mark) = self.bypass_mark {
            socket2::SockRef::from(&socket).set_mark(mark)?;
        }
        if let Some(exemptions) = &self.exemptions {
            // Unregistered, the connect would be redirected back into the gateway.
            exemptions.exempt(socket2::SockRef::from(&socket).cookie()?)?;
        }
        socket.set_nodelay(true)?;
        socket.connect(addr).await
    }
}
