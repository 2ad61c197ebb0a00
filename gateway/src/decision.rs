//! What policy decides about a call, in the words every stage uses: allow, deny, or hold
//! for approval, the rule that said so, and the grant that let a held kind of call through.

use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Allow,
    Deny,
    Approve,
}

/// A decision and why: the id of the rule (or built-in default) that made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub action: Action,
    pub rule: String,
    pub reason: String,
    /// For `approve`: who may approve, how many, and how long the grant lasts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalTerms>,
    /// The grant that let an `approve` call through; it goes with the call to the credential
    /// stage (recorded as its id).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grant: Option<GrantRef>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApprovalTerms {
    pub approvers: Vec<String>,
    pub approvals: u32,
    #[serde(with = "humantime_serde_secs")]
    pub grant_ttl: Duration,
    /// The tool globs a grant covers (empty: only the exact tool called).
    pub grant_tools: Vec<String>,
}

mod humantime_serde_secs {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }
}

/// A live grant that covers a call: what the credential stage tags the call's STS session
/// with. Serialized as its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRef {
    pub id: String,
    /// The approval that created the grant.
    pub approval: String,
    pub expires_ms: i64,
}

impl Serialize for GrantRef {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.id)
    }
}

impl std::fmt::Display for GrantRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.id)
    }
}
