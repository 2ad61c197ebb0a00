//! The interceptor chain: the stages that see and act on every JSON-RPC message (policy,
//! static-key checks, masking), in order, and the observer that records each message with
//! the outcome. What it says about a message is a value: passed (with the decision that let
//! it through, and its grant), refused, or held for approval.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use serde_json::json;

use super::{
    jsonrpc::{code, McpMessage},
    sse::SseEvent,
    RpcError,
};
use crate::{
    addr::Destination,
    decision::{Action, Decision, GrantRef},
    identity::Subject,
    intercept::ProcessInfo,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    ClientToServer,
    ServerToClient,
}

/// What an interceptor decided about a message.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Continue,
    /// The interceptor changed the message; it is re-serialized before forwarding.
    Modified,
    /// A decision about the call (policy, a built-in rule): `allow` lets it on, `deny`
    /// refuses it, `approve` holds it for approval. The decision is recorded.
    Decided(Decision),
    /// The message is not forwarded; the client gets this error instead.
    Reject(RpcError),
}

/// A message the chain let through.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Passed {
    /// Some stage changed the message: it is re-serialized before forwarding.
    pub modified: bool,
    /// The decision that let it through, if a stage made one.
    pub decision: Option<Decision>,
}

impl Passed {
    /// The grant that let the call through (an `approve` rule covered by a live grant).
    pub fn grant(&self) -> Option<GrantRef> {
        self.decision.as_ref()?.grant.clone()
    }
}

/// A message the chain stopped.
#[derive(Debug, Clone, PartialEq)]
pub enum Stopped {
    /// Not forwarded: the error says why (`decision`: the decision that refused it).
    Refused {
        error: RpcError,
        decision: Option<Box<Decision>>,
    },
    /// A call an `approve` rule holds until approvers decide.
    Held(Box<Decision>),
}

impl Stopped {
    /// The error the sender gets when the message goes no further.
    pub fn error(&self) -> RpcError {
        match self {
            Self::Refused { error, .. } => error.clone(),
            Self::Held(decision) => refusal(decision),
        }
    }

    /// The decision behind it, if a stage made one.
    pub fn decision(&self) -> Option<&Decision> {
        match self {
            Self::Refused { decision, .. } => decision.as_deref(),
            Self::Held(decision) => Some(decision),
        }
    }
}

/// What the chain says about one message.
pub type Outcome = Result<Passed, Stopped>;

/// The JSON-RPC error for a decision that does not let the call through.
pub fn refusal(decision: &Decision) -> RpcError {
    let data = json!({"rule": decision.rule, "reason": decision.reason, "action": decision.action});
    match decision.action {
        Action::Approve => RpcError::new(
            code::APPROVAL_REQUIRED,
            format!("approval required: {}", decision.reason),
        )
        .with_data(data),
        _ => RpcError::new(
            code::GATEWAY_REFUSED,
            format!("denied by policy: {}", decision.reason),
        )
        .with_data(data),
    }
}

/// The gateway session a message belongs to: one client connection, what it dialed, who
/// made it, and the MCP session it speaks.
#[derive(Debug)]
pub struct Session {
    pub id: u64,
    pub client: SocketAddr,
    pub orig_dst: Destination,
    pub server: String,
    pub sni: Option<String>,
    pub process: Option<ProcessInfo>,
    pub mcp: Mutex<McpState>,
    /// Requests sent upstream and not answered yet, by JSON-RPC id (as JSON text), so a
    /// response can be tied to the method and tool it answers.
    pub pending: Mutex<std::collections::HashMap<String, PendingRequest>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingRequest {
    pub method: String,
    pub tool: Option<String>,
    /// When the request went upstream: the answer's arrival gives the upstream latency.
    pub sent: std::time::Instant,
}

/// Requests remembered per connection at most; beyond, answers are not tied to their calls
/// (stages that need the tie then act as if the tool were unknown).
const MAX_PENDING: usize = 4096;

#[derive(Debug, Default, Clone)]
pub struct McpState {
    pub session_id: Option<String>,
    pub protocol_version: Option<String>,
}

impl Session {
    pub fn mcp(&self) -> McpState {
        self.mcp.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Remembers a request that goes upstream.
    pub fn note_request(&self, msg: &McpMessage) {
        let (Some(id), Some(method)) = (msg.id(), msg.method()) else {
            return;
        };
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if pending.len() < MAX_PENDING {
            let tool = msg.tool_call().map(|(name, _)| name.to_owned());
            pending.insert(
                id.to_string(),
                PendingRequest {
                    method: method.to_owned(),
                    tool,
                    sent: std::time::Instant::now(),
                },
            );
        }
    }

    /// The request a response answers, if it went through this connection.
    pub fn request_for(&self, id: &serde_json::Value) -> Option<PendingRequest> {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id.to_string())
            .cloned()
    }

    /// Forgets a request once its answer has passed.
    pub fn answered(&self, id: &serde_json::Value) {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id.to_string());
    }

    pub fn update_mcp(&self, session_id: Option<&str>, protocol_version: Option<&str>) {
        let mut state = self.mcp.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(id) = session_id {
            state.session_id = Some(id.to_owned());
        }
        if let Some(v) = protocol_version {
            state.protocol_version = Some(v.to_owned());
        }
    }
}

/// One message's context: the connection it came on and the caller of the HTTP exchange
/// that carries it (which may differ between requests on one connection). Derefs to the
/// session.
pub struct Exchange<'a> {
    pub session: &'a Session,
    pub subject: &'a Subject,
}

impl<'a> Exchange<'a> {
    pub fn new(session: &'a Session, subject: &'a Subject) -> Self {
        Self { session, subject }
    }
}

impl std::ops::Deref for Exchange<'_> {
    type Target = Session;

    fn deref(&self) -> &Session {
        self.session
    }
}

/// Hooks per kind of message. By default every kind goes to `on_message`, which lets the
/// message through unchanged: a stage that treats all messages alike implements only that.
pub trait Interceptor: Send + Sync {
    fn name(&self) -> &'static str;

    /// Any message, unless the kind's own hook below is implemented.
    fn on_message(
        &self,
        _session: &Exchange,
        _direction: Direction,
        _msg: &mut McpMessage,
    ) -> Verdict {
        Verdict::Continue
    }

    /// A request: client→server, or server→client (sampling, elicitation, roots).
    fn on_request(
        &self,
        session: &Exchange,
        direction: Direction,
        msg: &mut McpMessage,
    ) -> Verdict {
        self.on_message(session, direction, msg)
    }

    /// A response or error to a request.
    fn on_response(
        &self,
        session: &Exchange,
        direction: Direction,
        msg: &mut McpMessage,
    ) -> Verdict {
        self.on_message(session, direction, msg)
    }

    fn on_notification(
        &self,
        session: &Exchange,
        direction: Direction,
        msg: &mut McpMessage,
    ) -> Verdict {
        self.on_message(session, direction, msg)
    }

    /// Every server-sent event, before its data (if JSON-RPC) goes through the hooks above.
    fn on_stream_event(&self, _session: &Exchange, _event: &SseEvent) -> Verdict {
        Verdict::Continue
    }
}

/// Sees every message after the stages, with the outcome, and the gateway's own events:
/// the recording.
pub trait Observer: Send + Sync {
    fn message(
        &self,
        exchange: &Exchange,
        direction: Direction,
        msg: &McpMessage,
        outcome: &Outcome,
    );

    /// A gateway event (not a message): a credential minted, a static key seen.
    fn gateway_event(&self, exchange: &Exchange, kind: &str, details: serde_json::Value);

    /// The client connection of `session` ended (`how`: "closed" or a reason).
    fn end(&self, session: &Session, how: &str);
}

/// Interceptors in order; the first refusal wins.
#[derive(Clone, Default)]
pub struct Chain {
    stages: Vec<Arc<dyn Interceptor>>,
    /// Last of all: every message and the outcome go to the recording.
    observer: Option<Arc<dyn Observer>>,
}

impl Chain {
    pub fn new(stages: Vec<Arc<dyn Interceptor>>) -> Self {
        Self {
            stages,
            observer: None,
        }
    }

    pub fn with_observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Runs the message hooks, then hands the message and the outcome to the observer.
    pub fn message(
        &self,
        exchange: &Exchange,
        direction: Direction,
        msg: &mut McpMessage,
    ) -> Outcome {
        let outcome = self.run_stages(exchange, direction, msg);
        if let Some(observer) = &self.observer {
            observer.message(exchange, direction, msg, &outcome);
        }
        outcome
    }

    fn run_stages(
        &self,
        exchange: &Exchange,
        direction: Direction,
        msg: &mut McpMessage,
    ) -> Outcome {
        use super::jsonrpc::Kind;
        let mut passed = Passed::default();
        for interceptor in &self.stages {
            let verdict = match msg.kind {
                Kind::Request { .. } => interceptor.on_request(exchange, direction, msg),
                Kind::Notification { .. } => interceptor.on_notification(exchange, direction, msg),
                Kind::Response { .. } | Kind::Error { .. } => {
                    interceptor.on_response(exchange, direction, msg)
                }
            };
            let stopped = match verdict {
                Verdict::Continue => continue,
                Verdict::Modified => {
                    passed.modified = true;
                    continue;
                }
                Verdict::Decided(decision) => match decision.action {
                    Action::Allow => {
                        passed.decision = Some(decision);
                        continue;
                    }
                    Action::Deny => Stopped::Refused {
                        error: refusal(&decision),
                        decision: Some(Box::new(decision)),
                    },
                    Action::Approve => Stopped::Held(Box::new(decision)),
                },
                // A refusal without a decision of its own keeps the one made before it.
                Verdict::Reject(error) => Stopped::Refused {
                    error,
                    decision: passed.decision.take().map(Box::new),
                },
            };
            tracing::info!(session = exchange.id, interceptor = interceptor.name(), error = %stopped.error().message, "message stopped");
            return Err(stopped);
        }
        Ok(passed)
    }

    /// Records a gateway event (not a message) in the session's recording.
    pub fn note(&self, exchange: &Exchange, kind: &str, details: serde_json::Value) {
        if let Some(observer) = &self.observer {
            observer.gateway_event(exchange, kind, details);
        }
    }

    /// The client connection of `session` ended (`how`: "closed" or a reason).
    pub fn end_session(&self, session: &Session, how: &str) {
        if let Some(observer) = &self.observer {
            observer.end(session, how);
        }
    }

    pub fn stream_event(&self, session: &Exchange, event: &SseEvent) -> Result<(), RpcError> {
        for interceptor in &self.stages {
            match interceptor.on_stream_event(session, event) {
                Verdict::Reject(error) => return Err(error),
                Verdict::Decided(d) if d.action != Action::Allow => return Err(refusal(&d)),
                _ => {}
            }
        }
        Ok(())
    }
}

/// The start of an MCP session id, enough to tell sessions apart in a log without handing
/// out the id, which is a bearer secret while the session lives.
pub fn redacted(session_id: &str) -> String {
    let head: String = session_id.chars().take(6).collect();
    format!("{head}…")
}

/// Logs every message (method, id, tool) at debug level, and tool calls at info.
pub struct LoggingInterceptor;

impl LoggingInterceptor {
    fn log(session: &Exchange, direction: Direction, msg: &McpMessage) {
        let mcp = session.mcp();
        let tool = msg.tool_call().map(|(name, _)| name);
        if let Some(tools) = msg.tool_definitions() {
            tracing::debug!(session = session.id, server = %session.server, tools = tools.len(), "tools/list result");
        }
        if tool.is_some() {
            tracing::info!(
                session = session.id,
                server = %session.server,
                client = %session.client,
                sni = session.sni.as_deref().unwrap_or("-"),
                pid = session.process.as_ref().map(|p| p.pid),
                mcp_session = mcp.session_id.as_deref().map_or_else(|| "-".into(), redacted),
                id = %msg.id().map(ToString::to_string).unwrap_or_default(),
                tool,
                "tools/call"
            );
        } else {
            tracing::debug!(
                session = session.id,
                server = %session.server,
                ?direction,
                method = msg.method().unwrap_or("-"),
                id = %msg.id().map(ToString::to_string).unwrap_or_default(),
                "mcp message"
            );
        }
    }
}

impl Interceptor for LoggingInterceptor {
    fn name(&self) -> &'static str {
        "logging"
    }

    fn on_message(
        &self,
        session: &Exchange,
        direction: Direction,
        msg: &mut McpMessage,
    ) -> Verdict {
        Self::log(session, direction, msg);
        Verdict::Continue
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    struct DenyTool(&'static str);

    impl Interceptor for DenyTool {
        fn name(&self) -> &'static str {
            "deny-tool"
        }

        fn on_request(&self, _: &Exchange, _: Direction, msg: &mut McpMessage) -> Verdict {
            match msg.tool_call() {
                Some((name, _)) if name == self.0 => {
                    Verdict::Reject(RpcError::new(code::GATEWAY_REFUSED, "denied"))
                }
                _ => Verdict::Continue,
            }
        }
    }

    struct Tag;

    impl Interceptor for Tag {
        fn name(&self) -> &'static str {
            "tag"
        }

        fn on_response(&self, _: &Exchange, _: Direction, msg: &mut McpMessage) -> Verdict {
            msg.raw.insert("tagged".into(), json!(true));
            Verdict::Modified
        }
    }

    fn session() -> Session {
        Session {
            id: 1,
            client: "127.0.0.1:1".parse().unwrap(),
            orig_dst: Destination::Socket("10.0.3.17:8443".parse().unwrap()),
            server: "s".into(),
            sni: None,
            process: None,
            mcp: Default::default(),
            pending: Default::default(),
        }
    }

    fn msg(v: serde_json::Value) -> McpMessage {
        McpMessage::from_value(v).unwrap()
    }

    #[test]
    fn first_rejection_wins_and_modifications_are_reported() {
        let chain = Chain::new(vec![
            Arc::new(LoggingInterceptor),
            Arc::new(DenyTool("drop_db")),
            Arc::new(Tag),
        ]);
        let session = session();
        let subject = Subject::named("alice", vec![]);
        let s = Exchange::new(&session, &subject);
        let mut call =
            msg(json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"drop_db"}}));
        assert_eq!(
            chain
                .message(&s, Direction::ClientToServer, &mut call)
                .unwrap_err()
                .error()
                .message,
            "denied"
        );
        let mut ok =
            msg(json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo"}}));
        assert_eq!(
            chain
                .message(&s, Direction::ClientToServer, &mut ok)
                .map(|p| p.modified),
            Ok(false)
        );
        let mut response = msg(json!({"jsonrpc":"2.0","id":2,"result":{}}));
        assert_eq!(
            chain
                .message(&s, Direction::ServerToClient, &mut response)
                .map(|p| p.modified),
            Ok(true)
        );
        assert_eq!(response.raw["tagged"], json!(true));
    }

    #[test]
    fn session_ids_are_logged_by_their_start_only() {
        assert_eq!(redacted("0123456789abcdef"), "012345…");
    }
}
