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
        self.unindex(&prior);
        self.journal
            .push((T::KIND, id.to_string(), Some(prior.clone().wrap())));
        self.touched
            .insert(records::RecordKey::Object(T::KIND, id.to_string()));
        Some(prior)
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
                .insert((object_revision(object), T::KIND, object.id().to_string()));
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
            .remove(&(object_revision(object), T::KIND, object.id().to_string()));
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

fn object_revision<T: Object>(object: &T) -> u64 {
    object.revision()
}
