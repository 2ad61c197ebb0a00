//! Checks the harness itself (no gateway needed), so a broken environment is
//! reported as such instead of as a gateway failure.

use mcpgw_tests::*;

#[test]
fn netns_cgroup_and_peers_work() {
    if !require_root() {
        return;
    }
    let ns = Netns::new().expect("netns");
    let cg = Cgroup::new().expect("cgroup");
    let _echo = echo_server(&ns, &["10.0.3.17:8443", "[fd00::17]:8443"]).expect("echo server");

    for (host, family) in [
        ("10.0.3.17", Family::V4),
        ("fd00::17", Family::V6),
        ("10.0.3.17", Family::Mapped),
    ] {
        let r = client_in_netns(&ns, host, 8443, family).expect("client");
        r.assert_echoed();
        assert!(r.went_direct(), "{}", r.raw);
        assert_eq!(r.uid, 0);
    }

    // A cgroup client really runs in the cgroup, as nobody.
    let mut cmd = cg.cmd(&ns, Some(NOBODY), "sh");
    cmd.args(["-c", "id -u; id -g; id -G; cat /proc/self/cgroup"]);
    let out = run(&mut cmd).expect("sh in cgroup");
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(&lines[..3], ["65534", "65534", "65534"], "{text}");
    assert!(
        text.contains(&format!("0::{}", cg.path_in_hierarchy())),
        "{text}"
    );

    let r = client_in_cgroup(&ns, &cg, "10.0.3.17", 8443, Family::V4).expect("client");
    r.assert_echoed();
    assert_eq!(r.uid, NOBODY);

    // Nothing listens here: refusal is reported, not a crash.
    let r = client_in_netns(&ns, "10.0.3.17", 1, Family::V4).expect("client");
    assert_eq!(r.error.as_deref(), Some("ConnectionRefusedError"));
}
