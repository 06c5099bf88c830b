//! IPv6 neighbour discovery (RFC 4861) over Ethernet: building neighbour advertisements
//! (NA), parsing neighbour solicitations (NS) and advertisements that arrive.
//!
//! Pure byte handling, no I/O, so it is unit-tested here. Frames are whole Ethernet
//! frames: Ethernet header, IPv6 header (no extension headers), ICMPv6 message with the
//! checksum over the IPv6 pseudo-header. Parsing applies the validity checks of RFC 4861
//! §7.1 (hop limit 255, code 0, checksum, lengths, options), so a frame that a host
//! must silently discard parses as `None`.

use std::net::Ipv6Addr;

use super::arp::MacAddr;

/// EtherType of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
/// IPv6 next-header value of ICMPv6.
pub const NEXT_HEADER_ICMPV6: u8 = 58;
/// ICMPv6 type: neighbour solicitation.
pub const TYPE_NS: u8 = 135;
/// ICMPv6 type: neighbour advertisement.
pub const TYPE_NA: u8 = 136;
/// The only hop limit neighbour discovery accepts (proof that the sender is on-link).
pub const HOP_LIMIT: u8 = 255;

/// Offsets in a frame, for the socket's packet filter.
pub const OFFSET_NEXT_HEADER: u32 = (ETH_HEADER_LEN + 6) as u32;
/// See [`OFFSET_NEXT_HEADER`].
pub const OFFSET_HOP_LIMIT: u32 = (ETH_HEADER_LEN + 7) as u32;
/// See [`OFFSET_NEXT_HEADER`].
pub const OFFSET_ICMP_TYPE: u32 = (ETH_HEADER_LEN + IPV6_HEADER_LEN) as u32;

const ETH_HEADER_LEN: usize = 14;
const IPV6_HEADER_LEN: usize = 40;
/// ICMPv6 header (4) + reserved/flags (4) + target (16).
const ND_LEN: usize = 24;
/// Option types.
const OPT_SOURCE_LLA: u8 = 1;
const OPT_TARGET_LLA: u8 = 2;
/// NA flags (first byte after the ICMPv6 header).
const FLAG_ROUTER: u8 = 0x80;
const FLAG_SOLICITED: u8 = 0x40;
const FLAG_OVERRIDE: u8 = 0x20;

/// ff02::1, all nodes on the link.
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// The solicited-node multicast address of `ip` (ff02::1:ffXX:XXXX), where NS for it go.
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

/// The Ethernet address of an IPv6 multicast address (33:33 and its last 32 bits).
pub fn multicast_mac(ip: Ipv6Addr) -> MacAddr {
    let o = ip.octets();
    MacAddr([0x33, 0x33, o[12], o[13], o[14], o[15]])
}

/// Whether an Ethernet address is a group (multicast or broadcast) address.
pub fn is_group_mac(mac: MacAddr) -> bool {
    mac.0[0] & 1 == 1
}

/// A neighbour discovery message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NdMessage {
    /// "Who has `target`?"; `source_lla` is the asker's link-layer address option.
    Solicit {
        /// The address asked about.
        target: Ipv6Addr,
        /// The source link-layer address option, if present.
        source_lla: Option<MacAddr>,
    },
    /// "`target` is at `target_lla`".
    Advert {
        /// The address advertised.
        target: Ipv6Addr,
        /// R flag: the sender is a router.
        router: bool,
        /// S flag: an answer to a solicitation.
        solicited: bool,
        /// O flag: override an existing cache entry.
        override_: bool,
        /// The target link-layer address option, if present.
        target_lla: Option<MacAddr>,
    },
}

/// An Ethernet frame carrying an IPv6 packet carrying an NS or NA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NdpFrame {
    /// Ethernet destination.
    pub eth_dst: MacAddr,
    /// Ethernet source.
    pub eth_src: MacAddr,
    /// IPv6 source.
    pub ip_src: Ipv6Addr,
    /// IPv6 destination.
    pub ip_dst: Ipv6Addr,
    /// The message.
    pub message: NdMessage,
}

impl NdpFrame {
    /// An unsolicited NA announcing that `target` is at `mac`: to all nodes, O flag set,
    /// S clear, target link-layer address option. The IPv6 source is the VIP itself (as
    /// Linux does for its own addresses).
    pub fn unsolicited_advert(mac: MacAddr, target: Ipv6Addr) -> NdpFrame {
        NdpFrame {
            eth_dst: multicast_mac(ALL_NODES),
            eth_src: mac,
            ip_src: target,
            ip_dst: ALL_NODES,
            message: NdMessage::Advert {
                target,
                router: false,
                solicited: false,
                override_: true,
                target_lla: Some(mac),
            },
        }
    }

    /// The answer to the solicitation `ns` for `target`: S and O set, unicast to the
    /// asker's link-layer address (its option, else the frame's source). A solicitation
    /// from the unspecified address (duplicate address detection) is answered to all
    /// nodes with S clear (RFC 4861 §7.2.4). `None` if `ns` is not a solicitation.
    pub fn advert_answering(ns: &NdpFrame, mac: MacAddr, target: Ipv6Addr) -> Option<NdpFrame> {
        let NdMessage::Solicit { source_lla, .. } = ns.message else {
            return None;
        };
        let dad = ns.ip_src.is_unspecified();
        let (eth_dst, ip_dst) = if dad {
            (multicast_mac(ALL_NODES), ALL_NODES)
        } else {
            (source_lla.unwrap_or(ns.eth_src), ns.ip_src)
        };
        Some(NdpFrame {
            eth_dst,
            eth_src: mac,
            ip_src: target,
            ip_dst,
            message: NdMessage::Advert {
                target,
                router: false,
                solicited: !dad,
                override_: true,
                target_lla: Some(mac),
            },
        })
    }

    /// A solicitation for `target` from `source` (`mac`), to `target`'s solicited-node
    /// group, or unicast to `unicast_to` (a reachability probe). Used by the tests.
    #[cfg(test)]
    pub fn solicit(
        mac: MacAddr,
        source: Ipv6Addr,
        target: Ipv6Addr,
        unicast_to: Option<MacAddr>,
    ) -> NdpFrame {
        let (eth_dst, ip_dst) = match unicast_to {
            Some(dst) => (dst, target),
            None => (
                multicast_mac(solicited_node(target)),
                solicited_node(target),
            ),
        };
        NdpFrame {
            eth_dst,
            eth_src: mac,
            ip_src: source,
            ip_dst,
            message: NdMessage::Solicit {
                target,
                source_lla: (!source.is_unspecified()).then_some(mac),
            },
        }
    }

    /// The frame on the wire (at least 86 bytes, so never shorter than Ethernet's
    /// minimum).
    pub fn to_bytes(self) -> Vec<u8> {
        let mut icmp = Vec::with_capacity(ND_LEN + 8);
        let (kind, flags, target, lla) = match self.message {
            NdMessage::Solicit { target, source_lla } => {
                (TYPE_NS, 0, target, source_lla.map(|m| (OPT_SOURCE_LLA, m)))
            }
            NdMessage::Advert {
                target,
                router,
                solicited,
                override_,
                target_lla,
            } => {
                let mut flags = 0;
                if router {
                    flags |= FLAG_ROUTER;
                }
                if solicited {
                    flags |= FLAG_SOLICITED;
                }
                if override_ {
                    flags |= FLAG_OVERRIDE;
                }
                (
                    TYPE_NA,
                    flags,
                    target,
                    target_lla.map(|m| (OPT_TARGET_LLA, m)),
                )
            }
        };
        icmp.extend_from_slice(&[kind, 0, 0, 0, flags, 0, 0, 0]);
        icmp.extend_from_slice(&target.octets());
        if let Some((option, mac)) = lla {
            icmp.extend_from_slice(&[option, 1]);
            icmp.extend_from_slice(&mac.0);
        }
        let sum = checksum(self.ip_src, self.ip_dst, &icmp);
        icmp[2..4].copy_from_slice(&sum.to_be_bytes());

        let mut b = Vec::with_capacity(ETH_HEADER_LEN + IPV6_HEADER_LEN + icmp.len());
        b.extend_from_slice(&self.eth_dst.0);
        b.extend_from_slice(&self.eth_src.0);
        b.extend_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
        b.extend_from_slice(&[0x60, 0, 0, 0]); // version 6, traffic class 0, flow label 0
        let payload_len = u16::try_from(icmp.len()).unwrap_or(u16::MAX);
        b.extend_from_slice(&payload_len.to_be_bytes());
        b.push(NEXT_HEADER_ICMPV6);
        b.push(HOP_LIMIT);
        b.extend_from_slice(&self.ip_src.octets());
        b.extend_from_slice(&self.ip_dst.octets());
        b.extend_from_slice(&icmp);
        b
    }

    /// Parses an Ethernet frame; `None` unless it is a valid NS or NA (untagged, no IPv6
    /// extension headers). Trailing bytes past the IPv6 payload (Ethernet padding) are
    /// ignored.
    pub fn parse(frame: &[u8]) -> Option<NdpFrame> {
        if frame.len() < ETH_HEADER_LEN + IPV6_HEADER_LEN + ND_LEN {
            return None;
        }
        let u16_at = |i: usize| u16::from_be_bytes([frame[i], frame[i + 1]]);
        if u16_at(12) != ETHERTYPE_IPV6 {
            return None;
        }
        let ip = &frame[ETH_HEADER_LEN..];
        if ip[0] >> 4 != 6 || ip[6] != NEXT_HEADER_ICMPV6 || ip[7] != HOP_LIMIT {
            return None;
        }
        let payload_len = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
        if payload_len < ND_LEN || ip.len() < IPV6_HEADER_LEN + payload_len {
            return None;
        }
        let addr_at = |i: usize| {
            let mut o = [0u8; 16];
            o.copy_from_slice(&ip[i..i + 16]);
            Ipv6Addr::from(o)
        };
        let ip_src = addr_at(8);
        let ip_dst = addr_at(24);
        let icmp = &ip[IPV6_HEADER_LEN..IPV6_HEADER_LEN + payload_len];
        if icmp[1] != 0 || checksum(ip_src, ip_dst, icmp) != 0 {
            return None;
        }
        if ip_src.is_multicast() {
            return None;
        }
        let target = {
            let mut o = [0u8; 16];
            o.copy_from_slice(&icmp[8..24]);
            Ipv6Addr::from(o)
        };
        if target.is_multicast() {
            return None;
        }
        let (source_lla, target_lla) = parse_options(&icmp[ND_LEN..])?;
        let message = match icmp[0] {
            TYPE_NS => {
                if ip_src.is_unspecified()
                    && (ip_dst != solicited_node(target) || source_lla.is_some())
                {
                    return None;
                }
                NdMessage::Solicit { target, source_lla }
            }
            TYPE_NA => {
                let flags = icmp[4];
                let solicited = flags & FLAG_SOLICITED != 0;
                if solicited && ip_dst.is_multicast() {
                    return None;
                }
                NdMessage::Advert {
                    target,
                    router: flags & FLAG_ROUTER != 0,
                    solicited,
                    override_: flags & FLAG_OVERRIDE != 0,
                    target_lla,
                }
            }
            _ => return None,
        };
        Some(NdpFrame {
            eth_dst: MacAddr::from_slice(&frame[0..6])?,
            eth_src: MacAddr::from_slice(&frame[6..12])?,
            ip_src,
            ip_dst,
            message,
        })
    }
}

/// The source and target link-layer address options; `None` if the options are
/// malformed (a zero length, running past the end, or a link-layer address option that
/// is not one Ethernet address). Other options are skipped.
type LinkLayerOptions = (Option<MacAddr>, Option<MacAddr>);

fn parse_options(mut options: &[u8]) -> Option<LinkLayerOptions> {
    let (mut source, mut target) = (None, None);
    while !options.is_empty() {
        if options.len() < 2 {
            return None;
        }
        let len = usize::from(options[1]) * 8;
        if len == 0 || len > options.len() {
            return None;
        }
        let (option, rest) = options.split_at(len);
        match option[0] {
            OPT_SOURCE_LLA | OPT_TARGET_LLA => {
                if len != 8 {
                    return None;
                }
                let mac = MacAddr::from_slice(&option[2..8]);
                if option[0] == OPT_SOURCE_LLA {
                    source = mac;
                } else {
                    target = mac;
                }
            }
            _ => {}
        }
        options = rest;
    }
    Some((source, target))
}

/// The ICMPv6 checksum (RFC 4443 §2.3) of `icmp` between `src` and `dst`. Over a
/// message whose checksum field is filled in, a correct checksum gives 0.
pub fn checksum(src: Ipv6Addr, dst: Ipv6Addr, icmp: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut add = |bytes: &[u8]| {
        for pair in bytes.chunks(2) {
            let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
            sum += u32::from(word);
        }
    };
    add(&src.octets());
    add(&dst.octets());
    let len = u32::try_from(icmp.len()).unwrap_or(u32::MAX);
    add(&len.to_be_bytes());
    add(&[0, 0, 0, NEXT_HEADER_ICMPV6]);
    add(icmp);
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x0a]);
    const ASKER: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x0b]);

    fn vip() -> Ipv6Addr {
        "fd00:77:1::50".parse().unwrap()
    }

    fn asker_ip() -> Ipv6Addr {
        "fd00:77:1::c".parse().unwrap()
    }

    #[test]
    fn solicited_node_and_multicast_mac() {
        let ip: Ipv6Addr = "2001:db8::1234:5678".parse().unwrap();
        assert_eq!(
            solicited_node(ip),
            "ff02::1:ff34:5678".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(
            multicast_mac(solicited_node(ip)),
            MacAddr([0x33, 0x33, 0xff, 0x34, 0x56, 0x78])
        );
        assert_eq!(multicast_mac(ALL_NODES), MacAddr([0x33, 0x33, 0, 0, 0, 1]));
        assert!(is_group_mac(multicast_mac(ALL_NODES)));
        assert!(is_group_mac(MacAddr::BROADCAST));
        assert!(!is_group_mac(MAC));
    }

    #[test]
    fn unsolicited_advert_bytes_are_exact() {
        let b = NdpFrame::unsolicited_advert(MAC, vip()).to_bytes();
        #[rustfmt::skip]
        let expected: Vec<u8> = [
            // Ethernet: 33:33:00:00:00:01 <- MAC, IPv6
            &[0x33, 0x33, 0, 0, 0, 1][..], &MAC.0, &[0x86, 0xdd],
            // IPv6: version 6, payload 32, ICMPv6, hop limit 255
            &[0x60, 0, 0, 0, 0, 32, 58, 255],
            &vip().octets(), &ALL_NODES.octets(),
            // NA, code 0, checksum, flags O, reserved
            &[136, 0, 0x59, 0x04, 0x20, 0, 0, 0],
            &vip().octets(),
            // target link-layer address option
            &[2, 1], &MAC.0,
        ]
        .concat();
        assert_eq!(b, expected);
        assert_eq!(b.len(), 86);
        // Independently: the checksum over pseudo-header and message folds to zero.
        assert_eq!(checksum(vip(), ALL_NODES, &b[54..]), 0);
        assert_eq!(
            NdpFrame::parse(&b),
            Some(NdpFrame::unsolicited_advert(MAC, vip()))
        );
    }

    /// The checksum against a hand computation on a tiny input.
    #[test]
    fn checksum_by_hand() {
        let src = Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 1);
        let dst = Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 2);
        // 1 + 2 + length 3 + 58 + 0x0102 + 0x0300 = 0x0442 -> !0x0442 = 0xfbbd
        assert_eq!(checksum(src, dst, &[1, 2, 3]), 0xfbbd);
        // Carries fold back in.
        let ones = Ipv6Addr::from([0xff; 16]);
        let sum = checksum(ones, ones, &[]);
        let mut manual: u32 = 16 * 0xffff + 58;
        while manual >> 16 != 0 {
            manual = (manual & 0xffff) + (manual >> 16);
        }
        assert_eq!(sum, !(manual as u16));
    }

    #[test]
    fn answer_goes_back_to_the_asker_with_s_and_o() {
        let ns = NdpFrame::solicit(ASKER, asker_ip(), vip(), None);
        assert_eq!(ns.ip_dst, "ff02::1:ff00:50".parse::<Ipv6Addr>().unwrap());
        assert_eq!(ns.eth_dst, MacAddr([0x33, 0x33, 0xff, 0, 0, 0x50]));
        let parsed = NdpFrame::parse(&ns.to_bytes()).unwrap();
        assert_eq!(parsed, ns);
        let na = NdpFrame::advert_answering(&parsed, MAC, vip()).unwrap();
        assert_eq!((na.eth_dst, na.eth_src), (ASKER, MAC));
        assert_eq!((na.ip_src, na.ip_dst), (vip(), asker_ip()));
        assert_eq!(
            na.message,
            NdMessage::Advert {
                target: vip(),
                router: false,
                solicited: true,
                override_: true,
                target_lla: Some(MAC),
            }
        );
        let bytes = na.to_bytes();
        assert_eq!(bytes[54 + 4], 0x60, "S and O flags");
        assert_eq!(bytes[21], 255, "hop limit");
        assert_eq!(NdpFrame::parse(&bytes), Some(na));
        // An advert is not answered.
        assert_eq!(NdpFrame::advert_answering(&na, MAC, vip()), None);
    }

    #[test]
    fn answer_without_source_option_uses_frame_source() {
        let mut ns = NdpFrame::solicit(ASKER, asker_ip(), vip(), Some(MAC));
        ns.message = NdMessage::Solicit {
            target: vip(),
            source_lla: None,
        };
        let parsed = NdpFrame::parse(&ns.to_bytes()).unwrap();
        assert_eq!(parsed.ip_dst, vip(), "unicast probe");
        let na = NdpFrame::advert_answering(&parsed, MAC, vip()).unwrap();
        assert_eq!(na.eth_dst, ASKER);
    }

    #[test]
    fn duplicate_address_detection_is_answered_to_all_nodes() {
        let ns = NdpFrame::solicit(ASKER, Ipv6Addr::UNSPECIFIED, vip(), None);
        let parsed = NdpFrame::parse(&ns.to_bytes()).unwrap();
        let na = NdpFrame::advert_answering(&parsed, MAC, vip()).unwrap();
        assert_eq!(
            (na.eth_dst, na.ip_dst),
            (multicast_mac(ALL_NODES), ALL_NODES)
        );
        assert!(matches!(
            na.message,
            NdMessage::Advert {
                solicited: false,
                override_: true,
                ..
            }
        ));
        assert!(NdpFrame::parse(&na.to_bytes()).is_some());
    }

    #[test]
    fn parse_ignores_padding_and_unknown_options() {
        let ns = NdpFrame::solicit(ASKER, asker_ip(), vip(), None);
        let mut b = ns.to_bytes();
        b.extend_from_slice(&[0xaa; 10]);
        assert_eq!(NdpFrame::parse(&b), Some(ns));

        // A nonce option (type 14, 8 bytes) after the source link-layer address.
        let mut icmp = ns.to_bytes()[54..].to_vec();
        icmp.extend_from_slice(&[14, 1, 1, 2, 3, 4, 5, 6]);
        let b = reframe(&ns.to_bytes(), icmp, true);
        assert_eq!(NdpFrame::parse(&b), Some(ns));
    }

    /// `frame` with its ICMPv6 message replaced, payload length (and checksum if asked)
    /// fixed up.
    fn reframe(frame: &[u8], mut icmp: Vec<u8>, fix_checksum: bool) -> Vec<u8> {
        let mut b = frame[..54].to_vec();
        b[18..20].copy_from_slice(&(icmp.len() as u16).to_be_bytes());
        if fix_checksum {
            icmp[2] = 0;
            icmp[3] = 0;
            let src = Ipv6Addr::from(<[u8; 16]>::try_from(&b[22..38]).unwrap());
            let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&b[38..54]).unwrap());
            let sum = checksum(src, dst, &icmp);
            icmp[2..4].copy_from_slice(&sum.to_be_bytes());
        }
        b.extend_from_slice(&icmp);
        b
    }

    #[test]
    fn parse_rejects_malformed_and_invalid() {
        let good = NdpFrame::solicit(ASKER, asker_ip(), vip(), None).to_bytes();
        assert!(NdpFrame::parse(&good).is_some());
        let icmp = good[54..].to_vec();
        let bad = |what: &str, b: Vec<u8>| assert_eq!(NdpFrame::parse(&b), None, "{what}");

        bad("empty", vec![]);
        bad("truncated", good[..good.len() - 1].to_vec());
        bad("header only", good[..54 + 23].to_vec());
        let mut b = good.clone();
        b[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        bad("IPv4 ethertype", b);
        let mut b = good.clone();
        b[14] = 0x40;
        bad("IP version 4", b);
        let mut b = good.clone();
        b[20] = 0; // hop-by-hop options header
        bad("extension header", b);
        let mut b = good.clone();
        b[21] = 64;
        bad("hop limit not 255 (off-link)", b);
        let mut b = good.clone();
        b[54 + 2] ^= 1;
        bad("bad checksum", b);
        let mut b = good.clone();
        b[54 + 30] ^= 1;
        bad("corrupted option (checksum)", b);
        let mut b = good.clone();
        b[18..20].copy_from_slice(&200u16.to_be_bytes());
        bad("payload length past the end", b);

        let mut code = icmp.clone();
        code[1] = 1;
        bad("code not 0", reframe(&good, code, true));
        let mut kind = icmp.clone();
        kind[0] = 128; // echo request
        bad("not NS/NA", reframe(&good, kind, true));
        let mut zero_len = icmp.clone();
        zero_len[25] = 0;
        bad("option of length 0", reframe(&good, zero_len, true));
        let mut long = icmp.clone();
        long[25] = 2;
        bad("option past the end", reframe(&good, long, true));
        let mut short = icmp.clone();
        short.push(1);
        bad("option stub", reframe(&good, short, true));
        let mut mcast_target = icmp.clone();
        mcast_target[8] = 0xff;
        bad("multicast target", reframe(&good, mcast_target, true));

        // DAD: from :: must go to the solicited-node group and carry no source option.
        let dad = NdpFrame::solicit(ASKER, Ipv6Addr::UNSPECIFIED, vip(), None).to_bytes();
        assert!(NdpFrame::parse(&dad).is_some());
        let mut with_option = dad[54..].to_vec();
        with_option.extend_from_slice(&[1, 1]);
        with_option.extend_from_slice(&ASKER.0);
        bad("DAD with source option", reframe(&dad, with_option, true));
        let mut dad_unicast = NdpFrame::solicit(ASKER, Ipv6Addr::UNSPECIFIED, vip(), Some(MAC));
        dad_unicast.ip_dst = vip();
        bad("DAD to unicast", dad_unicast.to_bytes());

        // A solicited advert to a multicast address.
        let mut na = NdpFrame::unsolicited_advert(MAC, vip());
        if let NdMessage::Advert { solicited, .. } = &mut na.message {
            *solicited = true;
        }
        bad("solicited NA to multicast", na.to_bytes());
    }
}
