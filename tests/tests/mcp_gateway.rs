//! Root tests of the MCP data path through the eBPF redirect: real SDK clients (Python and
//! TypeScript) in the intercepted cgroup talk to real servers (Python SDK over TLS from a
//! test CA, server-everything over plain HTTP) through mcpgw, trusting only the gateway's
//! host CA. Every scenario's report must equal the report of a direct run.

use std::{fs, path::PathBuf, process::Command};

use mcpgw_tests::mcp::*;
use mcpgw_tests::*;
use serde_json::Value;

/// Drop order: gateway, servers, cgroup, namespace.
struct World {
    gw: Gateway,
    _servers: Vec<Proc>,
    host_ca: PathBuf,
    test_ca: TestCa,
    _tmp: TempDir,
    cg: Cgroup,
    ns: Netns,
}

fn config(cg: &Cgroup, test_ca: &TestCa, verify_upstream: bool, extra: &str) -> String {
    let ca_file = if verify_upstream {
        format!("ca_file = {:?}", test_ca.ca_pem.display().to_string())
    } else {
        String::new()
    };
    let servers = format!(
        r#"[[servers]]
name  = "mcp"
match = ["10.0.3.17:8443", "10.0.3.17:8444", "10.0.3.17:8445", "[fd00::17]:8443"]
{ca_file}

[[servers]]
name  = "everything"
tls   = "plaintext"
match = ["10.0.3.17:3001", "10.0.3.17:3002"]

{extra}
"#
    );
    gateway_config(cg, "open", &servers)
}

fn world(verify_upstream: bool) -> World {
    world_with(verify_upstream, "", "", &[])
}

/// `gateway_lines`: more `[gateway]` keys; `extra`: more sections; `json_servers`: addresses
/// served with `--json-response` (POST answers as application/json, not event streams).
fn world_with(
    verify_upstream: bool,
    gateway_lines: &str,
    extra: &str,
    json_servers: &[&str],
) -> World {
    let ns = Netns::new().expect("netns");
    let cg = Cgroup::new().expect("cgroup");
    let tmp = TempDir::new().expect("temp dir");
    let test_ca = TestCa::new(tmp.path(), &["mcp.test", TARGET_V4, TARGET_V6]).expect("test CA");
    let mut servers = vec![
        mcp_server(
            &ns,
            "10.0.3.17:8443",
            McpTransport::StreamableHttp,
            Some(&test_ca),
        )
        .expect("server"),
        mcp_server(&ns, "10.0.3.17:8444", McpTransport::Sse, Some(&test_ca)).expect("SSE server"),
        mcp_server(
            &ns,
            "[fd00::17]:8443",
            McpTransport::StreamableHttp,
            Some(&test_ca),
        )
        .expect("v6 server"),
    ];
    for addr in json_servers {
        let json = mcp_server_with(
            &ns,
            addr,
            McpTransport::StreamableHttp,
            Some(&test_ca),
            &["--json-response"],
        );
        servers.push(json.expect("JSON-response server"));
    }
    let config = config(&cg, &test_ca, verify_upstream, extra).replacen(
        "\n[intercept]",
        &format!("{gateway_lines}\n\n[intercept]"),
        1,
    );
    let gw = Gateway::start(&ns, Some(&cg), &config).expect("gateway");
    // What an operator does: export the host CA and give it to the clients.
    let pem = gw.cli_ok(&["ca", "export"]).stdout;
    assert!(String::from_utf8_lossy(&pem).starts_with("-----BEGIN CERTIFICATE-----"));
    let host_ca = tmp.path().join("host-ca.pem");
    fs::write(&host_ca, pem).expect("write host CA");
    World {
        gw,
        _servers: servers,
        host_ca,
        test_ca,
        _tmp: tmp,
        cg,
        ns,
    }
}

impl World {
    fn direct_py(&self, url: &str, t: McpTransport, era: Era) -> Value {
        mcp_client_py(
            self.ns.cmd(peers_venv_python()),
            url,
            t,
            era,
            Some(&self.test_ca.ca_pem),
        )
        .unwrap_or_else(|e| panic!("direct python client {url}: {e:#}"))
    }

    fn via_gateway_py(&self, url: &str, t: McpTransport, era: Era) -> Value {
        mcp_client_py(
            self.cg.cmd(&self.ns, Some(NOBODY), peers_venv_python()),
            url,
            t,
            era,
            Some(&self.host_ca),
        )
        .unwrap_or_else(|e| {
            panic!(
                "python client through mcpgw {url}: {e:#}\n--- gateway log ---\n{}",
                self.gw.log()
            )
        })
    }

    fn ts(
        &self,
        cmd: Command,
        url: &str,
        t: McpTransport,
        scenario: TsScenario,
        ca: &std::path::Path,
    ) -> Value {
        mcp_client_ts(cmd, url, t, scenario, Some(ca)).unwrap_or_else(|e| {
            panic!(
                "ts client {url}: {e:#}\n--- gateway log ---\n{}",
                self.gw.log()
            )
        })
    }

    /// Connections the gateway handled as MCP for `server`, by the nobody client.
    fn mcp_connections(&self, server: &str) -> Vec<Value> {
        self.gw.status()["connections"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|c| c["server"] == server && c["uid"] == NOBODY)
            .collect()
    }
}

#[test]
fn python_sdk_both_eras_and_transports_match_direct() {
    if !require_root() {
        return;
    }
    let w = world(true);
    let http = "https://10.0.3.17:8443/mcp";
    for era in [Era::Session, Era::Stateless, Era::Auto] {
        let direct = w.direct_py(http, McpTransport::StreamableHttp, era);
        assert_python_scenario(&direct);
        let via = w.via_gateway_py(http, McpTransport::StreamableHttp, era);
        assert_eq!(via, direct, "{era:?}: through mcpgw differs from direct");
    }
    let sse = "https://10.0.3.17:8444/sse";
    let direct = w.direct_py(sse, McpTransport::Sse, Era::Session);
    assert_eq!(
        w.via_gateway_py(sse, McpTransport::Sse, Era::Session),
        direct,
        "legacy SSE transport"
    );

    let v6 = "https://[fd00::17]:8443/mcp";
    let direct = w.direct_py(v6, McpTransport::StreamableHttp, Era::Session);
    assert_eq!(
        w.via_gateway_py(v6, McpTransport::StreamableHttp, Era::Session),
        direct,
        "IPv6"
    );

    // The gateway handled them as MCP (not as a byte relay), attributed to the client, and
    // the interceptor chain saw the tool calls.
    let conns = w.mcp_connections("mcp");
    assert!(
        conns.len() >= 5,
        "expected MCP connections in status: {}",
        w.gw.status()
    );
    assert!(
        conns.iter().all(|c| c["outcome"] == "forwarded"),
        "{conns:?}"
    );
    let log = w.gw.log();
    assert!(
        log.contains("tools/call") && log.contains("tool=\"echo\""),
        "no tools/call in log:\n{log}"
    );
}

#[test]
fn typescript_sdk_and_server_everything_match_direct() {
    if !require_root() {
        return;
    }
    let w = world(true);
    let node = || w.cg.cmd(&w.ns, Some(NOBODY), node_bin());
    for (url, t) in [
        ("https://10.0.3.17:8443/mcp", McpTransport::StreamableHttp),
        ("https://10.0.3.17:8444/sse", McpTransport::Sse),
    ] {
        let direct = w.ts(
            w.ns.cmd(node_bin()),
            url,
            t,
            TsScenario::Python,
            &w.test_ca.ca_pem,
        );
        let via = w.ts(node(), url, t, TsScenario::Python, &w.host_ca);
        assert_eq!(via, direct, "{url}");
    }
    // server-everything over plain HTTP (tls = "plaintext").
    let _http =
        everything_server(&w.ns, McpTransport::StreamableHttp, 3001).expect("server-everything");
    let _sse = everything_server(&w.ns, McpTransport::Sse, 3002).expect("server-everything sse");
    for (url, t) in [
        ("http://10.0.3.17:3001/mcp", McpTransport::StreamableHttp),
        ("http://10.0.3.17:3002/sse", McpTransport::Sse),
    ] {
        let direct = w.ts(
            w.ns.cmd(node_bin()),
            url,
            t,
            TsScenario::Everything,
            &w.test_ca.ca_pem,
        );
        assert_everything_scenario(&direct);
        let via = w.ts(node(), url, t, TsScenario::Everything, &w.host_ca);
        assert_everything_scenario(&via);
    }
    assert!(
        !w.mcp_connections("everything").is_empty(),
        "{}",
        w.gw.status()
    );
}

/// What curl saw: HTTP status (0 when none), body, exit code.
#[derive(Debug)]
struct Curl {
    status: u16,
    body: String,
    exit: i32,
    #[expect(dead_code, reason = "shown through Debug in failure messages")]
    stderr: String,
}

impl World {
    /// curl as the nobody client in the intercepted cgroup, trusting the host CA.
    fn curl(&self, args: &[&str]) -> Curl {
        let out_file = self._tmp.path().join(unique_name("curl-body"));
        let out = self
            .cg
            .cmd(&self.ns, None, "curl")
            .args(["-sS", "--max-time", "20", "--cacert"])
            .arg(&self.host_ca)
            .arg("-o")
            .arg(&out_file)
            .args(["-w", "%{http_code}"])
            .args(args)
            .output()
            .expect("curl");
        Curl {
            status: String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse()
                .unwrap_or(0),
            body: fs::read_to_string(&out_file).unwrap_or_default(),
            exit: out.status.code().unwrap_or(-1),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn post(&self, url: &str, content_type: &str, body_args: &[&str]) -> Curl {
        let ct = format!("content-type: {content_type}");
        let mut args = vec![
            "-X",
            "POST",
            "-H",
            ct.as_str(),
            "-H",
            "accept: application/json, text/event-stream",
        ];
        args.extend_from_slice(body_args);
        args.push(url);
        self.curl(&args)
    }

    fn gateway_alive(&self) {
        let status = self.gw.status();
        assert_eq!(status["mode"], "ebpf", "gateway not answering: {status}");
    }
}

fn rpc_error_code(c: &Curl) -> i64 {
    let v: Value =
        serde_json::from_str(&c.body).unwrap_or_else(|e| panic!("not JSON ({e}): {c:?}"));
    v["error"]["code"]
        .as_i64()
        .unwrap_or_else(|| panic!("no JSON-RPC error: {v}"))
}

#[test]
fn bad_input_gets_clear_errors_and_nothing_is_forwarded() {
    if !require_root() {
        return;
    }
    let w = world(true);
    let url = "https://10.0.3.17:8443/mcp";

    let c = w.post(url, "application/json", &["--data-binary", "{\"jsonrpc\":"]);
    assert_eq!(
        (c.status, rpc_error_code(&c)),
        (400, -32700),
        "malformed JSON: {}",
        c.body
    );

    let c = w.post(
        url,
        "application/json",
        &["--data-binary", r#"{"jsonrpc":"2.0","id":1}"#],
    );
    assert_eq!(
        (c.status, rpc_error_code(&c)),
        (400, -32600),
        "not JSON-RPC: {}",
        c.body
    );

    let c = w.post(
        url,
        "text/plain",
        &[
            "--data-binary",
            r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
        ],
    );
    assert_eq!(
        (c.status, rpc_error_code(&c)),
        (415, -32600),
        "wrong content type: {}",
        c.body
    );

    // 50 MB, with a declared length and chunked: refused at the limit, never forwarded.
    let big = w._tmp.path().join("big.json");
    let text = "x".repeat(50 << 20);
    fs::write(&big, format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"{text}"}}}}}}"#))
        .unwrap();
    let at_big = format!("@{}", big.display());
    let c = w.post(
        url,
        "application/json",
        &["--http1.1", "--data-binary", &at_big],
    );
    assert_eq!(
        (c.status, rpc_error_code(&c)),
        (413, -32003),
        "50 MB body: {c:?}"
    );
    let chunked = [
        "--http1.1",
        "-H",
        "transfer-encoding: chunked",
        "--data-binary",
        &at_big,
    ];
    let c = w.post(url, "application/json", &chunked);
    assert_eq!(c.status, 413, "50 MB chunked body: {c:?}");
    // Over h2 the gateway answers 413 and resets the unread request stream (NO_ERROR), as
    // RFC 9113 8.1 allows; curl 7.88 reports that reset instead of the answer.
    let c = w.post(
        url,
        "application/json",
        &["--http2", "--data-binary", &at_big],
    );
    assert!(c.status == 413 || c.exit == 92, "50 MB body over h2: {c:?}");
    let log = w.gw.log();
    assert!(
        !log.contains("tool=\"echo\""),
        "an oversized call reached the chain or the upstream:\n{log}"
    );
    w.gateway_alive();
}

#[test]
fn untrusted_upstream_certificate_is_refused() {
    if !require_root() {
        return;
    }
    // No ca_file: the test CA that signed the upstream is not trusted by the gateway.
    let w = world(false);
    let c = w.post(
        "https://10.0.3.17:8443/mcp",
        "application/json",
        &["--data-binary", r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"curl","version":"1"}}}"#],
    );
    assert_eq!((c.status, rpc_error_code(&c)), (502, -32002), "{}", c.body);
    assert!(
        c.body.contains("certificate"),
        "the error names the certificate problem: {}",
        c.body
    );
    w.gateway_alive();
}

#[test]
fn upstream_dying_mid_stream_and_dead_upstream() {
    if !require_root() {
        return;
    }
    let mut w = world(true);
    let url = "https://10.0.3.17:8443/mcp";
    // A long tool call in the stateless era (one POST, answered as an event stream).
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"slow_count","arguments":{"n":100,"delay":0.1},"_meta":{"progressToken":1,"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"curl","version":"1"},"io.modelcontextprotocol/clientCapabilities":{}}}}"#;
    let args: Vec<String> = [
        "-sS",
        "-N",
        "--max-time",
        "30",
        "--cacert",
        &w.host_ca.display().to_string(),
        "-X",
        "POST",
        "-H",
        "content-type: application/json",
        "-H",
        "accept: application/json, text/event-stream",
        "-H",
        "mcp-protocol-version: 2026-07-28",
        "-H",
        "mcp-method: tools/call",
        "-H",
        "mcp-name: slow_count",
        "--data-binary",
        body,
        url,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut curl =
        w.cg.cmd(&w.ns, None, "curl")
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("curl");
    // Let some progress events through, then kill the server under the open stream.
    let mut stdout = curl.stdout.take().unwrap();
    let mut seen = Vec::new();
    let got_progress = wait_for(std::time::Duration::from_secs(15), || {
        use std::io::Read as _;
        let mut buf = [0u8; 4096];
        let n = stdout.read(&mut buf).ok()?;
        seen.extend_from_slice(&buf[..n]);
        String::from_utf8_lossy(&seen)
            .contains("notifications/progress")
            .then_some(())
    });
    assert!(
        got_progress.is_some(),
        "no progress event through the gateway: {}",
        String::from_utf8_lossy(&seen)
    );
    w._servers[0].kill();
    let out = curl.wait_with_output().expect("curl");
    assert!(
        !out.status.success(),
        "the client must see the stream break, not a clean end"
    );
    w.gateway_alive();

    // The upstream is gone now: a new call gets a clear JSON-RPC error naming the cause.
    let c = w.post(
        url,
        "application/json",
        &[
            "--data-binary",
            r#"{"jsonrpc":"2.0","id":7,"method":"ping"}"#,
        ],
    );
    assert_eq!((c.status, rpc_error_code(&c)), (502, -32002), "{}", c.body);
    let v: Value = serde_json::from_str(&c.body).unwrap();
    assert_eq!(v["id"], 7, "the error answers the request's id: {v}");
    assert!(c.body.contains("cannot connect"), "{}", c.body);
    w.gateway_alive();
}

#[test]
fn sni_name_is_terminated_and_verified_upstream() {
    if !require_root() {
        return;
    }
    let w = world(true);
    // The client asks for mcp.test (SNI) at 10.0.3.17: the gateway presents a leaf for that
    // name and verifies the upstream's certificate against the same name.
    let initialize = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"curl","version":"1"}}}"#;
    let c = w.post(
        "https://mcp.test:8443/mcp",
        "application/json",
        &[
            "--resolve",
            "mcp.test:8443:10.0.3.17",
            "--data-binary",
            initialize,
        ],
    );
    // curl trusts only the host CA and checks the name: a 200 means the leaf was for mcp.test.
    assert_eq!(c.status, 200, "{c:?}");
    assert!(c.body.contains("serverInfo"), "{c:?}");
}

#[test]
fn non_http_on_an_mcp_server_port_is_closed() {
    if !require_root() {
        return;
    }
    let w = world(true);
    // Raw bytes, neither TLS nor HTTP, to the MCP server's address: logged and closed.
    let r = client_in_cgroup(&w.ns, &w.cg, TARGET_V4, 8443, Family::V4).expect("client");
    assert!(
        r.echo.as_deref().unwrap_or("").is_empty(),
        "nothing may come back: {}",
        r.raw
    );
    let conn =
        w.gw.wait_connection(|c| {
            c["uid"] == NOBODY
                && c["outcome"]
                    .as_str()
                    .is_some_and(|o| o.contains("not HTTP"))
        })
        .unwrap_or_else(|| panic!("no refused connection in status: {}", w.gw.status()));
    assert_eq!(conn["server"], "mcp", "{conn}");
}

/// The sensitive values mcp_server.py's `records` tool returns.
const SECRETS: [&str; 6] = [
    "customer7@example.com",
    "4111 1111 1111 1111",
    "123-45-6789",
    "hunter7",
    "AKIAIOSFODNN7EXAMPLE",
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9",
];

#[test]
fn sensitive_values_are_masked_in_json_and_event_stream_answers() {
    if !require_root() {
        return;
    }
    let masking = r#"[masking]
detectors = ["email", "credit_card", "aws_access_key", "jwt", "ssn"]
fields    = ["password"]
style     = "redact"
arguments_of_tools = ["digest"]
pointers = [
  { tool = "records", pointer = "/structuredContent/count" },
  { tool = "other_*", pointer = "/structuredContent/records" },
]
"#;
    let w = world_with(true, "", masking, &["10.0.3.17:8445"]);
    // Arguments of `digest` are masked before they go upstream: the server hashes what it got.
    let digest = mcp_call_py(
        w.cg.cmd(&w.ns, Some(NOBODY), peers_venv_python()),
        "https://10.0.3.17:8443/mcp",
        Era::Session,
        Some(&w.host_ca),
        "digest",
        &serde_json::json!({"text": "mail bob@example.com now"}),
    )
    .expect("digest call");
    let sha256 = |s: &str| {
        let out = Command::new("sha256sum")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write as _;
                c.stdin.take().unwrap().write_all(s.as_bytes())?;
                c.wait_with_output()
            });
        String::from_utf8_lossy(&out.expect("sha256sum").stdout)
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_owned()
    };
    assert_eq!(
        digest["content"][0]["text"],
        sha256("mail [REDACTED:EMAIL] now"),
        "the server got the masked argument"
    );
    // 8443 answers tools/call as an event stream, 8445 as application/json; 1000 records
    // make the answer span many network reads.
    for url in ["https://10.0.3.17:8443/mcp", "https://10.0.3.17:8445/mcp"] {
        let call = |cmd, ca: &std::path::Path| {
            let n = serde_json::json!({"n": 1000});
            mcp_call_py(cmd, url, Era::Session, Some(ca), "records", &n)
                .unwrap_or_else(|e| panic!("{url}: {e:#}\n{}", w.gw.log()))
        };
        let direct = call(w.ns.cmd(peers_venv_python()), &w.test_ca.ca_pem);
        let via = call(
            w.cg.cmd(&w.ns, Some(NOBODY), peers_venv_python()),
            &w.host_ca,
        );
        let direct_text = direct.to_string();
        let via_text = via.to_string();
        for secret in SECRETS {
            assert!(direct_text.contains(secret), "the server did send {secret}");
            assert!(
                !via_text.contains(secret),
                "{url}: {secret} reached the client"
            );
        }
        // The envelope and the structure are intact: same records, masked fields.
        let rows = via["structuredContent"]["records"]
            .as_array()
            .unwrap_or_else(|| {
                panic!(
                    "no structuredContent.records: {}",
                    &via_text[..via_text.len().min(2000)]
                )
            });
        assert_eq!(rows.len(), 1000, "{url}");
        assert_eq!(rows[7]["id"], 7);
        assert_eq!(rows[7]["name"], "Customer 7");
        assert_eq!(rows[7]["email"], "[REDACTED:EMAIL]");
        assert_eq!(rows[7]["card"], "[REDACTED:CREDIT_CARD]");
        assert_eq!(rows[7]["password"], "[REDACTED:PASSWORD]");
        assert_eq!(via["isError"], false);
        // Pointer rules apply to the tool the answer is for, and only to it.
        assert_eq!(
            via["structuredContent"]["count"], "[REDACTED:POINTER]",
            "{url}"
        );
        assert_eq!(direct["structuredContent"]["count"], 1000);
        // The text content carries the same records as JSON text: masked as JSON, still JSON.
        let text = via["content"][0]["text"].as_str().expect("text content");
        let parsed: Value = serde_json::from_str(text).expect("masked text is still JSON");
        assert_eq!(parsed["records"][7]["ssn"], rows[7]["ssn"]);
    }
    let masked = &w.gw.status()["masking"]["masked"];
    assert!(
        masked["email"].as_u64().unwrap_or(0) >= 2 * 1000 * 2,
        "counts: {masked}"
    );
    // The log says where and what kind, never the value.
    let log = w.gw.log();
    for secret in SECRETS {
        assert!(!log.contains(secret), "{secret} in the gateway log");
    }
}

#[test]
fn oversized_and_unmaskable_answers_fail_closed() {
    if !require_root() {
        return;
    }
    let masking = "[masking]\ndetectors = [\"aws_access_key\"]\n";
    let w = world_with(true, "max_body = 65536", masking, &["10.0.3.17:8445"]);
    let call = |url: &str, tool: &str, args: Value| {
        mcp_call_py(
            w.cg.cmd(&w.ns, Some(NOBODY), peers_venv_python()),
            url,
            Era::Session,
            Some(&w.host_ca),
            tool,
            &args,
        )
    };
    // 256 KiB answers against a 64 KiB limit, as an event stream and as JSON: refused.
    let line = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-";
    for url in ["https://10.0.3.17:8443/mcp", "https://10.0.3.17:8445/mcp"] {
        match call(url, "big", serde_json::json!({"n": 256})) {
            Ok(v) => {
                assert_eq!(
                    v["isError"],
                    true,
                    "{url}: an oversized answer must not arrive: {}",
                    &v.to_string()[..200]
                );
                assert!(
                    !v.to_string().contains(line),
                    "{url}: the oversized content reached the client"
                );
            }
            Err(e) => assert!(!format!("{e:#}").contains(line), "{url}: {e:#}"),
        }
        // A small call on a new session still works: only that answer was refused.
        let ok = call(url, "echo", serde_json::json!({"text": "still here"}))
            .expect("small call after a refused one");
        assert_eq!(ok["content"][0]["text"], "still here");
    }
    // JSON text nested deeper than masking may walk cannot be checked: withheld, not passed.
    let err = call(
        "https://10.0.3.17:8443/mcp",
        "nested",
        serde_json::json!({"depth": 200}),
    )
    .expect_err("an answer that could not be masked must not arrive");
    let err = format!("{err:#}");
    assert!(err.contains("could not mask"), "{err}");
    assert!(!err.contains("AKIAIOSFODNN7EXAMPLE"), "{err}");
    w.gateway_alive();
}

impl World {
    fn sessions_json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--output", "json", "sessions"];
        all.extend_from_slice(args);
        let out = self.gw.cli_ok(&all);
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("sessions {args:?}: {e}"))
    }

    /// SQL on the recording, as someone with write access to the file would run it.
    fn tamper(&self, sql: &str) {
        let db = self.gw.dir().join("state/recording.db");
        let script = "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.executescript(sys.argv[2]); c.commit()";
        let out = Command::new("/usr/bin/python3")
            .args(["-c", script])
            .arg(&db)
            .arg(sql)
            .output()
            .expect("python3");
        assert!(
            out.status.success(),
            "tamper failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn sessions_are_recorded_in_order_verified_and_tamper_evident() {
    if !require_root() {
        return;
    }
    let w = world(true);
    let direct = w.direct_py(
        "https://10.0.3.17:8443/mcp",
        McpTransport::StreamableHttp,
        Era::Session,
    );
    let via = w.via_gateway_py(
        "https://10.0.3.17:8443/mcp",
        McpTransport::StreamableHttp,
        Era::Session,
    );
    assert_eq!(via, direct);

    let sessions = w.sessions_json(&["list", "--server", "mcp"]);
    let sessions = sessions.as_array().expect("list");
    assert!(!sessions.is_empty(), "nothing recorded");
    assert!(
        sessions
            .iter()
            .all(|s| s["uid"] == NOBODY && s["pid"].is_u64()),
        "{sessions:?}"
    );
    // The session that carried the echo call: request and answer both recorded, in order,
    // the answer tied to its tool.
    let echo = sessions
        .iter()
        .map(|s| w.sessions_json(&["show", s["id"].as_str().unwrap()]))
        .find(|v| {
            v["events"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["tool"] == "echo" && e["direction"] == "c2s")
        })
        .expect("a session with the echo call");
    let events = echo["events"].as_array().unwrap();
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["seq"], i as u64 + 1, "contiguous sequence: {e}");
    }
    let call = events
        .iter()
        .position(|e| e["tool"] == "echo" && e["direction"] == "c2s")
        .unwrap();
    let answer = events
        .iter()
        .position(|e| e["tool"] == "echo" && e["direction"] == "s2c")
        .expect("answer recorded");
    assert!(answer > call, "answer after call");
    assert_eq!(events[answer]["decision"], "forwarded");
    assert!(
        events[answer]["upstream_latency_us"].as_u64() > Some(0),
        "latency recorded: {}",
        events[answer]
    );
    assert!(events[answer]["payload"]
        .to_string()
        .contains(ECHO_TEXT.split(':').next().unwrap()));
    let id = echo["session"]["id"].as_str().unwrap().to_owned();

    let verify = w.sessions_json(&["verify", "--all"]);
    assert!(
        verify.as_array().unwrap().iter().all(|r| r["ok"] == true),
        "{verify}"
    );
    let jsonl =
        w.gw.cli_ok(&["sessions", "export", &id, "--format", "jsonl"])
            .stdout;
    assert_eq!(
        String::from_utf8_lossy(&jsonl).lines().count(),
        events.len()
    );
    let html = String::from_utf8_lossy(
        &w.gw
            .cli_ok(&["sessions", "export", &id, "--format", "html"])
            .stdout,
    )
    .into_owned();
    assert!(
        html.contains("echo") && html.contains("</html>"),
        "html export"
    );
    let replay =
        w.gw.cli_ok(&["sessions", "replay", &id, "--speed", "1000"])
            .stdout;
    assert_eq!(
        String::from_utf8_lossy(&replay).lines().count(),
        events.len()
    );

    // Tampering with the file is detected, naming where.
    let seq = events[answer]["seq"].as_u64().unwrap();
    w.tamper(&format!("UPDATE events SET payload = replace(payload, 'hello', 'HELLO') WHERE session_id = '{id}' AND seq = {seq}"));
    let out = w.gw.cli(["sessions", "verify", &id]);
    assert!(!out.status.success(), "verify must fail after an edit");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("seq {seq}")),
        "names the edited event: {text}"
    );
    w.tamper(&format!(
        "DELETE FROM events WHERE session_id = '{id}' AND seq = 1"
    ));
    let out = w.gw.cli(["--output", "json", "sessions", "verify", &id]);
    assert!(!out.status.success(), "verify must fail after a deletion");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains("seq 1"),
        "names the deleted event: {report}"
    );
}

#[test]
fn sigkill_keeps_what_was_recorded_and_marks_open_sessions_interrupted() {
    if !require_root() {
        return;
    }
    let mut w = world(true);
    // A second gateway on the same state dir after the first is killed.
    let state = w.gw.dir().join("state");
    let config =
        config(&w.cg, &w.test_ca, true, "").replace("@DIR@/state", &state.display().to_string());
    let first = w.via_gateway_py(
        "https://10.0.3.17:8443/mcp",
        McpTransport::StreamableHttp,
        Era::Session,
    );
    assert_python_scenario(&first);
    // A call still streaming when the gateway dies.
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"slow_count","arguments":{"n":100,"delay":0.1},"_meta":{"progressToken":1,"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"curl","version":"1"},"io.modelcontextprotocol/clientCapabilities":{}}}}"#;
    let ca = w.host_ca.display().to_string();
    let mut curl =
        w.cg.cmd(&w.ns, None, "curl")
            .args([
                "-sS",
                "-N",
                "--max-time",
                "30",
                "--cacert",
                &ca,
                "-X",
                "POST",
            ])
            .args([
                "-H",
                "content-type: application/json",
                "-H",
                "accept: application/json, text/event-stream",
            ])
            .args([
                "-H",
                "mcp-protocol-version: 2026-07-28",
                "-H",
                "mcp-method: tools/call",
                "-H",
                "mcp-name: slow_count",
            ])
            .args(["--data-binary", body, "https://10.0.3.17:8443/mcp"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("curl");
    let open = wait_for(std::time::Duration::from_secs(10), || {
        let list = w.sessions_json(&["list"]);
        list.as_array()?
            .iter()
            .find(|s| s["how_ended"].is_null() && s["events"].as_u64() >= Some(2))
            .cloned()
    })
    .expect("an open session with events");
    // What `list` showed was made durable first; all of it must survive the kill.
    let before = w.sessions_json(&["list"]);
    w.gw.kill9();
    let _ = curl.wait();

    let second = Gateway::start(&w.ns, Some(&w.cg), &config).expect("restarted gateway");
    let out = second.cli_ok(&["--output", "json", "sessions", "list"]);
    let after: Value = serde_json::from_slice(&out.stdout).unwrap();
    for s in before.as_array().unwrap() {
        let now = after
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["id"] == s["id"])
            .unwrap_or_else(|| panic!("session {} lost", s["id"]));
        assert!(
            now["events"].as_u64() >= s["events"].as_u64(),
            "events lost in {}: {s} → {now}",
            s["id"]
        );
    }
    let reopened = after
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == open["id"])
        .unwrap();
    assert_eq!(reopened["how_ended"], "interrupted", "{reopened}");
    let verify = second.cli(["--output", "json", "sessions", "verify", "--all"]);
    assert!(
        verify.status.success(),
        "chains verify after the crash: {}",
        String::from_utf8_lossy(&verify.stdout)
    );
}
