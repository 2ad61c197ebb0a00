//! One client connection's HTTP exchanges: each request is authenticated (token or
//! process), checked for long-lived AWS keys in its headers, and handed to POST handling or
//! forwarded; OAuth protected-resource metadata and 401 challenges are answered here.

use std::sync::Arc;

use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::Value;

use super::{body::*, Route, L7};
use crate::{
    body::{full, Body},
    client::Upstream,
    creds::static_keys::StaticKeys,
    identity::{AuthError, Subject},
    mcp::{
        interceptor::{Exchange, Session},
        jsonrpc::code,
        RpcError,
    },
};

/// One client connection's HTTP exchanges.
pub(super) struct Conn {
    pub(super) l7: Arc<L7>,
    pub(super) session: Arc<Session>,
    pub(super) upstream: Upstream,
    pub(super) scheme: &'static str,
    pub(super) route: Arc<Route>,
}

/// What `forward` needs to know about the call it forwards.
#[derive(Default)]
pub(super) struct CallInfo {
    pub(super) tool: Option<String>,
    /// The grant that let the call through.
    pub(super) grant: Option<crate::decision::GrantRef>,
}

impl Conn {
    pub(super) async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
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
        let identity = &self.l7.stages.identity;
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
                drain(body, self.l7.max_body).await;
                return self.unauthenticated(&parts, &error);
            }
        };
        // A token issued for the gateway is the gateway's: it goes no further unless the
        // server is configured to receive it.
        if identity.tokens_required() && !self.route.forward_token {
            parts.headers.remove(header::AUTHORIZATION);
        }
        if let Some(refused) = self.check_static_keys(&mut parts.headers, &subject) {
            drain(body, self.l7.max_body).await;
            return refused;
        }
        if let Some(session) = parts
            .headers
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
        {
            if let Err(owner) = self
                .l7
                .owners
                .check(&self.session.server, session, &subject.name)
            {
                drain(body, self.l7.max_body).await;
                tracing::warn!(session = self.session.id, subject = %subject.name, %owner, mcp_session = %crate::mcp::interceptor::redacted(session), "MCP session of another caller refused");
                // 404 is what MCP clients read as "this session is gone": they start their own.
                let error = RpcError::new(
                    code::INVALID_REQUEST,
                    "no such MCP session for this caller; start a new one",
                );
                return rpc_error_response(StatusCode::NOT_FOUND, &Value::Null, &error);
            }
        }
        // The other methods MCP uses carry no message: GET opens an event stream (whose
        // events pass the chain one by one), DELETE ends a session. Their bodies are not
        // forwarded; anything else is not MCP and is not forwarded (nor signed) at all.
        let bodiless = match parts.method {
            Method::GET => accepts_event_stream(&parts.headers),
            Method::DELETE => parts.headers.contains_key("mcp-session-id"),
            _ => false,
        };
        match parts.method {
            Method::POST => self.handle_post(parts, body, subject).await,
            _ if bodiless => {
                drain(body, self.l7.max_body).await;
                self.forward(
                    parts,
                    full(Vec::new()),
                    &Value::Null,
                    subject,
                    CallInfo::default(),
                )
                .await
            }
            _ => {
                drain(body, self.l7.max_body).await;
                tracing::info!(session = self.session.id, method = %parts.method, path = parts.uri.path(), "request that is not MCP refused");
                let error = RpcError::new(
                    code::INVALID_REQUEST,
                    format!(
                        "{} {} is not an MCP request (POST messages, GET with Accept: text/event-stream, DELETE with Mcp-Session-Id)",
                        parts.method,
                        parts.uri.path()
                    ),
                );
                let mut response =
                    rpc_error_response(StatusCode::METHOD_NOT_ALLOWED, &Value::Null, &error);
                response
                    .headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("GET, POST, DELETE"));
                response
            }
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
        self.l7.stages.chain.note(
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
                let found: Vec<String> = found
                    .iter()
                    .map(|(h, what)| format!("{what} in {h}"))
                    .collect();
                let decision =
                    crate::creds::static_keys::blocked("the request carries", &found.join(", "));
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
        format!("{}://{}", self.scheme, self.authority(parts))
    }

    /// The server as the client addressed it: the request's authority, else its Host, else
    /// where the connection was going.
    pub(super) fn authority(&self, parts: &http::request::Parts) -> String {
        parts
            .uri
            .authority()
            .map(|a| a.as_str().to_owned())
            .or_else(|| {
                let host = parts.headers.get(header::HOST)?.to_str().ok()?;
                Some(host.to_owned())
            })
            .unwrap_or_else(|| self.session.orig_dst.to_string())
    }

    /// OAuth Protected Resource Metadata (RFC 9728) for the intercepted server, so MCP
    /// clients can find which issuer to get a token from.
    fn resource_metadata(&self, parts: &http::request::Parts) -> Option<Response<Body>> {
        const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";
        let suffix = parts.uri.path().strip_prefix(WELL_KNOWN)?;
        if !(suffix.is_empty() || suffix.starts_with('/')) || parts.method != Method::GET {
            return None;
        }
        if !self.l7.stages.identity.tokens_required() {
            return None; // the server's own, if it has one
        }
        let resource = format!("{}{}", self.origin(parts), suffix);
        let metadata = serde_json::json!({
            "resource": resource,
            "authorization_servers": self.l7.stages.identity.issuer_urls(),
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
}

/// Text safe inside an HTTP quoted-string.
fn quoted(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .map(|c| if c == '"' || c == '\\' { '\'' } else { c })
        .collect()
}
