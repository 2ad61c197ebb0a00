//! Session recording: every JSON-RPC message and gateway event of a gateway session, in an
//! embedded SQLite database (`state_dir/recording.db`), hash-chained per session and sealed
//! with the host's Ed25519 key (`state_dir/record.key`) when the session ends.
//!
//! Writes go through one writer thread with group commit (see `store`): the data path only
//! enqueues, and `Recorder::flush` waits until what was enqueued before it is durable.
//! `Reader` answers the admin CLI: list, show, verify, export (JSONL, HTML), prune.

mod export;
pub mod stage;
mod store;
mod verify;

#[cfg(test)]
mod tests;

use std::{
    fs, io,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        mpsc, Arc, Mutex,
    },
    thread,
};

use ring::signature::{Ed25519KeyPair, KeyPair};
use serde::{Deserialize, Serialize};

pub use store::Reader;

/// File name of the recording database inside `state_dir`.
pub const DB_FILE: &str = "recording.db";
/// File name of the host sealing key (PKCS#8 Ed25519, mode 0600) inside `state_dir`.
pub const KEY_FILE: &str = "record.key";

/// How many operations may wait for the writer before producers wait too.
const QUEUE_CAPACITY: usize = 16 * 1024;

/// Gateway event kind written when the MCP session id or protocol version becomes known.
pub const MCP_SESSION_EVENT: &str = "mcp_session";

#[derive(thiserror::Error, Debug)]
pub enum RecordError {
    #[error("creating state directory {0}: {1}")]
    StateDir(PathBuf, #[source] io::Error),
    #[error("recording key {0}: {1}")]
    KeyIo(PathBuf, #[source] io::Error),
    #[error("recording key {0} is not a valid Ed25519 PKCS#8 key")]
    KeyInvalid(PathBuf),
    #[error("generating the recording key failed")]
    KeyGenerate,
    #[error("opening recording database {0}: {1}")]
    Open(PathBuf, #[source] rusqlite::Error),
    #[error("recording database, {0}: {1}")]
    Sql(&'static str, #[source] rusqlite::Error),
    #[error("recorded session {0} not found")]
    NotFound(String),
    #[error("stored payload of session {session} seq {seq} is not JSON: {source}")]
    Payload {
        session: String,
        seq: u64,
        #[source]
        source: serde_json::Error,
    },
    #[error("starting the recording writer thread: {0}")]
    Spawn(#[source] io::Error),
    #[error("the recording writer has stopped")]
    WriterGone,
    #[error("recording writes failed: {0}")]
    Write(String),
    #[error("writing export: {0}")]
    Export(#[source] io::Error),
}

pub use crate::clock::{Clock, SystemClock};

/// What is known about a gateway session when it starts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionMeta {
    pub server: String,
    pub orig_dst: String,
    pub sni: Option<String>,
    pub client: String,
    pub pid: Option<u32>,
    pub uid: Option<u32>,
    pub exe: Option<String>,
    pub cgroup: Option<String>,
    pub subject: Option<String>,
    pub mcp_session_id: Option<String>,
    pub protocol_version: Option<String>,
}

/// One recorded message or gateway event, as the data path hands it over.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventData {
    pub time_ms: i64,
    /// `c2s`, `s2c` or `gateway`.
    pub direction: String,
    /// `request`, `response`, `notification`, `error` or `gateway`.
    pub kind: String,
    /// The JSON-RPC method; for gateway events, the gateway event kind.
    pub method: Option<String>,
    pub rpc_id: Option<String>,
    pub tool: Option<String>,
    /// The message as forwarded (already masked); for gateway events, the details.
    pub payload: serde_json::Value,
    pub decision: Option<String>,
    pub rule: Option<String>,
    pub upstream_latency_us: Option<u64>,
}

impl EventData {
    /// A gateway event (not a JSON-RPC message): `kind` names it, `details` says the rest.
    pub fn gateway(time_ms: i64, kind: &str, details: serde_json::Value) -> EventData {
        EventData {
            time_ms,
            direction: "gateway".into(),
            kind: "gateway".into(),
            method: Some(kind.into()),
            rpc_id: None,
            tool: None,
            payload: details,
            decision: None,
            rule: None,
            upstream_latency_us: None,
        }
    }
}

/// A recorded session as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    pub id: String,
    pub started_ms: i64,
    pub ended_ms: Option<i64>,
    /// `closed`, `interrupted` or a reason; `None` while the session is open.
    pub how_ended: Option<String>,
    pub server: String,
    pub orig_dst: String,
    pub sni: Option<String>,
    pub client: String,
    pub pid: Option<u32>,
    pub uid: Option<u32>,
    pub exe: Option<String>,
    pub cgroup: Option<String>,
    pub subject: Option<String>,
    pub mcp_session_id: Option<String>,
    pub protocol_version: Option<String>,
    pub events: u64,
    pub sealed: bool,
}

/// A recorded event as stored, with its place in the session's hash chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    pub session_id: String,
    pub seq: u64,
    pub time_ms: i64,
    pub direction: String,
    pub kind: String,
    pub method: Option<String>,
    pub rpc_id: Option<String>,
    pub tool: Option<String>,
    pub payload: serde_json::Value,
    pub decision: Option<String>,
    pub rule: Option<String>,
    pub upstream_latency_us: Option<u64>,
    /// Hex SHA-256 chain hash of this event.
    pub hash: String,
}

/// Which sessions `Reader::list_sessions` returns; every set field must match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionFilter {
    pub subject: Option<String>,
    pub server: Option<String>,
    /// Sessions that started at or after this time (Unix milliseconds).
    pub since: Option<i64>,
    /// Sessions with at least one event carrying this decision.
    pub decision: Option<String>,
}

/// The outcome of verifying one session's chain and seal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyReport {
    pub session: String,
    pub ok: bool,
    /// Each names where, e.g. `seq 3: hash mismatch (edited)`.
    pub problems: Vec<String>,
    /// Events found in the chain.
    pub events: u64,
    pub sealed: bool,
}

/// Handle to the recording store; cheap to clone, shared by every connection task.
#[derive(Clone)]
pub struct Recorder {
    inner: Arc<Inner>,
}

struct Inner {
    tx: Option<mpsc::SyncSender<store::Op>>,
    writer: Mutex<Option<thread::JoinHandle<()>>>,
    db_path: PathBuf,
    public_key: Arc<[u8]>,
    clock: Arc<dyn Clock>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the queue lets the writer commit what is queued and stop.
        self.tx.take();
        let handle = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(handle) = handle {
            if handle.join().is_err() {
                tracing::error!("recording writer thread panicked");
            }
        }
    }
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("db", &self.inner.db_path)
            .finish_non_exhaustive()
    }
}

static SESSION_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Recorder {
    /// Opens (creating if needed) the database and host key in `state_dir`, seals sessions a
    /// previous run left open as `interrupted`, and starts the writer thread.
    pub fn open(state_dir: &Path) -> Result<Recorder, RecordError> {
        Recorder::open_with_clock(state_dir, Arc::new(SystemClock))
    }

    pub fn open_with_clock(
        state_dir: &Path,
        clock: Arc<dyn Clock>,
    ) -> Result<Recorder, RecordError> {
        fs::create_dir_all(state_dir)
            .map_err(|e| RecordError::StateDir(state_dir.to_owned(), e))?;
        let key = load_or_create_key(&state_dir.join(KEY_FILE))?;
        let public_key: Arc<[u8]> = Arc::from(key.public_key().as_ref());
        let db_path = state_dir.join(DB_FILE);
        let mut conn = store::open_writer(&db_path)?;
        let recovered = store::recover_interrupted(&mut conn, &key)?;
        if recovered > 0 {
            tracing::warn!(
                sessions = recovered,
                "sealed recorded sessions left open by the previous run as interrupted"
            );
        }
        let (tx, rx) = mpsc::sync_channel(QUEUE_CAPACITY);
        let writer = thread::Builder::new()
            .name("mcpgw-record".into())
            .spawn(move || store::Writer::new(conn, key).run(rx))
            .map_err(RecordError::Spawn)?;
        Ok(Recorder {
            inner: Arc::new(Inner {
                tx: Some(tx),
                writer: Mutex::new(Some(writer)),
                db_path,
                public_key,
                clock,
            }),
        })
    }

    /// Starts a session and returns its id; the session row is enqueued like any event.
    pub fn start_session(&self, meta: SessionMeta) -> Result<String, RecordError> {
        let started_ms = self.inner.clock.now_ms();
        let n = SESSION_COUNTER.fetch_add(1, Ordering::Relaxed);
        let id = format!("s-{started_ms}-{n}");
        self.send(store::Op::Start {
            id: id.clone(),
            started_ms,
            meta: Box::new(meta),
        })?;
        Ok(id)
    }

    /// Enqueues an event; waits only if the queue is full, never on disk.
    pub fn record(&self, session_id: &str, event: EventData) {
        let op = store::Op::Event {
            session: session_id.to_owned(),
            event: Box::new(event),
        };
        if self.send(op).is_err() {
            tracing::error!(session = session_id, "recording writer stopped; event lost");
        }
    }

    /// Records that the MCP session id and/or protocol version became known (a chained
    /// gateway event, and the session's columns for queries).
    pub fn update_mcp(
        &self,
        session_id: &str,
        mcp_session_id: Option<&str>,
        protocol_version: Option<&str>,
    ) {
        let event =
            verify::mcp_session_event(self.inner.clock.now_ms(), mcp_session_id, protocol_version);
        self.record(session_id, event);
    }

    /// Enqueues the end of a session: it is sealed with the host key over its chain head.
    pub fn end_session(&self, session_id: &str, how: &str) {
        let op = store::Op::End {
            session: session_id.to_owned(),
            how: how.to_owned(),
            ended_ms: self.inner.clock.now_ms(),
        };
        if self.send(op).is_err() {
            tracing::error!(
                session = session_id,
                "recording writer stopped; session end lost"
            );
        }
    }

    /// Blocks until everything enqueued before this call is committed. Reports operations
    /// the writer rejected or failed to write since the previous flush.
    pub fn flush(&self) -> Result<(), RecordError> {
        let (ack_tx, ack_rx) = mpsc::sync_channel(1);
        self.send(store::Op::Flush(ack_tx))?;
        match ack_rx.recv() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(RecordError::Write(e)),
            Err(_) => Err(RecordError::WriterGone),
        }
    }

    /// A separate connection for queries.
    pub fn reader(&self) -> Result<Reader, RecordError> {
        Reader::with_key(
            &self.inner.db_path,
            self.inner.public_key.clone(),
            self.inner.clock.clone(),
        )
    }

    fn send(&self, op: store::Op) -> Result<(), RecordError> {
        let tx = self.inner.tx.as_ref().ok_or(RecordError::WriterGone)?;
        tx.send(op).map_err(|_| RecordError::WriterGone)
    }
}

/// Reads the host sealing key, creating it (mode 0600) on first use.
fn load_or_create_key(path: &Path) -> Result<Ed25519KeyPair, RecordError> {
    let bytes = crate::keyfile::load_or_create(path, || {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| io::Error::other("no randomness for an Ed25519 key"))?;
        Ok(pkcs8.as_ref().to_vec())
    })
    .map_err(|e| RecordError::KeyIo(path.to_owned(), e))?;
    Ed25519KeyPair::from_pkcs8(&bytes).map_err(|_| RecordError::KeyInvalid(path.to_owned()))
}

/// Reads only the public half of the host key, for verifying without a running recorder.
fn load_public_key(path: &Path) -> Result<Arc<[u8]>, RecordError> {
    let bytes = fs::read(path).map_err(|e| RecordError::KeyIo(path.to_owned(), e))?;
    let key =
        Ed25519KeyPair::from_pkcs8(&bytes).map_err(|_| RecordError::KeyInvalid(path.to_owned()))?;
    Ok(Arc::from(key.public_key().as_ref()))
}
