//! The kinds of stored objects and what the store needs to know about each: its id, project,
//! table, and the objects it refers to (which feed the reference index).

use std::collections::BTreeMap;

use fulcrum_proto::v1::{
    HealthMonitor, L7Policy, L7Rule, Listener, LoadBalancer, Member, Pool, ProvisioningStatus,
};

use super::State;

/// A kind of object the model stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    LoadBalancer,
    Listener,
    Pool,
    Member,
    HealthMonitor,
    L7Policy,
    L7Rule,
}

impl Kind {
    /// Every kind, parents before children.
    pub const ALL: [Kind; 7] = [
        Kind::LoadBalancer,
        Kind::Listener,
        Kind::Pool,
        Kind::Member,
        Kind::HealthMonitor,
        Kind::L7Policy,
        Kind::L7Rule,
    ];

    /// Octavia's display name, used in messages ("Listener <id> not found").
    pub fn name(self) -> &'static str {
        match self {
            Kind::LoadBalancer => "LoadBalancer",
            Kind::Listener => "Listener",
            Kind::Pool => "Pool",
            Kind::Member => "Member",
            Kind::HealthMonitor => "HealthMonitor",
            Kind::L7Policy => "L7Policy",
            Kind::L7Rule => "L7Rule",
        }
    }

    /// Record key prefix in the state machine's storage.
    pub(crate) fn prefix(self) -> &'static str {
        match self {
            Kind::LoadBalancer => "lb/",
            Kind::Listener => "listener/",
            Kind::Pool => "pool/",
            Kind::Member => "member/",
            Kind::HealthMonitor => "hm/",
            Kind::L7Policy => "l7policy/",
            Kind::L7Rule => "l7rule/",
        }
    }
}

/// How one object refers to another; the reference index is keyed by the referred object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rel {
    /// A listener of a load balancer.
    ListenerOf,
    /// A pool of a load balancer.
    PoolOf,
    /// A member of a pool.
    MemberOf,
    /// The health monitor of a pool.
    MonitorOf,
    /// A policy of a listener.
    PolicyOf,
    /// A rule of a policy.
    RuleOf,
    /// A listener using the pool as its default pool.
    DefaultPoolOf,
    /// A policy redirecting to the pool.
    RedirectsTo,
}

/// What the store needs from each stored object type.
pub trait Object: prost::Message + Clone + Default + PartialEq + Sized + 'static {
    const KIND: Kind;
    fn id(&self) -> &str;
    fn project_id(&self) -> &str;
    /// Objects this one refers to: (target id, relation).
    fn refs(&self) -> Vec<(String, Rel)>;
    fn table(state: &State) -> &BTreeMap<String, Self>;
    fn table_mut(state: &mut State) -> &mut BTreeMap<String, Self>;
    fn provisioning_status(&self) -> ProvisioningStatus;
    fn set_provisioning_status(&mut self, status: ProvisioningStatus);
    fn revision(&self) -> u64;
    fn set_revision(&mut self, revision: u64, now: &str);
    fn wrap(self) -> AnyObject;
}

/// Any stored object (for the undo journal).
#[derive(Debug, Clone, PartialEq)]
pub enum AnyObject {
    LoadBalancer(LoadBalancer),
    Listener(Listener),
    Pool(Pool),
    Member(Member),
    HealthMonitor(HealthMonitor),
    L7Policy(L7Policy),
    L7Rule(L7Rule),
}

fn nonempty(id: &str, rel: Rel) -> Option<(String, Rel)> {
    (!id.is_empty()).then(|| (id.to_string(), rel))
}

macro_rules! object {
    ($ty:ident, $kind:ident, $field:ident, |$o:ident| $refs:expr) => {
        impl Object for $ty {
            const KIND: Kind = Kind::$kind;
            fn id(&self) -> &str {
                &self.id
            }
            fn project_id(&self) -> &str {
                &self.project_id
            }
            fn refs(&self) -> Vec<(String, Rel)> {
                let $o = self;
                $refs
            }
            fn table(state: &State) -> &BTreeMap<String, Self> {
                &state.$field
            }
            fn table_mut(state: &mut State) -> &mut BTreeMap<String, Self> {
                &mut state.$field
            }
            fn provisioning_status(&self) -> ProvisioningStatus {
                ProvisioningStatus::try_from(self.provisioning_status)
                    .unwrap_or(ProvisioningStatus::Unspecified)
            }
            fn set_provisioning_status(&mut self, status: ProvisioningStatus) {
                self.provisioning_status = status as i32;
            }
            fn revision(&self) -> u64 {
                self.revision
            }
            fn set_revision(&mut self, revision: u64, now: &str) {
                self.revision = revision;
                self.updated_at = now.to_string();
            }
            fn wrap(self) -> AnyObject {
                AnyObject::$kind(self)
            }
        }
    };
}

object!(LoadBalancer, LoadBalancer, loadbalancers, |_o| Vec::new());
object!(Listener, Listener, listeners, |o| [
    nonempty(&o.loadbalancer_id, Rel::ListenerOf),
    nonempty(&o.default_pool_id, Rel::DefaultPoolOf),
]
.into_iter()
.flatten()
.collect());
object!(Pool, Pool, pools, |o| nonempty(
    &o.loadbalancer_id,
    Rel::PoolOf
)
.into_iter()
.collect());
object!(Member, Member, members, |o| nonempty(
    &o.pool_id,
    Rel::MemberOf
)
.into_iter()
.collect());
object!(HealthMonitor, HealthMonitor, healthmonitors, |o| nonempty(
    &o.pool_id,
    Rel::MonitorOf
)
.into_iter()
.collect());
object!(L7Policy, L7Policy, l7policies, |o| [
    nonempty(&o.listener_id, Rel::PolicyOf),
    nonempty(&o.redirect_pool_id, Rel::RedirectsTo),
]
.into_iter()
.flatten()
.collect());
object!(L7Rule, L7Rule, l7rules, |o| nonempty(
    &o.l7policy_id,
    Rel::RuleOf
)
.into_iter()
.collect());
