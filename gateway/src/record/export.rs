//! Exports of one recorded session: JSON Lines for SIEMs and a self-contained HTML timeline.

use std::{fmt::Write as _, io::Write};

use serde::Serialize;

use super::{Reader, RecordError, SessionInfo, StoredEvent, VerifyReport};

/// One JSONL line: the event plus the session context a SIEM needs to use it alone.
#[derive(Serialize)]
struct JsonlLine<'a> {
    #[serde(flatten)]
    event: &'a StoredEvent,
    server: &'a str,
    orig_dst: &'a str,
    subject: Option<&'a str>,
    pid: Option<u32>,
    uid: Option<u32>,
    exe: Option<&'a str>,
    cgroup: Option<&'a str>,
    mcp_session_id: Option<&'a str>,
}

impl Reader {
    /// Writes one JSON object per event, one per line.
    pub fn export_jsonl(&self, id: &str, out: &mut dyn Write) -> Result<(), RecordError> {
        let (session, events) = self.show(id)?;
        for event in &events {
            let line = JsonlLine {
                event,
                server: &session.server,
                orig_dst: &session.orig_dst,
                subject: session.subject.as_deref(),
                pid: session.pid,
                uid: session.uid,
                exe: session.exe.as_deref(),
                cgroup: session.cgroup.as_deref(),
                mcp_session_id: session.mcp_session_id.as_deref(),
            };
            serde_json::to_writer(&mut *out, &line).map_err(|e| RecordError::Export(e.into()))?;
            out.write_all(b"\n").map_err(RecordError::Export)?;
        }
        out.flush().map_err(RecordError::Export)
    }

    /// One self-contained HTML page (inline CSS, no scripts, no external resources) showing
    /// the session as a timeline, with its verification status.
    pub fn export_html(&self, id: &str) -> Result<String, RecordError> {
        let (session, events) = self.show(id)?;
        let report = self.verify_one(id)?;
        Ok(render_html(&session, &events, &report))
    }
}

const CSS: &str = "
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:72em;color:#1d1d1f;padding:0 1em}
h1{font-size:1.4em;word-break:break-all}h2{font-size:1.15em;margin-top:1.6em}
table.meta{border-collapse:collapse}table.meta th{text-align:left;padding:.2em 1em .2em 0;color:#555;font-weight:600;vertical-align:top}
table.meta td{padding:.2em 0;font-family:ui-monospace,monospace;word-break:break-all}
.verify{padding:.6em 1em;border-radius:6px;margin:1em 0}.verify.ok{background:#e6f4ea;border:1px solid #8bc79a}
.verify.bad{background:#fdecea;border:1px solid #e39a93}.verify ul{margin:.4em 0 0}
ol.timeline{list-style:none;padding:0;border-left:3px solid #ccd;margin-left:.5em}
ol.timeline li{margin:0 0 1em 1em;padding:.5em .8em;border:1px solid #dde;border-radius:6px;background:#fafafe}
li.s2c{background:#f6faf6}li.gateway{background:#fffaf0}
.hd{display:flex;flex-wrap:wrap;gap:.4em 1em;align-items:baseline}.seq{color:#888}.dir{font-weight:600}
.method{font-family:ui-monospace,monospace;font-weight:600}.tool{font-family:ui-monospace,monospace;background:#eef;padding:0 .3em;border-radius:3px}
.decision{padding:0 .4em;border-radius:3px;background:#eee}.decision.allow{background:#d7f0dc}.decision.deny{background:#f8d3cf}
.decision.approve{background:#fbeec2}.muted{color:#777;font-size:.9em}
pre{background:#fff;border:1px solid #e4e4ea;padding:.5em;overflow-x:auto;font-size:12.5px;margin:.5em 0 0;white-space:pre-wrap;word-break:break-all}
";

fn render_html(session: &SessionInfo, events: &[StoredEvent], report: &VerifyReport) -> String {
    let mut h = String::with_capacity(4096 + events.len() * 512);
    let e = escape;
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>mcpgw session {}</title><style>{CSS}</style></head><body>\n\
         <h1>mcpgw session {}</h1>\n",
        e(&session.id),
        e(&session.id)
    );

    if report.ok {
        let seal = if report.sealed {
            "sealed"
        } else {
            "not yet sealed (session open)"
        };
        let _ = writeln!(
            h,
            "<div class=\"verify ok\"><b>Verified:</b> hash chain intact over {} events, {seal}.</div>",
            report.events
        );
    } else {
        h.push_str(
            "<div class=\"verify bad\"><b>Verification FAILED:</b> this recording was altered.<ul>",
        );
        for p in &report.problems {
            let _ = write!(h, "<li>{}</li>", e(p));
        }
        h.push_str("</ul></div>\n");
    }

    let opt = |v: &Option<String>| v.as_deref().map(escape).unwrap_or_else(|| "—".into());
    let num = |v: Option<u32>| v.map(|n| n.to_string()).unwrap_or_else(|| "—".into());
    h.push_str("<h2>Who</h2><table class=\"meta\">");
    let rows: [(&str, String); 14] = [
        ("Subject", opt(&session.subject)),
        ("Process pid", num(session.pid)),
        ("Process uid", num(session.uid)),
        ("Executable", opt(&session.exe)),
        ("Cgroup", opt(&session.cgroup)),
        ("Client", e(&session.client)),
        ("Server", e(&session.server)),
        ("Original destination", e(&session.orig_dst)),
        ("SNI", opt(&session.sni)),
        ("MCP session", opt(&session.mcp_session_id)),
        ("Protocol version", opt(&session.protocol_version)),
        ("Started", e(&format_ms(session.started_ms))),
        (
            "Ended",
            session
                .ended_ms
                .map(|ms| e(&format_ms(ms)))
                .unwrap_or_else(|| "— (open)".into()),
        ),
        ("How ended", opt(&session.how_ended)),
    ];
    for (k, v) in rows {
        let _ = write!(h, "<tr><th>{k}</th><td>{v}</td></tr>");
    }
    h.push_str("</table>\n");

    let _ = write!(
        h,
        "<h2>Timeline ({} events)</h2>\n<ol class=\"timeline\">\n",
        events.len()
    );
    for ev in events {
        let (class, dir) = match ev.direction.as_str() {
            "c2s" => ("c2s", "client → server"),
            "s2c" => ("s2c", "server → client"),
            "gateway" => ("gateway", "gateway"),
            _ => ("other", ev.direction.as_str()),
        };
        let _ = write!(
            h,
            "<li class=\"{class}\"><div class=\"hd\"><span class=\"seq\">#{}</span>\
             <span class=\"muted\">{}</span><span class=\"dir\">{}</span><span>{}</span>",
            ev.seq,
            e(&format_ms(ev.time_ms)),
            e(dir),
            e(&ev.kind)
        );
        if let Some(m) = &ev.method {
            let _ = write!(h, "<span class=\"method\">{}</span>", e(m));
        }
        if let Some(t) = &ev.tool {
            let _ = write!(h, "<span class=\"tool\">tool {}</span>", e(t));
        }
        if let Some(id) = &ev.rpc_id {
            let _ = write!(h, "<span class=\"muted\">id {}</span>", e(id));
        }
        if let Some(d) = &ev.decision {
            let _ = write!(
                h,
                "<span class=\"decision {}\">{}</span>",
                css_class(d),
                e(d)
            );
        }
        if let Some(r) = &ev.rule {
            let _ = write!(h, "<span class=\"muted\">rule {}</span>", e(r));
        }
        if let Some(us) = ev.upstream_latency_us {
            let _ = write!(
                h,
                "<span class=\"muted\">upstream {:.1} ms</span>",
                us as f64 / 1000.0
            );
        }
        let pretty = serde_json::to_string_pretty(&ev.payload).unwrap_or_default();
        let _ = writeln!(h, "</div><pre>{}</pre></li>", e(&pretty));
    }
    h.push_str("</ol>\n</body></html>\n");
    h
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Only letters of a decision name become a CSS class, so a value cannot break the attribute.
fn css_class(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_ascii_lowercase()
}

/// `2026-05-20 12:34:56.789 UTC`; falls back to the raw number for out-of-range times.
fn format_ms(ms: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:03} UTC",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.millisecond()
        ),
        Err(_) => format!("{ms} ms"),
    }
}
