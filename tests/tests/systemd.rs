//! systemd integration through a fake NOTIFY_SOCKET: readiness once the gateway serves,
//! watchdog pings at half `WATCHDOG_USEC`, STOPPING on SIGTERM.

use std::{os::unix::net::UnixDatagram, time::Duration};

use mcpgw_tests::*;

#[test]
fn sd_notify_ready_watchdog_stopping() {
    if !require_root() {
        return;
    }
    let ns = Netns::new().expect("netns");
    let cg = Cgroup::new().expect("cgroup");
    let tmp = TempDir::new().expect("temp dir");
    let socket_path = tmp.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("notify socket");
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();

    // The gateway inherits these; this test binary runs nothing else.
    std::env::set_var("NOTIFY_SOCKET", &socket_path);
    std::env::set_var("WATCHDOG_USEC", "200000");
    let gw = Gateway::start(
        &ns,
        Some(&cg),
        &ebpf_config(&cg, "open", &["10.0.3.17:8443"]),
    );
    std::env::remove_var("NOTIFY_SOCKET");
    std::env::remove_var("WATCHDOG_USEC");
    let gw = gw.expect("gateway");

    let mut buf = [0u8; 256];
    let mut next = || {
        let n = socket.recv(&mut buf).expect("a notification within 10 s");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    assert_eq!(next(), "READY=1", "readiness first");
    assert_eq!(next(), "WATCHDOG=1");
    assert_eq!(next(), "WATCHDOG=1", "pings keep coming");

    run(std::process::Command::new("kill").args(["-TERM", &gw.pid().to_string()]))
        .expect("SIGTERM");
    let stopping = wait_for(Duration::from_secs(10), || {
        let msg = next();
        (msg == "STOPPING=1").then_some(())
    });
    assert!(stopping.is_some(), "STOPPING=1 after SIGTERM\n{}", gw.log());
}

/// `systemd-analyze`, which the unit checks below need (Debian package `systemd`, which
/// `cargo xtask setup` installs). Missing, the checks fail: they never pass silently.
fn systemd_analyze() -> &'static str {
    let path = "/usr/bin/systemd-analyze";
    assert!(
        std::path::Path::new(path).exists(),
        "{path} is missing: run `cargo xtask setup` (Debian package systemd)"
    );
    path
}

/// `systemd-analyze verify` on the unit as shipped, except that its two programs point at the
/// built binary and the repository's trust script (verify checks that every Exec* program
/// exists). Warnings fail the test too: verify exits 0 on an unknown key.
#[test]
fn unit_verifies() {
    let tmp = TempDir::new().expect("temp dir");
    let bin = mcpgw_bin();
    assert!(
        bin.exists(),
        "{} not found (cargo build -p gateway)",
        bin.display()
    );
    let trust = workspace_dir().join("packaging/mcpgw-trust-ca");
    let unit = std::fs::read_to_string(workspace_dir().join("systemd/mcpgw.service")).unwrap();
    for program in ["/usr/bin/mcpgw serve", "/usr/libexec/mcpgw/mcpgw-trust-ca "] {
        assert!(unit.contains(program), "the unit runs {program}");
    }
    let unit = unit
        .replace("/usr/bin/mcpgw serve", &format!("{} serve", bin.display()))
        .replace(
            "/usr/libexec/mcpgw/mcpgw-trust-ca ",
            &format!("{} ", trust.display()),
        );
    let path = tmp.path().join("mcpgw.service");
    std::fs::write(&path, unit).unwrap();

    let out = std::process::Command::new(systemd_analyze())
        .arg("verify")
        .arg(&path)
        .output()
        .expect("run systemd-analyze verify");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "systemd-analyze verify: {}\n{said}",
        out.status
    );
}

/// The exposure score of `systemd-analyze security` (0 = locked down, 10 = none). Measured 1.9
/// with systemd 252: what is left is what the gateway needs (host network, CAP_BPF,
/// CAP_NET_ADMIN, CAP_SYS_PTRACE for caller attribution, chown for the admin socket). A change
/// that loosens the sandbox fails here.
#[test]
fn security_exposure_stays_low() {
    const THRESHOLD: f64 = 2.0;
    let unit = workspace_dir().join("systemd/mcpgw.service");
    let out = std::process::Command::new(systemd_analyze())
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&unit)
        .output()
        .expect("run systemd-analyze security");
    let text = String::from_utf8_lossy(&out.stdout);
    let score: f64 = text
        .lines()
        .find_map(|l| {
            let rest = l
                .split("Overall exposure level for mcpgw.service:")
                .nth(1)?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .unwrap_or_else(|| {
            panic!(
                "no exposure level in the output ({}):\n{text}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )
        });
    println!("systemd-analyze security: mcpgw.service exposure {score}");
    let open: Vec<&str> = text.lines().filter(|l| l.starts_with('✗')).collect();
    println!("{}", open.join("\n"));
    assert!(
        score <= THRESHOLD,
        "exposure {score} is above {THRESHOLD}:\n{text}"
    );
}
