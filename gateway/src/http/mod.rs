//! The MCP-aware data path: TLS termination with a leaf for the name the client dialed,
//! HTTP/1.1 and h2 with hyper, and MCP Streamable HTTP / legacy HTTP+SSE: every JSON-RPC
//! message in either direction passes the interceptor chain before it is forwarded.
//! Request bodies are read up to `max_body`; event streams are forwarded event by event.
//!
//! One connection, in the order a request meets them: `mod.rs` sniffs the first bytes,
//! terminates TLS and serves HTTP; `conn` authenticates each request (identity, static keys,
//! protected-resource metadata); `post` runs a POST's messages through the chain; `hold`
//! waits for approvers when the chain holds a call; `forward` signs (AWS) and sends upstream;
//! `response` runs the answer (JSON or event stream) back through the chain; `body` holds the
//! header and body helpers they share.

mod body;
mod conn;
mod forward;
mod hold;
mod owners;
mod post;
mod response;

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpStream,
};

use self::conn::Conn;
use crate::client::{Upstream, UpstreamTarget};
use crate::{
    config::{NonHttp, ServerConfig, TlsMode},
    creds::static_keys::StaticKeys,
    identity::Identity,
    intercept::{socket_factory::SocketFactory, Destination, OrigDst},
    mcp::{interceptor::Session, Chain},
    tls::HostCa,
};

/// How long a client may take to send its first bytes (TLS ClientHello or HTTP request).
const FIRST_BYTES_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the rest of the TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request's headers may take, and an HTTP/2 client to answer a ping. Longer than
/// client pools keep idle connections (httpx 5 s, undici 4 s), as hyper may count idle time.
const HEADER_TIMEOUT: Duration = Duration::from_secs(20);

/// A `[[servers]]` entry ready for the data path.
pub struct Route {
    pub name: String,
    pub tls: TlsMode,
    pub upstream: Option<crate::addr::HostPort>,
    pub upstream_tls: Arc<rustls::ClientConfig>,
    /// The upstream's scheme, when it names one: `Some(true)` TLS, `Some(false)` cleartext.
    pub upstream_scheme_tls: Option<bool>,
    pub non_http: NonHttp,
    pub forward_token: bool,
    pub aws: Option<crate::creds::AwsServer>,
    pub static_keys: StaticKeys,
}

impl Route {
    pub fn new(server: &ServerConfig) -> Result<Self, crate::tls::TlsError> {
        if server.tls_skip_verify {
            tracing::warn!(server = %server.name, "upstream certificate verification is OFF (tls_skip_verify)");
        }
        Ok(Self {
            name: server.name.clone(),
            tls: server.tls,
            upstream: server.upstream.clone(),
            upstream_scheme_tls: server.upstream_tls,
            upstream_tls: crate::tls::client_config(
                server.ca_file.as_deref(),
                server.tls_skip_verify,
            )?,
            non_http: server.non_http,
            forward_token: server.forward_token,
            aws: server.aws.clone(),
            static_keys: server.static_keys,
        })
    }
}

/// What the data path calls besides the bytes: one seam, built by the daemon. Identity,
/// approvals and credentials act on the exchange (they need its HTTP parts); the chain acts
/// on each JSON-RPC message.
pub struct Stages {
    /// Who is calling: an access token, or the process the kernel saw connect.
    pub identity: Arc<Identity>,
    /// Every JSON-RPC message, both ways: policy, static keys, masking, the recording.
    pub chain: Chain,
    /// Holds `approve` calls for a decision; `None`: such calls are refused at once.
    pub approvals: Option<Arc<crate::approval::Approvals>>,
    /// Masks argument previews shown to approvers.
    pub preview_masker: Option<Arc<crate::mask::Masker>>,
    /// Mints AWS credentials for servers with `[servers.aws]`.
    pub minter: Option<Arc<crate::creds::Minter>>,
}

pub struct L7 {
    pub ca: Arc<HostCa>,
    pub stages: Stages,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub sockets: SocketFactory,
    pub max_body: usize,
    next_session: AtomicU64,
    /// Who opened each MCP session.
    owners: owners::SessionOwners,
}

/// What the client connection turned out to carry.
enum FirstBytes {
    Tls,
    Http,
    Other,
    /// Nothing within `FIRST_BYTES_TIMEOUT`.
    Silent,
}

impl L7 {
    pub fn new(
        ca: Arc<HostCa>,
        stages: Stages,
        sockets: SocketFactory,
        metrics: Arc<crate::metrics::Metrics>,
        max_body: usize,
    ) -> Self {
        Self {
            ca,
            stages,
            metrics,
            sockets,
            max_body,
            next_session: AtomicU64::new(1),
            owners: Default::default(),
        }
    }

    /// Serves one client connection. `Err(stream)` hands a non-HTTP connection back for
    /// byte pass-through when the route allows it.
    pub async fn serve(
        self: Arc<Self>,
        stream: TcpStream,
        client: SocketAddr,
        orig: &OrigDst,
        route: Arc<Route>,
    ) -> Result<(), ServeError> {
        let first = match tokio::time::timeout(FIRST_BYTES_TIMEOUT, sniff(&stream)).await {
            Ok(Ok(first)) => first,
            Ok(Err(e)) => return Err(ServeError::Failed(format!("reading from client: {e}"))),
            Err(_) => FirstBytes::Silent,
        };
        let session = |sni: Option<String>| {
            Arc::new(Session {
                id: self.next_session.fetch_add(1, Ordering::Relaxed),
                client,
                orig_dst: orig.destination.clone(),
                server: route.name.clone(),
                sni,
                process: orig.process.clone(),
                mcp: Default::default(),
                pending: Default::default(),
            })
        };
        match (first, route.tls) {
            (FirstBytes::Tls, TlsMode::Terminate) => {
                let hello = tokio_rustls::LazyConfigAcceptor::new(
                    rustls::server::Acceptor::default(),
                    stream,
                );
                let start = tokio::time::timeout(HANDSHAKE_TIMEOUT, hello)
                    .await
                    .map_err(|_| ServeError::Failed("TLS ClientHello: timed out".into()))?
                    .map_err(|e| ServeError::Failed(format!("TLS ClientHello: {e}")))?;
                let sni = start.client_hello().server_name().map(str::to_owned);
                // Without SNI (clients dialing an IP literal), the leaf names the address dialed.
                let name = sni.clone().unwrap_or_else(|| match &orig.destination {
                    Destination::Socket(a) => a.ip().to_string(),
                    Destination::Name(h) => h.host.clone(),
                });
                let config = self
                    .ca
                    .server_config(&name)
                    .map_err(|e| ServeError::Failed(e.to_string()))?;
                let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, start.into_stream(config))
                    .await
                    .map_err(|_| ServeError::Failed("TLS handshake with client: timed out".into()))?
                    .map_err(|e| ServeError::Failed(format!("TLS handshake with client: {e}")))?;
                let upstream_name = self.upstream_name(orig, &route, Some(&name));
                let target = UpstreamTarget {
                    dest: self.upstream_dest(orig, &route),
                    tls: (route.upstream_scheme_tls != Some(false))
                        .then(|| (route.upstream_tls.clone(), upstream_name)),
                };
                self.serve_http(tls, session(sni), target, "https", route)
                    .await
            }
            (FirstBytes::Http, TlsMode::Plaintext) => {
                // An `https` upstream gets TLS even when its clients speak plain HTTP.
                let target = UpstreamTarget {
                    dest: self.upstream_dest(orig, &route),
                    tls: (route.upstream_scheme_tls == Some(true)).then(|| {
                        (
                            route.upstream_tls.clone(),
                            self.upstream_name(orig, &route, None),
                        )
                    }),
                };
                self.serve_http(stream, session(None), target, "http", route)
                    .await
            }
            // A client that says nothing cannot be classified: it is never relayed, whatever
            // `non_http` says (a relay would carry whatever it sends next unchecked).
            (FirstBytes::Silent, _) => Err(ServeError::Failed(format!(
                "client sent nothing within {} s: connection closed",
                FIRST_BYTES_TIMEOUT.as_secs()
            ))),
            (first, _) => {
                let what = match first {
                    FirstBytes::Tls => "TLS on a plaintext server",
                    FirstBytes::Http => "plaintext HTTP on a TLS server",
                    FirstBytes::Other | FirstBytes::Silent => "not HTTP",
                };
                match route.non_http {
                    NonHttp::Pass => Err(ServeError::PassThrough(stream, what)),
                    NonHttp::Close => Err(ServeError::Failed(format!(
                        "{what}: connection closed (servers.non_http = \"close\")"
                    ))),
                }
            }
        }
    }

    fn upstream_dest(&self, orig: &OrigDst, route: &Route) -> Destination {
        match &route.upstream {
            Some(up) => Destination::Name(up.clone()),
            None => orig.destination.clone(),
        }
    }

    /// The name the upstream certificate must carry: the configured upstream's host, else
    /// the name the client asked for, else the address it dialed.
    fn upstream_name(
        &self,
        orig: &OrigDst,
        route: &Route,
        client_name: Option<&str>,
    ) -> ServerName<'static> {
        let name = match (&route.upstream, client_name) {
            (Some(up), _) => up.host.clone(),
            (None, Some(n)) => n.to_owned(),
            (None, None) => orig.destination.to_string(),
        };
        ServerName::try_from(name.clone()).unwrap_or_else(|_| {
            ServerName::try_from("invalid.invalid".to_owned()).expect("valid literal")
        })
    }

    async fn serve_http<I>(
        self: &Arc<Self>,
        io: I,
        session: Arc<Session>,
        target: UpstreamTarget,
        scheme: &'static str,
        route: Arc<Route>,
    ) -> Result<(), ServeError>
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let conn = Arc::new(Conn {
            l7: self.clone(),
            session: session.clone(),
            upstream: Upstream::new(target, self.sockets.clone()),
            scheme,
            route,
        });
        let service = hyper::service::service_fn(move |req| {
            let conn = conn.clone();
            async move { Ok::<_, Infallible>(conn.handle(req).await) }
        });
        let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        // A client that starts a request and stalls holds a connection (and a file
        // descriptor) for nothing: its headers must arrive within the limit.
        builder
            .http1()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(HEADER_TIMEOUT);
        builder
            .http2()
            .timer(hyper_util::rt::TokioTimer::new())
            .keep_alive_interval(Some(HEADER_TIMEOUT))
            .keep_alive_timeout(HEADER_TIMEOUT);
        let served = builder.serve_connection(TokioIo::new(io), service).await;
        let how = match &served {
            Ok(()) => "closed".to_owned(),
            Err(e) if is_disconnect(&**e) => "closed by client".to_owned(),
            Err(e) => format!("error: {e}"),
        };
        self.stages.chain.end_session(&session, &how);
        match served {
            Ok(()) => Ok(()),
            // Clients end connections as they like (a cancelled stream closes it): not a failure.
            Err(e) if is_disconnect(&*e) => Ok(()),
            Err(e) => Err(ServeError::Failed(format!("HTTP: {e}"))),
        }
    }
}

pub enum ServeError {
    Failed(String),
    /// Not HTTP, and the route says to pass such connections through unchanged.
    PassThrough(TcpStream, &'static str),
}

/// Whether an error only says the peer went away.
fn is_disconnect(error: &(dyn std::error::Error + 'static)) -> bool {
    use std::io::ErrorKind::*;
    let mut cause = Some(error);
    while let Some(e) = cause {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if matches!(
                io.kind(),
                ConnectionReset | BrokenPipe | NotConnected | UnexpectedEof | ConnectionAborted
            ) {
                return true;
            }
        }
        if let Some(h) = e.downcast_ref::<hyper::Error>() {
            if h.is_incomplete_message() || h.is_canceled() {
                return true;
            }
        }
        cause = e.source();
    }
    false
}

/// Peeks at the first bytes without consuming them.
async fn sniff(stream: &TcpStream) -> std::io::Result<FirstBytes> {
    let mut buf = [0u8; 8];
    let n = stream.peek(&mut buf).await?;
    let head = &buf[..n];
    Ok(if head.first() == Some(&0x16) {
        FirstBytes::Tls
    } else if [
        &b"GET "[..],
        b"POST",
        b"DELE",
        b"PUT ",
        b"HEAD",
        b"OPTI",
        b"PATC",
        b"PRI ",
    ]
    .iter()
    .any(|m| head.starts_with(&m[..m.len().min(head.len())]) && !head.is_empty())
    {
        FirstBytes::Http
    } else {
        FirstBytes::Other
    })
}
