//! Just-in-time approvals end to end: the official Python SDK client (holding only its OIDC
//! token) calls a tool whose rule says `approve`; the call is held while `mcpgw approvals`
//! (another process, over the admin socket) approves or denies it; the grant covers later
//! calls until it expires or is revoked; nothing pending or granted is lost in a restart.

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    process::Command,
    thread::JoinHandle,
    time::{Duration, Instant},
};

use mcpgw_tests::{
    mcp::*,
    oidc::{OidcClient, OidcWorld, URL},
    *,
};
use serde_json::{json, Value};

const ALICE: OidcClient = OidcClient {
    id: "alice-agent",
    secret: "alice-secret",
    groups: &["analysts"],
    email: "alice@example.com",
};
const BOB: OidcClient = OidcClient {
    id: "bob-lead",
    secret: "bob-secret",
    groups: &["sre-leads"],
    email: "bob@example.com",
};
const CAROL: OidcClient = OidcClient {
    id: "carol-intern",
    secret: "carol-secret",
    groups: &["interns"],
    email: "carol@example.com",
};

/// `run_sql` needs an sre-lead's approval; grants last `ttl`; calls are held `hold`.
fn config(ttl: &str, hold: &str, webhook: &str) -> String {
    format!(
        r#"
[[policy.rules]]
id     = "analysts-read"
groups = ["analysts"]
tools  = ["query_sales", "echo"]
action = "allow"

[[policy.rules]]
id        = "sql-needs-approval"
groups    = ["analysts", "sre-leads"]
tools     = ["run_sql"]
action    = "approve"
approvers = ["sre-leads"]
grant_ttl = "{ttl}"

[approval]
hold    = "{hold}"
webhook = "{webhook}"

[approval.approvers]
root = ["sre-leads"]
"#
    )
}

/// Nothing listens at this webhook: approvals must work regardless.
const DEAD_WEBHOOK: &str = "http://127.0.0.1:9/hook";
const WEBHOOK_PORT: u16 = 9460;

fn world(ttl: &str, hold: &str) -> OidcWorld {
    OidcWorld::start(&[ALICE, BOB, CAROL], &config(ttl, hold, DEAD_WEBHOOK))
}

/// A world whose webhook is a receiver appending each POSTed body as a line to a file.
fn world_with_webhook(ttl: &str, hold: &str) -> (OidcWorld, (Vec<Proc>, std::path::PathBuf)) {
    OidcWorld::start_with(
        &[ALICE, BOB, CAROL],
        |ns, ca, dir| {
            let server = mcp_server(
                ns,
                mcpgw_tests::oidc::TARGET,
                McpTransport::StreamableHttp,
                Some(ca),
            )
            .expect("MCP server");
            let received = dir.join("webhook.jsonl");
            let script = format!(
                r#"
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        with open({path:?}, "ab") as f:
            f.write(body + b"\n")
        self.send_response(200); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *a): pass
s = http.server.HTTPServer(("127.0.0.1", {WEBHOOK_PORT}), H)
print("ready", flush=True)
s.serve_forever()
"#,
                path = received.display().to_string()
            );
            let mut cmd = ns.cmd("python3");
            cmd.args(["-c", &script])
                .stdout(std::process::Stdio::piped());
            let mut child = cmd.spawn().expect("webhook receiver");
            let mut line = String::new();
            std::io::BufRead::read_line(
                &mut std::io::BufReader::new(child.stdout.take().expect("stdout")),
                &mut line,
            )
            .expect("receiver ready");
            (vec![server, Proc::new(child)], received)
        },
        |_| config(ttl, hold, &format!("http://127.0.0.1:{WEBHOOK_PORT}/hook")),
    )
}

/// `run_sql` called in the background, as the client would: its one step's outcome.
fn call_in_background(w: &OidcWorld, token: &str, sql: &str) -> JoinHandle<Value> {
    let steps = json!([{"call": "run_sql", "args": {"sql": sql}}]).to_string();
    let cmd = w.cg.cmd(&w.ns, Some(NOBODY), peers_venv_python());
    let (bundle, token) = (w.bundle.clone(), token.to_owned());
    std::thread::spawn(move || {
        let v = mcp_client_py_with(
            cmd,
            URL,
            McpTransport::StreamableHttp,
            Era::Session,
            Some(&bundle),
            &["--bearer", &token, "--steps", &steps],
        )
        .unwrap_or_else(|e| json!({"error": format!("{e:#}")}));
        v["steps"][0].clone()
    })
}

fn cli_json(w: &OidcWorld, args: &[&str]) -> Value {
    gw_json(&w.gw, args)
}

fn gw_json(gw: &Gateway, args: &[&str]) -> Value {
    let mut all = vec!["--output", "json"];
    all.extend(args);
    let out = gw.cli_ok(&all);
    serde_json::from_slice(&out.stdout).expect("JSON output")
}

/// Waits for a pending approval for `sql` and returns it.
fn pending(w: &OidcWorld, sql: &str) -> Value {
    pending_on(&w.gw, sql)
}

fn pending_on(gw: &Gateway, sql: &str) -> Value {
    wait_for(Duration::from_secs(15), || {
        gw_json(gw, &["approvals", "list"])
            .as_array()?
            .iter()
            .find(|a| a["arguments"].as_str().is_some_and(|s| s.contains(sql)))
            .cloned()
    })
    .unwrap_or_else(|| panic!("no pending approval for {sql}\n{}", gw.log()))
}

fn text(step: &Value) -> &str {
    step["result"]["text"].as_str().unwrap_or("-")
}

#[test]
fn held_calls_complete_after_approval_and_grants_cover_until_expiry_or_revoke() {
    if !require_root() {
        return;
    }
    let w = world("8s", "3s");
    let alice = w.token(&ALICE);

    // Held, then approved from another process: the call completes with the real result.
    let call = call_in_background(&w, &alice, "select 1");
    let a = pending(&w, "select 1");
    assert_eq!(a["subject"], "alice-agent");
    assert_eq!(a["tool"], "run_sql");
    assert_eq!(a["rule"], "sql-needs-approval");
    assert_eq!(a["approvers"], json!(["sre-leads"]));
    assert_eq!(a["process"]["uid"], NOBODY, "process attribution: {a}");
    let id = a["id"].as_str().expect("id").to_owned();
    let approved = Instant::now();
    let decided = cli_json(&w, &["approvals", "approve", &id, "--reason", "looks fine"]);
    assert_eq!(decided["state"], "approved", "{decided}");
    let step = call.join().expect("client");
    assert_eq!(text(&step), "would run: select 1", "{step}\n{}", w.gw.log());
    eprintln!("approve → result at the client: {:?}", approved.elapsed());

    // The grant covers the next call at once, with no new approval.
    let grants = cli_json(&w, &["grants", "list"]);
    let grant = grants[0]["id"].as_str().expect("a grant").to_owned();
    assert_eq!(grants[0]["tools"], json!(["run_sql"]));
    let step = call_in_background(&w, &alice, "select 2").join().unwrap();
    assert_eq!(text(&step), "would run: select 2", "{step}");
    let all = cli_json(&w, &["approvals", "list", "--all"]);
    assert_eq!(
        all.as_array().map(Vec::len),
        Some(1),
        "no new approval: {all}"
    );

    // Revoked: the next call is held again; nobody decides within the hold, so the
    // client gets the retryable error naming the approval...
    w.gw.cli_ok(&["grants", "revoke", &grant]);
    let step = call_in_background(&w, &alice, "select 3").join().unwrap();
    assert_eq!(step["error"]["code"], -32004, "{step}");
    let late = step["error"]["data"]["approval"]
        .as_str()
        .expect("approval id");
    assert!(
        step["error"]["message"].as_str().unwrap().contains("retry"),
        "{step}"
    );
    // ...and an approval that comes late still grants: the retry passes.
    w.gw.cli_ok(&["approvals", "approve", late]);
    let step = call_in_background(&w, &alice, "select 3").join().unwrap();
    assert_eq!(text(&step), "would run: select 3", "{step}");

    // The grant ends at its expiry: held again (and denied this time, with the reason).
    std::thread::sleep(Duration::from_secs(9));
    assert_eq!(cli_json(&w, &["grants", "list"]), json!([]), "expired");
    let call = call_in_background(&w, &alice, "select 4");
    let a = pending(&w, "select 4");
    w.gw.cli_ok(&[
        "approvals",
        "deny",
        a["id"].as_str().unwrap(),
        "--reason",
        "not during the freeze",
    ]);
    let step = call.join().unwrap();
    assert_eq!(step["error"]["code"], -32001, "{step}");
    assert_eq!(
        step["error"]["message"], "denied by approver root: not during the freeze",
        "{step}"
    );

    // The audit trail: who did what.
    let shown = cli_json(&w, &["approvals", "show", &id]);
    let history: Vec<(&str, &str)> = shown["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["action"].as_str().unwrap(), h["actor"].as_str().unwrap()))
        .collect();
    assert_eq!(
        history,
        [("requested", "alice-agent"), ("approved", "root")]
    );
}

#[test]
fn approvers_are_checked_and_the_socket_is_guarded() {
    if !require_root() {
        return;
    }
    let (w, (_receiver, received)) = world_with_webhook("10m", "20s");
    let (alice, bob, carol) = (w.token(&ALICE), w.token(&BOB), w.token(&CAROL));
    let call = call_in_background(&w, &alice, "select 5");
    let a = pending(&w, "select 5");
    let id = a["id"].as_str().unwrap().to_owned();

    // Approvers were notified: Slack-style text plus the structured approval.
    let posted = wait_for(Duration::from_secs(10), || {
        let text = fs::read_to_string(&received).ok()?;
        text.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["approval"]["id"] == id.as_str())
    })
    .unwrap_or_else(|| panic!("webhook POST for {id}\n{}", w.gw.log()));
    let slack = posted["text"].as_str().unwrap_or_default();
    assert!(
        slack.contains("alice-agent") && slack.contains("run_sql") && slack.contains(&id),
        "{posted}"
    );
    assert_eq!(posted["approval"]["rule"], "sql-needs-approval");

    let refused = |args: &[&str], why: &str| {
        let out = w.gw.cli(args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "{args:?} must fail");
        assert!(err.contains(why), "{args:?}: {err}");
    };
    refused(
        &[
            "approvals",
            "approve",
            &id,
            "--token-file",
            &token_file(&alice),
        ],
        "alice-agent requested this call and cannot decide on it",
    );
    refused(
        &[
            "approvals",
            "approve",
            &id,
            "--token-file",
            &token_file(&carol),
        ],
        "carol-intern is not in an approver group of rule `sql-needs-approval`",
    );
    refused(
        &[
            "approvals",
            "approve",
            &id,
            "--token-file",
            &token_file("not-a-token"),
        ],
        "invalid token",
    );

    // A Unix user outside the admin group cannot use the socket at all.
    fs::set_permissions(w.gw.dir(), fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(mcpgw_bin())
        .arg("--socket")
        .arg(w.gw.admin_socket())
        .args(["approvals", "approve", &id])
        .output()
        .expect("setpriv");
    assert!(!out.status.success(), "nobody must not administer");
    let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(err.contains("permission denied"), "{err}");

    // A held raw call that accepts event streams gets one at once, kept alive while it
    // waits (past the 10 s keep-alive), then the upstream's answer once approved.
    // curl runs as nobody: a call root made could not be approved from root's socket, whose
    // token the approver holds (the person at the socket decides).
    let out_file = w.tmp.path().join("held-sse.txt");
    fs::write(&out_file, "").unwrap();
    fs::set_permissions(&out_file, fs::Permissions::from_mode(0o666)).unwrap();
    let body = r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"run_sql","arguments":{"sql":"select 11"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"curl","version":"1"},"io.modelcontextprotocol/clientCapabilities":{}}}}"#;
    let mut curl =
        w.cg.cmd(&w.ns, Some(NOBODY), "curl")
            .args(["-sS", "-N", "--max-time", "40", "--cacert"])
            .arg(&w.bundle)
            .args(["-X", "POST", "-H", "content-type: application/json"])
            .args(["-H", "accept: application/json, text/event-stream"])
            .args(["-H", &format!("authorization: Bearer {alice}")])
            .args([
                "-H",
                "mcp-protocol-version: 2026-07-28",
                "-H",
                "mcp-method: tools/call",
            ])
            .args(["-H", "mcp-name: run_sql", "--data-binary", body, "-o"])
            .arg(&out_file)
            .arg(URL)
            .spawn()
            .expect("curl");
    let raw = pending(&w, "select 11");
    let kept_alive = wait_for(Duration::from_secs(20), || {
        let text = fs::read_to_string(&out_file).ok()?;
        text.contains(": waiting for approval").then_some(())
    });
    assert!(kept_alive.is_some(), "keep-alive comments while held");
    w.gw.cli_ok(&[
        "approvals",
        "approve",
        raw["id"].as_str().unwrap(),
        "--token-file",
        &token_file(&bob),
    ]);
    assert!(curl.wait().expect("curl").success());
    let events = fs::read_to_string(&out_file).unwrap();
    assert!(
        events.contains("would run: select 11"),
        "the upstream's answer: {events}"
    );

    // An sre-lead's token approves; the held call completes.
    let decided = cli_json(
        &w,
        &[
            "approvals",
            "approve",
            &id,
            "--token-file",
            &token_file(&bob),
        ],
    );
    assert_eq!(decided["state"], "approved");
    assert_eq!(decided["decisions"][0]["by"], "bob-lead");
    let step = call.join().unwrap();
    assert_eq!(text(&step), "would run: select 5", "{step}");
}

#[test]
fn pending_approvals_and_grants_survive_a_restart() {
    if !require_root() {
        return;
    }
    let mut w = world("10m", "2s");
    let alice = w.token(&ALICE);
    // One granted, one left pending (its call timed out).
    let call = call_in_background(&w, &alice, "select 6");
    let a = pending(&w, "select 6");
    w.gw.cli_ok(&["approvals", "approve", a["id"].as_str().unwrap()]);
    assert_eq!(text(&call.join().unwrap()), "would run: select 6");
    let step = call_in_background(&w, &alice, "delete from t where id = 7")
        .join()
        .unwrap();
    // Covered: the grant is for run_sql whatever the arguments.
    assert!(text(&step).starts_with("would run"), "{step}");
    let grants_before = cli_json(&w, &["grants", "list"]);

    // Revoke nothing; kill the gateway hard, and start another on the same state.
    let state = w.gw.dir().join("state");
    let config = fs::read_to_string(w.gw.dir().join("mcpgw.toml")).expect("config");
    let step = {
        // A held call left pending.
        w.gw.cli_ok(&["grants", "revoke", grants_before[0]["id"].as_str().unwrap()]);
        call_in_background(&w, &alice, "select 8").join().unwrap()
    };
    assert_eq!(step["error"]["code"], -32004, "{step}");
    let call = call_in_background(&w, &alice, "select 9");
    let a9 = pending(&w, "select 9");
    w.gw.cli_ok(&["approvals", "approve", a9["id"].as_str().unwrap()]);
    assert_eq!(text(&call.join().unwrap()), "would run: select 9");
    let grants_live = cli_json(&w, &["grants", "list"]);
    let pending_before = cli_json(&w, &["approvals", "list"]);
    assert_eq!(
        pending_before.as_array().map(Vec::len),
        Some(1),
        "{pending_before}"
    );

    w.gw.kill9();
    // The saved configuration names the first gateway's state dir: the same CA, store and keys.
    assert!(config.contains(&state.display().to_string()));
    let gw2 = Gateway::start(&w.ns, Some(&w.cg), &config).expect("restarted gateway");
    let pending_after: Value = serde_json::from_slice(
        &gw2.cli_ok(&["--output", "json", "approvals", "list"])
            .stdout,
    )
    .unwrap();
    let grants_after: Value =
        serde_json::from_slice(&gw2.cli_ok(&["--output", "json", "grants", "list"]).stdout)
            .unwrap();
    assert_eq!(pending_after, pending_before, "pending approvals kept");
    assert_eq!(grants_after, grants_live, "live grants kept");
    // The first gateway's directory (holding the state) must outlive the second.
    let _first = std::mem::replace(&mut w.gw, gw2);
    // The grant still covers calls through the new gateway.
    let step = call_in_background(&w, &alice, "select 10").join().unwrap();
    assert_eq!(text(&step), "would run: select 10", "{step}");
}

/// The reported case: a caller known only by its process (`uid:65534`, no issuers) whose Unix
/// user (nobody) is also an approver and may use the admin socket makes a held call, then runs
/// `mcpgw approvals approve ID` itself. The approver is `nobody` on the socket, the requester
/// `uid:65534`: the same account, so it is refused; root, another approver, still decides.
#[test]
fn the_requester_cannot_approve_its_own_call_from_the_admin_socket() {
    if !require_root() {
        return;
    }
    let ns = Netns::new().expect("netns");
    let cg = Cgroup::new().expect("cgroup");
    let tmp = TempDir::new().expect("temp dir");
    let ca = TestCa::new(tmp.path(), &["mcp.test", "10.0.3.17"]).expect("test CA");
    let _server = mcp_server(
        &ns,
        mcpgw_tests::oidc::TARGET,
        McpTransport::StreamableHttp,
        Some(&ca),
    )
    .expect("MCP server");
    // nobody reaches the admin socket through its primary group (nogroup on Debian).
    let out = Command::new("getent")
        .args(["group", &NOBODY.to_string()])
        .output()
        .expect("getent");
    let admin_group = String::from_utf8_lossy(&out.stdout)
        .split(':')
        .next()
        .filter(|g| !g.trim().is_empty())
        .expect("a group with gid 65534")
        .to_owned();
    let rest = format!(
        r#"[[servers]]
name    = "mcp"
match   = ["{target}"]
ca_file = {ca:?}

[[policy.rules]]
id        = "nobody-sql-needs-approval"
uids      = [{NOBODY}]
tools     = ["run_sql"]
action    = "approve"
approvers = ["sre-leads"]

[approval]
hold = "30s"

[approval.approvers]
nobody = ["sre-leads"]
root   = ["sre-leads"]
"#,
        target = mcpgw_tests::oidc::TARGET,
        ca = ca.ca_pem.display().to_string(),
    );
    let config = gateway_config(&cg, "open", &rest).replacen(
        "[gateway]\n",
        &format!("[gateway]\nadmin_group = {admin_group:?}\n"),
        1,
    );
    let gw = Gateway::start(&ns, Some(&cg), &config).expect("gateway");
    let bundle = tmp.path().join("bundle.pem");
    fs::write(&bundle, gw.cli_ok(&["ca", "export"]).stdout).expect("bundle");

    // The caller: the Python SDK client as uid 65534 in the intercepted cgroup, no token.
    let steps = json!([{"call": "run_sql", "args": {"sql": "select 42"}}]).to_string();
    let cmd = cg.cmd(&ns, Some(NOBODY), peers_venv_python());
    let call = std::thread::spawn(move || {
        let v = mcp_client_py_with(
            cmd,
            URL,
            McpTransport::StreamableHttp,
            Era::Session,
            Some(&bundle),
            &["--steps", &steps],
        )
        .unwrap_or_else(|e| json!({"error": format!("{e:#}")}));
        v["steps"][0].clone()
    });
    let a = pending_on(&gw, "select 42");
    assert_eq!(a["subject"], format!("uid:{NOBODY}"), "{a}");
    assert_eq!(a["process"]["uid"], NOBODY, "{a}");
    let requester = a["requester"].as_array().expect("requester names");
    assert!(
        requester.contains(&json!(format!("uid:{NOBODY}")))
            && requester.contains(&json!("unix:nobody")),
        "{a}"
    );
    let id = a["id"].as_str().expect("id").to_owned();

    // The same account on the admin socket: refused, approve and deny alike.
    let as_nobody = |args: &[&str]| {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(mcpgw_bin())
            .arg("--socket")
            .arg(gw.admin_socket())
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("setpriv")
    };
    // The socket itself is open to nobody (so the refusal below is the approval's).
    assert!(as_nobody(&["approvals", "list"]).status.success());
    for args in [
        &["approvals", "approve", &id, "--reason", "mine"][..],
        &["approvals", "deny", &id, "--reason", "mine"][..],
    ] {
        let out = as_nobody(args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "{args:?} must fail: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(
            err.contains(
                "nobody requested this call and cannot decide on it (same person: uid:65534)"
            ),
            "{args:?}: {err}"
        );
    }

    // Nothing was decided, granted or executed: the call is still held.
    let shown = gw_json(&gw, &["approvals", "show", &id]);
    assert_eq!(shown["approval"]["state"], "pending", "{shown}");
    assert_eq!(shown["approval"]["decisions"], json!([]), "{shown}");
    assert_eq!(gw_json(&gw, &["grants", "list"]), json!([]));
    assert!(!call.is_finished(), "the call must still be held");

    // Another approver (root) still can: the call goes upstream once, now.
    let decided = gw_json(&gw, &["approvals", "approve", &id]);
    assert_eq!(decided["state"], "approved", "{decided}");
    assert_eq!(decided["decisions"][0]["by"], "root");
    assert_eq!(
        decided["decisions"][0]["names"],
        json!(["uid:0", "unix:root"])
    );
    let step = call.join().expect("client");
    assert_eq!(text(&step), "would run: select 42", "{step}\n{}", gw.log());
}

/// A file holding `token` (tokens are read from files, never taken from the command line).
fn token_file(token: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let path = std::env::temp_dir().join(format!(
        "mcpgw-token-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    fs::write(&path, token).expect("token file");
    path.display().to_string()
}

/// One POST with curl as nobody in the cgroup, as the holder of `token`: the status and the
/// answer's `mcp-session-id`.
fn post_as(w: &OidcWorld, token: &str, session: Option<&str>, body: &str) -> (u16, Option<String>) {
    let mut cmd = w.cg.cmd(&w.ns, Some(NOBODY), "curl");
    cmd.args([
        "-sS",
        "--max-time",
        "20",
        "-o",
        "/dev/null",
        "-D",
        "-",
        "--cacert",
    ])
    .arg(&w.bundle)
    .args(["-X", "POST", "-H", "content-type: application/json"])
    .args(["-H", "accept: application/json, text/event-stream"])
    .args(["-H", &format!("authorization: Bearer {token}")])
    .args(["-H", "mcp-protocol-version: 2025-11-25"]);
    if let Some(session) = session {
        cmd.args(["-H", &format!("mcp-session-id: {session}")]);
    }
    let out = run(cmd.args(["--data-binary", body]).arg(URL)).expect("curl");
    let head = String::from_utf8_lossy(&out.stdout).into_owned();
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let session = head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("mcp-session-id")
            .then(|| value.trim().to_owned())
    });
    (status, session)
}

/// An MCP session id is not a key anyone may pick up: bob, who learned alice's session id,
/// is told the session does not exist; alice goes on using it.
#[test]
fn an_mcp_session_belongs_to_the_caller_that_opened_it() {
    if !require_root() {
        return;
    }
    let w = world("10m", "20s");
    let (alice, bob) = (w.token(&ALICE), w.token(&BOB));
    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"curl","version":"1"}}}"#;
    let (status, session) = post_as(&w, &alice, None, init);
    assert_eq!(status, 200, "{}", w.gw.log());
    let session = session.expect("the server opened a session");
    let ping = r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#;
    let (status, _) = post_as(&w, &bob, Some(&session), ping);
    assert_eq!(status, 404, "bob used alice's session\n{}", w.gw.log());
    let (status, _) = post_as(&w, &alice, Some(&session), ping);
    assert_eq!(status, 200, "alice's own session\n{}", w.gw.log());
    assert!(
        !w.gw.log().contains(&session),
        "the whole session id is in the log"
    );
}
