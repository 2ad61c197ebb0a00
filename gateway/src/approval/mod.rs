//! Just-in-time approvals: a call whose policy decision is `approve` and that no live grant
//! covers becomes a pending approval; the client's request is held until approvers decide
//! (or the hold ends); an approval creates a grant that covers later calls in scope until it
//! expires or is revoked. Everything is kept in the embedded store and audited.

pub mod config;
pub mod people;
mod store;
pub mod webhook;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, RwLock},
    time::Duration,
};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::watch;

use crate::{
    clock::now_ms,
    decision::{ApprovalTerms, GrantRef},
    glob::glob_match,
    identity::Subject,
};
use store::Store;

/// Why an approval or grant could not be stored, found or decided on; the message is what
/// the approver sees in the admin reply.
#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    #[error("approval store: {source}")]
    Store { source: rusqlite::Error },
    /// An approval or grant that cannot be written as JSON.
    #[error(transparent)]
    Encode(serde_json::Error),
    /// A stored row whose JSON is not an approval or grant (a damaged or newer store).
    #[error(transparent)]
    Decode(serde_json::Error),
    /// `kind`: "approval" or "grant".
    #[error("no {kind} {id}")]
    NotFound { kind: &'static str, id: String },
    #[error("approval {id} is already {}", .state.as_str())]
    Decided { id: String, state: ApprovalState },
    /// Separation of duties: nobody decides on their own call, under whatever name.
    #[error("{approver} requested this call and cannot decide on it (same person: {person}): another approver must")]
    OwnCall {
        approver: String,
        /// The person (or name) the approver and the requester share.
        person: String,
    },
    #[error("{approver} is not in an approver group of rule `{rule}` ({})", .groups.join(", "))]
    NotApprover {
        approver: String,
        rule: String,
        /// The rule's approver groups.
        groups: Vec<String>,
    },
    /// One person counts once toward `approvals = N`, whatever name they decided under.
    #[error("{approver} has already decided on {id} (as {earlier})")]
    AlreadyDecided {
        approver: String,
        id: String,
        /// Who the earlier decision was recorded as.
        earlier: String,
    },
    #[error("grant {id} is already revoked")]
    Revoked { id: String },
}

/// `[approval]`.
#[derive(Debug, Clone)]
pub struct ApprovalConfig {
    /// How long a client's request is held waiting for a decision.
    pub hold: Duration,
    /// How long a pending approval can still be decided.
    pub pending_ttl: Duration,
    pub webhook: Option<url::Url>,
    /// Request header carrying the caller's justification (also read from `_meta.justification`).
    pub justification_header: String,
    /// Unix user → approver groups.
    pub approvers: HashMap<String, Vec<String>>,
    /// Which names are one person (`[approval.people]`).
    pub people: people::People,
}

impl Default for ApprovalConfig {
    fn default() -> Self {
        Self {
            hold: Duration::from_secs(60),
            pending_ttl: Duration::from_secs(3600),
            webhook: None,
            justification_header: "mcp-justification".into(),
            approvers: HashMap::new(),
            people: people::People::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApprovalState {
    Pending,
    Approved,
    Denied,
    Expired,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApproverDecision {
    pub by: String,
    /// The person who decided (`[approval.people]` id, else their first name); empty in
    /// records of older versions.
    #[serde(default)]
    pub person: String,
    /// Every name the approver had (see `Approver::names`).
    #[serde(default)]
    pub names: Vec<String>,
    pub approve: bool,
    pub reason: Option<String>,
    pub time_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Approval {
    pub id: String,
    pub created_ms: i64,
    pub expires_ms: i64,
    pub state: ApprovalState,
    pub subject: String,
    pub email: Option<String>,
    pub groups: Vec<String>,
    /// pid, uid, exe, cgroup of the calling process.
    pub process: Value,
    /// Every name of the requester (`sub:…`, `identity:…`, `email:…`, the process's
    /// `uid:N` and `unix:LOGIN`): none of them may approve. Empty in older records.
    #[serde(default)]
    pub requester: Vec<String>,
    pub server: String,
    pub method: String,
    pub tool: Option<String>,
    /// The call's arguments, masked, cut to a preview.
    pub arguments: String,
    pub rule: String,
    pub approvers: Vec<String>,
    pub approvals_needed: u32,
    pub grant_ttl_secs: u64,
    /// Globs the grant will cover; empty: the exact tool.
    pub grant_tools: Vec<String>,
    pub justification: Option<String>,
    pub decisions: Vec<ApproverDecision>,
    pub grant: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub id: String,
    pub subject: String,
    pub server: String,
    /// Tool globs covered.
    pub tools: Vec<String>,
    pub created_ms: i64,
    pub expires_ms: i64,
    pub approval: String,
    pub rule: String,
    pub revoked_ms: Option<i64>,
    pub revoked_by: Option<String>,
}

impl Grant {
    fn covers(&self, subject: &str, server: &str, tool: &str, now: i64) -> bool {
        self.revoked_ms.is_none()
            && now < self.expires_ms
            && self.subject == subject
            && self.server == server
            && self.tools.iter().any(|t| glob_match(t, tool, false))
    }
}

/// Who decides: a Unix user (groups from `[approval.approvers]`) or a token's subject.
#[derive(Debug, Clone)]
pub struct Approver {
    /// For display and the audit trail: the Unix login or the token's subject.
    pub name: String,
    pub groups: Vec<String>,
    /// Every name the approver goes by: the admin socket caller's `uid:N` and `unix:LOGIN`,
    /// plus the token's `sub:…` and `email:…` with `--token` (see `people`).
    pub names: Vec<String>,
}

/// A call to hold.
pub struct NewApproval<'a> {
    pub subject: &'a Subject,
    pub server: &'a str,
    pub method: &'a str,
    pub tool: Option<&'a str>,
    pub arguments: String,
    pub rule: &'a str,
    pub terms: &'a ApprovalTerms,
    pub justification: Option<String>,
}

/// How a held call ends.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Approved,
    Denied {
        by: String,
        reason: String,
    },
    /// Still pending when the hold ended (or expired meanwhile).
    Pending,
}

pub struct Approvals {
    config: ApprovalConfig,
    store: Mutex<Store>,
    /// Live grants, as in the store.
    grants: RwLock<Vec<Grant>>,
    /// Held requests wait on these for a decision.
    waiters: Mutex<HashMap<String, watch::Sender<ApprovalState>>>,
    webhook: Option<webhook::Webhook>,
}

fn not_found(kind: &'static str, id: &str) -> ApprovalError {
    ApprovalError::NotFound {
        kind,
        id: id.to_owned(),
    }
}

fn new_id(prefix: &str) -> String {
    let mut bytes = [0u8; 6];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}-{hex}")
}

impl Approvals {
    pub fn open(
        db: &std::path::Path,
        config: ApprovalConfig,
        webhook: Option<webhook::Webhook>,
    ) -> Result<Self, ApprovalError> {
        let store = Store::open(db)?;
        let grants = store.live_grants(now_ms())?;
        let pending = store.approvals(false)?;
        if !grants.is_empty() || !pending.is_empty() {
            tracing::info!(
                grants = grants.len(),
                pending = pending.len(),
                "approvals and grants restored"
            );
        }
        Ok(Self {
            config,
            store: Mutex::new(store),
            grants: RwLock::new(grants),
            waiters: Mutex::new(HashMap::new()),
            webhook,
        })
    }

    pub fn config(&self) -> &ApprovalConfig {
        &self.config
    }

    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The live grant covering this call, if any.
    pub fn covering_grant(&self, subject: &str, server: &str, tool: &str) -> Option<GrantRef> {
        let now = now_ms();
        self.grants
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|g| g.covers(subject, server, tool, now))
            .map(|g| GrantRef {
                id: g.id.clone(),
                approval: g.approval.clone(),
                expires_ms: g.expires_ms,
            })
    }

    /// Creates a pending approval, logs it and notifies the webhook.
    pub fn request(&self, new: NewApproval) -> Result<Approval, ApprovalError> {
        let now = now_ms();
        let s = new.subject;
        let approval = Approval {
            id: new_id("apr"),
            created_ms: now,
            expires_ms: now + self.config.pending_ttl.as_millis() as i64,
            state: ApprovalState::Pending,
            subject: s.name.clone(),
            email: s.email.clone(),
            groups: s.groups.clone(),
            process: serde_json::to_value(&s.process).unwrap_or(Value::Null),
            requester: people::of_subject(s),
            server: new.server.to_owned(),
            method: new.method.to_owned(),
            tool: new.tool.map(str::to_owned),
            arguments: new.arguments,
            rule: new.rule.to_owned(),
            approvers: new.terms.approvers.clone(),
            approvals_needed: new.terms.approvals.max(1),
            grant_ttl_secs: new.terms.grant_ttl.as_secs(),
            grant_tools: new.terms.grant_tools.clone(),
            justification: new.justification,
            decisions: Vec::new(),
            grant: None,
        };
        {
            let store = self.store();
            store.put_approval(&approval)?;
            store.log(
                now,
                &approval.id,
                "requested",
                &approval.subject,
                &approval.rule,
            )?;
        }
        tracing::info!(
            approval = %approval.id,
            subject = %approval.subject,
            server = %approval.server,
            tool = approval.tool.as_deref().unwrap_or("-"),
            rule = %approval.rule,
            approvers = ?approval.approvers,
            "approval requested: run `mcpgw approvals approve {}`",
            approval.id
        );
        if let Some(webhook) = &self.webhook {
            webhook.notify(&approval);
        }
        Ok(approval)
    }

    /// Waits up to `hold` for a decision on `id`.
    pub async fn wait(&self, id: &str, hold: Duration) -> Outcome {
        let mut rx = {
            let mut waiters = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
            waiters
                .entry(id.to_owned())
                .or_insert_with(|| watch::channel(ApprovalState::Pending).0)
                .subscribe()
        };
        // A decision may have landed before the subscription.
        let decided = |a: &Approval| a.state != ApprovalState::Pending;
        let current = self.store().approval(id).ok().flatten();
        if !current.as_ref().is_some_and(decided) {
            let _ = tokio::time::timeout(hold, rx.wait_for(|s| *s != ApprovalState::Pending)).await;
        }
        let outcome = match self.store().approval(id).ok().flatten() {
            Some(a) if a.state == ApprovalState::Approved => Outcome::Approved,
            Some(a) if a.state == ApprovalState::Denied => {
                let last = a.decisions.iter().rev().find(|d| !d.approve);
                Outcome::Denied {
                    by: last.map_or_else(|| "-".into(), |d| d.by.clone()),
                    reason: last
                        .and_then(|d| d.reason.clone())
                        .unwrap_or_else(|| "no reason given".into()),
                }
            }
            _ => Outcome::Pending,
        };
        if outcome != Outcome::Pending {
            self.waiters
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(id);
        }
        outcome
    }

    fn check_approver(&self, a: &Approval, approver: &Approver) -> Result<(), ApprovalError> {
        if a.state != ApprovalState::Pending {
            return Err(ApprovalError::Decided {
                id: a.id.clone(),
                state: a.state,
            });
        }
        let people = &self.config.people;
        let approver_persons = people.persons(&approver.names);
        let requester = if a.requester.is_empty() {
            people::of_legacy(&a.subject, a.email.as_deref(), &a.process)
        } else {
            a.requester.clone()
        };
        if let Some(person) = people
            .persons(&requester)
            .intersection(&approver_persons)
            .next()
        {
            return Err(ApprovalError::OwnCall {
                approver: approver.name.clone(),
                person: person.clone(),
            });
        }
        if !approver.groups.iter().any(|g| a.approvers.contains(g)) {
            return Err(ApprovalError::NotApprover {
                approver: approver.name.clone(),
                rule: a.rule.clone(),
                groups: a.approvers.clone(),
            });
        }
        let decided_before = a.decisions.iter().find(|d| {
            let mut persons = if d.names.is_empty() {
                // An older version's decision: `by` was a login, `uid:N` or a token subject.
                let mut by = vec![format!("unix:{}", d.by), format!("sub:{}", d.by)];
                by.extend(d.by.starts_with("uid:").then(|| d.by.clone()));
                people.persons(&by)
            } else {
                people.persons(&d.names)
            };
            if !d.person.is_empty() {
                persons.insert(d.person.clone());
            }
            !persons.is_disjoint(&approver_persons)
        });
        if let Some(earlier) = decided_before {
            return Err(ApprovalError::AlreadyDecided {
                approver: approver.name.clone(),
                id: a.id.clone(),
                earlier: earlier.by.clone(),
            });
        }
        Ok(())
    }

    fn load(&self, id: &str) -> Result<Approval, ApprovalError> {
        self.store()
            .approval(id)?
            .ok_or_else(|| not_found("approval", id))
    }

    /// Records an approval; with enough of them the call is approved and a grant created.
    pub fn approve(
        &self,
        id: &str,
        approver: &Approver,
        reason: Option<String>,
    ) -> Result<Approval, ApprovalError> {
        // One decision at a time: two approvers at once must not both count as the last.
        let store = self.store();
        let mut a = store
            .approval(id)?
            .ok_or_else(|| not_found("approval", id))?;
        self.check_approver(&a, approver)?;
        let now = now_ms();
        a.decisions.push(ApproverDecision {
            by: approver.name.clone(),
            person: self.config.people.primary(&approver.names),
            names: approver.names.clone(),
            approve: true,
            reason: reason.clone(),
            time_ms: now,
        });
        let approvals = a.decisions.iter().filter(|d| d.approve).count() as u32;
        if approvals >= a.approvals_needed {
            let grant = Grant {
                id: new_id("grt"),
                subject: a.subject.clone(),
                server: a.server.clone(),
                tools: if a.grant_tools.is_empty() {
                    a.tool.iter().cloned().collect()
                } else {
                    a.grant_tools.clone()
                },
                created_ms: now,
                expires_ms: now + (a.grant_ttl_secs as i64) * 1000,
                approval: a.id.clone(),
                rule: a.rule.clone(),
                revoked_ms: None,
                revoked_by: None,
            };
            a.state = ApprovalState::Approved;
            a.grant = Some(grant.id.clone());
            // The grant, the approval and their audit lines land together or not at all.
            store.atomically(|store| {
                store.put_grant(&grant)?;
                store.put_approval(&a)?;
                let why = reason.as_deref().unwrap_or("");
                store.log(now, &a.id, "approved", &approver.name, why)?;
                let scope = format!("{} until {}", grant.tools.join(","), grant.expires_ms);
                store.log(now, &grant.id, "granted", &approver.name, &scope)
            })?;
            tracing::info!(approval = %a.id, grant = %grant.id, by = %approver.name, "approved; grant created");
            self.grants
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .push(grant);
            drop(store);
            self.wake(&a.id, ApprovalState::Approved);
        } else {
            store.atomically(|store| {
                store.put_approval(&a)?;
                let why = reason.as_deref().unwrap_or("");
                store.log(now, &a.id, "approval", &approver.name, why)
            })?;
            tracing::info!(approval = %a.id, by = %approver.name, approvals, needed = a.approvals_needed, "approval recorded; more needed");
        }
        Ok(a)
    }

    pub fn deny(
        &self,
        id: &str,
        approver: &Approver,
        reason: String,
    ) -> Result<Approval, ApprovalError> {
        let store = self.store();
        let mut a = store
            .approval(id)?
            .ok_or_else(|| not_found("approval", id))?;
        self.check_approver(&a, approver)?;
        let now = now_ms();
        a.decisions.push(ApproverDecision {
            by: approver.name.clone(),
            person: self.config.people.primary(&approver.names),
            names: approver.names.clone(),
            approve: false,
            reason: Some(reason.clone()),
            time_ms: now,
        });
        a.state = ApprovalState::Denied;
        store.atomically(|store| {
            store.put_approval(&a)?;
            store.log(now, &a.id, "denied", &approver.name, &reason)
        })?;
        drop(store);
        tracing::info!(approval = %a.id, by = %approver.name, %reason, "denied");
        self.wake(&a.id, ApprovalState::Denied);
        Ok(a)
    }

    /// Ends a grant now: the next call in its scope is held again.
    pub fn revoke(&self, id: &str, actor: &str) -> Result<Grant, ApprovalError> {
        let store = self.store();
        let mut g = store.grant(id)?.ok_or_else(|| not_found("grant", id))?;
        if g.revoked_ms.is_some() {
            return Err(ApprovalError::Revoked { id: id.to_owned() });
        }
        let now = now_ms();
        g.revoked_ms = Some(now);
        g.revoked_by = Some(actor.to_owned());
        store.put_grant(&g)?;
        store.log(now, id, "revoked", actor, "")?;
        self.grants
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|live| live.id != id);
        tracing::info!(grant = id, by = actor, "grant revoked");
        Ok(g)
    }

    fn wake(&self, id: &str, state: ApprovalState) {
        if let Some(tx) = self
            .waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
        {
            let _ = tx.send(state);
        }
    }

    pub fn list(&self, all: bool) -> Result<Vec<Approval>, ApprovalError> {
        self.store().approvals(all)
    }

    /// One approval with its audit history.
    pub fn show(&self, id: &str) -> Result<Value, ApprovalError> {
        let a = self.load(id)?;
        let history = self.store().history(id)?;
        Ok(serde_json::json!({"approval": a, "history": history}))
    }

    /// Live grants, and every grant's audit history when asked for one id.
    pub fn grants(&self) -> Vec<Grant> {
        let now = now_ms();
        self.grants
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|g| g.expires_ms > now)
            .cloned()
            .collect()
    }

    /// Expires overdue pending approvals and drops ended grants (both audited).
    pub fn sweep(&self) {
        let now = now_ms();
        let store = self.store();
        match store.overdue(now) {
            Ok(overdue) => {
                for mut a in overdue {
                    a.state = ApprovalState::Expired;
                    if store.put_approval(&a).is_ok() {
                        let _ = store.log(now, &a.id, "expired", "mcpgw", "");
                        tracing::info!(approval = %a.id, "approval expired undecided");
                    }
                }
            }
            Err(error) => tracing::warn!(%error, "expiring approvals failed"),
        }
        let mut grants = self.grants.write().unwrap_or_else(|e| e.into_inner());
        grants.retain(|g| {
            if g.expires_ms > now {
                return true;
            }
            let _ = store.log(now, &g.id, "expired", "mcpgw", "");
            tracing::info!(grant = %g.id, "grant expired");
            false
        });
    }

    /// The expiry sweeper, once a second.
    pub fn spawn_sweeper(self: &Arc<Self>) {
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let Some(me) = me.upgrade() else { return };
                tokio::task::block_in_place(|| me.sweep());
            }
        });
    }
}

#[cfg(test)]
mod tests;
