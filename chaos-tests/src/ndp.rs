//! IPv6 neighbour discovery seen from the lab: the IPv6 counterpart of [`crate::arp`] and
//! [`crate::failover::ArpWatch`].
//!
//! [`NdpObserver`] records every neighbour solicitation (NS) and advertisement (NA) on a
//! namespace's link (a raw `AF_PACKET` socket for the IPv6 ethertype); [`NsRequester`] sends a
//! multicast NS for each watched address every interval (to its solicited-node group, hop
//! limit 255, with a source link-layer address option and a valid ICMPv6 checksum, so a
//! node that checks RFC 4861 §7.1 answers it). [`NdpWatch`] puts observers in the client and
//! watcher namespaces and the requester in the watcher, and turns NAs for a VIP into
//! [`Claim`]s, so the ARP safety checks ([`crate::failover::check_handover`],
//! [`crate::failover::double_answer_spans`]) apply unchanged: a solicited NA is a reply, an
//! unsolicited one an announcement.

use std::net::Ipv6Addr;
use std::time::Instant;

use crate::arp::{mac_string, Frame, LinkQuery, PacketObserver, PacketRequester};
use crate::failover::{Claim, ClaimFrame, VipWatch};
use crate::lab::Lab;

const ETH_P_IPV6: u16 = 0x86dd;
const NEXT_HEADER_ICMPV6: u8 = 58;
const TYPE_NS: u8 = 135;
const TYPE_NA: u8 = 136;
const ETH_LEN: usize = 14;
const IP6_LEN: usize = 40;

/// Solicitation or advertisement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NdKind {
    /// Neighbour solicitation ("who has target?").
    Solicit,
    /// Neighbour advertisement ("target is at ...").
    Advert {
        /// S flag: an answer to a solicitation.
        solicited: bool,
        /// O flag.
        override_: bool,
    },
}

/// One NS or NA seen on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NdEvent {
    /// When it was read.
    pub at: Instant,
    /// Ethernet source.
    pub eth_src: String,
    /// IPv6 source.
    pub ip_src: Ipv6Addr,
    /// The address asked about or advertised.
    pub target: Ipv6Addr,
    /// Which message.
    pub kind: NdKind,
    /// The link-layer address option (source for NS, target for NA), if present.
    pub lla: Option<String>,
}

impl NdEvent {
    /// The MAC an advertisement claims `target` for (its option, else the frame's source).
    pub fn claimed_mac(&self) -> String {
        self.lla.clone().unwrap_or_else(|| self.eth_src.clone())
    }
}

/// Parses an Ethernet frame carrying an IPv6 NS or NA (no extension headers, hop limit 255).
pub fn parse_nd(frame: &[u8], at: Instant) -> Option<NdEvent> {
    if frame.len() < ETH_LEN + IP6_LEN + 24
        || u16::from_be_bytes([frame[12], frame[13]]) != ETH_P_IPV6
    {
        return None;
    }
    let ip = &frame[ETH_LEN..];
    if ip[0] >> 4 != 6 || ip[6] != NEXT_HEADER_ICMPV6 || ip[7] != 255 {
        return None;
    }
    let addr = |b: &[u8]| Ipv6Addr::from(<[u8; 16]>::try_from(b).expect("16 bytes"));
    let ip_src = addr(&ip[8..24]);
    let icmp = &ip[IP6_LEN..];
    let kind = match (icmp[0], icmp[1]) {
        (TYPE_NS, 0) => NdKind::Solicit,
        (TYPE_NA, 0) => NdKind::Advert {
            solicited: icmp[4] & 0x40 != 0,
            override_: icmp[4] & 0x20 != 0,
        },
        _ => return None,
    };
    let target = addr(&icmp[8..24]);
    let want_opt = if kind == NdKind::Solicit { 1 } else { 2 };
    let mut lla = None;
    let mut opts = &icmp[24..];
    while opts.len() >= 8 {
        let len = usize::from(opts[1]) * 8;
        if len == 0 || len > opts.len() {
            break;
        }
        if opts[0] == want_opt && len >= 8 {
            lla = Some(mac_string(opts[2..8].try_into().expect("6 bytes")));
        }
        opts = &opts[len..];
    }
    Some(NdEvent {
        at,
        eth_src: mac_string(frame[6..12].try_into().expect("6 bytes")),
        ip_src,
        target,
        kind,
        lla,
    })
}

/// The solicited-node multicast group of `ip` (`ff02::1:ffXX:XXXX`).
pub fn solicited_node(ip: Ipv6Addr) -> Ipv6Addr {
    let o = ip.octets();
    Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(o[13]),
        u16::from_be_bytes([o[14], o[15]]),
    )
}

/// The ICMPv6 checksum of `icmp` (checksum field zero) from `src` to `dst`.
pub fn icmpv6_checksum(src: Ipv6Addr, dst: Ipv6Addr, icmp: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut add = |b: &[u8]| {
        for c in b.chunks(2) {
            let w = if c.len() == 2 {
                u16::from_be_bytes([c[0], c[1]])
            } else {
                u16::from_be_bytes([c[0], 0])
            };
            sum += u32::from(w);
        }
    };
    add(&src.octets());
    add(&dst.octets());
    add(&(icmp.len() as u32).to_be_bytes());
    add(&[0, 0, 0, NEXT_HEADER_ICMPV6]);
    add(icmp);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A multicast NS "who has `target`?" from `mac`/`src`, to `target`'s solicited-node group.
pub fn ns_frame(mac: [u8; 6], src: Ipv6Addr, target: Ipv6Addr) -> Vec<u8> {
    let group = solicited_node(target);
    let g = group.octets();
    let mut icmp = vec![TYPE_NS, 0, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(&target.octets());
    icmp.extend_from_slice(&[1, 1]);
    icmp.extend_from_slice(&mac);
    let sum = icmpv6_checksum(src, group, &icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    let mut f = Vec::with_capacity(ETH_LEN + IP6_LEN + icmp.len());
    f.extend_from_slice(&[0x33, 0x33, g[12], g[13], g[14], g[15]]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&ETH_P_IPV6.to_be_bytes());
    f.extend_from_slice(&[0x60, 0, 0, 0]);
    f.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
    f.push(NEXT_HEADER_ICMPV6);
    f.push(255);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&g);
    f.extend_from_slice(&icmp);
    f
}

impl Frame for NdEvent {
    const ETHERTYPE: u16 = ETH_P_IPV6;
    const THREAD: &'static str = "ndp";
    const SOCKET: &'static str = "IPv6 packet socket";
    const NAME: &'static str = "NDP";

    fn parse(frame: &[u8], at: Instant) -> Option<NdEvent> {
        parse_nd(frame, at)
    }
}

impl LinkQuery for Ipv6Addr {
    const THREAD: &'static str = "nsreq";
    const NAME: &'static str = "NS requester";

    fn request(mac: [u8; 6], sender: Ipv6Addr, target: Ipv6Addr) -> Vec<u8> {
        ns_frame(mac, sender, target)
    }
}

impl ClaimFrame for NdEvent {
    type Addr = Ipv6Addr;
    const REQUESTS: &'static str = "NS";

    fn watcher_addr(lab: &Lab) -> Ipv6Addr {
        lab.watcher_ip6()
    }

    /// A solicited NA is a reply, an unsolicited one an announcement.
    fn into_claim(self, vip: Ipv6Addr) -> Option<Claim> {
        match self.kind {
            NdKind::Advert { solicited, .. } if self.target == vip => Some(Claim {
                at: self.at,
                garp: !solicited,
                mac: self.claimed_mac(),
            }),
            _ => None,
        }
    }
}

/// Records NS and NA frames in a namespace until dropped.
pub type NdpObserver = PacketObserver<NdEvent>;

/// Sends a multicast NS for each watched address every `interval` from one interface of a
/// namespace and records when each went out. Run it where the neighbour cache does not matter
/// (the lab's watcher namespace).
pub type NsRequester = PacketRequester<Ipv6Addr>;

/// Who claims the watched IPv6 VIPs: NDP observers in the client and the watcher namespaces,
/// and an [`NsRequester`] in the watcher namespace asking for every watched VIP each round.
/// The lab needs IPv6.
pub type NdpWatch = VipWatch<NdEvent>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ns_round_trip_and_checksum() {
        let mac = [2, 0, 0, 0, 0, 0x65];
        let src: Ipv6Addr = "fd77:0:5::101".parse().unwrap();
        let target: Ipv6Addr = "fd77:0:5::200".parse().unwrap();
        let f = ns_frame(mac, src, target);
        assert_eq!(f.len(), 14 + 40 + 32);
        assert_eq!(&f[..6], &[0x33, 0x33, 0xff, 0, 0x02, 0]);
        let e = parse_nd(&f, Instant::now()).unwrap();
        assert_eq!(e.kind, NdKind::Solicit);
        assert_eq!((e.ip_src, e.target), (src, target));
        assert_eq!(e.lla.as_deref(), Some("02:00:00:00:00:65"));
        // The checksum over the message with its checksum in place folds to zero.
        let group = solicited_node(target);
        assert_eq!(icmpv6_checksum(src, group, &f[54..]), 0);
        assert_eq!(group, "ff02::1:ff00:200".parse::<Ipv6Addr>().unwrap());
    }

    #[test]
    fn parses_an_advert() {
        let mut f = ns_frame(
            [2, 0, 0, 0, 0, 1],
            "fd77::1".parse().unwrap(),
            "fd77::2".parse().unwrap(),
        );
        f[54] = TYPE_NA;
        f[58] = 0x60; // S and O
        f[78] = 2; // target link-layer address option
        let e = parse_nd(&f, Instant::now()).unwrap();
        assert_eq!(
            e.kind,
            NdKind::Advert {
                solicited: true,
                override_: true
            }
        );
        assert_eq!(e.claimed_mac(), "02:00:00:00:00:01");
        f[21] = 64; // hop limit other than 255: not neighbour discovery
        assert!(parse_nd(&f, Instant::now()).is_none());
    }
}
