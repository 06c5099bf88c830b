//! Stable hashing and weighted rendezvous selection.
//!
//! The hash is our own (FNV-1a + a splitmix64 finaliser), not `std`'s, so that
//! every node and every build maps a client to the same member.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use super::Backend;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv1a(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Stable hash of a string (member ids, cookie values).
pub(crate) fn hash_str(s: &str) -> u64 {
    mix(fnv1a(FNV_OFFSET, s.as_bytes()))
}

/// Stable hash of a client address, with or without its port.
pub(crate) fn client_key(addr: SocketAddr, with_port: bool) -> u64 {
    let h = match addr.ip() {
        IpAddr::V4(v4) => fnv1a(FNV_OFFSET, &v4.octets()),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => fnv1a(FNV_OFFSET, &v4.octets()),
            None => fnv1a(FNV_OFFSET, &v6.octets()),
        },
    };
    let h = if with_port {
        fnv1a(h, &addr.port().to_be_bytes())
    } else {
        h
    };
    mix(h)
}

/// Weighted rendezvous hashing: the member maximising `weight / -ln(u)`,
/// where `u` in (0, 1) is a hash of (client, member). Removing a member moves
/// only its own clients; adding one moves only the clients it wins.
pub(super) fn rendezvous(members: &[Arc<Backend>], key: u64, exclude: &[usize]) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (i, m) in members.iter().enumerate() {
        if exclude.contains(&i) {
            continue;
        }
        let h = mix(key ^ m.id_hash);
        // 53 random bits -> u in (0, 1)
        let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        let score = f64::from(m.config.weight.max(1)) / -u.ln();
        if best.is_none_or(|(_, s)| score > s) {
            best = Some((i, score));
        }
    }
    best.map(|(i, _)| i)
}
