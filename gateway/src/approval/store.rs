//! Approvals, grants and their audit log in the embedded SQLite store (the recording's
//! database in `state_dir`), so nothing pending or granted is lost across restarts.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};

use super::{Approval, ApprovalError, ApprovalState, Grant};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS approvals (
    id         TEXT PRIMARY KEY,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    state      TEXT NOT NULL,
    body       TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS grants (
    id         TEXT PRIMARY KEY,
    expires_ms INTEGER NOT NULL,
    revoked    INTEGER NOT NULL DEFAULT 0,
    body       TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS approval_log (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    time_ms  INTEGER NOT NULL,
    subject  TEXT NOT NULL,
    action   TEXT NOT NULL,
    actor    TEXT NOT NULL,
    detail   TEXT NOT NULL
);
";

pub struct Store {
    conn: Connection,
}

type Result<T> = std::result::Result<T, ApprovalError>;

fn db(source: rusqlite::Error) -> ApprovalError {
    ApprovalError::Store { source }
}

/// A stored body back as an approval or grant.
fn decode<T: serde::de::DeserializeOwned>(body: &str) -> Result<T> {
    serde_json::from_str(body).map_err(ApprovalError::Decode)
}

impl Store {
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path).map_err(db)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(db)?;
        conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))
            .map_err(db)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(db)?;
        conn.execute_batch(SCHEMA).map_err(db)?;
        Ok(Self { conn })
    }

    /// Runs `f` in one transaction: all its writes land together (one fsync), or none.
    pub fn atomically<T>(&self, f: impl FnOnce(&Self) -> Result<T>) -> Result<T> {
        self.conn.execute_batch("BEGIN IMMEDIATE").map_err(db)?;
        match f(self) {
            Ok(value) => {
                self.conn.execute_batch("COMMIT").map_err(db)?;
                Ok(value)
            }
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }

    pub fn put_approval(&self, a: &Approval) -> Result<()> {
        let body = serde_json::to_string(a).map_err(ApprovalError::Encode)?;
        self.conn
            .execute(
                "INSERT INTO approvals (id, created_ms, expires_ms, state, body) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(id) DO UPDATE SET state = excluded.state, body = excluded.body",
                params![a.id, a.created_ms, a.expires_ms, a.state.as_str(), body],
            )
            .map_err(db)?;
        Ok(())
    }

    pub fn approval(&self, id: &str) -> Result<Option<Approval>> {
        let body: Option<String> = self
            .conn
            .query_row("SELECT body FROM approvals WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()
            .map_err(db)?;
        body.as_deref().map(decode).transpose()
    }

    /// Approvals, newest first; only pending ones unless `all`.
    pub fn approvals(&self, all: bool) -> Result<Vec<Approval>> {
        let sql = if all {
            "SELECT body FROM approvals ORDER BY created_ms DESC LIMIT 1000"
        } else {
            "SELECT body FROM approvals WHERE state = 'pending' ORDER BY created_ms DESC"
        };
        let mut stmt = self.conn.prepare(sql).map_err(db)?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0)).map_err(db)?;
        rows.map(|b| {
            let b = b.map_err(db)?;
            decode(&b)
        })
        .collect()
    }

    /// Pending approvals created before `now_ms - ttl`, to expire.
    pub fn overdue(&self, now_ms: i64) -> Result<Vec<Approval>> {
        let mut stmt = self
            .conn
            .prepare("SELECT body FROM approvals WHERE state = 'pending' AND expires_ms <= ?1")
            .map_err(db)?;
        let rows = stmt
            .query_map([now_ms], |r| r.get::<_, String>(0))
            .map_err(db)?;
        rows.map(|b| {
            let b = b.map_err(db)?;
            decode(&b)
        })
        .collect()
    }

    pub fn put_grant(&self, g: &Grant) -> Result<()> {
        let body = serde_json::to_string(g).map_err(ApprovalError::Encode)?;
        self.conn
            .execute(
                "INSERT INTO grants (id, expires_ms, revoked, body) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(id) DO UPDATE SET revoked = excluded.revoked, body = excluded.body",
                params![g.id, g.expires_ms, g.revoked_ms.is_some(), body],
            )
            .map_err(db)?;
        Ok(())
    }

    /// Grants not revoked and not expired at `now_ms`.
    pub fn live_grants(&self, now_ms: i64) -> Result<Vec<Grant>> {
        let mut stmt = self
            .conn
            .prepare("SELECT body FROM grants WHERE revoked = 0 AND expires_ms > ?1")
            .map_err(db)?;
        let rows = stmt
            .query_map([now_ms], |r| r.get::<_, String>(0))
            .map_err(db)?;
        rows.map(|b| {
            let b = b.map_err(db)?;
            decode(&b)
        })
        .collect()
    }

    pub fn grant(&self, id: &str) -> Result<Option<Grant>> {
        let body: Option<String> = self
            .conn
            .query_row("SELECT body FROM grants WHERE id = ?1", [id], |r| r.get(0))
            .optional()
            .map_err(db)?;
        body.as_deref().map(decode).transpose()
    }

    /// Appends to the audit log: who did what to which approval or grant.
    pub fn log(
        &self,
        time_ms: i64,
        subject: &str,
        action: &str,
        actor: &str,
        detail: &str,
    ) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO approval_log (time_ms, subject, action, actor, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![time_ms, subject, action, actor, detail],
            )
            .map_err(db)?;
        Ok(())
    }

    /// The audit log of one approval or grant id, oldest first.
    pub fn history(&self, subject: &str) -> Result<Vec<serde_json::Value>> {
        let mut stmt = self
            .conn
            .prepare("SELECT time_ms, action, actor, detail FROM approval_log WHERE subject = ?1 ORDER BY seq")
            .map_err(db)?;
        let rows = stmt
            .query_map([subject], |r| {
                Ok(serde_json::json!({
                    "time_ms": r.get::<_, i64>(0)?,
                    "action": r.get::<_, String>(1)?,
                    "actor": r.get::<_, String>(2)?,
                    "detail": r.get::<_, String>(3)?,
                }))
            })
            .map_err(db)?;
        rows.map(|r| r.map_err(db)).collect()
    }
}

impl ApprovalState {
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalState::Pending => "pending",
            ApprovalState::Approved => "approved",
            ApprovalState::Denied => "denied",
            ApprovalState::Expired => "expired",
        }
    }
}
