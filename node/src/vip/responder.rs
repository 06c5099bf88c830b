//! One task per interface: answers ARP requests (IPv4) and neighbour solicitations (IPv6)
//! for the VIPs held on that interface and announces them with gratuitous ARP or
//! unsolicited neighbour advertisements (a burst on takeover, a periodic refresh, and at
//! once — rate-limited — when another MAC claims a held VIP).
//!
//! For held IPv6 VIPs the task also joins their solicited-node multicast groups on the
//! interface, so that NS for them reach this host (and switches doing MLD snooping learn
//! to send them here). The kernel itself never answers NS for them: it answers only for
//! addresses on the interface the NS came in on, and the VIPs live on `lo`.
//!
//! The held set lives in a `watch` channel. Requests are checked against the channel's
//! current value, so once `set_held` has returned, a released VIP gets no more answers.
//! Dropping the [`ResponderHandle`] ends the task.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{sleep_until, Instant};

use super::arp::{ArpFrame, MacAddr, OP_REQUEST};
use super::lease::LeaseClock;
use super::ndp::{self, NdMessage, NdpFrame};
use super::netlink::Netlink;
use super::socket::{Memberships, PacketSocket};
use super::stats::Counters;
use super::{VipError, VipManagerConfig};

/// How often a responder re-reads its interface (index, MAC), reopens a broken socket
/// and retries failed multicast joins.
const LINK_CHECK_INTERVAL: Duration = Duration::from_secs(5);

/// The owner's end of a responder task.
pub struct ResponderHandle {
    held: watch::Sender<BTreeSet<IpAddr>>,
}

impl ResponderHandle {
    /// Replaces the set of held VIPs on this interface (no-op when unchanged).
    pub fn set_held(&self, held: BTreeSet<IpAddr>) {
        self.held.send_if_modified(|current| {
            if *current == held {
                false
            } else {
                *current = held;
                true
            }
        });
    }

    /// Stops answering for everything at once; the task ends when the handle is dropped.
    pub fn release_all(&self) {
        self.set_held(BTreeSet::new());
    }
}

/// Opens the interface's ARP and NDP sockets and starts its task.
pub async fn spawn(
    interface: &str,
    netlink: Netlink,
    config: Arc<VipManagerConfig>,
    counters: Arc<Counters>,
    lease: Arc<LeaseClock>,
) -> Result<ResponderHandle, VipError> {
    let link = netlink.link(interface).await?;
    let mac = link.mac.ok_or_else(|| VipError::NotEthernet {
        interface: interface.to_owned(),
    })?;
    let arp = open_socket(interface, Family::Arp, link.index)?;
    let ndp = open_socket(interface, Family::Ndp, link.index)?;
    let (tx, rx) = watch::channel(BTreeSet::new());
    let responder = Responder {
        interface: interface.to_owned(),
        netlink,
        config,
        counters,
        lease,
        held: rx,
        ifindex: link.index,
        mac,
        arp: Some(arp),
        ndp: Some(ndp),
        memberships: None,
        joined: BTreeSet::new(),
        schedule: BTreeMap::new(),
    };
    tokio::spawn(responder.run());
    Ok(ResponderHandle { held: tx })
}

/// Which of the two packet sockets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    /// ARP, for IPv4 VIPs.
    Arp,
    /// Neighbour discovery, for IPv6 VIPs.
    Ndp,
}

fn open_socket(interface: &str, family: Family, ifindex: u32) -> Result<PacketSocket, VipError> {
    let socket = match family {
        Family::Arp => PacketSocket::arp(ifindex),
        Family::Ndp => PacketSocket::ndp(ifindex),
    };
    socket.map_err(|source| VipError::RawSocket {
        interface: interface.to_owned(),
        source,
    })
}

/// Announcement state of one held VIP.
struct Announce {
    /// Burst packets still to send (0: in periodic refresh).
    burst_left: u32,
    /// When the next announcement is due.
    next: Instant,
    /// The last announcement triggered by a conflict, for rate limiting.
    last_conflict_announce: Option<Instant>,
}

struct Responder {
    interface: String,
    netlink: Netlink,
    config: Arc<VipManagerConfig>,
    counters: Arc<Counters>,
    held: watch::Receiver<BTreeSet<IpAddr>>,
    /// Past its deadline nothing is answered or announced.
    lease: Arc<LeaseClock>,
    ifindex: u32,
    mac: MacAddr,
    arp: Option<PacketSocket>,
    ndp: Option<PacketSocket>,
    /// Opened while IPv6 VIPs are held.
    memberships: Option<Memberships>,
    /// The solicited-node groups joined through `memberships`.
    joined: BTreeSet<Ipv6Addr>,
    schedule: BTreeMap<IpAddr, Announce>,
}

impl Responder {
    async fn run(mut self) {
        let mut arp_buf = vec![0u8; 2048];
        let mut ndp_buf = vec![0u8; 2048];
        let mut link_check = tokio::time::interval(LINK_CHECK_INTERVAL);
        link_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tracing::debug!(interface = %self.interface, mac = %self.mac, "ARP/NDP responder started");
        loop {
            let next_announce = self.schedule.values().map(|a| a.next).min();
            tokio::select! {
                changed = self.held.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    self.sync_schedule();
                    self.sync_groups();
                }
                received = recv(self.arp.as_ref(), &mut arp_buf) => match received {
                    Ok(n) => self.on_arp_frame(&arp_buf[..n]),
                    Err(e) => self.on_recv_error(Family::Arp, e),
                },
                received = recv(self.ndp.as_ref(), &mut ndp_buf) => match received {
                    Ok(n) => self.on_ndp_frame(&ndp_buf[..n]),
                    Err(e) => self.on_recv_error(Family::Ndp, e),
                },
                () = sleep_until(next_announce.unwrap_or_else(Instant::now)), if next_announce.is_some() => {
                    self.announce_due();
                }
                _ = link_check.tick() => self.check_link().await,
            }
        }
        tracing::debug!(interface = %self.interface, "ARP/NDP responder stopped");
    }

    /// Brings the announcement schedule in line with the held set: new VIPs start a burst.
    fn sync_schedule(&mut self) {
        let held = self.held.borrow_and_update().clone();
        self.schedule.retain(|ip, _| held.contains(ip));
        let now = Instant::now();
        for ip in held {
            self.schedule.entry(ip).or_insert_with(|| {
                tracing::info!(vip = %ip, interface = %self.interface, "VIP taken: announcing");
                Announce {
                    burst_left: self.config.burst_count,
                    next: now,
                    last_conflict_announce: None,
                }
            });
        }
    }

    /// Joins the solicited-node groups of the held IPv6 VIPs and leaves the others. A
    /// failure is logged and retried at the next link check; answers do not depend on it
    /// where the segment floods multicast.
    fn sync_groups(&mut self) {
        let wanted: BTreeSet<Ipv6Addr> = self
            .held
            .borrow()
            .iter()
            .filter_map(|ip| match ip {
                IpAddr::V6(ip) => Some(ndp::solicited_node(*ip)),
                IpAddr::V4(_) => None,
            })
            .collect();
        if wanted.is_empty() {
            // Closing the socket leaves every group.
            self.memberships = None;
            self.joined.clear();
            return;
        }
        if self.memberships.is_none() {
            match Memberships::open(self.ifindex) {
                Ok(m) => self.memberships = Some(m),
                Err(e) => {
                    tracing::warn!(interface = %self.interface, error = %e, "cannot open a socket for multicast memberships");
                    return;
                }
            }
        }
        let Some(memberships) = &self.memberships else {
            return;
        };
        let stale: Vec<Ipv6Addr> = self.joined.difference(&wanted).copied().collect();
        for group in stale {
            if let Err(e) = memberships.leave(&group) {
                tracing::debug!(interface = %self.interface, %group, error = %e, "leaving multicast group");
            }
            self.joined.remove(&group);
        }
        for group in wanted {
            if self.joined.contains(&group) {
                continue;
            }
            match memberships.join(&group) {
                Ok(()) => {
                    self.joined.insert(group);
                }
                Err(e) => {
                    tracing::warn!(interface = %self.interface, %group, error = %e, "cannot join solicited-node group (NS for the VIP may not arrive); retrying");
                }
            }
        }
    }

    fn is_held(&self, ip: impl Into<IpAddr>) -> bool {
        self.lease.valid() && self.held.borrow().contains(&ip.into())
    }

    fn on_arp_frame(&mut self, frame: &[u8]) {
        let Some(arp) = ArpFrame::parse(frame) else {
            return;
        };
        if arp.sha == self.mac || arp.eth_src == self.mac {
            return; // our own, looped back somehow
        }
        if arp.spa != Ipv4Addr::UNSPECIFIED && self.is_held(arp.spa) {
            self.on_conflict(IpAddr::V4(arp.spa), arp.sha);
            return;
        }
        if arp.op == OP_REQUEST && !arp.is_gratuitous() && self.is_held(arp.tpa) {
            let reply = ArpFrame::reply_to(&arp, self.mac, arp.tpa);
            if self.send(Family::Arp, &reply.to_bytes()) {
                self.counters.arp_replies_sent.inc();
            }
        }
    }

    /// A valid NS or NA (hop limit 255, checksum, options: see [`NdpFrame::parse`]).
    fn on_ndp_frame(&mut self, frame: &[u8]) {
        let Some(nd) = NdpFrame::parse(frame) else {
            return;
        };
        if nd.eth_src == self.mac {
            return; // our own, looped back somehow
        }
        match nd.message {
            NdMessage::Advert {
                target, target_lla, ..
            } => {
                let other = target_lla.unwrap_or(nd.eth_src);
                if other != self.mac && self.is_held(target) {
                    self.on_conflict(IpAddr::V6(target), other);
                }
            }
            NdMessage::Solicit { target, source_lla } => {
                if self.is_held(nd.ip_src) {
                    // Another host uses the VIP as its own address.
                    self.on_conflict(IpAddr::V6(nd.ip_src), source_lla.unwrap_or(nd.eth_src));
                    return;
                }
                if !self.is_held(target) {
                    return;
                }
                if !ndp::is_group_mac(nd.eth_dst) && nd.eth_dst != self.mac {
                    return; // unicast to another host, seen in promiscuous mode
                }
                if nd.ip_src.is_unspecified() {
                    tracing::info!(vip = %target, interface = %self.interface, other_mac = %nd.eth_src, "duplicate address detection for a held VIP: defending it");
                }
                if let Some(na) = NdpFrame::advert_answering(&nd, self.mac, target) {
                    if self.send(Family::Ndp, &na.to_bytes()) {
                        self.counters.ns_answered.inc();
                        tracing::trace!(vip = %target, asker = %nd.ip_src, asker_mac = %na.eth_dst, "answered NS");
                    }
                }
            }
        }
    }

    /// Another MAC claims a VIP we hold: record it and re-announce at once, at most once
    /// per `conflict_min_interval` per VIP (two claimants must not flood the segment).
    fn on_conflict(&mut self, ip: IpAddr, other: MacAddr) {
        self.counters.conflicts_seen.inc();
        self.counters.record_conflict(&self.interface, ip, other);
        let now = Instant::now();
        let min = self.config.conflict_min_interval;
        let Some(entry) = self.schedule.get_mut(&ip) else {
            return;
        };
        let due = entry
            .last_conflict_announce
            .is_none_or(|last| now.duration_since(last) >= min);
        if due {
            tracing::warn!(
                vip = %ip, interface = %self.interface, other_mac = %other, our_mac = %self.mac,
                "conflicting claim (ARP/NA) for a held VIP: re-announcing"
            );
            entry.last_conflict_announce = Some(now);
            entry.next = now;
        }
    }

    fn announce_due(&mut self) {
        let now = Instant::now();
        let due: Vec<IpAddr> = self
            .schedule
            .iter()
            .filter(|(_, a)| a.next <= now)
            .map(|(ip, _)| *ip)
            .collect();
        for ip in due {
            self.announce(ip);
            let (spacing, refresh) = (self.config.burst_spacing, self.config.refresh_interval);
            if let Some(entry) = self.schedule.get_mut(&ip) {
                entry.burst_left = entry.burst_left.saturating_sub(1);
                entry.next = now
                    + if entry.burst_left > 0 {
                        spacing
                    } else {
                        refresh
                    };
            }
        }
    }

    /// Sends one announcement. IPv4: a request-form and a reply-form gratuitous ARP
    /// (hosts differ in which form they honour). IPv6: an unsolicited NA to all nodes
    /// with the O flag (Linux takes the new address at once, its entry going STALE, and
    /// confirms it with a unicast NS that this task answers).
    fn announce(&mut self, ip: IpAddr) {
        if !self.lease.valid() {
            return;
        }
        match ip {
            IpAddr::V4(ip) => {
                let forms: [fn(MacAddr, Ipv4Addr) -> ArpFrame; 2] =
                    [ArpFrame::garp_request, ArpFrame::garp_reply];
                for build in forms {
                    if self.send(Family::Arp, &build(self.mac, ip).to_bytes()) {
                        self.counters.garp_sent.inc();
                    }
                }
            }
            IpAddr::V6(ip) => {
                let na = NdpFrame::unsolicited_advert(self.mac, ip);
                if self.send(Family::Ndp, &na.to_bytes()) {
                    self.counters.na_sent.inc();
                }
            }
        }
    }

    fn socket(&self, family: Family) -> Option<&PacketSocket> {
        match family {
            Family::Arp => self.arp.as_ref(),
            Family::Ndp => self.ndp.as_ref(),
        }
    }

    fn socket_slot(&mut self, family: Family) -> &mut Option<PacketSocket> {
        match family {
            Family::Arp => &mut self.arp,
            Family::Ndp => &mut self.ndp,
        }
    }

    /// Sends a frame; failures are counted and logged, never fatal.
    fn send(&mut self, family: Family, frame: &[u8]) -> bool {
        let result = match self.socket(family) {
            Some(socket) => socket.send(frame),
            None => Err(io::Error::new(io::ErrorKind::NotConnected, "socket closed")),
        };
        match result {
            Ok(()) => true,
            Err(e) => {
                self.counters.send_errors.inc();
                tracing::debug!(interface = %self.interface, ?family, error = %e, "send failed");
                false
            }
        }
    }

    fn on_recv_error(&mut self, family: Family, e: io::Error) {
        // ENETDOWN is reported once when the interface goes down; the socket keeps
        // working when it comes back up.
        if e.raw_os_error() == Some(libc::ENETDOWN) || e.kind() == io::ErrorKind::Interrupted {
            return;
        }
        self.counters.recv_errors.inc();
        tracing::warn!(interface = %self.interface, ?family, error = %e, "packet socket failed; reopening soon");
        *self.socket_slot(family) = None;
    }

    /// Follows the interface: a new index (interface re-created) or a broken socket gets a
    /// new socket (and new multicast memberships); a new MAC gets announced at once.
    async fn check_link(&mut self) {
        let link = match self.netlink.link(&self.interface).await {
            Ok(link) => link,
            Err(e) => {
                tracing::warn!(interface = %self.interface, error = %e, "cannot look up interface");
                return;
            }
        };
        let moved = link.index != self.ifindex;
        for family in [Family::Arp, Family::Ndp] {
            if moved || self.socket(family).is_none() {
                match open_socket(&self.interface, family, link.index) {
                    Ok(socket) => *self.socket_slot(family) = Some(socket),
                    Err(e) => {
                        tracing::warn!(error = %e, ?family, "cannot reopen packet socket");
                        *self.socket_slot(family) = None;
                    }
                }
            }
        }
        if moved {
            self.ifindex = link.index;
            self.memberships = None;
            self.joined.clear();
        }
        // Retries failed joins; joins on a re-created interface.
        self.sync_groups();
        if let Some(mac) = link.mac {
            if mac != self.mac {
                tracing::info!(interface = %self.interface, old = %self.mac, new = %mac, "MAC changed: re-announcing");
                self.mac = mac;
                let now = Instant::now();
                for entry in self.schedule.values_mut() {
                    entry.burst_left = self.config.burst_count;
                    entry.next = now;
                }
            }
        }
    }
}

async fn recv(socket: Option<&PacketSocket>, buf: &mut [u8]) -> io::Result<usize> {
    match socket {
        Some(socket) => socket.recv(buf).await,
        None => std::future::pending().await,
    }
}
