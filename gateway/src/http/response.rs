//! The upstream's answer on its way back: a JSON body through the chain message by message,
//! an event stream event by event as it arrives; requests the server makes that the chain
//! refuses are answered to the server with the error.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt as _;
use http::{header, Response, StatusCode};
use http_body_util::{BodyExt as _, StreamBody};
use hyper::body::{Frame, Incoming};
use serde_json::Value;

use super::{body::*, conn::*, L7};
use crate::{
    body::{full, read_limited, Body, BoxError},
    identity::Subject,
    mcp::{
        interceptor::{Exchange, Session},
        jsonrpc::{self, code},
        sse::SseParser,
        Direction, McpMessage, RpcError,
    },
};

impl Conn {
    pub(super) async fn process_response(
        self: &Arc<Self>,
        response: Response<Incoming>,
        id: &Value,
        subject: Arc<Subject>,
        reply_to: http::request::Parts,
    ) -> Response<Body> {
        let (mut parts, body) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        let mcp_session = parts
            .headers
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok());
        if let Some(id) = mcp_session {
            self.l7
                .owners
                .claim(&self.session.server, id, &subject.name);
        }
        self.session.update_mcp(mcp_session, None);
        // An encoded body cannot be masked or checked; it was not asked for (the request's
        // Accept-Encoding is dropped), so it is refused, not relayed.
        let encoding = parts
            .headers
            .get(header::CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_ascii_lowercase());
        if let Some(encoding) = encoding.filter(|e| e != "identity") {
            tracing::warn!(session = self.session.id, %encoding, status = %parts.status, "encoded upstream answer refused");
            let error = RpcError::new(
                code::UPSTREAM_FAILED,
                format!("upstream answered with content encoding `{encoding}`, which the gateway cannot check"),
            );
            return rpc_error_response(StatusCode::BAD_GATEWAY, id, &error);
        }
        let ct = content_type(&parts.headers);
        if ct.as_deref() == Some("text/event-stream") {
            parts.headers.remove(header::CONTENT_LENGTH);
            return Response::from_parts(parts, self.event_stream(body, subject, reply_to));
        }
        if !is_json(&parts.headers) {
            // HTTP errors in text carry no message clients act on: they pass as they are.
            if !parts.status.is_success() {
                let body = body.map_err(|e| -> BoxError { Box::new(e) }).boxed_unsync();
                return Response::from_parts(parts, body);
            }
            // A success (202 Accepted, an empty DELETE answer) passes only empty: a body in a
            // content type the gateway cannot check may still be read as a message by lenient
            // clients, so it is refused rather than relayed unchecked.
            let mut body = body;
            return match read_limited(&mut body, self.l7.max_body).await {
                Ok(bytes) if bytes.is_empty() => Response::from_parts(parts, full(bytes)),
                // 202 says only "accepted" (the legacy transport writes that word as text):
                // the answer comes on the event stream, so the body is dropped, not relayed.
                Ok(_) if parts.status == StatusCode::ACCEPTED => {
                    parts.headers.remove(header::CONTENT_LENGTH);
                    parts.headers.remove(header::CONTENT_TYPE);
                    Response::from_parts(parts, full(Vec::new()))
                }
                Ok(_) | Err(_) => {
                    let ct = content_type(&parts.headers).unwrap_or_else(|| "none".into());
                    tracing::warn!(session = self.session.id, content_type = %ct, status = %parts.status, "upstream answer in a content type the gateway cannot check refused");
                    let error = RpcError::new(
                        code::UPSTREAM_FAILED,
                        format!("upstream answered with content type `{ct}`, which the gateway cannot check (application/json or text/event-stream)"),
                    );
                    rpc_error_response(StatusCode::BAD_GATEWAY, id, &error)
                }
            };
        }
        let max = self.l7.max_body;
        let mut body = body;
        let bytes = match read_limited(&mut body, max).await {
            Ok(bytes) => bytes,
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
                .stages
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
    if let Err(error) = l7.stages.chain.stream_event(&exchange, &event) {
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
        let verdict = l7
            .stages
            .chain
            .message(&exchange, Direction::ServerToClient, msg);
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
