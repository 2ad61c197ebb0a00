//! `cargo xtask bench approval` (run by xtask as `mcpgw-bench approval`): how long a held call waits after the approver says yes. The
//! release `mcpgw` runs in explicit mode (no eBPF) on loopback with a rule that holds every
//! `op_*` tool call for an `sre-leads` approval; an upstream in this process answers every
//! POST and notes when each `tools/call` arrives. For each call the client posts it, waits
//! until its approval is pending on the admin socket, then approves it there (as
//! `mcpgw approvals approve ID` does); the sample is the upstream's arrival time minus the
//! moment the approve request was sent. Each call names its own tool (`op_{i}`), so no grant
//! from an earlier approval covers it.

use std::{
    collections::HashMap,
    convert::Infallible,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context as _, Result};
use bytes::Bytes;
use gateway::admin::{self, Request as Admin};
use http_body_util::{BodyExt as _, Full};
use hyper::{body::Incoming, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};

/// Measured approvals, one at a time.
const CALLS: usize = 30;
/// Approvals before those, not measured (first upstream connect, cold SQLite pages).
const WARMUP: usize = 3;
/// How long the held call sits pending before it is approved: long enough that the request
/// is parked on its waiter, as it is when a person decides.
const SETTLE: Duration = Duration::from_millis(20);
/// Product goal: approve → call at the upstream.
const GOAL_MS: f64 = 50.0;

/// When each `tools/call` reached the upstream, by tool name.
type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;

/// The gateway process; killed and reaped when dropped.
struct Gateway {
    child: Child,
    log: PathBuf,
}

impl Gateway {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// `id -un` / `id -gn`: the Unix user the approver is, and a group the admin socket admits.
fn id(flag: &str) -> Result<String> {
    let out = Command::new("id")
        .arg(flag)
        .output()
        .context("running id")?;
    if !out.status.success() {
        bail!("id {flag} failed: {}", out.status);
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

pub fn measure() -> Result<()> {
    let bin = mcpgw_tests::target_dir().join("release/mcpgw");
    if !bin.is_file() {
        bail!(
            "{} is missing: run `cargo xtask bench approval` (run by xtask as `mcpgw-bench approval`)",
            bin.display()
        );
    }
    let dir = std::env::temp_dir().join(format!("mcpgw-bench-approval-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(bench(&bin, &dir));
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn bench(bin: &Path, dir: &Path) -> Result<()> {
    let upstream = TcpListener::bind("127.0.0.1:0").await?;
    let upstream_addr = upstream.local_addr()?;
    let arrivals = Arrivals::default();
    tokio::spawn(serve_upstream(upstream, arrivals.clone()));

    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
    let gateway_listen = format!("127.0.0.1:{}", free_port()?);
    let socket = dir.join("admin.sock");
    let user = id("-un")?;
    let config = format!(
        r#"[gateway]
state_dir    = "{state}"
admin_socket = "{socket}"
admin_group  = "{group}"
listen       = ["{gateway_listen}"]
metrics      = "127.0.0.1:{metrics}"

[intercept]
mode = "explicit"

[[servers]]
name     = "ops"
listen   = "{listen}"
upstream = "http://{upstream_addr}"
tls      = "plaintext"

[recording]
store = "sqlite"

[[policy.rules]]
id        = "ops-need-approval"
tools     = ["op_*"]
action    = "approve"
approvers = ["sre-leads"]
grant_ttl = "1s"

[approval]
hold = "30s"

[approval.approvers]
{user} = ["sre-leads"]
"#,
        state = dir.join("state").display(),
        socket = socket.display(),
        group = id("-gn")?,
        metrics = free_port()?,
    );
    let config_path = dir.join("mcpgw.toml");
    std::fs::write(&config_path, config)?;
    let log = dir.join("mcpgw.log");
    let child = Command::new(bin)
        .arg("serve")
        .arg("--config")
        .arg(&config_path)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let mut gw = Gateway { child, log };
    ready(&mut gw, &socket, listen).await?;

    let outcome = approvals(&socket, listen, &arrivals).await;
    let (to_upstream, round_trip) = outcome.with_context(|| format!("mcpgw log:\n{}", gw.log()))?;
    // For comparison: an admin request that only reads (nothing is pending any more).
    let mut list = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        let t = Instant::now();
        admin::call(&socket, &Admin::ApprovalsList { all: false })
            .await
            .map_err(|e| anyhow!("approvals list: {e}"))?;
        list.push(t.elapsed());
    }
    drop(gw);
    let fsync = fsync_p50(dir)?;

    let to_upstream = Percentiles::of(to_upstream);
    let round_trip = Percentiles::of(round_trip);
    println!("| measure | p50 | p90 | max |");
    println!("|---|---|---|---|");
    println!(
        "| approve → held call reaches the upstream | {} | {} | {} |",
        ms(to_upstream.p50),
        ms(to_upstream.p90),
        ms(to_upstream.max)
    );
    println!(
        "| approve command round trip (admin socket answer) | {} | {} | {} |",
        ms(round_trip.p50),
        ms(round_trip.p90),
        ms(round_trip.max)
    );
    let list = Percentiles::of(list);
    println!(
        "| `approvals list` round trip (reads only), for comparison | {} | {} | {} |",
        ms(list.p50),
        ms(list.p90),
        ms(list.max)
    );
    println!();
    println!(
        "{CALLS} approvals one at a time (after {WARMUP} not measured), mcpgw release build, \
         explicit mode on loopback, plain HTTP, recording on (SQLite)."
    );
    println!(
        "The time includes: the admin socket round trip (connect, peer check, request), the \
         approver lookup, the durable SQLite writes of the grant, the approval and two audit \
         entries (WAL, synchronous=FULL), waking the held request, re-reading the approval, \
         re-running the interceptor chain (policy, now covered by the grant; recording) and \
         forwarding to the upstream."
    );
    println!(
        "This disk, just after: a 4 KiB append + fdatasync in the state dir takes {} (p50 of 50); \
         every durable SQLite commit of the approve command ends with such a sync.",
        ms(fsync)
    );
    let p50_ms = to_upstream.p50.as_secs_f64() * 1e3;
    println!(
        "Goal: under {GOAL_MS:.0} ms (p50 {:.1} ms): {}",
        p50_ms,
        if to_upstream.max.as_secs_f64() * 1e3 < GOAL_MS {
            "met, max included"
        } else if p50_ms < GOAL_MS {
            "met at the median, not at the max"
        } else {
            "not met"
        }
    );
    println!("machine: {}", mcpgw_tests::machine());
    Ok(())
}

/// What one durable commit costs on this disk now: the median of 50 appends of 4 KiB, each
/// followed by fdatasync (the figures above move with it).
fn fsync_p50(dir: &Path) -> Result<Duration> {
    use std::io::Write as _;
    let path = dir.join("fsync-probe");
    let mut file = std::fs::File::create(&path)?;
    let page = [0u8; 4096];
    let mut samples = Vec::with_capacity(50);
    for _ in 0..50 {
        let t = Instant::now();
        file.write_all(&page)?;
        file.sync_data()?;
        samples.push(t.elapsed());
    }
    drop(file);
    let _ = std::fs::remove_file(&path);
    Ok(Percentiles::of(samples).p50)
}

/// Waits until the admin socket answers and the server's listener accepts.
async fn ready(gw: &mut Gateway, socket: &Path, listen: SocketAddr) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = gw.child.try_wait()? {
            bail!("mcpgw exited with {status}:\n{}", gw.log());
        }
        if admin::call(socket, &Admin::Status).await.is_ok()
            && TcpStream::connect(listen).await.is_ok()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("mcpgw did not come up:\n{}", gw.log());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every call in turn: post it, wait for its approval, approve, check the answer. Returns the
/// measured (approve → upstream, approve round trip) samples.
async fn approvals(
    socket: &Path,
    listen: SocketAddr,
    arrivals: &Arrivals,
) -> Result<(Vec<Duration>, Vec<Duration>)> {
    let tcp = TcpStream::connect(listen).await?;
    tcp.set_nodelay(true)?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(tcp)).await?;
    tokio::spawn(connection);

    let mut to_upstream = Vec::with_capacity(CALLS);
    let mut round_trips = Vec::with_capacity(CALLS);
    for i in 0..WARMUP + CALLS {
        let tool = format!("op_{i}");
        let body = json!({"jsonrpc": "2.0", "id": i, "method": "tools/call",
                          "params": {"name": tool, "arguments": {"target": "db-1"}}});
        let request = Request::post("/mcp")
            .header(hyper::header::HOST, listen.to_string())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(hyper::header::ACCEPT, "application/json, text/event-stream")
            .body(Full::new(Bytes::from(serde_json::to_vec(&body)?)))?;
        sender.ready().await?;
        let call = tokio::spawn(async move {
            let response = sender.send_request(request).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            anyhow::Ok((sender, status, body))
        });

        let id = pending(socket, &tool).await?;
        tokio::time::sleep(SETTLE).await;
        let t0 = Instant::now();
        let decided = admin::call(
            socket,
            &Admin::ApprovalsApprove {
                id: id.clone(),
                reason: None,
                token: None,
            },
        )
        .await
        .map_err(|e| anyhow!("approving {id}: {e}"))?;
        let round_trip = t0.elapsed();
        if decided["state"] != "approved" {
            bail!("approving {id} left it {}", decided["state"]);
        }

        let (back, status, body) = tokio::time::timeout(Duration::from_secs(10), call)
            .await
            .with_context(|| format!("no answer to {tool} after its approval"))???;
        sender = back;
        let answer = rpc_answer(&body).ok_or_else(|| {
            anyhow!(
                "no JSON-RPC answer to {tool}: {}",
                String::from_utf8_lossy(&body)
            )
        })?;
        if status != StatusCode::OK
            || answer["id"] != json!(i)
            || answer["result"]["content"][0]["text"] != "ok"
        {
            bail!("{tool} did not get the upstream's result: HTTP {status}, {answer}");
        }
        let arrived = arrivals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&tool)
            .copied()
            .ok_or_else(|| anyhow!("{tool} never reached the upstream"))?;
        let sample = arrived
            .checked_duration_since(t0)
            .ok_or_else(|| anyhow!("{tool} reached the upstream before it was approved"))?;
        if i >= WARMUP {
            to_upstream.push(sample);
            round_trips.push(round_trip);
        }
    }
    Ok((to_upstream, round_trips))
}

/// The JSON-RPC answer in a response body: the body itself (`application/json`) or the data of
/// the event carrying it (`text/event-stream`: the gateway answers a held call from a client
/// that accepts event streams with one, sending keep-alives until the decision).
fn rpc_answer(body: &[u8]) -> Option<Value> {
    if let Ok(answer) = serde_json::from_slice::<Value>(body) {
        return Some(answer);
    }
    let text = std::str::from_utf8(body).ok()?.replace("\r\n", "\n");
    text.split("\n\n").find_map(|event| {
        let data: Vec<&str> = event
            .lines()
            .filter_map(|line| line.strip_prefix("data:"))
            .map(|d| d.strip_prefix(' ').unwrap_or(d))
            .collect();
        serde_json::from_str::<Value>(&data.join("\n"))
            .ok()
            .filter(|answer| answer.get("id").is_some())
    })
}

/// Polls the admin socket until the call of `tool` is pending; returns its approval id.
async fn pending(socket: &Path, tool: &str) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let list = admin::call(socket, &Admin::ApprovalsList { all: false })
            .await
            .map_err(|e| anyhow!("approvals list: {e}"))?;
        let found = list.as_array().and_then(|all| {
            all.iter()
                .find(|a| a["tool"] == tool)
                .and_then(|a| a["id"].as_str())
        });
        if let Some(id) = found {
            return Ok(id.to_owned());
        }
        if Instant::now() > deadline {
            bail!("no pending approval for {tool} after 10 s: {list}");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// The upstream MCP server: any POST gets a JSON-RPC result for its id.
async fn serve_upstream(listener: TcpListener, arrivals: Arrivals) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            return;
        };
        let _ = tcp.set_nodelay(true);
        let arrivals = arrivals.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                answer(req, arrivals.clone())
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}

async fn answer(
    req: Request<Incoming>,
    arrivals: Arrivals,
) -> Result<Response<Full<Bytes>>, Infallible> {
    // The request line and headers are in: the call has reached the upstream.
    let arrived = Instant::now();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let msg: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if msg["method"] == "tools/call" {
        if let Some(tool) = msg["params"]["name"].as_str() {
            arrivals
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(tool.to_owned(), arrived);
        }
    }
    let result = json!({"jsonrpc": "2.0", "id": msg["id"],
                        "result": {"content": [{"type": "text", "text": "ok"}]}});
    let mut response = Response::new(Full::new(Bytes::from(
        serde_json::to_vec(&result).unwrap_or_default(),
    )));
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

struct Percentiles {
    p50: Duration,
    p90: Duration,
    max: Duration,
}

impl Percentiles {
    fn of(mut samples: Vec<Duration>) -> Self {
        samples.sort();
        let at = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
        Self {
            p50: at(0.5),
            p90: at(0.9),
            max: samples[samples.len() - 1],
        }
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}
