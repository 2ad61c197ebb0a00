//! `cargo xtask bench record` (run by xtask as `mcpgw-bench record`): the recording store on its own, release build. Events per
//! second sustained through to durable commits, and what the data path pays per message
//! (the recording stage's enqueue) while the writer commits in the background.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Result;
use gateway::{
    mcp::{
        interceptor::{Observer as _, Session},
        Direction, McpMessage,
    },
    record::{stage::Recording, Recorder},
};
use serde_json::json;

fn session(id: u64) -> Session {
    Session {
        id,
        client: "127.0.0.1:40000".parse().expect("literal"),
        orig_dst: gateway::addr::Destination::Socket("10.0.3.17:8443".parse().expect("literal")),
        server: "bench".into(),
        sni: None,
        process: None,
        mcp: Default::default(),
        pending: Default::default(),
    }
}

pub fn measure() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("mcpgw-bench-record-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let recorder = Recorder::open(&dir)?;
    let recording = Arc::new(Recording::new(recorder.clone()));

    // A typical tools/call answer, about 300 bytes.
    let msg = McpMessage::from_value(json!({
        "jsonrpc": "2.0", "id": 7,
        "result": {"content": [{"type": "text", "text": "order 4711 shipped to [REDACTED:EMAIL] on 2026-11-26, 3 items, total 129.90 EUR"}],
                   "structuredContent": {"order": 4711, "items": 3, "total": 129.9}}
    }))
    .map_err(|e| anyhow::anyhow!(e.message))?;

    // Sustained: 200,000 events over 100 sessions, timed to the last durable commit.
    const EVENTS: usize = 200_000;
    let sessions: Vec<Session> = (0..100).map(session).collect();
    let subject = gateway::identity::Subject::named("bench", vec![]);
    let mut per_message = Vec::with_capacity(EVENTS);
    let started = Instant::now();
    for i in 0..EVENTS {
        let s = &sessions[i % sessions.len()];
        let t = Instant::now();
        let exchange = gateway::mcp::interceptor::Exchange::new(s, &subject);
        recording.message(
            &exchange,
            Direction::ServerToClient,
            &msg,
            &Ok(Default::default()),
        );
        per_message.push(t.elapsed());
    }
    recorder.flush()?;
    let elapsed = started.elapsed();
    for s in &sessions {
        recording.end(s, "closed");
    }
    recorder.flush()?;
    per_message.sort();
    let pct =
        |p: f64| per_message[((per_message.len() as f64 * p) as usize).min(per_message.len() - 1)];
    let us = |d: Duration| d.as_secs_f64() * 1e6;

    println!("| measure | figure |");
    println!("|---|---|");
    println!(
        "| events/s, through to durable commit | {:.0} |",
        EVENTS as f64 / elapsed.as_secs_f64()
    );
    println!(
        "| added per message on the data path, p50 | {:.2} µs |",
        us(pct(0.50))
    );
    println!(
        "| added per message on the data path, p99 | {:.2} µs |",
        us(pct(0.99))
    );
    println!();
    println!(
        "{EVENTS} events of ~300 bytes over {} sessions; SQLite WAL, synchronous=FULL",
        sessions.len()
    );
    println!("machine: {}", mcpgw_tests::machine());
    drop(recording);
    drop(recorder);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
