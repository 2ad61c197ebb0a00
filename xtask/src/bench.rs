//! Benchmarks. `redirect`: connect + first byte latency and connections per second for a
//! client in an intercepted cgroup dialing an echo server (a) directly, with no programs
//! attached, (b) through the eBPF redirect and the gateway's pass-through, and (c) to a
//! non-target port while the programs are attached (what interception costs other traffic).
//! Everything runs in a private network namespace; figures are ratios against (a).
//! `mcp` (MCP round trips through mcpgw and nginx) lives in `bench_mcp`.

use std::{
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream},
    process::Stdio,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use clap::Subcommand;
use mcpgw_tests::{ebpf_config, Cgroup, Gateway, Netns};
use serde_json::{json, Value};

use crate::{cargo, target_dir};

#[derive(Subcommand, Clone, Copy)]
pub enum Which {
    /// connect()+first byte latency and connections/s: direct vs through the redirect.
    Redirect,
    /// MCP `tools/call` round trips at c=1 and c=64: direct vs mcpgw vs nginx (TLS everywhere).
    Mcp {
        /// Run mcpgw with `recording.store = "none"` (to see what recording costs).
        #[arg(long)]
        no_recording: bool,
    },
    /// The masking stage alone: MB/s on a 1 MB tool result, time for a 2 KB one.
    Mask,
    /// The recording store: events/s to durable commit, added latency per message.
    Record,
    /// Policy decisions with 10 and 1,000 rules; token validation with a warm key cache.
    Policy,
    /// The credential stage: a cache hit (signing included) and a miss against moto's STS.
    Creds,
    /// Approve command → held call reaching the upstream (mcpgw in explicit mode).
    Approval,
}

const TARGET: &str = "10.0.3.17:8443";
const NON_TARGET: &str = "10.0.3.17:9000";
const LATENCY_CONNECTIONS: usize = 2000;
const RATE_CONNECTIONS: usize = 8000;
const RATE_CONCURRENCY: usize = 8;

pub fn run(which: Which) -> Result<()> {
    match which {
        Which::Redirect => redirect(),
        Which::Mcp { no_recording } => crate::bench_mcp::run(no_recording),
        Which::Mask => stage("mask"),
        Which::Record => stage("record"),
        Which::Policy => stage("policy"),
        Which::Creds => {
            // moto's STS server comes with the test peers.
            crate::setup::setup()?;
            stage("creds")
        }
        Which::Approval => {
            crate::setup::build_prerequisites()?;
            cargo(&["build", "--release", "-p", "gateway"])?;
            stage("approval")
        }
    }
}

fn redirect() -> Result<()> {
    if !mcpgw_tests::require_root() {
        bail!("the redirect benchmark needs root (network namespace, cgroup, eBPF)");
    }
    crate::setup::setup()?;
    cargo(&["build", "--release", "-p", "gateway", "-p", "xtask"])?;
    let gateway_bin = target_dir().join("release/mcpgw");

    let direct = scenario("direct (no gateway)", TARGET, None)?;
    let redirected = scenario("redirect + pass-through", TARGET, Some(&gateway_bin))?;
    let other = scenario(
        "non-target, programs attached",
        NON_TARGET,
        Some(&gateway_bin),
    )?;

    println!();
    println!("| path | p50 connect+1st byte (µs) | p99 (µs) | connections/s (c={RATE_CONCURRENCY}) | p50 ratio vs direct | conn/s ratio vs direct |");
    println!("|---|---|---|---|---|---|");
    for (name, r) in [&direct, &redirected, &other] {
        println!(
            "| {name} | {:.0} | {:.0} | {:.0} | {:.2} | {:.2} |",
            r.p50_us,
            r.p99_us,
            r.rate,
            r.p50_us / direct.1.p50_us,
            r.rate / direct.1.rate
        );
    }
    println!();
    println!("machine: {}", mcpgw_tests::machine());
    Ok(())
}

struct Figures {
    p50_us: f64,
    p99_us: f64,
    rate: f64,
}

fn scenario(
    name: &'static str,
    dial: &str,
    gateway: Option<&std::path::Path>,
) -> Result<(&'static str, Figures)> {
    eprintln!("== {name}");
    let ns = Netns::new()?;
    let cg = Cgroup::new()?;
    let xtask = std::env::current_exe()?;
    let mut echo = ns
        .cmd(&xtask)
        .args(["bench-echo", "10.0.3.17:8443"])
        .stdout(Stdio::null())
        .spawn()
        .context("echo server")?;
    let mut echo_other = ns
        .cmd(&xtask)
        .args(["bench-echo", NON_TARGET])
        .stdout(Stdio::null())
        .spawn()
        .context("echo server")?;
    std::thread::sleep(Duration::from_millis(300));
    let _gw = match gateway {
        Some(bin) => {
            // The harness starts the binary named by MCPGW_BIN; no other thread is running.
            std::env::set_var("MCPGW_BIN", bin);
            Some(Gateway::start(
                &ns,
                Some(&cg),
                &ebpf_config(&cg, "open", &[TARGET]),
            )?)
        }
        None => None,
    };
    let client = |connections: usize, concurrency: usize| -> Result<Value> {
        let out = cg
            .cmd(&ns, None, &xtask)
            .args([
                "bench-client",
                dial,
                "--connections",
                &connections.to_string(),
                "--concurrency",
                &concurrency.to_string(),
            ])
            .stderr(Stdio::inherit())
            .output()
            .context("bench client")?;
        if !out.status.success() {
            bail!("bench client failed: {}", out.status);
        }
        Ok(serde_json::from_slice(&out.stdout)?)
    };
    // Warm up, then measure.
    client(200, 1)?;
    let latency = client(LATENCY_CONNECTIONS, 1)?;
    let rate = client(RATE_CONNECTIONS, RATE_CONCURRENCY)?;
    let _ = echo.kill();
    let _ = echo.wait();
    let _ = echo_other.kill();
    let _ = echo_other.wait();
    let f = |v: &Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    let figures = Figures {
        p50_us: f(&latency, "p50_us"),
        p99_us: f(&latency, "p99_us"),
        rate: f(&rate, "connections_per_sec"),
    };
    eprintln!(
        "   p50 {:.0} µs, p99 {:.0} µs, {:.0} connections/s",
        figures.p50_us, figures.p99_us, figures.rate
    );
    Ok((name, figures))
}

pub fn echo_server(addr: &str) -> Result<()> {
    let listener = TcpListener::bind(addr).with_context(|| format!("bind {addr}"))?;
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stream.read(&mut buf) {
                if n == 0 || stream.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        });
    }
    Ok(())
}

/// Each connection: connect, send one byte, read the echo, close. Prints JSON figures.
pub fn client(addr: &str, connections: usize, concurrency: usize) -> Result<()> {
    let addr: std::net::SocketAddr = addr.parse()?;
    let samples = Arc::new(Mutex::new(Vec::with_capacity(connections)));
    let started = Instant::now();
    let per_worker = connections / concurrency.max(1);
    let workers: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let samples = samples.clone();
            std::thread::spawn(move || -> Result<()> {
                let mut local = Vec::with_capacity(per_worker);
                for _ in 0..per_worker {
                    let t = Instant::now();
                    let mut s = TcpStream::connect(addr)?;
                    s.set_nodelay(true)?;
                    s.write_all(b"x")?;
                    let mut b = [0u8; 1];
                    s.read_exact(&mut b)?;
                    local.push(t.elapsed());
                }
                samples
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend(local);
                Ok(())
            })
        })
        .collect();
    for w in workers {
        w.join().map_err(|_| anyhow::anyhow!("worker panicked"))??;
    }
    let elapsed = started.elapsed();
    let mut samples = samples.lock().unwrap_or_else(|e| e.into_inner()).clone();
    samples.sort();
    let pct = |p: f64| {
        samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)].as_secs_f64() * 1e6
    };
    println!(
        "{}",
        json!({
            "connections": samples.len(),
            "p50_us": pct(0.50),
            "p99_us": pct(0.99),
            "connections_per_sec": samples.len() as f64 / elapsed.as_secs_f64(),
        })
    );
    Ok(())
}

/// Runs a stage benchmark of `mcpgw-bench` (benches/) in a release build, once the gateway can
/// be built: timings of a debug build mean nothing.
fn stage(name: &str) -> Result<()> {
    crate::setup::build_prerequisites()?;
    cargo(&[
        "run",
        "--quiet",
        "--release",
        "-p",
        "mcpgw-bench",
        "--",
        name,
    ])
}
