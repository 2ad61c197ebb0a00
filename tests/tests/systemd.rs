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
