//! Connections to the upstream MCP server for one client connection: dialed through the
//! socket factory (bypass mark), TLS verified against the name the client asked for, h2 when
//! the server offers it, otherwise a small pool of HTTP/1.1 connections.

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::{pki_types::ServerName, ClientConfig};
use tokio::sync::Mutex;

use crate::intercept::{socket_factory::SocketFactory, Destination};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// At most this many idle HTTP/1.1 connections are kept per client connection.
const MAX_IDLE_H1: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot connect to {dest}: {source}")]
    Connect {
        dest: String,
        source: std::io::Error,
    },
    #[error("TLS with {dest} ({name}) failed: {source}")]
    Tls {
        dest: String,
        name: String,
        source: std::io::Error,
    },
    #[error("HTTP with {dest} failed: {source}")]
    Http { dest: String, source: hyper::Error },
}

/// Where and how to reach the upstream.
#[derive(Clone)]
pub struct UpstreamTarget {
    pub dest: Destination,
    /// `None`: plaintext HTTP.
    pub tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
}

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Body>),
    H2(hyper::client::conn::http2::SendRequest<Body>),
}

pub struct Upstream {
    target: UpstreamTarget,
    sockets: SocketFactory,
    h2: Mutex<Option<hyper::client::conn::http2::SendRequest<Body>>>,
    idle_h1: Mutex<Vec<hyper::client::conn::http1::SendRequest<Body>>>,
}

impl Upstream {
    pub fn new(target: UpstreamTarget, sockets: SocketFactory) -> Self {
        Self {
            target,
            sockets,
            h2: Mutex::new(None),
            idle_h1: Mutex::new(Vec::new()),
        }
    }

    /// Whether requests go out as HTTP/2 (needs a full URI) — known once connected.
    pub async fn send(
        &self,
        make: impl Fn(bool) -> Request<Body>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let dest = self.target.dest.to_string();
        match self.sender().await? {
            Sender::H2(mut sender) => sender
                .send_request(make(true))
                .await
                .map_err(|source| UpstreamError::Http { dest, source }),
            Sender::H1(mut sender) => {
                let response = sender.send_request(make(false)).await;
                // Busy until the response body is read; `sender()` checks readiness.
                let mut idle = self.idle_h1.lock().await;
                if idle.len() < MAX_IDLE_H1 {
                    idle.push(sender);
                }
                response.map_err(|source| UpstreamError::Http { dest, source })
            }
        }
    }

    async fn sender(&self) -> Result<Sender, UpstreamError> {
        if let Some(h2) = self.h2.lock().await.as_ref().filter(|s| !s.is_closed()) {
            return Ok(Sender::H2(h2.clone()));
        }
        {
            let mut idle = self.idle_h1.lock().await;
            idle.retain(|s| !s.is_closed());
            if let Some(pos) = idle.iter().position(|s| s.is_ready()) {
                return Ok(Sender::H1(idle.swap_remove(pos)));
            }
        }
        self.connect().await
    }

    async fn connect(&self) -> Result<Sender, UpstreamError> {
        let dest = self.target.dest.to_string();
        let tcp = self
            .sockets
            .connect(&self.target.dest)
            .await
            .map_err(|source| UpstreamError::Connect {
                dest: dest.clone(),
                source,
            })?;
        let Some((config, name)) = &self.target.tls else {
            return self.handshake_h1(TokioIo::new(tcp)).await;
        };
        let tls = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            tokio_rustls::TlsConnector::from(config.clone()).connect(name.clone(), tcp),
        )
        .await
        .unwrap_or_else(|_| {
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "TLS handshake timed out",
            ))
        })
        .map_err(|source| UpstreamError::Tls {
            dest: dest.clone(),
            name: name.to_str().into_owned(),
            source,
        })?;
        if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
            let (sender, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                    .await
                    .map_err(|source| UpstreamError::Http { dest, source })?;
            tokio::spawn(async move {
                if let Err(error) = conn.await {
                    tracing::debug!(%error, "upstream h2 connection ended");
                }
            });
            *self.h2.lock().await = Some(sender.clone());
            Ok(Sender::H2(sender))
        } else {
            self.handshake_h1(TokioIo::new(tls)).await
        }
    }

    async fn handshake_h1<T>(&self, io: TokioIo<T>) -> Result<Sender, UpstreamError>
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|source| UpstreamError::Http {
                dest: self.target.dest.to_string(),
                source,
            })?;
        tokio::spawn(async move {
            if let Err(error) = conn.await {
                tracing::debug!(%error, "upstream connection ended");
            }
        });
        Ok(Sender::H1(sender))
    }
}
