//! An ARP observer in the client namespace: records who answers for which IPv4 address.
//!
//! A raw `AF_PACKET` socket bound to the ARP ethertype, opened on a thread that entered the
//! client namespace, sees every ARP frame on the client's link: its own requests, the
//! replies, and gratuitous ARP from VIP takeovers. [`ArpObserver::macs_for`] tells which
//! MACs claimed an address; two MACs claiming one VIP in overlapping windows is a split brain
//! (invariant 3). [`ArpRequester`] asks for addresses (broadcast ARP requests) at a fixed
//! pace, so that whoever answers for a VIP shows up every round. No `unsafe`: socket2 and
//! nix wrap the socket calls.

use std::collections::BTreeSet;
use std::io::Read;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use std::os::fd::AsRawFd;

use nix::sys::socket::{LinkAddr, MsgFlags, SockFlag, SockType};
use socket2::{Domain, Protocol, Socket, Type};

use crate::netns::enter_netns;

const ETH_P_ARP: u16 = 0x0806;

/// One ARP frame seen on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArpEvent {
    /// When it was read.
    pub at: Instant,
    /// 1 = request, 2 = reply.
    pub op: u16,
    /// Sender hardware address, `aa:bb:cc:dd:ee:ff`.
    pub sender_mac: String,
    /// Sender protocol address: the address the sender claims.
    pub sender_ip: Ipv4Addr,
    /// Target protocol address.
    pub target_ip: Ipv4Addr,
}

impl ArpEvent {
    /// A reply, or a gratuitous announcement (sender address == target address).
    pub fn is_claim(&self) -> bool {
        self.op == 2 || (self.op == 1 && self.sender_ip == self.target_ip)
    }
}

/// Parses an Ethernet frame carrying IPv4-over-Ethernet ARP.
pub fn parse_arp(frame: &[u8], at: Instant) -> Option<ArpEvent> {
    if frame.len() < 42 || u16::from_be_bytes([frame[12], frame[13]]) != ETH_P_ARP {
        return None;
    }
    let a = &frame[14..42];
    let (htype, ptype, hlen, plen) = (
        u16::from_be_bytes([a[0], a[1]]),
        u16::from_be_bytes([a[2], a[3]]),
        a[4],
        a[5],
    );
    if htype != 1 || ptype != 0x0800 || hlen != 6 || plen != 4 {
        return None;
    }
    let mac = a[8..14]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":");
    Some(ArpEvent {
        at,
        op: u16::from_be_bytes([a[6], a[7]]),
        sender_mac: mac,
        sender_ip: Ipv4Addr::new(a[14], a[15], a[16], a[17]),
        target_ip: Ipv4Addr::new(a[24], a[25], a[26], a[27]),
    })
}

/// A frame type that a [`PacketObserver`] records: the ethertype its socket listens to, how
/// to read a frame, and the names its messages use.
pub trait Frame: Clone + Send + 'static {
    /// The ethertype the packet socket is opened for.
    const ETHERTYPE: u16;
    /// The observer thread's name prefix (`<prefix>-<netns>`).
    const THREAD: &'static str;
    /// What messages call the socket ("ARP socket").
    const SOCKET: &'static str;
    /// What messages call the observer thread ("ARP").
    const NAME: &'static str;
    /// The frame as an event, or `None` when it is not one of these.
    fn parse(frame: &[u8], at: Instant) -> Option<Self>;
}

impl Frame for ArpEvent {
    const ETHERTYPE: u16 = ETH_P_ARP;
    const THREAD: &'static str = "arp";
    const SOCKET: &'static str = "ARP socket";
    const NAME: &'static str = "ARP";

    fn parse(frame: &[u8], at: Instant) -> Option<ArpEvent> {
        parse_arp(frame, at)
    }
}

/// An address that a [`PacketRequester`] asks the link about: the request frame it sends
/// and the names its messages use.
pub trait LinkQuery: Copy + PartialEq + Send + 'static {
    /// The requester thread's name prefix (`<prefix>-<netns>`).
    const THREAD: &'static str;
    /// What messages call the requester thread ("ARP requester").
    const NAME: &'static str;
    /// The request "who has `target`?" from `mac`, with sender address `sender`.
    fn request(mac: [u8; 6], sender: Self, target: Self) -> Vec<u8>;
}

impl LinkQuery for Ipv4Addr {
    const THREAD: &'static str = "arpreq";
    const NAME: &'static str = "ARP requester";

    fn request(mac: [u8; 6], sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
        arp_request(mac, sender, target)
    }
}

/// A thread that runs until dropped; then it is told to stop and joined.
struct Worker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    /// Spawns thread `name`, which runs `open` (on the new thread, so that it may enter a
    /// namespace), reports the outcome, then runs `run` on what it opened until told to
    /// stop. Returns once `open` has succeeded, or with its error; `what` names the thread
    /// in messages.
    fn spawn<S>(
        name: String,
        what: &str,
        open: impl FnOnce() -> Result<S, String> + Send + 'static,
        run: impl FnOnce(S, &AtomicBool) + Send + 'static,
    ) -> Result<Worker, String> {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let st = stop.clone();
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                let opened = match open() {
                    Ok(s) => {
                        let _ = ready_tx.send(Ok(()));
                        s
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                run(opened, &st);
            })
            .map_err(|e| format!("spawn {what} thread: {e}"))?;
        ready_rx
            .recv()
            .map_err(|_| format!("{what} thread died before it was ready"))??;
        Ok(Worker {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Records the frames of one [`Frame`] type seen in a namespace until dropped: a raw
/// `AF_PACKET` socket for its ethertype, read on a thread that entered the namespace.
pub struct PacketObserver<E> {
    events: Arc<Mutex<Vec<E>>>,
    _worker: Worker,
}

/// Records ARP frames in a namespace until dropped.
pub type ArpObserver = PacketObserver<ArpEvent>;

impl<E: Frame> PacketObserver<E> {
    /// Starts observing in the named namespace (e.g. [`crate::Lab::client_netns`]).
    pub fn start(netns: &str) -> Result<PacketObserver<E>, String> {
        let events = Arc::new(Mutex::new(Vec::new()));
        let (ev, ns) = (events.clone(), netns.to_string());
        let open = move || {
            enter_netns(&ns)
                .and_then(|()| {
                    Socket::new(
                        Domain::PACKET,
                        Type::RAW,
                        Some(Protocol::from(i32::from(E::ETHERTYPE.to_be()))),
                    )
                })
                .and_then(|s| {
                    s.set_read_timeout(Some(Duration::from_millis(50)))?;
                    Ok(s)
                })
                .map_err(|e| format!("{} in {ns}: {e}", E::SOCKET))
        };
        let read = move |mut socket: Socket, stop: &AtomicBool| {
            let mut buf = [0u8; 2048];
            while !stop.load(Ordering::Relaxed) {
                match socket.read(&mut buf) {
                    Ok(n) => {
                        if let Some(e) = E::parse(&buf[..n], Instant::now()) {
                            ev.lock().expect("observed events").push(e);
                        }
                    }
                    Err(e)
                        if e.kind() == std::io::ErrorKind::WouldBlock
                            || e.kind() == std::io::ErrorKind::TimedOut
                            || e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => return,
                }
            }
        };
        let worker = Worker::spawn(format!("{}-{netns}", E::THREAD), E::NAME, open, read)?;
        Ok(PacketObserver {
            events,
            _worker: worker,
        })
    }

    /// Every frame seen so far.
    pub fn events(&self) -> Vec<E> {
        self.events.lock().expect("observed events").clone()
    }
}

impl ArpObserver {
    /// The MACs that claimed `ip` (replies and gratuitous ARP) since `since`.
    pub fn macs_for(&self, ip: Ipv4Addr, since: Instant) -> BTreeSet<String> {
        self.events
            .lock()
            .expect("observed events")
            .iter()
            .filter(|e| e.at >= since && e.sender_ip == ip && e.is_claim())
            .map(|e| e.sender_mac.clone())
            .collect()
    }
}

/// Sends a request for each of a set of addresses every `interval`, from one interface of a
/// namespace, and records when each went out (the rounds of [`PacketRequester::rounds`]).
pub struct PacketRequester<A> {
    targets: Arc<Mutex<Vec<A>>>,
    sent: Arc<Mutex<Vec<(A, Instant)>>>,
    _worker: Worker,
}

/// Sends a broadcast ARP request for each of a set of addresses every `interval`, from one
/// interface of a namespace, and records when each went out (the rounds of
/// [`PacketRequester::rounds`]). Replies go to this namespace only: run it in a namespace
/// whose neighbour cache does not matter (the lab's watcher), next to an [`ArpObserver`].
pub type ArpRequester = PacketRequester<Ipv4Addr>;

impl<A: LinkQuery> PacketRequester<A> {
    /// Starts asking, from `interface` of `netns` with sender address `sender`, for every
    /// address of [`PacketRequester::set_targets`] every `interval`.
    pub fn start(
        netns: &str,
        interface: &str,
        sender: A,
        interval: Duration,
    ) -> Result<PacketRequester<A>, String> {
        let targets: Arc<Mutex<Vec<A>>> = Arc::default();
        let sent: Arc<Mutex<Vec<(A, Instant)>>> = Arc::default();
        let (tg, sn, ns, ifname) = (
            targets.clone(),
            sent.clone(),
            netns.to_string(),
            interface.to_string(),
        );
        let open = move || {
            enter_netns(&ns)
                .map_err(|e| format!("setns into {ns}: {e}"))
                .and_then(|()| open_sender(&ifname))
        };
        let ask = move |(socket, mac): (std::os::fd::OwnedFd, [u8; 6]), stop: &AtomicBool| {
            let mut next = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                let now_targets = tg.lock().expect("requested targets").clone();
                for target in now_targets {
                    let frame = A::request(mac, sender, target);
                    let at = Instant::now();
                    if nix::sys::socket::send(socket.as_raw_fd(), &frame, MsgFlags::empty()).is_ok()
                    {
                        sn.lock().expect("sent requests").push((target, at));
                    }
                }
                next += interval;
                let now = Instant::now();
                if next > now {
                    std::thread::sleep(next - now);
                } else {
                    next = now;
                }
            }
        };
        let worker = Worker::spawn(format!("{}-{netns}", A::THREAD), A::NAME, open, ask)?;
        Ok(PacketRequester {
            targets,
            sent,
            _worker: worker,
        })
    }

    /// Replaces the addresses asked for.
    pub fn set_targets(&self, targets: &[A]) {
        *self.targets.lock().expect("requested targets") = targets.to_vec();
    }

    /// Adds an address to ask for.
    pub fn add_target(&self, target: A) {
        let mut t = self.targets.lock().expect("requested targets");
        if !t.contains(&target) {
            t.push(target);
        }
    }

    /// When each request for `target` went out, in order.
    pub fn rounds(&self, target: A) -> Vec<Instant> {
        self.sent
            .lock()
            .expect("sent requests")
            .iter()
            .filter(|(t, _)| *t == target)
            .map(|(_, at)| *at)
            .collect()
    }
}

/// A packet socket bound to `interface` (protocol 0: it receives nothing) and the
/// interface's MAC. The interface's `sockaddr_ll` comes from getifaddrs, so no address
/// structure is built by hand.
pub(crate) fn open_sender(interface: &str) -> Result<(std::os::fd::OwnedFd, [u8; 6]), String> {
    let link: LinkAddr = nix::ifaddrs::getifaddrs()
        .map_err(|e| format!("getifaddrs: {e}"))?
        .filter(|a| a.interface_name == interface)
        .find_map(|a| a.address.and_then(|s| s.as_link_addr().copied()))
        .ok_or_else(|| format!("no link-layer address for {interface}"))?;
    let mac = link
        .addr()
        .ok_or_else(|| format!("{interface} has no MAC address"))?;
    let socket = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Packet,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| format!("packet socket: {e} (needs CAP_NET_RAW)"))?;
    nix::sys::socket::bind(socket.as_raw_fd(), &link)
        .map_err(|e| format!("bind packet socket to {interface}: {e}"))?;
    Ok((socket, mac))
}

/// A broadcast ARP request "who has `target`? tell `sender_ip`" from `mac`.
pub fn arp_request(mac: [u8; 6], sender_ip: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::with_capacity(42);
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&ETH_P_ARP.to_be_bytes());
    f.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&sender_ip.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target.octets());
    f
}

/// Formats a MAC as `aa:bb:cc:dd:ee:ff`.
pub fn mac_string(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_an_arp_reply() {
        let mut f = vec![0u8; 42];
        f[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
        f[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 2]);
        f[22..28].copy_from_slice(&[2, 0, 0, 0, 0, 0x1f]);
        f[28..32].copy_from_slice(&[10, 77, 1, 1]);
        f[38..42].copy_from_slice(&[10, 77, 1, 100]);
        let e = parse_arp(&f, Instant::now()).unwrap();
        assert_eq!(e.op, 2);
        assert_eq!(e.sender_mac, "02:00:00:00:00:1f");
        assert_eq!(e.sender_ip, Ipv4Addr::new(10, 77, 1, 1));
        assert_eq!(e.target_ip, Ipv4Addr::new(10, 77, 1, 100));
        assert!(e.is_claim());
        f[12] = 8;
        f[13] = 0;
        assert!(parse_arp(&f, Instant::now()).is_none());
    }

    #[test]
    fn builds_a_request_it_can_parse() {
        let mac = [2, 0, 0, 0, 0, 0x2a];
        let f = arp_request(
            mac,
            Ipv4Addr::new(10, 77, 1, 101),
            Ipv4Addr::new(10, 77, 1, 200),
        );
        assert_eq!(f.len(), 42);
        let e = parse_arp(&f, Instant::now()).unwrap();
        assert_eq!(e.op, 1);
        assert_eq!(e.sender_mac, mac_string(mac));
        assert_eq!(e.sender_ip, Ipv4Addr::new(10, 77, 1, 101));
        assert_eq!(e.target_ip, Ipv4Addr::new(10, 77, 1, 200));
        assert!(!e.is_claim());
    }
}
