//! Policy: ordered rules that allow, deny or hold for approval each MCP call, by server,
//! method, tool, arguments, subject and process; guardrails on argument values. The first
//! rule that matches decides; when none does, protocol plumbing (initialize, ping, lists)
//! passes and every operation is denied.

pub mod guardrails;
pub mod interceptor;

use std::time::Duration;

use regex::Regex;
use serde::Deserialize;
use serde_json::Value;

pub use crate::decision::{Action, ApprovalTerms, Decision, GrantRef};
use crate::{glob::glob_match, identity::Subject};
pub use guardrails::Guardrail;

/// One call as policy sees it.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    pub server: &'a str,
    pub method: &'a str,
    /// The tool (tools/call), resource URI (resources/*) or prompt (prompts/get) named.
    pub tool: Option<&'a str>,
    pub resource: Option<&'a str>,
    pub prompt: Option<&'a str>,
    pub arguments: Option<&'a Value>,
    pub subject: &'a Subject,
}

/// Methods that keep a session going and reveal nothing by themselves: they pass unless a
/// rule says otherwise. Lists are filtered by what the caller may call.
const PROTOCOL_METHODS: [&str; 11] = [
    "initialize",
    "ping",
    "server/discover",
    "tools/list",
    "resources/list",
    "resources/templates/list",
    "prompts/list",
    "logging/setLevel",
    "completion/complete",
    "roots/list",
    "notifications/*",
];

/// Requests a server may send to the client only when a rule allows them.
pub const SERVER_REQUESTS_NEEDING_A_RULE: [&str; 2] = ["sampling/*", "elicitation/*"];

#[derive(Debug, Clone)]
pub struct ArgumentMatch {
    /// RFC 6901 pointer into the arguments.
    pub pointer: String,
    pub regex: Option<Regex>,
    pub equals: Option<Value>,
    /// Numeric bounds (inclusive): the value is a JSON number, or a string that parses as one
    /// (tools often accept both).
    pub min: Option<f64>,
    pub max: Option<f64>,
}

/// A number as the regex sees it: integral values without exponent or fraction (`1e5` and
/// `100000.0` are `100000`), so the spelling a caller picks cannot dodge a pattern.
fn number_text(n: &serde_json::Number) -> String {
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 9.007_199_254_740_992e15 => {
            format!("{}", f as i64)
        }
        _ => n.to_string(),
    }
}

fn as_number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
        _ => None,
    }
}

impl ArgumentMatch {
    fn matches(&self, arguments: &Value) -> bool {
        let Some(value) = arguments.pointer(&self.pointer) else {
            return false;
        };
        if let Some(expected) = &self.equals {
            if value != expected {
                return false;
            }
        }
        if self.min.is_some() || self.max.is_some() {
            let Some(n) = as_number(value) else {
                return false;
            };
            if self.min.is_some_and(|min| n < min) || self.max.is_some_and(|max| n > max) {
                return false;
            }
        }
        if let Some(regex) = &self.regex {
            let text = match value {
                Value::String(s) => std::borrow::Cow::Borrowed(s.as_str()),
                Value::Number(n) => std::borrow::Cow::Owned(number_text(n)),
                other => std::borrow::Cow::Owned(other.to_string()),
            };
            if !regex.is_match(&text) {
                return false;
            }
        }
        true
    }
}

/// One `[[policy.rules]]` entry. Unset conditions match anything; set ones must all hold.
#[derive(Debug, Clone, Default)]
pub struct Rule {
    pub id: String,
    pub servers: Option<Vec<String>>,
    pub methods: Option<Vec<String>>,
    pub tools: Option<Vec<String>>,
    pub resources: Option<Vec<String>>,
    pub prompts: Option<Vec<String>>,
    pub arguments: Vec<ArgumentMatch>,
    pub subjects: Option<Vec<String>>,
    pub emails: Option<Vec<String>>,
    /// Any one of these groups.
    pub groups: Option<Vec<String>>,
    pub uids: Option<Vec<u32>>,
    pub units: Option<Vec<String>>,
    pub exes: Option<Vec<String>>,
    pub action: Option<Action>,
    pub reason: Option<String>,
    pub approvers: Vec<String>,
    pub approvals: u32,
    pub grant_ttl: Duration,
    /// `tool` (the exact tool called) or `rule` (every tool the rule's globs name).
    pub grant_scope_rule: bool,
}

fn any_glob(patterns: &Option<Vec<String>>, value: Option<&str>, ignore_case: bool) -> bool {
    match patterns {
        None => true,
        Some(patterns) => {
            value.is_some_and(|v| patterns.iter().any(|p| glob_match(p, v, ignore_case)))
        }
    }
}

impl Rule {
    fn action(&self) -> Action {
        self.action.unwrap_or(Action::Deny)
    }

    /// Whether the rule applies to the call; `ignore_arguments` for questions asked without
    /// arguments (which tools to list).
    fn matches(&self, call: &Call, ignore_arguments: bool) -> bool {
        let s = call.subject;
        any_glob(&self.servers, Some(call.server), false)
            && any_glob(&self.methods, Some(call.method), false)
            && any_glob(&self.tools, call.tool, false)
            && any_glob(&self.resources, call.resource, false)
            && any_glob(&self.prompts, call.prompt, false)
            && any_glob(&self.subjects, Some(&s.name), false)
            && any_glob(&self.emails, s.email.as_deref(), true)
            && self
                .groups
                .as_ref()
                .is_none_or(|gs| gs.iter().any(|g| s.groups.contains(g)))
            && self
                .uids
                .as_ref()
                .is_none_or(|uids| s.uid().is_some_and(|u| uids.contains(&u)))
            && any_glob(&self.units, s.unit(), false)
            && any_glob(&self.exes, s.exe().as_deref(), false)
            && (ignore_arguments
                || self
                    .arguments
                    .iter()
                    .all(|m| call.arguments.is_some_and(|a| m.matches(a))))
    }

    fn decision(&self) -> Decision {
        let action = self.action();
        let reason = self.reason.clone().unwrap_or_else(|| match action {
            Action::Allow => format!("allowed by rule `{}`", self.id),
            Action::Deny => format!("denied by rule `{}`", self.id),
            Action::Approve => format!("rule `{}` requires an approval", self.id),
        });
        Decision {
            action,
            rule: self.id.clone(),
            reason,
            approval: (action == Action::Approve).then(|| ApprovalTerms {
                approvers: self.approvers.clone(),
                approvals: self.approvals.max(1),
                grant_ttl: self.grant_ttl,
                grant_tools: if self.grant_scope_rule {
                    self.tools.clone().unwrap_or_default()
                } else {
                    Vec::new()
                },
            }),
            grant: None,
        }
    }
}

/// The rules and guardrails in force; replaced whole on reload.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub rules: Vec<Rule>,
    pub guardrails: Vec<Guardrail>,
}

fn is_protocol(method: &str) -> bool {
    PROTOCOL_METHODS
        .iter()
        .any(|p| glob_match(p, method, false))
}

impl Policy {
    /// The decision for a call from the client: the first matching rule's, then made
    /// stricter by any guardrail the arguments trip.
    pub fn decide(&self, call: &Call) -> Decision {
        let decision = match self.rules.iter().find(|r| r.matches(call, false)) {
            Some(rule) => rule.decision(),
            None if is_protocol(call.method) => Decision {
                action: Action::Allow,
                rule: "default:protocol".into(),
                reason: "protocol message".into(),
                approval: None,
                grant: None,
            },
            None => Decision {
                action: Action::Deny,
                rule: "default:deny".into(),
                reason: "no policy rule allows this call".into(),
                approval: None,
                grant: None,
            },
        };
        if decision.action == Action::Deny {
            return decision;
        }
        match guardrails::check(&self.guardrails, call) {
            Some(tripped) if tripped.action == Action::Deny => tripped,
            // An approval asked by a guardrail keeps the rule's terms when the rule had some.
            Some(tripped) if decision.action == Action::Allow => tripped,
            _ => decision,
        }
    }

    /// The decision for a request the server sends to the client: sampling and elicitation
    /// need a rule that allows them; anything else (roots, ping) passes.
    pub fn decide_server_request(&self, call: &Call) -> Decision {
        let needs_rule = SERVER_REQUESTS_NEEDING_A_RULE
            .iter()
            .any(|p| glob_match(p, call.method, false));
        // Sampling and elicitation are allowed only by rules that name their methods: a rule
        // written for calls (`allow-all`, a group's rule) does not hand the server the
        // client's model or user.
        let applies = |r: &&Rule| r.matches(call, false) && (!needs_rule || r.methods.is_some());
        match self.rules.iter().find(applies) {
            Some(rule) => rule.decision(),
            None if needs_rule => Decision {
                action: Action::Deny,
                rule: "default:server-requests".into(),
                reason: format!(
                    "the server asked for `{}`, which no policy rule allows",
                    call.method
                ),
                approval: None,
                grant: None,
            },
            None => Decision {
                action: Action::Allow,
                rule: "default:protocol".into(),
                reason: "protocol message".into(),
                approval: None,
                grant: None,
            },
        }
    }

    /// Whether a tool belongs in the caller's `tools/list`: some call of it could be
    /// allowed or approved. Rules that depend on arguments count as allowing when they
    /// allow (some arguments may pass) and are skipped when they deny.
    pub fn may_list_tool(&self, call: &Call) -> bool {
        for rule in &self.rules {
            if !rule.matches(call, true) {
                continue;
            }
            match rule.action() {
                Action::Deny if !rule.arguments.is_empty() => continue,
                Action::Deny => return false,
                Action::Allow | Action::Approve => return true,
            }
        }
        false
    }
}

/// `[[policy.rules]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub id: String,
    pub servers: Option<Vec<String>>,
    pub methods: Option<Vec<String>>,
    pub tools: Option<Vec<String>>,
    pub resources: Option<Vec<String>>,
    pub prompts: Option<Vec<String>>,
    #[serde(default)]
    pub arguments: Vec<RawArgumentMatch>,
    pub subjects: Option<Vec<String>>,
    pub emails: Option<Vec<String>>,
    pub groups: Option<Vec<String>>,
    pub uids: Option<Vec<u32>>,
    pub units: Option<Vec<String>>,
    pub exes: Option<Vec<String>>,
    pub action: Action,
    pub reason: Option<String>,
    #[serde(default)]
    pub approvers: Vec<String>,
    pub approvals: Option<u32>,
    pub grant_ttl: Option<String>,
    pub grant_scope: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawArgumentMatch {
    pub pointer: String,
    pub regex: Option<String>,
    pub equals: Option<toml::Value>,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

/// The rules and guardrails of a configuration file, checked. `line` turns a byte offset of
/// the file into its line number, for errors.
pub fn compile(
    rules: Vec<toml::Spanned<RawRule>>,
    guardrails: Vec<toml::Spanned<guardrails::RawGuardrail>>,
    line: &dyn Fn(usize) -> usize,
) -> Result<Policy, Vec<String>> {
    let mut errors = Vec::new();
    let mut ids = std::collections::HashSet::new();
    let mut policy = Policy::default();
    for spanned in rules {
        let at = line(spanned.span().start);
        let raw = spanned.into_inner();
        let mut err = |e: String| errors.push(format!("policy rule `{}` (line {at}): {e}", raw.id));
        if raw.id.is_empty() || raw.id.starts_with("default:") || !ids.insert(raw.id.clone()) {
            err("id must be unique, not empty, and not start with `default:`".into());
        }
        let arguments = raw
            .arguments
            .iter()
            .filter_map(|a| {
                if !a.pointer.starts_with('/') {
                    err(format!(
                        "argument pointer `{}` must start with `/`",
                        a.pointer
                    ));
                    return None;
                }
                let regex = match a.regex.as_deref().map(Regex::new) {
                    None => None,
                    Some(Ok(r)) => Some(r),
                    Some(Err(e)) => {
                        err(format!("argument regex: {e}"));
                        return None;
                    }
                };
                if regex.is_none() && a.equals.is_none() && a.min.is_none() && a.max.is_none() {
                    err(format!(
                        "argument `{}` needs `regex`, `equals`, `min` or `max`",
                        a.pointer
                    ));
                    return None;
                }
                Some(ArgumentMatch {
                    pointer: a.pointer.clone(),
                    regex,
                    equals: a.equals.clone().and_then(|v| serde_json::to_value(v).ok()),
                    min: a.min,
                    max: a.max,
                })
            })
            .collect();
        let grant_ttl = match raw.grant_ttl.as_deref().map(humantime::parse_duration) {
            None => Duration::from_secs(15 * 60),
            Some(Ok(d)) if d >= Duration::from_secs(1) => d,
            Some(Ok(_)) => {
                err("grant_ttl must be at least 1s".into());
                Duration::ZERO
            }
            Some(Err(e)) => {
                err(format!("grant_ttl: {e}"));
                Duration::ZERO
            }
        };
        let grant_scope_rule = match raw.grant_scope.as_deref() {
            None | Some("tool") => false,
            Some("rule") => true,
            Some(other) => {
                err(format!("grant_scope `{other}` is not one of tool, rule"));
                false
            }
        };
        if raw.action == Action::Approve && raw.approvers.is_empty() {
            err("an `approve` rule needs `approvers` (groups that may approve)".into());
        }
        if raw.action != Action::Approve
            && (!raw.approvers.is_empty() || raw.approvals.is_some() || raw.grant_ttl.is_some())
        {
            err("approvers, approvals and grant_ttl belong to `approve` rules".into());
        }
        policy.rules.push(Rule {
            id: raw.id,
            servers: raw.servers,
            methods: raw.methods,
            tools: raw.tools,
            resources: raw.resources,
            prompts: raw.prompts,
            arguments,
            subjects: raw.subjects,
            emails: raw.emails,
            groups: raw.groups,
            uids: raw.uids,
            units: raw.units,
            exes: raw.exes,
            action: Some(raw.action),
            reason: raw.reason,
            approvers: raw.approvers,
            approvals: raw.approvals.unwrap_or(1),
            grant_ttl,
            grant_scope_rule,
        });
    }
    for spanned in guardrails {
        let at = line(spanned.span().start);
        let raw = spanned.into_inner();
        let id = raw.id.clone();
        if !ids.insert(id.clone()) {
            errors.push(format!(
                "guardrail `{id}` (line {at}): id must be unique among rules and guardrails"
            ));
        }
        match Guardrail::compile(raw) {
            Ok(g) => policy.guardrails.push(g),
            Err(e) => errors.push(format!("guardrail `{id}` (line {at}): {e}")),
        }
    }
    if errors.is_empty() {
        Ok(policy)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests;
