//! One task per interface: answers ARP requests for the VIPs held on that interface and
//! announces them with gratuitous ARP (a burst on takeover, a periodic refresh, and at
//! once — rate-limited — when another MAC claims a held VIP).
//!
//! The held set lives in a `watch` channel. Requests are checked against the channel's
//! current value, so once `set_held` has returned, a released VIP gets no more answers.
//! Dropping the [`ResponderHandle`] ends the task.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{sleep_until, Instant};

use super::arp::{ArpFrame, MacAddr, OP_REQUEST};
use super::netlink::Netlink;
use super::socket::ArpSocket;
use super::stats::Counters;
use super::{VipError, VipManagerConfig};

/// How often a responder re-reads its interface (index, MAC) and reopens a broken socket.
const LINK_CHECK_INTERVAL: Duration = Duration::from_secs(5);

/// The owner's end of a responder task.
pub struct ResponderHandle {
    held: watch::Sender<BTreeSet<Ipv4Addr>>,
}

impl ResponderHandle {
    /// Replaces the set of held VIPs on this interface (no-op when unchanged).
    pub fn set_held(&self, held: BTreeSet<Ipv4Addr>) {
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

/// Opens the interface's ARP socket and starts its task.
pub async fn spawn(
    interface: &str,
    netlink: Netlink,
    config: Arc<VipManagerConfig>,
    counters: Arc<Counters>,
) -> Result<ResponderHandle, VipError> {
    let link = netlink.link(interface).await?;
    let mac = link.mac.ok_or_else(|| VipError::NotEthernet {
        interface: interface.to_owned(),
    })?;
    let socket = open_socket(interface, link.index)?;
    let (tx, rx) = watch::channel(BTreeSet::new());
    let responder = Responder {
        interface: interface.to_owned(),
        netlink,
        config,
        counters,
        held: rx,
        ifindex: link.index,
        mac,
        socket: Some(socket),
        schedule: BTreeMap::new(),
    };
    tokio::spawn(responder.run());
    Ok(ResponderHandle { held: tx })
}

fn open_socket(interface: &str, ifindex: u32) -> Result<ArpSocket, VipError> {
    ArpSocket::open(ifindex).map_err(|source| VipError::RawSocket {
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
    held: watch::Receiver<BTreeSet<Ipv4Addr>>,
    ifindex: u32,
    mac: MacAddr,
    socket: Option<ArpSocket>,
    schedule: BTreeMap<Ipv4Addr, Announce>,
}

impl Responder {
    async fn run(mut self) {
        let mut buf = vec![0u8; 2048];
        let mut link_check = tokio::time::interval(LINK_CHECK_INTERVAL);
        link_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tracing::debug!(interface = %self.interface, mac = %self.mac, "ARP responder started");
        loop {
            let next_announce = self.schedule.values().map(|a| a.next).min();
            tokio::select! {
                changed = self.held.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    self.sync_schedule();
                }
                received = recv(self.socket.as_ref(), &mut buf) => match received {
                    Ok(n) => self.on_frame(&buf[..n]),
                    Err(e) => self.on_recv_error(e),
                },
                () = sleep_until(next_announce.unwrap_or_else(Instant::now)), if next_announce.is_some() => {
                    self.announce_due();
                }
                _ = link_check.tick() => self.check_link().await,
            }
        }
        tracing::debug!(interface = %self.interface, "ARP responder stopped");
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

    fn on_frame(&mut self, frame: &[u8]) {
        let Some(arp) = ArpFrame::parse(frame) else {
            return;
        };
        if arp.sha == self.mac || arp.eth_src == self.mac {
            return; // our own, looped back somehow
        }
        if arp.spa != Ipv4Addr::UNSPECIFIED && self.held.borrow().contains(&arp.spa) {
            self.on_conflict(arp.spa, arp.sha);
            return;
        }
        if arp.op == OP_REQUEST && !arp.is_gratuitous() && self.held.borrow().contains(&arp.tpa) {
            let reply = ArpFrame::reply_to(&arp, self.mac, arp.tpa);
            if self.send(&reply) {
                self.counters.arp_replies_sent.inc();
            }
        }
    }

    /// Another MAC claims a VIP we hold: record it and re-announce at once, at most once
    /// per `conflict_min_interval` per VIP (two claimants must not flood the segment).
    fn on_conflict(&mut self, ip: Ipv4Addr, other: MacAddr) {
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
                "conflicting ARP claim for a held VIP: re-announcing"
            );
            entry.last_conflict_announce = Some(now);
            entry.next = now;
        }
    }

    fn announce_due(&mut self) {
        let now = Instant::now();
        let due: Vec<Ipv4Addr> = self
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

    /// Sends one announcement: a request-form and a reply-form gratuitous ARP (hosts differ
    /// in which form they honour).
    fn announce(&mut self, ip: Ipv4Addr) {
        let forms: [fn(MacAddr, Ipv4Addr) -> ArpFrame; 2] =
            [ArpFrame::garp_request, ArpFrame::garp_reply];
        for build in forms {
            if self.send(&build(self.mac, ip)) {
                self.counters.garp_sent.inc();
            }
        }
    }

    /// Sends a frame; failures are counted and logged, never fatal.
    fn send(&mut self, frame: &ArpFrame) -> bool {
        let result = match &self.socket {
            Some(socket) => socket.send(&frame.to_bytes()),
            None => Err(io::Error::new(io::ErrorKind::NotConnected, "socket closed")),
        };
        match result {
            Ok(()) => true,
            Err(e) => {
                self.counters.send_errors.inc();
                tracing::debug!(interface = %self.interface, error = %e, "ARP send failed");
                false
            }
        }
    }

    fn on_recv_error(&mut self, e: io::Error) {
        // ENETDOWN is reported once when the interface goes down; the socket keeps
        // working when it comes back up.
        if e.raw_os_error() == Some(libc::ENETDOWN) || e.kind() == io::ErrorKind::Interrupted {
            return;
        }
        self.counters.recv_errors.inc();
        tracing::warn!(interface = %self.interface, error = %e, "ARP socket failed; reopening soon");
        self.socket = None;
    }

    /// Follows the interface: a new index (interface re-created) or a broken socket gets a
    /// new socket; a new MAC gets announced at once.
    async fn check_link(&mut self) {
        let link = match self.netlink.link(&self.interface).await {
            Ok(link) => link,
            Err(e) => {
                tracing::warn!(interface = %self.interface, error = %e, "cannot look up interface");
                return;
            }
        };
        if link.index != self.ifindex || self.socket.is_none() {
            match open_socket(&self.interface, link.index) {
                Ok(socket) => {
                    self.socket = Some(socket);
                    self.ifindex = link.index;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot reopen ARP socket");
                    self.socket = None;
                    return;
                }
            }
        }
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

async fn recv(socket: Option<&ArpSocket>, buf: &mut [u8]) -> io::Result<usize> {
    match socket {
        Some(socket) => socket.recv(buf).await,
        None => std::future::pending().await,
    }
}
