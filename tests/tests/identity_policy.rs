//! Identity and policy end to end: a real OIDC provider (npm `oidc-provider`) issues RS256
//! access tokens, the official Python SDK client presents them through the eBPF redirect,
//! and the gateway validates them, decides each call by policy, filters tool lists, trips
//! guardrails and blocks a rug pull. Forged and broken tokens get 401; a rotated key is
//! picked up without a restart; the policy reloads on SIGHUP and `mcpgw policy reload`.

use std::{fs, process::Command, time::Duration};

use mcpgw_tests::{
    mcp::*,
    oidc::{error_rule, tools, OidcClient, OidcWorld, TARGET, URL},
    *,
};
use serde_json::{json, Value};

fn world(policy: &str) -> OidcWorld {
    OidcWorld::start(&[ALICE, BOB], policy)
}

const ALICE: OidcClient = OidcClient {
    id: "alice-agent",
    secret: "alice-secret",
    groups: &["analysts"],
    email: "alice@example.com",
};
const BOB: OidcClient = OidcClient {
    id: "bob-bot",
    secret: "bob-secret",
    groups: &["interns"],
    email: "bob@example.com",
};

const POLICY: &str = r#"
[[policy.rules]]
id     = "analysts"
groups = ["analysts"]
tools  = ["query_*", "run_sql", "weather", "rug_pull", "echo", "ask_model"]
action = "allow"

[[policy.rules]]
id     = "interns-echo"
groups = ["interns"]
tools  = ["echo"]
action = "allow"

[[guardrails]]
id       = "no-drop-table"
argument = '(?i)\bdrop\s+table\b'
action   = "deny"
"#;

#[test]
fn tokens_identify_callers_and_policy_decides_each_call() {
    if !require_root() {
        return;
    }
    let w = world(POLICY);
    let alice = w.token(&ALICE);
    let s = w.steps(
        &alice,
        json!([
            {"list": true},
            {"call": "query_sales", "args": {"region": "emea"}},
            {"call": "add", "args": {"a": 1, "b": 2}},
            {"call": "run_sql", "args": {"sql": "select 1"}},
            {"call": "run_sql", "args": {"sql": "DROP  TABLE users"}},
        ]),
    );
    let listed = tools(&s[0]);
    for t in ["echo", "query_sales", "run_sql", "weather", "rug_pull"] {
        assert!(listed.contains(&t), "{t} listed for alice: {s:?}");
    }
    for t in ["add", "big", "slow_count"] {
        assert!(!listed.contains(&t), "{t} hidden from alice: {s:?}");
    }
    assert_eq!(s[1]["result"]["text"], "sales in emea: 1234", "{s:?}");
    assert_eq!(error_rule(&s[2]), (-32001, "default:deny"), "{s:?}");
    assert!(
        s[2]["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("no policy rule allows")),
        "{s:?}"
    );
    assert_eq!(s[3]["result"]["text"], "would run: select 1", "{s:?}");
    assert_eq!(error_rule(&s[4]), (-32001, "no-drop-table"), "{s:?}");

    // Another subject, other rules: the interns' token sees and may call only echo.
    let bob = w.token(&BOB);
    let s = w.steps(
        &bob,
        json!([{"list": true}, {"call": "echo", "args": {"text": "hi"}},
               {"call": "query_sales", "args": {"region": "emea"}}]),
    );
    assert_eq!(tools(&s[0]), ["echo"], "{s:?}");
    assert_eq!(s[1]["result"]["text"], "hi", "{s:?}");
    assert_eq!(error_rule(&s[2]), (-32001, "default:deny"), "{s:?}");

    // The recording names the subject and the rule of each decision.
    let out = w.gw.cli_ok(&[
        "--output",
        "json",
        "sessions",
        "list",
        "--subject",
        "alice-agent",
    ]);
    let sessions: Value = serde_json::from_slice(&out.stdout).expect("sessions JSON");
    let sessions = sessions.as_array().expect("list");
    assert!(!sessions.is_empty(), "alice's sessions recorded");
    let mut rules = Vec::new();
    for session in sessions {
        let id = session["id"].as_str().expect("id");
        let out = w.gw.cli_ok(&["--output", "json", "sessions", "show", id]);
        let shown: Value = serde_json::from_slice(&out.stdout).expect("show JSON");
        for e in shown["events"].as_array().into_iter().flatten() {
            if let (Some(rule), Some("refused")) = (e["rule"].as_str(), e["decision"].as_str()) {
                rules.push(rule.to_owned());
            }
        }
    }
    rules.sort();
    assert_eq!(
        rules,
        ["default:deny", "no-drop-table"],
        "refusals recorded with their rule"
    );

    // Metrics on loopback: decisions by rule, tokens, upstream latency, eBPF counters.
    let out =
        w.ns.cmd("curl")
            .args(["-s", "http://127.0.0.1:9464/metrics"])
            .output()
            .expect("curl");
    let metrics = String::from_utf8_lossy(&out.stdout);
    for line in [
        r#"mcpgw_policy_decisions_total{rule="default:deny",action="deny"} 2"#,
        r#"mcpgw_policy_decisions_total{rule="no-drop-table",action="deny"} 1"#,
        r#"mcpgw_tokens_total{outcome="valid"}"#,
        r#"mcpgw_upstream_latency_seconds_bucket{le="#,
        r#"mcpgw_ebpf_events_total{counter="#,
        "mcpgw_approvals_pending 0",
    ] {
        assert!(metrics.contains(line), "{line} in metrics:\n{metrics}");
    }
    let health = &w.gw.status()["health"];
    assert_eq!(health["store"], "ok", "{health}");
    assert_eq!(health["programs_attached"], true, "{health}");
    assert_eq!(
        health["identity_providers"][0]["keys_fresh"], true,
        "{health}"
    );
}

#[test]
fn a_tool_whose_definition_changes_is_blocked() {
    if !require_root() {
        return;
    }
    let w = world(POLICY);
    let alice = w.token(&ALICE);
    let s = w.steps(
        &alice,
        json!([
            {"list": true},
            {"call": "weather", "args": {"city": "Oslo"}},
            {"call": "rug_pull"},
            {"list": true},
            {"call": "weather", "args": {"city": "Oslo"}},
        ]),
    );
    assert!(tools(&s[0]).contains(&"weather"), "{s:?}");
    assert_eq!(s[1]["result"]["text"], "sunny in Oslo", "{s:?}");
    assert_eq!(s[2]["result"]["text"], "weather changed", "{s:?}");
    assert!(
        !tools(&s[3]).contains(&"weather"),
        "changed tool hidden: {s:?}"
    );
    assert_eq!(error_rule(&s[4]), (-32001, "builtin:rug-pull"), "{s:?}");
    assert!(
        w.gw.log().contains("rug pull"),
        "the block is logged:\n{}",
        w.gw.log()
    );
}

#[test]
fn forged_and_broken_tokens_get_401_and_the_metadata_to_get_a_real_one() {
    if !require_root() {
        return;
    }
    let w = world(POLICY);
    let (bad, good) = w.idp.bad_tokens("key-1").expect("bad tokens");
    assert!(bad.len() >= 20, "a matrix of at least 20: {}", bad.len());

    // The control: a token built the same way, without a flaw, passes.
    let (status, _, body) = w.raw_post(Some(&format!("Bearer {good}")));
    assert_eq!(status, 200, "good token accepted: {body}\n{}", w.gw.log());

    let mut accepted = Vec::new();
    for (name, token) in &bad {
        let (status, headers, body) = w.raw_post(Some(&format!("Bearer {token}")));
        if status != 401 {
            accepted.push(format!("{name}: HTTP {status} {body}"));
            continue;
        }
        let challenge = headers
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("www-authenticate:"))
            .unwrap_or_default();
        assert!(
            challenge.contains(r#"resource_metadata="https://10.0.3.17:8443/.well-known/oauth-protected-resource/mcp""#)
                && challenge.contains(r#"error="invalid_token""#),
            "{name}: challenge {challenge:?}"
        );
        let error: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        assert_eq!(error["error"]["code"], -32005, "{name}: {body}");
    }
    assert!(
        accepted.is_empty(),
        "bad tokens not refused:\n{}",
        accepted.join("\n")
    );

    for auth in [None, Some("Basic YWxpY2U6c2VjcmV0"), Some("Bearer")] {
        let (status, headers, _) = w.raw_post(auth);
        assert_eq!(status, 401, "{auth:?}");
        assert!(
            headers.contains("resource_metadata="),
            "{auth:?}: {headers}"
        );
    }
    assert!(
        w.gw.status()["version"].is_string(),
        "gateway alive after the matrix"
    );

    // A standard MCP client finds the issuer from the challenge (RFC 9728 metadata the
    // gateway serves), gets its own token with client_credentials, and is let in.
    let v = w
        .client(&[
            "--oauth-client-id",
            ALICE.id,
            "--oauth-client-secret",
            ALICE.secret,
            "--oauth-issuer",
            &w.idp.issuer,
            "--call",
            "query_sales",
            "--args",
            r#"{"region":"apac"}"#,
        ])
        .unwrap_or_else(|e| panic!("OAuth client: {e:#}\n{}", w.gw.log()));
    assert_eq!(v["content"][0]["text"], "sales in apac: 1234", "{v}");
}

#[test]
fn rotated_keys_are_fetched_without_a_restart_and_kept_through_an_outage() {
    if !require_root() {
        return;
    }
    let mut w = world(POLICY);
    let old = w.token(&ALICE);
    let call = json!([{"call": "echo", "args": {"text": "k"}}]);
    assert_eq!(w.steps(&old, call.clone())[0]["result"]["text"], "k");

    // The provider is down: the keys in hand still verify tokens.
    w.idp.stop();
    assert_eq!(w.steps(&old, call.clone())[0]["result"]["text"], "k");

    // It comes back with a new key: a token signed with it names an unknown kid, and the
    // gateway fetches the keys again (rate-limited, hence the retries).
    w.idp
        .restart_with_key(&w.ns, "key-2")
        .expect("restart provider");
    let new = w.token(&ALICE);
    let passed = wait_for(Duration::from_secs(20), || {
        let v = w
            .client(&["--bearer", &new, "--steps", &call.to_string()])
            .ok()?;
        (v["steps"][0]["result"]["text"] == "k").then_some(())
    });
    assert!(
        passed.is_some(),
        "token with the new key accepted\n{}",
        w.gw.log()
    );
    // The old key is no longer published: its tokens are refused now.
    let (status, _, body) = w.raw_post(Some(&format!("Bearer {old}")));
    assert_eq!(status, 401, "old key's token after rotation: {body}");
}

#[test]
fn policy_reloads_checks_and_explains() {
    if !require_root() {
        return;
    }
    let w = world(POLICY);
    let alice = w.token(&ALICE);
    let call = json!([{"call": "add", "args": {"a": 1, "b": 2}}]);
    assert_eq!(
        error_rule(&w.steps(&alice, call.clone())[0]).1,
        "default:deny"
    );

    // Explain a hypothetical call against the running policy.
    let out = w.gw.cli_ok(&[
        "--output",
        "json",
        "policy",
        "explain",
        "--subject",
        "alice-agent",
        "--group",
        "analysts",
        "--server",
        "mcp",
        "--tool",
        "run_sql",
        "--args",
        r#"{"sql":"drop table x"}"#,
    ]);
    let v: Value = serde_json::from_slice(&out.stdout).expect("explain JSON");
    assert_eq!(v["decision"]["rule"], "no-drop-table", "{v}");
    assert_eq!(v["decision"]["action"], "deny", "{v}");

    // A new rule, reloaded by `mcpgw policy reload`.
    let config = w.gw.dir().join("mcpgw.toml");
    let text = fs::read_to_string(&config).expect("config");
    let with_add = format!(
        "{text}\n[[policy.rules]]\nid = \"adders\"\ngroups = [\"analysts\"]\ntools = [\"add\"]\naction = \"allow\"\n"
    );
    fs::write(&config, &with_add).expect("write config");
    let path = config.display().to_string();
    let out = w.gw.cli_ok(&["policy", "check", &path]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("valid (3 rules, 1 guardrails)"));
    w.gw.cli_ok(&["policy", "reload"]);
    assert_eq!(w.steps(&alice, call.clone())[0]["result"]["text"], "3");

    // An invalid file is refused with its line, and the running policy stays.
    let broken = format!(
        "{with_add}\n[[guardrails]]\nid = \"broken\"\nargument = \"(\"\naction = \"deny\"\n"
    );
    fs::write(&config, &broken).expect("write config");
    for args in [
        vec!["policy", "check", path.as_str()],
        vec!["policy", "reload"],
    ] {
        let out = w.gw.cli(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} must fail");
        assert!(
            err.contains(&path)
                && err.contains("guardrail `broken` (line")
                && err.contains("argument"),
            "{args:?}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "one line: {err}");
    }
    assert_eq!(w.steps(&alice, call.clone())[0]["result"]["text"], "3");

    // SIGHUP (systemd's ExecReload) reloads too: back to the original rules.
    fs::write(&config, &text).expect("write config");
    run(Command::new("kill").args(["-HUP", &w.gw.pid().to_string()])).expect("SIGHUP");
    let denied = wait_for(Duration::from_secs(10), || {
        let s = w.steps(&alice, call.clone());
        (error_rule(&s[0]).1 == "default:deny").then_some(())
    });
    assert!(
        denied.is_some(),
        "SIGHUP reloaded the policy\n{}",
        w.gw.log()
    );
}

#[test]
fn without_issuers_processes_are_identified_by_what_they_are() {
    if !require_root() {
        return;
    }
    let ns = Netns::new().expect("netns");
    let cg = Cgroup::new().expect("cgroup");
    let tmp = TempDir::new().expect("temp dir");
    let ca = TestCa::new(tmp.path(), &["10.0.3.17"]).expect("test CA");
    let _server =
        mcp_server(&ns, TARGET, McpTransport::StreamableHttp, Some(&ca)).expect("MCP server");
    let python = fs::canonicalize(peers_venv_python()).expect("venv python");
    let servers = format!(
        r#"[[servers]]
name    = "mcp"
match   = ["{TARGET}"]
ca_file = {ca:?}

# A bot known by its uid and executable, with no secret at all.
[[identity.processes]]
name   = "report-bot"
uid    = {NOBODY}
exe    = "{exe}*"
groups = ["bots"]

[[policy.rules]]
id     = "bots-echo"
groups = ["bots"]
tools  = ["echo"]
action = "allow"
"#,
        ca = ca.ca_pem.display().to_string(),
        exe = python.parent().expect("bin dir").display(),
    );
    let gw =
        Gateway::start(&ns, Some(&cg), &gateway_config(&cg, "open", &servers)).expect("gateway");
    let host_ca = tmp.path().join("host-ca.pem");
    fs::write(&host_ca, gw.cli_ok(&["ca", "export"]).stdout).expect("host CA");
    let steps = json!([{"call": "echo", "args": {"text": "bot"}}]).to_string();
    let as_uid = |uid: Option<u32>| {
        mcp_client_py_with(
            cg.cmd(&ns, uid, peers_venv_python()),
            URL,
            McpTransport::StreamableHttp,
            Era::Session,
            Some(&host_ca),
            &["--steps", &steps],
        )
        .unwrap_or_else(|e| panic!("client: {e:#}\n{}", gw.log()))
    };
    let bot = as_uid(Some(NOBODY));
    assert_eq!(bot["steps"][0]["result"]["text"], "bot", "{bot}");
    // Root running the same program is not the bot: no rule for `uid:0`.
    let other = as_uid(None);
    assert_eq!(
        error_rule(&other["steps"][0]),
        (-32001, "default:deny"),
        "{other}"
    );
    let out = gw.cli_ok(&[
        "--output",
        "json",
        "sessions",
        "list",
        "--subject",
        "report-bot",
    ]);
    let listed: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert!(
        !listed.as_array().expect("list").is_empty(),
        "recorded as report-bot"
    );
}

#[test]
fn server_initiated_sampling_needs_a_rule() {
    if !require_root() {
        return;
    }
    let w = world(POLICY);
    let alice = w.token(&ALICE);
    let ask = json!([{"call": "ask_model", "args": {"question": "meaning of life?"}}]);
    // No rule allows sampling: the request never reaches the client, and the server gets
    // the gateway's error at once (it does not wait for its own timeout).
    let started = std::time::Instant::now();
    let s = w.steps(&alice, ask.clone());
    let text = s[0]["result"]["text"].as_str().unwrap_or_default();
    assert!(
        text.starts_with("sampling failed") && text.contains("no policy rule allows"),
        "{s:?}\n{}",
        w.gw.log()
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "answered, not timed out"
    );

    // A rule lets analysts' sessions be sampled: the client's model answers.
    let config = w.gw.dir().join("mcpgw.toml");
    let text = fs::read_to_string(&config).expect("config");
    fs::write(
        &config,
        format!("{text}\n[[policy.rules]]\nid = \"sampling\"\nmethods = [\"sampling/createMessage\"]\ngroups = [\"analysts\"]\naction = \"allow\"\n"),
    )
    .expect("write config");
    w.gw.cli_ok(&["policy", "reload"]);
    let s = w.steps(&alice, ask);
    assert_eq!(s[0]["result"]["text"], "model says: 42", "{s:?}");
}
