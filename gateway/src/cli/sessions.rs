//! `mcpgw sessions ...`: recorded sessions through the admin socket, printed for people
//! (`--output table`) or scripts (`--output json`).

use std::{path::Path, process::ExitCode, time::Duration};

use gateway::admin::{self, Request};
use serde_json::Value;

use crate::{fail, Output, SessionsCommand};

pub fn run(
    runtime: &tokio::runtime::Runtime,
    socket: &Path,
    output: Output,
    command: SessionsCommand,
) -> ExitCode {
    let call = |request: Request| {
        runtime
            .block_on(admin::call(socket, &request))
            .map_err(|e| e.to_string())
    };
    let result =
        match command {
            SessionsCommand::List {
                subject,
                server,
                since,
                decision,
            } => {
                let request = Request::SessionsList {
                    subject,
                    server,
                    since_secs: since.map(|d| d.as_secs()),
                    decision,
                };
                call(request).map(|v| print(output, &v, print_list))
            }
            SessionsCommand::Show { id } => {
                call(Request::SessionsShow { id }).map(|v| print(output, &v, print_show))
            }
            SessionsCommand::Replay { id, speed, follow } => replay(&call, &id, speed, follow),
            SessionsCommand::Verify { id, all: _ } => call(Request::SessionsVerify { id })
                .and_then(|v| {
                    print(output, &v, print_verify);
                    let failed = v
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter(|r| r["ok"] != true)
                        .count();
                    if failed == 0 {
                        Ok(())
                    } else {
                        Err(format!("{failed} session(s) failed verification"))
                    }
                }),
            SessionsCommand::Export { id, format } => call(Request::SessionsExport { id, format })
                .map(|v| {
                    print!("{}", v.as_str().unwrap_or_default());
                }),
        };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

fn print(output: Output, value: &Value, table: fn(&Value)) {
    match output {
        Output::Json => println!("{value}"),
        Output::Table => table(value),
    }
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn time(ms: &Value) -> String {
    ms.as_i64()
        .and_then(|ms| time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000).ok())
        .map(|t| {
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:03}",
                t.year(),
                t.month() as u8,
                t.day(),
                t.hour(),
                t.minute(),
                t.second(),
                t.millisecond()
            )
        })
        .unwrap_or_else(|| "-".into())
}

fn print_list(sessions: &Value) {
    println!(
        "{:<24} {:<23} {:<12} {:<8} {:<6} {:>6}  {:<16} EXE",
        "ID", "STARTED", "SERVER", "PID", "UID", "EVENTS", "ENDED"
    );
    for x in sessions.as_array().into_iter().flatten() {
        println!(
            "{:<24} {:<23} {:<12} {:<8} {:<6} {:>6}  {:<16} {}",
            s(&x["id"]),
            time(&x["started_ms"]),
            s(&x["server"]),
            s(&x["pid"]),
            s(&x["uid"]),
            s(&x["events"]),
            s(&x["how_ended"]),
            s(&x["exe"])
        );
    }
}

fn event_line(e: &Value) -> String {
    let what = [&e["method"], &e["tool"]]
        .iter()
        .filter(|v| !v.is_null())
        .map(|v| s(v))
        .collect::<Vec<_>>()
        .join(" ");
    format!(
        "{:>5} {} {:<7} {:<12} id={:<6} {:<30} {}",
        s(&e["seq"]),
        time(&e["time_ms"]),
        s(&e["direction"]),
        s(&e["kind"]),
        s(&e["rpc_id"]),
        what,
        s(&e["decision"])
    )
}

fn print_show(v: &Value) {
    let x = &v["session"];
    for (label, key) in [
        ("session", "id"),
        ("server", "server"),
        ("dialed", "orig_dst"),
        ("sni", "sni"),
        ("client", "client"),
        ("pid", "pid"),
        ("uid", "uid"),
        ("exe", "exe"),
        ("cgroup", "cgroup"),
        ("subject", "subject"),
        ("mcp session", "mcp_session_id"),
        ("protocol", "protocol_version"),
        ("ended", "how_ended"),
    ] {
        println!("{label:<12} {}", s(&x[key]));
    }
    println!(
        "{:<12} {} → {}",
        "time",
        time(&x["started_ms"]),
        time(&x["ended_ms"])
    );
    println!();
    for e in v["events"].as_array().into_iter().flatten() {
        println!("{}", event_line(e));
    }
}

fn print_verify(reports: &Value) {
    for r in reports.as_array().into_iter().flatten() {
        if r["ok"] == true {
            println!(
                "{}  ok ({} events{})",
                s(&r["session"]),
                s(&r["events"]),
                if r["sealed"] == true {
                    ", sealed"
                } else {
                    ", open"
                }
            );
        } else {
            let problems: Vec<String> = r["problems"]
                .as_array()
                .into_iter()
                .flatten()
                .map(s)
                .collect();
            println!("{}  FAILED: {}", s(&r["session"]), problems.join("; "));
        }
    }
}

/// Prints the timeline with the recorded gaps between events (scaled by `speed`, each gap
/// capped at 10 s); with `follow`, keeps polling until the session is sealed.
fn replay(
    call: &dyn Fn(Request) -> Result<Value, String>,
    id: &str,
    speed: f64,
    follow: bool,
) -> Result<(), String> {
    if speed <= 0.0 {
        return Err("--speed must be positive".into());
    }
    let mut printed = 0usize;
    let mut last_ms: Option<i64> = None;
    loop {
        let v = call(Request::SessionsShow { id: id.to_owned() })?;
        let events = v["events"].as_array().cloned().unwrap_or_default();
        for e in events.iter().skip(printed) {
            let t = e["time_ms"].as_i64().unwrap_or(0);
            if let Some(prev) = last_ms {
                let gap =
                    Duration::from_millis((t - prev).max(0) as u64).min(Duration::from_secs(10));
                std::thread::sleep(gap.div_f64(speed));
            }
            last_ms = Some(t);
            println!("{}", event_line(e));
        }
        printed = events.len();
        if !follow || v["session"]["sealed"] == true {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
