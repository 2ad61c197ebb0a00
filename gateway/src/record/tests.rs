use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicI64, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use serde_json::json;

use super::*;

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "mcpgw-record-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct TestClock(AtomicI64);

impl Clock for TestClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

fn meta() -> SessionMeta {
    SessionMeta {
        server: "analytics".into(),
        orig_dst: "10.0.0.7:443".into(),
        sni: Some("analytics-mcp.internal".into()),
        client: "127.0.0.1:40312".into(),
        pid: Some(4242),
        uid: Some(1000),
        exe: Some("/usr/bin/python3".into()),
        cgroup: Some("/user.slice/user-1000.slice/agent.service".into()),
        subject: Some("alice@example.com".into()),
        mcp_session_id: None,
        protocol_version: None,
    }
}

fn event(
    time_ms: i64,
    direction: &str,
    kind: &str,
    method: Option<&str>,
    tool: Option<&str>,
    payload: serde_json::Value,
) -> EventData {
    EventData {
        time_ms,
        direction: direction.into(),
        kind: kind.into(),
        method: method.map(Into::into),
        rpc_id: payload.get("id").map(|id| id.to_string()),
        tool: tool.map(Into::into),
        payload,
        decision: None,
        rule: None,
        upstream_latency_us: None,
    }
}

/// A complete session of 8 events, ended `closed` and flushed.
fn record_sample(rec: &Recorder) -> String {
    let id = rec.start_session(meta()).unwrap();
    let t = 1_700_000_000_000;
    rec.record(
        &id,
        event(t, "c2s", "request", Some("initialize"), None,
              json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{}}})),
    );
    rec.record(
        &id,
        event(t + 5, "s2c", "response", None, None,
              json!({"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-06-18","serverInfo":{"name":"analytics"}}})),
    );
    rec.update_mcp(&id, Some("mcp-abc"), Some("2025-06-18"));
    rec.record(
        &id,
        event(
            t + 6,
            "c2s",
            "notification",
            Some("notifications/initialized"),
            None,
            json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
        ),
    );
    let mut call = event(
        t + 10,
        "c2s",
        "request",
        Some("tools/call"),
        Some("run_query"),
        json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"run_query","arguments":{"sql":"select 1 -- <script>alert(1)</script>"}}}),
    );
    call.decision = Some("allow".into());
    call.rule = Some("rule-7".into());
    rec.record(&id, call);
    let mut resp = event(
        t + 42,
        "s2c",
        "response",
        None,
        Some("run_query"),
        json!({"jsonrpc":"2.0","id":2,"result":{"content":[{"type":"text","text":"token=[MASKED] rows=1"}]}}),
    );
    resp.upstream_latency_us = Some(31_500);
    rec.record(&id, resp);
    let mut denied = event(
        t + 50,
        "c2s",
        "request",
        Some("tools/call"),
        Some("drop_table"),
        json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"drop_table","arguments":{"t":"users"}}}),
    );
    denied.decision = Some("deny".into());
    denied.rule = Some("rule-1".into());
    rec.record(&id, denied);
    rec.record(
        &id,
        EventData::gateway(
            t + 51,
            "policy_denied",
            json!({"rule":"rule-1","tool":"drop_table"}),
        ),
    );
    rec.end_session(&id, "closed");
    rec.flush().unwrap();
    id
}

const SAMPLE_EVENTS: u64 = 8;

fn tamper(dir: &Path, sql: &str) {
    let conn = rusqlite::Connection::open(dir.join(DB_FILE)).unwrap();
    conn.execute_batch(sql).unwrap();
}

fn problems(rec: &Recorder, id: &str) -> Vec<String> {
    let reports = rec.reader().unwrap().verify(Some(id)).unwrap();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].ok, reports[0].problems.is_empty());
    reports[0].problems.clone()
}

fn assert_problem(problems: &[String], needle: &str) {
    assert!(
        problems.iter().any(|p| p.contains(needle)),
        "expected a problem containing {needle:?}, got {problems:#?}"
    );
}

#[test]
fn complete_session_is_stored_in_order_and_verifies() {
    let dir = TempDir::new("complete");
    let rec = Recorder::open(dir.path()).unwrap();
    let id = record_sample(&rec);
    let reader = rec.reader().unwrap();

    let (info, events) = reader.show(&id).unwrap();
    assert_eq!(info.events, SAMPLE_EVENTS);
    assert!(info.sealed);
    assert_eq!(info.how_ended.as_deref(), Some("closed"));
    assert_eq!(info.subject.as_deref(), Some("alice@example.com"));
    assert_eq!(info.mcp_session_id.as_deref(), Some("mcp-abc"));
    assert_eq!(info.protocol_version.as_deref(), Some("2025-06-18"));
    assert_eq!(info.pid, Some(4242));
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=SAMPLE_EVENTS).collect::<Vec<_>>());
    assert_eq!(events[0].method.as_deref(), Some("initialize"));
    assert_eq!(events[2].method.as_deref(), Some(MCP_SESSION_EVENT));
    assert_eq!(events[4].tool.as_deref(), Some("run_query"));
    assert_eq!(events[4].decision.as_deref(), Some("allow"));
    assert_eq!(events[5].upstream_latency_us, Some(31_500));
    assert_eq!(
        events[5].payload["result"]["content"][0]["text"],
        "token=[MASKED] rows=1"
    );

    let reports = reader.verify(Some(&id)).unwrap();
    assert!(reports[0].ok, "{reports:#?}");
    assert!(reports[0].sealed);
    assert_eq!(reports[0].events, SAMPLE_EVENTS);
    assert!(reader.verify(None).unwrap().iter().all(|r| r.ok));

    // Filters.
    let all = reader.list_sessions(&SessionFilter::default()).unwrap();
    assert_eq!(all.len(), 1);
    let by = |f: SessionFilter| reader.list_sessions(&f).unwrap().len();
    assert_eq!(
        by(SessionFilter {
            subject: Some("alice@example.com".into()),
            ..Default::default()
        }),
        1
    );
    assert_eq!(
        by(SessionFilter {
            subject: Some("bob".into()),
            ..Default::default()
        }),
        0
    );
    assert_eq!(
        by(SessionFilter {
            server: Some("analytics".into()),
            ..Default::default()
        }),
        1
    );
    assert_eq!(
        by(SessionFilter {
            decision: Some("deny".into()),
            ..Default::default()
        }),
        1
    );
    assert_eq!(
        by(SessionFilter {
            decision: Some("approve".into()),
            ..Default::default()
        }),
        0
    );
    assert_eq!(
        by(SessionFilter {
            since: Some(info.started_ms),
            ..Default::default()
        }),
        1
    );
    assert_eq!(
        by(SessionFilter {
            since: Some(info.started_ms + 1),
            ..Default::default()
        }),
        0
    );
    serde_json::to_string(&all).unwrap();
}

#[test]
fn edited_payload_is_detected_at_its_seq() {
    let dir = TempDir::new("edit");
    let rec = Recorder::open(dir.path()).unwrap();
    let id = record_sample(&rec);
    tamper(
        dir.path(),
        &format!(
            "UPDATE events SET payload = replace(payload, 'rows=1', 'rows=0') WHERE session_id = '{id}' AND seq = 6"
        ),
    );
    let p = problems(&rec, &id);
    assert_problem(&p, "seq 6: hash mismatch");
    assert_eq!(p.len(), 1, "{p:#?}");

    // Other fields are covered too.
    tamper(
        dir.path(),
        &format!("UPDATE events SET decision = 'allow' WHERE session_id = '{id}' AND seq = 7"),
    );
    assert_problem(&problems(&rec, &id), "seq 7: hash mismatch");
}

#[test]
fn deleted_event_is_detected_as_gap() {
    let dir = TempDir::new("delete");
    let rec = Recorder::open(dir.path()).unwrap();
    let id = record_sample(&rec);
    tamper(
        dir.path(),
        &format!("DELETE FROM events WHERE session_id = '{id}' AND seq = 3"),
    );
    let p = problems(&rec, &id);
    assert_problem(&p, "seq 3: missing (deleted");
}

#[test]
fn swapped_rows_are_detected() {
    let dir = TempDir::new("swap");
    let rec = Recorder::open(dir.path()).unwrap();
    let id = record_sample(&rec);
    // Swap the seq numbers of rows 4 and 5.
    tamper(
        dir.path(),
        &format!(
            "UPDATE events SET seq = -1 WHERE session_id = '{id}' AND seq = 4;
             UPDATE events SET seq = 4 WHERE session_id = '{id}' AND seq = 5;
             UPDATE events SET seq = 5 WHERE session_id = '{id}' AND seq = -1;"
        ),
    );
    let p = problems(&rec, &id);
    assert_problem(&p, "seq 4: hash mismatch");
    assert_problem(&p, "seq 5: hash mismatch");

    // Swapping all content (hashes included) between rows 1 and 2 of a fresh session.
    let id = record_sample(&rec);
    tamper(
        dir.path(),
        &format!(
            "CREATE TEMP TABLE t AS SELECT * FROM events WHERE session_id = '{id}' AND seq IN (1, 2);
             DELETE FROM events WHERE session_id = '{id}' AND seq IN (1, 2);
             INSERT INTO events SELECT session_id, 3 - seq, time_ms, direction, kind, method, rpc_id, tool,
                 payload, decision, rule, upstream_latency_us, hash FROM t;"
        ),
    );
    assert_problem(&problems(&rec, &id), "seq 1: hash mismatch");
}

#[test]
fn inserted_event_is_detected() {
    let dir = TempDir::new("insert");
    let rec = Recorder::open(dir.path()).unwrap();
    let id = record_sample(&rec);
    // Appended after the sealed end, even with a correctly chained hash it is not covered.
    tamper(
        dir.path(),
        &format!(
            "INSERT INTO events SELECT session_id, {}, time_ms, direction, kind, method, rpc_id, tool,
                 payload, decision, rule, upstream_latency_us, hash
             FROM events WHERE session_id = '{id}' AND seq = 2",
            SAMPLE_EVENTS + 1
        ),
    );
    assert_problem(
        &problems(&rec, &id),
        &format!(
            "seq {}: event after the sealed last seq {SAMPLE_EVENTS}",
            SAMPLE_EVENTS + 1
        ),
    );

    // Inserted in the middle, renumbering what follows.
    let id = record_sample(&rec);
    tamper(
        dir.path(),
        &format!(
            "UPDATE events SET seq = seq + 1000 WHERE session_id = '{id}' AND seq >= 3;
             UPDATE events SET seq = seq - 999 WHERE session_id = '{id}' AND seq > 1000;
             INSERT INTO events VALUES ('{id}', 3, 0, 'c2s', 'request', 'tools/call', '9', 'exfil',
                 '{{}}', 'allow', NULL, NULL, x'00');"
        ),
    );
    let p = problems(&rec, &id);
    assert_problem(&p, "seq 3: hash mismatch");
    assert_problem(
        &p,
        &format!("seq {}: event after the sealed last seq", SAMPLE_EVENTS + 1),
    );
}

#[test]
fn missing_or_bad_seal_is_detected() {
    let dir = TempDir::new("seal");
    let rec = Recorder::open(dir.path()).unwrap();
    let id = record_sample(&rec);
    tamper(
        dir.path(),
        &format!("UPDATE sessions SET seal = NULL WHERE id = '{id}'"),
    );
    assert_problem(&problems(&rec, &id), &format!("session {id}: seal missing"));

    let id = record_sample(&rec);
    tamper(
        dir.path(),
        &format!("UPDATE sessions SET how_ended = 'closed by policy' WHERE id = '{id}'"),
    );
    assert_problem(&problems(&rec, &id), "seal signature invalid");

    // Metadata the chain starts from.
    let id = record_sample(&rec);
    tamper(
        dir.path(),
        &format!("UPDATE sessions SET subject = 'bob@example.com' WHERE id = '{id}'"),
    );
    assert_problem(&problems(&rec, &id), "seq 1: hash mismatch");

    let id = record_sample(&rec);
    tamper(
        dir.path(),
        &format!("UPDATE sessions SET mcp_session_id = 'other' WHERE id = '{id}'"),
    );
    assert_problem(&problems(&rec, &id), "MCP session id");
}

#[test]
fn truncated_session_is_detected() {
    let dir = TempDir::new("truncate");
    let rec = Recorder::open(dir.path()).unwrap();
    let id = record_sample(&rec);
    tamper(
        dir.path(),
        &format!("DELETE FROM events WHERE session_id = '{id}' AND seq >= 6"),
    );
    let p = problems(&rec, &id);
    assert_problem(
        &p,
        &format!(
            "seq 6: missing (truncated; chain ends at seq 5, seal says last seq {SAMPLE_EVENTS})"
        ),
    );
}

#[test]
fn deleted_session_row_is_reported_by_verify_all() {
    let dir = TempDir::new("orphan");
    let rec = Recorder::open(dir.path()).unwrap();
    let id = record_sample(&rec);
    tamper(
        dir.path(),
        &format!("DELETE FROM sessions WHERE id = '{id}'"),
    );
    let reports = rec.reader().unwrap().verify(None).unwrap();
    assert_eq!(reports.len(), 1);
    assert!(!reports[0].ok);
    assert_problem(&reports[0].problems, "session row missing");
}

#[test]
fn crash_leaves_sessions_interrupted_and_sealed() {
    let dir = TempDir::new("crash");
    let (open_id, empty_id);
    {
        let rec = Recorder::open(dir.path()).unwrap();
        open_id = rec.start_session(meta()).unwrap();
        for i in 0..3 {
            rec.record(
                &open_id,
                event(
                    1_000 + i,
                    "c2s",
                    "request",
                    Some("tools/list"),
                    None,
                    json!({"jsonrpc":"2.0","id":i,"method":"tools/list"}),
                ),
            );
        }
        empty_id = rec.start_session(meta()).unwrap();
        rec.flush().unwrap();
        // No end_session and no clean shutdown: the writer thread is left behind as if the
        // process had died.
        std::mem::forget(rec);
    }
    let rec = Recorder::open(dir.path()).unwrap();
    let reader = rec.reader().unwrap();
    let (info, events) = reader.show(&open_id).unwrap();
    assert_eq!(info.how_ended.as_deref(), Some("interrupted"));
    assert_eq!(info.ended_ms, Some(1_002));
    assert!(info.sealed);
    assert_eq!(events.len(), 3);
    let (empty, _) = reader.show(&empty_id).unwrap();
    assert_eq!(empty.how_ended.as_deref(), Some("interrupted"));
    let reports = reader.verify(None).unwrap();
    assert_eq!(reports.len(), 2);
    assert!(reports.iter().all(|r| r.ok && r.sealed), "{reports:#?}");

    // The ended session takes no more events; the report says so on flush.
    rec.record(
        &open_id,
        event(2_000, "c2s", "request", Some("ping"), None, json!({})),
    );
    let err = rec.flush().unwrap_err().to_string();
    assert!(err.contains(&open_id), "{err}");
    assert_eq!(reader.show(&open_id).unwrap().1.len(), 3);
}

#[test]
fn clean_drop_commits_what_is_queued() {
    let dir = TempDir::new("drop");
    let id = {
        let rec = Recorder::open(dir.path()).unwrap();
        let id = rec.start_session(meta()).unwrap();
        for i in 0..100 {
            rec.record(
                &id,
                event(i, "c2s", "notification", Some("x"), None, json!({"i": i})),
            );
        }
        rec.end_session(&id, "closed");
        id
    };
    let reader = Reader::open(dir.path()).unwrap();
    let (info, events) = reader.show(&id).unwrap();
    assert_eq!(events.len(), 100);
    assert_eq!(info.how_ended.as_deref(), Some("closed"));
    assert!(reader.verify(Some(&id)).unwrap()[0].ok);
}

#[test]
fn retention_prunes_only_old_sealed_sessions() {
    let dir = TempDir::new("prune");
    let day = 86_400_000;
    let now = 1_800_000_000_000;
    let clock = Arc::new(TestClock(AtomicI64::new(now - 10 * day)));
    let rec = Recorder::open_with_clock(dir.path(), clock.clone()).unwrap();
    let old = rec.start_session(meta()).unwrap();
    rec.record(
        &old,
        event(
            now - 10 * day,
            "c2s",
            "request",
            Some("ping"),
            None,
            json!({}),
        ),
    );
    rec.end_session(&old, "closed");
    let old_open = rec.start_session(meta()).unwrap();
    rec.flush().unwrap();
    clock.0.store(now, Ordering::Relaxed);
    let recent = rec.start_session(meta()).unwrap();
    rec.end_session(&recent, "closed");
    rec.flush().unwrap();

    let reader = rec.reader().unwrap();
    assert_eq!(reader.prune(Duration::from_secs(86_400)).unwrap(), 1);
    let mut left: Vec<String> = reader
        .list_sessions(&SessionFilter::default())
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    left.sort();
    let mut want = vec![old_open.clone(), recent];
    want.sort();
    assert_eq!(left, want);
    assert!(matches!(reader.show(&old), Err(RecordError::NotFound(_))));
    assert!(reader.verify(None).unwrap().iter().all(|r| r.ok));
    assert_eq!(reader.prune(Duration::from_secs(86_400)).unwrap(), 0);
    // The open session is still being written to.
    rec.record(
        &old_open,
        event(now, "c2s", "request", Some("ping"), None, json!({})),
    );
    rec.flush().unwrap();
}

#[test]
fn group_commit_keeps_all_10000_events() {
    let dir = TempDir::new("group");
    let rec = Recorder::open(dir.path()).unwrap();
    let id = rec.start_session(meta()).unwrap();
    for i in 0..10_000 {
        rec.record(
            &id,
            event(
                i,
                "c2s",
                "request",
                Some("tools/call"),
                Some("t"),
                json!({"jsonrpc":"2.0","id":i}),
            ),
        );
    }
    rec.flush().unwrap();
    let reader = rec.reader().unwrap();
    let (info, events) = reader.show(&id).unwrap();
    assert_eq!(info.events, 10_000);
    assert!(events
        .iter()
        .enumerate()
        .all(|(i, e)| e.seq == i as u64 + 1 && e.payload["id"] == i));
    assert!(reader.verify(Some(&id)).unwrap()[0].ok);
}

#[test]
fn concurrent_producers_keep_each_chain_intact() {
    let dir = TempDir::new("concurrent");
    let rec = Recorder::open(dir.path()).unwrap();
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let rec = rec.clone();
            std::thread::spawn(move || {
                let ids: Vec<String> = (0..2).map(|_| rec.start_session(meta()).unwrap()).collect();
                for i in 0..500 {
                    for id in &ids {
                        rec.record(
                            id,
                            event(i, "s2c", "response", None, None, json!({"t": t, "i": i})),
                        );
                    }
                }
                for id in &ids {
                    rec.end_session(id, "closed");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    rec.flush().unwrap();
    let reports = rec.reader().unwrap().verify(None).unwrap();
    assert_eq!(reports.len(), 8);
    assert!(
        reports.iter().all(|r| r.ok && r.sealed && r.events == 500),
        "{reports:#?}"
    );
}

#[test]
fn throughput_50000_events() {
    let dir = TempDir::new("throughput");
    let rec = Recorder::open(dir.path()).unwrap();
    let ids: Vec<String> = (0..10)
        .map(|_| rec.start_session(meta()).unwrap())
        .collect();
    rec.flush().unwrap();
    let start = Instant::now();
    for i in 0..50_000i64 {
        let payload = json!({"jsonrpc":"2.0","id":i,"method":"tools/call",
            "params":{"name":"run_query","arguments":{"sql":"select * from t where id = 1","limit":100}}});
        rec.record(
            &ids[(i % 10) as usize],
            event(
                i,
                "c2s",
                "request",
                Some("tools/call"),
                Some("run_query"),
                payload,
            ),
        );
    }
    rec.flush().unwrap();
    let elapsed = start.elapsed();
    println!(
        "record: 50000 events durable in {:.3}s = {:.0} events/s",
        elapsed.as_secs_f64(),
        50_000.0 / elapsed.as_secs_f64()
    );
    let listed = rec
        .reader()
        .unwrap()
        .list_sessions(&SessionFilter::default())
        .unwrap();
    assert_eq!(listed.iter().map(|s| s.events).sum::<u64>(), 50_000);
}

#[test]
fn jsonl_export_has_one_line_per_event() {
    let dir = TempDir::new("jsonl");
    let rec = Recorder::open(dir.path()).unwrap();
    let id = record_sample(&rec);
    let mut out = Vec::new();
    rec.reader().unwrap().export_jsonl(&id, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len() as u64, SAMPLE_EVENTS);
    for (i, line) in lines.iter().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["seq"], i as u64 + 1);
        assert_eq!(v["session_id"], id.as_str());
        assert_eq!(v["subject"], "alice@example.com");
        assert!(v["payload"].is_object());
    }
}

#[test]
fn html_export_is_self_contained_and_escaped() {
    let dir = TempDir::new("html");
    let rec = Recorder::open(dir.path()).unwrap();
    let id = record_sample(&rec);
    let html = rec.reader().unwrap().export_html(&id).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("run_query") && html.contains("drop_table"));
    assert!(html.contains("alice@example.com") && html.contains("/usr/bin/python3"));
    assert!(html.contains("4242") && html.contains("agent.service"));
    assert!(html.contains("Verified:"));
    assert!(!html.contains("<script"), "unescaped script tag");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    for forbidden in ["http://", "https://", "src=", "href=", "@import", "url("] {
        assert!(!html.contains(forbidden), "html contains {forbidden}");
    }

    tamper(
        dir.path(),
        &format!("DELETE FROM events WHERE session_id = '{id}' AND seq = 2"),
    );
    let html = rec.reader().unwrap().export_html(&id).unwrap();
    assert!(html.contains("Verification FAILED") && html.contains("seq 2: missing"));
}

#[test]
fn key_is_private_and_kept_across_restarts() {
    let dir = TempDir::new("key");
    let id = {
        let rec = Recorder::open(dir.path()).unwrap();
        record_sample(&rec)
    };
    let mode = std::fs::metadata(dir.path().join(KEY_FILE))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let rec = Recorder::open(dir.path()).unwrap();
    assert!(rec.reader().unwrap().verify(Some(&id)).unwrap()[0].ok);

    // A seal made with another key does not verify.
    let other = TempDir::new("key-other");
    std::fs::copy(dir.path().join(DB_FILE), other.path().join(DB_FILE)).unwrap();
    let rec = Recorder::open(other.path()).unwrap();
    assert_problem(&problems(&rec, &id), "seal signature invalid");
}
