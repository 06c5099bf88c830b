//! Deleting objects, with Octavia's cascades (a pool takes its members and monitor, a listener
//! its policies and rules, a load balancer everything with `cascade`) and refusals (a pool an
//! L7 policy redirects to, a load balancer with children without `cascade`).

use fulcrum_proto::internal::{BatchMembers, Objects};
use fulcrum_proto::v1::{
    HealthMonitor, L7Policy, L7Rule, Listener, LoadBalancer, Member, OperatingStatus, Pool,
};

use super::apply::Ctx;
use super::{Kind, Rel, State};
use crate::error::{ModelError, ModelResult};
use crate::validate;

impl State {
    fn ids_of(&self, target: &str, rel: Rel) -> Vec<String> {
        self.referrers(target, rel).map(str::to_string).collect()
    }

    fn require<T: super::Object>(&self, id: &str) -> ModelResult<()> {
        match self.get::<T>(id) {
            Some(_) => Ok(()),
            None => Err(ModelError::not_found(T::KIND.name(), id)),
        }
    }

    pub(crate) fn delete_loadbalancer(
        &mut self,
        ctx: &Ctx,
        id: &str,
        cascade: bool,
    ) -> ModelResult<Objects> {
        self.require::<LoadBalancer>(id)?;
        let listeners = self.ids_of(id, Rel::ListenerOf);
        let pools = self.ids_of(id, Rel::PoolOf);
        let childless = listeners.is_empty() && pools.is_empty();
        if !cascade && !childless {
            return Err(ModelError::Precondition(format!(
                "cannot delete load balancer {id}: it has {} listener(s) and {} pool(s); delete them first or use cascade",
                listeners.len(),
                pools.len()
            )));
        }
        for listener in listeners {
            self.delete_listener(ctx, &listener)?;
        }
        for pool in pools {
            self.drop_pool(&pool);
        }
        self.remove::<LoadBalancer>(id);
        Ok(Objects::default())
    }

    pub(crate) fn delete_listener(&mut self, ctx: &Ctx, id: &str) -> ModelResult<Objects> {
        self.require::<Listener>(id)?;
        self.mark_ancestors(ctx, Kind::Listener, id);
        for policy in self.ids_of(id, Rel::PolicyOf) {
            self.drop_policy(&policy);
        }
        self.remove::<Listener>(id);
        Ok(Objects::default())
    }

    pub(crate) fn delete_pool(&mut self, ctx: &Ctx, id: &str) -> ModelResult<Objects> {
        self.require::<Pool>(id)?;
        if let Some(policy) = self.referrers(id, Rel::RedirectsTo).next() {
            return Err(ModelError::Precondition(format!(
                "pool {id} is in use by L7 policy {policy}; change or delete the policy first"
            )));
        }
        self.mark_ancestors(ctx, Kind::Pool, id);
        for listener in self.ids_of(id, Rel::DefaultPoolOf) {
            if let Some(mut l) = self.get::<Listener>(&listener).cloned() {
                l.default_pool_id.clear();
                Self::stamp_changed(ctx, &mut l);
                self.put(l);
            }
        }
        self.drop_pool(id);
        Ok(Objects::default())
    }

    /// Removes a pool with its members and monitor (references to it must be gone).
    fn drop_pool(&mut self, id: &str) {
        for member in self.ids_of(id, Rel::MemberOf) {
            self.remove::<Member>(&member);
        }
        for hm in self.ids_of(id, Rel::MonitorOf) {
            self.remove::<HealthMonitor>(&hm);
        }
        self.remove::<Pool>(id);
    }

    /// Removes a policy with its rules.
    fn drop_policy(&mut self, id: &str) {
        for rule in self.ids_of(id, Rel::RuleOf) {
            self.remove::<L7Rule>(&rule);
        }
        self.remove::<L7Policy>(id);
    }

    pub(crate) fn delete_member(
        &mut self,
        ctx: &Ctx,
        pool_id: &str,
        id: &str,
    ) -> ModelResult<Objects> {
        match self.get::<Member>(id) {
            Some(m) if m.pool_id == pool_id => {}
            _ => return Err(ModelError::not_found("Member", id)),
        }
        self.mark_ancestors(ctx, Kind::Member, id);
        self.remove::<Member>(id);
        Ok(Objects::default())
    }

    pub(crate) fn delete_healthmonitor(&mut self, ctx: &Ctx, id: &str) -> ModelResult<Objects> {
        self.require::<HealthMonitor>(id)?;
        self.mark_ancestors(ctx, Kind::HealthMonitor, id);
        self.remove::<HealthMonitor>(id);
        Ok(Objects::default())
    }

    pub(crate) fn delete_l7policy(&mut self, ctx: &Ctx, id: &str) -> ModelResult<Objects> {
        let listener = match self.get::<L7Policy>(id) {
            Some(p) => p.listener_id.clone(),
            None => return Err(ModelError::not_found("L7Policy", id)),
        };
        self.mark_ancestors(ctx, Kind::L7Policy, id);
        self.drop_policy(id);
        self.close_policy_gap(&listener);
        Ok(Objects::default())
    }

    pub(crate) fn delete_l7rule(
        &mut self,
        ctx: &Ctx,
        policy_id: &str,
        id: &str,
    ) -> ModelResult<Objects> {
        match self.get::<L7Rule>(id) {
            Some(r) if r.l7policy_id == policy_id => {}
            _ => return Err(ModelError::not_found("L7Rule", id)),
        }
        self.mark_ancestors(ctx, Kind::L7Rule, id);
        self.remove::<L7Rule>(id);
        Ok(Objects::default())
    }

    /// Makes a pool's members match a list (matched on address and port): new ones are
    /// created, matched ones updated, and unmatched ones deleted unless `additive_only`.
    pub(crate) fn batch_members(
        &mut self,
        ctx: &Ctx,
        batch: &BatchMembers,
    ) -> ModelResult<Objects> {
        let pool = self
            .get::<Pool>(&batch.pool_id)
            .cloned()
            .ok_or_else(|| ModelError::not_found("Pool", &batch.pool_id))?;
        let mut seen = std::collections::BTreeSet::new();
        let mut wanted = Vec::new();
        for m in &batch.members {
            validate::member(m)?;
            let address: std::net::IpAddr = validate::parse_ip("address", &m.address)?;
            if !seen.insert((address, m.protocol_port)) {
                return Err(ModelError::invalid(
                    "members",
                    format!("{} port {} is listed twice", m.address, m.protocol_port),
                ));
            }
            wanted.push((address, m));
        }
        let existing: Vec<Member> = self
            .ids_of(&pool.id, Rel::MemberOf)
            .iter()
            .filter_map(|id| self.get::<Member>(id).cloned())
            .collect();
        let find = |address: std::net::IpAddr, port: i32| {
            existing
                .iter()
                .find(|e| e.protocol_port == port && e.address.parse() == Ok(address))
        };
        let mut created = Objects::default();
        let mut result = Vec::new();
        for (address, m) in &wanted {
            match find(*address, m.protocol_port) {
                Some(current) => {
                    let mut updated = current.clone();
                    updated.name = m.name.clone();
                    updated.weight = m.weight;
                    updated.backup = m.backup;
                    updated.admin_state_up = m.admin_state_up;
                    updated.monitor_address = m.monitor_address.clone();
                    updated.monitor_port = m.monitor_port;
                    updated.tags = m.tags.clone();
                    if updated != *current {
                        Self::stamp_changed(ctx, &mut updated);
                        self.put(updated.clone());
                    }
                    result.push(updated);
                }
                None => {
                    let mut new = (*m).clone();
                    new.pool_id = pool.id.clone();
                    new.project_id = pool.project_id.clone();
                    new.operating_status = OperatingStatus::Offline as i32;
                    created.members.push(new);
                }
            }
        }
        if !batch.additive_only {
            for e in &existing {
                let address = e.address.parse::<std::net::IpAddr>().ok();
                if !address.is_some_and(|a| seen.contains(&(a, e.protocol_port))) {
                    self.remove::<Member>(&e.id);
                }
            }
        }
        let made = self.create(ctx, &created)?;
        result.extend(made.members);
        self.mark_changed::<Pool>(ctx, &pool.id);
        self.mark_ancestors(ctx, Kind::Pool, &pool.id);
        Ok(Objects {
            members: result,
            ..Default::default()
        })
    }
}
