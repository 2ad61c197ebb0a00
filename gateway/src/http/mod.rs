//! The MCP-aware data path: TLS termination with a leaf for the name the client dialed,
//! HTTP/1.1 and h2 with hyper, and MCP Streamable HTTP / legacy HTTP+SSE: every JSON-RPC
//! message in either direction passes the interceptor chain before it is forwarded.
//! Request bodies are read up to `max_body`; event streams are forwarded event by event.

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use bytes::Bytes;
use futures_util::StreamExt as _;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use serde_json::Value;
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpStream,
};

use crate::client::{Body, BoxError, Upstream, UpstreamTarget};
use crate::{
    config::{NonHttp, ServerConfig, TlsMode},
    creds::static_keys::StaticKeys,
    identity::{AuthError, Identity, Subject},
    intercept::{socket_factory::SocketFactory, Destination, OrigDst},
    mcp::{
        interceptor::{Exchange, Session, Stopped},
        jsonrpc::{self, code},
        sse::SseParser,
        Chain, Direction, McpMessage, RpcError,
    },
    tls::HostCa,
};

/// How long a client may take to send its first bytes (TLS ClientHello or HTTP request).
const FIRST_BYTES_TIMEOUT: Duration = Duration::from_secs(10);

/// A `[[servers]]` entry ready for the data path.
pub struct Route {
    pub name: String,
    pub tls: TlsMode,
    pub upstream: Option<crate::addr::HostPort>,
    pub upstream_tls: Arc<rustls::ClientConfig>,
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

pub struct L7 {
    pub ca: Arc<HostCa>,
    pub identity: Arc<Identity>,
    /// Holds `approve` calls for a decision; `None`: such calls are refused at once.
    pub approvals: Option<Arc<crate::approval::Approvals>>,
    /// Masks argument previews shown to approvers.
    pub preview_masker: Option<Arc<crate::mask::Masker>>,
    /// Mints AWS credentials for servers with `[servers.aws]`.
    pub minter: Option<Arc<crate::creds::Minter>>,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub chain: Chain,
    pub sockets: SocketFactory,
    pub max_body: usize,
    next_session: AtomicU64,
}

/// What the client connection turned out to carry.
enum FirstBytes {
    Tls,
    Http,
    Other,
}

impl L7 {
    pub fn new(
        ca: Arc<HostCa>,
        identity: Arc<Identity>,
        chain: Chain,
        sockets: SocketFactory,
        max_body: usize,
    ) -> Self {
        Self {
            ca,
            identity,
            approvals: None,
            preview_masker: None,
            minter: None,
            metrics: Default::default(),
            chain,
            sockets,
            max_body,
            next_session: AtomicU64::new(1),
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
            Err(_) => FirstBytes::Other,
        };
        let session = |sni: Option<String>| {
            Arc::new(Session {
                id: self.next_session.fetch_add(1, Ordering::Relaxed),
                client,
                orig_dst: orig.destination.to_string(),
                server: route.name.clone(),
                sni,
                process: orig.process.clone(),
                mcp: Default::default(),
                pending: Default::default(),
            })
        };
        match (first, route.tls) {
            (FirstBytes::Tls, TlsMode::Terminate) => {
                let start = tokio_rustls::LazyConfigAcceptor::new(
                    rustls::server::Acceptor::default(),
                    stream,
                )
                .await
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
                let tls = start
                    .into_stream(config)
                    .await
                    .map_err(|e| ServeError::Failed(format!("TLS handshake with client: {e}")))?;
                let upstream_name = self.upstream_name(orig, &route, Some(&name));
                let target = UpstreamTarget {
                    dest: self.upstream_dest(orig, &route),
                    tls: Some((route.upstream_tls.clone(), upstream_name)),
                };
                self.serve_http(tls, session(sni), target, "https", route)
                    .await
            }
            (FirstBytes::Http, TlsMode::Plaintext) => {
                let target = UpstreamTarget {
                    dest: self.upstream_dest(orig, &route),
                    tls: None,
                };
                self.serve_http(stream, session(None), target, "http", route)
                    .await
            }
            (first, _) => {
                let what = match first {
                    FirstBytes::Tls => "TLS on a plaintext server",
                    FirstBytes::Http => "plaintext HTTP on a TLS server",
                    FirstBytes::Other => "not HTTP",
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
        let served = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
            .serve_connection(TokioIo::new(io), service)
            .await;
        let how = match &served {
            Ok(()) => "closed".to_owned(),
            Err(e) if is_disconnect(&**e) => "closed by client".to_owned(),
            Err(e) => format!("error: {e}"),
        };
        self.chain.end_session(&session, &how);
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

/// One client connection's HTTP exchanges.
struct Conn {
    l7: Arc<L7>,
    session: Arc<Session>,
    upstream: Upstream,
    scheme: &'static str,
    route: Arc<Route>,
}

/// What `forward` needs to know about the call it forwards.
#[derive(Default)]
struct CallInfo {
    tool: Option<String>,
    /// The grant that let the call through.
    grant: Option<crate::decision::GrantRef>,
}

const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
    "trailer",
    "proxy-authenticate",
];

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|s| s.trim().to_ascii_lowercase()))
        .collect();
    for name in HOP_BY_HOP
        .iter()
        .copied()
        .chain(listed.iter().map(String::as_str))
    {
        headers.remove(name);
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    content_type(headers).is_some_and(|ct| ct == "application/json" || ct.ends_with("+json"))
}

fn content_type(headers: &HeaderMap) -> Option<String> {
    let ct = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(
        ct.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase(),
    )
}

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A JSON-RPC error as the HTTP response.
fn rpc_error_response(status: StatusCode, id: &Value, error: &RpcError) -> Response<Body> {
    let mut response = Response::new(full(
        serde_json::to_vec(&error.to_response(id)).unwrap_or_default(),
    ));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

impl Conn {
    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        let response = self.clone().exchange(req).await;
        self.l7
            .metrics
            .requests
            .get_or_create(&crate::metrics::RequestLabels {
                server: self.session.server.clone(),
                code: response.status().as_u16().to_string(),
            })
            .inc();
        response
    }

    async fn exchange(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        let (mut parts, body) = req.into_parts();
        if let Some(response) = self.resource_metadata(&parts) {
            return response;
        }
        let identity = &self.l7.identity;
        let subject = match identity
            .authenticate(&parts.headers, self.session.process.as_ref())
            .await
        {
            Ok(subject) => {
                if subject.kind == crate::identity::SubjectKind::Token {
                    crate::metrics::Metrics::outcome(&self.l7.metrics.tokens, "valid");
                }
                Arc::new(subject)
            }
            Err(error) => {
                let outcome = match error {
                    AuthError::Missing => "missing",
                    AuthError::Invalid(_) => "invalid",
                    AuthError::Unavailable(_) => "unavailable",
                };
                crate::metrics::Metrics::outcome(&self.l7.metrics.tokens, outcome);
                // Drain what the client sends before answering (see handle_post).
                let _ = Limited::new(body, self.l7.max_body).collect().await;
                return self.unauthenticated(&parts, &error);
            }
        };
        // A token issued for the gateway is the gateway's: it goes no further unless the
        // server is configured to receive it.
        if identity.tokens_required() && !self.route.forward_token {
            parts.headers.remove(header::AUTHORIZATION);
        }
        if let Some(refused) = self.check_static_keys(&mut parts.headers, &subject) {
            let _ = Limited::new(body, self.l7.max_body).collect().await;
            return refused;
        }
        if parts.method == Method::POST {
            self.handle_post(parts, body, subject).await
        } else {
            // GET (event streams), DELETE (session end) and the rest: bodies pass as they are,
            // responses are checked like any other.
            let body = body.map_err(|e| -> BoxError { Box::new(e) }).boxed_unsync();
            self.forward(parts, body, &Value::Null, subject, CallInfo::default())
                .await
        }
    }

    /// Long-lived AWS keys in the request headers: logged and recorded as findings, then
    /// the request is refused, the headers stripped, or (`log`) nothing more.
    fn check_static_keys(
        &self,
        headers: &mut HeaderMap,
        subject: &Arc<Subject>,
    ) -> Option<Response<Body>> {
        let found = crate::creds::static_keys::in_headers(headers);
        if found.is_empty() {
            return None;
        }
        let action = self.route.static_keys;
        tracing::warn!(session = self.session.id, subject = %subject.name, server = %self.session.server, found = ?found, ?action, "long-lived AWS key in request headers");
        let exchange = Exchange::new(&self.session, subject);
        self.l7.chain.note(
            &exchange,
            "static_aws_key",
            serde_json::json!({"where": "headers", "found": found, "action": action}),
        );
        match action {
            StaticKeys::Log => None,
            StaticKeys::Strip => {
                for (name, _) in &found {
                    headers.remove(name.as_str());
                }
                None
            }
            StaticKeys::Block => {
                let decision = crate::decision::Decision {
                    action: crate::decision::Action::Deny,
                    rule: crate::creds::static_keys::RULE.into(),
                    reason: format!(
                        "the request carries a long-lived AWS key ({}); the gateway supplies short-lived credentials",
                        found.iter().map(|(h, what)| format!("{what} in {h}")).collect::<Vec<_>>().join(", ")
                    ),
                    approval: None,
                    grant: None,
                };
                let error = crate::mcp::interceptor::refusal(&decision);
                Some(rpc_error_response(
                    StatusCode::FORBIDDEN,
                    &Value::Null,
                    &error,
                ))
            }
        }
    }

    /// `https://host[:port]` as the client addressed this server.
    fn origin(&self, parts: &http::request::Parts) -> String {
        let authority = parts
            .uri
            .authority()
            .map(|a| a.as_str().to_owned())
            .or_else(|| {
                let host = parts.headers.get(header::HOST)?.to_str().ok()?;
                Some(host.to_owned())
            })
            .unwrap_or_else(|| self.session.orig_dst.clone());
        format!("{}://{authority}", self.scheme)
    }

    /// OAuth Protected Resource Metadata (RFC 9728) for the intercepted server, so MCP
    /// clients can find which issuer to get a token from.
    fn resource_metadata(&self, parts: &http::request::Parts) -> Option<Response<Body>> {
        const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";
        let suffix = parts.uri.path().strip_prefix(WELL_KNOWN)?;
        if !(suffix.is_empty() || suffix.starts_with('/')) || parts.method != Method::GET {
            return None;
        }
        if !self.l7.identity.tokens_required() {
            return None; // the server's own, if it has one
        }
        let resource = format!("{}{}", self.origin(parts), suffix);
        let metadata = serde_json::json!({
            "resource": resource,
            "authorization_servers": self.l7.identity.issuer_urls(),
            "bearer_methods_supported": ["header"],
            "resource_name": format!("{} (through mcpgw)", self.session.server),
        });
        let mut response = Response::new(full(serde_json::to_vec(&metadata).unwrap_or_default()));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        Some(response)
    }

    /// 401 with the `WWW-Authenticate` challenge MCP clients follow to the metadata above
    /// (503 when tokens cannot be checked at all).
    fn unauthenticated(&self, parts: &http::request::Parts, error: &AuthError) -> Response<Body> {
        tracing::info!(session = self.session.id, server = %self.session.server, %error, "request not authenticated");
        let rpc = RpcError::new(code::UNAUTHENTICATED, error.to_string());
        if let AuthError::Unavailable(_) = error {
            return rpc_error_response(StatusCode::SERVICE_UNAVAILABLE, &Value::Null, &rpc);
        }
        let mut response = rpc_error_response(StatusCode::UNAUTHORIZED, &Value::Null, &rpc);
        let metadata = format!(
            "{}/.well-known/oauth-protected-resource{}",
            self.origin(parts),
            parts.uri.path().trim_end_matches('/')
        );
        let mut challenge = format!("Bearer resource_metadata=\"{}\"", quoted(&metadata));
        if let AuthError::Invalid(why) = error {
            challenge.push_str(&format!(
                ", error=\"invalid_token\", error_description=\"{}\"",
                quoted(why)
            ));
        }
        if let Ok(value) = HeaderValue::from_str(&challenge) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
        response
    }

    async fn handle_post(
        self: &Arc<Self>,
        parts: http::request::Parts,
        body: Incoming,
        subject: Arc<Subject>,
    ) -> Response<Body> {
        let max = self.l7.max_body;
        if !is_json(&parts.headers) {
            // Read (and drop) what the client sends, up to the limit, before answering: an
            // answer before the body would make HTTP/2 reset the stream, which some clients
            // report instead of the answer.
            let _ = Limited::new(body, max).collect().await;
            let error = RpcError::new(
                code::INVALID_REQUEST,
                "MCP POST bodies must be application/json",
            );
            return rpc_error_response(StatusCode::UNSUPPORTED_MEDIA_TYPE, &Value::Null, &error);
        }
        let too_large = || {
            RpcError::new(
                code::TOO_LARGE,
                format!("request body exceeds the gateway limit of {max} bytes"),
            )
        };
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|n| n > max as u64) {
            return rpc_error_response(StatusCode::PAYLOAD_TOO_LARGE, &Value::Null, &too_large());
        }
        let bytes = match read_request_body(body, max).await {
            Ok(bytes) => bytes,
            Err(None) => {
                return rpc_error_response(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &Value::Null,
                    &too_large(),
                );
            }
            Err(Some(e)) => {
                let error =
                    RpcError::new(code::INVALID_REQUEST, format!("reading request body: {e}"));
                return rpc_error_response(StatusCode::BAD_REQUEST, &Value::Null, &error);
            }
        };
        let mut rpc = match jsonrpc::Body::parse(&bytes) {
            Ok(rpc) => rpc,
            Err(error) => return rpc_error_response(StatusCode::BAD_REQUEST, &Value::Null, &error),
        };
        if let jsonrpc::Body::Single(msg) = &rpc {
            let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
            if let Err(error) = msg.check_headers(header("mcp-method"), header("mcp-name")) {
                let id = msg.id().cloned().unwrap_or(Value::Null);
                return rpc_error_response(StatusCode::BAD_REQUEST, &id, &error);
            }
        }
        let header_version = parts
            .headers
            .get("mcp-protocol-version")
            .and_then(|v| v.to_str().ok());
        let meta_version = rpc
            .messages()
            .iter()
            .find_map(McpMessage::meta_protocol_version)
            .map(str::to_owned);
        self.session.update_mcp(
            parts
                .headers
                .get("mcp-session-id")
                .and_then(|v| v.to_str().ok()),
            header_version.or(meta_version.as_deref()),
        );

        // Every message must pass the chain; if one is refused, nothing is forwarded.
        let mut modified = false;
        let mut refused = Vec::new();
        let mut held = None;
        let mut call = CallInfo::default();
        let single = matches!(rpc, jsonrpc::Body::Single(_));
        for msg in rpc.messages_mut() {
            let exchange = Exchange::new(&self.session, &subject);
            match self
                .l7
                .chain
                .message(&exchange, Direction::ClientToServer, msg)
            {
                Ok(passed) => {
                    modified |= passed.modified;
                    // One call per POST (batches sign for no one tool).
                    if single {
                        call.tool = msg.tool_call().map(|(t, _)| t.to_owned());
                        call.grant = passed.grant();
                    }
                }
                Err(stopped) => {
                    refused.push((msg.id().cloned(), stopped.error()));
                    if let Stopped::Held(decision) = stopped {
                        held = Some(decision);
                    }
                }
            }
        }
        if !refused.is_empty() {
            // A single call held for approval waits for the decision.
            let single = single && refused.len() == 1;
            let (jsonrpc::Body::Single(msg), Some(decision)) = (&mut rpc, held) else {
                return self.refuse(&rpc, refused);
            };
            if !single {
                return self.refuse(&rpc, refused);
            }
            let id = msg.id().cloned().unwrap_or(Value::Null);
            let approval = match self.request_approval(&parts, msg, &subject, &decision) {
                Ok(approval) => approval,
                Err(error) => return rpc_error_response(StatusCode::OK, &id, &error),
            };
            let wants_stream = accepts_event_stream(&parts.headers);
            let me = self.clone();
            let wait = async move {
                let jsonrpc::Body::Single(msg) = &mut rpc else {
                    unreachable!("checked above")
                };
                match me.await_decision(&approval, msg, &subject, &decision).await {
                    Ok((m, grant)) => {
                        call.tool = msg.tool_call().map(|(t, _)| t.to_owned());
                        call.grant = grant;
                        me.send_on(parts, rpc, bytes, modified || m, subject, call)
                            .await
                    }
                    Err(error) => rpc_error_response(StatusCode::OK, &id, &error),
                }
            };
            return if wants_stream {
                held_event_stream(wait)
            } else {
                wait.await
            };
        }
        self.send_on(parts, rpc, bytes, modified, subject, call)
            .await
    }

    /// Forwards a POST whose messages passed the chain.
    async fn send_on(
        self: &Arc<Self>,
        parts: http::request::Parts,
        rpc: jsonrpc::Body,
        bytes: Bytes,
        modified: bool,
        subject: Arc<Subject>,
        call: CallInfo,
    ) -> Response<Body> {
        let first_id = match &rpc {
            jsonrpc::Body::Single(m) => m.id().cloned().unwrap_or(Value::Null),
            jsonrpc::Body::Batch(_) => Value::Null,
        };
        let body = if modified {
            Bytes::from(rpc.to_bytes())
        } else {
            bytes
        };
        for msg in rpc.messages() {
            self.session.note_request(msg);
        }
        // The body is whole in hand: its length is set from it, not from what the client said
        // (an interceptor may have changed it).
        let mut parts = parts;
        parts.headers.remove(header::CONTENT_LENGTH);
        self.forward(parts, full(body), &first_id, subject, call)
            .await
    }

    /// Creates the pending approval for a held call (its approvers are notified).
    fn request_approval(
        &self,
        parts: &http::request::Parts,
        msg: &McpMessage,
        subject: &Arc<Subject>,
        decision: &crate::decision::Decision,
    ) -> Result<crate::approval::Approval, RpcError> {
        let refused = crate::mcp::interceptor::refusal(decision);
        let (Some(approvals), Some(terms)) = (&self.l7.approvals, &decision.approval) else {
            return Err(refused);
        };
        let (tool, arguments) = match msg.tool_call() {
            Some((tool, args)) => (Some(tool.to_owned()), args.cloned()),
            None => (None, msg.params().cloned()),
        };
        let justification = parts
            .headers
            .get(approvals.config().justification_header.as_str())
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or_else(|| {
                let meta = msg.params()?.get("_meta")?.get("justification")?;
                meta.as_str().map(str::to_owned)
            });
        let request = crate::approval::NewApproval {
            subject,
            server: &self.session.server,
            method: msg.method().unwrap_or("-"),
            tool: tool.as_deref(),
            arguments: self.preview(arguments),
            rule: &decision.rule,
            terms,
            justification,
        };
        approvals.request(request).map_err(|e| {
            tracing::error!(error = %e, "cannot store the approval request");
            RpcError::new(
                code::GATEWAY_REFUSED,
                format!("approval required, but it cannot be requested: {e}"),
            )
        })
    }

    /// Waits up to `approval.hold` for the decision. Approved: the call passes the chain
    /// again (the new grant covers it); `Ok` says whether it changed and names the grant.
    /// Denied or still pending: the error for the client.
    async fn await_decision(
        &self,
        approval: &crate::approval::Approval,
        msg: &mut McpMessage,
        subject: &Arc<Subject>,
        decision: &crate::decision::Decision,
    ) -> Result<(bool, Option<crate::decision::GrantRef>), RpcError> {
        let Some(approvals) = &self.l7.approvals else {
            return Err(crate::mcp::interceptor::refusal(decision));
        };
        let data = |action: &str| serde_json::json!({"approval": approval.id, "rule": decision.rule, "action": action});
        match approvals.wait(&approval.id, approvals.config().hold).await {
            crate::approval::Outcome::Approved => {
                let exchange = Exchange::new(&self.session, subject);
                let passed = self
                    .l7
                    .chain
                    .message(&exchange, Direction::ClientToServer, msg)
                    .map_err(|stopped| stopped.error())?;
                Ok((passed.modified, passed.grant()))
            }
            crate::approval::Outcome::Denied { by, reason } => Err(RpcError::new(
                code::GATEWAY_REFUSED,
                format!("denied by approver {by}: {reason}"),
            )
            .with_data(data("deny"))),
            crate::approval::Outcome::Pending => Err(RpcError::new(
                code::APPROVAL_REQUIRED,
                format!(
                    "approval {} is pending (rule `{}`); retry the call once it is approved",
                    approval.id, decision.rule
                ),
            )
            .with_data(data("approve"))),
        }
    }

    /// What approvers see of the arguments: masked, and short.
    fn preview(&self, arguments: Option<Value>) -> String {
        const MAX: usize = 1000;
        let Some(mut value) = arguments else {
            return String::new();
        };
        if let Some(masker) = &self.l7.preview_masker {
            if masker.mask_value(&mut value, b"approval-preview").is_err() {
                return "(arguments withheld: masking failed)".into();
            }
        }
        let mut text = value.to_string();
        if text.len() > MAX {
            let mut cut = MAX;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push('…');
        }
        text
    }

    /// Answers a POST whose messages were (partly) refused, without forwarding any of them.
    fn refuse(
        &self,
        rpc: &jsonrpc::Body,
        refused: Vec<(Option<Value>, RpcError)>,
    ) -> Response<Body> {
        match rpc {
            jsonrpc::Body::Single(msg) => {
                let (id, error) = &refused[0];
                // A refused request gets its JSON-RPC error; a refused notification or response
                // has no id to answer, so the HTTP status carries it.
                let status = if msg.id().is_some() && msg.method().is_some() {
                    StatusCode::OK
                } else {
                    StatusCode::FORBIDDEN
                };
                rpc_error_response(status, id.as_ref().unwrap_or(&Value::Null), error)
            }
            jsonrpc::Body::Batch(msgs) => {
                let not_sent = RpcError::new(
                    code::GATEWAY_REFUSED,
                    "not forwarded: another message in the batch was refused",
                );
                let answers: Vec<Value> = msgs
                    .iter()
                    .filter(|m| m.method().is_some() && m.id().is_some())
                    .map(|m| {
                        let id = m.id().cloned().unwrap_or(Value::Null);
                        let error = refused
                            .iter()
                            .find(|(rid, _)| rid.as_ref() == Some(&id))
                            .map_or(&not_sent, |(_, e)| e);
                        error.to_response(&id)
                    })
                    .collect();
                let mut response =
                    Response::new(full(serde_json::to_vec(&answers).unwrap_or_default()));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                response
            }
        }
    }

    async fn forward(
        self: &Arc<Self>,
        parts: http::request::Parts,
        body: Body,
        id: &Value,
        subject: Arc<Subject>,
        call: CallInfo,
    ) -> Response<Body> {
        let authority = parts
            .uri
            .authority()
            .map(|a| a.as_str().to_owned())
            .or_else(|| {
                parts
                    .headers
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| self.session.orig_dst.clone());
        let path = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let mut headers = parts.headers.clone();
        strip_hop_by_hop(&mut headers);
        let reply_to = reply_template(&parts);
        // Servers behind AWS auth get the call signed with credentials minted for it.
        let (body, signing) = match self
            .aws_credentials(&mut headers, body, &subject, &call)
            .await
        {
            Ok(prepared) => prepared,
            Err(response) => return response,
        };
        let body = std::sync::Mutex::new(Some(body));
        let make = |h2: bool| {
            let mut req = Request::new(
                body.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take()
                    .unwrap_or_else(|| full(Bytes::new())),
            );
            *req.method_mut() = parts.method.clone();
            let mut headers = headers.clone();
            if h2 {
                *req.version_mut() = http::Version::HTTP_2;
                *req.uri_mut() = format!("{}://{authority}{path}", self.scheme)
                    .parse()
                    .unwrap_or_default();
                headers.remove(header::HOST);
            } else {
                *req.version_mut() = http::Version::HTTP_11;
                *req.uri_mut() = path.parse().unwrap_or_default();
                // Servers bound to loopback check Host: keep the client's.
                if let Ok(host) = HeaderValue::from_str(&authority) {
                    headers.insert(header::HOST, host);
                }
            }
            *req.headers_mut() = headers;
            if let Some((creds, bytes, aws)) = &signing {
                // SigV4 covers the URL as the upstream sees it.
                let relative = req.uri().clone();
                *req.uri_mut() = format!("{}://{authority}{path}", self.scheme)
                    .parse()
                    .map_err(|e| format!("URL to sign: {e}"))?;
                crate::creds::sigv4::sign_request(
                    &mut req,
                    bytes,
                    creds,
                    &aws.region,
                    &aws.service,
                )?;
                if !h2 {
                    *req.uri_mut() = relative;
                }
            }
            Ok(req)
        };
        let sent = std::time::Instant::now();
        let response = self.upstream.send(make).await;
        self.l7
            .metrics
            .upstream_seconds
            .get_or_create(&crate::metrics::ServerLabels {
                server: self.session.server.clone(),
            })
            .observe(sent.elapsed().as_secs_f64());
        let response = match response {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(session = self.session.id, error = %e, "upstream request failed");
                let error = RpcError::new(code::UPSTREAM_FAILED, format!("upstream server: {e}"));
                return rpc_error_response(StatusCode::BAD_GATEWAY, id, &error);
            }
        };
        self.process_response(response, id, subject, reply_to).await
    }

    /// Answers a request the server sent on an event stream and the chain refused, so the
    /// server gets the error instead of waiting for its own timeout. Sent like the client's
    /// own POSTs (same session, signed when the server wants it).
    async fn answer_server(
        self: Arc<Self>,
        reply_to: http::request::Parts,
        subject: Arc<Subject>,
        id: Value,
        error: RpcError,
    ) {
        let body = serde_json::to_vec(&error.to_response(&id)).unwrap_or_default();
        let response = self
            .forward(
                reply_to,
                full(body),
                &Value::Null,
                subject,
                CallInfo::default(),
            )
            .await;
        tracing::info!(session = self.session.id, %id, status = %response.status(), "answered a refused server request with its error");
    }

    /// For a server with `[servers.aws]`: drops the client's AWS auth, reads the body (it is
    /// signed), and gets credentials for this caller and call. `Err` is the answer to give
    /// when there are none: the call is never sent unsigned or with other credentials.
    #[allow(clippy::type_complexity)]
    async fn aws_credentials(
        &self,
        headers: &mut HeaderMap,
        body: Body,
        subject: &Arc<Subject>,
        call: &CallInfo,
    ) -> Result<
        (
            Body,
            Option<(
                Arc<crate::creds::Credentials>,
                Bytes,
                crate::creds::AwsServer,
            )>,
        ),
        Response<Body>,
    > {
        let Some(aws) = &self.route.aws else {
            return Ok((body, None));
        };
        let fail = |status: StatusCode, message: String| {
            let error = RpcError::new(code::CREDENTIALS_FAILED, message);
            rpc_error_response(status, &Value::Null, &error)
        };
        let Some(minter) = &self.l7.minter else {
            return Err(fail(
                StatusCode::BAD_GATEWAY,
                "AWS credentials are not available in this gateway".into(),
            ));
        };
        crate::creds::sigv4::strip_client_auth(headers);
        let bytes = match collect_limited(body, self.l7.max_body).await {
            Ok(bytes) => bytes,
            Err(e) => {
                return Err(fail(
                    StatusCode::BAD_REQUEST,
                    format!("reading request body: {e}"),
                ))
            }
        };
        let scope = crate::creds::CallScope {
            subject,
            server: &self.session.server,
            tool: call.tool.as_deref(),
            gateway_session: self.session.id,
            approval: call.grant.as_ref().map(|g| g.approval.as_str()),
            grant_expires_ms: call.grant.as_ref().map(|g| g.expires_ms),
        };
        match minter.credentials(aws, &scope).await {
            Ok((creds, minted)) => {
                if let Some(minted) = minted {
                    let exchange = Exchange::new(&self.session, subject);
                    self.l7.chain.note(
                        &exchange,
                        "aws_credentials",
                        serde_json::to_value(&minted).unwrap_or_default(),
                    );
                }
                Ok((full(bytes.clone()), Some((creds, bytes, aws.clone()))))
            }
            Err(error) => {
                tracing::warn!(session = self.session.id, subject = %subject.name, %error, "no AWS credentials for the call");
                Err(fail(
                    StatusCode::BAD_GATEWAY,
                    format!("no AWS credentials for this call: {error}"),
                ))
            }
        }
    }

    async fn process_response(
        self: &Arc<Self>,
        response: Response<Incoming>,
        id: &Value,
        subject: Arc<Subject>,
        reply_to: http::request::Parts,
    ) -> Response<Body> {
        let (mut parts, body) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        self.session.update_mcp(
            parts
                .headers
                .get("mcp-session-id")
                .and_then(|v| v.to_str().ok()),
            None,
        );
        let ct = content_type(&parts.headers);
        if ct.as_deref() == Some("text/event-stream") {
            parts.headers.remove(header::CONTENT_LENGTH);
            return Response::from_parts(parts, self.event_stream(body, subject, reply_to));
        }
        if !is_json(&parts.headers) {
            // 202 Accepted, empty DELETE answers, HTTP errors in text: nothing JSON-RPC to check.
            let body = body.map_err(|e| -> BoxError { Box::new(e) }).boxed_unsync();
            return Response::from_parts(parts, body);
        }
        let max = self.l7.max_body;
        let bytes = match Limited::new(body, max).collect().await {
            Ok(c) => c.to_bytes(),
            Err(e) => {
                let error = RpcError::new(
                    code::UPSTREAM_FAILED,
                    format!("upstream response: {e} (limit {max} bytes)"),
                );
                return rpc_error_response(StatusCode::BAD_GATEWAY, id, &error);
            }
        };
        if bytes.is_empty() {
            return Response::from_parts(parts, full(bytes));
        }
        let mut rpc = match jsonrpc::Body::parse(&bytes) {
            Ok(rpc) => rpc,
            // An HTTP error with a JSON body that is not JSON-RPC (e.g. a framework's 400)
            // carries no MCP message: pass it. A success that is not JSON-RPC is refused.
            Err(_) if !parts.status.is_success() => {
                return Response::from_parts(parts, full(bytes))
            }
            Err(e) => {
                let error = RpcError::new(
                    code::UPSTREAM_FAILED,
                    format!("upstream sent invalid JSON-RPC: {}", e.message),
                );
                return rpc_error_response(StatusCode::BAD_GATEWAY, id, &error);
            }
        };
        let mut modified = false;
        for msg in rpc.messages_mut() {
            note_server_message(&self.session, msg);
            let exchange = Exchange::new(&self.session, &subject);
            let verdict = self
                .l7
                .chain
                .message(&exchange, Direction::ServerToClient, msg);
            if let (Some(id), None) = (msg.id(), msg.method()) {
                self.session.answered(id);
            }
            match verdict {
                Ok(passed) => modified |= passed.modified,
                Err(stopped) => {
                    let error = stopped.error();
                    *msg =
                        McpMessage::from_value(error.to_response(msg.id().unwrap_or(&Value::Null)))
                            .expect("an error response is valid JSON-RPC");
                    modified = true;
                }
            }
        }
        parts.headers.remove(header::CONTENT_LENGTH);
        let body = if modified {
            Bytes::from(rpc.to_bytes())
        } else {
            bytes
        };
        Response::from_parts(parts, full(body))
    }

    /// Forwards an event stream event by event, each through the chain, as they arrive.
    fn event_stream(
        self: &Arc<Self>,
        body: Incoming,
        subject: Arc<Subject>,
        reply_to: http::request::Parts,
    ) -> Body {
        let conn = self.clone();
        let l7 = self.l7.clone();
        let session = self.session.clone();
        let parser = SseParser::new(l7.max_body);
        let stream = futures_util::stream::unfold(
            (body, parser, l7, session, false),
            move |(mut body, mut parser, l7, session, done)| {
                let subject = subject.clone();
                let (conn, reply_to) = (conn.clone(), reply_to.clone());
                async move {
                    if done {
                        return None;
                    }
                    loop {
                        let frame = match body.frame().await {
                            None => {
                                if !parser.remainder().is_empty() {
                                    // An event cut off by the end of the stream was never complete.
                                    tracing::warn!(
                                        session = session.id,
                                        bytes = parser.remainder().len(),
                                        "unterminated event at end of stream dropped"
                                    );
                                }
                                return None;
                            }
                            Some(Err(e)) => {
                                let error: BoxError =
                                    format!("upstream event stream broke: {e}").into();
                                return Some((Err(error), (body, parser, l7, session, true)));
                            }
                            Some(Ok(frame)) => frame,
                        };
                        let Ok(data) = frame.into_data() else {
                            continue;
                        };
                        let events = match parser.push(&data) {
                            Ok(events) => events,
                            Err(e) => {
                                tracing::warn!(session = session.id, error = %e, "event stream refused");
                                let error: BoxError = e.to_string().into();
                                return Some((Err(error), (body, parser, l7, session, true)));
                            }
                        };
                        if events.is_empty() {
                            continue;
                        }
                        let mut out = Vec::new();
                        let mut refused = Vec::new();
                        for event in events {
                            if let Some(bytes) =
                                check_event(&l7, &session, &subject, event, &mut refused)
                            {
                                out.extend_from_slice(&bytes);
                            }
                        }
                        for (id, error) in refused {
                            tokio::spawn(conn.clone().answer_server(
                                reply_to.clone(),
                                subject.clone(),
                                id,
                                error,
                            ));
                        }
                        if out.is_empty() {
                            continue;
                        }
                        return Some((
                            Ok(Frame::data(Bytes::from(out))),
                            (body, parser, l7, session, false),
                        ));
                    }
                }
            },
        );
        StreamBody::new(stream.boxed()).boxed_unsync()
    }
}

/// Tracks what the server says about the session (initialize's negotiated version).
fn note_server_message(session: &Session, msg: &McpMessage) {
    let version = msg
        .raw
        .get("result")
        .and_then(|r| r.get("protocolVersion"))
        .and_then(Value::as_str);
    if let Some(version) = version {
        session.update_mcp(None, Some(version));
    }
}

/// One server-sent event through the chain; `None` drops it. Requests from the server that
/// the chain refused go to `refused`, to be answered with their error.
fn check_event(
    l7: &L7,
    session: &Session,
    subject: &Subject,
    event: crate::mcp::sse::SseEvent,
    refused: &mut Vec<(Value, RpcError)>,
) -> Option<Bytes> {
    let exchange = Exchange::new(session, subject);
    if let Err(error) = l7.chain.stream_event(&exchange, &event) {
        tracing::info!(session = session.id, error = %error.message, "event dropped");
        return None;
    }
    let Some(data) = event.data.as_deref() else {
        return Some(event.raw); // keep-alive comments
    };
    let trimmed = data.trim_start();
    if !(trimmed.starts_with('{') || trimmed.starts_with('[')) {
        // Not a JSON-RPC message (the legacy transport's `endpoint` URL): nothing to check.
        return Some(event.raw);
    }
    let mut rpc = match jsonrpc::Body::parse(data.as_bytes()) {
        Ok(rpc) => rpc,
        Err(e) => {
            tracing::warn!(session = session.id, error = %e.message, "invalid JSON-RPC event from upstream dropped");
            return None;
        }
    };
    let mut modified = false;
    for msg in rpc.messages_mut() {
        note_server_message(session, msg);
        let exchange = Exchange::new(session, subject);
        let verdict = l7.chain.message(&exchange, Direction::ServerToClient, msg);
        if let (Some(id), None) = (msg.id(), msg.method()) {
            session.answered(id);
        }
        match verdict.map_err(|stopped| stopped.error()) {
            Ok(passed) => modified |= passed.modified,
            Err(error) => match msg.id() {
                // A refused response still answers its request, with the error.
                Some(id) if msg.method().is_none() => {
                    *msg = McpMessage::from_value(error.to_response(id)).expect("valid JSON-RPC");
                    modified = true;
                }
                Some(id) => {
                    refused.push((id.clone(), error));
                    return None;
                }
                None => return None,
            },
        }
    }
    if modified {
        Some(event.with_data(&String::from_utf8_lossy(&rpc.to_bytes())))
    } else {
        Some(event.raw)
    }
}

/// Text safe inside an HTTP quoted-string.
fn quoted(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .map(|c| if c == '"' || c == '\\' { '\'' } else { c })
        .collect()
}

/// A whole body, up to `max` bytes.
async fn collect_limited(mut body: Body, max: usize) -> Result<Bytes, String> {
    let mut out = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| e.to_string())?;
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > max {
                return Err(format!("body exceeds the gateway limit of {max} bytes"));
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out.freeze())
}

fn accepts_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/event-stream"))
}

/// How often a held call's event stream gets a keep-alive comment.
const HOLD_KEEPALIVE: Duration = Duration::from_secs(10);

/// Answers a held call at once with an event stream that carries keep-alive comments while
/// approvers decide (clients' read timeouts are often shorter than the hold), then the
/// outcome: the upstream's events, its JSON answer as one event, or the error as one event.
fn held_event_stream(
    outcome: impl std::future::Future<Output = Response<Body>> + Send + 'static,
) -> Response<Body> {
    enum Phase {
        Waiting(tokio::sync::oneshot::Receiver<Response<Body>>),
        Streaming(Body),
        Done,
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let _ = tx.send(outcome.await);
    });
    let stream = futures_util::stream::unfold(Phase::Waiting(rx), |phase| async move {
        match phase {
            Phase::Done => None,
            Phase::Waiting(mut rx) => {
                tokio::select! {
                    answer = &mut rx => {
                        let Ok(answer) = answer else {
                            return Some((Err::<Frame<Bytes>, BoxError>("held call ended without an answer".into()), Phase::Done));
                        };
                        let (parts, body) = answer.into_parts();
                        if content_type(&parts.headers).as_deref() == Some("text/event-stream") {
                            let frame = Ok(Frame::data(Bytes::from_static(b": approved\n\n")));
                            return Some((frame, Phase::Streaming(body)));
                        }
                        // A JSON answer (or error) becomes one event.
                        match collect_limited(body, 64 << 20).await {
                            Ok(json) => {
                                let mut event = b"event: message\ndata: ".to_vec();
                                event.extend_from_slice(&json);
                                event.extend_from_slice(b"\n\n");
                                Some((Ok(Frame::data(Bytes::from(event))), Phase::Done))
                            }
                            Err(e) => Some((Err(e.into()), Phase::Done)),
                        }
                    }
                    _ = tokio::time::sleep(HOLD_KEEPALIVE) => {
                        let frame = Ok(Frame::data(Bytes::from_static(b": waiting for approval\n\n")));
                        Some((frame, Phase::Waiting(rx)))
                    }
                }
            }
            Phase::Streaming(mut body) => match body.frame().await {
                Some(Ok(frame)) => Some((Ok(frame), Phase::Streaming(body))),
                Some(Err(e)) => Some((Err(e), Phase::Done)),
                None => None,
            },
        }
    });
    let mut response = Response::new(StreamBody::new(stream.boxed()).boxed_unsync());
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// What is read past the limit of an oversized request before answering 413, so an
/// HTTP/1.1 client that is still sending sees the answer instead of a broken pipe.
const DRAIN_MAX: usize = 64 << 20;
const DRAIN_TIME: Duration = Duration::from_secs(5);

/// A request body up to `max` bytes. `Err(None)`: larger (the rest drained, within bounds);
/// `Err(Some(e))`: it could not be read.
async fn read_request_body(mut body: Incoming, max: usize) -> Result<Bytes, Option<String>> {
    let mut out = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Some(e.to_string()))?;
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > max {
                let drain = async {
                    let mut drained = out.len() + data.len();
                    while drained < DRAIN_MAX {
                        match body.frame().await {
                            Some(Ok(f)) => drained += f.data_ref().map_or(0, Bytes::len),
                            _ => break,
                        }
                    }
                };
                let _ = tokio::time::timeout(DRAIN_TIME, drain).await;
                return Err(None);
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out.freeze())
}

/// The request an answer to the server is sent as: a POST to the same endpoint, in the same
/// MCP session, as the request whose response stream carried the server's request.
fn reply_template(parts: &http::request::Parts) -> http::request::Parts {
    let mut request = Request::new(());
    *request.method_mut() = Method::POST;
    *request.uri_mut() = parts.uri.clone();
    let headers = request.headers_mut();
    for name in [
        header::HOST,
        http::HeaderName::from_static("mcp-session-id"),
        http::HeaderName::from_static("mcp-protocol-version"),
    ] {
        if let Some(value) = parts.headers.get(&name) {
            headers.insert(name, value.clone());
        }
    }
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        header::ACCEPT,
        HeaderValue::from_static("application/json, text/event-stream"),
    );
    request.into_parts().0
}
