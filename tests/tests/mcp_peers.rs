//! Proves the real MCP peers work with no gateway in between, so a failure in a gateway
//! test is not a broken peer: the Python SDK server (TLS from a test CA, both transports),
//! the Python SDK client in both protocol eras, the TypeScript SDK client, and
//! server-everything.

use mcpgw_tests::mcp::*;
use mcpgw_tests::*;

#[test]
fn python_server_with_python_and_ts_clients() {
    if !require_root() {
        return;
    }
    let ns = Netns::new().expect("netns");
    let tmp = TempDir::new().expect("temp dir");
    let ca =
        TestCa::new(tmp.path(), &["mcp.test", TARGET_V4, TARGET_V6, "127.0.0.1"]).expect("test CA");
    let ca_pem = Some(ca.ca_pem.as_path());

    let _http = mcp_server(
        &ns,
        "10.0.3.17:8443",
        McpTransport::StreamableHttp,
        Some(&ca),
    )
    .expect("streamable HTTP server");
    let _sse = mcp_server(&ns, "10.0.3.17:8444", McpTransport::Sse, Some(&ca)).expect("SSE server");
    let _v6 = mcp_server(
        &ns,
        "[fd00::17]:8443",
        McpTransport::StreamableHttp,
        Some(&ca),
    )
    .expect("IPv6 server");
    let http = "https://10.0.3.17:8443/mcp";
    let sse = "https://10.0.3.17:8444/sse";

    let py = |url: &str, t, era| {
        mcp_client_py(ns.cmd(peers_venv_python()), url, t, era, ca_pem)
            .unwrap_or_else(|e| panic!("python client {url} {era:?}: {e:#}"))
    };

    // Handshake era over streamable HTTP; the report is stable run to run, so a run through
    // the gateway can be compared with a direct one for equality.
    let session = py(http, McpTransport::StreamableHttp, Era::Session);
    assert_python_scenario(&session);
    assert_eq!(session["protocol_version"], "2025-11-25", "{session}");
    assert_eq!(
        py(http, McpTransport::StreamableHttp, Era::Session),
        session
    );

    // 2026-07-28 stateless era, pinned and negotiated (server/discover) on the same endpoint.
    for era in [Era::Stateless, Era::Auto] {
        let v = py(http, McpTransport::StreamableHttp, era);
        assert_python_scenario(&v);
        assert_eq!(v["protocol_version"], "2026-07-28", "{v}");
    }

    // Legacy HTTP+SSE transport (handshake era only).
    let v = py(sse, McpTransport::Sse, Era::Session);
    assert_python_scenario(&v);

    // IPv6, and TLS verification by SAN IP.
    let v = py(
        "https://[fd00::17]:8443/mcp",
        McpTransport::StreamableHttp,
        Era::Session,
    );
    assert_python_scenario(&v);

    // Without the test CA the client must refuse the server.
    let err = mcp_client_py(
        ns.cmd(peers_venv_python()),
        http,
        McpTransport::StreamableHttp,
        Era::Session,
        None,
    )
    .expect_err("untrusted certificate accepted");
    assert!(
        format!("{err:#}").contains("CERTIFICATE_VERIFY_FAILED"),
        "{err:#}"
    );

    // TypeScript SDK client, both transports.
    for (url, t) in [
        (http, McpTransport::StreamableHttp),
        (sse, McpTransport::Sse),
    ] {
        let v = mcp_client_ts(ns.cmd(node_bin()), url, t, TsScenario::Python, ca_pem)
            .unwrap_or_else(|e| panic!("ts client {url}: {e:#}"));
        assert_python_scenario(&v);
        assert_eq!(v["protocol_version"], "2025-11-25", "{v}");
    }

    // Clients can run unprivileged inside a cgroup, as the gateway tests run them.
    let cg = Cgroup::new().expect("cgroup");
    let v = mcp_client_py(
        cg.cmd(&ns, Some(NOBODY), peers_venv_python()),
        http,
        McpTransport::StreamableHttp,
        Era::Stateless,
        ca_pem,
    )
    .expect("python client as nobody");
    assert_python_scenario(&v);
    let v = mcp_client_ts(
        cg.cmd(&ns, Some(NOBODY), node_bin()),
        http,
        McpTransport::StreamableHttp,
        TsScenario::Python,
        ca_pem,
    )
    .expect("ts client as nobody");
    assert_python_scenario(&v);
}

#[test]
fn server_everything_with_ts_client() {
    if !require_root() {
        return;
    }
    let ns = Netns::new().expect("netns");
    let _http = everything_server(&ns, McpTransport::StreamableHttp, 3001)
        .expect("everything (streamableHttp)");
    let _sse = everything_server(&ns, McpTransport::Sse, 3002).expect("everything (sse)");

    for (url, t) in [
        ("http://10.0.3.17:3001/mcp", McpTransport::StreamableHttp),
        ("http://10.0.3.17:3002/sse", McpTransport::Sse),
    ] {
        let v = mcp_client_ts(ns.cmd(node_bin()), url, t, TsScenario::Everything, None)
            .unwrap_or_else(|e| panic!("ts client {url}: {e:#}"));
        assert_everything_scenario(&v);
        assert_eq!(v["server_name"], "mcp-servers/everything", "{v}");
    }
}
