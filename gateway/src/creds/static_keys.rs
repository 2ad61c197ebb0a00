//! Long-lived AWS keys in client traffic: access key ids (`AKIA…`/`ASIA…`) and secret-key
//! shapes in request headers or tool arguments. Each sighting is logged and recorded (the
//! key id shortened to its last four characters); the call is blocked, or the key stripped,
//! or (for servers without `[servers.aws]`, by default) only reported.

use regex::Regex;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StaticKeys {
    Block,
    Strip,
    Log,
}

fn access_key() -> &'static Regex {
    static RE: std::sync::LazyLock<Regex> = std::sync::LazyLock::new(|| {
        Regex::new(crate::mask::AWS_ACCESS_KEY_ID).expect("valid regex")
    });
    &RE
}

fn secret_key() -> &'static Regex {
    // A 40-character secret next to a name that says what it is.
    static RE: std::sync::LazyLock<Regex> = std::sync::LazyLock::new(|| {
        Regex::new(r#"(?i)(?:aws_?secret_?access_?key|secret_?access_?key|aws_?secret)["']?\s*[:=]\s*["']?[A-Za-z0-9/+=]{40}\b"#)
            .expect("valid regex")
    });
    &RE
}

/// What a sighting is logged and recorded as: kind and a shortened key id.
pub fn describe(text: &str) -> Vec<String> {
    let mut found: Vec<String> = access_key()
        .find_iter(text)
        .map(|m| format!("access key id …{}", &m.as_str()[16..]))
        .collect();
    if secret_key().is_match(text) {
        found.push("secret access key".into());
    }
    found
}

/// Replaces keys in `text`.
fn strip(text: &str) -> String {
    let text = access_key().replace_all(text, "[REMOVED:AWS_KEY]");
    secret_key()
        .replace_all(&text, "[REMOVED:AWS_SECRET]")
        .into_owned()
}

/// Sightings in every string of `value`; with `remove`, the keys are replaced in place.
pub fn in_value(value: &mut Value, remove: bool) -> Vec<String> {
    let mut found = Vec::new();
    walk(value, remove, &mut found);
    found
}

fn walk(value: &mut Value, remove: bool, found: &mut Vec<String>) {
    match value {
        Value::String(s) => {
            let seen = describe(s);
            if !seen.is_empty() && remove {
                *s = strip(s);
            }
            found.extend(seen);
        }
        Value::Array(items) => items.iter_mut().for_each(|v| walk(v, remove, found)),
        Value::Object(map) => map.values_mut().for_each(|v| walk(v, remove, found)),
        _ => {}
    }
}

/// Sightings in request headers (name: what), e.g. a SigV4 `Authorization` with a
/// long-lived key id.
pub fn in_headers(headers: &http::HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter_map(|(k, v)| Some((k, v.to_str().ok()?)))
        .flat_map(|(k, v)| describe(v).into_iter().map(move |d| (k.to_string(), d)))
        .collect()
}

/// The chain stage that looks for long-lived keys in call arguments, per server.
pub struct StaticKeyGuard {
    per_server: std::collections::HashMap<String, StaticKeys>,
}

/// Rule id of refusals for a long-lived key.
pub const RULE: &str = "builtin:static-aws-key";

/// The decision that refuses a request with long-lived keys: `carrier` says where they are
/// ("the arguments carry"), `found` what they are.
pub fn blocked(carrier: &str, found: &str) -> crate::decision::Decision {
    crate::decision::Decision {
        action: crate::decision::Action::Deny,
        rule: RULE.into(),
        reason: format!(
            "{carrier} a long-lived AWS key ({found}); the gateway supplies short-lived credentials"
        ),
        approval: None,
        grant: None,
    }
}

impl StaticKeyGuard {
    /// `servers`: each server's name and what long-lived keys in its calls get.
    pub fn new(servers: impl IntoIterator<Item = (String, StaticKeys)>) -> Self {
        Self {
            per_server: servers.into_iter().collect(),
        }
    }

    pub fn action(&self, server: &str) -> StaticKeys {
        self.per_server
            .get(server)
            .copied()
            .unwrap_or(StaticKeys::Log)
    }
}

impl crate::mcp::interceptor::Interceptor for StaticKeyGuard {
    fn name(&self) -> &'static str {
        "static-keys"
    }

    fn on_request(
        &self,
        exchange: &crate::mcp::interceptor::Exchange,
        direction: crate::mcp::Direction,
        msg: &mut crate::mcp::McpMessage,
    ) -> crate::mcp::interceptor::Verdict {
        use crate::mcp::interceptor::Verdict;
        if direction != crate::mcp::Direction::ClientToServer {
            return Verdict::Continue;
        }
        let action = self.action(&exchange.server);
        let Some(params) = msg.raw.get_mut("params") else {
            return Verdict::Continue;
        };
        let found = in_value(params, action == StaticKeys::Strip);
        if found.is_empty() {
            return Verdict::Continue;
        }
        tracing::warn!(
            session = exchange.id,
            subject = %exchange.subject.name,
            server = %exchange.server,
            found = ?found,
            ?action,
            "long-lived AWS key in the call's arguments"
        );
        match action {
            StaticKeys::Log => Verdict::Continue,
            StaticKeys::Strip => Verdict::Modified,
            StaticKeys::Block => {
                Verdict::Decided(blocked("the arguments carry", &found.join(", ")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn keys_are_found_and_stripped_anywhere_in_arguments() {
        let mut args = json!({
            "cmd": "aws s3 ls --profile x",
            "env": {"AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE",
                    "config": "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"},
            "list": ["ASIAY34FZKBOKMUTVV7A"]
        });
        let found = in_value(&mut args.clone(), false);
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(found.contains(&"access key id …MPLE".to_string()));
        let found = in_value(&mut args, true);
        assert_eq!(found.len(), 3);
        let text = args.to_string();
        assert!(!text.contains("AKIAIOSFODNN7EXAMPLE") && !text.contains("wJalrXUtnFEMI"));
        assert!(text.contains("[REMOVED:AWS_KEY]") && text.contains("[REMOVED:AWS_SECRET]"));
        // Look-alikes: an id too short, lower case, a UUID.
        let mut clean = json!({"a": "AKIA1234", "b": "akiaiosfodnn7example", "c": "3f1c2a9e-1b2c-4d5e-8f90-123456789abc"});
        assert!(in_value(&mut clean, false).is_empty());
    }

    #[test]
    fn sigv4_authorization_headers_give_the_key_away() {
        let mut h = http::HeaderMap::new();
        h.insert("authorization", "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20261126/us-east-1/execute-api/aws4_request, SignedHeaders=host, Signature=abc".parse().unwrap());
        assert_eq!(
            in_headers(&h),
            [(
                "authorization".to_string(),
                "access key id …MPLE".to_string()
            )]
        );
    }
}
