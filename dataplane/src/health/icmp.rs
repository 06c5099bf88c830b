//! ICMP echo for PING health checks, without unsafe code: an unprivileged
//! ICMP datagram socket (`socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP)`, allowed
//! when the process's group is in `net.ipv4.ping_group_range`), else a raw
//! socket (root or `CAP_NET_RAW`). The socket is driven through tokio's
//! `UdpSocket`, whose `send_to`/`recv_from` are plain `sendto`/`recvfrom`.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::OnceLock;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

const ECHO_REQUEST_V4: u8 = 8;
const ECHO_REPLY_V4: u8 = 0;
const ECHO_REQUEST_V6: u8 = 128;
const ECHO_REPLY_V6: u8 = 129;
const PAYLOAD: &[u8; 8] = b"fulcrum!";

/// An ICMP socket for `ip`'s family and whether it is raw (IPv4 raw sockets
/// receive the IP header too).
fn open(ip: IpAddr) -> io::Result<(Socket, bool)> {
    let (domain, proto) = match ip {
        IpAddr::V4(_) => (Domain::IPV4, Protocol::ICMPV4),
        IpAddr::V6(_) => (Domain::IPV6, Protocol::ICMPV6),
    };
    match Socket::new(domain, Type::DGRAM, Some(proto)) {
        Ok(s) => Ok((s, false)),
        Err(dgram) => Socket::new(domain, Type::RAW, Some(proto))
            .map(|s| (s, true))
            .map_err(|raw| {
                io::Error::new(
                    raw.kind(),
                    format!(
                        "no ICMP socket: datagram ({dgram}; see net.ipv4.ping_group_range), raw ({raw})"
                    ),
                )
            }),
    }
}

/// Whether this process can send ICMP echo requests (checked once).
pub(crate) fn available() -> Result<(), String> {
    static AVAILABLE: OnceLock<Result<(), String>> = OnceLock::new();
    AVAILABLE
        .get_or_init(|| {
            open(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST))
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
        .clone()
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Sends one echo request to `ip` and waits for its reply (the caller bounds
/// the wait). `Ok(true)`: the reply came.
pub(crate) async fn ping(ip: IpAddr) -> io::Result<bool> {
    static SEQ: AtomicU16 = AtomicU16::new(0);
    let (socket, raw) = open(ip)?;
    socket.set_nonblocking(true)?;
    let socket = UdpSocket::from_std(std::net::UdpSocket::from(socket))?;
    let id = (std::process::id() as u16) ^ 0x5a5a;
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let v4 = ip.is_ipv4();
    let mut packet = [0u8; 8 + PAYLOAD.len()];
    packet[0] = if v4 { ECHO_REQUEST_V4 } else { ECHO_REQUEST_V6 };
    packet[4..6].copy_from_slice(&id.to_be_bytes());
    packet[6..8].copy_from_slice(&seq.to_be_bytes());
    packet[8..].copy_from_slice(PAYLOAD);
    if v4 {
        // The kernel computes ICMPv6 checksums itself (it needs the pseudo-header).
        let sum = checksum(&packet);
        packet[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    socket.send_to(&packet, SocketAddr::new(ip, 0)).await?;
    let mut buf = [0u8; 1500];
    loop {
        let (n, from) = socket.recv_from(&mut buf).await?;
        if from.ip() != ip {
            continue;
        }
        let mut icmp = &buf[..n];
        if raw && v4 {
            let header = usize::from(icmp.first().map_or(0, |b| b & 0x0f)) * 4;
            icmp = icmp.get(header..).unwrap_or_default();
        }
        if icmp.len() < 8 + PAYLOAD.len() {
            continue;
        }
        let reply = if v4 { ECHO_REPLY_V4 } else { ECHO_REPLY_V6 };
        // Datagram sockets: the kernel owns the identifier and filters by it.
        let id_ok = !raw || icmp[4..6] == id.to_be_bytes();
        if icmp[0] == reply && id_ok && icmp[6..8] == seq.to_be_bytes() && &icmp[8..16] == PAYLOAD {
            return Ok(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::checksum;

    #[test]
    fn internet_checksum() {
        // RFC 1071 example bytes.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(checksum(&data), !0xddf2);
        // Odd length pads with zero.
        assert_eq!(checksum(&[0xff]), !0xff00);
    }
}
