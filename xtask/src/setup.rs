//! Idempotent set-up of everything building and testing need on a fresh Debian host.

use std::{path::Path, process::Command};

use anyhow::{bail, Context as _, Result};

use crate::run;

/// bpf-linker 0.10.0 uses rustc's own LLVM; newer releases need an LLVM this host lacks.
const BPF_LINKER_VERSION: &str = "0.10.0";

/// Debian packages the tests and benchmarks use, by the command that shows they are there.
const PACKAGES: &[(&str, &str)] = &[
    ("/usr/sbin/ip", "iproute2"),
    ("/usr/bin/nsenter", "util-linux"),
    ("/usr/bin/setpriv", "util-linux"),
    ("/usr/bin/python3", "python3"),
];

pub fn setup() -> Result<()> {
    rust_src()?;
    bpf_linker()?;
    debian_packages()?;
    bpffs()?;
    Ok(())
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
