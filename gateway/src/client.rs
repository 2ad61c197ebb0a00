//! The gateway's own HTTP client. `Upstream`: connections to the upstream MCP server for one
//! client connection, dialed through the socket factory (bypass mark), TLS verified against
//! the name the client asked for, h2 when the server offers it, otherwise a small pool of
//! HTTP/1.1 connections. `own_request`, `get_json`, `exchange_json`: the requests the gateway
//! makes for itself (token keys, approval webhooks, STS).

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::{pki_types::ServerName, ClientConfig};
use tokio::sync::Mutex;

use crate::intercept::{socket_factory::SocketFactory, Destination};

pub use crate::body::{Body, BoxError};

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
    /// The caller's `make` refused to build the request (e.g. it cannot be signed).
    #[error("{0}")]
    Request(#[source] BoxError),
}

/// Why one of the gateway's own requests (token keys, approval webhooks, STS) failed; each
/// message names the URL.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{url}: {source}")]
    Url {
        url: url::Url,
        source: http::uri::InvalidUri,
    },
    #[error("{uri}: no host")]
    NoHost { uri: http::Uri },
    #[error("{uri}: not an http(s) URL")]
    Scheme { uri: http::Uri },
    #[error("{uri}: {source}")]
    ServerName {
        uri: http::Uri,
        source: rustls::pki_types::InvalidDnsNameError,
    },
    /// Plain `http` would let anyone on the path answer for the provider.
    #[error("{uri}: only https (or http on loopback) is used")]
    Plaintext { uri: http::Uri },
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// Reading the answer failed or it exceeded the limit.
    #[error("{uri}: {source}")]
    Body {
        uri: http::Uri,
        source: crate::body::BodyError,
    },
    #[error("{url}: HTTP {status}")]
    Status {
        url: url::Url,
        status: http::StatusCode,
    },
    #[error("{url}: not JSON: {source}")]
    NotJson {
        url: url::Url,
        source: serde_json::Error,
    },
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

    /// Sends a request built by `make` for the connection it goes out on: HTTP/2 (`true`) or
    /// HTTP/1.1, known once connected (see [`shape`]). `make` may refuse (e.g. the request
    /// cannot be signed).
    pub async fn send(
        &self,
        make: impl Fn(bool) -> Result<Request<Body>, BoxError>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let dest = self.target.dest.to_string();
        match self.sender().await? {
            Sender::H2(mut sender) => sender
                .send_request(make(true).map_err(UpstreamError::Request)?)
                .await
                .map_err(|source| UpstreamError::Http { dest, source }),
            Sender::H1(mut sender) => {
                let response = match make(false) {
                    Ok(request) => sender.send_request(request).await,
                    Err(e) => {
                        self.idle_h1.lock().await.push(sender);
                        return Err(UpstreamError::Request(e));
                    }
                };
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
) -> Result<serde_json::Value, ClientError> {
    let (status, body) = exchange_json(url, None, tls, sockets, limit).await?;
    if !status.is_success() {
        return Err(ClientError::Status {
            url: url.clone(),
            status,
        });
    }
    serde_json::from_slice(&body).map_err(|source| ClientError::NotJson {
        url: url.clone(),
        source,
    })
}

/// One small JSON exchange of the gateway's own (GET, or POST of `body`): the status and
/// the answer's bytes (up to `limit`).
pub async fn exchange_json(
    url: &url::Url,
    body: Option<Vec<u8>>,
    tls: Arc<ClientConfig>,
    sockets: &SocketFactory,
    limit: usize,
) -> Result<(http::StatusCode, Bytes), ClientError> {
    let mut req = Request::new(Bytes::from(body.clone().unwrap_or_default()));
    *req.uri_mut() = url.as_str().parse().map_err(|source| ClientError::Url {
        url: url.clone(),
        source,
    })?;
    if body.is_some() {
        *req.method_mut() = http::Method::POST;
        req.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
    }
    req.headers_mut().insert(
        http::header::ACCEPT,
        http::HeaderValue::from_static("application/json"),
    );
    let response = own_request(req, tls, sockets, limit).await?;
    Ok((response.status(), response.into_body()))
}

/// One request of the gateway's own (identity provider, webhook, AWS STS) to the absolute
/// URI in `req`, through the socket factory. Plain `http` only to loopback and link-local
/// addresses (the EC2 instance metadata service).
pub async fn own_request(
    req: Request<Bytes>,
    tls: Arc<ClientConfig>,
    sockets: &SocketFactory,
    limit: usize,
) -> Result<Response<Bytes>, ClientError> {
    let uri = req.uri().clone();
    let host = uri
        .host()
        .ok_or_else(|| ClientError::NoHost { uri: uri.clone() })?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(ClientError::Scheme { uri }),
    };
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let scheme = if https { "https" } else { "http" };
    let tls = if https {
        let name =
            ServerName::try_from(host.clone()).map_err(|source| ClientError::ServerName {
                uri: uri.clone(),
                source,
            })?;
        Some((tls, name))
    } else {
        let local = match host.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V4(a)) => a.is_loopback() || a.is_link_local(),
            Ok(std::net::IpAddr::V6(a)) => {
                a.is_loopback() || a.segments()[..4] == [0xfd00, 0x0ec2, 0, 0]
            }
            Err(_) => host == "localhost",
        };
        if !local {
            return Err(ClientError::Plaintext { uri });
        }
        None
    };
    let dest = Destination::Name(crate::addr::HostPort { host, port });
    let upstream = Upstream::new(UpstreamTarget { dest, tls }, sockets.clone());
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let authority = uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .unwrap_or_default();
    let (parts, payload) = req.into_parts();
    let response = upstream
        .send(|h2| {
            let mut req = Request::new(crate::body::full(payload.clone()));
            *req.method_mut() = parts.method.clone();
            *req.headers_mut() = parts.headers.clone();
            shape(&mut req, h2, scheme, &authority, &path);
            Ok(req)
        })
        .await?;
    let (parts, mut body) = response.into_parts();
    let body = crate::body::read_limited(&mut body, limit)
        .await
        .map_err(|source| ClientError::Body { uri, source })?;
    Ok(Response::from_parts(parts, body))
}

/// Puts a request in the form its connection needs: HTTP/2 takes the full URI and no Host
/// header; HTTP/1.1 the path, with Host set to the authority (servers bound to loopback check
/// Host: the client's is kept).
pub fn shape<B>(req: &mut Request<B>, h2: bool, scheme: &str, authority: &str, path: &str) {
    if h2 {
        *req.version_mut() = http::Version::HTTP_2;
        *req.uri_mut() = format!("{scheme}://{authority}{path}")
            .parse()
            .unwrap_or_default();
        req.headers_mut().remove(http::header::HOST);
    } else {
        *req.version_mut() = http::Version::HTTP_11;
        *req.uri_mut() = path.parse().unwrap_or_default();
        if let Ok(host) = http::HeaderValue::from_str(authority) {
            req.headers_mut().insert(http::header::HOST, host);
        }
    }
}
