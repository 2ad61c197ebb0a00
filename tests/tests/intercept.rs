//! Root tests of transparent interception (eBPF mode) and explicit mode.
//!
//! Each test builds its own namespace, cgroup, echo server and gateway; run with
//! `--test-threads=1`. Locals are declared world-first so they drop in reverse:
//! gateway (unpins links) → servers → cgroup → namespace.

use mcpgw_tests::*;
use serde_json::Value;
use std::net::SocketAddr;

const V4_TARGET: &str = "10.0.3.17:8443";
const V6_TARGET: &str = "[fd00::17]:8443";
const NON_TARGET: &str = "10.0.3.17:9000";

/// Namespace, cgroup, echo servers on the targets and the non-target, gateway in
/// the cgroup. Field order is drop order.
struct World {
    gw: Gateway,
    _echo: Proc,
    cg: Cgroup,
    ns: Netns,
}

fn world(fail_mode: &str) -> World {
    let ns = Netns::new().expect("netns");
    let cg = Cgroup::new().expect("cgroup");
    let echo = echo_server(&ns, &[V4_TARGET, V6_TARGET, NON_TARGET]).expect("echo server");
    let cfg = ebpf_config(&cg, fail_mode, &[V4_TARGET, V6_TARGET]);
    let gw = Gateway::start(&ns, Some(&cg), &cfg).expect("gateway");
    World {
        gw,
        _echo: echo,
        cg,
        ns,
    }
}

fn ctx(r: &ClientReport, gw: &Gateway) -> String {
    format!(
        "client: {}\nstatus: {}\n--- gateway log ---\n{}",
        r.raw,
        gw.status(),
        gw.log()
    )
}

/// A nobody client in the cgroup dials `target`; it must be redirected through
/// the gateway, attributed, and see the original destination as its peer.
fn assert_redirected(w: &World, host: &str, family: Family, target: &str) {
    let target = sa(target);
    let before = w.gw.counter("redirected");
    let r = client_in_cgroup(&w.ns, &w.cg, host, target.port(), family).expect("client");
    r.assert_echoed();
    assert_eq!(r.uid, NOBODY);
    assert_eq!(
        r.peername,
        Some(target),
        "getpeername must show the original destination\n{}",
        ctx(&r, &w.gw)
    );
    assert!(
        !r.went_direct(),
        "server saw the client's own socket: not redirected\n{}",
        ctx(&r, &w.gw)
    );

    let conn =
        w.gw.wait_connection_of(target, Some(r.pid))
            .unwrap_or_else(|| {
                panic!(
                    "no status.connections entry for {target} pid {}\n{}",
                    r.pid,
                    ctx(&r, &w.gw)
                )
            });
    assert_eq!(conn["uid"].as_u64(), Some(NOBODY as u64), "{conn}");
    assert_eq!(conn["gid"].as_u64(), Some(NOBODY as u64), "{conn}");
    assert_eq!(
        conn["cgroup"].as_str(),
        Some(w.cg.path_in_hierarchy().as_str()),
        "{conn}"
    );
    assert!(
        w.gw.wait_counter_above("redirected", before).is_some(),
        "counters.redirected did not grow past {before}\n{}",
        ctx(&r, &w.gw)
    );
}

#[test]
fn ipv4_target_is_redirected() {
    if !require_root() {
        return;
    }
    let w = world("closed");
    assert_redirected(&w, "10.0.3.17", Family::V4, V4_TARGET);
    // aya-log lines from the connect4 program reach the gateway's log.
    let logged = wait_for(std::time::Duration::from_secs(5), || {
        w.gw.log()
            .contains("mcpgw: redirect port 8443")
            .then_some(())
    });
    assert!(
        logged.is_some(),
        "no eBPF log line in the gateway log:\n{}",
        w.gw.log()
    );
}

#[test]
fn ipv6_target_is_redirected() {
    if !require_root() {
        return;
    }
    let w = world("closed");
    assert_redirected(&w, "fd00::17", Family::V6, V6_TARGET);
}

#[test]
fn v4_mapped_target_is_redirected() {
    if !require_root() {
        return;
    }
    let w = world("closed");
    // The dual-stack socket dials ::ffff:10.0.3.17; addresses are compared
    // normalised, so orig_dst may be reported either way.
    assert_redirected(&w, "10.0.3.17", Family::Mapped, V4_TARGET);
}

#[test]
fn gateway_own_dials_bypass_interception() {
    if !require_root() {
        return;
    }
    // The gateway runs inside the intercepted cgroup: a successful echo at all
    // means its upstream dial was not looped back to itself.
    let w = world("closed");
    assert_redirected(&w, "10.0.3.17", Family::V4, V4_TARGET);
    let bypassed = w.gw.wait_counter_above("bypassed", 0);
    assert!(
        bypassed.is_some(),
        "counters.bypassed stayed 0: {}",
        w.gw.status()
    );
}

#[test]
fn non_target_port_is_untouched() {
    if !require_root() {
        return;
    }
    let w = world("closed");
    let before = w.gw.counter("redirected");
    let r = client_in_cgroup(&w.ns, &w.cg, "10.0.3.17", 9000, Family::V4).expect("client");
    r.assert_echoed();
    assert!(
        r.went_direct(),
        "non-target connection was altered\n{}",
        ctx(&r, &w.gw)
    );
    assert_eq!(r.peername, Some(sa(NON_TARGET)));
    assert_eq!(
        w.gw.counter("redirected"),
        before,
        "redirected counted a non-target"
    );
}

#[test]
fn process_outside_cgroup_is_untouched() {
    if !require_root() {
        return;
    }
    let w = world("closed");
    let before = w.gw.counter("redirected");
    let r = client_in_netns(&w.ns, "10.0.3.17", 8443, Family::V4).expect("client");
    r.assert_echoed();
    assert!(
        r.went_direct(),
        "client outside the cgroup was redirected\n{}",
        ctx(&r, &w.gw)
    );
    assert_eq!(w.gw.counter("redirected"), before);
}

#[test]
fn fail_closed_refuses_after_gateway_dies() {
    if !require_root() {
        return;
    }
    let mut w = world("closed");
    assert_redirected(&w, "10.0.3.17", Family::V4, V4_TARGET);
    w.gw.kill9();
    for (host, family) in [("10.0.3.17", Family::V4), ("fd00::17", Family::V6)] {
        let r = client_in_cgroup(&w.ns, &w.cg, host, 8443, family).expect("client");
        assert_eq!(
            r.error.as_deref(),
            Some("ConnectionRefusedError"),
            "fail_mode=closed must refuse target connections with the gateway dead: {}\n{}",
            r.raw,
            w.gw.log()
        );
    }
    // Non-targets keep working while the programs stay attached.
    let r = client_in_cgroup(&w.ns, &w.cg, "10.0.3.17", 9000, Family::V4).expect("client");
    r.assert_echoed();
    assert!(r.went_direct());
}

#[test]
fn fail_open_goes_direct_after_gateway_dies() {
    if !require_root() {
        return;
    }
    let mut w = world("open");
    assert_redirected(&w, "10.0.3.17", Family::V4, V4_TARGET);
    w.gw.kill9();
    // Detaching links after the owner dies is asynchronous in the kernel, so poll
    // (bounded) for the first direct connection.
    let mut last: Option<ClientReport> = None;
    let ok = wait_for(std::time::Duration::from_secs(10), || {
        let r = client_in_cgroup(&w.ns, &w.cg, "10.0.3.17", 8443, Family::V4).ok()?;
        let direct = r.error.is_none() && r.went_direct();
        last = Some(r);
        direct.then_some(())
    });
    let last = last.expect("client ran");
    assert!(
        ok.is_some(),
        "fail_mode=open: still not direct after gateway death: {}\n{}",
        last.raw,
        w.gw.log()
    );
    last.assert_echoed();
}

#[test]
fn runtime_targets_add_and_remove() {
    if !require_root() {
        return;
    }
    let w = world("closed");
    let target = sa(NON_TARGET);

    w.gw.cli_ok(&["intercept", "add", NON_TARGET]);
    let list = w.gw.cli_ok(&["intercept", "list"]);
    assert!(
        String::from_utf8_lossy(&list.stdout).contains(NON_TARGET),
        "intercept list lacks the added target: {}",
        String::from_utf8_lossy(&list.stdout)
    );
    let targets = w.gw.status()["targets"].clone();
    assert!(
        has_target(&targets, NON_TARGET),
        "status.targets lacks {NON_TARGET}: {targets}"
    );

    let r = client_in_cgroup(&w.ns, &w.cg, "10.0.3.17", 9000, Family::V4).expect("client");
    r.assert_echoed();
    assert!(
        !r.went_direct(),
        "added target was not redirected\n{}",
        ctx(&r, &w.gw)
    );
    assert_eq!(r.peername, Some(target));
    assert!(
        w.gw.wait_connection_of(target, Some(r.pid)).is_some(),
        "no connection entry for the added target\n{}",
        ctx(&r, &w.gw)
    );

    w.gw.cli_ok(&["intercept", "remove", NON_TARGET]);
    let targets = w.gw.status()["targets"].clone();
    assert!(
        !has_target(&targets, NON_TARGET),
        "removed target still listed: {targets}"
    );
    let r = client_in_cgroup(&w.ns, &w.cg, "10.0.3.17", 9000, Family::V4).expect("client");
    r.assert_echoed();
    assert!(
        r.went_direct(),
        "removed target is still redirected\n{}",
        ctx(&r, &w.gw)
    );
}

fn has_target(targets: &Value, entry: &str) -> bool {
    targets
        .as_array()
        .is_some_and(|a| a.iter().any(|t| t["entry"].as_str() == Some(entry)))
}

#[test]
fn status_reports_ebpf_setup() {
    if !require_root() {
        return;
    }
    let w = world("closed");
    let st = w.gw.status();
    assert_eq!(st["mode"], "ebpf", "{st}");
    assert_eq!(st["fail_mode"], "closed", "{st}");
    assert_eq!(
        st["cgroup"].as_str(),
        Some(w.cg.path_in_hierarchy().as_str()),
        "{st}"
    );
    let programs = st["programs"].as_array().expect("programs array");
    assert!(!programs.is_empty(), "{st}");
    assert!(
        programs.iter().all(|p| p["pinned"] == true),
        "fail_mode=closed must pin: {st}"
    );
    assert!(has_target(&st["targets"], V4_TARGET), "{st}");
    assert!(has_target(&st["targets"], V6_TARGET), "{st}");
}

#[test]
fn explicit_mode_forwards_to_upstream() {
    if !require_root() {
        return;
    }
    let ns = Netns::new().expect("netns");
    let _echo = echo_server(&ns, &[V4_TARGET]).expect("echo server");
    let cfg = r#"[gateway]
state_dir    = "@DIR@/state"
admin_socket = "@DIR@/admin.sock"
fail_mode    = "closed"

[intercept]
mode = "explicit"

[[servers]]
name     = "echo"
non_http = "pass"
listen   = "127.0.0.1:18001"
upstream = "tcp://10.0.3.17:8443"
"#;
    let gw = Gateway::start(&ns, None, cfg).expect("gateway");
    assert_eq!(gw.status()["mode"], "explicit");

    let r = client_in_netns(&ns, "127.0.0.1", 18001, Family::V4).expect("client");
    r.assert_echoed();
    assert_eq!(r.peername, Some(sa("127.0.0.1:18001")));
    assert!(!r.went_direct(), "{}", ctx(&r, &gw));
    let upstream: SocketAddr = sa(V4_TARGET);
    let conn = gw.wait_connection_of(upstream, None).unwrap_or_else(|| {
        panic!(
            "no connection entry with orig_dst {upstream}\n{}",
            ctx(&r, &gw)
        )
    });
    assert!(
        conn["pid"].is_null(),
        "explicit mode has no kernel attribution: {conn}"
    );
}

#[test]
fn restarted_gateway_takes_over_pinned_links() {
    if !require_root() {
        return;
    }
    let mut w = world("closed");
    assert_redirected(&w, "10.0.3.17", Family::V4, V4_TARGET);
    // The first gateway dies; its links stay pinned (fail closed). A new one must replace
    // them: if the old connect4 still ran first, it would redirect into the old maps and the
    // new gateway could not find where connections were going.
    w.gw.kill9();
    let config = ebpf_config(&w.cg, "closed", &[V4_TARGET, V6_TARGET]);
    let second = Gateway::start(&w.ns, Some(&w.cg), &config).expect("second gateway");
    for _ in 0..3 {
        let r = client_in_cgroup(&w.ns, &w.cg, "10.0.3.17", 8443, Family::V4).expect("client");
        r.assert_echoed();
        assert!(!r.went_direct(), "not redirected after restart: {}", r.raw);
        assert!(
            second
                .wait_connection_of(sa(V4_TARGET), Some(r.pid))
                .is_some(),
            "{}",
            second.log()
        );
    }
    assert_eq!(second.counter("failed"), 0, "{}", second.log());
}

#[test]
fn host_name_targets_follow_dns_changes() {
    if !require_root() {
        return;
    }
    let ns = Netns::new().expect("netns");
    run(ns
        .cmd("ip")
        .args(["addr", "add", "10.0.3.18/32", "dev", "lo"]))
    .expect("second address");
    let cg = Cgroup::new().expect("cgroup");
    let _echo = echo_server(&ns, &[V4_TARGET, "10.0.3.18:8443"]).expect("echo servers");
    let tmp = TempDir::new().expect("temp dir");
    let hosts = tmp.path().join("hosts");
    std::fs::write(&hosts, "127.0.0.1 localhost\n10.0.3.17 mcp-host.test\n").unwrap();
    let servers =
        "[[servers]]\nname = \"byname\"\nnon_http = \"pass\"\nmatch = [\"mcp-host.test:8443\"]\n";
    let config = gateway_config(&cg, "open", servers).replacen(
        "[intercept]\n",
        "[intercept]\ndns_refresh = \"1s\"\n",
        1,
    );
    let gw = Gateway::start_with_hosts(&ns, Some(&cg), &config, Some(&hosts)).expect("gateway");
    let dial = |host: &str| client_in_cgroup(&ns, &cg, host, 8443, Family::V4).expect("client");

    let r = dial("10.0.3.17");
    r.assert_echoed();
    assert!(
        !r.went_direct(),
        "the name's address is intercepted: {}",
        r.raw
    );
    assert!(dial("10.0.3.18").went_direct(), "another address is not");

    // The name moves: rewrite the file in place (the bind mount holds the inode).
    std::fs::write(&hosts, "127.0.0.1 localhost\n10.0.3.18 mcp-host.test\n").unwrap();
    let moved = wait_for(std::time::Duration::from_secs(15), || {
        let t = gw.status()["targets"].to_string();
        (t.contains("10.0.3.18:8443") && !t.contains("10.0.3.17:8443")).then_some(())
    });
    assert!(
        moved.is_some(),
        "targets did not follow DNS: {}\n{}",
        gw.status()["targets"],
        gw.log()
    );
    let r = dial("10.0.3.18");
    r.assert_echoed();
    assert!(
        !r.went_direct(),
        "the new address is intercepted: {}",
        r.raw
    );
    assert!(
        dial("10.0.3.17").went_direct(),
        "the old address is released"
    );
}

/// The bypass mark alone is not the gateway: a root client in the intercepted cgroup (it has
/// CAP_NET_ADMIN, so SO_MARK succeeds, as CAP_NET_RAW does since Linux 5.17) sets the
/// gateway's mark and dials a target. It must still go through the gateway.
#[test]
fn bypass_mark_set_by_a_client_does_not_bypass() {
    if !require_root() {
        return;
    }
    let w = world("closed");
    let before = w.gw.counter("mark_ignored");
    let mut cmd = w.cg.cmd(&w.ns, None, python());
    client_args(&mut cmd, "10.0.3.17", 8443, Family::V4);
    cmd.args(["--mark", "0x4d43"]);
    let r = run_client(cmd).expect("client");
    r.assert_echoed();
    assert!(
        !r.went_direct(),
        "a client with the bypass mark reached the server directly\n{}",
        ctx(&r, &w.gw)
    );
    assert_eq!(r.peername, Some(sa(V4_TARGET)), "{}", ctx(&r, &w.gw));
    assert!(
        w.gw.wait_counter_above("mark_ignored", before).is_some(),
        "mark_ignored did not count the client's marked socket: {}",
        w.gw.status()
    );
    // The gateway's own dial (it runs in the intercepted cgroup) still bypasses: the echo
    // above came back through it.
    assert!(w.gw.counter("bypassed") > 0, "{}", w.gw.status());
}

/// A UDP sink on `addr` in `ns`: prints "ready", then one "got N" line per datagram.
fn udp_sink(ns: &Netns, addr: &str) -> Proc {
    const SINK: &str = "import socket, sys\n\
s = socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET, socket.SOCK_DGRAM)\n\
s.bind((sys.argv[1], int(sys.argv[2])))\n\
print('ready', flush=True)\n\
while True:\n    data = s.recv(65536)\n    print('got', len(data), flush=True)\n";
    let target = sa(addr);
    let child = ns
        .cmd(python())
        .args([
            "-c",
            SINK,
            &target.ip().to_string(),
            &target.port().to_string(),
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("udp sink");
    let mut sink = Proc::new(child);
    let stdout = sink.child().stdout.as_mut().expect("stdout");
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).expect("ready");
    assert_eq!(line.trim(), "ready");
    sink
}

/// What the sink received: the datagram count, read after the clients are done.
fn udp_received(mut sink: Proc) -> usize {
    std::thread::sleep(std::time::Duration::from_millis(300));
    sink.kill();
    let mut out = String::new();
    if let Some(mut stdout) = sink.child().stdout.take() {
        let _ = std::io::Read::read_to_string(&mut stdout, &mut out);
    }
    out.lines().filter(|l| l.starts_with("got")).count()
}

fn udp_client(ns: &Netns, cg: &Cgroup, host: &str, port: u16, family: Family) -> Value {
    let mut cmd = cg.cmd(ns, Some(NOBODY), python());
    client_args(&mut cmd, host, port, family);
    cmd.arg("--udp");
    let out = mcpgw_tests::run(cmd.stdin(std::process::Stdio::null())).expect("udp client");
    let line = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or("")
        .to_owned();
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("client output {line:?}: {e}"))
}

/// QUIC-like datagrams to a target would go around the TCP path: refused with EPERM, both
/// `connect()` and `sendto()`, for IPv4 and IPv6; the server receives nothing. UDP to other
/// ports is untouched.
#[test]
fn udp_to_a_target_is_refused() {
    if !require_root() {
        return;
    }
    let w = world("closed");
    for (host, family, target) in [
        ("10.0.3.17", Family::V4, V4_TARGET),
        ("fd00::17", Family::V6, V6_TARGET),
    ] {
        let sink = udp_sink(&w.ns, target);
        let r = udp_client(&w.ns, &w.cg, host, sa(target).port(), family);
        assert_eq!(
            r["udp"]["connect"],
            "PermissionError",
            "{r}\n{}",
            w.gw.status()
        );
        assert_eq!(r["udp"]["sendto"], "PermissionError", "{r}");
        assert_eq!(udp_received(sink), 0, "a datagram reached {target}");
    }
    assert!(w.gw.counter("udp_refused") >= 4, "{}", w.gw.status());

    let sink = udp_sink(&w.ns, NON_TARGET);
    let r = udp_client(&w.ns, &w.cg, "10.0.3.17", sa(NON_TARGET).port(), Family::V4);
    assert_eq!(
        r["udp"],
        serde_json::json!({"connect": null, "sendto": null}),
        "{r}"
    );
    assert_eq!(udp_received(sink), 2, "UDP to a non-target port must pass");
}

/// `intercept.udp = "pass"` lets UDP to targets through (for hosts that need it).
#[test]
fn udp_to_a_target_passes_when_configured() {
    if !require_root() {
        return;
    }
    let ns = Netns::new().expect("netns");
    let cg = Cgroup::new().expect("cgroup");
    let _echo = echo_server(&ns, &[V4_TARGET]).expect("echo server");
    let cfg = ebpf_config(&cg, "closed", &[V4_TARGET]).replace(
        "bypass_mark = 0x4d43",
        "bypass_mark = 0x4d43\nudp         = \"pass\"",
    );
    let gw = Gateway::start(&ns, Some(&cg), &cfg).expect("gateway");
    let sink = udp_sink(&ns, V4_TARGET);
    let r = udp_client(&ns, &cg, "10.0.3.17", 8443, Family::V4);
    assert_eq!(
        r["udp"],
        serde_json::json!({"connect": null, "sendto": null}),
        "{r}"
    );
    assert_eq!(udp_received(sink), 2);
    assert_eq!(gw.counter("udp_refused"), 0);
    drop(gw);
}

/// A network namespace joined to the test namespace by a veth (10.0.4.2 → 10.0.4.1), as a
/// container runtime would make one; removed on drop.
struct ChildNetns {
    name: String,
}

impl ChildNetns {
    fn new(parent: &Netns) -> Self {
        let name = unique_name("mcpgw-c");
        let veth = format!("v{}", &name[name.len() - 8..]);
        let child = Self { name: name.clone() };
        let ip = |args: &[&str]| {
            mcpgw_tests::run(std::process::Command::new("ip").args(args)).expect("ip");
        };
        ip(&["netns", "add", &name]);
        ip(&[
            "-n",
            parent.name(),
            "link",
            "add",
            &veth,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &name,
        ]);
        ip(&[
            "-n",
            parent.name(),
            "addr",
            "add",
            "10.0.4.1/24",
            "dev",
            &veth,
        ]);
        ip(&["-n", parent.name(), "link", "set", &veth, "up"]);
        ip(&["-n", &name, "addr", "add", "10.0.4.2/24", "dev", "eth0"]);
        ip(&["-n", &name, "link", "set", "eth0", "up"]);
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        ip(&[
            "-n",
            &name,
            "route",
            "add",
            "10.0.3.17/32",
            "via",
            "10.0.4.1",
        ]);
        child
    }
}

impl Drop for ChildNetns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.name])
            .status(); // its end of the veth goes with it
    }
}

/// The bypass mark in a namespace the caller controls (a container's) is not the gateway's
/// either: a marked socket connecting from a child network namespace of the intercepted
/// cgroup is not let through to the server directly.
#[test]
fn bypass_mark_in_another_network_namespace_does_not_bypass() {
    if !require_root() {
        return;
    }
    let w = world("closed");
    let child = ChildNetns::new(&w.ns);
    let before = w.gw.counter("mark_ignored");
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c")
        .arg(r#"echo $$ > "$0" && exec "$@""#)
        .arg(w.cg.dir().join("cgroup.procs"))
        .arg("nsenter")
        .arg(format!("--net=/run/netns/{}", child.name))
        .arg("--")
        .arg(python());
    client_args(&mut cmd, "10.0.3.17", 8443, Family::V4);
    cmd.args(["--mark", "0x4d43", "--timeout", "3"]);
    let r = run_client(cmd).expect("client");
    assert!(
        !r.went_direct() && r.echo.is_none(),
        "a marked socket in a child namespace reached the server\n{}",
        ctx(&r, &w.gw)
    );
    assert!(
        w.gw.wait_counter_above("mark_ignored", before).is_some(),
        "{}",
        w.gw.status()
    );
    // The same client without the mark, from the test namespace, is served as usual.
    assert_redirected(&w, "10.0.3.17", Family::V4, V4_TARGET);
}

/// Restarts under load: while a client in the cgroup connects again and again, the gateway
/// is killed and replaced twice. Every connection goes through a gateway or is refused
/// (fail closed); none reaches the server directly, also not in the moment a new gateway
/// takes over the pinned links.
#[test]
fn restarts_under_load_never_let_a_connection_go_direct() {
    if !require_root() {
        return;
    }
    let mut w = world("closed");
    let mut cmd = w.cg.cmd(&w.ns, Some(NOBODY), python());
    client_args(&mut cmd, "10.0.3.17", 8443, Family::V4);
    cmd.args(["--repeat", "6"])
        .stdout(std::process::Stdio::piped())
        .stdin(std::process::Stdio::null());
    let client = cmd.spawn().expect("looping client");
    let config = ebpf_config(&w.cg, "closed", &[V4_TARGET, V6_TARGET]);
    std::thread::sleep(std::time::Duration::from_millis(500));
    // Killed gateways are kept until the end: dropping one removes the pin directory its
    // successor now uses.
    let mut killed = Vec::new();
    for _ in 0..2 {
        w.gw.kill9();
        std::thread::sleep(std::time::Duration::from_millis(300));
        let next = Gateway::start(&w.ns, Some(&w.cg), &config).expect("next gateway");
        killed.push(std::mem::replace(&mut w.gw, next));
        std::thread::sleep(std::time::Duration::from_millis(800));
    }
    let out = client.wait_with_output().expect("client output");
    let line = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or("")
        .to_owned();
    let report: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
    let counts = &report["counts"];
    assert_eq!(counts["direct"], 0, "connections went direct: {report}");
    assert!(
        counts["gateway"].as_u64().unwrap_or(0) > 0,
        "nothing went through a gateway: {report}"
    );
    drop(w);
    drop(killed);
}
