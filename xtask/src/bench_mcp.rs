//! `cargo xtask bench mcp`: `tools/call` round trips (small JSON, HTTP/1.1 keep-alive, TLS
//! everywhere) at concurrency 1 and 64, side by side in one run:
//!
//! - **direct**: the load generator talks TLS straight to the upstream MCP responder;
//! - **mcpgw**: the load generator runs in an intercepted cgroup and dials the upstream's
//!   address; the eBPF redirect sends it to mcpgw, which terminates TLS with its host CA,
//!   parses the JSON-RPC, runs its interceptor chain and forwards over TLS to the upstream;
//! - **nginx**: a TLS-terminating reverse proxy doing no MCP work (one worker process per
//!   core, like mcpgw's worker threads; upstream keepalive; TLS to the upstream).
//!
//! The upstream ([`upstream`]) and the load generator ([`load`]) are hidden xtask
//! subcommands run inside the benchmark's network namespace. Rounds are interleaved
//! (direct, mcpgw, nginx, then again) and each figure is the median over the rounds.

use std::{
    convert::Infallible,
    io::{BufRead as _, BufReader},
    net::SocketAddr,
    path::Path,
    process::{Child, Stdio},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context as _, Result};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{body::Incoming, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use mcpgw_tests::{mcp::TestCa, Cgroup, Gateway, Netns, TempDir};
use rustls::pki_types::{pem::PemObject as _, CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};

use crate::{cargo, target_dir};

/// The upstream MCP responder; mcpgw intercepts this address for the cgroup.
const UPSTREAM: &str = "10.0.3.17:8443";
/// nginx's TLS listener.
const NGINX: &str = "10.0.3.17:9443";
/// DNS name in the test leaf for nginx's upstream check (OpenSSL's host check ignores IP SANs).
const UPSTREAM_DNS: &str = "mcp.bench";
/// (concurrency, measured requests per run).
const LOADS: [(usize, usize); 2] = [(1, 3000), (64, 20000)];
/// Warm-up requests per run (spread over the connections), not measured.
const WARMUP: usize = 1000;
const ROUNDS: usize = 5;

/// Product goals, checked and printed at the end.
const GOAL_P99_ADDED_US: f64 = 300.0;

pub fn run(no_recording: bool) -> Result<()> {
    if !mcpgw_tests::require_root() {
        bail!("the mcp benchmark needs root (network namespace, cgroup, eBPF)");
    }
    crate::setup::setup()?;
    crate::setup::nginx()?;
    cargo(&["build", "--release", "-p", "gateway", "-p", "xtask"])?;
    // No other thread is running yet. The harness starts the binary named by MCPGW_BIN and
    // sets MCPGW_LOG only if it is unset: per-message info lines would dominate the figures.
    std::env::set_var("MCPGW_BIN", target_dir().join("release/mcpgw"));
    std::env::set_var("MCPGW_LOG", "warn,aya::bpf=error");
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());

    let tmp = TempDir::new()?;
    let ca = TestCa::new(tmp.path(), &["10.0.3.17", UPSTREAM_DNS]).context("test CA")?;
    let ns = Netns::new()?;
    let cg = Cgroup::new()?;
    let xtask = std::env::current_exe()?;

    let mut upstream = Spawned(
        ns.cmd(&xtask)
            .arg("bench-mcp-upstream")
            .arg(UPSTREAM)
            .arg("--cert")
            .arg(&ca.server_cert)
            .arg("--key")
            .arg(&ca.server_key)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .context("upstream responder")?,
    );
    wait_ready(&mut upstream.0, "upstream responder")?;

    let nginx_dir = tmp.path().join("nginx");
    std::fs::create_dir_all(&nginx_dir)?;
    let nginx_conf = nginx_dir.join("nginx.conf");
    std::fs::write(&nginx_conf, nginx_config(&nginx_dir, &ca, cores))?;
    let nginx = Nginx(
        ns.cmd("/usr/sbin/nginx")
            .arg("-c")
            .arg(&nginx_conf)
            .arg("-p")
            .arg(&nginx_dir)
            .arg("-e")
            .arg(nginx_dir.join("error.log"))
            .stdin(Stdio::null())
            .spawn()
            .context("nginx")?,
    );

    let mut config = gateway_config(&cg, &ca.ca_pem);
    if no_recording {
        config.push_str("\n[recording]\nstore = \"none\"\n");
    }
    let gw = Gateway::start(&ns, Some(&cg), &config)?;
    println!(
        "mcpgw recording: {}",
        if no_recording { "off" } else { "on (default)" }
    );
    let host_ca = tmp.path().join("mcpgw-ca.pem");
    std::fs::write(&host_ca, gw.cli_ok(&["ca", "export"]).stdout)?;
    // nginx had the gateway's start-up to come up; make sure it listens.
    wait_nginx(&ns, &xtask, &ca.ca_pem, &nginx_dir)?;

    let client = |path: Via, concurrency: usize, requests: usize| -> Result<Value> {
        let (mut cmd, ca_file, addr) = match path {
            Via::Direct => (ns.cmd(&xtask), &ca.ca_pem, UPSTREAM),
            Via::Mcpgw => (cg.cmd(&ns, None, &xtask), &host_ca, UPSTREAM),
            Via::Nginx => (ns.cmd(&xtask), &ca.ca_pem, NGINX),
        };
        let out = cmd
            .arg("bench-mcp-client")
            .arg(addr)
            .arg("--ca")
            .arg(ca_file)
            .args(["--requests", &requests.to_string()])
            .args(["--concurrency", &concurrency.to_string()])
            .args(["--warmup", &WARMUP.to_string()])
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .context("load generator")?;
        if !out.status.success() {
            bail!("load generator ({}) failed: {}", path.name(), out.status);
        }
        serde_json::from_slice(&out.stdout).context("load generator output")
    };

    // results[path][load] = one Value per round.
    let mut results: Vec<Vec<Vec<Value>>> = vec![vec![Vec::new(); LOADS.len()]; PATHS.len()];
    for round in 1..=ROUNDS {
        for (l, &(concurrency, requests)) in LOADS.iter().enumerate() {
            for (p, &path) in PATHS.iter().enumerate() {
                let r = client(path, concurrency, requests)?;
                eprintln!(
                    "round {round} c={concurrency:<2} {:<6} p50 {:>6.0} µs  p99 {:>6.0} µs  {:>7.0} req/s  errors {}",
                    path.name(),
                    num(&r, "p50_us"),
                    num(&r, "p99_us"),
                    num(&r, "rps"),
                    r["errors"]
                );
                results[p][l].push(r);
            }
        }
    }
    // Sanity: the gateway handled the mcpgw runs and logged nothing at warn or above.
    let status = gw.status();
    eprintln!("mcpgw counters: {}", status["counters"]);
    let log = gw.log();
    let noise: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .take(5)
        .collect();
    if !noise.is_empty() {
        eprintln!("mcpgw logged warnings or errors:\n  {}", noise.join("\n  "));
    }
    drop(gw);
    drop(nginx);
    drop(upstream);

    // Medians over the rounds; every run must have been clean.
    let mut invalid = Vec::new();
    let mut fig = [[Figures::default(); LOADS.len()]; PATHS.len()];
    for (p, path) in PATHS.iter().enumerate() {
        for (l, (concurrency, _)) in LOADS.iter().enumerate() {
            let runs = &results[p][l];
            for r in runs {
                let errors = r["errors"].as_u64().unwrap_or(u64::MAX);
                if errors != 0 {
                    invalid.push(format!(
                        "{} c={concurrency}: {errors} failed requests (first: {})",
                        path.name(),
                        r["first_error"]
                    ));
                }
            }
            let median = |k: &str| median(runs.iter().map(|r| num(r, k)).collect());
            fig[p][l] = Figures {
                p50: median("p50_us"),
                p99: median("p99_us"),
                rps: median("rps"),
            };
        }
    }

    let d = &fig[0];
    println!();
    println!(
        "| path | c=1 p50 (µs) | c=1 p99 (µs) | c=1 req/s | c=64 p50 (µs) | c=64 p99 (µs) | c=64 req/s \
         | added p50 c=1 (µs) | added p99 c=1 (µs) | added p50 c=64 (µs) | added p99 c=64 (µs) \
         | req/s vs direct c=1 | req/s vs direct c=64 |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (p, path) in PATHS.iter().enumerate() {
        let f = &fig[p];
        println!(
            "| {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:+.0} | {:+.0} | {:+.0} | {:+.0} | {:.2} | {:.2} |",
            path.label(),
            f[0].p50,
            f[0].p99,
            f[0].rps,
            f[1].p50,
            f[1].p99,
            f[1].rps,
            f[0].p50 - d[0].p50,
            f[0].p99 - d[0].p99,
            f[1].p50 - d[1].p50,
            f[1].p99 - d[1].p99,
            f[0].rps / d[0].rps,
            f[1].rps / d[1].rps,
        );
    }
    println!();
    println!(
        "machine: {}, mcpgw {}, {}",
        mcpgw_tests::machine(),
        env!("CARGO_PKG_VERSION"),
        nginx_version()
    );
    println!("medians of {ROUNDS} interleaved rounds; requests per run: c=1 {}, c=64 {} (after {WARMUP} warm-up requests)", LOADS[0].1, LOADS[1].1);

    let (g, n) = (&fig[1], &fig[2]);
    let added_p50 = (g[0].p50 - d[0].p50, n[0].p50 - d[0].p50);
    let added_p99 = g[0].p99 - d[0].p99;
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    println!();
    println!(
        "goal: mcpgw added p50 within 2x nginx's (c=1): {:.0} µs vs 2 x {:.0} µs: {}",
        added_p50.0,
        added_p50.1,
        verdict(added_p50.0 <= 2.0 * added_p50.1.max(0.0))
    );
    println!(
        "goal: mcpgw added p99 under {GOAL_P99_ADDED_US:.0} µs (c=1): {added_p99:.0} µs: {}",
        verdict(added_p99 < GOAL_P99_ADDED_US)
    );
    println!(
        "goal: mcpgw throughput at c=64 at least nginx's: {:.0} vs {:.0} req/s: {}",
        g[1].rps,
        n[1].rps,
        verdict(g[1].rps >= n[1].rps)
    );
    if !invalid.is_empty() {
        bail!(
            "runs with failed requests, figures are not valid:\n  {}",
            invalid.join("\n  ")
        );
    }
    Ok(())
}

#[derive(Clone, Copy)]
enum Via {
    Direct,
    Mcpgw,
    Nginx,
}

const PATHS: [Via; 3] = [Via::Direct, Via::Mcpgw, Via::Nginx];

impl Via {
    fn name(self) -> &'static str {
        match self {
            Via::Direct => "direct",
            Via::Mcpgw => "mcpgw",
            Via::Nginx => "nginx",
        }
    }
    fn label(self) -> &'static str {
        match self {
            Via::Direct => "direct (client → upstream)",
            Via::Mcpgw => "mcpgw (eBPF redirect, TLS terminate, MCP chain)",
            Via::Nginx => "nginx (TLS reverse proxy, no MCP)",
        }
    }
}

#[derive(Clone, Copy, Default)]
struct Figures {
    p50: f64,
    p99: f64,
    rps: f64,
}

fn num(v: &Value, k: &str) -> f64 {
    v[k].as_f64().unwrap_or(f64::NAN)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// A child killed and reaped on drop.
struct Spawned(Child);

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The nginx master process: SIGTERM on drop, so it takes its workers with it (SIGKILL would
/// orphan them), then reaped (killed if it has not exited within 5 s).
struct Nginx(Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits for the child's "ready" line on stdout.
fn wait_ready(child: &mut Child, what: &str) -> Result<()> {
    let stdout = child.stdout.take().context("piped stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let ready = matches!(lines.next(), Some(Ok(l)) if l.trim() == "ready");
        let _ = tx.send(ready);
        // Keep draining so the child never blocks on a full pipe.
        for _ in lines {}
    });
    match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(true) => Ok(()),
        _ => bail!("{what} did not become ready"),
    }
}

/// A few requests through nginx until one succeeds (it starts in the background).
fn wait_nginx(ns: &Netns, xtask: &Path, ca: &Path, dir: &Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = ns
            .cmd(xtask)
            .args(["bench-mcp-client", NGINX, "--ca"])
            .arg(ca)
            .args(["--requests", "1", "--concurrency", "1", "--warmup", "0"])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()?;
        let ok = out.status.success()
            && serde_json::from_slice::<Value>(&out.stdout)
                .is_ok_and(|v| v["errors"] == 0 && v["ok"] == 1);
        if ok {
            return Ok(());
        }
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
            bail!(
                "nginx does not answer on {NGINX}: {}\n--- nginx error.log ---\n{log}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn nginx_version() -> String {
    std::process::Command::new("/usr/sbin/nginx")
        .arg("-v")
        .output()
        .ok()
        .map(|o| {
            String::from_utf8_lossy(&o.stderr)
                .trim()
                .replace("nginx version: ", "")
        })
        .unwrap_or_else(|| "nginx (version unknown)".into())
}

fn gateway_config(cg: &Cgroup, ca_pem: &Path) -> String {
    format!(
        r#"[gateway]
state_dir    = "@DIR@/state"
admin_socket = "@DIR@/admin.sock"
listen       = ["127.0.0.1:15001", "[::1]:15001"]
fail_mode    = "open"

[intercept]
mode    = "ebpf"
cgroup  = "{cgroup}"
pin_dir = "/sys/fs/bpf/{name}"

[[servers]]
name    = "bench"
match   = ["{UPSTREAM}"]
ca_file = "{ca}"

[[policy.rules]]
id      = "bench"
servers = ["bench"]
action  = "allow"
"#,
        cgroup = cg.path_in_hierarchy(),
        name = cg.name(),
        ca = ca_pem.display(),
    )
}

fn nginx_config(dir: &Path, ca: &TestCa, workers: usize) -> String {
    let d = dir.display();
    format!(
        r#"worker_processes {workers};
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;

events {{
    worker_connections 4096;
}}

http {{
    access_log off;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;

    upstream mcp {{
        server {UPSTREAM};
        keepalive 128;
    }}

    server {{
        listen {NGINX} ssl;
        ssl_certificate     {cert};
        ssl_certificate_key {key};
        keepalive_requests  1000000;

        location / {{
            proxy_pass https://mcp;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_ssl_verify on;
            proxy_ssl_trusted_certificate {ca_pem};
            proxy_ssl_name {UPSTREAM_DNS};
            proxy_ssl_session_reuse on;
        }}
    }}
}}
"#,
        cert = ca.server_cert.display(),
        key = ca.server_key.display(),
        ca_pem = ca.ca_pem.display(),
    )
}

// ---------------------------------------------------------------------------
// The upstream MCP responder (hidden subcommand `bench-mcp-upstream`)
// ---------------------------------------------------------------------------

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Answers POST /mcp `tools/call` with a small JSON result, HTTP/1.1 keep-alive over TLS.
/// Prints "ready" once it listens.
pub fn upstream(addr: &str, cert: &Path, key: &Path) -> Result<()> {
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("reading {}", cert.display()))?;
    let key =
        PrivateKeyDer::from_pem_file(key).with_context(|| format!("reading {}", key.display()))?;
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let addr: SocketAddr = addr.parse()?;
    runtime()?.block_on(async move {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("bind {addr}"))?;
        println!("ready");
        loop {
            let (tcp, _) = listener.accept().await?;
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), hyper::service::service_fn(answer))
                    .await;
            });
        }
    })
}

async fn answer(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let reply = |status: StatusCode, body: Vec<u8>| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        r.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("application/json"),
        );
        Ok(r)
    };
    if req.method() != hyper::Method::POST || req.uri().path() != "/mcp" {
        return reply(StatusCode::NOT_FOUND, b"{}".to_vec());
    }
    let Ok(body) = req.into_body().collect().await else {
        return reply(StatusCode::BAD_REQUEST, b"{}".to_vec());
    };
    let Ok(msg) = serde_json::from_slice::<Value>(&body.to_bytes()) else {
        return reply(StatusCode::BAD_REQUEST, b"{}".to_vec());
    };
    let response = if msg["method"] == "tools/call" {
        json!({"jsonrpc": "2.0", "id": msg["id"], "result": {"content": [{"type": "text", "text": "ok"}]}})
    } else {
        json!({"jsonrpc": "2.0", "id": msg["id"], "error": {"code": -32601, "message": "method not found"}})
    };
    reply(
        StatusCode::OK,
        serde_json::to_vec(&response).unwrap_or_default(),
    )
}

// ---------------------------------------------------------------------------
// The load generator (hidden subcommand `bench-mcp-client`)
// ---------------------------------------------------------------------------

/// One HTTP/1.1 keep-alive TLS connection per concurrent worker to `https://ADDR/mcp`
/// (certificate checked for ADDR's IP against `ca`). Each connection is set up and warmed up
/// before the clock starts; then the workers share `requests` measured `tools/call` round
/// trips. Prints JSON: ok, errors, first_error, p50_us, p99_us, rps. A round trip counts as
/// ok only with HTTP 200, `application/json` and the JSON-RPC result for the same id.
pub fn load(
    addr: &str,
    ca: &Path,
    requests: usize,
    concurrency: usize,
    warmup: usize,
) -> Result<()> {
    let addr: SocketAddr = addr.parse()?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in
        CertificateDer::pem_file_iter(ca).with_context(|| format!("reading {}", ca.display()))?
    {
        roots.add(cert?)?;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let concurrency = concurrency.max(1);
    let warmup_each = warmup.div_ceil(concurrency);

    let report = runtime()?.block_on(async move {
        let next = Arc::new(AtomicUsize::new(0));
        let barrier = Arc::new(tokio::sync::Barrier::new(concurrency + 1));
        let workers: Vec<_> = (0..concurrency)
            .map(|w| {
                let worker = Worker {
                    connector: connector.clone(),
                    addr,
                    sender: None,
                    id: (w as u64) << 32,
                    errors: 0,
                    first_error: None,
                };
                tokio::spawn(worker.run(warmup_each, barrier.clone(), next.clone(), requests))
            })
            .collect();
        barrier.wait().await;
        let started = Instant::now();
        let mut samples = Vec::with_capacity(requests);
        let mut errors = 0;
        let mut first_error = None;
        for w in workers {
            let w = w.await.map_err(|e| anyhow!("worker: {e}"))?;
            samples.extend(w.samples);
            errors += w.errors;
            first_error = first_error.or(w.first_error);
        }
        let elapsed = started.elapsed();
        samples.sort_unstable();
        let pct = |p: f64| -> f64 {
            if samples.is_empty() {
                return f64::NAN;
            }
            let i = ((samples.len() as f64 * p) as usize).min(samples.len() - 1);
            samples[i].as_secs_f64() * 1e6
        };
        Ok::<_, anyhow::Error>(json!({
            "ok": samples.len(),
            "errors": errors,
            "first_error": first_error,
            "p50_us": pct(0.50),
            "p99_us": pct(0.99),
            "rps": samples.len() as f64 / elapsed.as_secs_f64(),
        }))
    })?;
    println!("{report}");
    Ok(())
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

struct Worker {
    connector: tokio_rustls::TlsConnector,
    addr: SocketAddr,
    sender: Option<Sender>,
    /// JSON-RPC ids: worker index in the high bits, a counter in the low ones.
    id: u64,
    errors: usize,
    first_error: Option<String>,
}

struct Done {
    samples: Vec<Duration>,
    errors: usize,
    first_error: Option<String>,
}

impl Worker {
    async fn run(
        mut self,
        warmup: usize,
        barrier: Arc<tokio::sync::Barrier>,
        next: Arc<AtomicUsize>,
        requests: usize,
    ) -> Done {
        for _ in 0..warmup {
            self.round_trip().await;
        }
        if self.sender.is_none() {
            // Connect before the clock starts even without warm-up.
            if let Err(e) = self.connect().await {
                self.error(e);
            }
        }
        barrier.wait().await;
        let mut samples = Vec::new();
        while next.fetch_add(1, Ordering::Relaxed) < requests {
            if let Some(t) = self.round_trip().await {
                samples.push(t);
            }
        }
        Done {
            samples,
            errors: self.errors,
            first_error: self.first_error,
        }
    }

    fn error(&mut self, e: anyhow::Error) {
        self.errors += 1;
        self.first_error.get_or_insert_with(|| format!("{e:#}"));
    }

    async fn connect(&mut self) -> Result<()> {
        let tcp = TcpStream::connect(self.addr).await.context("connect")?;
        tcp.set_nodelay(true)?;
        let name = ServerName::IpAddress(self.addr.ip().into());
        let tls = self
            .connector
            .connect(name, tcp)
            .await
            .context("TLS handshake")?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(conn);
        self.sender = Some(sender);
        Ok(())
    }

    /// One `tools/call`; its latency if it succeeded. A broken connection is counted and
    /// replaced on the next call.
    async fn round_trip(&mut self) -> Option<Duration> {
        self.id += 1;
        match self.try_round_trip().await {
            Ok(t) => Some(t),
            Err(e) => {
                self.sender = None;
                self.error(e);
                None
            }
        }
    }

    async fn try_round_trip(&mut self) -> Result<Duration> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            self.connect().await?;
        }
        let sender = self.sender.as_mut().context("no connection")?;
        sender.ready().await.context("connection not ready")?;
        let id = self.id;
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"hi"}}}}}}"#
        );
        let req = Request::post("/mcp")
            .header(hyper::header::HOST, self.addr.to_string())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(hyper::header::ACCEPT, "application/json, text/event-stream")
            .body(Full::new(Bytes::from(body)))?;
        let started = Instant::now();
        let response = sender.send_request(req).await.context("request")?;
        let status = response.status();
        let json_ct = response
            .headers()
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        let body = response
            .into_body()
            .collect()
            .await
            .context("response body")?
            .to_bytes();
        let elapsed = started.elapsed();
        let text = || String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
        if status != StatusCode::OK || !json_ct {
            bail!("HTTP {status}: {}", text());
        }
        let msg: Value = serde_json::from_slice(&body).with_context(text)?;
        if msg["id"] != id || msg["result"]["content"][0]["text"] != "ok" {
            bail!("unexpected answer to id {id}: {}", text());
        }
        Ok(elapsed)
    }
}
