//! Tamper evidence: the canonical bytes of sessions and events, the per-session hash chain,
//! the Ed25519 seal, and the check that walks a stored chain and names what is wrong.
//!
//! `hash(seq 1) = SHA-256(genesis || event 1)`, `hash(seq n) = SHA-256(hash(seq n-1) || event n)`,
//! where `genesis` hashes the session's own metadata and each event's canonical bytes include its
//! session id and seq, so moving a row to another place breaks the chain. The seal signs
//! (session id, last seq, chain head, end time, how ended), so truncation and appended rows show.

use ring::{
    digest::SHA256,
    signature::{UnparsedPublicKey, ED25519},
};
use serde::Serialize;
use serde_json::Value;

use super::{EventData, SessionMeta, VerifyReport, MCP_SESSION_EVENT};

pub(super) type Hash = [u8; 32];

/// JSON with object keys sorted at every level and no insignificant whitespace.
pub(super) fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

fn sha256(parts: &[&[u8]]) -> Hash {
    let mut ctx = ring::digest::Context::new(&SHA256);
    for p in parts {
        ctx.update(p);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

pub(super) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// The session fields the chain starts from. The MCP session id and protocol version are not
/// here: they are learned later and recorded as chained `mcp_session` gateway events.
#[derive(Serialize)]
struct CanonSession<'a> {
    v: u8,
    session: &'a str,
    started_ms: i64,
    server: &'a str,
    orig_dst: &'a str,
    sni: Option<&'a str>,
    client: &'a str,
    pid: Option<u32>,
    uid: Option<u32>,
    exe: Option<&'a str>,
    cgroup: Option<&'a str>,
    subject: Option<&'a str>,
}

pub(super) fn genesis_hash(id: &str, started_ms: i64, meta: &SessionMeta) -> Hash {
    let canon = CanonSession {
        v: 1,
        session: id,
        started_ms,
        server: &meta.server,
        orig_dst: &meta.orig_dst,
        sni: meta.sni.as_deref(),
        client: &meta.client,
        pid: meta.pid,
        uid: meta.uid,
        exe: meta.exe.as_deref(),
        cgroup: meta.cgroup.as_deref(),
        subject: meta.subject.as_deref(),
    };
    let bytes = serde_json::to_vec(&canon).expect("serializing plain fields cannot fail");
    sha256(&[b"mcpgw-record session\n", &bytes])
}

/// Every field of a stored event, in a fixed order; the payload is its canonical JSON text.
#[derive(Serialize)]
pub(super) struct CanonEvent<'a> {
    pub v: u8,
    pub session: &'a str,
    pub seq: u64,
    pub time_ms: i64,
    pub direction: &'a str,
    pub kind: &'a str,
    pub method: Option<&'a str>,
    pub rpc_id: Option<&'a str>,
    pub tool: Option<&'a str>,
    pub payload: &'a str,
    pub decision: Option<&'a str>,
    pub rule: Option<&'a str>,
    pub upstream_latency_us: Option<u64>,
}

impl<'a> CanonEvent<'a> {
    pub fn new(session: &'a str, seq: u64, e: &'a EventData, payload: &'a str) -> Self {
        CanonEvent {
            v: 1,
            session,
            seq,
            time_ms: e.time_ms,
            direction: &e.direction,
            kind: &e.kind,
            method: e.method.as_deref(),
            rpc_id: e.rpc_id.as_deref(),
            tool: e.tool.as_deref(),
            payload,
            decision: e.decision.as_deref(),
            rule: e.rule.as_deref(),
            upstream_latency_us: e.upstream_latency_us,
        }
    }

    pub fn chain_hash(&self, prev: &[u8]) -> Hash {
        let bytes = serde_json::to_vec(self).expect("serializing plain fields cannot fail");
        sha256(&[prev, &bytes])
    }
}

/// The bytes the seal signs.
pub(super) fn seal_message(
    session: &str,
    last_seq: u64,
    head: &[u8],
    ended_ms: i64,
    how: &str,
) -> Vec<u8> {
    #[derive(Serialize)]
    struct CanonSeal<'a> {
        v: u8,
        session: &'a str,
        last_seq: u64,
        head: String,
        ended_ms: i64,
        how: &'a str,
    }
    let canon = CanonSeal {
        v: 1,
        session,
        last_seq,
        head: hex(head),
        ended_ms,
        how,
    };
    let mut msg = b"mcpgw-record seal\n".to_vec();
    msg.extend(serde_json::to_vec(&canon).expect("serializing plain fields cannot fail"));
    msg
}

pub(super) fn mcp_session_event(
    time_ms: i64,
    mcp_session_id: Option<&str>,
    protocol_version: Option<&str>,
) -> EventData {
    let mut details = serde_json::Map::new();
    if let Some(id) = mcp_session_id {
        details.insert("mcp_session_id".into(), id.into());
    }
    if let Some(v) = protocol_version {
        details.insert("protocol_version".into(), v.into());
    }
    EventData::gateway(time_ms, MCP_SESSION_EVENT, Value::Object(details))
}

/// An event row exactly as read from the database.
pub(super) struct RawEvent {
    pub seq: i64,
    pub data: EventData,
    /// The stored payload text (what was hashed), not re-serialized.
    pub payload_text: String,
    pub hash: Vec<u8>,
}

/// The session row fields verification needs.
pub(super) struct SealedSession {
    pub id: String,
    pub started_ms: i64,
    pub meta: SessionMeta,
    pub ended_ms: Option<i64>,
    pub how_ended: Option<String>,
    pub last_seq: Option<i64>,
    pub head: Option<Vec<u8>>,
    pub seal: Option<Vec<u8>>,
}

/// Walks one session's events in seq order.
pub(super) struct ChainCheck {
    session: String,
    expected: u64,
    prev: Vec<u8>,
    /// The link into the current row cannot be checked (the row before it is missing).
    after_gap: bool,
    events: u64,
    last_seq: u64,
    mcp_session_id: Option<String>,
    protocol_version: Option<String>,
    problems: Vec<String>,
}

impl ChainCheck {
    pub fn new(session: &SealedSession) -> Self {
        ChainCheck {
            session: session.id.clone(),
            expected: 1,
            prev: genesis_hash(&session.id, session.started_ms, &session.meta).to_vec(),
            after_gap: false,
            events: 0,
            last_seq: 0,
            mcp_session_id: None,
            protocol_version: None,
            problems: Vec::new(),
        }
    }

    pub fn push(&mut self, row: &RawEvent) {
        self.events += 1;
        let Ok(seq) = u64::try_from(row.seq) else {
            self.problems.push(format!(
                "seq {}: invalid sequence number (inserted)",
                row.seq
            ));
            return;
        };
        if seq < self.expected {
            self.problems.push(format!(
                "seq {seq}: duplicate or out-of-order row after seq {} (inserted)",
                self.expected - 1
            ));
            return;
        }
        if seq > self.expected {
            let missing = if seq == self.expected + 1 {
                format!("seq {}", self.expected)
            } else {
                format!("seq {}..={}", self.expected, seq - 1)
            };
            self.problems.push(format!(
                "{missing}: missing (deleted; chain jumps from seq {} to seq {seq})",
                self.expected - 1
            ));
            self.after_gap = true;
        }
        let computed = CanonEvent::new(&self.session, seq, &row.data, &row.payload_text)
            .chain_hash(&self.prev);
        if computed[..] != row.hash[..] && !self.after_gap {
            let hint = if seq == 1 {
                "edited, reordered or inserted; or session metadata edited"
            } else {
                "edited, reordered or inserted"
            };
            self.problems
                .push(format!("seq {seq}: hash mismatch ({hint})"));
        }
        self.after_gap = false;
        // Chain on from the stored hash so one bad row is reported once, not at every later seq.
        self.prev = row.hash.clone();
        self.expected = seq + 1;
        self.last_seq = seq;
        if row.data.kind == "gateway" && row.data.method.as_deref() == Some(MCP_SESSION_EVENT) {
            if let Some(id) = row
                .data
                .payload
                .get("mcp_session_id")
                .and_then(Value::as_str)
            {
                self.mcp_session_id = Some(id.to_owned());
            }
            if let Some(v) = row
                .data
                .payload
                .get("protocol_version")
                .and_then(Value::as_str)
            {
                self.protocol_version = Some(v.to_owned());
            }
        }
    }

    pub fn finish(mut self, session: &SealedSession, public_key: &[u8]) -> VerifyReport {
        let id = &session.id;
        if session.meta.mcp_session_id != self.mcp_session_id
            || session.meta.protocol_version != self.protocol_version
        {
            self.problems.push(format!(
                "session {id}: MCP session id or protocol version differs from the recorded {MCP_SESSION_EVENT} events (edited)"
            ));
        }
        let chain_last = self.last_seq;
        match (session.ended_ms, &session.seal) {
            (None, None) => {}
            (None, Some(_)) => self.problems.push(format!(
                "session {id}: sealed but marked open (end time removed)"
            )),
            (Some(_), None) => self.problems.push(format!(
                "session {id}: seal missing on an ended session (chain ends at seq {chain_last})"
            )),
            (Some(ended_ms), Some(seal)) => {
                let sealed_last = session.last_seq.and_then(|s| u64::try_from(s).ok());
                let head = session.head.as_deref().unwrap_or_default();
                let how = session.how_ended.as_deref().unwrap_or_default();
                let msg = seal_message(id, sealed_last.unwrap_or(u64::MAX), head, ended_ms, how);
                let key = UnparsedPublicKey::new(&ED25519, public_key);
                if sealed_last.is_none() || key.verify(&msg, seal).is_err() {
                    self.problems.push(format!(
                        "session {id}: seal signature invalid (end time, how ended, last seq or head edited, or seal forged)"
                    ));
                }
                let sealed_last = sealed_last.unwrap_or(0);
                if sealed_last > chain_last {
                    self.problems.push(format!(
                        "seq {}: missing (truncated; chain ends at seq {chain_last}, seal says last seq {sealed_last})",
                        chain_last + 1
                    ));
                } else if sealed_last < chain_last {
                    self.problems.push(format!(
                        "seq {}: event after the sealed last seq {sealed_last} (inserted)",
                        sealed_last + 1
                    ));
                } else if head != self.prev.as_slice() {
                    self.problems.push(if chain_last == 0 {
                        format!("session {id}: metadata does not match the seal (edited)")
                    } else {
                        format!("seq {chain_last}: chain head does not match the seal (edited)")
                    });
                }
            }
        }
        VerifyReport {
            session: self.session,
            ok: self.problems.is_empty(),
            problems: self.problems,
            events: self.events,
            sealed: session.seal.is_some(),
        }
    }
}
