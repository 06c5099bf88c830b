//! Raw `AF_PACKET` sockets bound to one interface that see only ARP frames, or only
//! IPv6 neighbour solicitations and advertisements; and the multicast memberships that
//! make NS for held IPv6 VIPs reach this host.
//!
//! A packet socket is opened with protocol 0 (it receives nothing), gets its packet
//! filter, and is then bound to the interface with protocol `ETH_P_ARP` or `ETH_P_IPV6`,
//! so the kernel hands it only the ARP (or NS/NA) frames that arrive on that interface:
//! not the data traffic, and not frames sent by this host. Opening it needs `CAP_NET_RAW`.
//!
//! The only `unsafe` of the VIP module lives here: socket2 has no safe constructor for a
//! `sockaddr_ll` address, and tokio's `AsyncFd::register` is `unsafe` (I/O safety).
#![allow(unsafe_code)]

use std::io::{self, Read};

use std::net::Ipv6Addr;

use socket2::{Domain, Protocol, SockAddr, SockAddrStorage, SockFilter, Socket, Type};
use tokio::io::unix::AsyncFd;

use super::ndp;

/// `ETH_P_ARP` from `<linux/if_ether.h>`.
const ETH_P_ARP: u16 = 0x0806;
/// `ETH_P_IPV6` from `<linux/if_ether.h>`.
const ETH_P_IPV6: u16 = 0x86dd;

// Classic BPF opcodes from `<linux/filter.h>`.
const BPF_LD_H_ABS: u16 = 0x28; // BPF_LD | BPF_H | BPF_ABS
const BPF_LD_B_ABS: u16 = 0x30; // BPF_LD | BPF_B | BPF_ABS
const BPF_JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const BPF_RET_K: u16 = 0x06; // BPF_RET | BPF_K

/// The packet filter of the NDP socket: IPv6, next header ICMPv6 (no extension headers),
/// hop limit 255, type NS or NA; anything else never leaves the kernel.
/// Instructions as (code, jump if true, jump if false, k); jump offsets count from the
/// next instruction: 10 is the drop, 9 the accept.
const NDP_FILTER: [(u16, u8, u8, u32); 11] = {
    const fn op(code: u16, jt: u8, jf: u8, k: u32) -> (u16, u8, u8, u32) {
        (code, jt, jf, k)
    }
    [
        /* 0 */ op(BPF_LD_H_ABS, 0, 0, 12), // ethertype
        /* 1 */ op(BPF_JEQ_K, 0, 8, ETH_P_IPV6 as u32),
        /* 2 */ op(BPF_LD_B_ABS, 0, 0, ndp::OFFSET_NEXT_HEADER),
        /* 3 */ op(BPF_JEQ_K, 0, 6, ndp::NEXT_HEADER_ICMPV6 as u32),
        /* 4 */ op(BPF_LD_B_ABS, 0, 0, ndp::OFFSET_HOP_LIMIT),
        /* 5 */ op(BPF_JEQ_K, 0, 4, ndp::HOP_LIMIT as u32),
        /* 6 */ op(BPF_LD_B_ABS, 0, 0, ndp::OFFSET_ICMP_TYPE),
        /* 7 */ op(BPF_JEQ_K, 1, 0, ndp::TYPE_NS as u32),
        /* 8 */ op(BPF_JEQ_K, 0, 1, ndp::TYPE_NA as u32),
        /* 9 */ op(BPF_RET_K, 0, 0, 0xffff), // accept (up to 64 KiB)
        /* 10 */ op(BPF_RET_K, 0, 0, 0), // drop
    ]
};

fn ndp_filter() -> Vec<SockFilter> {
    NDP_FILTER
        .iter()
        .map(|&(code, jt, jf, k)| SockFilter::new(code, jt, jf, k))
        .collect()
}

/// A nonblocking packet socket on one interface, driven by tokio.
pub struct PacketSocket {
    fd: AsyncFd<Socket>,
}

impl PacketSocket {
    /// The ARP socket of the interface with index `ifindex`.
    pub fn arp(ifindex: u32) -> io::Result<PacketSocket> {
        PacketSocket::open(ifindex, ETH_P_ARP, None)
    }

    /// The NS/NA socket of the interface with index `ifindex`.
    pub fn ndp(ifindex: u32) -> io::Result<PacketSocket> {
        PacketSocket::open(ifindex, ETH_P_IPV6, Some(&ndp_filter()))
    }

    fn open(
        ifindex: u32,
        protocol: u16,
        filter: Option<&[SockFilter]>,
    ) -> io::Result<PacketSocket> {
        let ifindex = i32::try_from(ifindex).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, "interface index too large")
        })?;
        let socket = Socket::new(Domain::PACKET, Type::RAW, None)?;
        socket.set_nonblocking(true)?;
        if let Some(filter) = filter {
            // Before `bind`: until then the socket receives nothing, so no frame ever
            // gets past without the filter.
            socket.attach_filter(filter)?;
        }
        socket.bind(&link_addr(ifindex, protocol))?;
        // SAFETY: `socket` owns its file descriptor, which stays open and the same for as
        // long as the `Socket` lives, and the `Socket` is moved into (owned by) the AsyncFd.
        let fd = unsafe { AsyncFd::register(socket) }?;
        Ok(PacketSocket { fd })
    }

    /// Receives one frame (Ethernet header included) into `buf`; returns its length.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|fd| fd.get_ref().read(buf)) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }

    /// Sends one complete Ethernet frame. Never waits: a full send queue is an error
    /// (`WouldBlock`), which the caller counts and moves on from.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        let sent = self.fd.get_ref().send(frame)?;
        if sent != frame.len() {
            return Err(io::Error::other(format!(
                "short send: {sent} of {} bytes",
                frame.len()
            )));
        }
        Ok(())
    }
}

/// Memberships of IPv6 multicast groups on one interface (the solicited-node groups of
/// held VIPs). Joining makes the kernel accept frames for the group's MAC and send MLD
/// reports, so that switches with MLD snooping forward NS for the VIPs to this port; the
/// kernel leaves the groups when the socket closes (also when the process dies).
///
/// A UDP socket that is never bound: it receives nothing.
pub struct Memberships {
    socket: Socket,
    ifindex: u32,
}

impl Memberships {
    /// A socket for memberships on the interface with index `ifindex`.
    pub fn open(ifindex: u32) -> io::Result<Memberships> {
        let socket = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))?;
        Ok(Memberships { socket, ifindex })
    }

    /// Joins `group` on the interface.
    pub fn join(&self, group: &Ipv6Addr) -> io::Result<()> {
        match self.socket.join_multicast_v6(group, self.ifindex) {
            Err(e) if e.raw_os_error() == Some(libc::EADDRINUSE) => Ok(()), // already
            other => other,
        }
    }

    /// Leaves `group` on the interface.
    pub fn leave(&self, group: &Ipv6Addr) -> io::Result<()> {
        self.socket.leave_multicast_v6(group, self.ifindex)
    }
}

/// A `sockaddr_ll` naming an interface and an EtherType, for `bind`.
fn link_addr(ifindex: i32, protocol: u16) -> SockAddr {
    let ll = libc::sockaddr_ll {
        sll_family: libc::AF_PACKET as libc::sa_family_t,
        sll_protocol: protocol.to_be(),
        sll_ifindex: ifindex,
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen: 0,
        sll_addr: [0; 8],
    };
    let mut storage = SockAddrStorage::zeroed();
    // SAFETY: `sockaddr_ll` is one of this platform's `sockaddr_*` types, as `view_as`
    // requires, and it is smaller than `sockaddr_storage` (view_as asserts that too).
    unsafe { *storage.view_as::<libc::sockaddr_ll>() = ll };
    let len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: the storage holds a fully initialised `sockaddr_ll` whose family is
    // AF_PACKET, and `len` is exactly the size of that structure.
    unsafe { SockAddr::new(storage, len) }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv6Addr;

    use super::super::arp::{ArpFrame, MacAddr};
    use super::super::ndp::NdpFrame;
    use super::*;

    /// Runs the four kinds of instruction the NDP filter uses, as the kernel would.
    fn run(filter: &[(u16, u8, u8, u32)], frame: &[u8]) -> u32 {
        let (mut pc, mut acc) = (0usize, 0u32);
        loop {
            let (code, jt, jf, k) = filter[pc];
            let at = k as usize;
            pc += 1;
            match code {
                BPF_LD_H_ABS => match frame.get(at..at + 2) {
                    Some(b) => acc = u32::from(u16::from_be_bytes([b[0], b[1]])),
                    None => return 0,
                },
                BPF_LD_B_ABS => match frame.get(at) {
                    Some(b) => acc = u32::from(*b),
                    None => return 0,
                },
                BPF_JEQ_K => pc += usize::from(if acc == k { jt } else { jf }),
                BPF_RET_K => return k,
                other => panic!("opcode {other:#x}"),
            }
        }
    }

    #[test]
    fn ndp_filter_passes_only_ns_and_na() {
        let mac = MacAddr([2, 0, 0, 0, 0, 1]);
        let vip: Ipv6Addr = "fd00::50".parse().unwrap();
        let src: Ipv6Addr = "fd00::c".parse().unwrap();
        let filter = NDP_FILTER;
        assert_eq!(ndp_filter().len(), filter.len());
        let na = NdpFrame::unsolicited_advert(mac, vip).to_bytes();
        let ns = NdpFrame::solicit(mac, src, vip, None).to_bytes();
        assert_eq!(run(&filter, &na), 0xffff);
        assert_eq!(run(&filter, &ns), 0xffff);
        let mut echo = ns.clone();
        echo[54] = 128;
        assert_eq!(run(&filter, &echo), 0);
        let mut hops = ns.clone();
        hops[21] = 254;
        assert_eq!(run(&filter, &hops), 0);
        let mut tcp = ns.clone();
        tcp[20] = 6;
        assert_eq!(run(&filter, &tcp), 0);
        let arp = ArpFrame::garp_reply(mac, "10.0.0.1".parse().unwrap()).to_bytes();
        assert_eq!(run(&filter, &arp), 0);
        assert_eq!(run(&filter, &ns[..30]), 0);
    }
}
