//! Follower leases: proof, measured on the follower's own clock, that the leader heard from
//! it recently and how far the leader's log reached then.
//!
//! Every heartbeat interval a follower (or learner) asks the leader it follows to renew its
//! lease. The leader grants only while it is the sole leader (a quorum acknowledged it within
//! the Raft leader lease), records when it received the request, and answers with its last
//! log index (committed or not: a grant counts only once the follower has applied that far,
//! so the follower has seen every decision the leader took before granting). The follower dates the grant from when it *sent* the request, which is before the
//! leader received it: a lease of `L` measured from the send time ends before `L` measured
//! from the receipt. So if the leader treats a node as gone only after hearing no request
//! for longer than `L`, the node's lease has run out by then, whatever the delays or losses
//! in either direction. Heartbeats received prove nothing of the kind: a node that hears the
//! leader but whose answers are lost looks dead to the leader while it still hears it.

use std::collections::HashMap;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;

/// A renewal the leader granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Grant {
    /// When this node sent the request.
    pub(crate) sent_at: Instant,
    /// The granting leader and its term.
    pub(crate) leader: u64,
    pub(crate) term: u64,
    /// The leader's last log index when it granted.
    pub(crate) log_index: u64,
}

/// Grants remembered on the follower side (a few leases' worth at one per heartbeat).
const MAX_GRANTS: usize = 16;

/// Leader side: when a node's requests arrived.
#[derive(Debug, Clone, Copy)]
struct Requests {
    term: u64,
    last: Option<Instant>,
    /// The last one sent while the node held a valid lease.
    holding: Option<Instant>,
    /// No grants for this node until restored (its VIPs are being moved without a wait).
    revoked: bool,
}

/// Both sides of the lease protocol on one node.
#[derive(Debug, Default)]
pub(crate) struct Leases {
    /// Follower side: recent grants from the leader of the latest term seen, oldest first.
    grants: Mutex<VecDeque<Grant>>,
    /// Leader side: node -> its requests in the latest term.
    requests: Mutex<HashMap<u64, Requests>>,
}

impl Leases {
    /// Records a grant (a late answer to an older request is ignored).
    pub(crate) fn granted(&self, grant: Grant) {
        let mut grants = self.grants.lock().unwrap_or_else(|p| p.into_inner());
        if grants
            .back()
            .is_some_and(|last| last.sent_at >= grant.sent_at)
        {
            return;
        }
        grants.retain(|g| g.leader == grant.leader && g.term == grant.term);
        grants.push_back(grant);
        while grants.len() > MAX_GRANTS {
            grants.pop_front();
        }
    }

    /// The grant the lease stands on: the newest from `leader` in `term` whose log index
    /// this node has applied (`applied`). A newer grant whose index is not applied yet does
    /// not end the lease an older one gives, so the lease does not flicker while applying
    /// trails the leader's log by a few entries; after a pause all older grants have run
    /// out and the node must apply the new grant's index first.
    pub(crate) fn grant_from(&self, leader: u64, term: u64, applied: u64) -> Option<Grant> {
        let grants = self.grants.lock().unwrap_or_else(|p| p.into_inner());
        grants
            .iter()
            .rev()
            .find(|g| g.leader == leader && g.term == term && g.log_index <= applied)
            .copied()
    }

    /// Leader side: notes a request from `node` in `term`, sent while it held a valid lease
    /// or not; returns whether it may be granted (the node's leases are not revoked).
    pub(crate) fn requested(&self, node: u64, term: u64, holding: bool, at: Instant) -> bool {
        let mut requests = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        let entry = Self::entry(&mut requests, node, term);
        entry.last = Some(at);
        if holding {
            entry.holding = Some(at);
        }
        !entry.revoked
    }

    /// Leader side: stops granting leases to those of `nodes` that sent no request in `term`
    /// for `silent_for` (checked and revoked at once, so no grant slips in between); returns
    /// them. A node's lease rests on a grant answering a request the leader received, so the
    /// lease of a node revoked this way ran out before the revocation if `silent_for` is
    /// longer than a lease.
    pub(crate) fn revoke_silent(&self, nodes: &[u64], term: u64, silent_for: Duration) -> Vec<u64> {
        let mut requests = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        let mut revoked = Vec::new();
        for &node in nodes {
            let entry = Self::entry(&mut requests, node, term);
            if entry.last.is_none_or(|at| at.elapsed() >= silent_for) {
                entry.revoked = true;
                revoked.push(node);
            }
        }
        revoked
    }

    /// Leader side: grants leases to `nodes` again.
    pub(crate) fn restore(&self, nodes: &[u64]) {
        let mut requests = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        for node in nodes {
            if let Some(entry) = requests.get_mut(node) {
                entry.revoked = false;
            }
        }
    }

    /// The requests entry of `node` for `term` (a new term starts over).
    fn entry(requests: &mut HashMap<u64, Requests>, node: u64, term: u64) -> &mut Requests {
        let entry = requests.entry(node).or_insert(Requests {
            term,
            last: None,
            holding: None,
            revoked: false,
        });
        if entry.term != term {
            *entry = Requests {
                term,
                last: None,
                holding: None,
                revoked: false,
            };
        }
        entry
    }

    /// Leader side: how long ago `node` last asked for a renewal in `term`, and last did so
    /// while holding a valid lease.
    pub(crate) fn request_ages(
        &self,
        node: u64,
        term: u64,
    ) -> (Option<Duration>, Option<Duration>) {
        let requests = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        match requests.get(&node).filter(|r| r.term == term) {
            Some(r) => (r.last.map(|l| l.elapsed()), r.holding.map(|h| h.elapsed())),
            None => (None, None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_are_kept_newest_first_and_per_leader_term() {
        let leases = Leases::default();
        let t0 = Instant::now();
        let grant = |sent_at, leader, term, log_index| Grant {
            sent_at,
            leader,
            term,
            log_index,
        };
        leases.granted(grant(t0 + Duration::from_millis(10), 1, 3, 7));
        // A late answer to an older request is ignored.
        leases.granted(grant(t0, 1, 3, 5));
        assert_eq!(leases.grant_from(1, 3, 7).map(|g| g.log_index), Some(7));
        assert_eq!(leases.grant_from(1, 4, 7), None);
        assert_eq!(leases.grant_from(2, 3, 7), None);
        // A newer grant whose index is not applied yet leaves the older one standing.
        leases.granted(grant(t0 + Duration::from_millis(20), 1, 3, 9));
        assert_eq!(leases.grant_from(1, 3, 8).map(|g| g.log_index), Some(7));
        assert_eq!(leases.grant_from(1, 3, 9).map(|g| g.log_index), Some(9));
        assert_eq!(leases.grant_from(1, 3, 6), None);
        // A grant from a new term replaces the old leader's.
        leases.granted(grant(t0 + Duration::from_millis(30), 2, 4, 12));
        assert_eq!(leases.grant_from(1, 3, 20), None);
        assert_eq!(leases.grant_from(2, 4, 20).map(|g| g.log_index), Some(12));

        assert!(leases.requested(5, 3, false, Instant::now()));
        assert!(matches!(leases.request_ages(5, 3), (Some(_), None)));
        assert!(leases.requested(5, 3, true, Instant::now()));
        assert!(matches!(leases.request_ages(5, 3), (Some(_), Some(_))));
        assert_eq!(leases.request_ages(5, 4), (None, None));
        assert_eq!(leases.request_ages(6, 3), (None, None));
        // A new term starts over.
        assert!(leases.requested(5, 4, false, Instant::now()));
        assert!(matches!(leases.request_ages(5, 4), (Some(_), None)));

        // Revocation: only silent nodes, checked at once; no grants until restored.
        let silent_for = Duration::from_millis(50);
        assert_eq!(leases.revoke_silent(&[5, 6], 4, silent_for), vec![6]);
        std::thread::sleep(silent_for);
        assert_eq!(leases.revoke_silent(&[5], 4, silent_for), vec![5]);
        assert!(!leases.requested(5, 4, true, Instant::now()));
        leases.restore(&[5, 6]);
        assert!(leases.requested(5, 4, true, Instant::now()));
    }
}
