//! `cargo xtask install`: what the Debian package does, straight onto this host (or into
//! `--root DIR`) without packaging: the files of [`deb::FILES`], the user and groups
//! (systemd-sysusers), the directories (systemd-tmpfiles), then daemon-reload, enable and
//! (re)start mcpgw.service where systemd runs.
//!
//! Safe to run again: every file is replaced whole (a running binary keeps its old inode), an
//! existing /etc/mcpgw/gateway.toml is kept, users and directories that exist are left alone.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _, Result};
use clap::Args;

use crate::{
    deb::{self, BinaryArgs},
    run, workspace_dir,
};

#[derive(Args, Debug)]
pub struct InstallArgs {
    #[command(flatten)]
    pub binary: BinaryArgs,
    /// Install into this directory instead of / (nothing is started).
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// Enable the service but do not (re)start it.
    #[arg(long)]
    pub no_start: bool,
}

pub fn install(args: &InstallArgs) -> Result<()> {
    let bin = deb::binary(&args.binary)?;
    let root = args.root.as_deref().filter(|r| *r != Path::new("/"));
    let base = root.unwrap_or(Path::new("/"));
    for (src, dest, mode) in deb::FILES {
        let to = base.join(dest);
        if dest.starts_with("etc/") && to.exists() {
            let example = base.join("usr/share/doc/mcpgw/examples/gateway.toml");
            eprintln!(
                "kept {} (an existing config is never replaced; the example is {})",
                to.display(),
                example.display()
            );
            continue;
        }
        let dir = to.parent().expect("files live in directories");
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let name = to.file_name().expect("a file name").to_string_lossy();
        let tmp = dir.join(format!(".{name}.xtask-install"));
        if src.is_empty() {
            deb::install_binary(&bin, &tmp)?;
        } else {
            let from = workspace_dir().join(src);
            fs::copy(&from, &tmp).with_context(|| format!("copying {}", from.display()))?;
        }
        deb::set_mode(&tmp, *mode)?;
        fs::rename(&tmp, &to).with_context(|| format!("installing {}", to.display()))?;
        eprintln!("installed {}", to.display());
    }
    users(root)?;
    directories(root)?;
    service(root, args.no_start)
}

fn has(program: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program}"))
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn root_arg(root: Option<&Path>) -> Vec<String> {
    root.map(|r| vec![format!("--root={}", r.display())])
        .unwrap_or_default()
}

/// User mcpgw and group mcpgw-admin, as systemd/sysusers.d/mcpgw.conf says.
fn users(root: Option<&Path>) -> Result<()> {
    if has("systemd-sysusers") {
        return run(Command::new("systemd-sysusers")
            .args(root_arg(root))
            .arg("mcpgw.conf"));
    }
    if root.is_some() {
        bail!("systemd-sysusers is needed to create users in another root");
    }
    let exists = |db: &str, name: &str| {
        Command::new("getent")
            .args([db, name])
            .stdout(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !exists("group", "mcpgw-admin") {
        run(Command::new("groupadd").args(["--system", "mcpgw-admin"]))?;
    }
    if !exists("passwd", "mcpgw") {
        run(Command::new("useradd").args([
            "--system",
            "--user-group",
            "--home-dir",
            "/var/lib/mcpgw",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            "--comment",
            "mcpgw MCP gateway",
            "mcpgw",
        ]))?;
    }
    run(Command::new("usermod").args(["--append", "--groups", "mcpgw-admin", "mcpgw"]))
}

/// The directories of systemd/tmpfiles.d/mcpgw.conf.
fn directories(root: Option<&Path>) -> Result<()> {
    if !has("systemd-tmpfiles") {
        eprintln!("systemd-tmpfiles not found: the unit's StateDirectory= and RuntimeDirectory= make the directories");
        return Ok(());
    }
    let mut cmd = Command::new("systemd-tmpfiles");
    cmd.args(root_arg(root)).arg("--create");
    if root.is_some() {
        // /sys and /run belong to the running host, not to the root being prepared.
        cmd.args(["--exclude-prefix=/sys", "--exclude-prefix=/run"]);
    }
    cmd.arg("mcpgw.conf");
    if let Err(error) = run(&mut cmd) {
        if root.is_some() {
            return Err(error);
        }
        // Most likely no bpffs at /sys/fs/bpf: only fail_mode = "closed" needs it.
        eprintln!("warning: {error:#}");
    }
    Ok(())
}

/// Enable (and unless told otherwise, (re)start) the unit where systemd runs; elsewhere only
/// enable it, offline.
fn service(root: Option<&Path>, no_start: bool) -> Result<()> {
    let systemd_runs = root.is_none() && Path::new("/run/systemd/system").is_dir();
    if !systemd_runs {
        let base = root.unwrap_or(Path::new("/"));
        run(Command::new("systemctl")
            .arg(format!("--root={}", base.display()))
            .args(["enable", "mcpgw.service"]))?;
        eprintln!(
            "mcpgw.service is enabled in {}; systemd is not running there, so nothing was started",
            base.display()
        );
        return Ok(());
    }
    run(Command::new("systemctl").arg("daemon-reload"))?;
    run(Command::new("systemctl").args(["enable", "mcpgw.service"]))?;
    if no_start {
        eprintln!("mcpgw.service is enabled, not started (--no-start)");
        return Ok(());
    }
    run(Command::new("systemctl").args(["restart", "mcpgw.service"]))?;
    eprintln!("mcpgw.service is running: systemctl status mcpgw");
    Ok(())
}
