//! Balancing algorithms over an immutable snapshot of eligible members.
//!
//! A pool rebuilds its [`Eligible`] snapshot (off the hot path) whenever its
//! configuration or a member's health changes; picking a member then reads the
//! snapshot and, at most, a few atomics:
//!
//! * `ROUND_ROBIN`: smooth weighted round robin (nginx's algorithm). The whole
//!   cycle is precomputed when the snapshot is built, so a pick is one
//!   `fetch_add` on the pool's counter.
//! * `LEAST_CONNECTIONS`: fewest active connections per unit of weight; ties
//!   rotate so equal members share the load.
//! * `SOURCE_IP` / `SOURCE_IP_PORT`: weighted rendezvous (highest random weight)
//!   hashing, so adding or removing a member moves only the clients that must
//!   move.

mod hash;
mod round_robin;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::config::{LbAlgorithm, MemberConfig};

pub(crate) use hash::{client_key, hash_str};

/// Health of one member as seen by the monitor, shared by member id across
/// config revisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Health {
    /// The pool has no (enabled) monitor.
    NoMonitor = 0,
    /// Monitored, not yet checked: optimistically used (like haproxy's initial
    /// state), reported as OFFLINE until the first success.
    Unchecked = 1,
    /// Last `rise` checks (or the first one) succeeded.
    Up = 2,
    /// Last `fall` checks failed: gets no traffic.
    Down = 3,
}

impl Health {
    fn from_u8(v: u8) -> Self {
        match v {
            0 => Self::NoMonitor,
            1 => Self::Unchecked,
            2 => Self::Up,
            _ => Self::Down,
        }
    }

    /// Whether the member may receive traffic.
    pub(crate) fn is_usable(self) -> bool {
        !matches!(self, Self::Down)
    }
}

/// Per-member runtime state carried forward by member id.
#[derive(Debug)]
pub(crate) struct MemberState {
    health: AtomicU8,
    /// Connections (L4) or in-flight requests (L7) currently using the member.
    pub(crate) active: AtomicUsize,
    /// Idle pooled HTTP connections to the member (L7), shared by the
    /// clients of each worker.
    pub(crate) idle: Arc<crate::member_pool::IdleConns>,
}

impl MemberState {
    /// A member's state on a data plane of `workers` worker threads.
    pub(crate) fn new(health: Health, workers: usize) -> Self {
        Self {
            health: AtomicU8::new(health as u8),
            active: AtomicUsize::new(0),
            idle: Arc::new(crate::member_pool::IdleConns::new(workers)),
        }
    }

    pub(crate) fn health(&self) -> Health {
        Health::from_u8(self.health.load(Ordering::Acquire))
    }

    /// Sets the health; returns the previous value.
    pub(crate) fn set_health(&self, h: Health) -> Health {
        Health::from_u8(self.health.swap(h as u8, Ordering::AcqRel))
    }
}

/// A member as the data path sees it.
#[derive(Debug)]
pub(crate) struct Backend {
    pub(crate) config: MemberConfig,
    /// `config.id`, shared with stick-table entries.
    pub(crate) id: Arc<str>,
    pub(crate) addr: SocketAddr,
    /// `addr` as a URI authority, precomputed for the L7 proxy's member requests.
    pub(crate) authority: Option<http::uri::Authority>,
    /// Hash of the member id, the member's identity for consistent hashing.
    pub(crate) id_hash: u64,
    pub(crate) state: Arc<MemberState>,
}

impl Backend {
    pub(crate) fn new(config: MemberConfig, state: Arc<MemberState>) -> Self {
        let addr = config.addr();
        Self {
            addr,
            authority: http::uri::Authority::try_from(addr.to_string()).ok(),
            id_hash: hash_str(&config.id),
            id: Arc::from(config.id.as_str()),
            config,
            state,
        }
    }

    /// Usable for new traffic: enabled, weight > 0, not failed.
    pub(crate) fn is_usable(&self) -> bool {
        self.config.admin_state_up && self.config.weight > 0 && self.state.health().is_usable()
    }
}

/// The members a pool may currently send new traffic to, plus what the
/// algorithm needs precomputed.
#[derive(Debug)]
pub(crate) struct Eligible {
    members: Vec<Arc<Backend>>,
    /// Smooth-WRR cycle of indices into `members` (ROUND_ROBIN only).
    rr_cycle: Vec<u32>,
}

impl Eligible {
    /// Selects usable non-backup members, or usable backups when there are none.
    pub(crate) fn build(all: &[Arc<Backend>], algorithm: LbAlgorithm) -> Self {
        let usable = |backup: bool| -> Vec<Arc<Backend>> {
            all.iter()
                .filter(|b| b.config.backup == backup && b.is_usable())
                .cloned()
                .collect()
        };
        let mut members = usable(false);
        if members.is_empty() {
            members = usable(true);
        }
        let rr_cycle = if algorithm == LbAlgorithm::RoundRobin {
            let weights: Vec<u32> = members.iter().map(|m| m.config.weight).collect();
            round_robin::smooth_cycle(&weights)
        } else {
            Vec::new()
        };
        Self { members, rr_cycle }
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.members.len()
    }

    pub(crate) fn members(&self) -> &[Arc<Backend>] {
        &self.members
    }

    /// Picks a member, skipping the indices in `exclude` (members already tried
    /// for this connection). `counter` is the pool's rotation counter;
    /// `client` the client's address (hashing algorithms).
    pub(crate) fn pick(
        &self,
        algorithm: LbAlgorithm,
        counter: &AtomicUsize,
        client: SocketAddr,
        exclude: &[usize],
    ) -> Option<usize> {
        if self.members.len() <= exclude.len() {
            return None;
        }
        match algorithm {
            LbAlgorithm::RoundRobin => {
                let n = self.rr_cycle.len();
                for _ in 0..n {
                    let i = self.rr_cycle[counter.fetch_add(1, Ordering::Relaxed) % n] as usize;
                    if !exclude.contains(&i) {
                        return Some(i);
                    }
                }
                None
            }
            LbAlgorithm::LeastConnections => {
                let start = counter.fetch_add(1, Ordering::Relaxed);
                least_connections(&self.members, start, exclude)
            }
            LbAlgorithm::SourceIp => {
                hash::rendezvous(&self.members, client_key(client, false), exclude)
            }
            LbAlgorithm::SourceIpPort => {
                hash::rendezvous(&self.members, client_key(client, true), exclude)
            }
        }
    }
}

/// Index of the member with the fewest active connections per weight,
/// scanning from `start` so ties rotate.
fn least_connections(members: &[Arc<Backend>], start: usize, exclude: &[usize]) -> Option<usize> {
    let n = members.len();
    let mut best: Option<(usize, u64, u64)> = None; // (index, active, weight)
    for k in 0..n {
        let i = (start + k) % n;
        if exclude.contains(&i) {
            continue;
        }
        let m = &members[i];
        let active = m.state.active.load(Ordering::Relaxed) as u64;
        let weight = u64::from(m.config.weight.max(1));
        match best {
            // active/weight < best_active/best_weight
            Some((_, ba, bw)) if active * bw >= ba * weight => {}
            _ => best = Some((i, active, weight)),
        }
    }
    best.map(|(i, _, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::net::{IpAddr, Ipv4Addr};

    fn backend(id: &str, weight: u32, backup: bool) -> Arc<Backend> {
        let mut cfg = MemberConfig::new(id, SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 1000));
        cfg.weight = weight;
        cfg.backup = backup;
        Arc::new(Backend::new(
            cfg,
            Arc::new(MemberState::new(Health::NoMonitor, 1)),
        ))
    }

    fn client(i: u32) -> SocketAddr {
        SocketAddr::new(
            IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)),
            40000 + (i % 1000) as u16,
        )
    }

    fn ids(e: &Eligible, picks: impl IntoIterator<Item = usize>) -> Vec<String> {
        picks
            .into_iter()
            .map(|i| e.members()[i].config.id.clone())
            .collect()
    }

    #[test]
    fn weighted_round_robin_is_smooth_and_exact() {
        let all = vec![
            backend("a", 5, false),
            backend("b", 1, false),
            backend("c", 1, false),
        ];
        let e = Eligible::build(&all, LbAlgorithm::RoundRobin);
        let c = AtomicUsize::new(0);
        let seq = ids(
            &e,
            (0..14).map(|_| e.pick(LbAlgorithm::RoundRobin, &c, client(0), &[]).unwrap()),
        );
        let expect = ["a", "a", "b", "a", "c", "a", "a"];
        let expect: Vec<String> = expect
            .iter()
            .chain(expect.iter())
            .map(|s| s.to_string())
            .collect();
        assert_eq!(seq, expect);
    }

    #[test]
    fn equal_weights_alternate() {
        let all = vec![backend("a", 3, false), backend("b", 3, false)];
        let e = Eligible::build(&all, LbAlgorithm::RoundRobin);
        let c = AtomicUsize::new(0);
        let seq = ids(
            &e,
            (0..4).map(|_| e.pick(LbAlgorithm::RoundRobin, &c, client(0), &[]).unwrap()),
        );
        assert_eq!(seq, ["a", "b", "a", "b"]);
    }

    #[test]
    fn weight_zero_admin_down_and_failed_members_are_not_eligible() {
        let all = [
            backend("a", 0, false),
            backend("b", 1, false),
            backend("c", 1, false),
            backend("d", 1, false),
        ];
        all[2].state.set_health(Health::Down);
        let mut cfg = all[3].config.clone();
        cfg.admin_state_up = false;
        let all = [
            all[0].clone(),
            all[1].clone(),
            all[2].clone(),
            Arc::new(Backend::new(cfg, Arc::new(MemberState::new(Health::Up, 1)))),
        ];
        let e = Eligible::build(&all, LbAlgorithm::RoundRobin);
        assert_eq!(ids(&e, 0..e.len()), ["b"]);
    }

    #[test]
    fn backups_serve_only_when_no_primary_is_usable() {
        let all = vec![backend("p", 1, false), backend("bk", 1, true)];
        let e = Eligible::build(&all, LbAlgorithm::RoundRobin);
        assert_eq!(ids(&e, 0..e.len()), ["p"]);
        all[0].state.set_health(Health::Down);
        let e = Eligible::build(&all, LbAlgorithm::RoundRobin);
        assert_eq!(ids(&e, 0..e.len()), ["bk"]);
        let e = Eligible::build(
            &[backend("x", 0, false), backend("bk", 1, true)],
            LbAlgorithm::RoundRobin,
        );
        assert_eq!(ids(&e, 0..e.len()), ["bk"]);
    }

    #[test]
    fn round_robin_respects_exclusions() {
        let all = vec![backend("a", 1, false), backend("b", 1, false)];
        let e = Eligible::build(&all, LbAlgorithm::RoundRobin);
        let c = AtomicUsize::new(0);
        for _ in 0..4 {
            assert_eq!(
                e.pick(LbAlgorithm::RoundRobin, &c, client(0), &[0]),
                Some(1)
            );
        }
        assert_eq!(
            e.pick(LbAlgorithm::RoundRobin, &c, client(0), &[0, 1]),
            None
        );
    }

    #[test]
    fn least_connections_prefers_least_loaded_per_weight() {
        let all = vec![
            backend("a", 1, false),
            backend("b", 2, false),
            backend("c", 1, false),
        ];
        let e = Eligible::build(&all, LbAlgorithm::LeastConnections);
        let c = AtomicUsize::new(0);
        // Simulate long-lived connections: each pick holds a connection.
        let mut counts: HashMap<String, usize> = HashMap::new();
        for _ in 0..40 {
            let i = e
                .pick(LbAlgorithm::LeastConnections, &c, client(0), &[])
                .unwrap();
            e.members()[i].state.active.fetch_add(1, Ordering::Relaxed);
            *counts.entry(e.members()[i].config.id.clone()).or_default() += 1;
        }
        assert_eq!(counts["a"], 10);
        assert_eq!(counts["b"], 20);
        assert_eq!(counts["c"], 10);
        // a frees all its connections: it gets the next picks
        all[0].state.active.store(0, Ordering::Relaxed);
        let i = e
            .pick(LbAlgorithm::LeastConnections, &c, client(0), &[])
            .unwrap();
        assert_eq!(e.members()[i].config.id, "a");
    }

    #[test]
    fn least_connections_ties_rotate() {
        let all = vec![
            backend("a", 1, false),
            backend("b", 1, false),
            backend("c", 1, false),
        ];
        let e = Eligible::build(&all, LbAlgorithm::LeastConnections);
        let c = AtomicUsize::new(0);
        let seq = ids(
            &e,
            (0..3).map(|_| {
                e.pick(LbAlgorithm::LeastConnections, &c, client(0), &[])
                    .unwrap()
            }),
        );
        assert_eq!(seq, ["a", "b", "c"]);
    }

    fn assignment(all: &[Arc<Backend>], algo: LbAlgorithm, n: u32) -> Vec<String> {
        let e = Eligible::build(all, algo);
        let c = AtomicUsize::new(0);
        (0..n)
            .map(|i| {
                e.members()[e.pick(algo, &c, client(i), &[]).unwrap()]
                    .config
                    .id
                    .clone()
            })
            .collect()
    }

    #[test]
    fn source_ip_is_sticky_and_balanced() {
        let all: Vec<_> = (0..4)
            .map(|i| backend(&format!("m{i}"), 1, false))
            .collect();
        let a1 = assignment(&all, LbAlgorithm::SourceIp, 4000);
        let a2 = assignment(&all, LbAlgorithm::SourceIp, 4000);
        assert_eq!(a1, a2);
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for id in &a1 {
            *counts.entry(id).or_default() += 1;
        }
        for (id, n) in counts {
            assert!((800..1200).contains(&n), "{id} got {n} of 4000");
        }
    }

    #[test]
    fn consistent_hash_moves_few_clients_when_members_change() {
        let all: Vec<_> = (0..5)
            .map(|i| backend(&format!("m{i}"), 1, false))
            .collect();
        for algo in [LbAlgorithm::SourceIp, LbAlgorithm::SourceIpPort] {
            let before = assignment(&all, algo, 5000);
            // remove m2: only m2's clients move
            let fewer: Vec<_> = all
                .iter()
                .filter(|b| b.config.id != "m2")
                .cloned()
                .collect();
            let after = assignment(&fewer, algo, 5000);
            for (b, a) in before.iter().zip(&after) {
                if b != "m2" {
                    assert_eq!(a, b);
                }
            }
            // add m5: only clients that now go to m5 move (about 1/6)
            let mut more = all.clone();
            more.push(backend("m5", 1, false));
            let after = assignment(&more, algo, 5000);
            let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count();
            assert!(after.iter().zip(&before).all(|(a, b)| a == b || a == "m5"));
            assert!((600..1100).contains(&moved), "moved {moved}");
        }
    }

    #[test]
    fn weighted_hash_follows_weights() {
        let all = vec![backend("a", 3, false), backend("b", 1, false)];
        let asg = assignment(&all, LbAlgorithm::SourceIpPort, 8000);
        let a = asg.iter().filter(|x| *x == "a").count();
        assert!((5600..6400).contains(&a), "a got {a} of 8000");
    }

    #[test]
    fn empty_snapshot_picks_nothing() {
        let e = Eligible::build(&[backend("a", 0, false)], LbAlgorithm::RoundRobin);
        let c = AtomicUsize::new(0);
        assert!(e.is_empty());
        for algo in [
            LbAlgorithm::RoundRobin,
            LbAlgorithm::LeastConnections,
            LbAlgorithm::SourceIp,
            LbAlgorithm::SourceIpPort,
        ] {
            assert_eq!(e.pick(algo, &c, client(1), &[]), None);
        }
    }
}
