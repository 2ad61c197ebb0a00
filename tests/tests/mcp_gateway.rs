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

fn config(cg: &Cgroup, test_ca: &TestCa, verify_upstream: bool) -> String {
    let ca_file = if verify_upstream {
        format!("ca_file = {:?}", test_ca.ca_pem.display().to_string())
    } else {
        String::new()
    };
    format!(
        r#"[gateway]
state_dir    = "@DIR@/state"
admin_socket = "@DIR@/admin.sock"
listen       = ["127.0.0.1:15001", "[::1]:15001"]
fail_mode    = "open"

[intercept]
mode   = "ebpf"
cgroup = "{cgroup}"
pin_dir = "/sys/fs/bpf/{name}"

[[servers]]
name  = "mcp"
match = ["10.0.3.17:8443", "10.0.3.17:8444", "[fd00::17]:8443"]
{ca_file}

[[servers]]
name  = "everything"
tls   = "plaintext"
match = ["10.0.3.17:3001", "10.0.3.17:3002"]
"#,
        cgroup = cg.path_in_hierarchy(),
        name = cg.name(),
    )
}

fn world(verify_upstream: bool) -> World {
    let ns = Netns::new().expect("netns");
    let cg = Cgroup::new().expect("cgroup");
    let tmp = TempDir::new().expect("temp dir");
    let test_ca = TestCa::new(tmp.path(), &[TARGET_V4, TARGET_V6]).expect("test CA");
    let servers = vec![
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
    let gw =
        Gateway::start(&ns, Some(&cg), &config(&cg, &test_ca, verify_upstream)).expect("gateway");
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
