//! Who is who across namespaces: separation of duties compares people, not names. A requester
//! and an approver each carry several names (`uid:N`, `unix:LOGIN`, `sub:SUBJECT`,
//! `sub:ISSUER#SUBJECT`, `email:ADDRESS`, `identity:NAME`); `[approval.people]` says which
//! names are one person, and a name no entry lists is a person of its own.

use std::collections::{BTreeSet, HashMap};

use crate::identity::{Subject, SubjectKind};

/// The namespaces a name in `[approval.people]` may use.
pub const NAMESPACES: &[&str] = &["unix", "uid", "sub", "email", "identity"];

/// `[approval.people]`, resolved: name → person id.
#[derive(Debug, Clone, Default)]
pub struct People {
    person_of: HashMap<String, String>,
}

impl People {
    /// `names`: name (already checked and normalised) → person id.
    pub(super) fn new(person_of: HashMap<String, String>) -> Self {
        Self { person_of }
    }

    /// The person a name belongs to: its `[approval.people]` entry, else the name itself
    /// (person ids have no `:`, so the two never collide).
    pub fn person(&self, name: &str) -> String {
        self.person_of
            .get(name)
            .cloned()
            .unwrap_or_else(|| name.to_owned())
    }

    /// Every person some of `names` belong to.
    pub fn persons<'a>(&self, names: impl IntoIterator<Item = &'a String>) -> BTreeSet<String> {
        names.into_iter().map(|n| self.person(n)).collect()
    }

    /// The one person to record for `names`: the first listed in `[approval.people]`, else
    /// the first name.
    pub fn primary(&self, names: &[String]) -> String {
        names
            .iter()
            .find_map(|n| self.person_of.get(n).cloned())
            .or_else(|| names.first().cloned())
            .unwrap_or_default()
    }
}

/// A name from the configuration in its canonical form, or why it is not one.
pub(super) fn normalise(name: &str) -> Result<String, String> {
    let Some((ns, value)) = name.split_once(':') else {
        return Err(format!(
            "`{name}` has no namespace (use one of {})",
            prefixed()
        ));
    };
    if !NAMESPACES.contains(&ns) {
        return Err(format!(
            "`{name}`: unknown namespace `{ns}` (use one of {})",
            prefixed()
        ));
    }
    if value.is_empty() {
        return Err(format!("`{name}` names nobody"));
    }
    match ns {
        "uid" => value
            .parse::<u32>()
            .map(uid)
            .map_err(|_| format!("`{name}`: a uid is a number")),
        "email" if !value.contains('@') => Err(format!("`{name}` is not an email address")),
        "email" => Ok(email(value)),
        _ => Ok(name.to_owned()),
    }
}

fn prefixed() -> String {
    NAMESPACES
        .iter()
        .map(|ns| format!("`{ns}:`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn uid(uid: u32) -> String {
    format!("uid:{uid}")
}

/// Addresses compare case-insensitively: IdPs do not agree on the case they send.
fn email(address: &str) -> String {
    format!("email:{}", address.to_lowercase())
}

/// The login of `uid` in the passwd database, if it has an entry.
pub fn login(uid: u32) -> Option<String> {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
}

/// A Unix account's names: `uid:N`, and `unix:LOGIN` when it has a passwd entry.
pub fn unix_account(uid_: u32) -> Vec<String> {
    let mut names = vec![uid(uid_)];
    names.extend(login(uid_).map(|l| format!("unix:{l}")));
    names
}

/// A token's names: `sub:SUBJECT`, `sub:ISSUER#SUBJECT` when the issuer is known, and
/// `email:ADDRESS` when the token has one.
pub fn token(sub: &str, issuer: Option<&str>, address: Option<&str>) -> Vec<String> {
    let mut names = vec![format!("sub:{sub}")];
    names.extend(issuer.map(|i| format!("sub:{i}#{sub}")));
    names.extend(address.map(email));
    names
}

/// A caller's names: its own (token or process identity; an anonymous caller's `uid:N` is
/// its process's), and always the Unix account of the process the kernel attributed.
pub fn of_subject(s: &Subject) -> Vec<String> {
    let mut names = match s.kind {
        SubjectKind::Token => token(&s.name, s.issuer.as_deref(), s.email.as_deref()),
        SubjectKind::Process => vec![format!("identity:{}", s.name)],
        SubjectKind::Anonymous => Vec::new(),
    };
    names.extend(s.uid().map(unix_account).unwrap_or_default());
    names
}

/// The names of a requester stored before names were (an older version's record): every
/// namespace its subject could have been in, so an upgrade never lets a requester through.
pub(super) fn of_legacy(
    subject: &str,
    address: Option<&str>,
    process: &serde_json::Value,
) -> Vec<String> {
    let mut names = if subject.starts_with("uid:") {
        vec![subject.to_owned()]
    } else {
        vec![format!("sub:{subject}"), format!("identity:{subject}")]
    };
    names.extend(address.map(email));
    let process_uid = process
        .get("uid")
        .and_then(serde_json::Value::as_u64)
        .and_then(|u| u32::try_from(u).ok());
    names.extend(process_uid.map(unix_account).unwrap_or_default());
    names
}
