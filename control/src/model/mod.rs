//! The replicated object model: a pure, deterministic state machine.
//!
//! [`State::apply`] takes one [`Command`] (ids and timestamps inside it) and either changes the
//! state or refuses with a [`ModelError`] and changes nothing (an undo journal rolls back a
//! half-applied command). No I/O, clock or randomness inside, so every node computes the same
//! state. The storage adapter persists what [`State::take_changes`] reports.

mod apply;
mod create;
mod delete;
mod object;
mod quota;
mod records;
mod relations;
mod render;
mod status;
mod update;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use fulcrum_proto::v1::{
    HealthMonitor, L7Policy, L7Rule, Listener, LoadBalancer, Member, Pool, ProvisioningStatus,
    Quota,
};

pub use object::{AnyObject, Kind, Object, Rel};
pub use quota::{quota_field, quota_kind};
pub use records::RecordError;

/// How many recent placement changes are kept for incremental readers.
const PLACEMENT_LOG: usize = 100_000;

/// How many applied request ids are remembered for de-duplicating retried commands.
const REMEMBERED_REQUESTS: usize = 100_000;

/// Every object of every project, plus quotas and bookkeeping.
#[derive(Debug, Default, Clone)]
pub struct State {
    pub(crate) loadbalancers: BTreeMap<String, LoadBalancer>,
    pub(crate) listeners: BTreeMap<String, Listener>,
    pub(crate) pools: BTreeMap<String, Pool>,
    pub(crate) members: BTreeMap<String, Member>,
    pub(crate) healthmonitors: BTreeMap<String, HealthMonitor>,
    pub(crate) l7policies: BTreeMap<String, L7Policy>,
    pub(crate) l7rules: BTreeMap<String, L7Rule>,
    pub(crate) quotas: BTreeMap<String, Quota>,
    pub(crate) quota_defaults: Quota,
    /// Last applied log index: the model revision.
    pub(crate) revision: u64,
    /// Derived: (referred id, relation, referring id).
    refs: BTreeSet<(String, Rel, String)>,
    /// Derived: objects per (project, kind).
    usage: BTreeMap<(String, Kind), i32>,
    /// Derived: load balancer id by VIP address.
    vips: BTreeMap<String, String>,
    /// Derived, not persisted: (revision, load balancer id) of recent changes to a load
    /// balancer's VIP or placement, oldest first; complete for revisions after
    /// `placement_log_start`.
    placement_log: VecDeque<(u64, String)>,
    placement_log_start: u64,
    /// Derived: load balancer ids by VIP owner ("" = not placed).
    vip_owners: BTreeMap<String, BTreeSet<String>>,
    /// Derived: objects in a PENDING_* state, by the revision that made them pending.
    pending: BTreeSet<(u64, Kind, String)>,
    /// Applied request ids with their encoded results, oldest first.
    requests: BTreeMap<String, (u64, Vec<u8>)>,
    request_order: VecDeque<(u64, String)>,
    /// Undo log of the command being applied.
    journal: Vec<(Kind, String, Option<AnyObject>)>,
    /// Records changed since the last `take_changes`.
    touched: BTreeSet<records::RecordKey>,
}

impl State {
    /// An empty model.
    pub fn new() -> Self {
        Self::default()
    }

    /// The revision (log index) of the last applied command.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// An object by id.
    pub fn get<T: Object>(&self, id: &str) -> Option<&T> {
        T::table(self).get(id)
    }

    /// All objects of one type, ordered by id.
    pub fn all<T: Object>(&self) -> impl Iterator<Item = &T> {
        T::table(self).values()
    }

    /// Ids of the objects that refer to `target` with relation `rel`.
    pub fn referrers<'a>(
        &'a self,
        target: &'a str,
        rel: Rel,
    ) -> impl Iterator<Item = &'a str> + 'a {
        let start = (target.to_string(), rel, String::new());
        self.refs
            .range(start..)
            .take_while(move |(t, r, _)| t.as_str() == target && *r == rel)
            .map(|(_, _, source)| source.as_str())
    }

    /// How many objects of `kind` the project holds.
    pub fn usage(&self, project_id: &str, kind: Kind) -> i32 {
        self.usage
            .get(&(project_id.to_string(), kind))
            .copied()
            .unwrap_or(0)
    }

    /// Explicitly set quotas per project.
    pub fn quotas(&self) -> &BTreeMap<String, Quota> {
        &self.quotas
    }

    /// Deployment-wide default quotas.
    pub fn quota_defaults(&self) -> &Quota {
        &self.quota_defaults
    }

    /// Inserts or replaces an object, keeping the derived indexes and the undo journal.
    pub(crate) fn put<T: Object>(&mut self, object: T) {
        let id = object.id().to_string();
        let prior = T::table_mut(self).insert(id.clone(), object.clone());
        let placement = |o: &T| {
            (o as &dyn std::any::Any)
                .downcast_ref::<LoadBalancer>()
                .map(|lb| {
                    (
                        lb.vip_address.clone(),
                        lb.vip_owner.clone(),
                        lb.vip_previous_owner.clone(),
                    )
                })
        };
        if placement(&object).is_some() && prior.as_ref().and_then(placement) != placement(&object)
        {
            self.log_placement(&id);
        }
        if let Some(prior) = &prior {
            self.unindex(prior);
        }
        self.index(&object);
        self.journal
            .push((T::KIND, id.clone(), prior.map(Object::wrap)));
        self.touched.insert(records::RecordKey::Object(T::KIND, id));
    }

    /// Removes an object (if present), keeping indexes and journal.
    pub(crate) fn remove<T: Object>(&mut self, id: &str) -> Option<T> {
        let prior = T::table_mut(self).remove(id)?;
        if T::KIND == Kind::LoadBalancer {
            self.log_placement(id);
        }
        self.unindex(&prior);
        self.journal
            .push((T::KIND, id.to_string(), Some(prior.clone().wrap())));
        self.touched
            .insert(records::RecordKey::Object(T::KIND, id.to_string()));
        Some(prior)
    }

    fn log_placement(&mut self, id: &str) {
        self.placement_log
            .push_back((self.revision, id.to_string()));
        while self.placement_log.len() > PLACEMENT_LOG {
            if let Some((revision, _)) = self.placement_log.pop_front() {
                self.placement_log_start = revision;
            }
        }
    }

    /// Load balancers whose VIP or placement changed after `revision` (a load balancer may
    /// be listed more than once), or `None` if that is too far back to tell: then look at
    /// them all.
    pub fn placement_changes_since(&self, revision: u64) -> Option<impl Iterator<Item = &str>> {
        if revision < self.placement_log_start {
            return None;
        }
        let from = self.placement_log.partition_point(|(r, _)| *r <= revision);
        Some(self.placement_log.range(from..).map(|(_, id)| id.as_str()))
    }

    /// Load balancer ids by the node their VIP is placed on (`""` = not placed), each set
    /// ordered by id.
    pub fn vip_owners(&self) -> &BTreeMap<String, BTreeSet<String>> {
        &self.vip_owners
    }

    /// Every VIP address in use, ordered.
    pub fn vip_addresses(&self) -> impl Iterator<Item = &str> {
        self.vips.keys().map(String::as_str)
    }

    /// The load balancer that uses a VIP address.
    pub fn loadbalancer_by_vip(&self, vip: &str) -> Option<&LoadBalancer> {
        self.vips.get(vip).and_then(|id| self.loadbalancers.get(id))
    }

    fn index<T: Object>(&mut self, object: &T) {
        if let Some(lb) = (object as &dyn std::any::Any).downcast_ref::<LoadBalancer>() {
            self.vips.insert(lb.vip_address.clone(), lb.id.clone());
            self.vip_owners
                .entry(lb.vip_owner.clone())
                .or_default()
                .insert(lb.id.clone());
        }
        for (target, rel) in object.refs() {
            self.refs.insert((target, rel, object.id().to_string()));
        }
        *self
            .usage
            .entry((object.project_id().to_string(), T::KIND))
            .or_default() += 1;
        if is_pending(object.provisioning_status()) {
            self.pending
                .insert((object.revision(), T::KIND, object.id().to_string()));
        }
    }

    fn unindex<T: Object>(&mut self, object: &T) {
        if let Some(lb) = (object as &dyn std::any::Any).downcast_ref::<LoadBalancer>() {
            self.vips.remove(&lb.vip_address);
            if let Some(ids) = self.vip_owners.get_mut(&lb.vip_owner) {
                ids.remove(&lb.id);
                if ids.is_empty() {
                    self.vip_owners.remove(&lb.vip_owner);
                }
            }
        }
        for (target, rel) in object.refs() {
            self.refs.remove(&(target, rel, object.id().to_string()));
        }
        if let Some(n) = self
            .usage
            .get_mut(&(object.project_id().to_string(), T::KIND))
        {
            *n -= 1;
        }
        self.pending
            .remove(&(object.revision(), T::KIND, object.id().to_string()));
    }

    /// Undoes everything journalled since `mark`.
    fn rollback(&mut self, mark: usize) {
        while self.journal.len() > mark {
            let Some((kind, id, prior)) = self.journal.pop() else {
                break;
            };
            match prior {
                Some(object) => self.restore_object(object),
                None => self.drop_object(kind, &id),
            }
            // restore/drop journal their own entries; discard them.
            self.journal.pop();
        }
    }

    fn restore_object(&mut self, object: AnyObject) {
        match object {
            AnyObject::LoadBalancer(o) => self.put(o),
            AnyObject::Listener(o) => self.put(o),
            AnyObject::Pool(o) => self.put(o),
            AnyObject::Member(o) => self.put(o),
            AnyObject::HealthMonitor(o) => self.put(o),
            AnyObject::L7Policy(o) => self.put(o),
            AnyObject::L7Rule(o) => self.put(o),
        }
    }

    fn drop_object(&mut self, kind: Kind, id: &str) {
        match kind {
            Kind::LoadBalancer => drop(self.remove::<LoadBalancer>(id)),
            Kind::Listener => drop(self.remove::<Listener>(id)),
            Kind::Pool => drop(self.remove::<Pool>(id)),
            Kind::Member => drop(self.remove::<Member>(id)),
            Kind::HealthMonitor => drop(self.remove::<HealthMonitor>(id)),
            Kind::L7Policy => drop(self.remove::<L7Policy>(id)),
            Kind::L7Rule => drop(self.remove::<L7Rule>(id)),
        }
    }
}

/// Whether a provisioning status is one of the PENDING_* ones.
pub fn is_pending(status: ProvisioningStatus) -> bool {
    matches!(
        status,
        ProvisioningStatus::PendingCreate
            | ProvisioningStatus::PendingUpdate
            | ProvisioningStatus::PendingDelete
    )
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use fulcrum_proto::internal::{command::Op, Command, Objects, VipAssignments};

    use super::*;

    fn lb(id: &str, vip: &str) -> LoadBalancer {
        LoadBalancer {
            id: id.into(),
            project_id: "p".into(),
            vip_address: vip.into(),
            admin_state_up: true,
            ..Default::default()
        }
    }

    fn run(state: &mut State, index: u64, op: Op) {
        let command = Command {
            request_id: String::new(),
            now: "2026-01-01T00:00:00Z".into(),
            op: Some(op),
        };
        state.apply(index, &command);
    }

    #[test]
    fn placement_changes_are_logged_by_revision_and_restores_start_over() {
        let mut state = State::new();
        run(
            &mut state,
            1,
            Op::Create(Objects {
                loadbalancers: vec![lb("a", "10.0.0.1")],
                ..Default::default()
            }),
        );
        run(
            &mut state,
            2,
            Op::Create(Objects {
                loadbalancers: vec![lb("b", "10.0.0.2")],
                ..Default::default()
            }),
        );
        let owners = HashMap::from([("a".to_string(), 2u64)]);
        run(
            &mut state,
            3,
            Op::VipAssignments(VipAssignments {
                owners,
                ..Default::default()
            }),
        );
        let since = |s: &State, r| {
            s.placement_changes_since(r)
                .map(|i| i.map(str::to_string).collect::<Vec<_>>())
        };
        assert_eq!(since(&state, 0).unwrap(), vec!["a", "b", "a"]);
        assert_eq!(since(&state, 2).unwrap(), vec!["a"]);
        assert_eq!(since(&state, 3).unwrap(), Vec::<String>::new());
        assert_eq!(
            state.vip_owners()["2"].iter().collect::<Vec<_>>(),
            vec!["a"]
        );
        assert_eq!(state.vip_owners()[""].iter().collect::<Vec<_>>(), vec!["b"]);
        // Confirming statuses is not a placement change.
        run(&mut state, 4, Op::ConfirmApplied(Default::default()));
        assert_eq!(since(&state, 3).unwrap(), Vec::<String>::new());
        // A state rebuilt from its records knows nothing older than its revision.
        let restored = State::from_records(state.records()).unwrap();
        assert!(restored.placement_changes_since(3).is_none());
        assert_eq!(since(&restored, 4).unwrap(), Vec::<String>::new());
        assert_eq!(restored.vip_owners()["2"].len(), 1);
    }

    #[test]
    fn a_move_records_the_previous_owner_unless_it_released() {
        let mut state = State::new();
        let lbs = vec![lb("a", "10.0.0.1"), lb("b", "10.0.0.2")];
        run(
            &mut state,
            1,
            Op::Create(Objects {
                loadbalancers: lbs,
                ..Default::default()
            }),
        );
        let assign = |owners: &[(&str, u64)], released: &[&str]| {
            Op::VipAssignments(VipAssignments {
                owners: owners.iter().map(|(id, n)| (id.to_string(), *n)).collect(),
                owner_released: released.iter().map(|id| id.to_string()).collect(),
            })
        };
        run(&mut state, 2, assign(&[("a", 1), ("b", 1)], &[]));
        run(&mut state, 3, assign(&[("a", 2), ("b", 3)], &["b"]));
        let owners = |id: &str| {
            let lb = state.get::<LoadBalancer>(id).unwrap();
            (lb.vip_owner.clone(), lb.vip_previous_owner.clone())
        };
        assert_eq!(owners("a"), ("2".into(), "1".into()));
        assert_eq!(owners("b"), ("3".into(), String::new()));
    }
}
