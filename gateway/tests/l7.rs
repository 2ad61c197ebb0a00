//! The L7 path in process, without root or eBPF: the gateway runs in explicit mode inside the
//! test (listener on port 0), the upstream is the official Python MCP SDK server on loopback
//! (`tests/peers/mcp_server.py`, from the venv `cargo xtask setup` installs), and the client
//! is plain HTTP/1.1. Fast checks of what http does with each request: forwarded, refused,
//! held.

use std::{
    io::{BufRead as _, BufReader},
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::Duration,
};

use bytes::Bytes;
use gateway::{
    approval::Approver,
    daemon::{self, Running},
};
use http_body_util::{BodyExt as _, Full};
use serde_json::{json, Value};

/// The policy every test runs under: `run_sql` denied, `add` held for an `sre-leads`
/// approval, everything else allowed.
const RULES: &str = r#"
[[policy.rules]]
id     = "no-sql"
tools  = ["run_sql"]
action = "deny"

[[policy.rules]]
id        = "add-needs-approval"
tools     = ["add"]
action    = "approve"
approvers = ["sre-leads"]

[[policy.rules]]
id     = "allow-rest"
action = "allow"
"#;

/// What the gateway reads of a request body at most, in these tests.
const MAX_BODY: usize = 64 * 1024;

/// `mcp_server.py` on 127.0.0.1, killed when dropped.
struct McpServer {
    child: Child,
    port: u16,
}

impl McpServer {
    fn start() -> Self {
        let python = mcpgw_tests::mcp::peers_venv_python();
        assert!(
            python.exists(),
            "{} is missing: install the MCP test peers with `cargo xtask setup`",
            python.display()
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut child = Command::new(python)
            .arg(mcpgw_tests::mcp::mcp_scripts_dir().join("mcp_server.py"))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--transport", "streamable-http", "--json-response"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mcp_server.py");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let ready = lines.any(|l| l.is_ok_and(|l| l.trim() == "ready"));
        assert!(ready, "mcp_server.py exited before it was ready");
        Self { child, port }
    }
}

impl Drop for McpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The gateway in this process, in front of `upstream`.
struct Gateway {
    running: Option<Running>,
    addr: SocketAddr,
    dir: PathBuf,
}

impl Gateway {
    async fn start(upstream: &McpServer) -> Self {
        Self::in_front_of(upstream.port).await
    }

    /// A gateway in front of whatever listens on 127.0.0.1:`port`.
    async fn in_front_of(port: u16) -> Self {
        Self::with(port, "").await
    }

    /// [`Gateway::in_front_of`] with `server` added to the `[[servers]]` entry.
    async fn with(port: u16, server: &str) -> Self {
        Self::with_upstream(&format!("http://127.0.0.1:{port}"), port, server).await
    }

    /// A gateway whose server entry forwards to `upstream` (`port` names its test dir).
    async fn with_upstream(upstream: &str, port: u16, server: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("mcpgw-l7-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("test dir");
        let config = format!(
            r#"[gateway]
state_dir    = "{dir}/state"
admin_socket = "{dir}/admin.sock"
max_body     = {MAX_BODY}
metrics      = "off"

[intercept]
mode = "explicit"

[[servers]]
name     = "py"
listen   = "127.0.0.1:0"
upstream = "{upstream}"
tls      = "plaintext"
{server}

[approval]
hold = "20s"
{RULES}"#,
            dir = dir.display(),
        );
        let config = gateway::config::parse_config(&config).expect("config");
        let running = daemon::start(config, None).await.expect("gateway starts");
        let addr = running.listeners()[0];
        assert_ne!(addr.port(), 0, "the bound port is reported");
        Self {
            running: Some(running),
            addr,
            dir,
        }
    }

    fn running(&self) -> &Running {
        self.running.as_ref().expect("running")
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            running.stop();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

struct Answer {
    status: u16,
    headers: http::HeaderMap,
    body: Bytes,
}

impl Answer {
    /// The JSON-RPC answer: the JSON body, or the message event of an event stream (a held
    /// call is answered as a stream that carries keep-alives until the decision).
    fn message(&self) -> Value {
        let event_stream = self
            .headers
            .get("content-type")
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        if !event_stream {
            return self.json();
        }
        let text = String::from_utf8_lossy(&self.body);
        text.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
            .find(|v| v.get("id").is_some())
            .unwrap_or_else(|| panic!("no JSON-RPC answer in the event stream: {text}"))
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

/// One HTTP/1.1 POST to the gateway, on a connection of its own.
async fn post(addr: SocketAddr, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Answer {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let mut request = http::Request::post("/mcp")
        .header("host", format!("127.0.0.1:{}", addr.port()))
        .header("accept", "application/json, text/event-stream");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Full::new(body.into())).expect("request");
    let response = send.send_request(request).await.expect("response");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    Answer {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    }
}

const JSON: (&str, &str) = ("content-type", "application/json");

/// An MCP session through the gateway (initialize, initialized); its id for later calls.
async fn session(addr: SocketAddr) -> String {
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "l7-test", "version": "1"}}});
    let answer = post(addr, &[JSON], init.to_string()).await;
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    assert!(
        answer.json()["result"]["serverInfo"].is_object(),
        "{}",
        answer.json()
    );
    let id = answer
        .headers
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .expect("mcp-session-id")
        .to_owned();
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let answer = post(
        addr,
        &[
            JSON,
            ("mcp-session-id", &id),
            ("mcp-protocol-version", "2025-11-25"),
        ],
        initialized.to_string(),
    )
    .await;
    assert_eq!(answer.status, 202);
    id
}

async fn call(addr: SocketAddr, session: &str, id: u64, tool: &str, arguments: Value) -> Answer {
    let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                      "params": {"name": tool, "arguments": arguments}});
    post(
        addr,
        &[
            JSON,
            ("mcp-session-id", session),
            ("mcp-protocol-version", "2025-11-25"),
        ],
        body.to_string(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_call_reaches_the_server_and_its_answer_comes_back() {
    let server = McpServer::start();
    let gw = Gateway::start(&server).await;
    let session = session(gw.addr).await;
    let answer = call(
        gw.addr,
        &session,
        1,
        "echo",
        json!({"text": "through the gateway"}),
    )
    .await;
    assert_eq!(answer.status, 200);
    let v = answer.json();
    assert_eq!(v["id"], 1);
    assert_eq!(
        v["result"]["content"][0]["text"], "through the gateway",
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_call_is_answered_by_the_gateway_with_its_rule() {
    let server = McpServer::start();
    let gw = Gateway::start(&server).await;
    let session = session(gw.addr).await;
    let answer = call(gw.addr, &session, 7, "run_sql", json!({"sql": "select 1"})).await;
    assert_eq!(answer.status, 200);
    let v = answer.json();
    assert_eq!(v["id"], 7);
    assert_eq!(
        v["error"]["code"],
        gateway::mcp::jsonrpc::code::GATEWAY_REFUSED,
        "{v}"
    );
    assert_eq!(v["error"]["data"]["rule"], "no-sql", "{v}");
    assert!(v.get("result").is_none(), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_are_refused_before_anything_is_forwarded() {
    let server = McpServer::start();
    let gw = Gateway::start(&server).await;

    let bad_json = post(gw.addr, &[JSON], "{\"jsonrpc\": \"2.0\", \"id\": 1, ").await;
    assert_eq!(bad_json.status, 400);
    assert_eq!(
        bad_json.json()["error"]["code"],
        gateway::mcp::jsonrpc::code::PARSE_ERROR
    );

    let ping = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}).to_string();
    let text = post(gw.addr, &[("content-type", "text/plain")], ping.clone()).await;
    assert_eq!(text.status, 415);
    assert_eq!(
        text.json()["error"]["code"],
        gateway::mcp::jsonrpc::code::INVALID_REQUEST
    );

    let padding = "x".repeat(MAX_BODY);
    let big = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                     "params": {"name": "echo", "arguments": {"text": padding}}});
    let too_large = post(gw.addr, &[JSON], big.to_string()).await;
    assert_eq!(too_large.status, 413);
    assert_eq!(
        too_large.json()["error"]["code"],
        gateway::mcp::jsonrpc::code::TOO_LARGE
    );
}

/// Waits (bounded) for the pending approval of `tool`; its id.
async fn pending(running: &Running, tool: &str) -> String {
    for _ in 0..200 {
        let list = running.approvals().list(false).expect("approvals");
        if let Some(a) = list.iter().find(|a| a.tool.as_deref() == Some(tool)) {
            return a.id.clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no pending approval for `{tool}`");
}

fn sre_lead(name: &str) -> Approver {
    Approver {
        name: name.into(),
        groups: vec!["sre-leads".into()],
        names: vec![format!("unix:{name}")],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_call_waits_for_approvers_and_goes_through_once_approved() {
    let server = McpServer::start();
    let gw = Gateway::start(&server).await;
    let session = session(gw.addr).await;
    let addr = gw.addr;
    let held =
        tokio::spawn(async move { call(addr, &session, 3, "add", json!({"a": 2, "b": 40})).await });
    let id = pending(gw.running(), "add").await;
    assert!(
        !held.is_finished(),
        "the call waits while its approval is pending"
    );
    gw.running()
        .approvals()
        .approve(&id, &sre_lead("carol"), None)
        .expect("approve");
    let answer = tokio::time::timeout(Duration::from_secs(20), held)
        .await
        .expect("answered once approved")
        .expect("task");
    let v = answer.message();
    assert_eq!(v["id"], 3);
    assert_eq!(v["result"]["content"][0]["text"], "42", "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_call_that_is_denied_gets_the_approvers_reason() {
    let server = McpServer::start();
    let gw = Gateway::start(&server).await;
    let session = session(gw.addr).await;
    let addr = gw.addr;
    let held =
        tokio::spawn(async move { call(addr, &session, 4, "add", json!({"a": 1, "b": 1})).await });
    let id = pending(gw.running(), "add").await;
    gw.running()
        .approvals()
        .deny(&id, &sre_lead("dave"), "not today".into())
        .expect("deny");
    let answer = tokio::time::timeout(Duration::from_secs(20), held)
        .await
        .expect("answered once denied")
        .expect("task");
    let v = answer.message();
    assert_eq!(v["id"], 4);
    assert_eq!(
        v["error"]["code"],
        gateway::mcp::jsonrpc::code::GATEWAY_REFUSED,
        "{v}"
    );
    let message = v["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("dave") && message.contains("not today"),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_sent_as_a_notification_is_refused_not_forwarded() {
    let server = McpServer::start();
    let gw = Gateway::start(&server).await;
    let session = session(gw.addr).await;
    // No id: a JSON-RPC notification, yet the server would run the tool.
    let body = json!({"jsonrpc": "2.0", "method": "tools/call",
                      "params": {"name": "run_sql", "arguments": {"sql": "drop table t"}}});
    let answer = post(
        gw.addr,
        &[
            JSON,
            ("mcp-session-id", &session),
            ("mcp-protocol-version", "2025-11-25"),
        ],
        body.to_string(),
    )
    .await;
    assert_eq!(
        answer.status,
        403,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    let v = answer.json();
    assert_eq!(
        v["error"]["data"]["rule"], "builtin:request-without-id",
        "{v}"
    );
}

/// One request with another method to the gateway.
async fn request(addr: SocketAddr, method: &str, headers: &[(&str, &str)]) -> Answer {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let mut request = http::Request::builder()
        .method(method)
        .uri("/mcp")
        .header("host", format!("127.0.0.1:{}", addr.port()));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = send
        .send_request(request.body(Full::new(Bytes::new())).expect("request"))
        .await
        .expect("response");
    let (parts, body) = response.into_parts();
    Answer {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: body.collect().await.expect("body").to_bytes(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn methods_that_carry_no_mcp_are_refused() {
    let server = McpServer::start();
    let gw = Gateway::start(&server).await;
    for (method, headers) in [
        ("PUT", &[JSON][..]),
        ("PATCH", &[JSON][..]),
        ("GET", &[("accept", "application/json")][..]),
        ("DELETE", &[][..]),
        ("OPTIONS", &[][..]),
    ] {
        let answer = request(gw.addr, method, headers).await;
        assert_eq!(
            answer.status,
            405,
            "{method}: {}",
            String::from_utf8_lossy(&answer.body)
        );
        assert_eq!(
            answer.json()["error"]["code"],
            gateway::mcp::jsonrpc::code::INVALID_REQUEST,
            "{method}"
        );
    }
}

/// A malicious upstream (a stand-in written here: no MCP SDK serves malformed answers on
/// purpose): answers every request with `body` in `content_type`.
async fn evil_upstream(content_type: &'static str, body: &'static [u8]) -> u16 {
    answering_upstream(200, vec![("content-type", content_type)], body, None).await
}

/// An upstream answering every request with `status`, `headers` and `body`; the first
/// request's `accept-encoding` (or "none") goes to `seen`.
async fn answering_upstream(
    status: u16,
    headers: Vec<(&'static str, &'static str)>,
    body: &'static [u8],
    seen: Option<tokio::sync::oneshot::Sender<String>>,
) -> u16 {
    let seen = Arc::new(std::sync::Mutex::new(seen));
    let headers = Arc::new(headers);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (seen, headers) = (seen.clone(), headers.clone());
            let service = hyper::service::service_fn(move |req: http::Request<_>| {
                let headers = headers.clone();
                if let Some(tx) = seen.lock().unwrap().take() {
                    let encoding = req
                        .headers()
                        .get("accept-encoding")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("none")
                        .to_owned();
                    let _ = tx.send(encoding);
                }
                async move {
                    let mut response = http::Response::builder().status(status);
                    for (name, value) in headers.iter() {
                        response = response.header(*name, *value);
                    }
                    let response = response
                        .body(Full::new(Bytes::from_static(body)))
                        .expect("response");
                    Ok::<_, std::convert::Infallible>(response)
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), service),
            );
        }
    });
    port
}

/// What `tools/list` shows through the gateway when the upstream lists `run_sql`, which the
/// policy denies (the gateway filters it out of every list it can check).
async fn listed_through(content_type: &'static str, body: &'static [u8]) -> Answer {
    let port = evil_upstream(content_type, body).await;
    let gw = Gateway::in_front_of(port).await;
    let list = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/list"});
    post(gw.addr, &[JSON], list.to_string()).await
}

const TOOLS: &[u8] = br#"{"jsonrpc":"2.0","id":5,"result":{"tools":[{"name":"echo","inputSchema":{}},{"name":"run_sql","inputSchema":{}}]}}"#;

fn tool_names(v: &Value) -> Vec<String> {
    v["result"]["tools"]
        .as_array()
        .map(|tools| {
            tools
                .iter()
                .filter_map(|t| t["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_in_a_content_type_the_gateway_cannot_check_is_refused() {
    // Lenient clients parse these as JSON-RPC.
    for content_type in ["application/json-rpc", "text/plain;x=application/json"] {
        let answer = listed_through(content_type, TOOLS).await;
        let text = String::from_utf8_lossy(&answer.body).into_owned();
        assert_eq!(answer.status, 502, "{content_type}: {text}");
        assert_eq!(
            answer.json()["error"]["code"],
            gateway::mcp::jsonrpc::code::UPSTREAM_FAILED,
            "{text}"
        );
        assert!(!text.contains("run_sql"), "{text}");
    }
    // The same list as JSON is checked: the denied tool is filtered out.
    let answer = listed_through("application/json", TOOLS).await;
    assert_eq!(tool_names(&answer.json()), ["echo"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_byte_order_mark_does_not_hide_an_event_from_the_chain() {
    const STREAM: &[u8] = b"\xEF\xBB\xBFdata: {\"jsonrpc\":\"2.0\",\"id\":5,\"result\":{\"tools\":[{\"name\":\"echo\",\"inputSchema\":{}},{\"name\":\"run_sql\",\"inputSchema\":{}}]}}\n\n";
    let answer = listed_through("text/event-stream", STREAM).await;
    assert_eq!(answer.status, 200);
    let v = answer.message();
    assert_eq!(
        tool_names(&v),
        ["echo"],
        "the event behind the BOM passed unchecked: {v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_is_closed_not_relayed_even_with_non_http_pass() {
    // The upstream counts the connections it gets.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let reached = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = reached.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(tcp);
        }
    });
    let gw = Gateway::with(port, "non_http = \"pass\"").await;
    let mut tcp = tokio::net::TcpStream::connect(gw.addr)
        .await
        .expect("connect");
    // Say nothing; the gateway gives up after its first-bytes timeout (10 s).
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::io::AsyncReadExt::read(&mut tcp, &mut buf),
    )
    .await
    .expect("the gateway closes a silent connection");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert_eq!(
        reached.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "a silent client was relayed to the upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stalls_in_its_headers_is_closed() {
    let server = McpServer::start();
    let gw = Gateway::start(&server).await;
    let mut tcp = tokio::net::TcpStream::connect(gw.addr)
        .await
        .expect("connect");
    // Half a request head, then nothing: the connection must not be held forever.
    tokio::io::AsyncWriteExt::write_all(&mut tcp, b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 256];
    let read = tokio::time::timeout(
        Duration::from_secs(40),
        tokio::io::AsyncReadExt::read(&mut tcp, &mut buf),
    )
    .await
    .expect("the gateway closes a connection whose headers stall");
    // Closed, or answered with an error status and then closed.
    match read {
        Ok(0) | Err(_) => {}
        Ok(n) => assert!(
            String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 4"),
            "{}",
            String::from_utf8_lossy(&buf[..n])
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_upstream_gets_tls_even_from_a_plaintext_server_entry() {
    // The upstream notes the first byte it receives: 0x16 starts a TLS handshake.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (first_tx, first_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        if let Ok((mut tcp, _)) = listener.accept().await {
            let mut byte = [0u8; 1];
            let _ = tokio::io::AsyncReadExt::read_exact(&mut tcp, &mut byte).await;
            let _ = first_tx.send(byte[0]);
        }
    });
    let gw = Gateway::with_upstream(&format!("https://127.0.0.1:{port}"), port, "").await;
    let ping = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"});
    let post = tokio::spawn(post(gw.addr, &[JSON], ping.to_string()));
    let first = tokio::time::timeout(Duration::from_secs(10), first_rx)
        .await
        .expect("the upstream was dialed")
        .expect("first byte");
    assert_eq!(
        first, 0x16,
        "the gateway spoke cleartext to an https upstream"
    );
    let answer = post.await.expect("task");
    assert_eq!(answer.status, 502, "no TLS server there: the call fails");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_answers_are_refused_and_never_asked_for() {
    for status in [200, 500] {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let port = answering_upstream(
            status,
            vec![
                ("content-type", "application/json"),
                ("content-encoding", "gzip"),
            ],
            b"\x1f\x8b\x08\x00compressed",
            Some(tx),
        )
        .await;
        let gw = Gateway::in_front_of(port).await;
        let list = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/list"});
        let answer = post(
            gw.addr,
            &[JSON, ("accept-encoding", "gzip, br")],
            list.to_string(),
        )
        .await;
        assert_eq!(answer.status, 502, "status {status}");
        let v = answer.json();
        assert_eq!(
            v["error"]["code"],
            gateway::mcp::jsonrpc::code::UPSTREAM_FAILED,
            "{v}"
        );
        assert_eq!(
            rx.await.expect("request seen"),
            "none",
            "Accept-Encoding was forwarded"
        );
    }
}
