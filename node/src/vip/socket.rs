//! A raw `AF_PACKET` socket bound to one interface that sees only ARP frames.
//!
//! The socket is opened with protocol 0 (it receives nothing) and then bound to the
//! interface with protocol `ETH_P_ARP`, so the kernel hands it only the ARP frames that
//! arrive on that interface: not the data traffic, and not frames sent by this host.
//! Opening it needs `CAP_NET_RAW`.
//!
//! The only `unsafe` of the VIP module lives here: socket2 has no safe constructor for a
//! `sockaddr_ll` address, and tokio's `AsyncFd::register` is `unsafe` (I/O safety).
#![allow(unsafe_code)]

use std::io::{self, Read};

use socket2::{Domain, SockAddr, SockAddrStorage, Socket, Type};
use tokio::io::unix::AsyncFd;

/// `ETH_P_ARP` from `<linux/if_ether.h>`.
const ETH_P_ARP: u16 = 0x0806;

/// A nonblocking packet socket for ARP on one interface, driven by tokio.
pub struct ArpSocket {
    fd: AsyncFd<Socket>,
}

impl ArpSocket {
    /// Opens the socket on the interface with index `ifindex`.
    pub fn open(ifindex: u32) -> io::Result<ArpSocket> {
        let ifindex = i32::try_from(ifindex).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, "interface index too large")
        })?;
        let socket = Socket::new(Domain::PACKET, Type::RAW, None)?;
        socket.set_nonblocking(true)?;
        socket.bind(&link_addr(ifindex, ETH_P_ARP))?;
        // SAFETY: `socket` owns its file descriptor, which stays open and the same for as
        // long as the `Socket` lives, and the `Socket` is moved into (owned by) the AsyncFd.
        let fd = unsafe { AsyncFd::register(socket) }?;
        Ok(ArpSocket { fd })
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
