//! Harness for the mcpgw end-to-end tests.
//!
//! Every root test builds its own world: a network namespace ([`Netns`]) with the
//! test addresses on `lo`, a child cgroup ([`Cgroup`]) that the eBPF programs attach
//! to, real peers (`peers/*.py`) and a real gateway process ([`Gateway`]). Everything
//! is torn down on drop, so a failing test does not leak namespaces, cgroups or
//! pinned links into the next one.
//!
//! Processes are put into the namespace with `nsenter --net=/run/netns/NAME` rather
//! than `ip netns exec`: the latter remounts `/sys`, which hides the cgroup2 mount
//! and bpffs from the gateway (it must see both to attach and pin).

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

pub mod mcp;
pub mod oidc;
pub mod sts;

/// The uid/gid clients drop to, so attribution of a non-root caller is checked.
pub const NOBODY: u32 = 65534;

/// Addresses every [`Netns`] puts on `lo`; the echo servers listen on them.
pub const TARGET_V4: &str = "10.0.3.17";
pub const TARGET_V6: &str = "fd00::17";

// ---------------------------------------------------------------------------
// Environment
// ---------------------------------------------------------------------------

/// Root tests call this first and return early on `false`.
///
/// In CI (CI=true/1) a root test that cannot run is a failure, not a skip:
/// otherwise a misconfigured runner would silently pass everything.
pub fn require_root() -> bool {
    if is_root() {
        return true;
    }
    let ci = std::env::var("CI").unwrap_or_default();
    if ci == "true" || ci == "1" {
        panic!(
            "this test needs root (CI is set, so it must not be skipped); run the tests as root"
        );
    }
    eprintln!("skipping: needs root");
    false
}

fn is_root() -> bool {
    // /proc/self/status "Uid: real effective saved fs": avoids a libc dependency.
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// The workspace root (parent of this crate's manifest dir).
pub fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests crate lives inside the workspace")
        .to_path_buf()
}

/// `MCPGW_BIN`, else `<target dir>/debug/mcpgw` (honouring CARGO_TARGET_DIR).
pub fn mcpgw_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("MCPGW_BIN") {
        return PathBuf::from(p);
    }
    target_dir().join("debug").join("mcpgw")
}

/// Cargo's target directory (honouring a relative or absolute CARGO_TARGET_DIR).
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from) {
        Some(p) if p.is_relative() => workspace_dir().join(p),
        Some(p) => p,
        None => workspace_dir().join("target"),
    }
}

/// A python3 that an unprivileged user can execute.
///
/// A pyenv shim under /root is not reachable after dropping to nobody, so
/// prefer the system interpreter; `MCPGW_TEST_PYTHON` overrides.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("MCPGW_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    for p in ["/usr/bin/python3", "/usr/local/bin/python3"] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    PathBuf::from("python3")
}

/// Directory holding the peer scripts, world-readable.
///
/// The scripts are embedded and written out (rather than run from the source tree)
/// so that a client running as nobody can read them even if the checkout lives
/// under a private home directory.
pub fn peers_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // One fixed dir, so repeated runs do not accumulate copies; write-then-rename
        // keeps a concurrent run from ever seeing a half-written script.
        let dir = std::env::temp_dir().join("mcpgw-tests-peers");
        fs::create_dir_all(&dir).expect("create peers dir");
        set_mode(&dir, 0o755);
        for (name, text) in [
            ("echo_server.py", include_str!("../peers/echo_server.py")),
            ("client.py", include_str!("../peers/client.py")),
        ] {
            let tmp = dir.join(format!(".{name}.{}", std::process::id()));
            fs::write(&tmp, text).expect("write peer script");
            set_mode(&tmp, 0o644);
            fs::rename(&tmp, dir.join(name)).expect("install peer script");
        }
        dir
    })
}

fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let _ = fs::set_permissions(p, fs::Permissions::from_mode(mode));
}

/// `<prefix>-<pid>-<n>`: unique per process and call, short enough for netns names.
pub fn unique_name(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Mount point of the cgroup v2 hierarchy, from /proc/self/mounts (hybrid hosts
/// have it at /sys/fs/cgroup/unified, pure v2 hosts at /sys/fs/cgroup).
pub fn cgroup2_mount() -> Result<PathBuf> {
    mount_of_type("cgroup2")?.ok_or_else(|| anyhow!("no cgroup2 mount in /proc/self/mounts"))
}

fn mount_of_type(fstype: &str) -> Result<Option<PathBuf>> {
    let mounts = fs::read_to_string("/proc/self/mounts").context("read /proc/self/mounts")?;
    Ok(mounts.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() > 2 && f[2] == fstype).then(|| PathBuf::from(f[1]))
    }))
}

/// Mounts bpffs at /sys/fs/bpf unless some bpffs is already mounted there.
pub fn ensure_bpffs() -> Result<()> {
    let mounts = fs::read_to_string("/proc/self/mounts")?;
    let mounted = mounts.lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() > 2 && f[1] == "/sys/fs/bpf" && f[2] == "bpf"
    });
    if !mounted {
        fs::create_dir_all("/sys/fs/bpf").ok();
        run(Command::new("mount").args(["-t", "bpf", "bpf", "/sys/fs/bpf"]))?;
    }
    Ok(())
}

/// Runs a command to completion; error (with its stderr) on non-zero exit.
pub fn run(cmd: &mut Command) -> Result<Output> {
    let out = cmd.output().with_context(|| format!("spawn {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}

/// Polls `f` every 50 ms until it yields `Some` or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Removes its directory on drop, unless the test is panicking: then the path is
/// printed so the gateway log and config can be inspected.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> Result<Self> {
        let p = std::env::temp_dir().join(unique_name("mcpgw-t"));
        fs::create_dir_all(&p).with_context(|| format!("create {}", p.display()))?;
        set_mode(&p, 0o755);
        Ok(Self(p))
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("keeping {} for inspection", self.0.display());
        } else {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

// ---------------------------------------------------------------------------
// Network namespace
// ---------------------------------------------------------------------------

/// A private network namespace with `lo` up and the test addresses on it.
pub struct Netns {
    name: String,
}

impl Netns {
    pub fn new() -> Result<Self> {
        let name = unique_name("mcpgw-t");
        run(Command::new("ip").args(["netns", "add", &name]))?;
        let ns = Self { name };
        run(ns.cmd("ip").args(["link", "set", "lo", "up"]))?;
        run(ns
            .cmd("ip")
            .args(["addr", "add", &format!("{TARGET_V4}/32"), "dev", "lo"]))?;
        run(ns.cmd("ip").args([
            "-6",
            "addr",
            "add",
            &format!("{TARGET_V6}/128"),
            "dev",
            "lo",
            "nodad",
        ]))?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `program` run inside the namespace (network only; mounts are the host's).
    pub fn cmd(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{}", self.name))
            .arg("--")
            .arg(program);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

// ---------------------------------------------------------------------------
// Cgroup
// ---------------------------------------------------------------------------

/// A child cgroup directly under the cgroup2 root; the gateway's intercept target.
pub struct Cgroup {
    name: String,
    dir: PathBuf,
}

impl Cgroup {
    pub fn new() -> Result<Self> {
        let name = unique_name("mcpgw-test");
        let dir = cgroup2_mount()?.join(&name);
        fs::create_dir(&dir).with_context(|| format!("mkdir {}", dir.display()))?;
        Ok(Self { name, dir })
    }

    /// Path relative to the cgroup2 mount, as `intercept.cgroup` wants it.
    pub fn path_in_hierarchy(&self) -> String {
        format!("/{}", self.name)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `program` run inside `ns` and this cgroup, as root or (with `uid`) as that
    /// uid/gid with no supplementary groups. The shell joins the cgroup and then
    /// execs, so the pid the test sees is the pid that calls connect().
    pub fn cmd(
        &self,
        ns: &Netns,
        uid: Option<u32>,
        program: impl AsRef<std::ffi::OsStr>,
    ) -> Command {
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(r#"echo $$ > "$0" && exec "$@""#)
            .arg(self.dir.join("cgroup.procs"))
            .arg("nsenter")
            .arg(format!("--net=/run/netns/{}", ns.name()))
            .arg("--");
        if let Some(uid) = uid {
            c.arg("setpriv")
                .arg(format!("--reuid={uid}"))
                .arg(format!("--regid={uid}"))
                .arg("--clear-groups")
                .arg("--");
        }
        c.arg(program);
        c
    }

    pub fn pids(&self) -> Vec<u32> {
        fs::read_to_string(self.dir.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        // cgroup.kill (5.14+) kills everything atomically; fall back to kill(1).
        if fs::write(self.dir.join("cgroup.kill"), "1").is_err() {
            for pid in self.pids() {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            }
        }
        let _ = wait_for(Duration::from_secs(5), || {
            self.pids().is_empty().then_some(())
        });
        // rmdir can briefly fail with EBUSY while exiting tasks are released.
        let _ = wait_for(Duration::from_secs(5), || fs::remove_dir(&self.dir).ok());
    }
}

// ---------------------------------------------------------------------------
// Processes and peers
// ---------------------------------------------------------------------------

/// A child process killed and reaped on drop.
pub struct Proc {
    child: Child,
}

impl Proc {
    /// Owns `child`: killed and reaped on drop.
    pub fn new(child: Child) -> Self {
        Self { child }
    }
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }
    /// Whether it has exited (and reaps it if so).
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts `peers/echo_server.py` inside `ns` (not in any test cgroup) and waits
/// for its "ready" line. `addrs` like "10.0.3.17:8443" or "[fd00::17]:8443".
pub fn echo_server(ns: &Netns, addrs: &[&str]) -> Result<Proc> {
    let mut cmd = ns.cmd(python());
    cmd.arg(peers_dir().join("echo_server.py"))
        .args(addrs)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = cmd.spawn().context("spawn echo_server.py")?;
    let stdout = child.stdout.take().expect("piped stdout");
    let mut proc = Proc { child };
    // Read on a thread so the wait is bounded even if the server never prints.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            match line {
                Ok(l) if l.trim() == "ready" => {
                    let _ = tx.send(());
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    });
    if rx.recv_timeout(Duration::from_secs(10)).is_err() {
        proc.kill();
        bail!("echo_server.py on {addrs:?} did not become ready");
    }
    Ok(proc)
}

/// Address family the client uses: see `peers/client.py --family`.
#[derive(Clone, Copy, Debug)]
pub enum Family {
    V4,
    V6,
    Mapped,
}

impl Family {
    fn arg(self) -> &'static str {
        match self {
            Family::V4 => "4",
            Family::V6 => "6",
            Family::Mapped => "mapped",
        }
    }
}

/// Appends the `client.py HOST PORT --family F` invocation to a command whose
/// program is the python interpreter (from [`Netns::cmd`] or [`Cgroup::cmd`]).
pub fn client_args(cmd: &mut Command, host: &str, port: u16, family: Family) {
    cmd.arg(peers_dir().join("client.py"))
        .arg(host)
        .arg(port.to_string())
        .arg("--family")
        .arg(family.arg());
}

/// Runs `client.py` in the netns only (outside any test cgroup), as root.
pub fn client_in_netns(ns: &Netns, host: &str, port: u16, family: Family) -> Result<ClientReport> {
    let mut cmd = ns.cmd(python());
    client_args(&mut cmd, host, port, family);
    run_client(cmd)
}

/// Runs `client.py` in the netns and the cgroup, as uid/gid nobody.
pub fn client_in_cgroup(
    ns: &Netns,
    cg: &Cgroup,
    host: &str,
    port: u16,
    family: Family,
) -> Result<ClientReport> {
    let mut cmd = cg.cmd(ns, Some(NOBODY), python());
    client_args(&mut cmd, host, port, family);
    run_client(cmd)
}

/// Runs a prepared client command (its own socket timeouts bound the run).
pub fn run_client(mut cmd: Command) -> Result<ClientReport> {
    let out = run(cmd.stdin(Stdio::null()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().ok_or_else(|| {
        anyhow!(
            "client printed nothing; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    ClientReport::parse(line)
}

/// What `client.py` saw. Addresses are normalised ([`norm`]) so v4-mapped and
/// plain v4 forms of the same endpoint compare equal.
#[derive(Clone, Debug)]
pub struct ClientReport {
    pub pid: u32,
    pub uid: u32,
    pub peername: Option<SocketAddr>,
    pub sockname: Option<SocketAddr>,
    pub server_saw: Option<SocketAddr>,
    pub sent: String,
    pub echo: Option<String>,
    pub error: Option<String>,
    pub raw: Value,
}

impl ClientReport {
    pub fn parse(line: &str) -> Result<Self> {
        let raw: Value =
            serde_json::from_str(line).with_context(|| format!("client output: {line}"))?;
        let addr = |k: &str| -> Option<SocketAddr> {
            let a = raw.get(k)?.as_array()?;
            let ip: IpAddr = a.first()?.as_str()?.parse().ok()?;
            let port = u16::try_from(a.get(1)?.as_u64()?).ok()?;
            Some(norm(SocketAddr::new(ip, port)))
        };
        let s = |k: &str| raw.get(k).and_then(Value::as_str).map(str::to_owned);
        let n = |k: &str| raw.get(k).and_then(Value::as_u64).unwrap_or(0) as u32;
        Ok(Self {
            pid: n("pid"),
            uid: n("uid"),
            peername: addr("peername"),
            sockname: addr("sockname"),
            server_saw: addr("server_saw"),
            sent: s("sent").unwrap_or_default(),
            echo: s("echo"),
            error: s("error"),
            raw,
        })
    }

    /// Connected, and every byte sent came back after the half-close.
    pub fn assert_echoed(&self) {
        assert_eq!(self.error, None, "client failed: {}", self.raw);
        assert_eq!(
            self.echo.as_deref(),
            Some(self.sent.as_str()),
            "echo mismatch: {}",
            self.raw
        );
    }

    /// The server saw the client's own socket: nothing sat in between.
    pub fn went_direct(&self) -> bool {
        self.sockname.is_some() && self.server_saw == self.sockname
    }
}

/// Folds v4-mapped IPv6 addresses to plain IPv4.
pub fn norm(a: SocketAddr) -> SocketAddr {
    match a.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), a.port()),
            None => a,
        },
        IpAddr::V4(_) => a,
    }
}

/// Parses "ip:port" / "[v6]:port" and normalises it.
pub fn sa(s: &str) -> SocketAddr {
    norm(
        s.parse()
            .unwrap_or_else(|e| panic!("bad socket address {s:?}: {e}")),
    )
}

// ---------------------------------------------------------------------------
// Gateway
// ---------------------------------------------------------------------------

/// Standard eBPF-mode config for a test: listens on 127.0.0.1/[::1]:15001 and
/// intercepts `targets` for `cg`. `@DIR@` is filled in by [`Gateway::start`].
pub fn ebpf_config(cg: &Cgroup, fail_mode: &str, targets: &[&str]) -> String {
    let list = targets
        .iter()
        .map(|t| format!("{t:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let servers = format!(
        r#"# The echo peer speaks raw TCP, not HTTP: relay it unchecked.
[[servers]]
name     = "echo"
non_http = "pass"
match    = [{list}]
"#
    );
    gateway_config(cg, fail_mode, &servers)
}

/// Lets every call through: tests of other stages must not depend on policy. Tests of
/// policy write their own rules.
pub const ALLOW_ALL: &str = "[[policy.rules]]\nid = \"allow-all\"\naction = \"allow\"\n";

/// An eBPF-mode gateway for `cg` (state and admin socket in the gateway's temp dir, pins
/// under a per-cgroup bpffs directory) followed by `rest` (servers and other sections), and
/// an allow-all policy rule unless `rest` has rules.
pub fn gateway_config(cg: &Cgroup, fail_mode: &str, rest: &str) -> String {
    let policy = if rest.contains("[[policy.rules]]") {
        ""
    } else {
        ALLOW_ALL
    };
    format!(
        r#"[gateway]
state_dir    = "@DIR@/state"
admin_socket = "@DIR@/admin.sock"
listen       = ["127.0.0.1:15001", "[::1]:15001"]
fail_mode    = "{fail_mode}"

[intercept]
mode        = "ebpf"
cgroup      = "{cgroup}"
bypass_mark = 0x4d43
pin_dir     = "/sys/fs/bpf/{name}"

{rest}
{policy}"#,
        cgroup = cg.path_in_hierarchy(),
        name = cg.name(),
    )
}

/// A running `mcpgw serve`. Killed on drop, and its pin dir removed so pinned
/// links (fail_mode closed) do not outlive the test.
pub struct Gateway {
    proc: Proc,
    dir: TempDir,
    admin_socket: PathBuf,
    pin_dir: Option<PathBuf>,
}

impl Gateway {
    /// Writes `config` (with `@DIR@` replaced by a fresh temp dir) and starts the
    /// gateway in `ns`, and in `cg` if given (so its own upstream dials are
    /// subject to interception and prove the bypass mark). Returns once `status`
    /// answers over the admin socket.
    pub fn start(ns: &Netns, cg: Option<&Cgroup>, config: &str) -> Result<Self> {
        Self::start_with_hosts(ns, cg, config, None)
    }

    /// `start`, with `hosts` bind-mounted over /etc/hosts in a private mount namespace of
    /// the gateway: name resolution under the test's control (rewrite the file in place).
    pub fn start_with_hosts(
        ns: &Netns,
        cg: Option<&Cgroup>,
        config: &str,
        hosts: Option<&Path>,
    ) -> Result<Self> {
        ensure_bpffs()?;
        let bin = mcpgw_bin();
        if !bin.exists() {
            bail!(
                "gateway binary {} not found (build it or set MCPGW_BIN)",
                bin.display()
            );
        }
        let dir = TempDir::new()?;
        let config = config.replace("@DIR@", &dir.path().display().to_string());
        let admin_socket = toml_string(&config, "admin_socket")
            .map(PathBuf::from)
            .ok_or_else(|| anyhow!("config has no admin_socket"))?;
        let pin_dir = toml_string(&config, "pin_dir").map(PathBuf::from);
        let cfg_path = dir.path().join("mcpgw.toml");
        fs::write(&cfg_path, &config)?;

        let program: &std::ffi::OsStr = if hosts.is_some() {
            "unshare".as_ref()
        } else {
            bin.as_ref()
        };
        let mut cmd = match cg {
            Some(cg) => cg.cmd(ns, None, program),
            None => ns.cmd(program),
        };
        if let Some(hosts) = hosts {
            cmd.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
                .arg(r#"mount --bind "$0" /etc/hosts && exec "$@""#)
                .arg(hosts)
                .arg(&bin);
        }
        cmd.arg("serve")
            .arg("--config")
            .arg(&cfg_path)
            .stdin(Stdio::null())
            .stdout(fs::File::create(dir.path().join("stdout.log"))?)
            .stderr(fs::File::create(dir.path().join("stderr.log"))?);
        if std::env::var_os("MCPGW_LOG").is_none() {
            // Debug for the eBPF programs: tests check that their log lines arrive.
            cmd.env("MCPGW_LOG", "info,aya::bpf=error,gateway_ebpf=debug");
        }
        let child = cmd.spawn().context("spawn mcpgw serve")?;
        let mut gw = Self {
            proc: Proc { child },
            dir,
            admin_socket,
            pin_dir,
        };

        let ready = wait_for(Duration::from_secs(20), || {
            if gw.proc.exited() {
                return Some(false);
            }
            gw.try_status().ok().map(|_| true)
        });
        match ready {
            Some(true) => Ok(gw),
            Some(false) => bail!("mcpgw exited during startup:\n{}", gw.log()),
            None => bail!("mcpgw did not answer status within 20s:\n{}", gw.log()),
        }
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn admin_socket(&self) -> &Path {
        &self.admin_socket
    }

    /// `mcpgw --socket SOCK ARGS...`, run from the host namespace (the admin
    /// socket is a path, so it is reachable across network namespaces).
    pub fn cli<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        Command::new(mcpgw_bin())
            .arg("--socket")
            .arg(&self.admin_socket)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run mcpgw cli")
    }

    /// Like [`Gateway::cli`], panicking with the gateway log on failure.
    pub fn cli_ok(&self, args: &[&str]) -> Output {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "mcpgw {args:?} failed ({}): {}\n--- gateway log ---\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            self.log()
        );
        out
    }

    fn try_status(&self) -> Result<Value> {
        let out = self.cli(["--output", "json", "status"]);
        if !out.status.success() {
            bail!("status: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        serde_json::from_slice(&out.stdout).context("status output is not JSON")
    }

    /// `status --output json`, panicking (with the log) if it fails.
    pub fn status(&self) -> Value {
        self.try_status()
            .unwrap_or_else(|e| panic!("{e:#}\n--- gateway log ---\n{}", self.log()))
    }

    /// `status.counters[name]` (0 if absent).
    pub fn counter(&self, name: &str) -> u64 {
        self.status()["counters"][name].as_u64().unwrap_or(0)
    }

    /// Waits (bounded) for a `status.connections` entry matching `pred`.
    pub fn wait_connection(&self, mut pred: impl FnMut(&Value) -> bool) -> Option<Value> {
        wait_for(Duration::from_secs(5), || {
            let st = self.try_status().ok()?;
            st["connections"]
                .as_array()?
                .iter()
                .rev()
                .find(|c| pred(c))
                .cloned()
        })
    }

    /// Waits (bounded) for the connection a client made to `orig_dst`,
    /// matched by orig_dst and, in eBPF mode, the client's pid.
    pub fn wait_connection_of(&self, orig_dst: SocketAddr, pid: Option<u32>) -> Option<Value> {
        self.wait_connection(|c| {
            let dst_ok = c["orig_dst"]
                .as_str()
                .and_then(|s| s.parse::<SocketAddr>().ok())
                .map(norm)
                == Some(orig_dst);
            dst_ok && pid.is_none_or(|p| c["pid"].as_u64() == Some(p as u64))
        })
    }

    /// Waits (bounded) until `counters[name]` exceeds `than`; returns the value.
    pub fn wait_counter_above(&self, name: &str, than: u64) -> Option<u64> {
        wait_for(Duration::from_secs(5), || {
            let v = self.try_status().ok()?["counters"][name].as_u64()?;
            (v > than).then_some(v)
        })
    }

    /// SIGKILL, no cleanup by the gateway: what fail_mode is about.
    pub fn kill9(&mut self) {
        self.proc.kill();
    }

    /// Captured stdout + stderr.
    pub fn log(&self) -> String {
        let read = |n: &str| fs::read_to_string(self.dir.path().join(n)).unwrap_or_default();
        format!(
            "[stdout]\n{}\n[stderr]\n{}",
            read("stdout.log"),
            read("stderr.log")
        )
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.proc.kill();
        if std::thread::panicking() {
            eprintln!(
                "--- gateway log ({}) ---\n{}",
                self.dir.path().display(),
                self.log()
            );
        }
        if let Some(p) = &self.pin_dir {
            let _ = fs::remove_dir_all(p);
        }
    }
}

/// The string value of `key = "..."` in a flat TOML text (enough for our configs).
fn toml_string(config: &str, key: &str) -> Option<String> {
    config.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        if k.trim() != key {
            return None;
        }
        let v = v.trim();
        Some(v.strip_prefix('"')?.split('"').next()?.to_owned())
    })
}

/// The machine a benchmark ran on, for its report: CPU model, cores, kernel.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cpu}, {cores} cores, Linux {}", kernel.trim())
}
