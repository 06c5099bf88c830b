//! New objects from create requests: fresh ids, the caller's project, Octavia's defaults.
//! A load balancer create may carry a whole tree; pools in it are referred to by name.

use std::collections::HashMap;

use fulcrum_proto::internal::Objects;
use fulcrum_proto::v1::*;
use tonic::Status;

use crate::defaults;

/// A new random object id.
pub(crate) fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub(crate) fn listener(c: &ListenerCreate, lb_id: &str, project: &str) -> Listener {
    let protocol = Protocol::try_from(c.protocol).unwrap_or(Protocol::Unspecified);
    Listener {
        id: new_id(),
        name: c.name.clone(),
        description: c.description.clone(),
        admin_state_up: c.admin_state_up.unwrap_or(true),
        project_id: project.into(),
        loadbalancer_id: lb_id.into(),
        protocol: c.protocol,
        protocol_port: c.protocol_port,
        connection_limit: c.connection_limit.unwrap_or(defaults::CONNECTION_LIMIT),
        default_pool_id: c.default_pool_id.clone(),
        insert_headers: c.insert_headers.clone(),
        timeout_client_data: c
            .timeout_client_data
            .unwrap_or(defaults::TIMEOUT_CLIENT_DATA),
        timeout_member_connect: c
            .timeout_member_connect
            .unwrap_or(defaults::TIMEOUT_MEMBER_CONNECT),
        timeout_member_data: c
            .timeout_member_data
            .unwrap_or(defaults::TIMEOUT_MEMBER_DATA),
        timeout_tcp_inspect: c
            .timeout_tcp_inspect
            .unwrap_or(defaults::TIMEOUT_TCP_INSPECT),
        default_tls_container_ref: c.default_tls_container_ref.clone(),
        sni_container_refs: c.sni_container_refs.clone(),
        client_authentication: if c.client_authentication == 0 {
            ClientAuthentication::None as i32
        } else {
            c.client_authentication
        },
        client_ca_tls_container_ref: c.client_ca_tls_container_ref.clone(),
        client_crl_container_ref: c.client_crl_container_ref.clone(),
        allowed_cidrs: c.allowed_cidrs.clone(),
        tls_ciphers: if c.tls_ciphers.is_empty() {
            defaults::listener_tls_ciphers(protocol)
        } else {
            c.tls_ciphers.clone()
        },
        tls_versions: if c.tls_versions.is_empty() {
            defaults::tls_versions(protocol)
        } else {
            c.tls_versions.clone()
        },
        alpn_protocols: if c.alpn_protocols.is_empty() {
            defaults::alpn_protocols(protocol)
        } else {
            c.alpn_protocols.clone()
        },
        hsts_max_age: c.hsts_max_age,
        hsts_include_subdomains: c.hsts_include_subdomains,
        hsts_preload: c.hsts_preload,
        tags: c.tags.clone(),
        ..Default::default()
    }
}

pub(crate) fn pool(c: &PoolCreate, lb_id: &str, project: &str) -> Pool {
    let tls_default = |given: &Vec<String>, default: fn() -> Vec<String>| {
        if given.is_empty() && c.tls_enabled {
            default()
        } else {
            given.clone()
        }
    };
    Pool {
        id: new_id(),
        name: c.name.clone(),
        description: c.description.clone(),
        admin_state_up: c.admin_state_up.unwrap_or(true),
        project_id: project.into(),
        loadbalancer_id: lb_id.into(),
        protocol: c.protocol,
        lb_algorithm: c.lb_algorithm,
        session_persistence: c.session_persistence.clone(),
        tls_enabled: c.tls_enabled,
        tls_container_ref: c.tls_container_ref.clone(),
        ca_tls_container_ref: c.ca_tls_container_ref.clone(),
        crl_container_ref: c.crl_container_ref.clone(),
        tls_ciphers: c.tls_ciphers.clone(),
        tls_versions: tls_default(&c.tls_versions, defaults::pool_tls_versions),
        alpn_protocols: tls_default(&c.alpn_protocols, defaults::pool_alpn_protocols),
        tags: c.tags.clone(),
        ..Default::default()
    }
}

pub(crate) fn member(c: &MemberCreate, pool_id: &str, project: &str) -> Member {
    Member {
        id: new_id(),
        name: c.name.clone(),
        admin_state_up: c.admin_state_up.unwrap_or(true),
        project_id: project.into(),
        pool_id: pool_id.into(),
        address: c.address.clone(),
        protocol_port: c.protocol_port,
        weight: c.weight.unwrap_or(defaults::WEIGHT),
        backup: c.backup,
        subnet_id: c.subnet_id.clone(),
        monitor_address: c.monitor_address.clone(),
        monitor_port: c.monitor_port,
        tags: c.tags.clone(),
        vnic_type: "normal".into(),
        ..Default::default()
    }
}

pub(crate) fn healthmonitor(
    c: &HealthMonitorCreate,
    pool_id: &str,
    project: &str,
) -> HealthMonitor {
    let http = matches!(
        HealthMonitorType::try_from(c.r#type),
        Ok(HealthMonitorType::Http | HealthMonitorType::Https)
    );
    let or = |given: &str, default: &str| {
        if given.is_empty() && http {
            default.to_string()
        } else {
            given.to_string()
        }
    };
    HealthMonitor {
        id: new_id(),
        name: c.name.clone(),
        admin_state_up: c.admin_state_up.unwrap_or(true),
        project_id: project.into(),
        pool_id: pool_id.into(),
        r#type: c.r#type,
        delay: c.delay,
        timeout: c.timeout,
        max_retries: c.max_retries,
        max_retries_down: c.max_retries_down.unwrap_or(defaults::MAX_RETRIES_DOWN),
        http_method: if c.http_method == 0 && http {
            HttpMethod::Get as i32
        } else {
            c.http_method
        },
        url_path: or(&c.url_path, defaults::URL_PATH),
        expected_codes: or(&c.expected_codes, defaults::EXPECTED_CODES),
        http_version: c.http_version.unwrap_or(0.0),
        domain_name: c.domain_name.clone(),
        tags: c.tags.clone(),
        ..Default::default()
    }
}

/// A policy; a redirect target given without an action decides the action, as in Octavia.
pub(crate) fn l7policy(
    c: &L7PolicyCreate,
    listener_id: &str,
    pool_id: &str,
    project: &str,
) -> L7Policy {
    let mut action = c.action;
    if action == 0 {
        action = if !pool_id.is_empty() {
            L7PolicyAction::RedirectToPool
        } else if !c.redirect_url.is_empty() {
            L7PolicyAction::RedirectToUrl
        } else if !c.redirect_prefix.is_empty() {
            L7PolicyAction::RedirectPrefix
        } else {
            L7PolicyAction::Unspecified
        } as i32;
    }
    let mut p = L7Policy {
        id: new_id(),
        name: c.name.clone(),
        description: c.description.clone(),
        admin_state_up: c.admin_state_up.unwrap_or(true),
        project_id: project.into(),
        listener_id: listener_id.into(),
        action,
        redirect_pool_id: pool_id.into(),
        redirect_url: c.redirect_url.clone(),
        redirect_prefix: c.redirect_prefix.clone(),
        redirect_http_code: c.redirect_http_code.unwrap_or(0),
        position: c.position.unwrap_or(i32::MAX),
        tags: c.tags.clone(),
        ..Default::default()
    };
    let redirects = matches!(
        L7PolicyAction::try_from(p.action),
        Ok(L7PolicyAction::RedirectToUrl | L7PolicyAction::RedirectPrefix)
    );
    if redirects && p.redirect_http_code == 0 {
        p.redirect_http_code = defaults::REDIRECT_HTTP_CODE;
    }
    p
}

pub(crate) fn l7rule(c: &L7RuleCreate, policy_id: &str, project: &str) -> L7Rule {
    L7Rule {
        id: new_id(),
        admin_state_up: c.admin_state_up.unwrap_or(true),
        project_id: project.into(),
        l7policy_id: policy_id.into(),
        r#type: c.r#type,
        compare_type: c.compare_type,
        key: c.key.clone(),
        value: c.value.clone(),
        invert: c.invert,
        tags: c.tags.clone(),
        ..Default::default()
    }
}

/// Builds the objects of a load balancer tree (Octavia's single-call create).
pub(crate) struct Tree<'a> {
    lb_id: &'a str,
    project: &'a str,
    pools_by_name: HashMap<String, String>,
    pub objects: Objects,
}

impl<'a> Tree<'a> {
    pub fn new(lb_id: &'a str, project: &'a str) -> Self {
        Self {
            lb_id,
            project,
            pools_by_name: HashMap::new(),
            objects: Objects::default(),
        }
    }

    /// Adds the tree's top-level pools, each of which must have a unique name.
    pub fn add_pools(&mut self, pools: &[PoolCreate]) -> Result<(), Status> {
        for (i, c) in pools.iter().enumerate() {
            if c.name.is_empty() {
                return Err(Status::invalid_argument(format!(
                    "pools[{i}].name: pools of a load balancer tree must be named"
                )));
            }
            if self.pools_by_name.contains_key(&c.name) {
                return Err(Status::invalid_argument(format!(
                    "pools[{i}].name: pool name '{}' is used twice",
                    c.name
                )));
            }
            let id = self.add_pool(c);
            self.pools_by_name.insert(c.name.clone(), id);
        }
        Ok(())
    }

    fn add_pool(&mut self, c: &PoolCreate) -> String {
        let pool = pool(c, self.lb_id, self.project);
        let id = pool.id.clone();
        if let Some(hm) = &c.healthmonitor {
            self.objects
                .healthmonitors
                .push(healthmonitor(hm, &id, self.project));
        }
        for m in &c.members {
            self.objects.members.push(member(m, &id, self.project));
        }
        self.objects.pools.push(pool);
        id
    }

    /// A pool a listener or policy of the tree refers to: by name (only `name` set) a pool
    /// of `pools`, else a pool defined in place.
    fn pool_ref(&mut self, field: &str, c: &PoolCreate) -> Result<String, Status> {
        if c.protocol == 0 && !c.name.is_empty() {
            return self.pools_by_name.get(&c.name).cloned().ok_or_else(|| {
                Status::invalid_argument(format!(
                    "{field}: pool '{}' is not defined in the load balancer's pools",
                    c.name
                ))
            });
        }
        Ok(self.add_pool(c))
    }

    /// Adds a listener with its default pool and policies.
    pub fn add_listener(&mut self, i: usize, c: &ListenerCreate) -> Result<(), Status> {
        let mut l = listener(c, self.lb_id, self.project);
        if let Some(p) = &c.default_pool {
            l.default_pool_id = self.pool_ref(&format!("listeners[{i}].default_pool"), p)?;
        }
        for (j, pc) in c.l7policies.iter().enumerate() {
            let pool_id = match &pc.redirect_pool {
                Some(p) => {
                    self.pool_ref(&format!("listeners[{i}].l7policies[{j}].redirect_pool"), p)?
                }
                None => pc.redirect_pool_id.clone(),
            };
            let policy = l7policy(pc, &l.id, &pool_id, self.project);
            for rc in &pc.rules {
                self.objects
                    .l7rules
                    .push(l7rule(rc, &policy.id, self.project));
            }
            self.objects.l7policies.push(policy);
        }
        self.objects.listeners.push(l);
        Ok(())
    }
}
