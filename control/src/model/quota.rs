//! Per-project quotas: limits, defaults and the check a create makes.

use std::collections::BTreeMap;

use fulcrum_proto::v1::{Quota, UpdateQuotaRequest};

use super::records::RecordKey;
use super::{Kind, State};
use crate::error::{ModelError, ModelResult};

/// The quota field for a kind, as Octavia names it.
pub fn quota_field(quota: &Quota, kind: Kind) -> Option<i32> {
    match kind {
        Kind::LoadBalancer => quota.loadbalancer,
        Kind::Listener => quota.listener,
        Kind::Pool => quota.pool,
        Kind::Member => quota.member,
        Kind::HealthMonitor => quota.healthmonitor,
        Kind::L7Policy => quota.l7policy,
        Kind::L7Rule => quota.l7rule,
    }
}

fn quota_field_mut(quota: &mut Quota, kind: Kind) -> &mut Option<i32> {
    match kind {
        Kind::LoadBalancer => &mut quota.loadbalancer,
        Kind::Listener => &mut quota.listener,
        Kind::Pool => &mut quota.pool,
        Kind::Member => &mut quota.member,
        Kind::HealthMonitor => &mut quota.healthmonitor,
        Kind::L7Policy => &mut quota.l7policy,
        Kind::L7Rule => &mut quota.l7rule,
    }
}

/// Octavia's quota name of a kind (also accepted with Octavia's deprecated aliases).
pub fn quota_kind(name: &str) -> Option<Kind> {
    Some(match name {
        "loadbalancer" | "load_balancer" => Kind::LoadBalancer,
        "listener" => Kind::Listener,
        "pool" => Kind::Pool,
        "member" => Kind::Member,
        "healthmonitor" | "health_monitor" => Kind::HealthMonitor,
        "l7policy" => Kind::L7Policy,
        "l7rule" => Kind::L7Rule,
        _ => return None,
    })
}

fn check_limit(kind: Kind, value: Option<i32>) -> ModelResult<()> {
    match value {
        Some(v) if !(-1..=2_000_000_000).contains(&v) => Err(ModelError::invalid(
            format!("quota.{}", kind.name().to_lowercase()),
            format!("must be -1 (unlimited) to 2000000000, got {v}"),
        )),
        _ => Ok(()),
    }
}

impl State {
    /// The limit that applies to a project for a kind (-1 = unlimited).
    pub fn quota_limit(&self, project_id: &str, kind: Kind) -> i32 {
        self.quotas
            .get(project_id)
            .and_then(|q| quota_field(q, kind))
            .or_else(|| quota_field(&self.quota_defaults, kind))
            .unwrap_or(-1)
    }

    /// A project's limits with defaults filled in.
    pub fn effective_quota(&self, project_id: &str) -> Quota {
        let mut q = Quota {
            project_id: project_id.to_string(),
            ..Default::default()
        };
        for kind in Kind::ALL {
            *quota_field_mut(&mut q, kind) = Some(self.quota_limit(project_id, kind));
        }
        q
    }

    /// Refuses a create that would take a project past a limit.
    pub(crate) fn check_quota(&self, adding: &BTreeMap<(String, Kind), i32>) -> ModelResult<()> {
        for ((project, kind), n) in adding {
            let limit = self.quota_limit(project, *kind);
            if limit >= 0 && self.usage(project, *kind) + n > limit {
                return Err(ModelError::QuotaExceeded {
                    kind: kind.name(),
                    limit,
                });
            }
        }
        Ok(())
    }

    pub(crate) fn set_quota(&mut self, req: &UpdateQuotaRequest) -> ModelResult<Quota> {
        if req.project_id.is_empty() {
            return Err(ModelError::invalid("project_id", "is required"));
        }
        let mut quota = self
            .quotas
            .get(&req.project_id)
            .cloned()
            .unwrap_or_default();
        quota.project_id = req.project_id.clone();
        let given = req.quota.clone().unwrap_or_default();
        for kind in Kind::ALL {
            let value = quota_field(&given, kind);
            check_limit(kind, value)?;
            if value.is_some() {
                *quota_field_mut(&mut quota, kind) = value;
            }
        }
        for name in &req.unset {
            let kind = quota_kind(name).ok_or_else(|| {
                ModelError::invalid(
                    "unset",
                    format!("'{name}' is not a quota: loadbalancer, listener, pool, member, healthmonitor, l7policy, l7rule"),
                )
            })?;
            *quota_field_mut(&mut quota, kind) = None;
        }
        self.quotas.insert(req.project_id.clone(), quota);
        self.touch(RecordKey::Quota(req.project_id.clone()));
        Ok(self.effective_quota(&req.project_id))
    }

    pub(crate) fn delete_quota(&mut self, project_id: &str) {
        if self.quotas.remove(project_id).is_some() {
            self.touch(RecordKey::Quota(project_id.to_string()));
        }
    }

    pub(crate) fn set_quota_defaults(&mut self, quota: &Quota) -> ModelResult<Quota> {
        for kind in Kind::ALL {
            check_limit(kind, quota_field(quota, kind))?;
        }
        self.quota_defaults = Quota {
            project_id: String::new(),
            ..quota.clone()
        };
        self.touch(RecordKey::QuotaDefaults);
        Ok(self.quota_defaults.clone())
    }
}
