//! Recording as part of the interceptor chain: every message, in both directions, with the
//! decision the chain took, lands in the store after the other stages (so payloads are the
//! masked ones). A gateway session is started in the store at its first message and sealed
//! when its client connection ends.

use std::{collections::HashMap, sync::Mutex};

use serde_json::{json, Value};

use super::{EventData, Recorder, SessionMeta};
use crate::clock::now_ms;
use crate::mcp::{
    interceptor::{Exchange, McpState, Observer, Outcome, Session, Stopped},
    jsonrpc::Kind,
    Direction, McpMessage,
};

/// How recorded directions are spelled in the store.
const DIRECTION_C2S: &str = "c2s";
const DIRECTION_S2C: &str = "s2c";

/// What became of a recorded message (the store's `decision` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    Forwarded,
    /// From the server, and not passed on to the client.
    Withheld,
    /// Held for approval: it may still go through once approved.
    Held,
    Refused,
}

impl Disposition {
    fn of(direction: Direction, outcome: &Outcome) -> Self {
        match outcome {
            Ok(_) => Self::Forwarded,
            Err(_) if direction == Direction::ServerToClient => Self::Withheld,
            Err(Stopped::Held(_)) => Self::Held,
            Err(Stopped::Refused { .. }) => Self::Refused,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Forwarded => "forwarded",
            Self::Withheld => "withheld",
            Self::Held => "held",
            Self::Refused => "refused",
        }
    }
}

pub struct Recording {
    recorder: Recorder,
    /// Gateway session id → (store session id, MCP state last recorded).
    open: Mutex<HashMap<u64, (String, McpState)>>,
}

impl Recording {
    pub fn new(recorder: Recorder) -> Self {
        Self {
            recorder,
            open: Mutex::new(HashMap::new()),
        }
    }

    pub fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    /// The store's id for this session, starting it on first use; MCP session changes
    /// (id, protocol version) are recorded as they appear.
    fn store_id(&self, session: &Exchange) -> Option<String> {
        let mcp = session.mcp();
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((id, seen)) = open.get_mut(&session.id) {
            if seen.session_id != mcp.session_id || seen.protocol_version != mcp.protocol_version {
                self.recorder.update_mcp(
                    id,
                    mcp.session_id.as_deref(),
                    mcp.protocol_version.as_deref(),
                );
                *seen = mcp;
            }
            return Some(id.clone());
        }
        let process = session.process.as_ref();
        let meta = SessionMeta {
            server: session.server.clone(),
            orig_dst: session.orig_dst.to_string(),
            sni: session.sni.clone(),
            client: session.client.to_string(),
            pid: process.map(|p| p.pid),
            uid: process.map(|p| p.uid),
            exe: process
                .and_then(|p| p.exe.as_ref())
                .map(|e| e.display().to_string()),
            cgroup: process.and_then(|p| p.cgroup.clone()),
            subject: Some(session.subject.name.clone()),
            mcp_session_id: mcp.session_id.clone(),
            protocol_version: mcp.protocol_version.clone(),
        };
        match self.recorder.start_session(meta) {
            Ok(id) => {
                open.insert(session.id, (id.clone(), mcp));
                Some(id)
            }
            Err(error) => {
                tracing::error!(session = session.id, %error, "cannot start recording the session");
                None
            }
        }
    }
}

impl Observer for Recording {
    /// Records a message and what the chain decided about it.
    fn message(
        &self,
        session: &Exchange,
        direction: Direction,
        msg: &McpMessage,
        outcome: &Outcome,
    ) {
        let Some(id) = self.store_id(session) else {
            return;
        };
        let (kind, method) = match &msg.kind {
            Kind::Request { method, .. } => ("request", Some(method.clone())),
            Kind::Notification { method } => ("notification", Some(method.clone())),
            Kind::Response { .. } => ("response", None),
            Kind::Error { .. } => ("error", None),
        };
        // A response tells its method and tool through the request it answers.
        let pending = msg.id().and_then(|i| session.request_for(i));
        let latency = match (direction, &pending) {
            (Direction::ServerToClient, Some(p)) => Some(p.sent.elapsed().as_micros() as u64),
            _ => None,
        };
        let method = method.or_else(|| pending.as_ref().map(|p| p.method.clone()));
        let tool = msg
            .tool_call()
            .map(|(t, _)| t.to_owned())
            .or_else(|| pending.and_then(|p| p.tool));
        let disposition = Disposition::of(direction, outcome);
        let payload = match (disposition, outcome) {
            // What the server sent and the gateway withheld may be exactly what must not be
            // kept (it could not be masked): record that it was withheld, not the content.
            (Disposition::Withheld, Err(stopped)) => json!({"withheld": stopped.error().message}),
            _ => Value::Object(msg.raw.clone()),
        };
        // The rule that decided, else (a refusal by another stage) the reason.
        let rule = match outcome {
            Ok(passed) => passed.decision.as_ref().map(|d| d.rule.clone()),
            Err(stopped) => Some(
                stopped
                    .decision()
                    .map_or_else(|| stopped.error().message, |d| d.rule.clone()),
            ),
        };
        self.recorder.record(
            &id,
            EventData {
                time_ms: now_ms(),
                direction: match direction {
                    Direction::ClientToServer => DIRECTION_C2S,
                    Direction::ServerToClient => DIRECTION_S2C,
                }
                .into(),
                kind: kind.into(),
                method,
                rpc_id: msg.id().map(ToString::to_string),
                tool,
                payload,
                decision: Some(disposition.as_str().into()),
                rule,
                upstream_latency_us: latency,
            },
        );
    }

    /// A gateway event in the session's recording (a credential minted, a static key seen).
    fn gateway_event(&self, session: &Exchange, kind: &str, details: Value) {
        if let Some(id) = self.store_id(session) {
            self.recorder
                .record(&id, EventData::gateway(now_ms(), kind, details));
        }
    }

    /// Seals the session when its connection ends.
    fn end(&self, session: &Session, how: &str) {
        let entry = self
            .open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&session.id);
        if let Some((id, _)) = entry {
            self.recorder.end_session(&id, how);
        }
    }
}
