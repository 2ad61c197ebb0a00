//! Real MCP peers for the end-to-end tests: the official Python SDK server and client
//! (`peers/mcp_server.py`, `peers/mcp_client.py`), the TypeScript SDK client
//! (`peers/mcp_client.mjs`), `@modelcontextprotocol/server-everything`, and a test CA.
//!
//! The SDKs are installed by `cargo xtask setup` into `<target dir>/peers/` (a venv and a
//! `node_modules`); `MCPGW_PEERS_DIR` overrides that location. Everything there and every
//! script written here is world-readable, so clients can run as [`crate::NOBODY`].
//!
//! Clients print one JSON line of normalized results (see the scripts' headers): compare a
//! direct run with a run through the gateway for equality, or check it with
//! [`assert_python_scenario`] / [`assert_everything_scenario`].

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{mpsc, OnceLock};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

use crate::{run, Netns, Proc};

/// Bytes `big(512)` returns (the scenario's large response).
pub const BIG_BYTES: u64 = 512 * 1024;
/// The text the scenarios echo (non-ASCII on purpose).
pub const ECHO_TEXT: &str = "hello through mcpgw: ünïcödé ✓";

// ---------------------------------------------------------------------------
// Where the peers live
// ---------------------------------------------------------------------------

/// `<target dir>/peers` (honouring CARGO_TARGET_DIR), or `MCPGW_PEERS_DIR`.
pub fn peers_install_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("MCPGW_PEERS_DIR") {
        return PathBuf::from(p);
    }
    crate::target_dir().join("peers")
}

fn require(p: PathBuf) -> Result<PathBuf> {
    if p.exists() {
        Ok(p)
    } else {
        bail!(
            "{} is missing: install the MCP test peers with `cargo xtask setup`",
            p.display()
        )
    }
}

/// The venv interpreter that has the `mcp` SDK (a symlink to the system python3, so
/// nobody can run it).
pub fn peers_venv_python() -> PathBuf {
    peers_install_dir().join("venv/bin/python")
}

/// Node.js: `MCPGW_TEST_NODE`, else /usr/bin/node or /usr/local/bin/node, else `node`.
pub fn node_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("MCPGW_TEST_NODE") {
        return PathBuf::from(p);
    }
    for p in ["/usr/bin/node", "/usr/local/bin/node"] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    PathBuf::from("node")
}

/// `<peers>/node`, holding `node_modules` and (written here) `mcp_client.mjs`: ESM resolves
/// packages from the script's own directory, so the script must sit next to them.
pub fn node_peers_dir() -> Result<&'static Path> {
    static DIR: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = peers_install_dir().join("node");
        require(dir.join("node_modules")).map_err(|e| e.to_string())?;
        // ESM resolves packages from the script's own directory: beside node_modules.
        for (name, text) in [
            ("mcp_client.mjs", include_str!("../peers/mcp_client.mjs")),
            (
                "oidc_provider.mjs",
                include_str!("../peers/oidc_provider.mjs"),
            ),
            ("oidc_token.mjs", include_str!("../peers/oidc_token.mjs")),
            ("bad_tokens.mjs", include_str!("../peers/bad_tokens.mjs")),
        ] {
            install_script(&dir, name, text).map_err(|e| format!("{e:#}"))?;
        }
        Ok(dir)
    })
    .as_deref()
    .map_err(|e| anyhow!("{e}"))
}

/// The Python peer scripts and `make_test_ca.sh`, written world-readable to a fixed
/// temp dir (the checkout may be private to root).
pub fn mcp_scripts_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join("mcpgw-tests-mcp-peers");
        fs::create_dir_all(&dir).expect("create mcp peers dir");
        set_mode(&dir, 0o755);
        for (name, text) in [
            ("mcp_server.py", include_str!("../peers/mcp_server.py")),
            ("mcp_client.py", include_str!("../peers/mcp_client.py")),
            ("make_test_ca.sh", include_str!("../peers/make_test_ca.sh")),
            ("sigv4_gate.py", include_str!("../peers/sigv4_gate.py")),
            ("moto_setup.py", include_str!("../peers/moto_setup.py")),
        ] {
            install_script(&dir, name, text).expect("install mcp peer script");
        }
        dir
    })
}

/// Write-then-rename, so a concurrent run never sees a half-written script.
fn install_script(dir: &Path, name: &str, text: &str) -> Result<()> {
    let tmp = dir.join(format!(".{name}.{}", std::process::id()));
    fs::write(&tmp, text).with_context(|| format!("write {}", tmp.display()))?;
    set_mode(&tmp, 0o755);
    fs::rename(&tmp, dir.join(name)).with_context(|| format!("install {name}"))
}

fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let _ = fs::set_permissions(p, fs::Permissions::from_mode(mode));
}

// ---------------------------------------------------------------------------
// Test CA
// ---------------------------------------------------------------------------

/// A throwaway CA and one server leaf it signed (EC P-256, 7 days), from
/// `peers/make_test_ca.sh`. Certificates are mode 644, keys 600.
#[derive(Clone, Debug)]
pub struct TestCa {
    pub ca_pem: PathBuf,
    pub ca_key: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

impl TestCa {
    /// Writes the CA into `dir`; the leaf's subjectAltName lists `names` (IP literals
    /// become IP entries, e.g. `["mcp.test", "10.0.3.17", "fd00::17", "127.0.0.1"]`).
    pub fn new(dir: &Path, names: &[&str]) -> Result<Self> {
        if names.is_empty() {
            bail!("TestCa needs at least one name");
        }
        run(Command::new("sh")
            .arg(mcp_scripts_dir().join("make_test_ca.sh"))
            .arg(dir)
            .args(names))?;
        Ok(Self {
            ca_pem: dir.join("ca.pem"),
            ca_key: dir.join("ca.key"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
        })
    }
}

// ---------------------------------------------------------------------------
// Transports, eras, scenarios
// ---------------------------------------------------------------------------

/// HTTP transport of an MCP peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum McpTransport {
    /// Streamable HTTP: one endpoint (`/mcp`), POST + optional GET stream + DELETE.
    StreamableHttp,
    /// Legacy HTTP+SSE (2024-11-05): GET `/sse` stream plus POSTs to the endpoint it names.
    Sse,
}

impl McpTransport {
    /// The endpoint path the peers here serve it on.
    pub fn path(self) -> &'static str {
        match self {
            McpTransport::StreamableHttp => "/mcp",
            McpTransport::Sse => "/sse",
        }
    }
    fn py_arg(self) -> &'static str {
        match self {
            McpTransport::StreamableHttp => "streamable-http",
            McpTransport::Sse => "sse",
        }
    }
    fn ts_arg(self) -> &'static str {
        match self {
            McpTransport::StreamableHttp => "streamableHttp",
            McpTransport::Sse => "sse",
        }
    }
}

/// Which MCP protocol era the Python client speaks (SDK `Client(mode=...)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Era {
    /// `initialize` handshake (2025-11-25), `Mcp-Session-Id`, DELETE on close.
    Session,
    /// 2026-07-28: no handshake, no session; `Mcp-Protocol-Version`/`Mcp-Method`/`Mcp-Name`
    /// headers on every POST and version/capabilities in `params._meta`.
    Stateless,
    /// SDK default: `server/discover` first, falling back to `initialize`.
    Auto,
}

impl Era {
    fn arg(self) -> &'static str {
        match self {
            Era::Session => "session",
            Era::Stateless => "stateless",
            Era::Auto => "auto",
        }
    }
}

/// Which server the TypeScript client's scenario is written for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TsScenario {
    /// `peers/mcp_server.py`.
    Python,
    /// `@modelcontextprotocol/server-everything`.
    Everything,
}

// ---------------------------------------------------------------------------
// Servers
// ---------------------------------------------------------------------------

/// Starts `peers/mcp_server.py` inside `ns` on `listen` ("10.0.3.17:8443", "[fd00::17]:8443"),
/// over TLS with `tls`'s server certificate if given, and waits for its "ready" line.
pub fn mcp_server(
    ns: &Netns,
    listen: &str,
    transport: McpTransport,
    tls: Option<&TestCa>,
) -> Result<Proc> {
    mcp_server_with(ns, listen, transport, tls, &[])
}

/// [`mcp_server`] with extra `mcp_server.py` options, e.g. `["--stateless"]`,
/// `["--json-response"]` or `["--allowed-host", "mcp.test:8443"]`.
pub fn mcp_server_with(
    ns: &Netns,
    listen: &str,
    transport: McpTransport,
    tls: Option<&TestCa>,
    extra: &[&str],
) -> Result<Proc> {
    let mut cmd = ns.cmd(require(peers_venv_python())?);
    cmd.arg(mcp_scripts_dir().join("mcp_server.py"))
        .arg("--listen")
        .arg(listen)
        .arg("--transport")
        .arg(transport.py_arg())
        .args(extra);
    if let Some(ca) = tls {
        cmd.arg("--tls-cert")
            .arg(&ca.server_cert)
            .arg("--tls-key")
            .arg(&ca.server_key);
    }
    spawn_until(
        cmd,
        Stream::Stdout,
        |l| l.trim() == "ready",
        "mcp_server.py",
    )
}

/// Starts `server-everything` (`streamableHttp` or `sse` mode) inside `ns` on `port`. It
/// binds every address of the namespace (it has no host option); waits until it listens.
pub fn everything_server(ns: &Netns, transport: McpTransport, port: u16) -> Result<Proc> {
    let dir = node_peers_dir()?;
    let script =
        require(dir.join("node_modules/@modelcontextprotocol/server-everything/dist/index.js"))?;
    let mut cmd = ns.cmd(node_bin());
    cmd.arg(script)
        .arg(transport.ts_arg())
        .env("PORT", port.to_string())
        .current_dir(dir);
    // Both modes announce "... port N" on stderr once listening.
    let needle = format!("port {port}");
    spawn_until(
        cmd,
        Stream::Stderr,
        move |l| l.contains(&needle),
        "server-everything",
    )
}

pub(crate) enum Stream {
    Stdout,
    Stderr,
}

/// Spawns `cmd`, waits (10 s) for a line of `stream` matching `ready`; the other stream
/// goes to the test's stderr.
pub(crate) fn spawn_until(
    mut cmd: Command,
    stream: Stream,
    ready: impl Fn(&str) -> bool + Send + 'static,
    what: &str,
) -> Result<Proc> {
    cmd.stdin(Stdio::null());
    match stream {
        Stream::Stdout => cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()),
        Stream::Stderr => cmd.stdout(Stdio::null()).stderr(Stdio::piped()),
    };
    let mut child = cmd.spawn().with_context(|| format!("spawn {what}"))?;
    let out: Box<dyn Read + Send> = match stream {
        Stream::Stdout => Box::new(child.stdout.take().expect("piped stdout")),
        Stream::Stderr => Box::new(child.stderr.take().expect("piped stderr")),
    };
    let mut proc = Proc { child };
    // Read on a thread so the wait is bounded; it keeps draining the pipe afterwards.
    let (tx, rx) = mpsc::channel();
    let tag = what.to_owned();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if ready(&line) {
                let _ = tx.send(());
            } else if !line.trim().is_empty() {
                eprintln!("[{tag}] {line}");
            }
        }
    });
    if rx.recv_timeout(Duration::from_secs(10)).is_err() {
        proc.kill();
        bail!("{what} did not become ready within 10s");
    }
    Ok(proc)
}

// ---------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------

/// Runs `peers/mcp_client.py` with `cmd`, whose program must be [`peers_venv_python`]
/// (e.g. `ns.cmd(peers_venv_python())` or `cg.cmd(&ns, Some(NOBODY), peers_venv_python())`).
/// `ca_file` is passed the way an unmodified client gets it: `SSL_CERT_FILE`.
/// Returns the scenario's JSON; an `{"error": ..}` report is an `Err`.
pub fn mcp_client_py(
    cmd: Command,
    url: &str,
    transport: McpTransport,
    era: Era,
    ca_file: Option<&Path>,
) -> Result<Value> {
    mcp_client_py_with(cmd, url, transport, era, ca_file, &[])
}

/// One tool call with the Python SDK client: the result (content, structuredContent,
/// isError) exactly as the client received it.
pub fn mcp_call_py(
    cmd: Command,
    url: &str,
    era: Era,
    ca_file: Option<&Path>,
    tool: &str,
    arguments: &Value,
) -> Result<Value> {
    let arguments = arguments.to_string();
    let extra = ["--call", tool, "--args", arguments.as_str()];
    mcp_client_py_with(cmd, url, McpTransport::StreamableHttp, era, ca_file, &extra)
}

pub fn mcp_client_py_with(
    mut cmd: Command,
    url: &str,
    transport: McpTransport,
    era: Era,
    ca_file: Option<&Path>,
    extra: &[&str],
) -> Result<Value> {
    require(peers_venv_python())?;
    cmd.arg(mcp_scripts_dir().join("mcp_client.py"))
        .arg("--url")
        .arg(url)
        .arg("--transport")
        .arg(transport.py_arg())
        .arg("--protocol-era")
        .arg(era.arg())
        .args(extra);
    if let Some(ca) = ca_file {
        cmd.env("SSL_CERT_FILE", ca);
    }
    run_scenario(cmd, "mcp_client.py")
}

/// Runs `peers/mcp_client.mjs` with `cmd`, whose program must be [`node_bin`]
/// (`ns.cmd(node_bin())` or `cg.cmd(..)`). `ca_file` goes in `NODE_EXTRA_CA_CERTS`.
pub fn mcp_client_ts(
    mut cmd: Command,
    url: &str,
    transport: McpTransport,
    scenario: TsScenario,
    ca_file: Option<&Path>,
) -> Result<Value> {
    let dir = node_peers_dir()?;
    cmd.arg(dir.join("mcp_client.mjs"))
        .arg("--url")
        .arg(url)
        .arg("--transport")
        .arg(transport.ts_arg())
        .arg("--scenario")
        .arg(match scenario {
            TsScenario::Python => "python",
            TsScenario::Everything => "everything",
        });
    if let Some(ca) = ca_file {
        cmd.env("NODE_EXTRA_CA_CERTS", ca);
    }
    run_scenario(cmd, "mcp_client.mjs")
}

/// Runs a client to completion (its own --timeout bounds it) and parses its last line.
fn run_scenario(mut cmd: Command, what: &str) -> Result<Value> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("spawn {what}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .ok_or_else(|| anyhow!("{what} printed nothing ({}); stderr: {stderr}", out.status))?;
    let v: Value = serde_json::from_str(line).with_context(|| format!("{what} output: {line}"))?;
    if let Some(e) = v.get("error") {
        bail!("{what} failed ({}): {e}\nstderr: {stderr}", out.status);
    }
    if !out.status.success() {
        bail!(
            "{what} exited {} after printing {line}\nstderr: {stderr}",
            out.status
        );
    }
    Ok(v)
}

// ---------------------------------------------------------------------------
// Expected results
// ---------------------------------------------------------------------------

fn num(v: &Value) -> Option<f64> {
    v.as_f64()
}

/// Checks a [`mcp_client_py`] or [`mcp_client_ts`] (`TsScenario::Python`) report against
/// `peers/mcp_server.py`: echo round trip, 40 + 2, five progress steps, a cancellation the
/// server saw, the greeting resource, the greet prompt, 512 KiB from `big`, a clean close.
pub fn assert_python_scenario(v: &Value) {
    assert_eq!(v["echo"], ECHO_TEXT, "echo: {v}");
    assert_eq!(v["echo_ok"], true, "echo: {v}");
    assert_eq!(v["add"], "42", "add: {v}");
    let tools: Vec<&str> = v["tools"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for t in ["add", "big", "cancelled_count", "echo", "slow_count"] {
        assert!(tools.contains(&t), "tool {t} not listed: {v}");
    }
    assert_eq!(v["slow_count"], "counted to 5", "slow_count: {v}");
    let progress = v["progress"].as_array().expect("progress list");
    assert_eq!(progress.len(), 5, "progress notifications: {v}");
    for (i, p) in progress.iter().enumerate() {
        assert_eq!(num(&p[0]), Some((i + 1) as f64), "progress order: {v}");
        assert_eq!(num(&p[1]), Some(5.0), "progress total: {v}");
    }
    assert_eq!(v["cancel"]["progress_before_cancel"], true, "cancel: {v}");
    assert_eq!(v["cancel"]["completed"], false, "cancel: {v}");
    assert_eq!(v["cancel"]["server_saw_cancel"], true, "cancel: {v}");
    assert_eq!(
        v["resources"],
        serde_json::json!(["test://greeting"]),
        "{v}"
    );
    assert_eq!(v["greeting"], "Hello from the mcpgw test server", "{v}");
    assert_eq!(v["prompts"], serde_json::json!(["greet"]), "{v}");
    assert_eq!(
        v["prompt"],
        serde_json::json!([["user", "Please greet Ada warmly."]]),
        "{v}"
    );
    assert_eq!(v["big"]["bytes"].as_u64(), Some(BIG_BYTES), "big: {v}");
    assert_eq!(v["closed"], true, "{v}");
}

/// Checks a [`mcp_client_ts`] (`TsScenario::Everything`) report against server-everything.
pub fn assert_everything_scenario(v: &Value) {
    assert_eq!(v["echo_ok"], true, "echo: {v}");
    assert_eq!(v["add"], "The sum of 40 and 2 is 42.", "get-sum: {v}");
    let tools: Vec<&str> = v["tools"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for t in ["echo", "get-sum", "trigger-long-running-operation"] {
        assert!(tools.contains(&t), "tool {t} not listed: {v}");
    }
    // server-everything's legacy SSE mode delivers 4 of the 5 (deterministically).
    let progress = v["progress"].as_array().expect("progress list");
    assert!(!progress.is_empty(), "no progress notifications: {v}");
    assert_eq!(v["cancel"]["progress_before_cancel"], true, "cancel: {v}");
    assert_eq!(v["cancel"]["completed"], false, "cancel: {v}");
    assert_eq!(v["cancel"]["client_aborted"], true, "cancel: {v}");
    assert!(
        v["document"]["bytes"].as_u64().is_some_and(|b| b > 0),
        "document: {v}"
    );
    assert!(
        v["prompts"]
            .as_array()
            .is_some_and(|a| a.iter().any(|p| p == "simple-prompt")),
        "prompts: {v}"
    );
    assert_eq!(
        v["prompt"],
        serde_json::json!([["user", "This is a simple prompt without arguments."]]),
        "{v}"
    );
    assert_eq!(v["closed"], true, "{v}");
}
