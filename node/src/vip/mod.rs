//! The host-side mechanism that holds or releases a VIP.
//!
//! Every VIP this node may ever hold is a local address on `lo` (/32, or /128 with
//! NODAD), so the kernel accepts its traffic; `arp_ignore=1`/`arp_announce=2` keep the
//! kernel from ever answering ARP for it. For IPv6 no setting is needed: the kernel
//! answers a neighbour solicitation only for addresses on the interface it arrived on
//! (and only proxies with `proxy_ndp` and a proxy entry), never for `lo`'s.
//!
//! This process answers ARP requests and neighbour solicitations itself, from raw packet
//! sockets per interface, and only for the VIPs it holds: a process that dies or hangs
//! goes silent for its VIPs by itself. Taking a VIP sends a burst of gratuitous ARP
//! (IPv4) or unsolicited neighbour advertisements (IPv6), then a refresh every
//! `refresh_interval`, and once more when another MAC claims it. For held IPv6 VIPs the
//! process also joins their solicited-node multicast groups on the interface (so NS for
//! them are delivered, and MLD-snooping switches forward them).
//! VIPs in 127.0.0.0/8 (and `::1`) need none of this: they are ignored.
//!
//! Which VIPs to hold is decided elsewhere (ownership, leases); this module only obeys
//! [`VipManager::set_local`] and [`VipManager::set_held`].
// Wired in by the ownership layer; until then parts are unused outside the tests.

mod arp;
mod lease;

use lease::LeaseClock;
// pub(crate) for the namespace tests' own NS probe (node/tests/vip).
pub(crate) mod ndp;
mod netlink;
mod responder;
pub(crate) mod socket;
mod stats;
mod sysctl;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Mutex};

#[allow(unused_imports)] // for the ownership layer
pub use arp::MacAddr;
use netlink::Netlink;
use responder::ResponderHandle;
#[allow(unused_imports)] // for the ownership layer
pub use stats::{VipConflict, VipStats};

/// One VIP and the interface it is announced on (from the cluster's vip_subnets config).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Vip {
    /// The virtual IP address.
    pub address: IpAddr,
    /// The interface facing the network the VIP lives on, e.g. `eth0`.
    pub interface: String,
}

impl Vip {
    /// A VIP on an interface.
    pub fn new(address: impl Into<IpAddr>, interface: impl Into<String>) -> Vip {
        Vip {
            address: address.into(),
            interface: interface.into(),
        }
    }

    /// Loopback VIPs (127.0.0.0/8, `::1`) need no address and no ARP.
    pub fn is_loopback(&self) -> bool {
        self.address.is_loopback()
    }
}

/// Timing of announcements.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VipManagerConfig {
    /// Announcements sent on takeover (at least 1).
    pub burst_count: u32,
    /// Time between announcements of a burst.
    pub burst_spacing: Duration,
    /// Time between periodic re-announcements of a held VIP (10-30 s is usual).
    pub refresh_interval: Duration,
    /// Least time between two re-announcements triggered by conflicting claims for one VIP.
    pub conflict_min_interval: Duration,
    /// Where the VIP addresses live (`lo`).
    pub local_interface: String,
}

impl Default for VipManagerConfig {
    fn default() -> Self {
        VipManagerConfig {
            burst_count: 3,
            burst_spacing: Duration::from_millis(50),
            refresh_interval: Duration::from_secs(20),
            conflict_min_interval: Duration::from_secs(1),
            local_interface: "lo".to_owned(),
        }
    }
}

impl VipManagerConfig {
    fn validate(&self) -> Result<(), VipError> {
        let bad = |reason: &str| Err(VipError::Config(reason.to_owned()));
        if self.burst_count == 0 {
            return bad("burst_count must be at least 1");
        }
        if self.burst_spacing.is_zero() {
            return bad("burst_spacing must be positive");
        }
        if self.refresh_interval < Duration::from_millis(100) {
            return bad("refresh_interval must be at least 100ms");
        }
        if self.conflict_min_interval < Duration::from_millis(10) {
            return bad("conflict_min_interval must be at least 10ms");
        }
        sysctl::check_interface_name(&self.local_interface)
    }
}

/// Failures of the VIP mechanism; each names the interface or address concerned.
#[derive(Debug, thiserror::Error)]
pub enum VipError {
    /// The configuration is unusable.
    #[error("VIP manager config: {0}")]
    Config(String),
    /// No interface of that name exists (in this network namespace).
    #[error("no such interface: {interface}")]
    NoSuchInterface {
        /// The interface name.
        interface: String,
    },
    /// The name cannot be an interface name.
    #[error("bad interface name: {interface:?}")]
    BadInterfaceName {
        /// The name given.
        interface: String,
    },
    /// ARP and neighbour discovery need an Ethernet interface.
    #[error("interface {interface} is not an Ethernet interface (no MAC address); cannot answer ARP/NDP on it")]
    NotEthernet {
        /// The interface name.
        interface: String,
    },
    /// A netlink request failed (adding an address needs CAP_NET_ADMIN).
    #[error("netlink: {what}: {source}")]
    Netlink {
        /// What was being done, with the address or interface.
        what: String,
        /// The kernel's answer.
        source: std::io::Error,
    },
    /// A raw packet socket (ARP or NDP) could not be opened.
    #[error("raw packet socket on {interface}: {source} (needs CAP_NET_RAW)")]
    RawSocket {
        /// The interface name.
        interface: String,
        /// The error.
        source: std::io::Error,
    },
    /// A sysctl could not be read or written (needs root in the network namespace).
    #[error("sysctl {path}: {source}")]
    Sysctl {
        /// The /proc/sys path.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// IPv6 is off on the VIP's interface (`disable_ipv6`, or no IPv6 in the kernel):
    /// the IPv6 VIP cannot be held there.
    #[error("VIP {address} on {interface}: IPv6 is disabled on {interface}")]
    Ipv6Disabled {
        /// The VIP.
        address: IpAddr,
        /// Its interface.
        interface: String,
    },
    /// The manager has shut down.
    #[error("VIP manager has shut down")]
    Stopped,
}

/// Holds and releases VIPs on this host. Cheap to clone; all clones share one state.
#[derive(Clone)]
pub struct VipManager {
    inner: Arc<Inner>,
}

struct Inner {
    config: Arc<VipManagerConfig>,
    counters: Arc<stats::Counters>,
    netlink: Netlink,
    state: Mutex<State>,
    stopped: watch::Receiver<bool>,
    /// Sizes of `State::local` and `State::held`, readable without the lock.
    local_count: AtomicUsize,
    held_count: AtomicUsize,
    /// The ownership lease; responders check it before every answer and announcement.
    lease: Arc<LeaseClock>,
}

#[derive(Default)]
struct State {
    stopping: bool,
    /// The last `set_local` (loopback VIPs left out).
    local: BTreeSet<Vip>,
    /// Addresses this process added to the local interface.
    added: BTreeSet<IpAddr>,
    /// The last `set_held` (loopback VIPs left out).
    held: BTreeSet<Vip>,
    responders: BTreeMap<String, ResponderHandle>,
}

impl VipManager {
    /// Starts the manager; it releases every VIP and removes the addresses it added when
    /// `shutdown` resolves ([`VipManager::stopped`] tells when that is done).
    /// Must be called within a tokio runtime, in the network namespace to manage.
    pub async fn start(
        config: VipManagerConfig,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<VipManager, VipError> {
        config.validate()?;
        let netlink = Netlink::connect()?;
        let (stopped_tx, stopped_rx) = watch::channel(false);
        let manager = VipManager {
            inner: Arc::new(Inner {
                config: Arc::new(config),
                counters: Arc::default(),
                lease: Arc::new(LeaseClock::new()),
                netlink,
                state: Mutex::new(State::default()),
                stopped: stopped_rx,
                local_count: AtomicUsize::new(0),
                held_count: AtomicUsize::new(0),
            }),
        };
        let on_shutdown = manager.clone();
        tokio::spawn(async move {
            shutdown.await;
            on_shutdown.shut_down().await;
            let _ = stopped_tx.send(true);
        });
        Ok(manager)
    }

    /// Renews the lease under which held VIPs are answered and announced: past `until`
    /// nothing is, until renewed again (unlimited until first called).
    // Called by the ownership layer; the module's own namespace tests drive `set_held` only.
    #[allow(dead_code)]
    pub fn renew_lease(&self, until: std::time::Instant) {
        self.inner.lease.renew(until);
    }

    /// Resolves once the manager has shut down and cleaned up.
    pub async fn stopped(&self) {
        let mut stopped = self.inner.stopped.clone();
        let _ = stopped.wait_for(|s| *s).await;
    }

    /// The VIPs this node may ever hold: makes them local addresses on `lo` (adding
    /// missing ones, removing ones no longer listed that Fulcrum added) and sets
    /// `arp_ignore`/`arp_announce` on their interfaces (before adding any address).
    /// Loopback VIPs are skipped. Applies all it can; returns the first failure.
    pub async fn set_local(&self, vips: &BTreeSet<Vip>) -> Result<(), VipError> {
        let inner = &*self.inner;
        let mut state = inner.state.lock().await;
        if state.stopping {
            return Err(VipError::Stopped);
        }
        let vips: BTreeSet<Vip> = vips.iter().filter(|v| !v.is_loopback()).cloned().collect();
        let mut errors = Vec::new();

        // Quiet the kernel first: an address on `lo` with arp_ignore=0 would be answered
        // for on every interface.
        let mut quiet = BTreeSet::new();
        if !vips.is_empty() {
            match sysctl::quiet_kernel_arp("all") {
                Ok(()) => {
                    for interface in vips.iter().map(|v| v.interface.as_str()) {
                        if quiet.contains(interface) {
                            continue;
                        }
                        let result = match inner.netlink.link(interface).await {
                            Ok(_) => sysctl::quiet_kernel_arp(interface),
                            Err(e) => Err(e),
                        };
                        match result {
                            Ok(()) => {
                                quiet.insert(interface.to_owned());
                            }
                            Err(e) => errors.push(e),
                        }
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        let wanted: BTreeSet<IpAddr> = vips
            .iter()
            .filter(|v| quiet.contains(&v.interface))
            .map(|v| v.address)
            .collect();

        if let Err(e) = self.sync_addresses(&mut state, &wanted).await {
            errors.push(e);
        }

        for interface in &quiet {
            if let Err(e) = self.ensure_responder(&mut state, interface).await {
                errors.push(e);
            }
        }
        state.local = vips;
        self.drop_idle_responders(&mut state);
        self.update_counts(&state);
        for vip in state.held.difference(&state.local) {
            tracing::warn!(vip = %vip.address, interface = %vip.interface, "held VIP is not a local address");
        }
        first_error(errors)
    }

    /// The VIPs this node holds now: answers ARP/NS and announces (GARP or unsolicited NA
    /// burst) newly held ones, stops answering for the rest at once. Fast and idempotent.
    /// Loopback VIPs are skipped; an IPv6 VIP on an interface with IPv6 disabled is refused.
    /// Applies all it can; returns the first failure.
    pub async fn set_held(&self, vips: &BTreeSet<Vip>) -> Result<(), VipError> {
        let mut state = self.inner.state.lock().await;
        if state.stopping {
            return Err(VipError::Stopped);
        }
        let mut errors = Vec::new();
        let mut by_interface: BTreeMap<&str, BTreeSet<IpAddr>> = BTreeMap::new();
        let mut held = BTreeSet::new();
        for vip in vips.iter().filter(|v| !v.is_loopback()) {
            if vip.address.is_ipv6() {
                if let Err(e) = sysctl::check_ipv6_enabled(&vip.interface, vip.address) {
                    errors.push(e);
                    continue;
                }
            }
            by_interface
                .entry(&vip.interface)
                .or_default()
                .insert(vip.address);
            if !state.local.contains(vip) {
                tracing::warn!(vip = %vip.address, interface = %vip.interface, "holding a VIP that is not a local address");
            }
        }
        // Releases first, so that a VIP moving between interfaces is never answered twice.
        for (interface, responder) in &state.responders {
            if !by_interface.contains_key(interface.as_str()) {
                responder.release_all();
            }
        }
        for (interface, ips) in by_interface {
            match self.ensure_responder(&mut state, interface).await {
                Ok(responder) => {
                    responder.set_held(ips.clone());
                    held.extend(ips.into_iter().map(|ip| Vip::new(ip, interface)));
                }
                Err(e) => errors.push(e),
            }
        }
        state.held = held;
        self.drop_idle_responders(&mut state);
        self.update_counts(&state);
        first_error(errors)
    }

    /// Counters and the latest conflict, for metrics and logs.
    pub fn stats(&self) -> VipStats {
        let mut stats = self.inner.counters.snapshot();
        stats.local = self.inner.local_count.load(Ordering::Relaxed);
        stats.held = self.inner.held_count.load(Ordering::Relaxed);
        stats
    }

    fn update_counts(&self, state: &State) {
        let inner = &self.inner;
        inner
            .local_count
            .store(state.local.len(), Ordering::Relaxed);
        inner.held_count.store(state.held.len(), Ordering::Relaxed);
    }

    /// Adds the wanted addresses to the local interface and removes Fulcrum's others.
    async fn sync_addresses(
        &self,
        state: &mut State,
        wanted: &BTreeSet<IpAddr>,
    ) -> Result<(), VipError> {
        let netlink = &self.inner.netlink;
        let lo = netlink.link(&self.inner.config.local_interface).await?;
        let present = netlink.addresses(lo.index).await?;
        let present_set: BTreeSet<IpAddr> = present.iter().map(|a| a.address).collect();
        let mut errors = Vec::new();
        for address in present {
            let ours = address.marked || state.added.contains(&address.address);
            if ours && !wanted.contains(&address.address) {
                match netlink.delete(&address).await {
                    Ok(()) => {
                        tracing::info!(address = %address.address, "removed VIP address");
                        state.added.remove(&address.address);
                    }
                    Err(e) => errors.push(e),
                }
            }
        }
        let mut added_v6 = Vec::new();
        for &address in wanted.difference(&present_set) {
            match netlink.add_host_address(lo.index, address).await {
                Ok(()) => {
                    tracing::info!(%address, interface = %self.inner.config.local_interface, "added VIP address");
                    state.added.insert(address);
                    if let IpAddr::V6(v6) = address {
                        added_v6.push(v6);
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        wait_local_routes(&added_v6).await;
        first_error(errors)
    }

    async fn ensure_responder<'s>(
        &self,
        state: &'s mut State,
        interface: &str,
    ) -> Result<&'s ResponderHandle, VipError> {
        if !state.responders.contains_key(interface) {
            sysctl::check_interface_name(interface)?;
            let handle = responder::spawn(
                interface,
                self.inner.netlink.clone(),
                self.inner.config.clone(),
                self.inner.counters.clone(),
                self.inner.lease.clone(),
            )
            .await?;
            state.responders.insert(interface.to_owned(), handle);
        }
        Ok(&state.responders[interface])
    }

    /// Ends responders of interfaces that have neither local nor held VIPs.
    fn drop_idle_responders(&self, state: &mut State) {
        let in_use: BTreeSet<String> = state
            .local
            .iter()
            .chain(state.held.iter())
            .map(|v| v.interface.clone())
            .collect();
        state.responders.retain(|interface, responder| {
            let keep = in_use.contains(interface);
            if !keep {
                responder.release_all();
            }
            keep
        });
    }

    async fn shut_down(&self) {
        let mut state = self.inner.state.lock().await;
        state.stopping = true;
        for responder in state.responders.values() {
            responder.release_all();
        }
        state.responders.clear();
        state.held.clear();
        state.local.clear();
        self.update_counts(&state);
        if let Err(e) = self.sync_addresses(&mut state, &BTreeSet::new()).await {
            tracing::warn!(error = %e, "removing VIP addresses at shutdown");
        }
        tracing::info!("VIP manager stopped");
    }
}

/// How long `set_local` waits for the kernel to route newly added IPv6 VIPs locally.
const LOCAL_ROUTE_WAIT: Duration = Duration::from_secs(2);

/// Waits (a bounded time) until the kernel has the local routes of newly added IPv6
/// addresses, so that a VIP is accepted once `set_local` returns (IPv4 local routes are
/// in when the netlink request is answered; IPv6 ones follow from a work queue).
async fn wait_local_routes(addresses: &[std::net::Ipv6Addr]) {
    if addresses.is_empty() {
        return;
    }
    let deadline = tokio::time::Instant::now() + LOCAL_ROUTE_WAIT;
    loop {
        let routes = tokio::fs::read_to_string("/proc/net/ipv6_route")
            .await
            .unwrap_or_default();
        let missing: Vec<_> = addresses
            .iter()
            .filter(|a| !netlink::has_local_route(&routes, **a))
            .collect();
        if missing.is_empty() {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(
                ?missing,
                "IPv6 VIP addresses added, but the kernel has no local route for them yet"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn first_error(errors: Vec<VipError>) -> Result<(), VipError> {
    let mut errors = errors.into_iter();
    match errors.next() {
        None => Ok(()),
        Some(first) => {
            for other in errors {
                tracing::warn!(error = %other, "VIP manager");
            }
            Err(first)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[test]
    fn config_validation() {
        assert!(VipManagerConfig::default().validate().is_ok());
        let zero_burst = VipManagerConfig {
            burst_count: 0,
            ..Default::default()
        };
        assert!(zero_burst.validate().is_err());
        let fast_refresh = VipManagerConfig {
            refresh_interval: Duration::from_millis(1),
            ..Default::default()
        };
        assert!(fast_refresh.validate().is_err());
    }

    #[test]
    fn loopback_vips_are_no_ops() {
        assert!(Vip::new(Ipv4Addr::new(127, 0, 10, 10), "eth0").is_loopback());
        assert!(Vip::new(std::net::Ipv6Addr::LOCALHOST, "eth0").is_loopback());
        assert!(!Vip::new(Ipv4Addr::new(10, 0, 0, 5), "eth0").is_loopback());
    }

    #[tokio::test]
    async fn loopback_only_needs_no_privileges() {
        let manager = VipManager::start(VipManagerConfig::default(), std::future::pending())
            .await
            .unwrap();
        let vips: BTreeSet<Vip> = [Vip::new(Ipv4Addr::new(127, 0, 10, 10), "eth-none")].into();
        manager.set_local(&vips).await.unwrap();
        manager.set_held(&vips).await.unwrap();
        manager.set_held(&BTreeSet::new()).await.unwrap();
        let stats = manager.stats();
        assert_eq!((stats.local, stats.held, stats.garp_sent), (0, 0, 0));
    }
}
