//! `[approval]`: how long calls are held, how long approvals stay pending, who is notified,
//! and which names are one person (`[approval.people]`).

use serde::Deserialize;

use super::{people, ApprovalConfig};
use crate::clock::duration_setting as duration;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApproval {
    pub hold: Option<String>,
    pub pending_ttl: Option<String>,
    pub webhook: Option<String>,
    pub justification_header: Option<String>,
    /// Unix user → approver groups.
    #[serde(default)]
    pub approvers: std::collections::HashMap<String, Vec<String>>,
    /// Person id → that person's names (`unix:LOGIN`, `uid:N`, `sub:…`, `email:…`,
    /// `identity:NAME`).
    #[serde(default)]
    pub people: std::collections::BTreeMap<String, Vec<String>>,
}

/// Checks the section; problems go to `errors` (all are reported at once).
pub fn parse(raw: RawApproval, errors: &mut Vec<String>) -> ApprovalConfig {
    let defaults = ApprovalConfig::default();
    let hold = duration("approval.hold", raw.hold.as_deref(), defaults.hold, errors);
    let pending_ttl = duration(
        "approval.pending_ttl",
        raw.pending_ttl.as_deref(),
        defaults.pending_ttl,
        errors,
    );
    if pending_ttl < hold {
        errors.push("approval.pending_ttl: must be at least approval.hold".into());
    }
    let webhook = raw
        .webhook
        .as_deref()
        .and_then(|w| match url::Url::parse(w) {
            Ok(u) if u.scheme() == "https" || u.scheme() == "http" => Some(u),
            Ok(_) => {
                errors.push(format!("approval.webhook: `{w}` is not an http(s) URL"));
                None
            }
            Err(e) => {
                errors.push(format!("approval.webhook: {e}"));
                None
            }
        });
    ApprovalConfig {
        hold,
        pending_ttl,
        webhook,
        justification_header: raw
            .justification_header
            .unwrap_or(defaults.justification_header)
            .to_ascii_lowercase(),
        approvers: raw.approvers,
        people: parse_people(raw.people, errors),
    }
}

/// Checks `[approval.people]`: every name namespaced, and no name under two persons (which
/// would make the two one person without anyone saying so).
fn parse_people(
    raw: std::collections::BTreeMap<String, Vec<String>>,
    errors: &mut Vec<String>,
) -> people::People {
    let mut person_of = std::collections::HashMap::new();
    for (person, names) in raw {
        if person.is_empty() || person.contains(':') {
            errors.push(format!(
                "approval.people: person id `{person}` must be non-empty and without `:`"
            ));
            continue;
        }
        for name in names {
            let name = match people::normalise(&name) {
                Ok(name) => name,
                Err(why) => {
                    errors.push(format!("approval.people.{person}: {why}"));
                    continue;
                }
            };
            match person_of.get(&name) {
                Some(other) if *other != person => errors.push(format!(
                    "approval.people: `{name}` is listed under both `{other}` and `{person}`"
                )),
                _ => {
                    person_of.insert(name, person.clone());
                }
            }
        }
    }
    people::People::new(person_of)
}
