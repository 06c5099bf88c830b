//! Rules that involve more than one object: parents, uniqueness, protocol compatibility.
//! Create and update share them.

use fulcrum_proto::v1::{
    HealthMonitor, HealthMonitorType, L7Policy, Listener, LoadBalancer, Member, Pool, Protocol,
};

use super::{Rel, State};
use crate::error::{ModelError, ModelResult};
use crate::names::{healthmonitor_type_name, protocol_name};
use crate::validate;

fn protocol(p: i32) -> Protocol {
    Protocol::try_from(p).unwrap_or(Protocol::Unspecified)
}

/// TCP-family protocols share a port space; UDP and SCTP have their own.
fn port_family(p: Protocol) -> u8 {
    match p {
        Protocol::Udp => 1,
        Protocol::Sctp => 2,
        _ => 0,
    }
}

impl State {
    /// A parent object that must exist and belong to the same project.
    pub(crate) fn parent<T: super::Object>(
        &self,
        field: &str,
        id: &str,
        project_id: &str,
    ) -> ModelResult<&T> {
        if id.is_empty() {
            return Err(ModelError::invalid(field, "is required"));
        }
        self.get::<T>(id)
            .filter(|p| p.project_id() == project_id)
            .ok_or_else(|| ModelError::not_found(T::KIND.name(), id))
    }

    /// Listener rules against its load balancer and siblings.
    pub(crate) fn check_listener(&self, l: &Listener) -> ModelResult<()> {
        let lb: &LoadBalancer =
            self.parent("loadbalancer_id", &l.loadbalancer_id, &l.project_id)?;
        let vip: std::net::IpAddr = validate::parse_ip("vip_address", &lb.vip_address)?;
        for cidr in &l.allowed_cidrs {
            let net = validate::parse_cidr("allowed_cidrs", cidr)?;
            if net.addr().is_ipv4() != vip.is_ipv4() {
                return Err(ModelError::invalid(
                    "allowed_cidrs",
                    format!("{cidr} is not of the VIP's IP family ({vip})"),
                ));
            }
        }
        let family = port_family(protocol(l.protocol));
        for other in self.referrers(&lb.id, Rel::ListenerOf) {
            let Some(other) = self.get::<Listener>(other) else {
                continue;
            };
            if other.id != l.id
                && other.protocol_port == l.protocol_port
                && port_family(protocol(other.protocol)) == family
            {
                return Err(ModelError::Conflict(format!(
                    "another listener on load balancer {} already uses protocol port {} ({} listener {})",
                    lb.id,
                    l.protocol_port,
                    protocol_name(protocol(other.protocol)),
                    other.id
                )));
            }
        }
        if !l.default_pool_id.is_empty() {
            self.check_pool_for_listener("default_pool_id", &l.default_pool_id, l)?;
        }
        Ok(())
    }

    /// A pool a listener sends traffic to (default pool or redirect target): same load
    /// balancer, compatible protocol.
    pub(crate) fn check_pool_for_listener(
        &self,
        field: &str,
        pool_id: &str,
        l: &Listener,
    ) -> ModelResult<()> {
        let pool = self
            .get::<Pool>(pool_id)
            .filter(|p| p.project_id == l.project_id)
            .ok_or_else(|| ModelError::not_found("Pool", pool_id))?;
        if pool.loadbalancer_id != l.loadbalancer_id {
            return Err(ModelError::invalid(
                field,
                format!("pool {pool_id} is not on the listener's load balancer"),
            ));
        }
        let (lp, pp) = (protocol(l.protocol), protocol(pool.protocol));
        if !validate::pool_fits_listener(lp, pp) {
            return Err(ModelError::invalid(
                field,
                format!(
                    "the pool protocol '{}' is invalid while the listener protocol is '{}'",
                    protocol_name(pp),
                    protocol_name(lp)
                ),
            ));
        }
        Ok(())
    }

    /// Pool rules against its load balancer and the listeners using it.
    pub(crate) fn check_pool(&self, p: &Pool) -> ModelResult<()> {
        self.parent::<LoadBalancer>("loadbalancer_id", &p.loadbalancer_id, &p.project_id)?;
        Ok(())
    }

    /// Member rules against its pool and siblings.
    pub(crate) fn check_member(&self, m: &Member) -> ModelResult<()> {
        self.parent::<Pool>("pool_id", &m.pool_id, &m.project_id)?;
        let address: std::net::IpAddr = validate::parse_ip("address", &m.address)?;
        for other in self.referrers(&m.pool_id, Rel::MemberOf) {
            let Some(other) = self.get::<Member>(other) else {
                continue;
            };
            if other.id != m.id
                && other.protocol_port == m.protocol_port
                && other.address.parse::<std::net::IpAddr>() == Ok(address)
            {
                return Err(ModelError::Conflict(format!(
                    "another member on pool {} already has address {} and protocol port {} (member {})",
                    m.pool_id, m.address, m.protocol_port, other.id
                )));
            }
        }
        Ok(())
    }

    /// Health monitor rules against its pool.
    pub(crate) fn check_healthmonitor(&self, hm: &HealthMonitor) -> ModelResult<()> {
        let pool: &Pool = self.parent("pool_id", &hm.pool_id, &hm.project_id)?;
        if let Some(other) = self
            .referrers(&hm.pool_id, Rel::MonitorOf)
            .find(|o| *o != hm.id)
        {
            return Err(ModelError::Conflict(format!(
                "pool {} already has a health monitor ({other})",
                hm.pool_id
            )));
        }
        let kind = HealthMonitorType::try_from(hm.r#type).unwrap_or(HealthMonitorType::Unspecified);
        if !validate::healthmonitor_fits_pool(kind, protocol(pool.protocol)) {
            return Err(ModelError::invalid(
                "type",
                format!(
                    "{} monitors cannot check a {} pool",
                    healthmonitor_type_name(kind),
                    protocol_name(protocol(pool.protocol))
                ),
            ));
        }
        Ok(())
    }

    /// Policy rules against its listener and redirect pool.
    pub(crate) fn check_l7policy(&self, p: &L7Policy) -> ModelResult<()> {
        let listener: &Listener = self.parent("listener_id", &p.listener_id, &p.project_id)?;
        let lp = protocol(listener.protocol);
        if !matches!(lp, Protocol::Http | Protocol::TerminatedHttps) {
            return Err(ModelError::invalid(
                "listener_id",
                format!(
                    "{} protocol listeners do not support L7 policies",
                    protocol_name(lp)
                ),
            ));
        }
        if !p.redirect_pool_id.is_empty() {
            self.check_pool_for_listener("redirect_pool_id", &p.redirect_pool_id, listener)?;
        }
        Ok(())
    }

    /// Rule limits against its policy.
    pub(crate) fn check_l7rule(&self, r: &fulcrum_proto::v1::L7Rule) -> ModelResult<()> {
        self.parent::<L7Policy>("l7policy_id", &r.l7policy_id, &r.project_id)?;
        let count = self
            .referrers(&r.l7policy_id, Rel::RuleOf)
            .filter(|id| *id != r.id)
            .count();
        if count >= MAX_RULES_PER_POLICY {
            return Err(ModelError::Conflict(format!(
                "L7 policy {} already has the maximum of {MAX_RULES_PER_POLICY} rules",
                r.l7policy_id
            )));
        }
        Ok(())
    }

    /// Puts a policy at `position` (clamped to the end) in its listener's list and renumbers
    /// the list 1..N, writing the policies whose position changes.
    pub(crate) fn place_policy(&mut self, policy: L7Policy, position: i32) {
        let listener_id = policy.listener_id.clone();
        let mut ordered: Vec<L7Policy> = self
            .policies_in_order(&listener_id)
            .into_iter()
            .filter(|p| p.id != policy.id)
            .cloned()
            .collect();
        let at = usize::try_from(position.max(1) - 1)
            .unwrap_or(0)
            .min(ordered.len());
        ordered.insert(at, policy);
        self.renumber(ordered);
    }

    /// Gives a listener's policies dense positions 1..N after one left the list.
    pub(crate) fn close_policy_gap(&mut self, listener_id: &str) {
        let ordered: Vec<L7Policy> = self
            .policies_in_order(listener_id)
            .into_iter()
            .cloned()
            .collect();
        self.renumber(ordered);
    }

    fn renumber(&mut self, ordered: Vec<L7Policy>) {
        for (i, mut p) in ordered.into_iter().enumerate() {
            p.position = i32::try_from(i + 1).unwrap_or(i32::MAX);
            if self.get::<L7Policy>(&p.id) != Some(&p) {
                self.put(p);
            }
        }
    }
}

/// Octavia's limit of rules per policy.
pub const MAX_RULES_PER_POLICY: usize = 50;
