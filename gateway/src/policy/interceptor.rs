//! Policy in the interceptor chain: decides each client request, filters `tools/list` to
//! what the caller may call, blocks tools whose definition changed after the client saw it
//! ("rug pulls"), and refuses server-initiated sampling and elicitation no rule allows.

use std::{
    collections::{HashMap, HashSet},
    hash::{Hash, Hasher},
    sync::{Arc, Mutex, RwLock},
};

use serde_json::Value;

use super::{Action, Call, Decision, Policy};
use crate::approval::Approvals;
use crate::mcp::{
    interceptor::{Exchange, Interceptor, Verdict},
    Direction, McpMessage,
};

/// Rule id of rug-pull blocks.
pub const RUG_PULL: &str = "builtin:rug-pull";
/// Rule id of refusals of a method sent as a notification (no id).
pub const NOT_A_NOTIFICATION: &str = "builtin:request-without-id";
/// MCP sessions whose tool definitions are remembered at most (oldest forgotten first).
const MAX_SESSIONS: usize = 10_000;

#[derive(Default)]
struct ToolsSeen {
    /// Tool name → hash of the definition the client was shown.
    definitions: HashMap<String, u64>,
    /// Tools whose definition changed: calls to them are refused for the rest of the session.
    pulled: HashSet<String>,
}

pub struct PolicyInterceptor {
    policy: RwLock<Arc<Policy>>,
    /// Grants that let `approve` calls through; `None`: approvals are off.
    approvals: Option<Arc<Approvals>>,
    metrics: Arc<crate::metrics::Metrics>,
    sessions: Mutex<(
        HashMap<String, ToolsSeen>,
        std::collections::VecDeque<String>,
    )>,
}

impl PolicyInterceptor {
    pub fn new(
        policy: Policy,
        approvals: Option<Arc<Approvals>>,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Self {
        Self {
            policy: RwLock::new(Arc::new(policy)),
            approvals,
            metrics,
            sessions: Mutex::new(Default::default()),
        }
    }

    pub fn policy(&self) -> Arc<Policy> {
        self.policy
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Puts a new policy in force for every message from now on.
    pub fn replace(&self, policy: Policy) {
        *self.policy.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(policy);
    }

    /// The key tool definitions are remembered under: the MCP session when there is one
    /// (it may span connections), else the connection.
    fn session_key(exchange: &Exchange) -> String {
        match exchange.mcp().session_id {
            Some(id) => format!("{}/mcp/{id}", exchange.server),
            None => format!("{}/conn/{}", exchange.server, exchange.id),
        }
    }

    fn is_pulled(&self, exchange: &Exchange, tool: &str) -> bool {
        let sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions
            .0
            .get(&Self::session_key(exchange))
            .is_some_and(|s| s.pulled.contains(tool))
    }

    /// Filters a `tools/list` result to what the caller may call and drops tools whose
    /// definition changed since the client last saw them; `true` when the list changed.
    fn check_tool_list(&self, exchange: &Exchange, msg: &mut McpMessage) -> bool {
        let policy = self.policy();
        let key = Self::session_key(exchange);
        let Some(tools) = msg
            .raw
            .get_mut("result")
            .and_then(|r| r.get_mut("tools"))
            .and_then(Value::as_array_mut)
        else {
            return false;
        };
        let before = tools.len();
        let mut guard = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let (sessions, order) = &mut *guard;
        if !sessions.contains_key(&key) {
            if sessions.len() >= MAX_SESSIONS {
                if let Some(oldest) = order.pop_front() {
                    sessions.remove(&oldest);
                }
            }
            order.push_back(key.clone());
        }
        let seen = sessions.entry(key).or_default();
        tools.retain(|tool| {
            let Some(name) = tool.get("name").and_then(Value::as_str) else {
                return false; // a tool without a name cannot be checked
            };
            let hash = definition_hash(tool);
            match seen.definitions.get(name) {
                Some(known) if *known != hash => {
                    tracing::warn!(session = exchange.id, server = %exchange.server, tool = name, "tool definition changed within the session (rug pull): tool blocked");
                    seen.pulled.insert(name.to_owned());
                }
                Some(_) => {}
                None => {
                    seen.definitions.insert(name.to_owned(), hash);
                }
            }
            if seen.pulled.contains(name) {
                return false;
            }
            policy.may_list_tool(&Call {
                server: &exchange.server,
                method: "tools/call",
                tool: Some(name),
                resource: None,
                prompt: None,
                arguments: None,
                subject: exchange.subject,
            })
        });
        tools.len() != before
    }
}

fn definition_hash(tool: &Value) -> u64 {
    // serde_json maps are ordered by key, so equal definitions print alike.
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    tool.to_string().hash(&mut hasher);
    hasher.finish()
}

/// The call a request makes, as policy sees it.
pub fn call_of<'a>(exchange: &'a Exchange, msg: &'a McpMessage) -> Option<Call<'a>> {
    let method = msg.method()?;
    let params = msg.params();
    let param = |name: &str| params.and_then(|p| p.get(name)).and_then(Value::as_str);
    let (tool, arguments) = match msg.tool_call() {
        Some((name, args)) => (Some(name), args),
        None if method == "prompts/get" => (None, params.and_then(|p| p.get("arguments"))),
        None => (None, None),
    };
    Some(Call {
        server: &exchange.server,
        method,
        tool,
        resource: method
            .starts_with("resources/")
            .then(|| param("uri"))
            .flatten(),
        prompt: (method == "prompts/get").then(|| param("name")).flatten(),
        arguments,
        subject: exchange.subject,
    })
}

impl Interceptor for PolicyInterceptor {
    fn name(&self) -> &'static str {
        "policy"
    }

    fn on_request(
        &self,
        exchange: &Exchange,
        direction: Direction,
        msg: &mut McpMessage,
    ) -> Verdict {
        let Some(call) = call_of(exchange, msg) else {
            return Verdict::Continue;
        };
        let decision = match direction {
            Direction::ClientToServer => match call.tool {
                Some(tool) if self.is_pulled(exchange, tool) => Decision {
                    action: Action::Deny,
                    rule: RUG_PULL.into(),
                    reason: format!(
                        "the definition of tool `{tool}` changed after the client saw it"
                    ),
                    approval: None,
                    grant: None,
                },
                _ => self.policy().decide(&call),
            },
            Direction::ServerToClient => self.policy().decide_server_request(&call),
        };
        // A live grant lets an `approve` call through without a new approval.
        let decision = match (decision.action, &self.approvals, call.tool) {
            (Action::Approve, Some(approvals), Some(tool)) => {
                match approvals.covering_grant(&exchange.subject.name, call.server, tool) {
                    Some(grant) => Decision {
                        action: Action::Allow,
                        reason: format!("covered by grant {} (rule `{}`)", grant.id, decision.rule),
                        grant: Some(grant),
                        ..decision
                    },
                    None => decision,
                }
            }
            _ => decision,
        };
        tracing::debug!(session = exchange.id, subject = %exchange.subject.name, method = call.method, tool = call.tool, rule = %decision.rule, action = ?decision.action, "policy decision");
        let action = match decision.action {
            Action::Allow => "allow",
            Action::Deny => "deny",
            Action::Approve => "approve",
        };
        self.metrics.decision(&decision.rule, action);
        if decision.action != Action::Allow {
            tracing::info!(session = exchange.id, subject = %exchange.subject.name, method = call.method, tool = call.tool, rule = %decision.rule, action = ?decision.action, reason = %decision.reason, "call not allowed");
        }
        Verdict::Decided(decision)
    }

    /// MCP notifications are `notifications/*`. Anything else without an id is a request
    /// in disguise (`tools/call` with no id still runs on the server): refused, never
    /// forwarded around the decision.
    fn on_notification(
        &self,
        exchange: &Exchange,
        direction: Direction,
        msg: &mut McpMessage,
    ) -> Verdict {
        let method = msg.method().unwrap_or_default();
        if direction != Direction::ClientToServer || method.starts_with("notifications/") {
            return Verdict::Continue;
        }
        tracing::info!(session = exchange.id, subject = %exchange.subject.name, method, "request without an id refused");
        Verdict::Decided(Decision {
            action: Action::Deny,
            rule: NOT_A_NOTIFICATION.into(),
            reason: format!("`{method}` without an id is a request the gateway cannot answer; send it with an id"),
            approval: None,
            grant: None,
        })
    }

    fn on_response(
        &self,
        exchange: &Exchange,
        direction: Direction,
        msg: &mut McpMessage,
    ) -> Verdict {
        if direction != Direction::ServerToClient {
            return Verdict::Continue;
        }
        // Any result carrying a tool list is checked, whether or not its request was seen.
        if msg.tool_definitions().is_some() && self.check_tool_list(exchange, msg) {
            Verdict::Modified
        } else {
            Verdict::Continue
        }
    }
}
