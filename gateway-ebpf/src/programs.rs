#![expect(
    unsafe_code,
    reason = "eBPF context access and helpers are unsafe by nature"
)]

use aya_ebpf::{
    bindings::{bpf_sock_addr, bpf_sock_ops, BPF_ANY, BPF_SOCK_OPS_TCP_CONNECT_CB},
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
        bpf_get_socket_cookie, bpf_getsockopt,
    },
    macros::{cgroup_sock_addr, map, sock_ops},
    maps::{Array, HashMap, LruHashMap, PerCpuArray},
    programs::{SockAddrContext, SockOpsContext},
    EbpfContext,
};
use aya_log_ebpf::{debug, warn};
use gateway_ebpf::{
    as_v4, counter, port_from_sock_ops_remote, port_from_user_port, user_port_from_port, v4_mapped,
    ConnKey, OrigDstEntry, Settings, TargetKey, AF_INET, AF_INET6, CONN_TABLE_SIZE,
    GATEWAY_SOCKETS_SIZE, TARGET_TABLE_SIZE,
};

// The verifier only accepts context accesses as `*(ctx + constant)` with the context
// pointer itself in the register. LLVM likes to precompute `ctx + offset` into another
// register and load relative to that, which the verifier rejects ("dereference of modified
// ctx ptr"). One small non-inlined function per offset always compiles to the accepted form.

/// Reads the u32 context field at byte offset `OFF`.
///
/// # Safety
/// `ctx` is the program's context and `OFF` the offset of a readable u32 field of it.
#[inline(never)]
unsafe fn ctx_get<const OFF: usize>(ctx: *const u8) -> u32 {
    // SAFETY: see the function's contract.
    unsafe { core::ptr::read_volatile(ctx.add(OFF).cast::<u32>()) }
}

/// Writes the u32 context field at byte offset `OFF`.
///
/// # Safety
/// `ctx` is the program's context and `OFF` the offset of a u32 field this program type may write.
#[inline(never)]
unsafe fn ctx_set<const OFF: usize>(ctx: *mut u8, value: u32) {
    // SAFETY: see the function's contract.
    unsafe { core::ptr::write_volatile(ctx.add(OFF).cast::<u32>(), value) }
}

/// `get!(ctx_ptr, Type, field[, word])` / `set!(ctx_ptr, Type, field[, word], value)`.
macro_rules! get {
    ($ctx:expr, $ty:ty, $field:ident) => {
        ctx_get::<{ core::mem::offset_of!($ty, $field) }>($ctx.cast())
    };
    ($ctx:expr, $ty:ty, $field:ident, $word:literal) => {
        ctx_get::<{ core::mem::offset_of!($ty, $field) + 4 * $word }>($ctx.cast())
    };
}
macro_rules! set {
    ($ctx:expr, $ty:ty, $field:ident, $value:expr) => {
        ctx_set::<{ core::mem::offset_of!($ty, $field) }>($ctx.cast(), $value)
    };
    ($ctx:expr, $ty:ty, $field:ident, $word:literal, $value:expr) => {
        ctx_set::<{ core::mem::offset_of!($ty, $field) + 4 * $word }>($ctx.cast(), $value)
    };
}

/// A 16-byte address stored in a context field as four network-order words.
macro_rules! get_ip6 {
    ($ctx:expr, $ty:ty, $field:ident) => {
        words_to_bytes([
            get!($ctx, $ty, $field, 0),
            get!($ctx, $ty, $field, 1),
            get!($ctx, $ty, $field, 2),
            get!($ctx, $ty, $field, 3),
        ])
    };
}
macro_rules! set_ip6 {
    ($ctx:expr, $ty:ty, $field:ident, $addr:expr) => {{
        let v = bytes_to_words($addr);
        set!($ctx, $ty, $field, 0, v[0]);
        set!($ctx, $ty, $field, 1, v[1]);
        set!($ctx, $ty, $field, 2, v[2]);
        set!($ctx, $ty, $field, 3, v[3]);
    }};
}

fn words_to_bytes(words: [u32; 4]) -> [u8; 16] {
    let mut out = [0u8; 16];
    let mut i = 0;
    while i < 4 {
        let b = words[i].to_ne_bytes();
        out[i * 4] = b[0];
        out[i * 4 + 1] = b[1];
        out[i * 4 + 2] = b[2];
        out[i * 4 + 3] = b[3];
        i += 1;
    }
    out
}

fn bytes_to_words(bytes: [u8; 16]) -> [u32; 4] {
    let mut out = [0u32; 4];
    let mut i = 0;
    while i < 4 {
        out[i] = u32::from_ne_bytes([
            bytes[i * 4],
            bytes[i * 4 + 1],
            bytes[i * 4 + 2],
            bytes[i * 4 + 3],
        ]);
        i += 1;
    }
    out
}

/// Return value of cgroup sock_addr/sock_ops programs that lets the syscall proceed.
const ALLOW: i32 = 1;
/// Return value that fails the syscall (EPERM).
const REFUSE: i32 = 0;
const SOCK_STREAM: u32 = 1;
const SOCK_DGRAM: u32 = 2;
const SOL_SOCKET: i32 = 1;
const SO_MARK: i32 = 36;
const LOOPBACK_V4: [u8; 4] = [127, 0, 0, 1];
const LOOPBACK_V6: [u8; 16] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

#[map]
static TARGETS: HashMap<TargetKey, u8> = HashMap::with_max_entries(TARGET_TABLE_SIZE, 0);

#[map]
static SETTINGS: Array<Settings> = Array::with_max_entries(1, 0);

/// Original destination by socket cookie: written at connect, read by sock_ops and getpeername.
#[map]
static ORIG_BY_COOKIE: LruHashMap<u64, OrigDstEntry> =
    LruHashMap::with_max_entries(CONN_TABLE_SIZE, 0);

/// Original destination by (client, gateway) address pair: read by the gateway after accept.
#[map]
static ORIG_BY_CONN: LruHashMap<ConnKey, OrigDstEntry> =
    LruHashMap::with_max_entries(CONN_TABLE_SIZE, 0);

/// Cookies of the sockets the gateway opened for its own dials, written by the gateway before
/// it connects them: what exempts a socket from the redirect (nothing a caller can set).
#[map]
static GATEWAY_SOCKETS: LruHashMap<u64, u8> = LruHashMap::with_max_entries(GATEWAY_SOCKETS_SIZE, 0);

#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

fn count(index: u32) {
    if let Some(slot) = COUNTERS.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe { *slot += 1 };
    }
}

fn settings() -> Option<Settings> {
    SETTINGS.get(0).copied()
}

fn is_target(addr: [u8; 16], port: u16) -> bool {
    // SAFETY: the value is only tested for presence.
    unsafe {
        TARGETS.get(TargetKey::new(addr, port)).is_some()
            || TARGETS.get(TargetKey::wildcard(port)).is_some()
    }
}

/// Whether this socket is the gateway's own: its cookie is registered in `GATEWAY_SOCKETS`
/// (the mark alone can be had with CAP_NET_RAW or in a namespace the caller owns).
fn is_gateway_socket(ctx: &SockAddrContext, settings: &Settings) -> bool {
    // SAFETY: helper without preconditions in this program type.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    // SAFETY: the value is only tested for presence.
    if unsafe { GATEWAY_SOCKETS.get(cookie) }.is_some() {
        return true;
    }
    if has_bypass_mark(ctx, settings.bypass_mark) {
        count(counter::MARK_IGNORED);
    }
    false
}

/// UDP to a target: refused unless the settings let it pass or it is the gateway's socket.
fn refuse_udp(ctx: &SockAddrContext, addr: [u8; 16], port: u16) -> bool {
    // SAFETY: reading fields of the kernel-provided context.
    let sock_type = unsafe { get!(ctx.sock_addr, bpf_sock_addr, type_) };
    if sock_type != SOCK_DGRAM {
        return false;
    }
    let Some(settings) = settings() else {
        return false;
    };
    if settings.refuse_udp == 0 || !is_target(addr, port) || is_gateway_socket(ctx, &settings) {
        return false;
    }
    count(counter::UDP_REFUSED);
    true
}

fn has_bypass_mark(ctx: &SockAddrContext, mark: u32) -> bool {
    let mut value: u32 = 0;
    // SAFETY: bpf_getsockopt writes at most 4 bytes into `value`.
    let ret = unsafe {
        bpf_getsockopt(
            ctx.as_ptr(),
            SOL_SOCKET,
            SO_MARK,
            (&raw mut value).cast(),
            core::mem::size_of::<u32>() as i32,
        )
    };
    ret == 0 && value == mark
}

/// Decide whether this TCP connect goes to the gateway; if so, remember where it was going.
/// Returns the listen port to redirect to.
fn redirect_port(ctx: &SockAddrContext, addr: [u8; 16], port: u16, family: u32) -> Option<u16> {
    // SAFETY: reading fields of the kernel-provided context.
    let sock_type = unsafe { get!(ctx.sock_addr, bpf_sock_addr, type_) };
    if sock_type != SOCK_STREAM {
        return None;
    }
    let settings = settings()?;
    let mapped = as_v4(&addr).is_some();
    let listen_port = if mapped {
        settings.listen_port_v4
    } else {
        settings.listen_port_v6
    };
    if listen_port == 0 {
        return None;
    }
    // Loop guard: never redirect a connect that already goes to the gateway.
    if (addr == v4_mapped(LOOPBACK_V4) && port == settings.listen_port_v4)
        || (addr == LOOPBACK_V6 && port == settings.listen_port_v6)
    {
        return None;
    }
    if !is_target(addr, port) {
        return None;
    }
    if is_gateway_socket(ctx, &settings) {
        count(counter::BYPASSED);
        return None;
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    let uid_gid = bpf_get_current_uid_gid();
    // SAFETY: helpers without preconditions in this program type.
    let (cookie, cgroup_id) = unsafe {
        (
            bpf_get_socket_cookie(ctx.as_ptr()),
            bpf_get_current_cgroup_id(),
        )
    };
    let entry = OrigDstEntry {
        addr,
        port,
        family: family as u16,
        tgid: (pid_tgid >> 32) as u32,
        uid: uid_gid as u32,
        gid: (uid_gid >> 32) as u32,
        cgroup_id,
    };
    if ORIG_BY_COOKIE
        .insert(cookie, entry, BPF_ANY as u64)
        .is_err()
    {
        // Without the entry the gateway could not tell where to go: leave the connect alone.
        count(counter::ERRORS);
        warn!(
            ctx,
            "mcpgw: cannot store original destination; connect not redirected"
        );
        return None;
    }
    count(counter::REDIRECTED);
    debug!(ctx, "mcpgw: redirect port {} pid {}", port, entry.tgid);
    Some(listen_port)
}

#[cgroup_sock_addr(connect4)]
pub fn connect4(ctx: SockAddrContext) -> i32 {
    // SAFETY: reading and writing the fields the kernel allows for connect4.
    unsafe {
        let sa = ctx.sock_addr;
        let addr = v4_mapped(get!(sa, bpf_sock_addr, user_ip4).to_ne_bytes());
        let port = port_from_user_port(get!(sa, bpf_sock_addr, user_port));
        if refuse_udp(&ctx, addr, port) {
            return REFUSE;
        }
        if let Some(listen_port) = redirect_port(&ctx, addr, port, AF_INET) {
            set!(sa, bpf_sock_addr, user_ip4, u32::from_ne_bytes(LOOPBACK_V4));
            set!(
                sa,
                bpf_sock_addr,
                user_port,
                user_port_from_port(listen_port)
            );
        }
    }
    ALLOW
}

#[cgroup_sock_addr(connect6)]
pub fn connect6(ctx: SockAddrContext) -> i32 {
    // SAFETY: reading and writing the fields the kernel allows for connect6.
    unsafe {
        let sa = ctx.sock_addr;
        let addr = get_ip6!(sa, bpf_sock_addr, user_ip6);
        let port = port_from_user_port(get!(sa, bpf_sock_addr, user_port));
        if refuse_udp(&ctx, addr, port) {
            return REFUSE;
        }
        if let Some(listen_port) = redirect_port(&ctx, addr, port, AF_INET6) {
            let to = if as_v4(&addr).is_some() {
                v4_mapped(LOOPBACK_V4)
            } else {
                LOOPBACK_V6
            };
            set_ip6!(sa, bpf_sock_addr, user_ip6, to);
            set!(
                sa,
                bpf_sock_addr,
                user_port,
                user_port_from_port(listen_port)
            );
        }
    }
    ALLOW
}

/// Unconnected UDP (`sendto` with an address) to a target: refused like a connect.
#[cgroup_sock_addr(sendmsg4)]
pub fn sendmsg4(ctx: SockAddrContext) -> i32 {
    // SAFETY: reading the fields the kernel allows for sendmsg4.
    let (addr, port) = unsafe {
        let sa = ctx.sock_addr;
        (
            v4_mapped(get!(sa, bpf_sock_addr, user_ip4).to_ne_bytes()),
            port_from_user_port(get!(sa, bpf_sock_addr, user_port)),
        )
    };
    if refuse_udp(&ctx, addr, port) {
        REFUSE
    } else {
        ALLOW
    }
}

#[cgroup_sock_addr(sendmsg6)]
pub fn sendmsg6(ctx: SockAddrContext) -> i32 {
    // SAFETY: reading the fields the kernel allows for sendmsg6.
    let (addr, port) = unsafe {
        let sa = ctx.sock_addr;
        (
            get_ip6!(sa, bpf_sock_addr, user_ip6),
            port_from_user_port(get!(sa, bpf_sock_addr, user_port)),
        )
    };
    if refuse_udp(&ctx, addr, port) {
        REFUSE
    } else {
        ALLOW
    }
}

/// At TCP_CONNECT_CB the client's source port is bound: re-key the entry by the address pair
/// the gateway will see on accept.
#[sock_ops]
pub fn sock_ops(ctx: SockOpsContext) -> u32 {
    let ops = ctx.ops;
    // SAFETY: reading fields of the kernel-provided context.
    if unsafe { get!(ops, bpf_sock_ops, op) } != BPF_SOCK_OPS_TCP_CONNECT_CB {
        return ALLOW as u32;
    }
    // SAFETY: helper without preconditions for sock_ops.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    // SAFETY: the entry is copied out at once.
    let Some(entry) = (unsafe { ORIG_BY_COOKIE.get(cookie) }).copied() else {
        return ALLOW as u32;
    };
    // SAFETY: reading fields of the kernel-provided context.
    let key = unsafe {
        let (client_addr, gateway_addr) = if get!(ops, bpf_sock_ops, family) == AF_INET {
            (
                v4_mapped(get!(ops, bpf_sock_ops, local_ip4).to_ne_bytes()),
                v4_mapped(get!(ops, bpf_sock_ops, remote_ip4).to_ne_bytes()),
            )
        } else {
            (
                get_ip6!(ops, bpf_sock_ops, local_ip6),
                get_ip6!(ops, bpf_sock_ops, remote_ip6),
            )
        };
        ConnKey {
            client_addr,
            gateway_addr,
            client_port: get!(ops, bpf_sock_ops, local_port) as u16,
            gateway_port: port_from_sock_ops_remote(get!(ops, bpf_sock_ops, remote_port)),
        }
    };
    if ORIG_BY_CONN.insert(key, entry, BPF_ANY as u64).is_err() {
        count(counter::ERRORS);
        warn!(&ctx, "mcpgw: cannot store connection entry");
    }
    ALLOW as u32
}

/// The client's `getpeername()` shows what it dialed, not the gateway.
fn original_peer(ctx: &SockAddrContext, peer: [u8; 16], port: u16) -> Option<OrigDstEntry> {
    let settings = settings()?;
    let to_gateway = (peer == v4_mapped(LOOPBACK_V4) && port == settings.listen_port_v4)
        || (peer == LOOPBACK_V6 && port == settings.listen_port_v6);
    if !to_gateway {
        return None;
    }
    // SAFETY: helper without preconditions in this program type.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    // SAFETY: the entry is copied out at once.
    let entry = unsafe { ORIG_BY_COOKIE.get(cookie) }.copied();
    if entry.is_none() {
        // A direct connection to the gateway (explicit use), not a redirected one.
        count(counter::LOOKUP_MISSES);
    }
    entry
}

#[cgroup_sock_addr(getpeername4)]
pub fn getpeername4(ctx: SockAddrContext) -> i32 {
    // SAFETY: reading and writing the fields the kernel allows for getpeername4.
    unsafe {
        let sa = ctx.sock_addr;
        let peer = v4_mapped(get!(sa, bpf_sock_addr, user_ip4).to_ne_bytes());
        let port = port_from_user_port(get!(sa, bpf_sock_addr, user_port));
        if let Some(entry) = original_peer(&ctx, peer, port) {
            if let Some(v4) = as_v4(&entry.addr) {
                set!(sa, bpf_sock_addr, user_ip4, u32::from_ne_bytes(v4));
                set!(
                    sa,
                    bpf_sock_addr,
                    user_port,
                    user_port_from_port(entry.port)
                );
            }
        }
    }
    ALLOW
}

#[cgroup_sock_addr(getpeername6)]
pub fn getpeername6(ctx: SockAddrContext) -> i32 {
    // SAFETY: reading and writing the fields the kernel allows for getpeername6.
    unsafe {
        let sa = ctx.sock_addr;
        let peer = get_ip6!(sa, bpf_sock_addr, user_ip6);
        let port = port_from_user_port(get!(sa, bpf_sock_addr, user_port));
        if let Some(entry) = original_peer(&ctx, peer, port) {
            set_ip6!(sa, bpf_sock_addr, user_ip6, entry.addr);
            set!(
                sa,
                bpf_sock_addr,
                user_port,
                user_port_from_port(entry.port)
            );
        }
    }
    ALLOW
}
