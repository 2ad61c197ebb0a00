//! eBPF programs of mcpgw: redirect connects to intercepted MCP servers into the gateway.
//!
//! Every program lets the traffic through unchanged on an internal error: interception is
//! fail-open per connection; fail-closed for a *down* gateway is done by keeping the links
//! pinned (see `gateway::intercept`).
#![cfg_attr(target_arch = "bpf", no_std, no_main)]

#[cfg(target_arch = "bpf")]
mod programs;

#[cfg(not(target_arch = "bpf"))]
fn main() {
    // The programs only exist for the bpfel-unknown-none target (built by gateway/build.rs).
}

#[cfg(all(target_arch = "bpf", not(test)))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[cfg(target_arch = "bpf")]
#[expect(unsafe_code, reason = "the kernel reads the license from this section")]
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
