//! The Debian package (`cargo xtask deb`), `cargo xtask install` and the host-CA trust script:
//! installed into fresh roots (dpkg --root, scripts run with DPKG_ROOT), and the package under
//! a real systemd in a throwaway machine (the host's own systemd as PID 1 of new namespaces,
//! on an overlay of /), where the hardened unit must run the gateway as user mcpgw and
//! intercept.

use std::{
    fs,
    os::unix::fs::{MetadataExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::OnceLock,
    time::Duration,
};

use mcpgw_tests::*;

/// Built `cargo xtask` (`MCPGW_XTASK`, else `<target>/debug/xtask`, which `cargo xtask test`
/// has just run from).
fn xtask() -> PathBuf {
    let path = std::env::var_os("MCPGW_XTASK")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("debug/xtask"));
    assert!(
        path.exists(),
        "{} not found: run the tests with `cargo xtask test` (or cargo build -p xtask)",
        path.display()
    );
    path
}

fn need(program: &str, package: &str) {
    assert!(
        Path::new(program).exists(),
        "{program} is missing: run `cargo xtask setup` (Debian package {package})"
    );
}

/// The package of the test binary, built once per run (gzip: quicker than xz).
fn deb() -> &'static Path {
    static DEB: OnceLock<PathBuf> = OnceLock::new();
    DEB.get_or_init(|| {
        need("/usr/bin/dpkg-deb", "dpkg");
        let out_dir = target_dir().join("mcpgw-tests-deb");
        let out = run(Command::new(xtask())
            .arg("deb")
            .arg("--bin")
            .arg(mcpgw_bin())
            .arg("--out")
            .arg(&out_dir)
            .args(["--compression", "gzip"]))
        .expect("cargo xtask deb");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let path = PathBuf::from(stdout.lines().last().expect("xtask deb prints the path"));
        assert!(path.starts_with(&out_dir) && path.exists(), "{stdout}");
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.starts_with(&format!("mcpgw_{}_", env!("CARGO_PKG_VERSION")))
                && name.ends_with(".deb"),
            "{name}"
        );
        path
    })
}

fn stat(path: &Path) -> (u32, u32, u32) {
    let m = fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (m.permissions().mode() & 0o7777, m.uid(), m.gid())
}

/// uid and gid of `user` in `root`/etc/passwd.
fn passwd(root: &Path, user: &str) -> Option<(u32, u32)> {
    let text = fs::read_to_string(root.join("etc/passwd")).ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.first() == Some(&user)).then(|| (f[2].parse().unwrap(), f[3].parse().unwrap()))
    })
}

/// Members of `group` in `root`/etc/group, if it exists.
fn group_members(root: &Path, group: &str) -> Option<Vec<String>> {
    let text = fs::read_to_string(root.join("etc/group")).ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.first() == Some(&group)).then(|| {
            f.get(3)
                .unwrap_or(&"")
                .split(',')
                .filter(|m| !m.is_empty())
                .map(str::to_owned)
                .collect()
        })
    })
}

/// The files the package and `cargo xtask install` put in place: path, mode (all root:root).
const FILES: &[(&str, u32)] = &[
    ("usr/bin/mcpgw", 0o755),
    ("lib/systemd/system/mcpgw.service", 0o644),
    ("usr/lib/sysusers.d/mcpgw.conf", 0o644),
    ("usr/lib/tmpfiles.d/mcpgw.conf", 0o644),
    ("usr/libexec/mcpgw/mcpgw-trust-ca", 0o755),
    ("etc/mcpgw/gateway.toml", 0o644),
    ("usr/share/doc/mcpgw/README.md", 0o644),
    ("usr/share/doc/mcpgw/examples/gateway.toml", 0o644),
];

/// The installed files, user, group, state directory and enablement in `root`.
fn assert_installed(root: &Path) {
    for (file, mode) in FILES {
        assert_eq!(
            stat(&root.join(file)),
            (*mode, 0, 0),
            "{file}: mode, uid, gid"
        );
    }
    assert_eq!(
        fs::read(root.join("lib/systemd/system/mcpgw.service")).unwrap(),
        fs::read(workspace_dir().join("systemd/mcpgw.service")).unwrap()
    );
    // The binary is the test binary without its debug information: it still runs.
    let out = run(Command::new(root.join("usr/bin/mcpgw")).arg("--help")).expect("mcpgw --help");
    assert!(String::from_utf8_lossy(&out.stdout).contains("serve"));

    let (uid, gid) = passwd(root, "mcpgw").expect("user mcpgw in the root's /etc/passwd");
    assert!(uid > 0 && uid < 1000, "a system uid: {uid}");
    assert_eq!(
        group_members(root, "mcpgw-admin"),
        Some(vec!["mcpgw".to_owned()]),
        "group mcpgw-admin with mcpgw in it"
    );
    assert_eq!(stat(&root.join("var/lib/mcpgw")), (0o700, uid, gid));
    let wants = root.join("etc/systemd/system/multi-user.target.wants/mcpgw.service");
    assert_eq!(
        fs::read_link(&wants).expect("mcpgw.service enabled"),
        Path::new("/lib/systemd/system/mcpgw.service")
    );
    // Nothing of the running host was made inside the root.
    for host_only in ["sys", "run"] {
        assert!(
            !root.join(host_only).exists(),
            "{host_only} made in the root"
        );
    }
}

/// An empty root dpkg can install into.
fn dpkg_root(dir: &Path) -> PathBuf {
    let root = dir.join("root");
    for d in [
        "var/lib/dpkg/info",
        "var/lib/dpkg/updates",
        "var/lib/dpkg/triggers",
        "var/log",
    ] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    for f in ["var/lib/dpkg/status", "var/lib/dpkg/available"] {
        fs::write(root.join(f), "").unwrap();
    }
    root
}

fn dpkg(root: &Path, args: &[&str]) -> Output {
    run(Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .arg(format!("--log={}", root.join("var/log/dpkg.log").display()))
        // The scripts run on this host with DPKG_ROOT set, not chrooted: the root has no shell.
        .arg("--force-script-chrootless")
        // libc6, systemd and ca-certificates are not in the empty root.
        .arg("--force-depends")
        .args(args))
    .unwrap_or_else(|e| panic!("dpkg {args:?}: {e:#}"))
}

#[test]
fn deb_installs_into_a_fresh_root() {
    if !require_root() {
        return;
    }
    let deb = deb();
    let tmp = TempDir::new().unwrap();
    let root = dpkg_root(tmp.path());

    let out = dpkg(&root, &["--install", &deb.to_string_lossy()]);
    println!("{}", String::from_utf8_lossy(&out.stdout));
    let status = run(Command::new("dpkg-query")
        .arg(format!(
            "--admindir={}",
            root.join("var/lib/dpkg").display()
        ))
        .args(["-W", "-f", "${Status} ${Version}", "mcpgw"]))
    .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&status.stdout),
        format!("install ok installed {}", env!("CARGO_PKG_VERSION")),
        "the postinst ran to the end"
    );
    assert_eq!(
        fs::read_to_string(root.join("var/lib/dpkg/info/mcpgw.conffiles")).unwrap(),
        "/etc/mcpgw/gateway.toml\n"
    );
    assert_eq!(
        fs::read(root.join("etc/mcpgw/gateway.toml")).unwrap(),
        fs::read(workspace_dir().join("gateway/src/config/default.toml")).unwrap()
    );
    // The postinst: user and group (systemd-sysusers --root), state directory
    // (systemd-tmpfiles --root), enabled (deb-systemd-helper under DPKG_ROOT).
    assert_installed(&root);
    // md5sums match what was unpacked.
    let verify = dpkg(&root, &["--verify", "mcpgw"]);
    assert!(
        verify.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );

    // Remove: the program is gone, the conffile and the state stay, the unit is masked.
    fs::write(root.join("var/lib/mcpgw/targets.json"), "[]").unwrap();
    dpkg(&root, &["--remove", "mcpgw"]);
    assert!(!root.join("usr/bin/mcpgw").exists());
    assert!(!root.join("lib/systemd/system/mcpgw.service").exists());
    assert!(
        root.join("etc/mcpgw/gateway.toml").exists(),
        "conffile kept"
    );
    assert!(
        root.join("var/lib/mcpgw/targets.json").exists(),
        "state kept"
    );
    assert_eq!(
        fs::read_link(root.join("etc/systemd/system/mcpgw.service")).unwrap(),
        Path::new("/dev/null"),
        "masked"
    );
    // Purge: config, state and enablement go; the user stays (Debian keeps system users).
    dpkg(&root, &["--purge", "mcpgw"]);
    for gone in [
        "etc/mcpgw",
        "var/lib/mcpgw",
        "etc/systemd/system/mcpgw.service",
        "etc/systemd/system/multi-user.target.wants/mcpgw.service",
    ] {
        assert!(!root.join(gone).exists(), "{gone} left after purge");
    }
    assert!(passwd(&root, "mcpgw").is_some());
}

#[test]
fn install_into_a_root_twice() {
    if !require_root() {
        return;
    }
    let tmp = TempDir::new().unwrap();
    let root = tmp.path().join("root");
    let install = || {
        run(Command::new(xtask())
            .arg("install")
            .arg("--bin")
            .arg(mcpgw_bin())
            .arg("--root")
            .arg(&root))
        .expect("cargo xtask install --root")
    };
    install();
    assert_installed(&root);
    let ids = passwd(&root, "mcpgw");

    // Again, over an edited config: it is kept, everything else is as before.
    let config = root.join("etc/mcpgw/gateway.toml");
    let edited = format!("{}\n# edited\n", fs::read_to_string(&config).unwrap());
    fs::write(&config, &edited).unwrap();
    let out = install();
    assert_eq!(fs::read_to_string(&config).unwrap(), edited, "config kept");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("kept"),
        "says it kept the config"
    );
    assert_installed(&root);
    assert_eq!(passwd(&root, "mcpgw"), ids, "same user");
    let stray: Vec<_> = walk(&root)
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(".xtask-install"))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            out.extend(walk(&path));
        }
        out.push(path);
    }
    out
}

/// A self-signed CA certificate (PEM) made with openssl.
fn make_ca(dir: &Path, name: &str) -> PathBuf {
    need("/usr/bin/openssl", "openssl");
    let cert = dir.join(format!("{name}.pem"));
    run(Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "1", "-subj", &format!("/CN={name}")])
        .arg("-keyout")
        .arg(dir.join(format!("{name}.key")))
        .arg("-out")
        .arg(&cert))
    .expect("openssl req");
    cert
}

#[test]
fn trust_ca_script_adds_once_and_removes() {
    need("/usr/sbin/update-ca-certificates", "ca-certificates");
    let tmp = TempDir::new().unwrap();
    let root = tmp.path().join("root");
    for d in [
        "etc/ssl/certs",
        "usr/share/ca-certificates",
        "etc/ca-certificates/update.d",
    ] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    fs::write(root.join("etc/ca-certificates.conf"), "").unwrap();
    // Some other CA the host trusts (with none at all, update-ca-certificates keeps the old
    // bundle).
    let other = make_ca(tmp.path(), "other");
    let local = root.join("usr/local/share/ca-certificates");
    fs::create_dir_all(&local).unwrap();
    fs::copy(&other, local.join("other.crt")).unwrap();
    let other_pem = fs::read_to_string(&other).unwrap();
    let script = workspace_dir().join("packaging/mcpgw-trust-ca");
    let trust = |args: &[&Path]| {
        run(Command::new(&script)
            .args(args)
            .env("MCPGW_TRUST_ROOT", &root))
        .expect("mcpgw-trust-ca")
    };
    let said = |out: &Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let installed = local.join("mcpgw-host-ca.crt");
    let link = root.join("etc/ssl/certs/mcpgw-host-ca.pem");
    let bundle = root.join("etc/ssl/certs/ca-certificates.crt");

    let first = make_ca(tmp.path(), "first");
    let out = trust(&[&first]);
    assert!(said(&out).contains("added"), "{}", said(&out));
    assert_eq!(fs::read(&installed).unwrap(), fs::read(&first).unwrap());
    assert_eq!(stat(&installed).0, 0o644);
    assert_eq!(fs::read_link(&link).unwrap(), installed);
    let pem = fs::read_to_string(&first).unwrap();
    assert!(fs::read_to_string(&bundle).unwrap().contains(pem.trim()));

    // Same CA again (every restart of the service): nothing is done.
    let before = fs::metadata(&bundle).unwrap().modified().unwrap();
    let out = trust(&[&first]);
    assert_eq!(said(&out), "", "a second run is silent");
    assert_eq!(fs::metadata(&bundle).unwrap().modified().unwrap(), before);

    // A new CA (state_dir wiped): it replaces the old one.
    let second = make_ca(tmp.path(), "second");
    trust(&[&second]);
    let text = fs::read_to_string(&bundle).unwrap();
    let second_pem = fs::read_to_string(&second).unwrap();
    assert!(text.contains(second_pem.trim()) && !text.contains(pem.trim()));

    // No CA yet (a state_dir elsewhere): a note, no failure, no change.
    let out = trust(&[&tmp.path().join("missing.pem")]);
    assert!(said(&out).contains("no host CA"), "{}", said(&out));

    // Removal: gone from the directory, the bundle and the links.
    trust(&[Path::new("--remove")]);
    assert!(!installed.exists());
    assert!(fs::symlink_metadata(&link).is_err(), "dangling link left");
    let text = fs::read_to_string(&bundle).unwrap();
    assert!(!text.contains(second_pem.trim()) && text.contains(other_pem.trim()));
    let dangling: Vec<_> = walk(&root.join("etc/ssl/certs"))
        .into_iter()
        .filter(|p| fs::symlink_metadata(p).is_ok() && !p.exists())
        .collect();
    assert!(dangling.is_empty(), "{dangling:?}");
}

// ---------------------------------------------------------------------------
// The package under systemd
// ---------------------------------------------------------------------------

/// A throwaway machine running systemd: the host's /lib/systemd/systemd as PID 1 of new pid,
/// mount, cgroup, network, uts and ipc namespaces, chrooted into an overlay of / whose writes
/// go to a tmpfs, with a private /dev, its own bpffs (mode 0700, as systemd mounts it) and a
/// cgroup2 mount rooted at a child cgroup of the host. Nothing it does reaches the host.
struct Machine {
    unshare: Child,
    pid1: u32,
    cgroup: PathBuf,
    dir: TempDir,
}

impl Machine {
    /// Boots it with `files` copied to /opt/mcpgw-test.
    fn boot(files: &Path) -> Self {
        need("/lib/systemd/systemd", "systemd");
        let dir = TempDir::new().unwrap();
        let cgroup = cgroup2_mount().unwrap().join(unique_name("mcpgw-machine"));
        fs::create_dir(&cgroup).unwrap();
        let init = dir.path().join("init.sh");
        fs::write(
            &init,
            format!(
                r#"#!/bin/bash
set -eu
T={dir}/mnt
mkdir -p $T && mount -t tmpfs -o size=2g tmpfs $T
mkdir $T/upper $T/work $T/root
R=$T/root
mount -t overlay overlay -o lowerdir=/,upperdir=$T/upper,workdir=$T/work $R
mount -t tmpfs -o mode=755,nosuid tmpfs $R/dev
for d in null zero full random urandom tty; do touch $R/dev/$d; mount --bind /dev/$d $R/dev/$d; done
mkdir $R/dev/shm $R/dev/pts && mount -t tmpfs -o mode=1777 tmpfs $R/dev/shm
# PrivateDevices= copies /dev/pts and /dev/ptmx into the unit's /dev: without them it fails.
mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts $R/dev/pts && ln -s pts/ptmx $R/dev/ptmx
mount -t proc proc $R/proc
mount -t sysfs -o ro sysfs $R/sys
mount -t cgroup2 cgroup2 $R/sys/fs/cgroup
mount -t bpf -o mode=700 bpf $R/sys/fs/bpf
mount -t tmpfs -o mode=755 tmpfs $R/run
mount -t tmpfs -o mode=1777 tmpfs $R/tmp
mkdir -p $R/opt/mcpgw-test && cp -a {files}/. $R/opt/mcpgw-test/
# A container image's "start no services" policy would keep the postinst from starting mcpgw.
rm -f $R/usr/sbin/policy-rc.d
cat > $R/etc/systemd/system/mcpgw-test.target <<EOF
[Unit]
Description=mcpgw test machine
Requires=basic.target
After=basic.target
EOF
cd $R
exec chroot $R /usr/bin/env container=mcpgw-test /lib/systemd/systemd --unit=mcpgw-test.target
"#,
                dir = dir.path().display(),
                files = files.display(),
            ),
        )
        .unwrap();
        fs::set_permissions(&init, fs::Permissions::from_mode(0o755)).unwrap();
        let unshare = Command::new("sh")
            .arg("-c")
            .arg(r#"echo $$ > "$0/cgroup.procs" && exec "$@""#)
            .arg(&cgroup)
            .args([
                "unshare",
                "--pid",
                "--fork",
                "--mount",
                "--propagation",
                "private",
            ])
            .args(["--cgroup", "--net", "--uts", "--ipc"])
            .arg(&init)
            .stdin(Stdio::null())
            .stdout(fs::File::create(dir.path().join("console.log")).unwrap())
            .stderr(fs::File::create(dir.path().join("console.err")).unwrap())
            .spawn()
            .expect("spawn unshare");
        let children = format!("/proc/{0}/task/{0}/children", unshare.id());
        let pid1 = wait_for(Duration::from_secs(10), || {
            fs::read_to_string(&children)
                .ok()?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        });
        let mut machine = Self {
            unshare,
            pid1: pid1.unwrap_or(0),
            cgroup,
            dir,
        };
        assert!(
            pid1.is_some(),
            "the machine's PID 1 did not appear{}",
            machine.console()
        );
        let state = wait_for(Duration::from_secs(60), || {
            let out = machine
                .cmd("systemctl")
                .arg("is-system-running")
                .output()
                .ok()?;
            let state = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            matches!(state.as_str(), "running" | "degraded").then_some(state)
        });
        if state.as_deref() != Some("running") {
            let failed =
                machine.sh("systemctl --failed --no-pager; journalctl -b --no-pager | tail -50");
            println!(
                "machine state {state:?}:\n{}",
                String::from_utf8_lossy(&failed.stdout)
            );
        }
        assert!(
            state.is_some(),
            "systemd did not come up{}",
            machine.console()
        );
        let _ = machine.unshare.try_wait();
        machine
    }

    fn console(&self) -> String {
        let read = |n: &str| fs::read_to_string(self.dir.path().join(n)).unwrap_or_default();
        format!(
            "\n[console]\n{}{}",
            read("console.log"),
            read("console.err")
        )
    }

    /// `program` run inside the machine (all its namespaces and its root).
    fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.args([
            "-t",
            &self.pid1.to_string(),
            "-a",
            "-r",
            "-w",
            "--",
            program,
        ]);
        c.stdin(Stdio::null());
        c
    }

    /// `sh -c script` inside the machine; its output whatever the exit status.
    fn sh(&self, script: &str) -> Output {
        self.cmd("sh")
            .args(["-c", script])
            .output()
            .expect("nsenter")
    }

    /// `sh -c script` inside the machine, which must succeed; its stdout.
    fn ok(&self, script: &str) -> String {
        let out = self.sh(script);
        assert!(
            out.status.success(),
            "in the machine: {script}: {}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// client.py to 10.0.3.17:8443 as nobody, in a transient unit (so inside the machine's
    /// cgroup tree, where the gateway attaches).
    fn client(&self) -> ClientReport {
        let out = self.ok("systemd-run --wait --pipe --quiet -p User=nobody \
             /usr/bin/python3 /opt/mcpgw-test/client.py 10.0.3.17 8443");
        ClientReport::parse(out.lines().last().unwrap_or_default()).expect("client report")
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        // Killing PID 1 ends every process of the pid namespace; its mounts go with them.
        let _ = fs::write(self.cgroup.join("cgroup.kill"), "1");
        let _ = self.unshare.kill();
        let _ = self.unshare.wait();
        let _ = wait_for(Duration::from_secs(10), || {
            let dirs: Vec<PathBuf> = walk(&self.cgroup)
                .into_iter()
                .filter(|p| p.is_dir())
                .collect();
            for d in &dirs {
                let _ = fs::remove_dir(d);
            }
            fs::remove_dir(&self.cgroup).ok()
        });
    }
}

/// What users get: `dpkg -i` on a host where systemd runs starts the gateway as user mcpgw with
/// exactly the unit's capabilities, pins its links where the unit allows, trusts its CA, and
/// intercepts; `dpkg -r` stops it, detaches the links and takes the CA out of the trust store.
#[test]
fn deb_under_systemd() {
    if !require_root() {
        return;
    }
    let deb = deb();
    let files = TempDir::new().unwrap();
    fs::copy(deb, files.path().join("mcpgw.deb")).unwrap();
    for peer in ["client.py", "echo_server.py"] {
        fs::copy(
            workspace_dir().join("tests/peers").join(peer),
            files.path().join(peer),
        )
        .unwrap();
    }
    // The echo peer on 10.0.3.17:8443 (raw TCP, so relayed unchecked), for the whole machine.
    fs::write(
        files.path().join("echo.toml"),
        r#"[gateway]
fail_mode = "closed"

[intercept]
mode   = "ebpf"
cgroup = "/"

[[servers]]
name     = "echo"
non_http = "pass"
match    = ["10.0.3.17:8443"]
"#,
    )
    .unwrap();
    let m = Machine::boot(files.path());

    let out = m.ok("dpkg -i /opt/mcpgw-test/mcpgw.deb 2>&1");
    println!("{out}");
    assert_eq!(m.ok("systemctl is-enabled mcpgw"), "enabled");
    assert_eq!(
        m.ok("systemctl is-active mcpgw || journalctl -u mcpgw --no-pager | tail -30"),
        "active",
        "the postinst started it"
    );

    // User mcpgw, the unit's four capabilities and no others, no new privileges, seccomp.
    let uid = m.ok("id -u mcpgw");
    let status = m.ok("cat /proc/$(systemctl show -p MainPID --value mcpgw)/status");
    let field = |name: &str| -> String {
        status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .unwrap_or_else(|| panic!("no {name} in\n{status}"))
            .trim()
            .to_owned()
    };
    assert!(
        field("Uid").split_whitespace().all(|u| u == uid),
        "{}",
        field("Uid")
    );
    // CAP_NET_ADMIN 12, CAP_SYS_PTRACE 19, CAP_PERFMON 38, CAP_BPF 39.
    let caps = format!("{:016x}", (1u64 << 12) | (1 << 19) | (1 << 38) | (1 << 39));
    for set in ["CapEff", "CapPrm", "CapBnd", "CapAmb"] {
        assert_eq!(field(set), caps, "{set}");
    }
    assert_eq!(field("NoNewPrivs"), "1");
    assert_eq!(field("Seccomp"), "2");

    // Pinned links owned by mcpgw, under the bpffs root that systemd leaves at 0700 but
    // tmpfiles opened for traversal.
    assert_eq!(m.ok("stat -c %a /sys/fs/bpf"), "1711");
    let pins = m.ok("stat -c '%n %u %a' /sys/fs/bpf/mcpgw/*");
    for program in [
        "sock_ops",
        "getpeername4",
        "getpeername6",
        "connect4",
        "connect6",
    ] {
        assert!(
            pins.contains(&format!("/sys/fs/bpf/mcpgw/{program} {uid} 600")),
            "{pins}"
        );
    }
    assert_eq!(
        m.ok("stat -c '%a %U %G' /run/mcpgw/admin.sock"),
        "660 mcpgw mcpgw-admin"
    );
    assert_eq!(m.ok("stat -c '%a %U' /var/lib/mcpgw"), "700 mcpgw");

    // The host CA is in the trust store (ExecStartPost=+mcpgw-trust-ca).
    m.ok("cmp /var/lib/mcpgw/ca.pem /usr/local/share/ca-certificates/mcpgw-host-ca.crt");
    m.ok("grep -qF \"$(sed -n 2p /var/lib/mcpgw/ca.pem)\" /etc/ssl/certs/ca-certificates.crt");
    m.ok("mcpgw status >/dev/null");

    // Interception through the installed gateway.
    m.ok("ip addr add 10.0.3.17/32 dev lo");
    m.ok("systemd-run --unit=echo-peer /usr/bin/python3 /opt/mcpgw-test/echo_server.py 10.0.3.17:8443");
    m.ok("for i in $(seq 100); do journalctl -u echo-peer -o cat | grep -qx ready && exit 0; sleep 0.1; done; exit 1");
    m.ok("cp /opt/mcpgw-test/echo.toml /etc/mcpgw/gateway.toml && systemctl restart mcpgw");
    let r = m.client();
    r.assert_echoed();
    assert!(!r.went_direct(), "not redirected: {}", r.raw);
    assert_eq!(r.peername, Some(sa("10.0.3.17:8443")), "{}", r.raw);
    let status = m.ok("mcpgw --output json status");
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["counters"]["redirected"], 1, "{status}");

    // Reload (ExecReload: SIGHUP) re-reads the policy in place.
    let pid = m.ok("systemctl show -p MainPID --value mcpgw");
    m.ok("systemctl reload mcpgw");
    let reloaded = wait_for(Duration::from_secs(10), || {
        let log = m.ok("journalctl -u mcpgw -o cat --no-pager");
        log.contains("policy reloaded").then_some(())
    });
    assert!(reloaded.is_some(), "no \"policy reloaded\" in the journal");
    assert_eq!(m.ok("systemctl is-active mcpgw"), "active");
    assert_eq!(
        m.ok("systemctl show -p MainPID --value mcpgw"),
        pid,
        "same process"
    );

    // Stopped, fail_mode closed: the pinned links stay and connects are refused.
    m.ok("systemctl stop mcpgw");
    let r = m.client();
    assert_eq!(
        r.error.as_deref(),
        Some("ConnectionRefusedError"),
        "{}",
        r.raw
    );

    // Removed: links detached (connects go direct), CA out of the trust store.
    m.ok("systemctl start mcpgw");
    m.ok("dpkg -r mcpgw 2>&1");
    assert_eq!(
        m.sh("systemctl is-active mcpgw").status.code(),
        Some(3),
        "stopped"
    );
    m.ok("test ! -e /sys/fs/bpf/mcpgw");
    let r = m.client();
    r.assert_echoed();
    assert!(
        r.went_direct(),
        "still intercepted after removal: {}",
        r.raw
    );
    m.ok("test ! -e /usr/local/share/ca-certificates/mcpgw-host-ca.crt");
    m.ok("test ! -L /etc/ssl/certs/mcpgw-host-ca.pem");
    m.ok("! grep -qF \"$(sed -n 2p /var/lib/mcpgw/ca.pem)\" /etc/ssl/certs/ca-certificates.crt");

    m.ok("dpkg -P mcpgw");
    m.ok("test ! -e /var/lib/mcpgw && test ! -e /etc/mcpgw");
}

/// `cargo xtask install` on a host where systemd runs, twice: the second run restarts the
/// service on the new files and keeps the config.
#[test]
fn install_under_systemd_twice() {
    if !require_root() {
        return;
    }
    // The machine has its own /tmp (where a checkout may live): xtask, the binary and the
    // files `install` copies go in with it, under /opt/mcpgw-test.
    let files = TempDir::new().unwrap();
    let stage = files.path();
    fs::copy(xtask(), stage.join("xtask")).unwrap();
    fs::copy(mcpgw_bin(), stage.join("mcpgw")).unwrap();
    let ws = stage.join("ws");
    for dir in ["systemd", "packaging", "examples", "gateway/src/config"] {
        let to = ws.join(dir);
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        let status = Command::new("cp")
            .arg("-a")
            .arg(workspace_dir().join(dir))
            .arg(&to)
            .status()
            .unwrap();
        assert!(status.success(), "copy {dir}");
    }
    fs::copy(workspace_dir().join("README.md"), ws.join("README.md")).unwrap();
    let m = Machine::boot(stage);
    let install = "MCPGW_WORKSPACE=/opt/mcpgw-test/ws /opt/mcpgw-test/xtask install --bin /opt/mcpgw-test/mcpgw 2>&1";
    m.ok(install);
    assert_eq!(m.ok("systemctl is-enabled mcpgw"), "enabled");
    assert_eq!(m.ok("systemctl is-active mcpgw"), "active");
    m.ok("cmp /var/lib/mcpgw/ca.pem /usr/local/share/ca-certificates/mcpgw-host-ca.crt");
    let first = m.ok("systemctl show -p MainPID --value mcpgw");
    m.ok("echo '# edited' >> /etc/mcpgw/gateway.toml");

    let out = m.ok(install);
    assert!(out.contains("kept /etc/mcpgw/gateway.toml"), "{out}");
    m.ok("tail -n 1 /etc/mcpgw/gateway.toml | grep -qx '# edited'");
    assert_eq!(m.ok("systemctl is-active mcpgw"), "active");
    assert_ne!(
        m.ok("systemctl show -p MainPID --value mcpgw"),
        first,
        "restarted on the new files"
    );
    assert_eq!(m.ok("systemctl show -p NRestarts --value mcpgw"), "0");
    m.ok("mcpgw status >/dev/null");
}
