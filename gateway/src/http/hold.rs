//! A call the chain held: the pending approval is filed (approvers notified), the call waits
//! for the decision (an event-stream client gets keep-alives meanwhile), and once approved
//! passes the chain again.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt as _;
use http::{header, HeaderValue, Response};
use http_body_util::{BodyExt as _, StreamBody};
use hyper::body::Frame;
use serde_json::Value;

use super::{body::*, conn::*};
use crate::{
    body::{read_limited, Body, BoxError},
    identity::Subject,
    mcp::{interceptor::Exchange, jsonrpc::code, Direction, McpMessage, RpcError},
};

impl Conn {
    /// Creates the pending approval for a held call (its approvers are notified).
    pub(super) fn request_approval(
        &self,
        parts: &http::request::Parts,
        msg: &McpMessage,
        subject: &Arc<Subject>,
        decision: &crate::decision::Decision,
    ) -> Result<crate::approval::Approval, RpcError> {
        let refused = crate::mcp::interceptor::refusal(decision);
        let (Some(approvals), Some(terms)) = (&self.l7.stages.approvals, &decision.approval) else {
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
    pub(super) async fn await_decision(
        &self,
        approval: &crate::approval::Approval,
        msg: &mut McpMessage,
        subject: &Arc<Subject>,
        decision: &crate::decision::Decision,
    ) -> Result<(bool, Option<crate::decision::GrantRef>), RpcError> {
        let Some(approvals) = &self.l7.stages.approvals else {
            return Err(crate::mcp::interceptor::refusal(decision));
        };
        let data = |action: &str| serde_json::json!({"approval": approval.id, "rule": decision.rule, "action": action});
        match approvals.wait(&approval.id, approvals.config().hold).await {
            crate::approval::Outcome::Approved => {
                let exchange = Exchange::new(&self.session, subject);
                let passed = self
                    .l7
                    .stages
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
        if let Some(masker) = &self.l7.stages.preview_masker {
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
}

/// How often a held call's event stream gets a keep-alive comment.
const HOLD_KEEPALIVE: std::time::Duration = std::time::Duration::from_secs(10);

/// Answers a held call at once with an event stream that carries keep-alive comments while
/// approvers decide (clients' read timeouts are often shorter than the hold), then the
/// outcome: the upstream's events, its JSON answer as one event, or the error as one event.
pub(super) fn held_event_stream(
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
                        let mut body = body;
                        match read_limited(&mut body, 64 << 20).await {
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
