//! The one place that opens upstream sockets: every one carries the bypass mark, so the
//! kernel programs let the gateway's own dials through instead of looping them back.

use std::{io, net::SocketAddr, time::Duration};

use tokio::net::{TcpSocket, TcpStream};

use super::Destination;

#[derive(Debug, Clone)]
pub struct SocketFactory {
    bypass_mark: Option<u32>,
    connect_timeout: Duration,
}

impl SocketFactory {
    /// `bypass_mark` is `None` in explicit mode, where no kernel program needs telling.
    pub fn new(bypass_mark: Option<u32>, connect_timeout: Duration) -> Self {
        Self {
            bypass_mark,
            connect_timeout,
        }
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
        socket.set_nodelay(true)?;
        socket.connect(addr).await
    }
}
