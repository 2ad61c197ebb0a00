//! `cargo xtask`: set up the toolchain prerequisites, run the gateway, run every test,
//! run the benchmarks.
//!
//! xtask does not depend on the gateway crate: building the gateway builds its eBPF programs,
//! which needs the prerequisites xtask installs (nightly `rust-src`, `bpf-linker`). Whatever
//! links the gateway (the stage benchmarks in `benches/`) is built only after set-up.

mod bench;
mod bench_mcp;
mod deb;
mod install;
mod setup;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what building and testing need (idempotent): nightly rust-src, bpf-linker,
    /// Debian packages, a mounted bpffs, the MCP test peers (Python venv, Node packages).
    Setup,
    /// Build (release) and run `mcpgw serve`; extra arguments go to `serve`.
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Set up, check formatting and lints, run unit tests and the root end-to-end tests.
    Test {
        /// Only run tests whose name contains this.
        filter: Option<String>,
    },
    /// Build the Debian package (target/debian/mcpgw_<version>_<arch>.deb) and print its path.
    Deb(deb::DebArgs),
    /// Install mcpgw on this host (or under --root) as the package would, without packaging.
    Install(install::InstallArgs),
    /// Benchmarks; prints figures and ratios against a direct connection.
    Bench {
        #[command(subcommand)]
        which: bench::Which,
    },
    /// Used by the benchmarks: an echo server (runs inside the benchmark namespace).
    #[command(hide = true)]
    BenchEcho { addr: String },
    /// Used by the benchmarks: the load generator (runs inside the benchmark cgroup).
    #[command(hide = true)]
    BenchClient {
        addr: String,
        #[arg(long)]
        connections: usize,
        #[arg(long)]
        concurrency: usize,
    },
    /// Used by `bench mcp`: the upstream MCP responder (TLS, HTTP/1.1 keep-alive).
    #[command(hide = true)]
    BenchMcpUpstream {
        addr: String,
        #[arg(long)]
        cert: PathBuf,
        #[arg(long)]
        key: PathBuf,
    },
    /// Used by `bench mcp`: the `tools/call` load generator; prints JSON figures.
    #[command(hide = true)]
    BenchMcpClient {
        addr: String,
        #[arg(long)]
        ca: PathBuf,
        #[arg(long)]
        requests: usize,
        #[arg(long)]
        concurrency: usize,
        #[arg(long, default_value_t = 1000)]
        warmup: usize,
    },
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Task::Setup => setup::setup(),
        Task::Run { args } => {
            setup::build_prerequisites()?;
            cargo(&["build", "--release", "-p", "gateway"])?;
            let bin = target_dir().join("release/mcpgw");
            let status = Command::new(&bin)
                .arg("serve")
                .args(&args)
                .status()
                .with_context(|| format!("running {}", bin.display()))?;
            if !status.success() {
                bail!("mcpgw serve exited with {status}");
            }
            Ok(())
        }
        Task::Test { filter } => test(filter),
        Task::Deb(args) => deb::deb(&args).map(|path| println!("{}", path.display())),
        Task::Install(args) => install::install(&args),
        Task::Bench { which } => bench::run(which),
        Task::BenchEcho { addr } => bench::echo_server(&addr),
        Task::BenchClient {
            addr,
            connections,
            concurrency,
        } => bench::client(&addr, connections, concurrency),
        Task::BenchMcpUpstream { addr, cert, key } => bench_mcp::upstream(&addr, &cert, &key),
        Task::BenchMcpClient {
            addr,
            ca,
            requests,
            concurrency,
            warmup,
        } => bench_mcp::load(&addr, &ca, requests, concurrency, warmup),
    }
}

fn test(filter: Option<String>) -> Result<()> {
    setup::setup()?;
    cargo(&["fmt", "--all", "--check"])?;
    cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ])?;
    // The end-to-end tests run the real binary.
    cargo(&["build", "-p", "gateway"])?;
    let filter: Vec<&str> = filter.iter().map(String::as_str).collect();
    let mut unit = vec!["test", "--workspace", "--exclude", "mcpgw-tests"];
    unit.extend(&filter);
    cargo(&unit)?;
    // Root tests share the kernel's cgroup hooks and bpffs: one at a time.
    let mut e2e = vec!["test", "-p", "mcpgw-tests", "--"];
    e2e.extend(&filter);
    e2e.push("--test-threads=1");
    let bin = target_dir().join("debug/mcpgw");
    run(Command::new(cargo_bin()).args(&e2e).env("MCPGW_BIN", bin))
}

/// The checkout (`MCPGW_WORKSPACE` overrides it: a copy of the files `install` needs, for a
/// host that does not see the checkout).
pub fn workspace_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("MCPGW_WORKSPACE") {
        return PathBuf::from(dir);
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_owned()
}

pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_dir().join("target"))
}

fn cargo_bin() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

pub fn cargo(args: &[&str]) -> Result<()> {
    run(Command::new(cargo_bin())
        .args(args)
        .current_dir(workspace_dir()))
}

pub fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("+ {cmd:?}");
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}
