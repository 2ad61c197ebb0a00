//! Per-call AWS credentials end to end: the Python SDK client holds only its OIDC token; the
//! gateway mints STS credentials for it from moto's real STS (AssumeRole with session name,
//! source identity, tags, duration and a per-tool session policy; AssumeRoleWithWebIdentity
//! with the caller's token), and signs the call with SigV4; the MCP server behind it
//! verifies every signature against what moto issued (botocore) and refuses anything else.
//! Faults (STS down, slow, refusing) give clear errors; long-lived keys are caught.

use std::{process::Stdio, time::Duration};

use mcpgw_tests::{
    oidc::{error_rule, OidcClient, OidcWorld, TARGET, URL},
    sts::{sigv4_mcp_server, GatewayKey, Moto},
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
    id: "bob-bot",
    secret: "bob-secret",
    groups: &["analysts"],
    email: "bob@example.com",
};

const MOTO_PORT: u16 = 5000;
/// Accepts connections and never answers: STS that is too slow.
const SLOW_PORT: u16 = 5999;
const REGION: &str = "us-east-1";
const SERVICE: &str = "execute-api";
const WEB_URL: &str = "https://10.0.3.17:8444/mcp";
const DENIED_URL: &str = "https://10.0.3.17:8445/mcp";
const SLOW_URL: &str = "https://10.0.3.17:8446/mcp";

const POLICY_TEMPLATE: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"execute-api:Invoke","Resource":"arn:aws:execute-api:us-east-1:*:*/*/POST/{tool}"}]}"#;

struct Peers {
    /// The test CA (PEM path), which the upstream's certificate chains to.
    ca_pem: String,
    moto: Moto,
    key: GatewayKey,
    _server: Proc,
    _slow: Proc,
}

/// One more server entry reaching the same SigV4-checking upstream.
fn aws_server(name: &str, port: u16, ca: &str, role: &str, mode: &str, moto: &str) -> String {
    format!(
        r#"
[[servers]]
name     = "{name}"
match    = ["10.0.3.17:{port}"]
upstream = "https://{TARGET}"
ca_file  = {ca:?}
  [servers.aws]
  role_arn     = "{role}"
  region       = "{REGION}"
  service      = "{SERVICE}"
  credentials  = "{mode}"
  sts_endpoint = "{moto}"
"#
    )
}

fn world() -> (OidcWorld, Peers) {
    OidcWorld::start_with(
        &[ALICE, BOB],
        |ns, ca, _| {
            let (moto, key) = Moto::start_with_auth(ns, MOTO_PORT).expect("moto");
            let server =
                sigv4_mcp_server(ns, TARGET, ca, &moto, REGION, SERVICE).expect("SigV4 MCP server");
            let mut slow = ns.cmd("python3");
            slow.args(["-c", &format!(
                "import socket,time\ns=socket.socket()\ns.bind(('127.0.0.1',{SLOW_PORT}))\ns.listen(64)\nprint('ready',flush=True)\ntime.sleep(3600)"
            )])
            .stdout(Stdio::piped());
            let mut slow = slow.spawn().expect("slow STS");
            let mut line = String::new();
            std::io::BufRead::read_line(
                &mut std::io::BufReader::new(slow.stdout.take().expect("stdout")),
                &mut line,
            )
            .expect("slow STS ready");
            // The gateway's own AWS identity, as the default chain finds it: the environment
            // (on EC2 it would be the instance role). The clients never see it.
            for (k, v) in key.env() {
                std::env::set_var(k, v);
            }
            std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
            Peers {
                ca_pem: ca.ca_pem.display().to_string(),
                moto,
                key,
                _server: server,
                _slow: Proc::new(slow),
            }
        },
        |p: &Peers| {
            let ca = p.ca_pem.clone();
            let moto = p.moto.endpoint();
            format!(
                r#"
  [servers.aws]
  role_arn       = "{allowed}"
  region         = "{REGION}"
  service        = "{SERVICE}"
  sts_endpoint   = "{moto}"
  session_policy = '{POLICY_TEMPLATE}'
  duration       = "20m"
{web}{denied}{slow}
[[policy.rules]]
id     = "analysts"
groups = ["analysts"]
tools  = ["aws_caller", "echo"]
action = "allow"
"#,
                allowed = p.key.role_allowed_arn,
                web = aws_server(
                    "mcp-web",
                    8444,
                    &ca,
                    &p.key.role_allowed_arn,
                    "web_identity",
                    &moto
                ),
                denied = aws_server(
                    "mcp-denied",
                    8445,
                    &ca,
                    &p.key.role_denied_arn,
                    "assume_role",
                    &moto
                ),
                slow = aws_server(
                    "mcp-slow",
                    8446,
                    &ca,
                    &p.key.role_allowed_arn,
                    "assume_role",
                    &format!("http://127.0.0.1:{SLOW_PORT}")
                ),
            )
        },
    )
}

fn caller(step: &Value) -> Value {
    let text = step["result"]["text"].as_str().unwrap_or("null");
    serde_json::from_str(text).unwrap_or_else(|_| json!({"unparsed": text}))
}

#[test]
fn calls_are_signed_with_credentials_minted_for_the_caller_and_the_tool() {
    if !require_root() {
        return;
    }
    let (w, p) = world();
    let alice = w.token(&ALICE);
    let s = w.steps(
        &alice,
        json!([{"call": "aws_caller"}, {"call": "echo", "args": {"text": "x"}}]),
    );
    let id = caller(&s[0]);
    assert_eq!(
        id["session_name"],
        "mcpgw-alice-agent",
        "{s:?}\n{}",
        w.gw.log()
    );
    assert_eq!(id["role_arn"], p.key.role_allowed_arn.as_str());
    assert_eq!(
        s[1]["result"]["text"], "x",
        "every request is signed: {s:?}"
    );

    // What moto issued: one credential per tool, each scoped to its tool.
    let issued = p.moto.issued(&w.ns).expect("issued");
    let for_caller: Vec<_> = issued
        .iter()
        .filter(|i| i.session_name == "mcpgw-alice-agent")
        .collect();
    let akid = id["access_key_id"].as_str().expect("key id");
    let minted = for_caller
        .iter()
        .find(|i| i.access_key_id == akid)
        .unwrap_or_else(|| panic!("the signing key was issued by moto: {issued:?}"));
    assert_eq!(minted.source_identity.as_deref(), Some("alice-agent"));
    assert_eq!(minted.tag("mcpgw:subject"), Some("alice-agent"));
    assert_eq!(minted.tag("mcpgw:groups"), Some("analysts"));
    assert!(minted.tag("mcpgw:session").is_some());
    assert_eq!(minted.duration_seconds, Some(1200));
    assert_eq!(
        minted.caller_access_key_id.as_deref(),
        Some(p.key.access_key_id.as_str())
    );
    let policy = minted.policy_json().expect("session policy");
    assert_eq!(
        policy["Statement"][0]["Resource"],
        "arn:aws:execute-api:us-east-1:*:*/*/POST/aws_caller"
    );

    // The recording has the credential (never its secret), joinable to CloudTrail.
    let out = w.gw.cli_ok(&[
        "--output",
        "json",
        "sessions",
        "list",
        "--subject",
        "alice-agent",
    ]);
    let sessions: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut recorded = Vec::new();
    for session in sessions.as_array().unwrap() {
        let out = w.gw.cli_ok(&[
            "--output",
            "json",
            "sessions",
            "export",
            session["id"].as_str().unwrap(),
            "--format",
            "jsonl",
        ]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            !text.contains(&minted.secret_access_key),
            "no secret in the recording"
        );
        assert!(
            !text.contains(&minted.session_token),
            "no session token in the recording"
        );
        recorded.push(text);
    }
    let all = recorded.join("\n");
    assert!(
        all.contains("aws_credentials") && all.contains(akid),
        "credential recorded"
    );

    let health = &w.gw.status()["health"]["sts"];
    assert_eq!(health["state"], "ok", "STS health in status: {health}");

    // Unsigned requests to the server itself are refused: the signatures above were checked.
    let out =
        w.ns.cmd("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
            .arg(&w.ca.ca_pem)
            .args([
                "-X",
                "POST",
                "-H",
                "content-type: application/json",
                "--data",
                "{}",
            ])
            .arg(format!("https://{TARGET}/mcp"))
            .output()
            .expect("curl");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "403",
        "unsigned refused"
    );
}

#[test]
fn one_sts_call_per_subject_for_a_burst_and_web_identity_uses_the_callers_token() {
    if !require_root() {
        return;
    }
    let (w, p) = world();
    let before = p.moto.sts_call_count(&w.ns, "AssumeRole").unwrap();
    let alice = w.token(&ALICE);
    let s = w.steps(&alice, json!([{"parallel": 100, "call": "aws_caller"}]));
    let texts = s[0]["texts"].as_array().expect("texts");
    assert_eq!(texts.len(), 100);
    for t in texts {
        let id: Value = serde_json::from_str(t.as_str().unwrap_or("")).unwrap_or_default();
        assert_eq!(id["session_name"], "mcpgw-alice-agent", "{t}");
    }
    // Two STS calls: one for the session's own requests (initialize, lists: no tool, so
    // scope `*`), one for the 100 calls of aws_caller.
    let after_alice = p.moto.sts_call_count(&w.ns, "AssumeRole").unwrap();
    assert_eq!(after_alice - before, 2, "session scope + one for the burst");
    let for_tool = |session: &str| {
        p.moto
            .issued(&w.ns)
            .unwrap()
            .iter()
            .filter(|i| i.session_name == session)
            .filter(|i| {
                i.policy
                    .as_deref()
                    .is_some_and(|p| p.contains("POST/aws_caller"))
            })
            .count()
    };
    assert_eq!(
        for_tool("mcpgw-alice-agent"),
        1,
        "one credential for the burst"
    );
    let bob = w.token(&BOB);
    let s = w.steps(&bob, json!([{"call": "aws_caller"}]));
    assert_eq!(caller(&s[0])["session_name"], "mcpgw-bob-bot");
    assert_eq!(for_tool("mcpgw-bob-bot"), 1, "another subject gets its own");

    // Web identity: moto takes unsigned AssumeRoleWithWebIdentity only with its auth off.
    p.moto.set_auth(&w.ns, false).unwrap();
    let s = w.steps_at(WEB_URL, &alice, json!([{"call": "aws_caller"}]));
    let id = caller(&s[0]);
    assert_eq!(
        id["session_name"],
        "mcpgw-alice-agent",
        "{s:?}\n{}",
        w.gw.log()
    );
    let issued = p
        .moto
        .issued_key(&w.ns, id["access_key_id"].as_str().unwrap())
        .unwrap();
    assert_eq!(issued.action.as_deref(), Some("AssumeRoleWithWebIdentity"));
    assert_eq!(
        issued.web_identity_token.as_deref(),
        Some(alice.as_str()),
        "the caller's own token"
    );
}

#[test]
fn sts_faults_and_long_lived_keys_get_clear_errors() {
    if !require_root() {
        return;
    }
    let (w, mut p) = world();
    let alice = w.token(&ALICE);
    let call = json!([{"call": "aws_caller"}]);

    // The session's first request already needs credentials: a client that cannot get any
    // fails to connect, with the gateway's reason.
    let refused = |url: &str, token: &str| {
        let steps = call.to_string();
        let err = w
            .client_at(url, &["--bearer", token, "--steps", &steps])
            .expect_err("no credentials, no call");
        format!("{err:#}")
    };
    // A role the gateway may not assume: STS's AccessDenied, named.
    let err = refused(DENIED_URL, &alice);
    assert!(
        err.contains("no AWS credentials for this call: AWS STS refused: AccessDenied"),
        "{err}"
    );

    // STS that never answers: refused after the bound, not hung.
    let started = std::time::Instant::now();
    let err = refused(SLOW_URL, &alice);
    assert!(err.contains("did not answer"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(30), "bounded");

    // Long-lived keys from the client: in the arguments, and in a SigV4 header.
    let s = w.steps(
        &alice,
        json!([{"call": "echo", "args": {"text": "use AKIAIOSFODNN7EXAMPLE"}}]),
    );
    assert_eq!(
        error_rule(&s[0]),
        (-32001, "builtin:static-aws-key"),
        "{s:?}"
    );
    let (status, _, body) = w.raw_post(Some(&format!("Bearer {alice}")));
    assert_eq!(status, 200, "control: {body}");
    let out =
        w.cg.cmd(&w.ns, None, "curl")
            .args(["-s", "-w", "\n%{http_code}", "--cacert"])
            .arg(&w.bundle)
            .args(["-X", "POST", "-H", "content-type: application/json"])
            .args(["-H", "accept: application/json, text/event-stream"])
            .args(["-H", &format!("authorization: Bearer {alice}")])
            .args([
                "-H",
                "x-amz-security-token: x",
                "-H",
                "x-api-key: AKIAIOSFODNN7EXAMPLE",
            ])
            .args(["--data", r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#])
            .arg(URL)
            .output()
            .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.ends_with("403"), "{text}");
    assert!(text.contains("builtin:static-aws-key"), "{text}");

    // STS down: a new subject (nothing cached) gets the cause.
    p.moto.stop();
    let bob = w.token(&BOB);
    let err = refused(URL, &bob);
    assert!(err.contains("AWS STS is unreachable"), "{err}");
    assert!(w.gw.log().contains("long-lived AWS key"), "findings logged");
}
