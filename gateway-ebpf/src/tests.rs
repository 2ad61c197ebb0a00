use core::mem::size_of;

use super::*;

#[test]
fn layouts_have_no_implicit_padding() {
    // The kernel compares keys byte for byte: any implicit padding would make lookups miss.
    assert_eq!(size_of::<TargetKey>(), 16 + 2 + 2);
    assert_eq!(size_of::<ConnKey>(), 16 + 16 + 2 + 2);
    assert_eq!(size_of::<OrigDstEntry>(), 16 + 2 + 2 + 3 * 4 + 8);
    assert_eq!(size_of::<Settings>(), 2 + 2 + 4 + 4);
}

#[test]
fn v4_mapped_round_trips() {
    let mapped = v4_mapped([10, 0, 3, 17]);
    assert_eq!(
        mapped,
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 3, 17]
    );
    assert_eq!(as_v4(&mapped), Some([10, 0, 3, 17]));
    let mut native = [0u8; 16];
    native[15] = 1; // ::1
    assert_eq!(as_v4(&native), None);
}

#[test]
fn kernel_ip4_word_is_network_order_in_memory() {
    // bpf_sock_addr.user_ip4 holds the address bytes in network order; read as a native
    // u32 on little endian, to_ne_bytes gives the octets back in order.
    let user_ip4 = u32::from_ne_bytes([10, 0, 3, 17]);
    assert_eq!(user_ip4.to_ne_bytes(), [10, 0, 3, 17]);
}

#[test]
fn wildcard_keys() {
    assert!(TargetKey::wildcard(443).is_wildcard());
    assert!(!TargetKey::new(v4_mapped([127, 0, 0, 1]), 443).is_wildcard());
    assert_ne!(TargetKey::wildcard(443), TargetKey::wildcard(8443));
}

#[test]
fn port_encodings_match_the_kernel() {
    // Port 8443 = 0x20fb; network order bytes are [0x20, 0xfb].
    let user_port = u32::from(u16::from_ne_bytes([0x20, 0xfb]));
    assert_eq!(port_from_user_port(user_port), 8443);
    assert_eq!(user_port_from_port(8443), user_port);
    // sock_ops remote_port: the same two bytes, shifted left by 16 on little endian.
    assert_eq!(port_from_sock_ops_remote(user_port << 16), 8443);
}
