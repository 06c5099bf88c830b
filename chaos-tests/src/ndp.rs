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

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::net::Ipv6Addr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::socket::MsgFlags;
use socket2::{Domain, Protocol, Socket, Type};

use crate::arp::{mac_string, open_sender};
use crate::failover::{timeline, Claim};
use crate::lab::{Lab, NodeId};
use crate::netns::enter_netns;
use crate::stats::ms;

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

/// Records NS and NA frames in a namespace until dropped.
pub struct NdpObserver {
    events: Arc<Mutex<Vec<NdEvent>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl NdpObserver {
    /// Starts observing in the named namespace.
    pub fn start(netns: &str) -> Result<NdpObserver, String> {
        let events = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (ev, st, ns) = (events.clone(), stop.clone(), netns.to_string());
        let thread = std::thread::Builder::new()
            .name(format!("ndp-{netns}"))
            .spawn(move || {
                let opened = enter_netns(&ns)
                    .and_then(|()| {
                        Socket::new(
                            Domain::PACKET,
                            Type::RAW,
                            Some(Protocol::from(i32::from(ETH_P_IPV6.to_be()))),
                        )
                    })
                    .and_then(|s| {
                        s.set_read_timeout(Some(Duration::from_millis(50)))?;
                        Ok(s)
                    });
                let mut socket = match opened {
                    Ok(s) => {
                        let _ = ready_tx.send(Ok(()));
                        s
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("IPv6 packet socket in {ns}: {e}")));
                        return;
                    }
                };
                let mut buf = [0u8; 2048];
                while !st.load(Ordering::Relaxed) {
                    match socket.read(&mut buf) {
                        Ok(n) => {
                            if let Some(e) = parse_nd(&buf[..n], Instant::now()) {
                                ev.lock().expect("nd events").push(e);
                            }
                        }
                        Err(e)
                            if e.kind() == std::io::ErrorKind::WouldBlock
                                || e.kind() == std::io::ErrorKind::TimedOut
                                || e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(_) => return,
                    }
                }
            })
            .map_err(|e| format!("spawn NDP thread: {e}"))?;
        ready_rx
            .recv()
            .map_err(|_| "NDP thread died before it was ready".to_string())??;
        Ok(NdpObserver {
            events,
            stop,
            thread: Some(thread),
        })
    }

    /// Every NS/NA seen so far.
    pub fn events(&self) -> Vec<NdEvent> {
        self.events.lock().expect("nd events").clone()
    }
}

impl Drop for NdpObserver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Sends a multicast NS for each watched address every `interval` from one interface of a
/// namespace and records when each went out. Run it where the neighbour cache does not matter
/// (the lab's watcher namespace).
pub struct NsRequester {
    targets: Arc<Mutex<Vec<Ipv6Addr>>>,
    sent: Arc<Mutex<Vec<(Ipv6Addr, Instant)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl NsRequester {
    /// Starts asking from `interface` of `netns`, with IPv6 source `src`.
    pub fn start(
        netns: &str,
        interface: &str,
        src: Ipv6Addr,
        interval: Duration,
    ) -> Result<NsRequester, String> {
        let targets: Arc<Mutex<Vec<Ipv6Addr>>> = Arc::default();
        let sent: Arc<Mutex<Vec<(Ipv6Addr, Instant)>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (tg, sn, st, ns, ifname) = (
            targets.clone(),
            sent.clone(),
            stop.clone(),
            netns.to_string(),
            interface.to_string(),
        );
        let thread = std::thread::Builder::new()
            .name(format!("nsreq-{netns}"))
            .spawn(move || {
                let opened = enter_netns(&ns)
                    .map_err(|e| format!("setns into {ns}: {e}"))
                    .and_then(|()| open_sender(&ifname));
                let (socket, mac) = match opened {
                    Ok(s) => {
                        let _ = ready_tx.send(Ok(()));
                        s
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let mut next = Instant::now();
                while !st.load(Ordering::Relaxed) {
                    let now_targets = tg.lock().expect("ns targets").clone();
                    for target in now_targets {
                        let frame = ns_frame(mac, src, target);
                        let at = Instant::now();
                        if nix::sys::socket::send(socket.as_raw_fd(), &frame, MsgFlags::empty())
                            .is_ok()
                        {
                            sn.lock().expect("ns sent").push((target, at));
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
            })
            .map_err(|e| format!("spawn NS requester thread: {e}"))?;
        ready_rx
            .recv()
            .map_err(|_| "NS requester thread died before it was ready".to_string())??;
        Ok(NsRequester {
            targets,
            sent,
            stop,
            thread: Some(thread),
        })
    }

    /// Adds an address to ask for.
    pub fn add_target(&self, target: Ipv6Addr) {
        let mut t = self.targets.lock().expect("ns targets");
        if !t.contains(&target) {
            t.push(target);
        }
    }

    /// When each NS for `target` went out, in order.
    pub fn rounds(&self, target: Ipv6Addr) -> Vec<Instant> {
        self.sent
            .lock()
            .expect("ns sent")
            .iter()
            .filter(|(t, _)| *t == target)
            .map(|(_, at)| *at)
            .collect()
    }
}

impl Drop for NsRequester {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Who claims the watched IPv6 VIPs: NDP observers in the client and the watcher namespaces,
/// and an [`NsRequester`] in the watcher namespace asking for every watched VIP each round.
pub struct NdpWatch {
    client: NdpObserver,
    watcher: NdpObserver,
    requester: NsRequester,
    /// Node by MAC.
    pub nodes: BTreeMap<String, NodeId>,
}

impl NdpWatch {
    /// Starts observing and asking (no VIP watched yet). The lab needs IPv6.
    pub fn start(lab: &Lab, round: Duration) -> Result<NdpWatch, String> {
        let mut nodes = BTreeMap::new();
        for id in lab.node_ids() {
            nodes.insert(lab.node_mac(id)?, id);
        }
        Ok(NdpWatch {
            client: NdpObserver::start(lab.client_netns())?,
            watcher: NdpObserver::start(lab.watcher_netns())?,
            requester: NsRequester::start(lab.watcher_netns(), "eth0", lab.watcher_ip6(), round)?,
            nodes,
        })
    }

    /// Starts asking for `vip` every round.
    pub fn watch(&self, vip: Ipv6Addr) {
        self.requester.add_target(vip);
    }

    /// Every NA for `vip` seen from either namespace in `[from, to)`, by time, as claims
    /// (unsolicited NAs are announcements).
    pub fn claims(&self, vip: Ipv6Addr, from: Instant, to: Instant) -> Vec<Claim> {
        let mut out: Vec<Claim> = self
            .client
            .events()
            .into_iter()
            .chain(self.watcher.events())
            .filter(|e| e.target == vip && e.at >= from && e.at < to)
            .filter_map(|e| match e.kind {
                NdKind::Advert { solicited, .. } => Some(Claim {
                    at: e.at,
                    garp: !solicited,
                    mac: e.claimed_mac(),
                }),
                NdKind::Solicit => None,
            })
            .collect();
        out.sort_by_key(|c| c.at);
        out
    }

    /// When each NS for `vip` went out.
    pub fn rounds(&self, vip: Ipv6Addr) -> Vec<Instant> {
        self.requester.rounds(vip)
    }

    /// The MAC of a node.
    pub fn mac_of(&self, node: NodeId) -> String {
        self.nodes
            .iter()
            .find(|(_, n)| **n == node)
            .map(|(m, _)| m.clone())
            .unwrap_or_else(|| panic!("no MAC for node {node}"))
    }

    /// A MAC with its node, for messages.
    pub fn who(&self, mac: &str) -> String {
        match self.nodes.get(mac) {
            Some(n) => format!("node {n} ({mac})"),
            None => format!("unknown host ({mac})"),
        }
    }

    /// The MACs that claimed `vip` over the last `window`.
    pub fn recent(&self, vip: Ipv6Addr, window: Duration) -> BTreeSet<String> {
        let now = Instant::now();
        self.claims(vip, now - window, now + Duration::from_secs(1))
            .into_iter()
            .map(|c| c.mac)
            .collect()
    }

    /// Waits until only `owner` has claimed `vip` over the last `window` (and did claim).
    pub async fn wait_sole_claimer(
        &self,
        vip: Ipv6Addr,
        owner: NodeId,
        window: Duration,
        within: Duration,
    ) -> Result<(), String> {
        let mac = self.mac_of(owner);
        let deadline = Instant::now() + within;
        loop {
            let recent = self.recent(vip, window);
            if recent.len() == 1 && recent.contains(&mac) {
                return Ok(());
            }
            if Instant::now() > deadline {
                let who: Vec<String> = recent.iter().map(|m| self.who(m)).collect();
                return Err(format!(
                    "VIP {vip}: expected only node {owner} to answer NS over the last {}, saw {who:?}",
                    ms(window)
                ));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// A readable timeline of the claims of `vip` in `[from, to)`, relative to `t0`.
    pub fn timeline(&self, vip: Ipv6Addr, from: Instant, to: Instant, t0: Instant) -> String {
        timeline(&self.claims(vip, from, to), t0, |m| self.who(m))
    }
}

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
