//! The SQLite side: schema, the single writer thread with group commit, crash recovery, and
//! the read connection behind the admin queries.

use std::{
    collections::{hash_map::Entry, HashMap, HashSet},
    path::Path,
    sync::{mpsc, Arc},
    thread,
    time::Duration,
};

use ring::signature::Ed25519KeyPair;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Transaction};

use super::{
    verify::{self, canonical_json, CanonEvent, ChainCheck, Hash, RawEvent, SealedSession},
    Clock, EventData, RecordError, SessionFilter, SessionInfo, SessionMeta, StoredEvent,
    SystemClock, VerifyReport, KEY_FILE, MCP_SESSION_EVENT,
};

/// At most this many queued operations go into one transaction.
const MAX_BATCH: usize = 8 * 1024;
const WRITE_ATTEMPTS: u32 = 3;
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sessions (
    id               TEXT PRIMARY KEY NOT NULL,
    started_ms       INTEGER NOT NULL,
    ended_ms         INTEGER,
    how_ended        TEXT,
    server           TEXT NOT NULL,
    orig_dst         TEXT NOT NULL,
    sni              TEXT,
    client           TEXT NOT NULL,
    pid              INTEGER,
    uid              INTEGER,
    exe              TEXT,
    cgroup           TEXT,
    subject          TEXT,
    mcp_session_id   TEXT,
    protocol_version TEXT,
    last_seq         INTEGER,
    head             BLOB,
    seal             BLOB
);
CREATE INDEX IF NOT EXISTS sessions_started ON sessions (started_ms);
CREATE INDEX IF NOT EXISTS sessions_ended ON sessions (ended_ms);
CREATE TABLE IF NOT EXISTS events (
    session_id          TEXT NOT NULL,
    seq                 INTEGER NOT NULL,
    time_ms             INTEGER NOT NULL,
    direction           TEXT NOT NULL,
    kind                TEXT NOT NULL,
    method              TEXT,
    rpc_id              TEXT,
    tool                TEXT,
    payload             TEXT NOT NULL,
    decision            TEXT,
    rule                TEXT,
    upstream_latency_us INTEGER,
    hash                BLOB NOT NULL,
    PRIMARY KEY (session_id, seq)
) WITHOUT ROWID;
";

const SESSION_COLUMNS: &str =
    "id, started_ms, ended_ms, how_ended, server, orig_dst, sni, client, \
     pid, uid, exe, cgroup, subject, mcp_session_id, protocol_version, last_seq, head, seal";

const EVENT_COLUMNS: &str = "seq, time_ms, direction, kind, method, rpc_id, tool, payload, \
     decision, rule, upstream_latency_us, hash";

trait SqlContext<T> {
    fn ctx(self, what: &'static str) -> Result<T, RecordError>;
}

impl<T> SqlContext<T> for rusqlite::Result<T> {
    fn ctx(self, what: &'static str) -> Result<T, RecordError> {
        self.map_err(|e| RecordError::Sql(what, e))
    }
}

pub(super) fn open_writer(path: &Path) -> Result<Connection, RecordError> {
    let open = |e| RecordError::Open(path.to_owned(), e);
    let conn = Connection::open(path).map_err(open)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(open)?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(open)?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(path = %path.display(), mode, "recording database is not in WAL mode");
    }
    // FULL: each commit (one per batch) is fsynced, so `flush` means durable.
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(open)?;
    conn.execute_batch(SCHEMA).map_err(open)?;
    Ok(conn)
}

/// Seals every session a previous run left open as `interrupted`, at its last durable event.
pub(super) fn recover_interrupted(
    conn: &mut Connection,
    key: &Ed25519KeyPair,
) -> Result<usize, RecordError> {
    let tx = conn.transaction().ctx("starting recovery")?;
    let open: Vec<String> = {
        let mut stmt = tx
            // A sealed row with its end time removed is tampering for `verify` to report,
            // not a session to seal again.
            .prepare("SELECT id FROM sessions WHERE ended_ms IS NULL AND seal IS NULL")
            .ctx("finding open sessions")?;
        let rows = stmt
            .query_map([], |r| r.get(0))
            .ctx("finding open sessions")?;
        rows.collect::<rusqlite::Result<_>>()
            .ctx("finding open sessions")?
    };
    for id in &open {
        let session = read_session(&tx, id)?.ok_or_else(|| RecordError::NotFound(id.clone()))?;
        let last: Option<(i64, Vec<u8>, i64)> = tx
            .query_row(
                "SELECT seq, hash, time_ms FROM events WHERE session_id = ?1 ORDER BY seq DESC LIMIT 1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .ctx("reading the last event of an open session")?;
        let (last_seq, head, ended_ms) = match last {
            Some((seq, hash, time_ms)) => (u64::try_from(seq).unwrap_or(0), hash, time_ms),
            None => (
                0,
                verify::genesis_hash(id, session.started_ms, &session.meta).to_vec(),
                session.started_ms,
            ),
        };
        seal_session(&tx, key, id, last_seq, &head, ended_ms, "interrupted")
            .ctx("sealing an interrupted session")?;
    }
    tx.commit().ctx("committing recovery")?;
    Ok(open.len())
}

fn seal_session(
    tx: &Transaction<'_>,
    key: &Ed25519KeyPair,
    id: &str,
    last_seq: u64,
    head: &[u8],
    ended_ms: i64,
    how: &str,
) -> rusqlite::Result<()> {
    let seal = key.sign(&verify::seal_message(id, last_seq, head, ended_ms, how));
    tx.prepare_cached(
        "UPDATE sessions SET ended_ms = ?2, how_ended = ?3, last_seq = ?4, head = ?5, seal = ?6 \
         WHERE id = ?1",
    )?
    .execute(params![
        id,
        ended_ms,
        how,
        i64::try_from(last_seq).unwrap_or(i64::MAX),
        head,
        seal.as_ref()
    ])?;
    Ok(())
}

/// What producers enqueue for the writer.
pub(super) enum Op {
    Start {
        id: String,
        started_ms: i64,
        meta: Box<SessionMeta>,
    },
    Event {
        session: String,
        event: Box<EventData>,
    },
    End {
        session: String,
        how: String,
        ended_ms: i64,
    },
    Flush(mpsc::SyncSender<Result<(), String>>),
}

/// Where a live session's chain stands.
#[derive(Clone, Copy)]
struct Chain {
    seq: u64,
    head: Hash,
}

pub(super) struct Writer {
    conn: Connection,
    key: Ed25519KeyPair,
    live: HashMap<String, Chain>,
    /// Problems since the last flush, reported to the next one.
    problems: Vec<String>,
}

impl Writer {
    pub fn new(conn: Connection, key: Ed25519KeyPair) -> Writer {
        Writer {
            conn,
            key,
            live: HashMap::new(),
            problems: Vec::new(),
        }
    }

    /// Group commit: take everything queued, write it in one transaction, commit, repeat.
    pub fn run(mut self, rx: mpsc::Receiver<Op>) {
        while let Ok(first) = rx.recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(op) => batch.push(op),
                    Err(_) => break,
                }
            }
            self.commit(&batch);
            let flushes: Vec<_> = batch
                .into_iter()
                .filter_map(|op| match op {
                    Op::Flush(ack) => Some(ack),
                    _ => None,
                })
                .collect();
            if !flushes.is_empty() {
                let outcome = if self.problems.is_empty() {
                    Ok(())
                } else {
                    Err(std::mem::take(&mut self.problems).join("; "))
                };
                for ack in flushes {
                    let _ = ack.send(outcome.clone());
                }
            }
        }
    }

    fn commit(&mut self, batch: &[Op]) {
        let mut last_error = None;
        for attempt in 1..=WRITE_ATTEMPTS {
            let mut undo = Undo::default();
            let mut rejected = Vec::new();
            let result = write_batch(
                &mut self.conn,
                &self.key,
                &mut self.live,
                &mut undo,
                &mut rejected,
                batch,
            );
            match result {
                Ok(()) => {
                    for problem in &rejected {
                        tracing::warn!(problem, "recording operation rejected");
                    }
                    self.problems.extend(rejected);
                    return;
                }
                Err(e) => {
                    undo.restore(&mut self.live);
                    tracing::warn!(attempt, error = %e, "recording batch failed");
                    last_error = Some(e);
                    thread::sleep(Duration::from_millis(50 * u64::from(attempt)));
                }
            }
        }
        let error = last_error.map(|e| e.to_string()).unwrap_or_default();
        tracing::error!(operations = batch.len(), error, "recording batch lost");
        self.problems
            .push(format!("{} operations not written: {error}", batch.len()));
    }
}

/// The chain state of live sessions before a batch touched them, to roll back on failure.
#[derive(Default)]
struct Undo {
    seen: HashSet<String>,
    before: Vec<(String, Option<Chain>)>,
}

impl Undo {
    fn note(&mut self, live: &HashMap<String, Chain>, id: &str) {
        if self.seen.insert(id.to_owned()) {
            self.before.push((id.to_owned(), live.get(id).copied()));
        }
    }

    fn restore(self, live: &mut HashMap<String, Chain>) {
        for (id, chain) in self.before {
            match chain {
                Some(c) => live.insert(id, c),
                None => live.remove(&id),
            };
        }
    }
}

fn write_batch(
    conn: &mut Connection,
    key: &Ed25519KeyPair,
    live: &mut HashMap<String, Chain>,
    undo: &mut Undo,
    rejected: &mut Vec<String>,
    batch: &[Op],
) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    for op in batch {
        match op {
            Op::Start {
                id,
                started_ms,
                meta,
            } => {
                if live.contains_key(id) {
                    rejected.push(format!("session {id}: started twice"));
                    continue;
                }
                let SessionMeta {
                    server,
                    orig_dst,
                    sni,
                    client,
                    pid,
                    uid,
                    exe,
                    cgroup,
                    subject,
                    mcp_session_id,
                    protocol_version,
                } = &**meta;
                let inserted = tx
                    .prepare_cached(
                        "INSERT INTO sessions (id, started_ms, server, orig_dst, sni, client, pid, uid, \
                         exe, cgroup, subject) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) \
                         ON CONFLICT (id) DO NOTHING",
                    )?
                    .execute(params![
                        id, started_ms, server, orig_dst, sni, client, pid, uid, exe, cgroup, subject
                    ])?;
                if inserted == 0 {
                    rejected.push(format!("session {id}: already recorded"));
                    continue;
                }
                undo.note(live, id);
                let genesis = verify::genesis_hash(id, *started_ms, meta);
                live.insert(
                    id.clone(),
                    Chain {
                        seq: 0,
                        head: genesis,
                    },
                );
                if mcp_session_id.is_some() || protocol_version.is_some() {
                    let event = verify::mcp_session_event(
                        *started_ms,
                        mcp_session_id.as_deref(),
                        protocol_version.as_deref(),
                    );
                    append_event(&tx, live, undo, rejected, id, &event)?;
                }
            }
            Op::Event { session, event } => {
                append_event(&tx, live, undo, rejected, session, event)?;
            }
            Op::End {
                session,
                how,
                ended_ms,
            } => {
                undo.note(live, session);
                let Some(chain) = live.remove(session) else {
                    rejected.push(format!("session {session}: ended but not open"));
                    continue;
                };
                seal_session(&tx, key, session, chain.seq, &chain.head, *ended_ms, how)?;
            }
            Op::Flush(_) => {}
        }
    }
    tx.commit()
}

fn append_event(
    tx: &Transaction<'_>,
    live: &mut HashMap<String, Chain>,
    undo: &mut Undo,
    rejected: &mut Vec<String>,
    session: &str,
    event: &EventData,
) -> rusqlite::Result<()> {
    undo.note(live, session);
    let Entry::Occupied(mut entry) = live.entry(session.to_owned()) else {
        rejected.push(format!(
            "session {session}: event {} {} for a session not open",
            event.kind,
            event.method.as_deref().unwrap_or("-")
        ));
        return Ok(());
    };
    let chain = entry.get_mut();
    let seq = chain.seq + 1;
    let payload = canonical_json(&event.payload);
    let hash = CanonEvent::new(session, seq, event, &payload).chain_hash(&chain.head);
    let latency = event
        .upstream_latency_us
        .map(|us| i64::try_from(us).unwrap_or(i64::MAX));
    tx.prepare_cached(
        "INSERT INTO events (session_id, seq, time_ms, direction, kind, method, rpc_id, tool, \
         payload, decision, rule, upstream_latency_us, hash) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )?
    .execute(params![
        session,
        i64::try_from(seq).unwrap_or(i64::MAX),
        event.time_ms,
        event.direction,
        event.kind,
        event.method,
        event.rpc_id,
        event.tool,
        payload,
        event.decision,
        event.rule,
        latency,
        &hash[..],
    ])?;
    chain.seq = seq;
    chain.head = hash;
    if event.kind == "gateway" && event.method.as_deref() == Some(MCP_SESSION_EVENT) {
        let field = |name| event.payload.get(name).and_then(|v| v.as_str());
        tx.prepare_cached(
            "UPDATE sessions SET mcp_session_id = COALESCE(?2, mcp_session_id), \
             protocol_version = COALESCE(?3, protocol_version) WHERE id = ?1",
        )?
        .execute(params![
            session,
            field("mcp_session_id"),
            field("protocol_version")
        ])?;
    }
    Ok(())
}

fn session_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SealedSession> {
    Ok(SealedSession {
        id: r.get(0)?,
        started_ms: r.get(1)?,
        ended_ms: r.get(2)?,
        how_ended: r.get(3)?,
        meta: SessionMeta {
            server: r.get(4)?,
            orig_dst: r.get(5)?,
            sni: r.get(6)?,
            client: r.get(7)?,
            pid: r.get(8)?,
            uid: r.get(9)?,
            exe: r.get(10)?,
            cgroup: r.get(11)?,
            subject: r.get(12)?,
            mcp_session_id: r.get(13)?,
            protocol_version: r.get(14)?,
        },
        last_seq: r.get(15)?,
        head: r.get(16)?,
        seal: r.get(17)?,
    })
}

fn read_session(conn: &Connection, id: &str) -> Result<Option<SealedSession>, RecordError> {
    conn.query_row(
        &format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?1"),
        [id],
        session_from_row,
    )
    .optional()
    .ctx("reading a session")
}

fn event_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawEvent> {
    let payload_text: String = r.get(7)?;
    let latency: Option<i64> = r.get(10)?;
    Ok(RawEvent {
        seq: r.get(0)?,
        data: EventData {
            time_ms: r.get(1)?,
            direction: r.get(2)?,
            kind: r.get(3)?,
            method: r.get(4)?,
            rpc_id: r.get(5)?,
            tool: r.get(6)?,
            // A payload that is no longer JSON shows as a hash mismatch in `verify`.
            payload: serde_json::from_str(&payload_text).unwrap_or(serde_json::Value::Null),
            decision: r.get(8)?,
            rule: r.get(9)?,
            upstream_latency_us: latency.and_then(|us| u64::try_from(us).ok()),
        },
        payload_text,
        hash: r.get(11)?,
    })
}

fn info(session: SealedSession, events: u64) -> SessionInfo {
    let SealedSession {
        id,
        started_ms,
        meta,
        ended_ms,
        how_ended,
        last_seq: _,
        head: _,
        seal,
    } = session;
    let SessionMeta {
        server,
        orig_dst,
        sni,
        client,
        pid,
        uid,
        exe,
        cgroup,
        subject,
        mcp_session_id,
        protocol_version,
    } = meta;
    SessionInfo {
        id,
        started_ms,
        ended_ms,
        how_ended,
        server,
        orig_dst,
        sni,
        client,
        pid,
        uid,
        exe,
        cgroup,
        subject,
        mcp_session_id,
        protocol_version,
        events,
        sealed: seal.is_some(),
    }
}

/// A connection for the admin queries; opened read-only (`prune` opens its own writable one).
pub struct Reader {
    pub(super) conn: Connection,
    path: std::path::PathBuf,
    public_key: Arc<[u8]>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("db", &self.path)
            .finish_non_exhaustive()
    }
}

impl Reader {
    /// Opens the store in `state_dir` without a running recorder (e.g. an offline `verify`).
    pub fn open(state_dir: &Path) -> Result<Reader, RecordError> {
        let public_key = super::load_public_key(&state_dir.join(KEY_FILE))?;
        Reader::with_key(
            &state_dir.join(super::DB_FILE),
            public_key,
            Arc::new(SystemClock),
        )
    }

    pub(super) fn with_key(
        path: &Path,
        public_key: Arc<[u8]>,
        clock: Arc<dyn Clock>,
    ) -> Result<Reader, RecordError> {
        let open = |e| RecordError::Open(path.to_owned(), e);
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(open)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open)?;
        Ok(Reader {
            conn,
            path: path.to_owned(),
            public_key,
            clock,
        })
    }

    /// Sessions matching every set field of `f`, newest first.
    pub fn list_sessions(&self, f: &SessionFilter) -> Result<Vec<SessionInfo>, RecordError> {
        let sql = format!(
            "SELECT {SESSION_COLUMNS}, (SELECT COUNT(*) FROM events e WHERE e.session_id = s.id) \
             FROM sessions s \
             WHERE (?1 IS NULL OR subject = ?1) AND (?2 IS NULL OR server = ?2) \
               AND (?3 IS NULL OR started_ms >= ?3) \
               AND (?4 IS NULL OR EXISTS (SELECT 1 FROM events e WHERE e.session_id = s.id AND e.decision = ?4)) \
             ORDER BY started_ms DESC, id DESC"
        );
        let mut stmt = self.conn.prepare(&sql).ctx("listing sessions")?;
        let rows = stmt
            .query_map(params![f.subject, f.server, f.since, f.decision], |r| {
                let count: i64 = r.get(18)?;
                Ok(info(
                    session_from_row(r)?,
                    u64::try_from(count).unwrap_or(0),
                ))
            })
            .ctx("listing sessions")?;
        rows.collect::<rusqlite::Result<_>>()
            .ctx("listing sessions")
    }

    /// One session and its events in seq order.
    pub fn show(&self, id: &str) -> Result<(SessionInfo, Vec<StoredEvent>), RecordError> {
        let session =
            read_session(&self.conn, id)?.ok_or_else(|| RecordError::NotFound(id.to_owned()))?;
        let mut events = Vec::new();
        self.for_each_event(id, |raw| {
            events.push(raw);
            Ok(())
        })?;
        let events = events
            .into_iter()
            .map(|raw| {
                let seq = u64::try_from(raw.seq).unwrap_or(0);
                let payload = serde_json::from_str(&raw.payload_text).map_err(|source| {
                    RecordError::Payload {
                        session: id.to_owned(),
                        seq,
                        source,
                    }
                })?;
                let EventData {
                    time_ms,
                    direction,
                    kind,
                    method,
                    rpc_id,
                    tool,
                    payload: _,
                    decision,
                    rule,
                    upstream_latency_us,
                } = raw.data;
                Ok(StoredEvent {
                    session_id: id.to_owned(),
                    seq,
                    time_ms,
                    direction,
                    kind,
                    method,
                    rpc_id,
                    tool,
                    payload,
                    decision,
                    rule,
                    upstream_latency_us,
                    hash: verify::hex(&raw.hash),
                })
            })
            .collect::<Result<Vec<_>, RecordError>>()?;
        let count = events.len() as u64;
        Ok((info(session, count), events))
    }

    /// Checks the hash chain and seal of one session, or of every session (`None`), which also
    /// reports events whose session row is gone.
    pub fn verify(&self, id: Option<&str>) -> Result<Vec<VerifyReport>, RecordError> {
        let ids: Vec<String> = match id {
            Some(id) => vec![id.to_owned()],
            None => {
                let mut stmt = self
                    .conn
                    .prepare("SELECT id FROM sessions ORDER BY started_ms, id")
                    .ctx("listing sessions to verify")?;
                let rows = stmt
                    .query_map([], |r| r.get(0))
                    .ctx("listing sessions to verify")?;
                rows.collect::<rusqlite::Result<_>>()
                    .ctx("listing sessions to verify")?
            }
        };
        let mut reports = Vec::with_capacity(ids.len());
        for id in &ids {
            reports.push(self.verify_one(id)?);
        }
        if id.is_none() {
            let mut stmt = self
                .conn
                .prepare(
                    "SELECT session_id, COUNT(*) FROM events \
                     WHERE session_id NOT IN (SELECT id FROM sessions) GROUP BY session_id",
                )
                .ctx("finding orphaned events")?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
                .ctx("finding orphaned events")?;
            for row in rows {
                let (session, count) = row.ctx("finding orphaned events")?;
                reports.push(VerifyReport {
                    problems: vec![format!(
                        "session {session}: session row missing (deleted); {count} events remain"
                    )],
                    session,
                    ok: false,
                    events: u64::try_from(count).unwrap_or(0),
                    sealed: false,
                });
            }
        }
        Ok(reports)
    }

    pub(super) fn verify_one(&self, id: &str) -> Result<VerifyReport, RecordError> {
        let session =
            read_session(&self.conn, id)?.ok_or_else(|| RecordError::NotFound(id.to_owned()))?;
        let mut check = ChainCheck::new(&session);
        self.for_each_event(id, |raw| {
            check.push(&raw);
            Ok(())
        })?;
        Ok(check.finish(&session, &self.public_key))
    }

    fn for_each_event(
        &self,
        id: &str,
        mut f: impl FnMut(RawEvent) -> Result<(), RecordError>,
    ) -> Result<(), RecordError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE session_id = ?1 ORDER BY seq"
            ))
            .ctx("reading events")?;
        let rows = stmt.query_map([id], event_from_row).ctx("reading events")?;
        for row in rows {
            f(row.ctx("reading events")?)?;
        }
        Ok(())
    }

    /// Deletes whole sealed sessions that ended more than `older_than` ago; returns how many.
    pub fn prune(&self, older_than: Duration) -> Result<usize, RecordError> {
        let retention = i64::try_from(older_than.as_millis()).unwrap_or(i64::MAX);
        let cutoff = self.clock.now_ms().saturating_sub(retention);
        let mut conn =
            Connection::open(&self.path).map_err(|e| RecordError::Open(self.path.clone(), e))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| RecordError::Open(self.path.clone(), e))?;
        let tx = conn.transaction().ctx("starting prune")?;
        let ids: Vec<String> = {
            let mut stmt = tx
                .prepare(
                    "SELECT id FROM sessions \
                     WHERE ended_ms IS NOT NULL AND seal IS NOT NULL AND ended_ms < ?1",
                )
                .ctx("finding sessions to prune")?;
            let rows = stmt
                .query_map([cutoff], |r| r.get(0))
                .ctx("finding sessions to prune")?;
            rows.collect::<rusqlite::Result<_>>()
                .ctx("finding sessions to prune")?
        };
        for id in &ids {
            tx.execute("DELETE FROM events WHERE session_id = ?1", [id])
                .ctx("pruning events")?;
            tx.execute("DELETE FROM sessions WHERE id = ?1", [id])
                .ctx("pruning sessions")?;
        }
        tx.commit().ctx("committing prune")?;
        Ok(ids.len())
    }
}
