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

/// GETs a small JSON document (an identity provider's discovery or keys) through the socket
/// factory, so the gateway's own dial is never intercepted. Plain `http` only for loopback.
pub async fn get_json(
    url: &url::Url,
    tls: Arc<ClientConfig>,
    sockets: &SocketFactory,
    limit: usize,
) -> Result<serde_json::Value, String> {
    let (status, body) = exchange_json(url, None, tls, sockets, limit).await?;
    if !status.is_success() {
        return Err(format!("{url}: HTTP {status}"));
    }
    serde_json::from_slice(&body).map_err(|e| format!("{url}: not JSON: {e}"))
}

/// One small JSON exchange of the gateway's own (GET, or POST of `body`): the status and
/// the answer's bytes (up to `limit`).
pub async fn exchange_json(
    url: &url::Url,
    body: Option<Vec<u8>>,
    tls: Arc<ClientConfig>,
    sockets: &SocketFactory,
    limit: usize,
) -> Result<(http::StatusCode, Bytes), String> {
    use http_body_util::{BodyExt as _, Full, Limited};

    let host = url.host_str().ok_or_else(|| format!("{url}: no host"))?;
    let port = url
        .port_or_known_default()
        .ok_or_else(|| format!("{url}: no port"))?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let tls = match url.scheme() {
        "https" => {
            let name = ServerName::try_from(host.clone()).map_err(|e| format!("{url}: {e}"))?;
            Some((tls, name))
        }
        "http"
            if matches!(url.host(), Some(url::Host::Ipv4(a)) if a.is_loopback())
                || matches!(url.host(), Some(url::Host::Ipv6(a)) if a.is_loopback())
                || host == "localhost" =>
        {
            None
        }
        _ => return Err(format!("{url}: only https (or http on loopback) is used")),
    };
    let dest = Destination::Name(crate::config::HostPort { host, port });
    let upstream = Upstream::new(UpstreamTarget { dest, tls }, sockets.clone());
    let path = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    };
    let authority = match url.port() {
        Some(p) => format!("{}:{p}", url.host_str().unwrap_or_default()),
        None => url.host_str().unwrap_or_default().to_owned(),
    };
    let payload = Bytes::from(body.clone().unwrap_or_default());
    let response = upstream
        .send(|h2| {
            let full = Full::new(payload.clone())
                .map_err(|never| match never {})
                .boxed_unsync();
            let mut req = Request::new(full);
            if body.is_some() {
                *req.method_mut() = http::Method::POST;
                req.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                );
            }
            if h2 {
                *req.version_mut() = http::Version::HTTP_2;
                *req.uri_mut() = url.as_str().parse().unwrap_or_default();
            } else {
                *req.uri_mut() = path.parse().unwrap_or_default();
                if let Ok(h) = http::HeaderValue::from_str(&authority) {
                    req.headers_mut().insert(http::header::HOST, h);
                }
            }
            req.headers_mut().insert(
                http::header::ACCEPT,
                http::HeaderValue::from_static("application/json"),
            );
            req
        })
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let body = Limited::new(response.into_body(), limit)
        .collect()
        .await
        .map_err(|e| format!("{url}: {e}"))?
        .to_bytes();
    Ok((status, body))
}
