//! Changing objects: merge the given fields, reset the `unset` ones to their defaults, then
//! check the merged object with the same rules as a create.

use fulcrum_proto::internal::Objects;
use fulcrum_proto::v1::*;

use super::apply::Ctx;
use super::{Kind, Object, State};
use crate::defaults;
use crate::error::{ModelError, ModelResult};
use crate::validate;

fn set<T: Clone>(field: &mut T, value: &Option<T>) {
    if let Some(v) = value {
        *field = v.clone();
    }
}

fn set_list(field: &mut Vec<String>, value: &Option<StringList>) {
    if let Some(v) = value {
        *field = v.values.clone();
    }
}

fn set_enum(field: &mut i32, value: i32) {
    if value != 0 {
        *field = value;
    }
}

fn unknown_unset(name: &str, what: &str, allowed: &[&str]) -> ModelError {
    ModelError::invalid(
        "unset",
        format!(
            "'{name}' cannot be unset on a {what}; possible: {}",
            allowed.join(", ")
        ),
    )
}

impl State {
    fn existing<T: Object>(&self, id: &str) -> ModelResult<T> {
        self.get::<T>(id)
            .cloned()
            .ok_or_else(|| ModelError::not_found(T::KIND.name(), id))
    }

    fn store_changed<T: Object>(&mut self, ctx: &Ctx, mut object: T) {
        Self::stamp_changed(ctx, &mut object);
        let id = object.id().to_string();
        self.put(object);
        self.mark_ancestors(ctx, T::KIND, &id);
    }

    pub(crate) fn update_loadbalancer(
        &mut self,
        ctx: &Ctx,
        r: &UpdateLoadBalancerRequest,
    ) -> ModelResult<Objects> {
        let mut lb: LoadBalancer = self.existing(&r.loadbalancer_id)?;
        if let Some(u) = &r.loadbalancer {
            set(&mut lb.name, &u.name);
            set(&mut lb.description, &u.description);
            set(&mut lb.admin_state_up, &u.admin_state_up);
            set(&mut lb.vip_qos_policy_id, &u.vip_qos_policy_id);
            set_list(&mut lb.tags, &u.tags);
        }
        const UNSET: [&str; 4] = ["name", "description", "vip_qos_policy_id", "tags"];
        for name in &r.unset {
            match name.as_str() {
                "name" => lb.name.clear(),
                "description" => lb.description.clear(),
                "vip_qos_policy_id" => lb.vip_qos_policy_id.clear(),
                "tags" => lb.tags.clear(),
                _ => return Err(unknown_unset(name, "load balancer", &UNSET)),
            }
        }
        validate::loadbalancer(&lb)?;
        self.store_changed(ctx, lb.clone());
        Ok(Objects {
            loadbalancers: vec![lb],
            ..Default::default()
        })
        .map(|o| self.render_objects(&o))
    }

    pub(crate) fn update_listener(
        &mut self,
        ctx: &Ctx,
        r: &UpdateListenerRequest,
    ) -> ModelResult<Objects> {
        let mut l: Listener = self.existing(&r.listener_id)?;
        if let Some(u) = &r.listener {
            set(&mut l.name, &u.name);
            set(&mut l.description, &u.description);
            set(&mut l.admin_state_up, &u.admin_state_up);
            set(&mut l.connection_limit, &u.connection_limit);
            set(&mut l.default_pool_id, &u.default_pool_id);
            if let Some(h) = &u.insert_headers {
                l.insert_headers = h.entries.clone();
            }
            set(&mut l.timeout_client_data, &u.timeout_client_data);
            set(&mut l.timeout_member_connect, &u.timeout_member_connect);
            set(&mut l.timeout_member_data, &u.timeout_member_data);
            set(&mut l.timeout_tcp_inspect, &u.timeout_tcp_inspect);
            set(
                &mut l.default_tls_container_ref,
                &u.default_tls_container_ref,
            );
            set_list(&mut l.sni_container_refs, &u.sni_container_refs);
            set_enum(&mut l.client_authentication, u.client_authentication);
            set(
                &mut l.client_ca_tls_container_ref,
                &u.client_ca_tls_container_ref,
            );
            set(&mut l.client_crl_container_ref, &u.client_crl_container_ref);
            set_list(&mut l.allowed_cidrs, &u.allowed_cidrs);
            set(&mut l.tls_ciphers, &u.tls_ciphers);
            set_list(&mut l.tls_versions, &u.tls_versions);
            set_list(&mut l.alpn_protocols, &u.alpn_protocols);
            if u.hsts_max_age.is_some() {
                l.hsts_max_age = u.hsts_max_age;
            }
            set(&mut l.hsts_include_subdomains, &u.hsts_include_subdomains);
            set(&mut l.hsts_preload, &u.hsts_preload);
            set_list(&mut l.tags, &u.tags);
        }
        let protocol = Protocol::try_from(l.protocol).unwrap_or(Protocol::Unspecified);
        const UNSET: [&str; 21] = [
            "name",
            "description",
            "connection_limit",
            "default_pool_id",
            "insert_headers",
            "timeout_client_data",
            "timeout_member_connect",
            "timeout_member_data",
            "timeout_tcp_inspect",
            "default_tls_container_ref",
            "sni_container_refs",
            "client_authentication",
            "client_ca_tls_container_ref",
            "client_crl_container_ref",
            "allowed_cidrs",
            "tls_ciphers",
            "tls_versions",
            "alpn_protocols",
            "hsts_max_age",
            "hsts_include_subdomains",
            "hsts_preload",
        ];
        for name in &r.unset {
            match name.as_str() {
                "name" => l.name.clear(),
                "description" => l.description.clear(),
                "connection_limit" => l.connection_limit = defaults::CONNECTION_LIMIT,
                "default_pool_id" => l.default_pool_id.clear(),
                "insert_headers" => l.insert_headers.clear(),
                "timeout_client_data" => l.timeout_client_data = defaults::TIMEOUT_CLIENT_DATA,
                "timeout_member_connect" => {
                    l.timeout_member_connect = defaults::TIMEOUT_MEMBER_CONNECT
                }
                "timeout_member_data" => l.timeout_member_data = defaults::TIMEOUT_MEMBER_DATA,
                "timeout_tcp_inspect" => l.timeout_tcp_inspect = defaults::TIMEOUT_TCP_INSPECT,
                "default_tls_container_ref" => l.default_tls_container_ref.clear(),
                "sni_container_refs" => l.sni_container_refs.clear(),
                "client_authentication" => {
                    l.client_authentication = ClientAuthentication::None as i32
                }
                "client_ca_tls_container_ref" => l.client_ca_tls_container_ref.clear(),
                "client_crl_container_ref" => l.client_crl_container_ref.clear(),
                "allowed_cidrs" => l.allowed_cidrs.clear(),
                "tls_ciphers" => l.tls_ciphers = defaults::listener_tls_ciphers(protocol),
                "tls_versions" => l.tls_versions = defaults::tls_versions(protocol),
                "alpn_protocols" => l.alpn_protocols = defaults::alpn_protocols(protocol),
                "hsts_max_age" => l.hsts_max_age = None,
                "hsts_include_subdomains" => l.hsts_include_subdomains = false,
                "hsts_preload" => l.hsts_preload = false,
                _ => return Err(unknown_unset(name, "listener", &UNSET)),
            }
        }
        validate::listener(&l)?;
        self.check_listener(&l)?;
        self.store_changed(ctx, l.clone());
        Ok(self.render_objects(&Objects {
            listeners: vec![l],
            ..Default::default()
        }))
    }

    pub(crate) fn update_pool(&mut self, ctx: &Ctx, r: &UpdatePoolRequest) -> ModelResult<Objects> {
        let mut p: Pool = self.existing(&r.pool_id)?;
        if let Some(u) = &r.pool {
            set(&mut p.name, &u.name);
            set(&mut p.description, &u.description);
            set(&mut p.admin_state_up, &u.admin_state_up);
            set_enum(&mut p.lb_algorithm, u.lb_algorithm);
            if let Some(sp) = &u.session_persistence {
                let mut sp = sp.clone();
                // Octavia: an update that omits the type keeps the stored one.
                if sp.r#type == 0 {
                    sp.r#type = p.session_persistence.as_ref().map_or(0, |s| s.r#type);
                }
                p.session_persistence = Some(sp);
            }
            set(&mut p.tls_enabled, &u.tls_enabled);
            set(&mut p.tls_container_ref, &u.tls_container_ref);
            set(&mut p.ca_tls_container_ref, &u.ca_tls_container_ref);
            set(&mut p.crl_container_ref, &u.crl_container_ref);
            set(&mut p.tls_ciphers, &u.tls_ciphers);
            set_list(&mut p.tls_versions, &u.tls_versions);
            set_list(&mut p.alpn_protocols, &u.alpn_protocols);
            set_list(&mut p.tags, &u.tags);
        }
        const UNSET: [&str; 10] = [
            "name",
            "description",
            "session_persistence",
            "tls_container_ref",
            "ca_tls_container_ref",
            "crl_container_ref",
            "tls_ciphers",
            "tls_versions",
            "alpn_protocols",
            "tags",
        ];
        for name in &r.unset {
            match name.as_str() {
                "name" => p.name.clear(),
                "description" => p.description.clear(),
                "session_persistence" => p.session_persistence = None,
                "tls_container_ref" => p.tls_container_ref.clear(),
                "ca_tls_container_ref" => p.ca_tls_container_ref.clear(),
                "crl_container_ref" => p.crl_container_ref.clear(),
                "tls_ciphers" => p.tls_ciphers.clear(),
                "tls_versions" => p.tls_versions = defaults::pool_tls_versions(),
                "alpn_protocols" => p.alpn_protocols = defaults::pool_alpn_protocols(),
                "tags" => p.tags.clear(),
                _ => return Err(unknown_unset(name, "pool", &UNSET)),
            }
        }
        validate::pool(&p)?;
        self.check_pool(&p)?;
        self.store_changed(ctx, p.clone());
        Ok(self.render_objects(&Objects {
            pools: vec![p],
            ..Default::default()
        }))
    }

    pub(crate) fn update_member(
        &mut self,
        ctx: &Ctx,
        r: &UpdateMemberRequest,
    ) -> ModelResult<Objects> {
        let mut m: Member = self.existing(&r.member_id)?;
        if m.pool_id != r.pool_id {
            return Err(ModelError::not_found("Member", &r.member_id));
        }
        if let Some(u) = &r.member {
            set(&mut m.name, &u.name);
            set(&mut m.admin_state_up, &u.admin_state_up);
            set(&mut m.weight, &u.weight);
            set(&mut m.backup, &u.backup);
            set(&mut m.monitor_address, &u.monitor_address);
            if u.monitor_port.is_some() {
                m.monitor_port = u.monitor_port;
            }
            set_list(&mut m.tags, &u.tags);
        }
        const UNSET: [&str; 6] = [
            "name",
            "weight",
            "backup",
            "monitor_address",
            "monitor_port",
            "tags",
        ];
        for name in &r.unset {
            match name.as_str() {
                "name" => m.name.clear(),
                "weight" => m.weight = defaults::WEIGHT,
                "backup" => m.backup = false,
                "monitor_address" => m.monitor_address.clear(),
                "monitor_port" => m.monitor_port = None,
                "tags" => m.tags.clear(),
                _ => return Err(unknown_unset(name, "member", &UNSET)),
            }
        }
        validate::member(&m)?;
        self.check_member(&m)?;
        self.store_changed(ctx, m.clone());
        Ok(Objects {
            members: vec![m],
            ..Default::default()
        })
    }

    pub(crate) fn update_healthmonitor(
        &mut self,
        ctx: &Ctx,
        r: &UpdateHealthMonitorRequest,
    ) -> ModelResult<Objects> {
        let mut hm: HealthMonitor = self.existing(&r.healthmonitor_id)?;
        if let Some(u) = &r.healthmonitor {
            set(&mut hm.name, &u.name);
            set(&mut hm.admin_state_up, &u.admin_state_up);
            set(&mut hm.delay, &u.delay);
            set(&mut hm.timeout, &u.timeout);
            set(&mut hm.max_retries, &u.max_retries);
            set(&mut hm.max_retries_down, &u.max_retries_down);
            set_enum(&mut hm.http_method, u.http_method);
            set(&mut hm.url_path, &u.url_path);
            set(&mut hm.expected_codes, &u.expected_codes);
            set(&mut hm.http_version, &u.http_version);
            set(&mut hm.domain_name, &u.domain_name);
            set_list(&mut hm.tags, &u.tags);
        }
        let http = matches!(
            HealthMonitorType::try_from(hm.r#type),
            Ok(HealthMonitorType::Http | HealthMonitorType::Https)
        );
        const UNSET: [&str; 8] = [
            "name",
            "max_retries_down",
            "http_method",
            "url_path",
            "expected_codes",
            "http_version",
            "domain_name",
            "tags",
        ];
        for name in &r.unset {
            match name.as_str() {
                "name" => hm.name.clear(),
                "max_retries_down" => hm.max_retries_down = defaults::MAX_RETRIES_DOWN,
                "http_method" if http => hm.http_method = HttpMethod::Get as i32,
                "url_path" if http => hm.url_path = defaults::URL_PATH.into(),
                "expected_codes" if http => hm.expected_codes = defaults::EXPECTED_CODES.into(),
                "http_method" | "url_path" | "expected_codes" => {}
                "http_version" => hm.http_version = 0.0,
                "domain_name" => hm.domain_name.clear(),
                "tags" => hm.tags.clear(),
                _ => return Err(unknown_unset(name, "health monitor", &UNSET)),
            }
        }
        validate::healthmonitor(&hm)?;
        self.check_healthmonitor(&hm)?;
        self.store_changed(ctx, hm.clone());
        Ok(Objects {
            healthmonitors: vec![hm],
            ..Default::default()
        })
    }

    pub(crate) fn update_l7policy(
        &mut self,
        ctx: &Ctx,
        r: &UpdateL7PolicyRequest,
    ) -> ModelResult<Objects> {
        let mut p: L7Policy = self.existing(&r.l7policy_id)?;
        let mut position = p.position;
        if let Some(u) = &r.l7policy {
            set(&mut p.name, &u.name);
            set(&mut p.description, &u.description);
            set(&mut p.admin_state_up, &u.admin_state_up);
            set(&mut position, &u.position);
            set_enum(&mut p.action, u.action);
            if u.redirect_http_code.is_some() {
                set(&mut p.redirect_http_code, &u.redirect_http_code);
            }
            // Octavia's sanitising: a redirect target decides the action and clears the others.
            if let Some(pool) = u.redirect_pool_id.as_ref().filter(|v| !v.is_empty()) {
                p.action = L7PolicyAction::RedirectToPool as i32;
                p.redirect_pool_id = pool.clone();
            } else if let Some(url) = u.redirect_url.as_ref().filter(|v| !v.is_empty()) {
                p.action = L7PolicyAction::RedirectToUrl as i32;
                p.redirect_url = url.clone();
            } else if let Some(prefix) = u.redirect_prefix.as_ref().filter(|v| !v.is_empty()) {
                p.action = L7PolicyAction::RedirectPrefix as i32;
                p.redirect_prefix = prefix.clone();
            }
            set_list(&mut p.tags, &u.tags);
        }
        const UNSET: [&str; 4] = ["name", "description", "redirect_http_code", "tags"];
        for name in &r.unset {
            match name.as_str() {
                "name" => p.name.clear(),
                "description" => p.description.clear(),
                "redirect_http_code" => p.redirect_http_code = 0,
                "tags" => p.tags.clear(),
                _ => return Err(unknown_unset(name, "L7 policy", &UNSET)),
            }
        }
        defaults::sanitize_l7policy(&mut p);
        p.position = position;
        validate::l7policy(&p)?;
        self.check_l7policy(&p)?;
        Self::stamp_changed(ctx, &mut p);
        self.place_policy(p.clone(), position);
        self.mark_ancestors(ctx, Kind::L7Policy, &p.id);
        Ok(self.render_objects(&Objects {
            l7policies: vec![p],
            ..Default::default()
        }))
    }

    pub(crate) fn update_l7rule(
        &mut self,
        ctx: &Ctx,
        r: &UpdateL7RuleRequest,
    ) -> ModelResult<Objects> {
        let mut rule: L7Rule = self.existing(&r.l7rule_id)?;
        if rule.l7policy_id != r.l7policy_id {
            return Err(ModelError::not_found("L7Rule", &r.l7rule_id));
        }
        if let Some(u) = &r.rule {
            set_enum(&mut rule.r#type, u.r#type);
            set_enum(&mut rule.compare_type, u.compare_type);
            set(&mut rule.key, &u.key);
            set(&mut rule.value, &u.value);
            set(&mut rule.invert, &u.invert);
            set(&mut rule.admin_state_up, &u.admin_state_up);
            set_list(&mut rule.tags, &u.tags);
        }
        const UNSET: [&str; 3] = ["invert", "key", "tags"];
        for name in &r.unset {
            match name.as_str() {
                "invert" => rule.invert = false,
                "key" => rule.key.clear(),
                "tags" => rule.tags.clear(),
                _ => return Err(unknown_unset(name, "L7 rule", &UNSET)),
            }
        }
        validate::l7rule(&rule)?;
        self.check_l7rule(&rule)?;
        self.store_changed(ctx, rule.clone());
        Ok(Objects {
            l7rules: vec![rule],
            ..Default::default()
        })
    }
}
