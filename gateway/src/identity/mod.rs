//! Who is calling: an OIDC access token from the request's `Authorization: Bearer`, checked
//! against the configured issuers, and the kernel-attested process that opened the
//! connection. With no issuer configured, callers are known by their process alone.

pub mod config;
pub mod oidc;

use std::sync::Arc;

use http::{header, HeaderMap};
use serde::Serialize;

use crate::{glob::glob_match, intercept::ProcessInfo};

pub use oidc::{Issuer, OidcConfig};

/// The caller of one HTTP exchange, as policy, approvals, credentials and recording see it.
#[derive(Debug, Clone, Serialize)]
pub struct Subject {
    /// The token's `sub`, a process identity's name, or `uid:N` for a local process
    /// nothing else identifies.
    pub name: String,
    pub kind: SubjectKind,
    pub issuer: Option<String>,
    pub email: Option<String>,
    pub groups: Vec<String>,
    /// What the kernel saw connect (absent in explicit mode).
    pub process: Option<ProcessInfo>,
    /// The bearer token as presented (never recorded), for servers that get it forwarded.
    #[serde(skip)]
    pub token: Option<Arc<str>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SubjectKind {
    /// A valid OIDC token.
    Token,
    /// A configured `[[identity.processes]]` entry.
    Process,
    /// Only the process is known (no issuers configured).
    Anonymous,
}

impl Subject {
    /// A subject for tools and tests that have no request: `explain`, benchmarks.
    pub fn named(name: &str, groups: Vec<String>) -> Self {
        Self {
            name: name.to_owned(),
            kind: SubjectKind::Token,
            issuer: None,
            email: None,
            groups,
            process: None,
            token: None,
        }
    }

    /// The systemd unit (or scope) the process runs in, from its cgroup path.
    pub fn unit(&self) -> Option<&str> {
        unit_of(self.process.as_ref()?.cgroup.as_deref()?)
    }

    pub fn exe(&self) -> Option<String> {
        let exe = self.process.as_ref()?.exe.as_ref()?;
        Some(exe.display().to_string())
    }

    pub fn uid(&self) -> Option<u32> {
        self.process.as_ref().map(|p| p.uid)
    }
}

/// `/system.slice/report-bot.service` → `report-bot.service`.
pub fn unit_of(cgroup: &str) -> Option<&str> {
    cgroup
        .rsplit('/')
        .find(|c| c.ends_with(".service") || c.ends_with(".scope"))
}

/// A local process identified by what it is on the host, instead of by a token.
#[derive(Debug, Clone)]
pub struct ProcessIdentity {
    pub name: String,
    pub uid: Option<u32>,
    /// Glob on the executable path.
    pub exe: Option<String>,
    /// Glob on the systemd unit.
    pub unit: Option<String>,
    /// Glob on the cgroup path.
    pub cgroup: Option<String>,
    pub groups: Vec<String>,
}

impl ProcessIdentity {
    fn matches(&self, p: &ProcessInfo) -> bool {
        let exe = p.exe.as_ref().map(|e| e.display().to_string());
        let glob = |pattern: &Option<String>, value: Option<&str>| match pattern {
            None => true,
            Some(pattern) => value.is_some_and(|v| glob_match(pattern, v, false)),
        };
        self.uid.is_none_or(|uid| uid == p.uid)
            && glob(&self.exe, exe.as_deref())
            && glob(&self.unit, p.cgroup.as_deref().and_then(unit_of))
            && glob(&self.cgroup, p.cgroup.as_deref())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("a bearer token is required")]
    Missing,
    #[error("invalid token: {0}")]
    Invalid(String),
    /// The issuer's keys cannot be had (IdP down past the cache lifetime): not the caller's fault.
    #[error("cannot verify tokens now: {0}")]
    Unavailable(String),
}

/// The identity stage: configured issuers and process identities.
pub struct Identity {
    issuers: Vec<Arc<Issuer>>,
    processes: Vec<ProcessIdentity>,
}

/// Tokens longer than this are refused before any parsing.
const MAX_TOKEN: usize = 8192;

impl Identity {
    pub fn new(issuers: Vec<Arc<Issuer>>, processes: Vec<ProcessIdentity>) -> Self {
        Self { issuers, processes }
    }

    /// Whether calls need a token (some issuer is configured).
    pub fn tokens_required(&self) -> bool {
        !self.issuers.is_empty()
    }

    pub fn health(&self) -> Vec<serde_json::Value> {
        self.issuers.iter().map(|i| i.health()).collect()
    }

    pub fn issuer_urls(&self) -> Vec<String> {
        self.issuers.iter().map(|i| i.url().to_owned()).collect()
    }

    /// Fetches every issuer's keys once, so the first call does not wait for them.
    pub fn warm_up(&self) {
        for issuer in &self.issuers {
            let issuer = issuer.clone();
            tokio::spawn(async move {
                if let Err(error) = issuer.refresh().await {
                    tracing::warn!(issuer = issuer.url(), %error, "identity provider keys not fetched yet");
                }
            });
        }
    }

    /// The subject of a request: from its bearer token when there is one, else from the
    /// process, as far as the configuration lets a process go without a token.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        process: Option<&ProcessInfo>,
    ) -> Result<Subject, AuthError> {
        let token = match headers.get(header::AUTHORIZATION) {
            None => None,
            Some(value) => Some(bearer(value)?),
        };
        match token {
            Some(token) if self.tokens_required() => self.subject_of_token(token, process).await,
            // No issuer to check it against: a token is not an identity here.
            Some(_) | None => match self.subject_of_process(process) {
                Some(subject) => Ok(subject),
                None if self.tokens_required() => Err(AuthError::Missing),
                None => Ok(anonymous(process)),
            },
        }
    }

    async fn subject_of_token(
        &self,
        token: &str,
        process: Option<&ProcessInfo>,
    ) -> Result<Subject, AuthError> {
        if token.len() > MAX_TOKEN {
            return Err(AuthError::Invalid(format!(
                "token longer than {MAX_TOKEN} bytes"
            )));
        }
        let iss = oidc::unverified_issuer(token)?;
        let issuer = self
            .issuers
            .iter()
            .find(|i| i.url() == iss)
            .ok_or_else(|| AuthError::Invalid(format!("issuer `{iss}` is not trusted")))?;
        let claims = issuer.validate(token).await?;
        Ok(Subject {
            name: claims.sub,
            kind: SubjectKind::Token,
            issuer: Some(iss),
            email: claims.email,
            groups: claims.groups,
            process: process.cloned(),
            token: Some(token.into()),
        })
    }

    fn subject_of_process(&self, process: Option<&ProcessInfo>) -> Option<Subject> {
        let p = process?;
        let identity = self.processes.iter().find(|i| i.matches(p))?;
        Some(Subject {
            name: identity.name.clone(),
            kind: SubjectKind::Process,
            issuer: None,
            email: None,
            groups: identity.groups.clone(),
            process: Some(p.clone()),
            token: None,
        })
    }
}

fn anonymous(process: Option<&ProcessInfo>) -> Subject {
    Subject {
        name: process.map_or_else(|| "unknown".to_owned(), |p| format!("uid:{}", p.uid)),
        kind: SubjectKind::Anonymous,
        issuer: None,
        email: None,
        groups: Vec::new(),
        process: process.cloned(),
        token: None,
    }
}

fn bearer(value: &http::HeaderValue) -> Result<&str, AuthError> {
    let text = value
        .to_str()
        .map_err(|_| AuthError::Invalid("Authorization header is not text".into()))?;
    match text.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(token.trim())
        }
        _ => Err(AuthError::Invalid(
            "Authorization must be `Bearer <token>`".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process(uid: u32, exe: &str, cgroup: &str) -> ProcessInfo {
        ProcessInfo {
            pid: 42,
            uid,
            gid: uid,
            cgroup_id: 7,
            exe: Some(exe.into()),
            cgroup: Some(cgroup.into()),
        }
    }

    #[test]
    fn units_come_from_the_cgroup_path() {
        assert_eq!(
            unit_of("/system.slice/report-bot.service"),
            Some("report-bot.service")
        );
        assert_eq!(
            unit_of("/user.slice/user-1000.slice/session-3.scope/sub"),
            Some("session-3.scope")
        );
        assert_eq!(unit_of("/mcpgw-test-1"), None);
    }

    #[tokio::test]
    async fn without_issuers_the_process_is_the_subject() {
        let bot = ProcessIdentity {
            name: "report-bot".into(),
            uid: Some(1001),
            exe: Some("/usr/bin/python3*".into()),
            unit: Some("report-bot.service".into()),
            cgroup: None,
            groups: vec!["bots".into()],
        };
        let identity = Identity::new(vec![], vec![bot]);
        let headers = HeaderMap::new();
        let p = process(
            1001,
            "/usr/bin/python3.13",
            "/system.slice/report-bot.service",
        );
        let s = identity.authenticate(&headers, Some(&p)).await.unwrap();
        assert_eq!(
            (s.name.as_str(), s.kind),
            ("report-bot", SubjectKind::Process)
        );
        assert_eq!(s.groups, ["bots"]);
        let other = process(
            1002,
            "/usr/bin/python3.13",
            "/system.slice/report-bot.service",
        );
        let s = identity.authenticate(&headers, Some(&other)).await.unwrap();
        assert_eq!(
            (s.name.as_str(), s.kind),
            ("uid:1002", SubjectKind::Anonymous)
        );
        assert!(s.groups.is_empty());
    }

    #[tokio::test]
    async fn malformed_authorization_is_refused() {
        let identity = Identity::new(vec![], vec![]);
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, "Basic dXNlcjpwdw==".parse().unwrap());
        assert!(matches!(
            identity.authenticate(&headers, None).await,
            Err(AuthError::Invalid(_))
        ));
    }
}
