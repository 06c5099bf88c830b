//! Counters shared by the responders, and the snapshot handed to metrics and logs.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::SystemTime;

use super::arp::MacAddr;
use super::Vip;

/// A monotonically increasing counter.
#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The live counters, shared by all responders of one manager.
#[derive(Default)]
pub struct Counters {
    pub garp_sent: Counter,
    pub arp_replies_sent: Counter,
    pub na_sent: Counter,
    pub ns_answered: Counter,
    pub conflicts_seen: Counter,
    pub send_errors: Counter,
    pub recv_errors: Counter,
    last_conflict: Mutex<Option<VipConflict>>,
}

impl Counters {
    /// Remembers the latest conflicting claim.
    pub fn record_conflict(&self, interface: &str, ip: IpAddr, other_mac: MacAddr) {
        let conflict = VipConflict {
            vip: Vip {
                address: ip,
                interface: interface.to_owned(),
            },
            other_mac,
            at: SystemTime::now(),
        };
        *self.last_conflict.lock().unwrap_or_else(|e| e.into_inner()) = Some(conflict);
    }

    /// A snapshot; `local` and `held` are filled in by the manager.
    pub fn snapshot(&self) -> VipStats {
        VipStats {
            garp_sent: self.garp_sent.get(),
            arp_replies_sent: self.arp_replies_sent.get(),
            na_sent: self.na_sent.get(),
            ns_answered: self.ns_answered.get(),
            conflicts_seen: self.conflicts_seen.get(),
            send_errors: self.send_errors.get(),
            recv_errors: self.recv_errors.get(),
            last_conflict: self
                .last_conflict
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            local: 0,
            held: 0,
        }
    }
}

/// Another MAC claiming a VIP that this node held at the time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VipConflict {
    /// The VIP and the interface the claim was seen on.
    pub vip: Vip,
    /// The claimant's hardware address.
    pub other_mac: MacAddr,
    /// When it was seen.
    pub at: SystemTime,
}

/// What the VIP manager has done so far (counters since start), for metrics and logs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VipStats {
    /// Gratuitous ARP frames sent (each form counts).
    pub garp_sent: u64,
    /// ARP requests for held VIPs answered.
    pub arp_replies_sent: u64,
    /// Unsolicited neighbour advertisements sent for held IPv6 VIPs (burst, refresh,
    /// conflict).
    pub na_sent: u64,
    /// Neighbour solicitations for held IPv6 VIPs answered (with a solicited NA).
    pub ns_answered: u64,
    /// ARP frames or neighbour advertisements (or solicitations from the VIP) from
    /// another MAC claiming a VIP we held.
    pub conflicts_seen: u64,
    /// Frames that could not be sent.
    pub send_errors: u64,
    /// Socket receive failures (each one reopens the socket).
    pub recv_errors: u64,
    /// The latest conflict, if any.
    pub last_conflict: Option<VipConflict>,
    /// VIPs (not in 127.0.0.0/8) currently configured as local addresses.
    pub local: usize,
    /// VIPs (not in 127.0.0.0/8) currently held.
    pub held: usize,
}
