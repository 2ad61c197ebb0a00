//! Idempotent set-up of everything building and testing need on a fresh Debian host.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _, Result};

use crate::{run, target_dir, workspace_dir};

/// bpf-linker 0.10.0 uses rustc's own LLVM; newer releases need an LLVM this host lacks.
const BPF_LINKER_VERSION: &str = "0.10.0";

/// Debian packages the tests and benchmarks use, by the command that shows they are there.
const PACKAGES: &[(&str, &str)] = &[
    ("/usr/sbin/ip", "iproute2"),
    ("/usr/bin/nsenter", "util-linux"),
    ("/usr/bin/setpriv", "util-linux"),
    ("/usr/bin/python3", "python3"),
    // Packaging (`cargo xtask deb`) and its tests.
    ("/usr/bin/systemd-analyze", "systemd"),
    ("/usr/bin/dpkg-deb", "dpkg"),
    ("/usr/bin/objdump", "binutils"),
    ("/usr/bin/openssl", "openssl"),
    ("/usr/sbin/update-ca-certificates", "ca-certificates"),
];

/// Everything building and testing need.
pub fn setup() -> Result<()> {
    build_prerequisites()?;
    debian_packages()?;
    chromium()?;
    peers()?;
    Ok(())
}

/// What building and running the gateway needs (no test peers).
pub fn build_prerequisites() -> Result<()> {
    rust_src()?;
    bpf_linker()?;
    bpffs()
}

fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn rust_src() -> Result<()> {
    let installed = output(Command::new("rustup").args([
        "component",
        "list",
        "--installed",
        "--toolchain",
        "nightly",
    ]))
    .unwrap_or_default();
    if installed.lines().any(|l| l.starts_with("rust-src")) {
        return Ok(());
    }
    run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]))
}

fn bpf_linker() -> Result<()> {
    let version = output(Command::new("bpf-linker").arg("--version")).unwrap_or_default();
    if version.contains(BPF_LINKER_VERSION) {
        return Ok(());
    }
    run(Command::new("cargo").args([
        "install",
        "bpf-linker",
        "--version",
        BPF_LINKER_VERSION,
        "--locked",
        "--force",
    ]))
}

fn debian_packages() -> Result<()> {
    let mut missing: Vec<&str> = PACKAGES
        .iter()
        .filter(|(path, _)| !Path::new(path).exists())
        .map(|(_, package)| *package)
        .collect();
    missing.dedup();
    if missing.is_empty() {
        return Ok(());
    }
    run(Command::new("apt-get")
        .arg("update")
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

/// Debian's `chromium`, which the HTML export test renders the session page with (headless).
/// Installed from the current package lists if they are good enough, else after refreshing
/// them (stale lists name package versions the mirror no longer has).
fn chromium() -> Result<()> {
    const CHROMIUM: &str = "/usr/bin/chromium";
    if Path::new(CHROMIUM).exists() {
        return Ok(());
    }
    let install = || {
        run(Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends", "chromium"])
            .env("DEBIAN_FRONTEND", "noninteractive"))
    };
    if install().is_err() || !Path::new(CHROMIUM).exists() {
        run(Command::new("apt-get")
            .arg("update")
            .env("DEBIAN_FRONTEND", "noninteractive"))?;
        install()?;
    }
    if !Path::new(CHROMIUM).exists() {
        bail!("{CHROMIUM} is still missing after installing chromium");
    }
    Ok(())
}

/// nginx, the peer proxy `bench mcp` runs (in its own network namespace, from its own
/// config). Installed only by that benchmark: `nginx-light` if the distro has it, else `nginx`.
/// The distro's service is not wanted: if the package scripts started it, it is stopped.
pub fn nginx() -> Result<()> {
    const NGINX: &str = "/usr/sbin/nginx";
    if Path::new(NGINX).exists() {
        return Ok(());
    }
    run(Command::new("apt-get")
        .arg("update")
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    let install = |package: &str| {
        run(Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends", package])
            .env("DEBIAN_FRONTEND", "noninteractive"))
    };
    install("nginx-light").or_else(|_| install("nginx"))?;
    if !Path::new(NGINX).exists() {
        bail!("{NGINX} is still missing after installing nginx");
    }
    stop_distro_nginx();
    Ok(())
}

/// Stops the nginx the package's scripts may have started (the default config's pid file).
fn stop_distro_nginx() {
    let _ = Command::new("systemctl")
        .args(["disable", "--now", "nginx"])
        .stderr(std::process::Stdio::null())
        .status();
    let pid_file = Path::new("/run/nginx.pid");
    if pid_file.exists() {
        let _ = Command::new("/usr/sbin/nginx")
            .args(["-s", "quit"])
            .status();
    }
}

/// Pinned links (fail_mode closed) live in bpffs; systemd mounts it, bare hosts may not.
fn bpffs() -> Result<()> {
    if !nix_is_root() {
        return Ok(());
    }
    let mounts =
        std::fs::read_to_string("/proc/self/mounts").context("reading /proc/self/mounts")?;
    if mounts
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some("/sys/fs/bpf"))
    {
        return Ok(());
    }
    let status = Command::new("mount")
        .args(["-t", "bpf", "bpf", "/sys/fs/bpf"])
        .status()
        .context("mount")?;
    if !status.success() {
        bail!("cannot mount bpffs at /sys/fs/bpf");
    }
    Ok(())
}

fn nix_is_root() -> bool {
    output(Command::new("id").arg("-u")).is_some_and(|u| u.trim() == "0")
}

/// The real MCP peers the end-to-end tests drive: the official Python SDK in a venv at
/// `<target>/peers/venv` (pins in `tests/peers/requirements.txt`) and the TypeScript SDK plus
/// server-everything in `<target>/peers/node` (from `tests/peers/node/package-lock.json`).
/// A stamp (a copy of the pin file last installed) skips the work when nothing changed.
fn peers() -> Result<()> {
    let src = workspace_dir().join("tests/peers");
    let dir = target_dir().join("peers");
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    python_peers(&src, &dir.join("venv"))?;
    node_peers(&src.join("node"), &dir.join("node"))
}

/// Whether `stamp` holds exactly `pins` (the pin file's text at the last good install).
fn stamped(stamp: &Path, pins: &str) -> bool {
    fs::read_to_string(stamp).is_ok_and(|s| s == pins)
}

fn python_peers(src: &Path, venv: &Path) -> Result<()> {
    let requirements = src.join("requirements.txt");
    let pins = fs::read_to_string(&requirements)
        .with_context(|| format!("reading {}", requirements.display()))?;
    let stamp = venv.join(".mcpgw-requirements");
    let python = venv.join("bin/python");
    if python.exists() && stamped(&stamp, &pins) {
        return Ok(());
    }
    // The system interpreter, not a pyenv shim: clients run as nobody, who cannot enter /root.
    let system = "/usr/bin/python3";
    if !Command::new(system)
        .args(["-c", "import ensurepip"])
        .status()
        .is_ok_and(|s| s.success())
    {
        run(Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends", "python3-venv"])
            .env("DEBIAN_FRONTEND", "noninteractive"))?;
    }
    if !python.exists() {
        run(Command::new(system).arg("-m").arg("venv").arg(venv))?;
    }
    run(Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "-q",
            "-r",
        ])
        .arg(&requirements))?;
    fs::write(&stamp, pins).with_context(|| format!("writing {}", stamp.display()))
}

fn node_peers(src: &Path, dest: &Path) -> Result<()> {
    let lock = fs::read_to_string(src.join("package-lock.json"))
        .context("reading tests/peers/node/package-lock.json")?;
    let stamp = dest.join(".mcpgw-package-lock");
    if dest.join("node_modules").is_dir() && stamped(&stamp, &lock) {
        return Ok(());
    }
    if output(Command::new("npm").arg("--version")).is_none() {
        bail!("npm not found: the MCP test peers need Node.js 20+ with npm");
    }
    fs::create_dir_all(dest).with_context(|| format!("creating {}", dest.display()))?;
    for file in ["package.json", "package-lock.json"] {
        let (from, to): (PathBuf, PathBuf) = (src.join(file), dest.join(file));
        fs::copy(&from, &to).with_context(|| format!("copying {}", from.display()))?;
    }
    run(Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(dest))?;
    fs::write(&stamp, lock).with_context(|| format!("writing {}", stamp.display()))
}
