//! PROXY protocol v1/v2 headers sent to members of PROXY / PROXYV2 pools.
//! See haproxy's `doc/proxy-protocol.txt`.

use std::net::{IpAddr, SocketAddr};

use crate::config::PoolProtocol;

/// Which PROXY header a pool's members expect before the listener's protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProxyVersion {
    /// Text header (`PROXY` pools).
    V1,
    /// Binary header (`PROXYV2` pools).
    V2,
}

impl ProxyVersion {
    /// The version a pool protocol asks for; `None` for pools without a PROXY header.
    pub(crate) fn of(protocol: PoolProtocol) -> Option<Self> {
        match protocol {
            PoolProtocol::Proxy => Some(Self::V1),
            PoolProtocol::ProxyV2 => Some(Self::V2),
            _ => None,
        }
    }

    /// The header naming a connection from `src` (the client) to `dst` (the listener).
    pub(crate) fn header(self, src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
        match self {
            Self::V1 => v1_header(src, dst),
            Self::V2 => v2_header(src, dst),
        }
    }
}

const V2_SIGNATURE: [u8; 12] = [
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
];

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Text header: `PROXY TCP4 <src> <dst> <sport> <dport>\r\n`.
pub(crate) fn v1_header(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let (s, d) = (canonical(src.ip()), canonical(dst.ip()));
    let family = match (s, d) {
        (IpAddr::V4(_), IpAddr::V4(_)) => "TCP4",
        (IpAddr::V6(_), IpAddr::V6(_)) => "TCP6",
        _ => return b"PROXY UNKNOWN\r\n".to_vec(),
    };
    format!("PROXY {family} {s} {d} {} {}\r\n", src.port(), dst.port()).into_bytes()
}

/// Binary header, command PROXY over TCP (LOCAL when families differ).
pub(crate) fn v2_header(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + 36);
    out.extend_from_slice(&V2_SIGNATURE);
    match (canonical(src.ip()), canonical(dst.ip())) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            out.extend_from_slice(&[0x21, 0x11, 0, 12]);
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            out.extend_from_slice(&[0x21, 0x21, 0, 36]);
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
        }
        _ => {
            out.extend_from_slice(&[0x20, 0x00, 0, 0]);
            return out;
        }
    }
    out.extend_from_slice(&src.port().to_be_bytes());
    out.extend_from_slice(&dst.port().to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_forms() {
        let s: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let d: SocketAddr = "192.0.2.1:80".parse().unwrap();
        assert_eq!(
            v1_header(s, d),
            b"PROXY TCP4 10.0.0.1 192.0.2.1 5000 80\r\n"
        );
        let s6: SocketAddr = "[2001:db8::1]:5000".parse().unwrap();
        let d6: SocketAddr = "[2001:db8::2]:443".parse().unwrap();
        assert_eq!(
            v1_header(s6, d6),
            b"PROXY TCP6 2001:db8::1 2001:db8::2 5000 443\r\n"
        );
        let mapped: SocketAddr = "[::ffff:10.0.0.1]:5000".parse().unwrap();
        assert_eq!(
            v1_header(mapped, d),
            b"PROXY TCP4 10.0.0.1 192.0.2.1 5000 80\r\n"
        );
        assert_eq!(v1_header(s6, d), b"PROXY UNKNOWN\r\n");
    }

    #[test]
    fn v2_forms() {
        let s: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let d: SocketAddr = "192.0.2.1:80".parse().unwrap();
        let h = v2_header(s, d);
        assert_eq!(&h[..12], &V2_SIGNATURE);
        assert_eq!(&h[12..16], &[0x21, 0x11, 0, 12]);
        assert_eq!(&h[16..], &[10, 0, 0, 1, 192, 0, 2, 1, 0x13, 0x88, 0, 80]);
        let s6: SocketAddr = "[2001:db8::1]:5000".parse().unwrap();
        let d6: SocketAddr = "[2001:db8::2]:443".parse().unwrap();
        let h = v2_header(s6, d6);
        assert_eq!(h.len(), 16 + 36);
        assert_eq!(&h[12..16], &[0x21, 0x21, 0, 36]);
        assert_eq!(&v2_header(s6, d)[12..], &[0x20, 0, 0, 0]);
    }
}
