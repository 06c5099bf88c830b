//! Octavia's status tree of a load balancer: listeners, their pools (default pool and the
//! redirect pools of enabled policies with rules), monitors and members.

use fulcrum_proto::v1::*;

use crate::model::{Rel, State};

/// The status tree of `lb`.
pub(crate) fn status_tree(state: &State, lb: &LoadBalancer) -> StatusTree {
    let listeners = lb
        .listener_ids
        .iter()
        .filter_map(|id| state.get::<Listener>(id))
        .map(|l| {
            let mut pool_ids = Vec::new();
            if !l.default_pool_id.is_empty() {
                pool_ids.push(l.default_pool_id.clone());
            }
            for p in state.policies_in_order(&l.id) {
                let has_rules = state.referrers(&p.id, Rel::RuleOf).next().is_some();
                if p.admin_state_up
                    && has_rules
                    && !p.redirect_pool_id.is_empty()
                    && !pool_ids.contains(&p.redirect_pool_id)
                {
                    pool_ids.push(p.redirect_pool_id.clone());
                }
            }
            ListenerStatus {
                id: l.id.clone(),
                name: l.name.clone(),
                provisioning_status: l.provisioning_status,
                operating_status: l.operating_status,
                pools: pool_ids
                    .iter()
                    .filter_map(|id| state.get::<Pool>(id))
                    .map(|p| pool_status(state, p))
                    .collect(),
            }
        })
        .collect();
    StatusTree {
        loadbalancer: Some(LoadBalancerStatus {
            id: lb.id.clone(),
            name: lb.name.clone(),
            provisioning_status: lb.provisioning_status,
            operating_status: lb.operating_status,
            listeners,
        }),
    }
}

fn pool_status(state: &State, p: &Pool) -> PoolStatus {
    PoolStatus {
        id: p.id.clone(),
        name: p.name.clone(),
        provisioning_status: p.provisioning_status,
        operating_status: p.operating_status,
        health_monitor: state
            .referrers(&p.id, Rel::MonitorOf)
            .next()
            .and_then(|id| state.get::<HealthMonitor>(id))
            .map(|hm| HealthMonitorStatus {
                id: hm.id.clone(),
                name: hm.name.clone(),
                r#type: hm.r#type,
                provisioning_status: hm.provisioning_status,
                operating_status: hm.operating_status,
            }),
        members: state
            .referrers(&p.id, Rel::MemberOf)
            .filter_map(|id| state.get::<Member>(id))
            .map(|m| MemberStatus {
                id: m.id.clone(),
                name: m.name.clone(),
                provisioning_status: m.provisioning_status,
                operating_status: m.operating_status,
                address: m.address.clone(),
                protocol_port: m.protocol_port,
            })
            .collect(),
    }
}
