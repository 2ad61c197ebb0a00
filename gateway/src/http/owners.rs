//! Who opened each MCP session: a session id is a bearer secret for as long as the session
//! lives, so another caller who learns it (logs, a shared proxy) must not use it. The first
//! answer that names a session ties it to the caller of that exchange.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// Sessions remembered at most; the oldest are forgotten first (their ids then bind again
/// to whoever uses them next, as before this table existed).
const MAX_SESSIONS: usize = 100_000;

/// (server, session id).
type Key = (String, String);

#[derive(Default)]
pub struct SessionOwners {
    /// Owner by session, and the sessions in the order they were first seen.
    inner: Mutex<(HashMap<Key, String>, VecDeque<Key>)>,
}

impl SessionOwners {
    /// Ties `session` on `server` to `subject` unless it already has an owner.
    pub fn claim(&self, server: &str, session: &str, subject: &str) {
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (owners, order) = &mut *guard;
        let key = (server.to_owned(), session.to_owned());
        if owners.contains_key(&key) {
            return;
        }
        if owners.len() >= MAX_SESSIONS {
            if let Some(oldest) = order.pop_front() {
                owners.remove(&oldest);
            }
        }
        order.push_back(key.clone());
        owners.insert(key, subject.to_owned());
    }

    /// `Err(owner)` when `session` belongs to someone other than `subject`.
    pub fn check(&self, server: &str, session: &str, subject: &str) -> Result<(), String> {
        let guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        match guard.0.get(&(server.to_owned(), session.to_owned())) {
            Some(owner) if owner != subject => Err(owner.clone()),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_belongs_to_the_caller_it_was_opened_for() {
        let owners = SessionOwners::default();
        assert!(owners.check("s", "abc", "alice").is_ok(), "unknown: anyone");
        owners.claim("s", "abc", "alice");
        owners.claim("s", "abc", "mallory"); // a later answer does not move it
        assert!(owners.check("s", "abc", "alice").is_ok());
        assert_eq!(owners.check("s", "abc", "mallory"), Err("alice".into()));
        assert!(
            owners.check("other", "abc", "mallory").is_ok(),
            "per server"
        );
    }
}
