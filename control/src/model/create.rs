//! Creating objects: one object or a whole load balancer tree, all or nothing.

use std::collections::BTreeMap;

use fulcrum_proto::internal::Objects;
use fulcrum_proto::v1::{HealthMonitor, Listener, OperatingStatus, Pool};

use super::apply::Ctx;
use super::{Kind, Object, Rel, State};
use crate::error::{ModelError, ModelResult};
use crate::validate;

impl State {
    /// Creates every object of `objects` (ids chosen by the proposer) or none of them.
    pub(crate) fn create(&mut self, ctx: &Ctx, objects: &Objects) -> ModelResult<Objects> {
        self.check_quota(&count_new(objects))?;
        for lb in &objects.loadbalancers {
            validate::loadbalancer(lb)?;
            self.check_new_id(lb)?;
            if let Some(other) = self.loadbalancer_by_vip(&lb.vip_address) {
                return Err(ModelError::Conflict(format!(
                    "vip_address {} is already used by load balancer {}",
                    lb.vip_address, other.id
                )));
            }
            let mut lb = lb.clone();
            lb.operating_status = OperatingStatus::Offline as i32;
            lb.created_at = ctx.now.clone();
            Self::stamp_new(ctx, &mut lb);
            self.put(lb);
        }
        for pool in &objects.pools {
            validate::pool(pool)?;
            self.check_new_id(pool)?;
            self.check_pool(pool)?;
            self.insert_new(ctx, pool)?;
        }
        // Listeners first without their default pool, so that pools and listeners of one tree
        // can refer to each other; references are checked once all exist.
        for listener in &objects.listeners {
            validate::listener(listener)?;
            self.check_new_id(listener)?;
            self.insert_new(ctx, listener)?;
        }
        for (listener_id, pool_id) in &objects.default_pools {
            let mut listener = self
                .get::<Listener>(listener_id)
                .cloned()
                .ok_or_else(|| ModelError::not_found("Listener", listener_id))?;
            if !listener.default_pool_id.is_empty() {
                return Err(ModelError::Conflict(format!(
                    "listener {listener_id} already has a default pool ({})",
                    listener.default_pool_id
                )));
            }
            listener.default_pool_id = pool_id.clone();
            Self::stamp_changed(ctx, &mut listener);
            self.put(listener);
        }
        let listener_ids = objects
            .listeners
            .iter()
            .map(|l| l.id.clone())
            .chain(objects.default_pools.keys().cloned());
        for id in listener_ids.collect::<Vec<_>>() {
            if let Some(listener) = self.get::<Listener>(&id).cloned() {
                self.check_listener(&listener)?;
            }
        }
        for policy in &objects.l7policies {
            validate::l7policy(policy)?;
            self.check_new_id(policy)?;
            self.check_l7policy(policy)?;
            let mut policy = policy.clone();
            policy.created_at = ctx.now.clone();
            policy.operating_status = OperatingStatus::Offline as i32;
            Self::stamp_new(ctx, &mut policy);
            let position = policy.position;
            self.place_policy(policy.clone(), position);
            self.mark_ancestors(ctx, Kind::L7Policy, &policy.id);
        }
        for rule in &objects.l7rules {
            validate::l7rule(rule)?;
            self.check_new_id(rule)?;
            self.check_l7rule(rule)?;
            self.insert_new(ctx, rule)?;
        }
        for hm in &objects.healthmonitors {
            validate::healthmonitor(hm)?;
            self.check_new_id(hm)?;
            self.check_healthmonitor(hm)?;
            self.insert_new(ctx, hm)?;
        }
        for member in &objects.members {
            validate::member(member)?;
            self.check_new_id(member)?;
            self.check_member(member)?;
            let mut member = member.clone();
            let monitored = self
                .referrers(&member.pool_id, Rel::MonitorOf)
                .next()
                .is_some();
            member.operating_status = if monitored {
                OperatingStatus::Offline
            } else {
                OperatingStatus::NoMonitor
            } as i32;
            self.insert_new(ctx, &member)?;
        }
        Ok(self.render_objects(objects))
    }

    fn check_new_id<T: Object>(&self, object: &T) -> ModelResult<()> {
        if object.id().is_empty() {
            return Err(ModelError::invalid("id", "is required"));
        }
        if self.get::<T>(object.id()).is_some() {
            return Err(ModelError::Conflict(format!(
                "{} {} already exists",
                T::KIND.name(),
                object.id()
            )));
        }
        Ok(())
    }

    /// Stores a new object (PENDING_CREATE) and marks its ancestors PENDING_UPDATE.
    fn insert_new<T: Object + OperatingDefault>(
        &mut self,
        ctx: &Ctx,
        object: &T,
    ) -> ModelResult<()> {
        let mut object = object.clone();
        object.init_new(&ctx.now);
        Self::stamp_new(ctx, &mut object);
        let id = object.id().to_string();
        self.put(object);
        self.mark_ancestors(ctx, T::KIND, &id);
        Ok(())
    }
}

/// Creation-time fields every new object gets.
pub(crate) trait OperatingDefault {
    fn init_new(&mut self, now: &str);
}

macro_rules! operating_default {
    ($($ty:ty => $keep:expr),* $(,)?) => {$(
        impl OperatingDefault for $ty {
            fn init_new(&mut self, now: &str) {
                self.created_at = now.to_string();
                if !$keep || self.operating_status == 0 {
                    self.operating_status = OperatingStatus::Offline as i32;
                }
            }
        }
    )*};
}

operating_default!(
    Pool => false,
    Listener => false,
    HealthMonitor => false,
    fulcrum_proto::v1::L7Rule => false,
    fulcrum_proto::v1::Member => true,
);

fn count_new(objects: &Objects) -> BTreeMap<(String, Kind), i32> {
    let mut counts = BTreeMap::new();
    let mut add = |project: &str, kind| {
        *counts.entry((project.to_string(), kind)).or_insert(0) += 1;
    };
    objects
        .loadbalancers
        .iter()
        .for_each(|o| add(&o.project_id, Kind::LoadBalancer));
    objects
        .listeners
        .iter()
        .for_each(|o| add(&o.project_id, Kind::Listener));
    objects
        .pools
        .iter()
        .for_each(|o| add(&o.project_id, Kind::Pool));
    objects
        .members
        .iter()
        .for_each(|o| add(&o.project_id, Kind::Member));
    objects
        .healthmonitors
        .iter()
        .for_each(|o| add(&o.project_id, Kind::HealthMonitor));
    objects
        .l7policies
        .iter()
        .for_each(|o| add(&o.project_id, Kind::L7Policy));
    objects
        .l7rules
        .iter()
        .for_each(|o| add(&o.project_id, Kind::L7Rule));
    counts
}
