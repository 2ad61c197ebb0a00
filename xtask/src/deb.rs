//! `cargo xtask deb`: a Debian package of mcpgw, built with dpkg-deb from the files in
//! [`FILES`] and the maintainer scripts in `packaging/debian/`.
//!
//! `cargo xtask install` (install.rs) puts the same files in the same places without a package.

use std::{
    fmt::Write as _,
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _, Result};
use clap::Args;

use crate::{cargo, run, target_dir, workspace_dir};

/// Which binary goes into the package (or onto the host).
#[derive(Args, Clone, Debug)]
pub struct BinaryArgs {
    /// Cargo profile to build `mcpgw` with (release, dev, ...).
    #[arg(long, default_value = "release", conflicts_with = "bin")]
    pub profile: String,
    /// Use this `mcpgw` binary instead of building one.
    #[arg(long)]
    pub bin: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct DebArgs {
    #[command(flatten)]
    pub binary: BinaryArgs,
    /// Where the .deb goes (default: <target>/debian).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// dpkg-deb compression: xz, gzip, zstd or none.
    #[arg(long, default_value = "xz")]
    pub compression: String,
}

/// The package's files: (source in the workspace, path on the host, mode). The binary comes
/// first, from [`binary`]; `etc/` entries are conffiles.
pub const FILES: &[(&str, &str, u32)] = &[
    ("", "usr/bin/mcpgw", 0o755),
    (
        "systemd/mcpgw.service",
        "lib/systemd/system/mcpgw.service",
        0o644,
    ),
    (
        "systemd/sysusers.d/mcpgw.conf",
        "usr/lib/sysusers.d/mcpgw.conf",
        0o644,
    ),
    (
        "systemd/tmpfiles.d/mcpgw.conf",
        "usr/lib/tmpfiles.d/mcpgw.conf",
        0o644,
    ),
    (
        "packaging/mcpgw-trust-ca",
        "usr/libexec/mcpgw/mcpgw-trust-ca",
        0o755,
    ),
    // Installed live: the embedded default, which intercepts nothing until configured.
    (
        "gateway/src/config/default.toml",
        "etc/mcpgw/gateway.toml",
        0o644,
    ),
    ("README.md", "usr/share/doc/mcpgw/README.md", 0o644),
    (
        "examples/gateway.toml",
        "usr/share/doc/mcpgw/examples/gateway.toml",
        0o644,
    ),
];

/// The maintainer scripts in `packaging/debian/`.
const SCRIPTS: &[&str] = &["postinst", "prerm", "postrm"];

pub fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// The `mcpgw` binary: the one given, or a fresh build with the profile given.
pub fn binary(args: &BinaryArgs) -> Result<PathBuf> {
    if let Some(bin) = &args.bin {
        if !bin.is_file() {
            bail!("{} is not a file", bin.display());
        }
        return Ok(bin.clone());
    }
    cargo(&["build", "--profile", &args.profile, "-p", "gateway"])?;
    let dir = match args.profile.as_str() {
        "dev" | "test" => "debug",
        "bench" => "release",
        other => other,
    };
    Ok(target_dir().join(dir).join("mcpgw"))
}

/// Copies the binary without its debug information (as dh_strip would), else as it is.
pub fn install_binary(from: &Path, to: &Path) -> Result<()> {
    let stripped = Command::new("objcopy")
        .arg("--strip-debug")
        .arg(from)
        .arg(to)
        .status()
        .is_ok_and(|s| s.success());
    if !stripped {
        fs::copy(from, to)
            .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    }
    Ok(())
}

pub fn set_mode(path: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {mode:o} {}", path.display()))
}

/// Builds the package and returns its path.
pub fn deb(args: &DebArgs) -> Result<PathBuf> {
    let bin = binary(&args.binary)?;
    let arch = output(Command::new("dpkg").arg("--print-architecture"))?;
    let name = format!("mcpgw_{}_{arch}", version());
    let out_dir = args
        .out
        .clone()
        .unwrap_or_else(|| target_dir().join("debian"));
    let stage = out_dir.join(&name);
    if stage.exists() {
        fs::remove_dir_all(&stage).with_context(|| format!("removing {}", stage.display()))?;
    }

    let mut installed_bytes = 0u64;
    let mut md5sums = String::new();
    for (src, dest, mode) in FILES {
        let to = stage.join(dest);
        fs::create_dir_all(to.parent().expect("files live in directories"))?;
        if src.is_empty() {
            install_binary(&bin, &to)?;
        } else {
            let from = workspace_dir().join(src);
            fs::copy(&from, &to).with_context(|| format!("copying {}", from.display()))?;
        }
        set_mode(&to, *mode)?;
        installed_bytes += fs::metadata(&to)?.len().div_ceil(1024) * 1024;
        writeln!(md5sums, "{}  {dest}", md5(&to)?)?;
    }
    let doc = stage.join("usr/share/doc/mcpgw/copyright");
    fs::write(&doc, COPYRIGHT)?;
    set_mode(&doc, 0o644)?;
    writeln!(md5sums, "{}  usr/share/doc/mcpgw/copyright", md5(&doc)?)?;

    let debian = stage.join("DEBIAN");
    fs::create_dir_all(&debian)?;
    set_mode(&debian, 0o755)?;
    let control = format!(
        "Package: mcpgw\n\
         Version: {version}\n\
         Architecture: {arch}\n\
         Maintainer: mcpgw maintainers <mcpgw@localhost>\n\
         Installed-Size: {size}\n\
         Depends: {depends}, ca-certificates, systemd\n\
         Section: net\n\
         Priority: optional\n\
         Description: host-resident gateway for MCP (Model Context Protocol) traffic\n \
         An eBPF program sends the host's connections to configured MCP servers through\n \
         mcpgw, which terminates TLS, applies policy, masks sensitive data and records\n \
         every message. Client processes are not changed.\n",
        version = version(),
        size = installed_bytes / 1024,
        depends = shared_library_depends(&bin)?,
    );
    fs::write(debian.join("control"), control)?;
    let conffiles: String = FILES
        .iter()
        .filter(|(_, dest, _)| dest.starts_with("etc/"))
        .map(|(_, dest, _)| format!("/{dest}\n"))
        .collect();
    fs::write(debian.join("conffiles"), conffiles)?;
    fs::write(debian.join("md5sums"), md5sums)?;
    for file in ["control", "conffiles", "md5sums"] {
        set_mode(&debian.join(file), 0o644)?;
    }
    for script in SCRIPTS {
        let from = workspace_dir().join("packaging/debian").join(script);
        let to = debian.join(script);
        fs::copy(&from, &to).with_context(|| format!("copying {}", from.display()))?;
        set_mode(&to, 0o755)?;
    }

    let deb = out_dir.join(format!("{name}.deb"));
    run(Command::new("dpkg-deb")
        .arg("--root-owner-group")
        .arg(format!("-Z{}", args.compression))
        .arg("--build")
        .arg(&stage)
        .arg(&deb))?;
    fs::remove_dir_all(&stage).with_context(|| format!("removing {}", stage.display()))?;
    Ok(deb)
}

/// `libc6 (>= 2.NN)` for the newest glibc symbol version the binary uses, plus the package of
/// every other shared library it needs (what dpkg-shlibdeps works out, without dpkg-dev).
fn shared_library_depends(bin: &Path) -> Result<String> {
    let symbols = output(Command::new("objdump").arg("-T").arg(bin))?;
    let glibc = symbols
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .filter_map(|word| word.strip_prefix("GLIBC_"))
        .filter_map(|v| {
            let mut parts = v.split('.').map(|p| p.parse::<u32>().ok());
            Some((parts.next()??, parts.next().flatten().unwrap_or(0)))
        })
        .max()
        .context("no GLIBC_ symbol versions in the binary")?;
    let mut depends = vec![format!("libc6 (>= {}.{})", glibc.0, glibc.1)];
    let headers = output(Command::new("objdump").arg("-p").arg(bin))?;
    let cache = output(Command::new("ldconfig").arg("-p"))?;
    for lib in headers
        .lines()
        .filter_map(|l| l.trim().strip_prefix("NEEDED"))
    {
        let lib = lib.trim();
        if lib.starts_with("libc.so") || lib.starts_with("libm.so") || lib.starts_with("ld-linux") {
            continue; // all in libc6
        }
        // `dpkg -S` wants a path as the package lists it: /lib and /usr/lib are the same
        // directory on merged-/usr systems, but dpkg knows only one of them.
        let paths: Vec<String> = cache
            .lines()
            .filter(|l| l.trim_start().starts_with(&format!("{lib} ")))
            .filter_map(|l| l.split("=> ").nth(1))
            .flat_map(|p| {
                let p = p.trim();
                let other = match p.strip_prefix("/usr") {
                    Some(rest) => rest.to_owned(),
                    None => format!("/usr{p}"),
                };
                [p.to_owned(), other]
            })
            .collect();
        let package = paths
            .iter()
            .find_map(|path| output(Command::new("dpkg").arg("-S").arg(path)).ok())
            .and_then(|owner| owner.split(':').next().map(str::to_owned))
            .filter(|p| !p.is_empty())
            .with_context(|| format!("no installed package owns {lib} (looked at {paths:?})"))?;
        depends.push(package);
    }
    Ok(depends.join(", "))
}

fn md5(path: &Path) -> Result<String> {
    let sum = output(Command::new("md5sum").arg(path))?;
    Ok(sum.split_whitespace().next().unwrap_or_default().to_owned())
}

/// stdout of a command that must succeed, trimmed.
fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("starting {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

const COPYRIGHT: &str = "\
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: mcpgw

Files: *
Copyright: the mcpgw authors
License: Apache-2.0
 On Debian systems the full text of the Apache License 2.0 is in
 /usr/share/common-licenses/Apache-2.0.
";
