//! Sending a checked request upstream: hop-by-hop headers dropped, the request shaped for
//! the upstream's HTTP version, AWS credentials minted and the request SigV4-signed for
//! servers behind AWS auth; and answering a server's refused request back to it.

use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use serde_json::Value;

use super::{body::*, conn::*};
use crate::{
    body::{full, read_limited, Body},
    identity::Subject,
    mcp::{interceptor::Exchange, jsonrpc::code, RpcError},
};

impl Conn {
    pub(super) async fn forward(
        self: &Arc<Self>,
        parts: http::request::Parts,
        body: Body,
        id: &Value,
        subject: Arc<Subject>,
        call: CallInfo,
    ) -> Response<Body> {
        let authority = self.authority(&parts);
        let path = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let mut headers = parts.headers.clone();
        strip_hop_by_hop(&mut headers);
        // Answers must come in a form the chain can read: no compression.
        headers.remove(header::ACCEPT_ENCODING);
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
            *req.headers_mut() = headers.clone();
            crate::client::shape(&mut req, h2, self.scheme, &authority, &path);
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
    pub(super) async fn answer_server(
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
        let Some(minter) = &self.l7.stages.minter else {
            return Err(fail(
                StatusCode::BAD_GATEWAY,
                "AWS credentials are not available in this gateway".into(),
            ));
        };
        crate::creds::sigv4::strip_client_auth(headers);
        let mut body = body;
        let bytes = match read_limited(&mut body, self.l7.max_body).await {
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
                    self.l7.stages.chain.note(
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
}

/// The request an answer to the server is sent as: a POST to the same endpoint, in the same
/// MCP session, as the request whose response stream carried the server's request.
pub(super) fn reply_template(parts: &http::request::Parts) -> http::request::Parts {
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
