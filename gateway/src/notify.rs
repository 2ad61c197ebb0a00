//! systemd readiness and watchdog (`sd_notify`): `READY=1` once programs are attached and the
//! listeners are up, `STOPPING=1` on shutdown, `WATCHDOG=1` at half the unit's `WatchdogSec`.
//! Without `NOTIFY_SOCKET` (not under systemd) these do nothing.

use std::{os::unix::net::UnixDatagram, time::Duration};

/// Sends one notification; errors are logged, never fatal (systemd may be gone at shutdown).
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    // Abstract sockets are given with a leading '@'.
    let path = path.to_string_lossy().into_owned();
    let sent = UnixDatagram::unbound().and_then(|socket| {
        if let Some(name) = path.strip_prefix('@') {
            use std::os::linux::net::SocketAddrExt as _;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
            socket.send_to_addr(state.as_bytes(), &addr)
        } else {
            socket.send_to(state.as_bytes(), &path)
        }
    });
    if let Err(error) = sent {
        tracing::warn!(%error, state, "sd_notify failed");
    }
}

/// Pings the watchdog while the runtime is alive, if systemd asked for it (`WATCHDOG_USEC`).
pub async fn watchdog() {
    let usec = std::env::var("WATCHDOG_USEC")
        .ok()
        .and_then(|v| v.parse::<u64>().ok());
    let Some(usec) = usec.filter(|u| *u > 0) else {
        return;
    };
    let mut tick = tokio::time::interval(Duration::from_micros(usec / 2));
    loop {
        tick.tick().await;
        notify("WATCHDOG=1");
    }
}
