//! Objects as the API shows them: stored fields plus the derived id lists (listeners of a load
//! balancer, members of a pool, ...).

use fulcrum_proto::internal::Objects;
use fulcrum_proto::v1::{HealthMonitor, L7Policy, L7Rule, Listener, LoadBalancer, Member, Pool};

use super::{Rel, State};

fn ids<'a>(it: impl Iterator<Item = &'a str>) -> Vec<String> {
    it.map(str::to_string).collect()
}

impl State {
    /// A load balancer with its listener and pool ids.
    pub fn render_loadbalancer(&self, lb: &LoadBalancer) -> LoadBalancer {
        let mut out = lb.clone();
        out.listener_ids = ids(self.referrers(&lb.id, Rel::ListenerOf));
        out.pool_ids = ids(self.referrers(&lb.id, Rel::PoolOf));
        out
    }

    /// A listener with its policy ids in position order.
    pub fn render_listener(&self, l: &Listener) -> Listener {
        let mut out = l.clone();
        out.l7policy_ids = self
            .policies_in_order(&l.id)
            .into_iter()
            .map(|p| p.id.clone())
            .collect();
        out
    }

    /// A pool with its listeners (default pool or redirect target), members and monitor.
    pub fn render_pool(&self, p: &Pool) -> Pool {
        let mut out = p.clone();
        let mut listeners = ids(self.referrers(&p.id, Rel::DefaultPoolOf));
        for policy in self.referrers(&p.id, Rel::RedirectsTo) {
            if let Some(policy) = self.get::<L7Policy>(policy) {
                listeners.push(policy.listener_id.clone());
            }
        }
        listeners.sort();
        listeners.dedup();
        out.listener_ids = listeners;
        out.member_ids = ids(self.referrers(&p.id, Rel::MemberOf));
        out.healthmonitor_id = self
            .referrers(&p.id, Rel::MonitorOf)
            .next()
            .unwrap_or_default()
            .to_string();
        out
    }

    /// A policy with its rule ids.
    pub fn render_l7policy(&self, p: &L7Policy) -> L7Policy {
        let mut out = p.clone();
        out.rule_ids = ids(self.referrers(&p.id, Rel::RuleOf));
        out
    }

    /// A listener's policies ordered by position.
    pub fn policies_in_order(&self, listener_id: &str) -> Vec<&L7Policy> {
        let mut policies: Vec<&L7Policy> = self
            .referrers(listener_id, Rel::PolicyOf)
            .filter_map(|id| self.get::<L7Policy>(id))
            .collect();
        policies.sort_by(|a, b| (a.position, &a.id).cmp(&(b.position, &b.id)));
        policies
    }

    /// Renders every object of a result set from the current state (objects deleted since are
    /// left out).
    pub(crate) fn render_objects(&self, objects: &Objects) -> Objects {
        Objects {
            loadbalancers: objects
                .loadbalancers
                .iter()
                .filter_map(|o| self.get::<LoadBalancer>(&o.id))
                .map(|o| self.render_loadbalancer(o))
                .collect(),
            listeners: objects
                .listeners
                .iter()
                .filter_map(|o| self.get::<Listener>(&o.id))
                .map(|o| self.render_listener(o))
                .collect(),
            pools: objects
                .pools
                .iter()
                .filter_map(|o| self.get::<Pool>(&o.id))
                .map(|o| self.render_pool(o))
                .collect(),
            members: objects
                .members
                .iter()
                .filter_map(|o| self.get::<Member>(&o.id).cloned())
                .collect(),
            healthmonitors: objects
                .healthmonitors
                .iter()
                .filter_map(|o| self.get::<HealthMonitor>(&o.id).cloned())
                .collect(),
            l7policies: objects
                .l7policies
                .iter()
                .filter_map(|o| self.get::<L7Policy>(&o.id))
                .map(|o| self.render_l7policy(o))
                .collect(),
            l7rules: objects
                .l7rules
                .iter()
                .filter_map(|o| self.get::<L7Rule>(&o.id).cloned())
                .collect(),
            default_pools: Default::default(),
        }
    }
}
