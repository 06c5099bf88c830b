//! VIP ownership (DESIGN.md "VIP ownership"): the leader places each load balancer's VIP on
//! one live node, and every node holds the VIPs placed on it only while its lease is valid.
//!
//! - Placement (leader): an unplaced VIP goes to the live node holding the fewest (avoiding the
//!   node a failover moved it from); a VIP moves only when its owner is gone: no lease
//!   request for `dead_after` (longer than the owner's lease), asking without holding a
//!   lease for `slow_after`, or no longer a member. A returning node does not get its VIPs
//!   back, so nothing flaps. A new leader waits `dead_after` before judging nodes it has
//!   not heard from yet. A stalled or delayed leader that cannot keep its own lease for
//!   `slow_after` hands leadership over.
//! - Holding (every node): a VIP placed here is held while the lease is valid. The leader's:
//!   a quorum acknowledged a heartbeat sent within `lease`. A follower's: the leader granted
//!   a lease request sent within `lease` (the raft crate's follower leases: dated from the
//!   send time, so it runs out before the leader, counting from the receipt, calls the node
//!   gone), and this node applied the log index that grant carried (the leader's last, so a
//!   node back from a pause, a partition or a restart never acts on a placement made while
//!   it was away, even one not committed yet when the grant was made). On losing the
//!   lease the node releases at once. A VIP taken from a node that may still hold it is held
//!   only `handover` (one lease) after the move was applied here: a previous owner that
//!   still hears the leader applies the same move and lets go, and one that does not loses
//!   its lease within that time. No wait for the VIPs of a deposed leader (its lease ran out
//!   before the election) or of a silent owner whose leases the leader revoked in the same
//!   step as it checked the silence (`owner_released` in the move).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use fulcrum_control::api::VipSubnet;
use fulcrum_proto::internal::{command, VipAssignments};
use fulcrum_proto::v1::LoadBalancer;
use fulcrum_raft::{ClusterStatus, RaftNode, Role};
use tokio::sync::watch;

use crate::replica::ModelApp;

/// Timings of VIP ownership.
#[derive(Debug, Clone, Copy)]
pub struct OwnershipTimings {
    /// How long a node may hold VIPs after its last contact (quorum or leader).
    pub lease: Duration,
    /// How long the leader waits without an acknowledgement before moving a node's VIPs
    /// (must exceed `lease`).
    pub dead_after: Duration,
    /// How long a node may keep asking for lease renewals without holding a lease (its round
    /// trip to the leader exceeds the lease: it can answer for nothing) before its VIPs move.
    pub slow_after: Duration,
    /// Delay before holding a VIP taken over from another node.
    pub handover: Duration,
    /// How often placement and holding are re-evaluated.
    pub tick: Duration,
}

impl OwnershipTimings {
    /// Timings derived from the Raft heartbeat interval: a lease of four heartbeats (shorter
    /// than the Raft leader lease, so a deposed leader's lease has run out before a new
    /// leader is elected), nodes count as gone one heartbeat after their lease, a taken-over
    /// VIP is held one lease after the move.
    pub fn from_heartbeat(heartbeat: Duration) -> Self {
        Self {
            lease: heartbeat * 4,
            dead_after: heartbeat * 5,
            slow_after: heartbeat * 40,
            handover: heartbeat * 4,
            tick: heartbeat / 2,
        }
    }
}

/// One load balancer's placement as the model records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub loadbalancer_id: String,
    pub vip: IpAddr,
    pub owner: Option<u64>,
    pub previous_owner: Option<u64>,
}

fn node_id(s: &str) -> Option<u64> {
    s.parse().ok().filter(|n| *n > 0)
}

/// One load balancer's placement.
fn placement_of(app: &ModelApp, lb_id: &str) -> Option<Placement> {
    let lb = app.state.get::<LoadBalancer>(lb_id)?;
    Some(Placement {
        loadbalancer_id: lb.id.clone(),
        vip: lb.vip_address.parse().ok()?,
        owner: node_id(&lb.vip_owner),
        previous_owner: node_id(&lb.vip_previous_owner),
    })
}

/// What placement needs, read from the model's owner index (cost grows with the VIPs to
/// move, not with all VIPs): VIPs per live node, and the placements of VIPs that are not
/// placed or sit on a node that is not alive.
fn placement_view(app: &ModelApp, alive: &BTreeSet<u64>) -> (BTreeMap<u64, usize>, Vec<Placement>) {
    let mut load: BTreeMap<u64, usize> = alive.iter().map(|n| (*n, 0)).collect();
    let mut to_place = Vec::new();
    for (owner, ids) in app.state.vip_owners() {
        match node_id(owner).filter(|n| alive.contains(n)) {
            Some(n) => *load.entry(n).or_default() += ids.len(),
            None => to_place.extend(ids.iter().filter_map(|id| placement_of(app, id))),
        }
    }
    (load, to_place)
}

/// One announced VIP as a node's holding loop sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AnnouncedVip {
    vip: HeldVip,
    owner: Option<u64>,
    previous_owner: Option<u64>,
}

/// The announced VIPs (those in a subnet with an interface), by load balancer id, kept up to
/// date from the model's placement change log, so each pass costs what changed.
#[derive(Debug, Default)]
struct AnnouncedVips {
    revision: Option<u64>,
    by_lb: HashMap<String, AnnouncedVip>,
}

impl AnnouncedVips {
    fn entry(app: &ModelApp, id: &str, subnets: &[VipSubnet]) -> Option<AnnouncedVip> {
        let lb = app.state.get::<LoadBalancer>(id)?;
        Some(AnnouncedVip {
            vip: announced(lb.vip_address.parse().ok()?, subnets)?,
            owner: node_id(&lb.vip_owner),
            previous_owner: node_id(&lb.vip_previous_owner),
        })
    }

    /// Catches up with the model; true if anything changed.
    fn refresh(&mut self, app: &ModelApp, subnets: &[VipSubnet]) -> bool {
        let revision = app.state.revision();
        if self.revision == Some(revision) {
            return false;
        }
        let changed: Option<Vec<&str>> = self
            .revision
            .and_then(|r| app.state.placement_changes_since(r))
            .map(|ids| ids.collect());
        let before = self.by_lb.len();
        let mut any = false;
        match changed {
            Some(ids) => {
                for id in ids {
                    let now = Self::entry(app, id, subnets);
                    let was = match &now {
                        Some(e) => self.by_lb.insert(id.to_string(), e.clone()),
                        None => self.by_lb.remove(id),
                    };
                    any |= was != now;
                }
            }
            None => {
                let all: HashMap<String, AnnouncedVip> = app
                    .state
                    .all::<LoadBalancer>()
                    .filter_map(|lb| Some((lb.id.clone(), Self::entry(app, &lb.id, subnets)?)))
                    .collect();
                any = all != self.by_lb;
                self.by_lb = all;
            }
        }
        self.revision = Some(revision);
        any || before != self.by_lb.len()
    }
}

/// Nodes the leader counts as alive: itself, and members that asked to renew their lease
/// within `dead_after` and held one within `slow_after` (a node whose round trip to the
/// leader exceeds the lease keeps asking but can answer for nothing), or that it has not had
/// that long to hear from yet. Only availability rests on this judgement: a VIP moved away
/// from a node that may still hold it waits a lease before its new owner answers.
///
/// `deposed` is the leader this node took over from: its lease had run out when a majority
/// elected a new leader (that majority had not heard from it for the Raft leader lease,
/// which is longer than a lease), so it counts as gone until it asks.
pub fn alive_nodes(
    status: &ClusterStatus,
    leader_for: Duration,
    timings: &OwnershipTimings,
    deposed: Option<u64>,
) -> BTreeSet<u64> {
    let members = status.voters.keys().chain(status.learners.keys());
    members
        .copied()
        .filter(|id| {
            if *id == status.node_id {
                return true;
            }
            let progress = status.replication.as_ref().and_then(|r| r.get(id));
            let asked = progress.and_then(|p| p.lease_request_age);
            let held = progress.and_then(|p| p.holding_request_age);
            match (asked, held) {
                (Some(asked), _) if asked >= timings.dead_after => false,
                (Some(_), Some(held)) => held < timings.slow_after,
                // Asking, not holding yet: its first grants from this leader are on the way.
                (Some(_), None) => leader_for < timings.slow_after,
                (None, _) => Some(*id) != deposed && leader_for < timings.dead_after,
            }
        })
        .collect()
}

/// The placement changes the leader should make: load balancer id -> new owner, for the
/// VIPs in `to_place` (not placed, or on a node that is gone), given the VIPs each live node
/// holds now (`load`).
pub fn plan(mut load: BTreeMap<u64, usize>, to_place: &[Placement]) -> HashMap<String, u64> {
    let single = load.len() == 1;
    let mut changes = HashMap::new();
    for p in to_place {
        let pick = load
            .iter()
            .filter(|(n, _)| Some(**n) != p.previous_owner || single)
            .min_by_key(|(n, count)| (**count, **n))
            .map(|(n, _)| *n);
        match pick {
            Some(n) => {
                *load.entry(n).or_default() += 1;
                changes.insert(p.loadbalancer_id.clone(), n);
            }
            None if p.owner.is_some() => {
                changes.insert(p.loadbalancer_id.clone(), 0);
            }
            None => {}
        }
    }
    changes
}

/// The load balancers among `changes` whose owner is the leader this node took over from and
/// that has not asked this leader for anything since: its lease ran out before this leader
/// was elected (a majority had not heard from it for the Raft leader lease, longer than a
/// VIP lease; a graceful hand-over releases VIPs before leadership), so the new owner need
/// not wait for it.
///
/// Owners the leader finds silent are released through lease revocation instead (see
/// `place`): a node that merely looks silent may have lease requests queued behind a stall
/// of the leader itself, which must not be granted with a log index from before the move.
pub fn released_by_deposed(
    status: &ClusterStatus,
    deposed: Option<u64>,
    to_place: &[Placement],
    changes: &HashMap<String, u64>,
) -> Vec<String> {
    let Some(deposed) = deposed else {
        return Vec::new();
    };
    let asked = status
        .replication
        .as_ref()
        .and_then(|r| r.get(&deposed))
        .is_some_and(|p| p.lease_request_age.is_some());
    if asked {
        return Vec::new();
    }
    to_place
        .iter()
        .filter(|p| p.owner == Some(deposed) && changes.contains_key(&p.loadbalancer_id))
        .map(|p| p.loadbalancer_id.clone())
        .collect()
}

/// Owners of VIPs to move that sent this leader no lease request for `dead_after`, this
/// leader having led that long (grants from a previous leader ran out before this one was
/// elected plus a lease): candidates for [`RaftNode::revoke_silent_leases`].
fn silent_owners(
    status: &ClusterStatus,
    leader_for: Duration,
    timings: &OwnershipTimings,
    to_place: &[Placement],
) -> Vec<u64> {
    if leader_for < timings.dead_after {
        return Vec::new();
    }
    let asked = |id: u64| {
        status
            .replication
            .as_ref()
            .and_then(|r| r.get(&id))
            .and_then(|p| p.lease_request_age)
    };
    let owners: BTreeSet<u64> = to_place
        .iter()
        .filter_map(|p| p.owner)
        .filter(|o| *o != status.node_id && asked(*o).is_none_or(|a| a >= timings.dead_after))
        .collect();
    owners.into_iter().collect()
}

/// Whether this node's lease is valid now (see the module doc): for the leader a quorum
/// acknowledged it within `lease`; for others the leader granted a renewal requested within
/// `lease` whose log index this node has applied (the raft crate reports only such
/// grants).
pub fn lease_valid(status: &ClusterStatus, lease: Duration) -> bool {
    let single_voter = status.voters.len() == 1 && status.voters.contains_key(&status.node_id);
    match status.role {
        Role::Leader if single_voter => true,
        Role::Leader | Role::Follower | Role::Learner => status
            .lease_since
            .is_some_and(|since| since.elapsed() < lease),
        Role::Candidate | Role::Shutdown => false,
    }
}

/// When the lease runs out if nothing renews it: counted from the instant it started,
/// never from now (a status read just before the process was frozen must not extend the
/// lease past the freeze).
fn lease_deadline(status: &ClusterStatus, valid: bool, lease: Duration) -> Instant {
    match (valid, status.lease_since) {
        (true, Some(since)) => since + lease,
        // A single voter is its own quorum: it renews every pass.
        (true, None) => Instant::now() + lease,
        (false, _) => Instant::now(),
    }
}

/// Leader loop: keeps every VIP placed on a live node.
pub async fn place(
    raft: RaftNode<ModelApp>,
    timings: OwnershipTimings,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut leader_since: Option<Instant> = None;
    // The leader this node last followed, and the one it took over from.
    let (mut last_leader, mut deposed) = (None, None);
    let mut lease_lost_since: Option<Instant> = None;
    loop {
        let status = raft.status();
        if status.role == Role::Leader {
            if leader_since.is_none() {
                deposed = last_leader.filter(|l| *l != status.node_id);
            }
            // A leader whose quorum's acknowledgements come back later than a lease (a slow
            // link) holds nothing, and neither does any follower, since they renew with it:
            // after `slow_after` of that, hand leadership to a node that holds a lease.
            if lease_valid(&status, timings.lease) {
                lease_lost_since = None;
            } else if lease_lost_since.get_or_insert_with(Instant::now).elapsed()
                > timings.slow_after
            {
                tracing::warn!(
                    node_id = status.node_id,
                    "this leader cannot keep its lease; handing leadership over"
                );
                lease_lost_since = None;
                raft.step_down(timings.lease * 5).await;
                continue;
            }
            let since = *leader_since.get_or_insert_with(Instant::now);
            let alive = alive_nodes(&status, since.elapsed(), &timings, deposed);
            let (load, to_place) = raft.read_local(|app| placement_view(app, &alive));
            let changes = plan(load, &to_place);
            if !changes.is_empty() {
                let mut owner_released = released_by_deposed(&status, deposed, &to_place, &changes);
                // Owners that look silent: stop granting them leases (checked and revoked at
                // once), so the ones still silent hold nothing and their VIPs are free at
                // once; grants resume after the move committed.
                let candidates = silent_owners(&status, since.elapsed(), &timings, &to_place);
                let revoked = if candidates.is_empty() {
                    Vec::new()
                } else {
                    raft.revoke_silent_leases(&candidates, timings.dead_after)
                };
                owner_released.extend(
                    to_place
                        .iter()
                        .filter(|p| p.owner.is_some_and(|o| revoked.contains(&o)))
                        .filter(|p| changes.contains_key(&p.loadbalancer_id))
                        .filter(|p| !owner_released.contains(&p.loadbalancer_id))
                        .map(|p| p.loadbalancer_id.clone())
                        .collect::<Vec<_>>(),
                );
                tracing::info!(?changes, ?alive, ?owner_released, "placing VIPs");
                let op = command::Op::VipAssignments(VipAssignments {
                    owners: changes,
                    owner_released,
                });
                // If the outcome is unknown the move may still commit: the revoked nodes
                // stay revoked (in this term) rather than get grants from before it.
                if crate::reconcile::propose(&raft, op, &shutdown).await {
                    raft.restore_leases(&revoked);
                }
            }
        } else {
            leader_since = None;
            lease_lost_since = None;
            if status.leader_id.is_some() {
                last_leader = status.leader_id;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(timings.tick) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

/// A VIP to hold and the interface it is announced on.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HeldVip {
    pub address: IpAddr,
    pub interface: String,
}

/// Where a node's held VIPs go: the host's address and ARP machinery, or nowhere for
/// loopback VIPs.
pub trait VipHolder: Send + Sync + 'static {
    /// Every VIP this node may hold (kept as local addresses so the kernel accepts traffic).
    fn set_local(&self, vips: &BTreeSet<HeldVip>) -> impl std::future::Future<Output = ()> + Send;
    /// The VIPs this node answers for now.
    fn set_held(&self, vips: &BTreeSet<HeldVip>) -> impl std::future::Future<Output = ()> + Send;
    /// Answers stop at `until` unless renewed (so a node that froze cannot answer on a stale
    /// view before its holding loop runs again).
    fn renew_lease(&self, _until: Instant) {}
}

/// The host's VIP machinery: addresses on `lo`, ARP answers and gratuitous ARP.
impl VipHolder for crate::vip::VipManager {
    async fn set_local(&self, vips: &BTreeSet<HeldVip>) {
        let vips = vips
            .iter()
            .map(|v| crate::vip::Vip::new(v.address, v.interface.clone()))
            .collect();
        if let Err(e) = crate::vip::VipManager::set_local(self, &vips).await {
            tracing::error!(error = %e, "cannot make VIPs local");
        }
    }
    async fn set_held(&self, vips: &BTreeSet<HeldVip>) {
        let vips = vips
            .iter()
            .map(|v| crate::vip::Vip::new(v.address, v.interface.clone()))
            .collect();
        if let Err(e) = crate::vip::VipManager::set_held(self, &vips).await {
            tracing::error!(error = %e, "cannot hold VIPs");
        }
    }
    fn renew_lease(&self, until: Instant) {
        crate::vip::VipManager::renew_lease(self, until);
    }
}

/// The interface a VIP is announced on; loopback VIPs need none and are left out.
fn announced(vip: IpAddr, subnets: &[VipSubnet]) -> Option<HeldVip> {
    if vip.is_loopback() {
        return None;
    }
    let subnet = subnets.iter().find(|s| s.contains(&vip))?;
    Some(HeldVip {
        address: vip,
        interface: subnet.interface.clone(),
    })
}

/// Every node's loop: holds the VIPs placed on this node while its lease is valid.
pub async fn hold<H: VipHolder>(
    raft: RaftNode<ModelApp>,
    holder: H,
    subnets: Vec<VipSubnet>,
    timings: OwnershipTimings,
    mut shutdown: watch::Receiver<bool>,
) {
    let me = raft.node_id();
    let mut announced_vips = AnnouncedVips::default();
    // The VIPs placed here: (load balancer, VIP, whether it was taken from another node).
    let mut mine: Vec<(String, HeldVip, bool)> = Vec::new();
    let mut owned_since: HashMap<String, Instant> = HashMap::new();
    let mut held = BTreeSet::new();
    let mut lease_was_valid = false;
    loop {
        let status = raft.status();
        let lease = lease_valid(&status, timings.lease);
        if lease != lease_was_valid {
            tracing::info!(node_id = me, lease, "VIP lease changed");
            lease_was_valid = lease;
        }
        holder.renew_lease(lease_deadline(&status, lease, timings.lease));
        let pass_started = Instant::now();
        if raft.read_local(|app| announced_vips.refresh(app, &subnets)) {
            // Every announced VIP stays local (on lo) on every node.
            let local: BTreeSet<HeldVip> = announced_vips
                .by_lb
                .values()
                .map(|a| a.vip.clone())
                .collect();
            holder.set_local(&local).await;
            let placed_here: Vec<(String, HeldVip, bool)> = announced_vips
                .by_lb
                .iter()
                .filter(|(_, a)| a.owner == Some(me))
                .map(|(id, a)| {
                    (
                        id.clone(),
                        a.vip.clone(),
                        a.previous_owner.is_some_and(|p| p != me),
                    )
                })
                .collect();
            if placed_here != mine {
                tracing::debug!(
                    node_id = me,
                    revision = ?announced_vips.revision,
                    placed_here = ?placed_here.iter().map(|(id, v, t)| (id.as_str(), v.address, *t)).collect::<Vec<_>>(),
                    "VIPs placed on this node changed"
                );
                mine = placed_here;
            }
            let ids: std::collections::HashSet<&str> =
                mine.iter().map(|(id, _, _)| id.as_str()).collect();
            owned_since.retain(|id, _| ids.contains(id.as_str()));
        }
        if pass_started.elapsed() > timings.lease {
            tracing::warn!(node_id = me, took = ?pass_started.elapsed(), "VIP holding pass was slow");
        }
        let mut now_held = BTreeSet::new();
        for (id, vip, taken_over) in &mine {
            let since = *owned_since.entry(id.clone()).or_insert_with(Instant::now);
            if lease && (!taken_over || since.elapsed() >= timings.handover) {
                now_held.insert(vip.clone());
            }
        }
        if now_held != held {
            tracing::info!(
                node_id = me,
                held = ?now_held.iter().map(|v| v.address).collect::<Vec<_>>(),
                "VIPs held changed"
            );
            holder.set_held(&now_held).await;
            held = now_held;
        }
        let stop = tokio::select! {
            _ = tokio::time::sleep(timings.tick) => false,
            _ = shutdown.wait_for(|s| *s) => true,
        };
        if stop {
            holder.set_held(&BTreeSet::new()).await;
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(id: &str, owner: Option<u64>, previous: Option<u64>) -> Placement {
        Placement {
            loadbalancer_id: id.into(),
            vip: "192.0.2.1".parse().unwrap(),
            owner,
            previous_owner: previous,
        }
    }

    /// The leader's plan for a full list of placements (as `placement_view` reads it from
    /// the model's owner index).
    fn plan_all(placements: &[Placement], alive: &BTreeSet<u64>) -> HashMap<String, u64> {
        let mut load: BTreeMap<u64, usize> = alive.iter().map(|n| (*n, 0)).collect();
        let mut to_place = Vec::new();
        for q in placements {
            match q.owner.filter(|o| alive.contains(o)) {
                Some(o) => *load.entry(o).or_default() += 1,
                None => to_place.push(q.clone()),
            }
        }
        plan(load, &to_place)
    }

    #[test]
    fn new_vips_go_to_the_least_loaded_live_node() {
        let alive = BTreeSet::from([1, 2, 3]);
        let placements = vec![
            p("a", Some(1), None),
            p("b", Some(1), None),
            p("c", None, None),
            p("d", None, None),
        ];
        let changes = plan_all(&placements, &alive);
        assert_eq!(changes.len(), 2);
        assert_eq!(changes["c"], 2);
        assert_eq!(changes["d"], 3);
    }

    #[test]
    fn vips_of_dead_nodes_move_and_live_ones_stay() {
        let alive = BTreeSet::from([1, 3]);
        let placements = vec![
            p("a", Some(1), None),
            p("b", Some(2), None),
            p("c", Some(3), None),
            p("d", Some(2), None),
        ];
        let changes = plan_all(&placements, &alive);
        assert_eq!(changes.len(), 2, "{changes:?}");
        assert!(changes.values().all(|n| alive.contains(n)));
        assert_ne!(changes["b"], changes["d"], "spread over the live nodes");
        // A returning node gets nothing back.
        let after = vec![
            p("a", Some(1), None),
            p("b", Some(changes["b"]), Some(2)),
            p("c", Some(3), None),
            p("d", Some(changes["d"]), Some(2)),
        ];
        assert!(plan_all(&after, &BTreeSet::from([1, 2, 3])).is_empty());
    }

    #[test]
    fn failover_avoids_the_previous_owner() {
        let changes = plan_all(
            &[p("a", None, Some(1)), p("b", Some(2), None)],
            &BTreeSet::from([1, 2, 3]),
        );
        assert_eq!(changes["a"], 3);
        // With only the previous owner alive it gets the VIP back rather than none.
        assert_eq!(
            plan_all(&[p("a", None, Some(1))], &BTreeSet::from([1]))["a"],
            1
        );
    }

    #[test]
    fn nobody_alive_releases() {
        let changes = plan_all(
            &[p("a", Some(2), None), p("b", None, None)],
            &BTreeSet::new(),
        );
        assert_eq!(changes.get("a"), Some(&0));
        assert!(!changes.contains_key("b"));
    }

    /// Node 2 just elected leader of nodes 1-3, no acknowledgements yet.
    fn new_leader_status() -> ClusterStatus {
        ClusterStatus {
            node_id: 2,
            role: Role::Leader,
            leader_id: Some(2),
            term: 3,
            last_log_index: None,
            committed_index: None,
            last_applied: 0,
            snapshot_index: None,
            purged_index: None,
            voters: BTreeMap::from([(1, String::new()), (2, String::new()), (3, String::new())]),
            learners: BTreeMap::new(),
            membership_committed: true,
            replication: Some(BTreeMap::new()),
            lease_age: Some(Duration::ZERO),
            lease_since: Some(Instant::now()),
            lease_log_index: None,
        }
    }

    #[test]
    fn a_follower_lease_needs_a_recent_grant() {
        let lease = Duration::from_millis(200);
        let mut status = new_leader_status();
        status.role = Role::Follower;
        status.leader_id = Some(1);
        let ago = |ms| Instant::now().checked_sub(Duration::from_millis(ms));
        status.lease_since = ago(30);
        status.lease_log_index = Some(10);
        status.last_applied = 10;
        assert!(lease_valid(&status, lease));
        status.lease_since = ago(200);
        assert!(!lease_valid(&status, lease), "grant too old");
        status.lease_since = None;
        status.lease_log_index = None;
        assert!(!lease_valid(&status, lease), "never granted");
        // The leader's lease is its quorum's acknowledgement alone.
        status.role = Role::Leader;
        status.lease_since = ago(30);
        assert!(lease_valid(&status, lease));
    }

    /// A status read before a pause (a process frozen by SIGSTOP) and used after it gives
    /// the deadline the lease had, not one extended by the pause.
    #[test]
    fn a_lease_deadline_counts_from_the_lease_not_from_when_it_is_computed() {
        let lease = Duration::from_millis(200);
        // Read 30 ms into the lease, used 250 ms later (and judged valid when read).
        let mut status = new_leader_status();
        status.lease_age = Some(Duration::from_millis(30));
        status.lease_since = Instant::now().checked_sub(Duration::from_millis(280));
        let deadline = lease_deadline(&status, true, lease);
        assert!(deadline <= Instant::now(), "ran out during the pause");
    }

    #[test]
    fn vips_of_a_silent_deposed_leader_need_no_hand_over() {
        let mut status = new_leader_status();
        let to_place = vec![p("a", Some(1), None), p("b", Some(3), None)];
        let changes = HashMap::from([("a".to_string(), 2), ("b".to_string(), 2)]);
        assert_eq!(
            released_by_deposed(&status, Some(1), &to_place, &changes),
            vec!["a".to_string()]
        );
        assert!(released_by_deposed(&status, None, &to_place, &changes).is_empty());
        // Once the deposed leader asked for a lease, its VIPs move with the hand-over wait.
        status.replication = Some(BTreeMap::from([(
            1,
            fulcrum_raft::PeerProgress {
                matched_index: Some(3),
                last_ack_age: Some(Duration::from_millis(5)),
                lease_request_age: Some(Duration::from_millis(5)),
                holding_request_age: None,
            },
        )]));
        assert!(released_by_deposed(&status, Some(1), &to_place, &changes).is_empty());
    }

    #[test]
    fn silent_owners_are_revocation_candidates_once_the_leader_led_long_enough() {
        let mut status = new_leader_status();
        let t = OwnershipTimings::from_heartbeat(Duration::from_millis(50));
        let asking = |age: u64| fulcrum_raft::PeerProgress {
            matched_index: Some(3),
            last_ack_age: None,
            lease_request_age: Some(Duration::from_millis(age)),
            holding_request_age: None,
        };
        status.replication = Some(BTreeMap::from([(1, asking(20)), (3, asking(400))]));
        let to_place = vec![
            p("a", Some(1), None),
            p("b", Some(3), None),
            p("c", Some(3), None),
            p("d", None, None),
        ];
        let leading = Duration::from_secs(1);
        assert_eq!(silent_owners(&status, leading, &t, &to_place), vec![3]);
        assert!(silent_owners(&status, Duration::from_millis(100), &t, &to_place).is_empty());
    }

    #[test]
    fn a_new_leader_counts_the_deposed_leader_gone_at_once() {
        let status = new_leader_status();
        let t = OwnershipTimings::from_heartbeat(Duration::from_millis(50));
        // Just elected: nodes not heard from yet get the benefit of the doubt, but not the
        // leader it took over from.
        let alive = alive_nodes(&status, Duration::from_millis(10), &t, Some(1));
        assert_eq!(alive, BTreeSet::from([2, 3]));
        let alive = alive_nodes(&status, Duration::from_millis(10), &t, None);
        assert_eq!(alive, BTreeSet::from([1, 2, 3]));
        // Later, silence means gone.
        let alive = alive_nodes(&status, Duration::from_secs(1), &t, None);
        assert_eq!(alive, BTreeSet::from([2]));
    }

    #[test]
    fn a_node_that_asks_but_cannot_hold_a_lease_counts_as_gone_after_a_while() {
        let mut status = new_leader_status();
        let t = OwnershipTimings::from_heartbeat(Duration::from_millis(50));
        let ms = Duration::from_millis;
        let progress = |asked: u64, held: Option<u64>| fulcrum_raft::PeerProgress {
            matched_index: Some(3),
            last_ack_age: Some(ms(10)),
            lease_request_age: Some(ms(asked)),
            holding_request_age: held.map(ms),
        };
        // Node 1 holds; node 3 asks but has held no lease for longer than slow_after.
        status.replication = Some(BTreeMap::from([
            (1, progress(10, Some(20))),
            (3, progress(10, Some(5000))),
        ]));
        let leading = Duration::from_secs(10);
        assert_eq!(
            alive_nodes(&status, leading, &t, None),
            BTreeSet::from([1, 2])
        );
        // A hiccup shorter than slow_after changes nothing.
        status.replication = Some(BTreeMap::from([
            (1, progress(10, Some(1000))),
            (3, progress(10, None)),
        ]));
        assert_eq!(
            alive_nodes(&status, leading, &t, None),
            BTreeSet::from([1, 2])
        );
        assert_eq!(
            alive_nodes(&status, ms(100), &t, None),
            BTreeSet::from([1, 2, 3]),
            "not holding yet, just after the election"
        );
        // Silence for dead_after is gone, whatever it held.
        status.replication = Some(BTreeMap::from([(1, progress(300, Some(300)))]));
        assert_eq!(alive_nodes(&status, leading, &t, None), BTreeSet::from([2]));
    }
}
