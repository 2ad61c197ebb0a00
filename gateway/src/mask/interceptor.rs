//! Masking as a stage of the interceptor chain: the payloads the server sends toward the
//! client (tool results, resource contents, prompt messages, error details, log and progress
//! messages, sampling and elicitation requests) are masked before they leave the gateway, and
//! the arguments of the configured tools before they go upstream.
//! Protocol structure (tool definitions, schemas, ids) is left alone. If masking fails, the
//! message is withheld (fail closed).

use std::{borrow::Cow, collections::BTreeMap, sync::Mutex};

use super::Masker;
use crate::glob::glob_match;
use crate::mcp::{
    interceptor::{Exchange, Interceptor, Verdict},
    jsonrpc::{code, Kind},
    Direction, McpMessage, RpcError,
};

/// Where data (not protocol) lives, per kind of message: (top-level key, member).
const RESPONSE_PAYLOADS: [(&str, &str); 6] = [
    ("result", "content"),           // tools/call
    ("result", "structuredContent"), // tools/call
    ("result", "contents"),          // resources/read
    ("result", "messages"),          // prompts/get
    ("error", "message"),
    ("error", "data"),
];
const REQUEST_PAYLOADS: [(&str, &str); 2] = [
    ("params", "messages"), // sampling/createMessage
    ("params", "message"),  // elicitation/create
];
const ARGUMENT_PAYLOADS: [(&str, &str); 1] = [("params", "arguments")]; // tools/call, upstream
const NOTIFICATION_PAYLOADS: [(&str, &str); 2] = [
    ("params", "data"),    // notifications/message (logging)
    ("params", "message"), // notifications/progress
];

/// `[[masking.pointers]]`: the value at a JSON pointer (into `result`) masked whole, for the
/// tools named (globs).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PointerRule {
    pub tool: String,
    pub pointer: String,
}

pub struct MaskingInterceptor {
    masker: Masker,
    /// Tools (globs) whose call arguments are masked before they go upstream.
    arguments_of_tools: Vec<String>,
    /// Values at JSON pointers into a tool's result, masked whole.
    pointers: Vec<PointerRule>,
    /// Masked values by detector or field rule, for `mcpgw status`.
    counts: Mutex<BTreeMap<String, u64>>,
}

impl MaskingInterceptor {
    pub fn new(
        masker: Masker,
        arguments_of_tools: Vec<String>,
        pointers: Vec<PointerRule>,
    ) -> Self {
        Self {
            masker,
            arguments_of_tools,
            pointers,
            counts: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn counts(&self) -> BTreeMap<String, u64> {
        self.counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn mask(&self, session: &Exchange, direction: Direction, msg: &mut McpMessage) -> Verdict {
        let paths: &[(&str, &str)] = match (direction, &msg.kind) {
            (Direction::ServerToClient, Kind::Response { .. } | Kind::Error { .. }) => {
                &RESPONSE_PAYLOADS
            }
            (Direction::ServerToClient, Kind::Request { .. }) => &REQUEST_PAYLOADS,
            (Direction::ServerToClient, Kind::Notification { .. }) => &NOTIFICATION_PAYLOADS,
            (Direction::ClientToServer, _) => match msg.tool_call() {
                Some((tool, _))
                    if self
                        .arguments_of_tools
                        .iter()
                        .any(|g| glob_match(g, tool, false)) =>
                {
                    &ARGUMENT_PAYLOADS
                }
                _ => return Verdict::Continue,
            },
        };
        // `hash` pseudonyms are stable within an MCP session (which may span connections),
        // else within the gateway session.
        let salt = session
            .mcp()
            .session_id
            .unwrap_or_else(|| session.id.to_string());
        let mut findings = Vec::new();
        for (outer, inner) in paths {
            let Some(value) = msg.raw.get_mut(*outer).and_then(|v| v.get_mut(*inner)) else {
                continue;
            };
            match self.masker.mask_value(value, salt.as_bytes()) {
                Ok(found) => findings.extend(
                    found
                        .into_iter()
                        .map(|f| (format!("/{outer}/{inner}{}", f.pointer), f.detector)),
                ),
                Err(error) => {
                    tracing::warn!(session = session.id, %error, "masking failed; message withheld");
                    return Verdict::Reject(RpcError::new(
                        code::GATEWAY_REFUSED,
                        "the gateway could not mask this message, so it was withheld",
                    ));
                }
            }
        }
        if matches!(msg.kind, Kind::Response { .. }) && direction == Direction::ServerToClient {
            findings.extend(self.mask_pointers(session, msg));
        }
        if findings.is_empty() {
            return Verdict::Continue;
        }
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        for (pointer, detector) in &findings {
            match counts.get_mut(detector.as_ref()) {
                Some(n) => *n += 1,
                None => {
                    counts.insert(detector.to_string(), 1);
                }
            }
            // Where and what kind, never the value.
            tracing::debug!(session = session.id, detector = %detector, pointer = %pointer, "masked");
        }
        Verdict::Modified
    }
}

impl MaskingInterceptor {
    /// Pointer rules of the tool this response answers. When the answer cannot be tied to
    /// its call (it came on another connection, as in the legacy SSE transport), every rule
    /// applies: better a value masked needlessly than one let through.
    fn mask_pointers(
        &self,
        session: &Exchange,
        msg: &mut McpMessage,
    ) -> Vec<(String, Cow<'static, str>)> {
        if self.pointers.is_empty() {
            return Vec::new();
        }
        let pending = msg.id().and_then(|id| session.request_for(id));
        let applies = |rule: &PointerRule| match &pending {
            Some(p) if p.method == "tools/call" => p
                .tool
                .as_deref()
                .is_some_and(|t| glob_match(&rule.tool, t, false)),
            Some(_) => false,
            None => true,
        };
        let mut findings = Vec::new();
        for rule in self.pointers.iter().filter(|r| applies(r)) {
            let target = msg
                .raw
                .get_mut("result")
                .and_then(|r| r.pointer_mut(&rule.pointer));
            if let Some(value) = target {
                *value = serde_json::Value::String("[REDACTED:POINTER]".into());
                findings.push((
                    format!("/result{}", rule.pointer),
                    Cow::Owned(format!("pointer:{}", rule.pointer)),
                ));
            }
        }
        findings
    }
}

impl Interceptor for MaskingInterceptor {
    fn name(&self) -> &'static str {
        "masking"
    }

    fn on_message(
        &self,
        session: &Exchange,
        direction: Direction,
        msg: &mut McpMessage,
    ) -> Verdict {
        self.mask(session, direction, msg)
    }
}
