//! ARP over Ethernet: building gratuitous ARP and replies, parsing what arrives.
//!
//! Pure byte handling, no I/O, so it is unit-tested here.

use std::fmt;
use std::net::Ipv4Addr;

/// EtherType of ARP.
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// ARP operation: request.
pub const OP_REQUEST: u16 = 1;
/// ARP operation: reply.
pub const OP_REPLY: u16 = 2;

const ETH_HEADER_LEN: usize = 14;
const ARP_LEN: usize = 28;
/// The shortest Ethernet frame without FCS; shorter frames are zero-padded to it.
const MIN_FRAME_LEN: usize = 60;

/// An Ethernet (48-bit) hardware address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// ff:ff:ff:ff:ff:ff.
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    /// 00:00:00:00:00:00.
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    /// The address from a byte slice of exactly six bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<MacAddr> {
        <[u8; 6]>::try_from(bytes).ok().map(MacAddr)
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// An Ethernet frame carrying an IPv4-over-Ethernet ARP packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArpFrame {
    /// Ethernet destination.
    pub eth_dst: MacAddr,
    /// Ethernet source.
    pub eth_src: MacAddr,
    /// [`OP_REQUEST`] or [`OP_REPLY`] (other values are parsed and left to the caller).
    pub op: u16,
    /// Sender hardware address.
    pub sha: MacAddr,
    /// Sender protocol address.
    pub spa: Ipv4Addr,
    /// Target hardware address.
    pub tha: MacAddr,
    /// Target protocol address.
    pub tpa: Ipv4Addr,
}

impl ArpFrame {
    /// Gratuitous ARP, request form: "who has `ip`? tell `ip`", broadcast.
    pub fn garp_request(mac: MacAddr, ip: Ipv4Addr) -> ArpFrame {
        ArpFrame {
            eth_dst: MacAddr::BROADCAST,
            eth_src: mac,
            op: OP_REQUEST,
            sha: mac,
            spa: ip,
            tha: MacAddr::ZERO,
            tpa: ip,
        }
    }

    /// Gratuitous ARP, reply form: "`ip` is at `mac`", broadcast. The target hardware
    /// address is our own: Linux only takes a reply as gratuitous (and overrides an
    /// existing neighbour entry at once, ignoring `locktime`) when `tha == sha`.
    pub fn garp_reply(mac: MacAddr, ip: Ipv4Addr) -> ArpFrame {
        ArpFrame {
            eth_dst: MacAddr::BROADCAST,
            eth_src: mac,
            op: OP_REPLY,
            sha: mac,
            spa: ip,
            tha: mac,
            tpa: ip,
        }
    }

    /// The answer to `request` (whose target is `ip`), unicast to the asker.
    pub fn reply_to(request: &ArpFrame, mac: MacAddr, ip: Ipv4Addr) -> ArpFrame {
        ArpFrame {
            eth_dst: request.sha,
            eth_src: mac,
            op: OP_REPLY,
            sha: mac,
            spa: ip,
            tha: request.sha,
            tpa: request.spa,
        }
    }

    /// An ordinary request "who has `target`? tell `sender_ip`" (used by tests).
    #[cfg(test)]
    pub fn request(sender_mac: MacAddr, sender_ip: Ipv4Addr, target: Ipv4Addr) -> ArpFrame {
        ArpFrame {
            eth_dst: MacAddr::BROADCAST,
            eth_src: sender_mac,
            op: OP_REQUEST,
            sha: sender_mac,
            spa: sender_ip,
            tha: MacAddr::ZERO,
            tpa: target,
        }
    }

    /// Whether this announces `spa` (sender and target protocol address are the same).
    pub fn is_gratuitous(&self) -> bool {
        self.spa == self.tpa
    }

    /// The frame on the wire, padded to the 60-byte Ethernet minimum.
    pub fn to_bytes(self) -> Vec<u8> {
        let mut b = Vec::with_capacity(MIN_FRAME_LEN);
        b.extend_from_slice(&self.eth_dst.0);
        b.extend_from_slice(&self.eth_src.0);
        b.extend_from_slice(&ETHERTYPE_ARP.to_be_bytes());
        b.extend_from_slice(&1u16.to_be_bytes()); // htype: Ethernet
        b.extend_from_slice(&0x0800u16.to_be_bytes()); // ptype: IPv4
        b.push(6); // hlen
        b.push(4); // plen
        b.extend_from_slice(&self.op.to_be_bytes());
        b.extend_from_slice(&self.sha.0);
        b.extend_from_slice(&self.spa.octets());
        b.extend_from_slice(&self.tha.0);
        b.extend_from_slice(&self.tpa.octets());
        b.resize(MIN_FRAME_LEN, 0);
        b
    }

    /// Parses an Ethernet frame; `None` unless it is IPv4-over-Ethernet ARP (untagged).
    pub fn parse(frame: &[u8]) -> Option<ArpFrame> {
        if frame.len() < ETH_HEADER_LEN + ARP_LEN {
            return None;
        }
        let u16_at = |i: usize| u16::from_be_bytes([frame[i], frame[i + 1]]);
        let mac_at = |i: usize| MacAddr::from_slice(&frame[i..i + 6]);
        let ip_at = |i: usize| Ipv4Addr::new(frame[i], frame[i + 1], frame[i + 2], frame[i + 3]);
        if u16_at(12) != ETHERTYPE_ARP {
            return None;
        }
        let a = ETH_HEADER_LEN;
        if u16_at(a) != 1 || u16_at(a + 2) != 0x0800 || frame[a + 4] != 6 || frame[a + 5] != 4 {
            return None;
        }
        Some(ArpFrame {
            eth_dst: mac_at(0)?,
            eth_src: mac_at(6)?,
            op: u16_at(a + 6),
            sha: mac_at(a + 8)?,
            spa: ip_at(a + 14),
            tha: mac_at(a + 18)?,
            tpa: ip_at(a + 24),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x0a]);
    const ASKER: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x0b]);

    #[test]
    fn garp_reply_bytes_are_exact() {
        let ip = Ipv4Addr::new(10, 1, 2, 3);
        let b = ArpFrame::garp_reply(MAC, ip).to_bytes();
        let mut expected = vec![0xff; 6];
        expected.extend_from_slice(&MAC.0);
        expected.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 2]);
        expected.extend_from_slice(&MAC.0);
        expected.extend_from_slice(&[10, 1, 2, 3]);
        expected.extend_from_slice(&MAC.0);
        expected.extend_from_slice(&[10, 1, 2, 3]);
        expected.resize(60, 0);
        assert_eq!(b, expected);
    }

    #[test]
    fn garp_request_is_broadcast_with_zero_target_mac() {
        let ip = Ipv4Addr::new(192, 0, 2, 7);
        let f = ArpFrame::garp_request(MAC, ip);
        assert_eq!(f.eth_dst, MacAddr::BROADCAST);
        assert_eq!(f.op, OP_REQUEST);
        assert_eq!(f.tha, MacAddr::ZERO);
        assert!(f.is_gratuitous());
        assert_eq!(ArpFrame::parse(&f.to_bytes()), Some(f));
    }

    #[test]
    fn reply_goes_back_to_the_asker() {
        let vip = Ipv4Addr::new(10, 0, 0, 5);
        let asker_ip = Ipv4Addr::new(10, 0, 0, 9);
        let req = ArpFrame::request(ASKER, asker_ip, vip);
        assert!(!req.is_gratuitous());
        let rep = ArpFrame::reply_to(&req, MAC, vip);
        assert_eq!(rep.eth_dst, ASKER);
        assert_eq!(rep.eth_src, MAC);
        assert_eq!(rep.op, OP_REPLY);
        assert_eq!((rep.sha, rep.spa), (MAC, vip));
        assert_eq!((rep.tha, rep.tpa), (ASKER, asker_ip));
        assert_eq!(ArpFrame::parse(&rep.to_bytes()), Some(rep));
    }

    #[test]
    fn parse_accepts_unpadded_frames_and_ignores_trailer() {
        let f = ArpFrame::request(ASKER, Ipv4Addr::new(1, 2, 3, 4), Ipv4Addr::new(5, 6, 7, 8));
        let b = f.to_bytes();
        assert_eq!(ArpFrame::parse(&b[..42]), Some(f));
        let mut long = b.clone();
        long.extend_from_slice(&[0xaa; 20]);
        assert_eq!(ArpFrame::parse(&long), Some(f));
    }

    #[test]
    fn parse_rejects_garbage() {
        let good = ArpFrame::garp_reply(MAC, Ipv4Addr::new(10, 0, 0, 1)).to_bytes();
        assert_eq!(ArpFrame::parse(&[]), None);
        assert_eq!(ArpFrame::parse(&good[..41]), None);
        let mut ipv4 = good.clone();
        ipv4[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        assert_eq!(ArpFrame::parse(&ipv4), None, "not ARP ethertype");
        let mut htype = good.clone();
        htype[15] = 6;
        assert_eq!(ArpFrame::parse(&htype), None, "not Ethernet htype");
        let mut ptype = good.clone();
        ptype[16..18].copy_from_slice(&0x86ddu16.to_be_bytes());
        assert_eq!(ArpFrame::parse(&ptype), None, "not IPv4 ptype");
        let mut plen = good;
        plen[19] = 16;
        assert_eq!(ArpFrame::parse(&plen), None, "bad plen");
    }

    #[test]
    fn mac_display() {
        assert_eq!(MAC.to_string(), "02:00:00:00:00:0a");
        assert_eq!(MacAddr::from_slice(&[1, 2, 3]), None);
    }
}
