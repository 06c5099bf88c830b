//! Provisioning and operating status: what a change marks PENDING_*, how a confirmation from
//! the data planes turns it ACTIVE, and Octavia's operating-status roll-up
//! member -> pool -> load balancer.

use fulcrum_proto::internal::VipAssignments;
use fulcrum_proto::v1::{
    HealthMonitor, L7Policy, L7Rule, Listener, LoadBalancer, Member, OperatingStatus, Pool,
    ProvisioningStatus,
};

use super::apply::Ctx;
use super::{Kind, Object, Rel, State};
use crate::error::{ModelError, ModelResult};

impl State {
    /// Gives a new object its creation status and timestamps.
    pub(crate) fn stamp_new<T: Object>(ctx: &Ctx, object: &mut T) {
        object.set_provisioning_status(ProvisioningStatus::PendingCreate);
        object.set_revision(ctx.revision, &ctx.now);
    }

    /// Records a change to an existing object: PENDING_UPDATE (a PENDING_CREATE object stays
    /// so), new revision and `updated_at`.
    pub(crate) fn stamp_changed<T: Object>(ctx: &Ctx, object: &mut T) {
        if object.provisioning_status() != ProvisioningStatus::PendingCreate {
            object.set_provisioning_status(ProvisioningStatus::PendingUpdate);
        }
        object.set_revision(ctx.revision, &ctx.now);
    }

    /// Marks an existing object as changed by this command (see [`State::stamp_changed`]).
    pub(crate) fn mark_changed<T: Object>(&mut self, ctx: &Ctx, id: &str) {
        if let Some(mut object) = self.get::<T>(id).cloned() {
            if object.revision() == ctx.revision {
                return;
            }
            Self::stamp_changed(ctx, &mut object);
            self.put(object);
        }
    }

    /// Marks the objects above a changed object (its load balancer, and the listener, pool or
    /// policy in between) PENDING_UPDATE, as Octavia does.
    pub(crate) fn mark_ancestors(&mut self, ctx: &Ctx, kind: Kind, id: &str) {
        let mut next = Some((kind, id.to_string()));
        let mut first = true;
        while let Some((kind, id)) = next.take() {
            if !first {
                match kind {
                    Kind::LoadBalancer => self.mark_changed::<LoadBalancer>(ctx, &id),
                    Kind::Listener => self.mark_changed::<Listener>(ctx, &id),
                    Kind::Pool => self.mark_changed::<Pool>(ctx, &id),
                    Kind::L7Policy => self.mark_changed::<L7Policy>(ctx, &id),
                    _ => {}
                }
            }
            first = false;
            next = self.parent_of(kind, &id);
        }
    }

    /// The object directly above one object.
    pub(crate) fn parent_of(&self, kind: Kind, id: &str) -> Option<(Kind, String)> {
        let parent = match kind {
            Kind::LoadBalancer => return None,
            Kind::Listener => (
                Kind::LoadBalancer,
                &self.get::<Listener>(id)?.loadbalancer_id,
            ),
            Kind::Pool => (Kind::LoadBalancer, &self.get::<Pool>(id)?.loadbalancer_id),
            Kind::Member => (Kind::Pool, &self.get::<Member>(id)?.pool_id),
            Kind::HealthMonitor => (Kind::Pool, &self.get::<HealthMonitor>(id)?.pool_id),
            Kind::L7Policy => (Kind::Listener, &self.get::<L7Policy>(id)?.listener_id),
            Kind::L7Rule => (Kind::L7Policy, &self.get::<L7Rule>(id)?.l7policy_id),
        };
        Some((parent.0, parent.1.clone()))
    }

    /// The load balancer an object belongs to.
    pub fn loadbalancer_of(&self, kind: Kind, id: &str) -> Option<String> {
        let mut at = (kind, id.to_string());
        while at.0 != Kind::LoadBalancer {
            at = self.parent_of(at.0, &at.1)?;
        }
        Some(at.1)
    }

    /// Every data plane has applied the model up to `revision`: objects pending at or before
    /// it become ACTIVE (listeners the data plane could not serve become ERROR with the
    /// reason) and their load balancers' operating statuses are rolled up.
    pub(crate) fn confirm_applied(
        &mut self,
        revision: u64,
        listener_errors: &std::collections::HashMap<String, String>,
    ) {
        let due: Vec<(u64, Kind, String)> = self
            .pending
            .iter()
            .take_while(|(r, _, _)| *r <= revision)
            .cloned()
            .collect();
        let mut lbs = std::collections::BTreeSet::new();
        for (_, kind, id) in due {
            match kind {
                Kind::LoadBalancer => self.activate::<LoadBalancer>(&id),
                Kind::Listener => self.activate::<Listener>(&id),
                Kind::Pool => self.activate::<Pool>(&id),
                Kind::Member => self.activate::<Member>(&id),
                Kind::HealthMonitor => self.activate::<HealthMonitor>(&id),
                Kind::L7Policy => self.activate::<L7Policy>(&id),
                Kind::L7Rule => self.activate::<L7Rule>(&id),
            }
            if let Some(lb) = self.loadbalancer_of(kind, &id) {
                lbs.insert(lb);
            }
        }
        let erred: Vec<Listener> = self
            .all::<Listener>()
            .filter(|l| {
                let reason = listener_errors.get(&l.id).map(String::as_str).unwrap_or("");
                l.provisioning_error != reason
                    || (!reason.is_empty()
                        && l.provisioning_status() != ProvisioningStatus::Error
                        && l.revision <= revision)
            })
            .cloned()
            .collect();
        for mut l in erred {
            let reason = listener_errors.get(&l.id).cloned().unwrap_or_default();
            let status = if !reason.is_empty() {
                ProvisioningStatus::Error
            } else if l.provisioning_status() == ProvisioningStatus::Error {
                ProvisioningStatus::Active
            } else {
                l.provisioning_status()
            };
            l.provisioning_error = reason;
            l.set_provisioning_status(status);
            if let Some(lb) = self.loadbalancer_of(Kind::Listener, &l.id) {
                lbs.insert(lb);
            }
            self.put(l);
        }
        for lb in lbs {
            self.roll_up(&lb);
        }
    }

    /// Listeners the data plane could not serve, with the reason.
    pub fn listener_errors(&self) -> std::collections::HashMap<String, String> {
        self.all::<Listener>()
            .filter(|l| !l.provisioning_error.is_empty())
            .map(|l| (l.id.clone(), l.provisioning_error.clone()))
            .collect()
    }

    fn activate<T: Object>(&mut self, id: &str) {
        if let Some(mut object) = self.get::<T>(id).cloned() {
            object.set_provisioning_status(ProvisioningStatus::Active);
            self.put(object);
        }
    }

    /// Recomputes the operating status of every object of a load balancer, writing only
    /// objects whose status changes.
    pub(crate) fn roll_up(&mut self, lb_id: &str) {
        let Some(lb) = self.get::<LoadBalancer>(lb_id).cloned() else {
            return;
        };
        let online = |up: bool| {
            if up && lb.admin_state_up {
                OperatingStatus::Online
            } else {
                OperatingStatus::Offline
            }
        };
        let mut lb_status = online(true);
        let pools: Vec<String> = self
            .referrers(lb_id, Rel::PoolOf)
            .map(str::to_string)
            .collect();
        for pool_id in pools {
            let Some(pool) = self.get::<Pool>(&pool_id).cloned() else {
                continue;
            };
            let monitor = self
                .referrers(&pool_id, Rel::MonitorOf)
                .next()
                .and_then(|id| self.get::<HealthMonitor>(id))
                .cloned();
            let monitored = monitor.as_ref().is_some_and(|m| m.admin_state_up);
            if let Some(mut m) = monitor {
                set_operating(&mut m.operating_status, online(m.admin_state_up))
                    .then(|| self.put(m));
            }
            let members: Vec<String> = self
                .referrers(&pool_id, Rel::MemberOf)
                .map(str::to_string)
                .collect();
            let (mut total, mut errors) = (0, 0);
            for member_id in members {
                let Some(mut m) = self.get::<Member>(&member_id).cloned() else {
                    continue;
                };
                let current = OperatingStatus::try_from(m.operating_status)
                    .unwrap_or(OperatingStatus::Offline);
                let status = if !m.admin_state_up || !pool.admin_state_up || !lb.admin_state_up {
                    OperatingStatus::Offline
                } else if !monitored {
                    OperatingStatus::NoMonitor
                } else if matches!(
                    current,
                    OperatingStatus::Online | OperatingStatus::Error | OperatingStatus::Draining
                ) {
                    current
                } else {
                    OperatingStatus::Offline
                };
                total += 1;
                if status == OperatingStatus::Error {
                    errors += 1;
                }
                set_operating(&mut m.operating_status, status).then(|| self.put(m));
            }
            let pool_status = if !pool.admin_state_up || !lb.admin_state_up {
                OperatingStatus::Offline
            } else if total > 0 && errors == total {
                OperatingStatus::Error
            } else if errors > 0 {
                OperatingStatus::Degraded
            } else {
                OperatingStatus::Online
            };
            match pool_status {
                OperatingStatus::Error => lb_status = OperatingStatus::Error,
                OperatingStatus::Degraded if lb_status == OperatingStatus::Online => {
                    lb_status = OperatingStatus::Degraded
                }
                _ => {}
            }
            let mut pool = pool;
            set_operating(&mut pool.operating_status, pool_status).then(|| self.put(pool));
        }
        let listeners: Vec<String> = self
            .referrers(lb_id, Rel::ListenerOf)
            .map(str::to_string)
            .collect();
        for listener_id in listeners {
            if let Some(mut l) = self.get::<Listener>(&listener_id).cloned() {
                set_operating(&mut l.operating_status, online(l.admin_state_up))
                    .then(|| self.put(l));
            }
            let policies: Vec<String> = self
                .referrers(&listener_id, Rel::PolicyOf)
                .map(str::to_string)
                .collect();
            for policy_id in policies {
                if let Some(mut p) = self.get::<L7Policy>(&policy_id).cloned() {
                    set_operating(&mut p.operating_status, online(p.admin_state_up))
                        .then(|| self.put(p));
                }
                let rules: Vec<String> = self
                    .referrers(&policy_id, Rel::RuleOf)
                    .map(str::to_string)
                    .collect();
                for rule_id in rules {
                    if let Some(mut r) = self.get::<L7Rule>(&rule_id).cloned() {
                        set_operating(&mut r.operating_status, online(r.admin_state_up))
                            .then(|| self.put(r));
                    }
                }
            }
        }
        let mut lb = lb;
        set_operating(&mut lb.operating_status, lb_status).then(|| self.put(lb));
    }

    /// Takes health observations (member id -> operating status) and rolls them up; members
    /// that no longer exist are ignored.
    pub(crate) fn member_health(&mut self, statuses: &std::collections::HashMap<String, i32>) {
        let mut lbs = std::collections::BTreeSet::new();
        let mut ids: Vec<&String> = statuses.keys().collect();
        ids.sort();
        for id in ids {
            let Some(mut m) = self.get::<Member>(id).cloned() else {
                continue;
            };
            let status =
                OperatingStatus::try_from(statuses[id]).unwrap_or(OperatingStatus::Offline);
            if set_operating(&mut m.operating_status, status) {
                if let Some(lb) = self.loadbalancer_of(crate::model::Kind::Member, id) {
                    lbs.insert(lb);
                }
                self.put(m);
            }
        }
        for lb in lbs {
            self.roll_up(&lb);
        }
    }

    /// Whether some object is still PENDING_* from a revision at or before `revision`.
    pub fn pending_up_to(&self, revision: u64) -> bool {
        self.pending.first().is_some_and(|(r, _, _)| *r <= revision)
    }

    /// Places VIPs: load balancer id -> owning node id (0 = nobody). The previous owner is
    /// remembered so a failover can move the VIP elsewhere. Unknown ids are ignored.
    pub(crate) fn assign_vips(&mut self, assignments: &VipAssignments) {
        let owners = &assignments.owners;
        let mut ids: Vec<&String> = owners.keys().collect();
        ids.sort();
        for id in ids {
            let Some(mut lb) = self.get::<LoadBalancer>(id).cloned() else {
                continue;
            };
            let owner = match owners[id] {
                0 => String::new(),
                n => n.to_string(),
            };
            if lb.vip_owner != owner {
                if assignments.owner_released.contains(id) {
                    // The owner holds nothing any more: no hand-over to wait for.
                    lb.vip_previous_owner.clear();
                } else if !lb.vip_owner.is_empty() {
                    lb.vip_previous_owner = std::mem::take(&mut lb.vip_owner);
                }
                lb.vip_owner = owner;
                self.put(lb);
            }
        }
    }

    /// Records a failover request: the VIP is released (its owner becomes the previous
    /// owner) so the leader places it on another node, and the load balancer is
    /// PENDING_UPDATE until the data planes confirm.
    pub(crate) fn failover(
        &mut self,
        ctx: &Ctx,
        lb_id: &str,
    ) -> ModelResult<fulcrum_proto::internal::Objects> {
        let mut lb = self
            .get::<LoadBalancer>(lb_id)
            .cloned()
            .ok_or_else(|| ModelError::not_found("LoadBalancer", lb_id))?;
        Self::stamp_changed(ctx, &mut lb);
        if !lb.vip_owner.is_empty() {
            lb.vip_previous_owner = std::mem::take(&mut lb.vip_owner);
        }
        self.put(lb.clone());
        Ok(fulcrum_proto::internal::Objects {
            loadbalancers: vec![self.render_loadbalancer(&lb)],
            ..Default::default()
        })
    }
}

/// Sets an operating status field; true if it changed.
fn set_operating(field: &mut i32, status: OperatingStatus) -> bool {
    let changed = *field != status as i32;
    *field = status as i32;
    changed
}
