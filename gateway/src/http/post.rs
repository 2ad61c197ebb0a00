//! A POST: its body read (bounded) and parsed, every JSON-RPC message through the chain; all
//! pass and the POST is forwarded, any is refused and none is, a single held call waits.

use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::Value;

use super::{body::*, conn::*, hold::*};
use crate::{
    body::{full, read_limited, Body, BodyError},
    identity::Subject,
    mcp::{
        interceptor::{Exchange, Stopped},
        jsonrpc::{self, code},
        Direction, McpMessage, RpcError,
    },
};

impl Conn {
    pub(super) async fn handle_post(
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
            drain(body, max).await;
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
        let mut body = body;
        let bytes = match read_limited(&mut body, max).await {
            Ok(bytes) => bytes,
            Err(BodyError::TooLarge { .. }) => {
                drain(body, DRAIN_MAX).await;
                return rpc_error_response(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &Value::Null,
                    &too_large(),
                );
            }
            Err(BodyError::Read(e)) => {
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
                .stages
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
                        held = Some(*decision);
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
    pub(super) async fn send_on(
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
}
