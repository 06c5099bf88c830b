//! The pure translation from the committed Octavia model ([`fulcrum_control::State`]) to the
//! [`DataplaneConfig`] every node runs.
//!
//! Every node pre-binds every listener of every load balancer on its VIP (`IP_FREEBIND`), so the
//! configuration does not depend on which node holds which VIP: equal models give equal configs
//! on every node. Output is deterministic (listeners by id, members and rules by id, policies by
//! position then id), because the data plane diffs by equality.
//!
//! What cannot be served is never guessed at; it is left out and reported in [`Translated`]:
//! - a listener the data plane cannot serve (TERMINATED_HTTPS, SCTP, PROMETHEUS, a broken
//!   reference or value) is left out whole and listed in [`Translated::skipped`];
//! - a part of a served listener that is left out is listed in [`Translated::warnings`]:
//!   a health monitor of a type the data plane lacks (none the API accepts today: HTTP, HTTPS,
//!   PING, TCP, TLS-HELLO and UDP-CONNECT all map; the pool's members would stay unmonitored
//!   rather than being checked the wrong way, which could mark every member down), a member
//!   with an unusable address or port, an L7 policy with an unusable rule or action (the whole
//!   policy, since dropping one rule of an AND would widen what the policy matches).
//!
//! Octavia semantics kept here (OCTAVIA_MODEL.md §1-§3):
//! - a listener is enabled only when it and its load balancer are (`admin_state_up`);
//! - disabled pools, members and monitors keep their config with `admin_state_up = false`,
//!   so the data plane stops new traffic to them but keeps their state;
//! - only enabled L7 policies with at least one enabled rule are rendered, and only their
//!   enabled rules ("a policy with zero rules or disabled is not rendered at all");
//! - `connection_limit` -1 takes the node's default (Octavia's `default_connection_limit`,
//!   50,000 unless the node config says otherwise); any other value is kept as is;
//! - `insert_headers` X-Forwarded-For/-Port/-Proto are on when their value is `true`
//!   (case-insensitive), as the amphora template checks; other keys are not rendered.

use std::net::IpAddr;
use std::time::Duration;

use fulcrum_control::model::Rel;
use fulcrum_control::State;
use fulcrum_dataplane::{
    DataplaneConfig, HealthMonitorConfig, HealthMonitorKind, InsertHeaders, IpNet, L7Action,
    L7CompareType, L7PolicyConfig, L7RuleConfig, L7RuleType, LbAlgorithm, ListenerConfig,
    ListenerProtocol, ListenerTimeouts, MemberConfig, PoolConfig, PoolProtocol, SessionPersistence,
};
use fulcrum_proto::v1::{
    self as api, CompareType, HealthMonitor, HealthMonitorType, HttpMethod, L7Policy,
    L7PolicyAction, L7Rule, Listener, LoadBalancer, Member, Pool, Protocol, SessionPersistenceType,
};

/// Octavia's defaults for HTTP monitor fields the API fills in when omitted.
const DEFAULT_HTTP_METHOD: &str = "GET";
const DEFAULT_URL_PATH: &str = "/";
const DEFAULT_EXPECTED_CODES: &str = "200";
/// Used when a stored monitor has a non-positive retry count (the API never stores one).
const DEFAULT_RETRIES: u32 = 3;

/// The result of translating the model: the config to run and what was left out.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Translated {
    /// What the data plane should serve.
    pub config: DataplaneConfig,
    /// Listeners left out entirely, ordered by listener id.
    pub skipped: Vec<Note>,
    /// Parts left out of listeners that are served (unmonitored pools, dropped members or
    /// policies), ordered by listener id, each listed once per listener.
    pub warnings: Vec<Note>,
}

/// Something about one listener that the data plane cannot do as the model says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub listener_id: String,
    pub reason: String,
}

/// The data plane configuration a node must run for the committed model: every listener of
/// every load balancer (every node pre-binds every listener on its VIP). What was left out is
/// dropped here; use [`translate`] to report it.
#[cfg_attr(not(test), allow(dead_code))] // the reconciler uses `translate`
pub fn dataplane_config(state: &State, default_connection_limit: u32) -> DataplaneConfig {
    translate(state, default_connection_limit).config
}

/// [`dataplane_config`] together with the listeners and parts that were left out, and why.
/// Listeners with `connection_limit` -1 get `default_connection_limit` (Octavia's
/// `[haproxy_amphora] default_connection_limit`).
pub fn translate(state: &State, default_connection_limit: u32) -> Translated {
    let mut out = Translated::default();
    for listener in state.all::<Listener>() {
        let mut warnings = Vec::new();
        match listener_config(state, listener, default_connection_limit, &mut warnings) {
            Ok(config) => {
                out.config.listeners.push(config);
                let mut seen = std::collections::BTreeSet::new();
                out.warnings
                    .extend(warnings.into_iter().filter(|w| seen.insert(w.clone())).map(
                        |reason| Note {
                            listener_id: listener.id.clone(),
                            reason,
                        },
                    ));
            }
            Err(reason) => out.skipped.push(Note {
                listener_id: listener.id.clone(),
                reason,
            }),
        }
    }
    out
}

fn protocol(p: i32) -> Protocol {
    Protocol::try_from(p).unwrap_or(Protocol::Unspecified)
}

/// "TCP", "TERMINATED_HTTPS", ...
fn protocol_name(p: i32) -> &'static str {
    protocol(p).as_str_name().trim_start_matches("PROTOCOL_")
}

fn millis(ms: i32) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

fn seconds(s: i32) -> Duration {
    Duration::from_secs(u64::try_from(s).unwrap_or(0))
}

fn port(value: i32) -> Option<u16> {
    u16::try_from(value).ok().filter(|p| *p != 0)
}

fn listener_config(
    state: &State,
    l: &Listener,
    default_connection_limit: u32,
    warnings: &mut Vec<String>,
) -> Result<ListenerConfig, String> {
    let protocol = match protocol(l.protocol) {
        Protocol::Tcp => ListenerProtocol::Tcp,
        Protocol::Http => ListenerProtocol::Http,
        Protocol::Https => ListenerProtocol::Https,
        Protocol::Udp => ListenerProtocol::Udp,
        Protocol::TerminatedHttps => return Err(
            "TERMINATED_HTTPS listeners are not served yet (the data plane does not terminate TLS)"
                .into(),
        ),
        _ => {
            return Err(format!(
                "{} listeners are not supported by the data plane",
                protocol_name(l.protocol)
            ))
        }
    };
    let lb = state
        .get::<LoadBalancer>(&l.loadbalancer_id)
        .ok_or_else(|| format!("load balancer {} not found", l.loadbalancer_id))?;
    let vip: IpAddr = lb.vip_address.parse().map_err(|_| {
        format!(
            "load balancer {} has no valid vip_address ('{}')",
            lb.id, lb.vip_address
        )
    })?;
    let bind_port = port(l.protocol_port)
        .ok_or_else(|| format!("protocol_port {} is not a port", l.protocol_port))?;
    // A CIDR that cannot be parsed must not widen access: leave the listener out instead.
    let allowed_cidrs = l
        .allowed_cidrs
        .iter()
        .map(|c| {
            c.parse::<IpNet>()
                .map(|n| n.trunc())
                .map_err(|_| format!("allowed_cidrs: '{c}' is not a valid CIDR"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let default_pool = if l.default_pool_id.is_empty() {
        None
    } else {
        match state.get::<Pool>(&l.default_pool_id) {
            Some(pool) => Some(pool_config(state, pool, warnings)?),
            None => {
                warnings.push(format!("default pool {} not found", l.default_pool_id));
                None
            }
        }
    };
    let policies = state.policies_in_order(&l.id);
    let l7policies = if protocol == ListenerProtocol::Http {
        let mut out = Vec::new();
        for policy in policies {
            if let Some(p) = policy_config(state, policy, warnings)? {
                out.push(p);
            }
        }
        out
    } else {
        if !policies.is_empty() {
            warnings.push(format!(
                "L7 policies are ignored on {} listeners",
                protocol_name(l.protocol)
            ));
        }
        Vec::new()
    };
    Ok(ListenerConfig {
        id: l.id.clone(),
        vip,
        port: bind_port,
        protocol,
        admin_state_up: l.admin_state_up && lb.admin_state_up,
        connection_limit: Some(
            u32::try_from(l.connection_limit).unwrap_or(default_connection_limit),
        ),
        allowed_cidrs,
        timeouts: ListenerTimeouts {
            client_data: millis(l.timeout_client_data),
            member_connect: millis(l.timeout_member_connect),
            member_data: millis(l.timeout_member_data),
            tcp_inspect: millis(l.timeout_tcp_inspect),
        },
        insert_headers: insert_headers(l),
        default_pool,
        l7policies,
    })
}

fn insert_headers(l: &Listener) -> InsertHeaders {
    let on = |name: &str| {
        l.insert_headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case(name) && v.trim().eq_ignore_ascii_case("true"))
    };
    InsertHeaders {
        x_forwarded_for: on("X-Forwarded-For"),
        x_forwarded_port: on("X-Forwarded-Port"),
        x_forwarded_proto: on("X-Forwarded-Proto"),
    }
}

/// A pool with its members and monitor. A pool the data plane cannot run at all (protocol or
/// algorithm unknown to it) is an error: the listener using it is left out.
fn pool_config(state: &State, p: &Pool, warnings: &mut Vec<String>) -> Result<PoolConfig, String> {
    let protocol = match protocol(p.protocol) {
        Protocol::Tcp => PoolProtocol::Tcp,
        Protocol::Http => PoolProtocol::Http,
        Protocol::Https => PoolProtocol::Https,
        Protocol::Proxy => PoolProtocol::Proxy,
        Protocol::Proxyv2 => PoolProtocol::ProxyV2,
        Protocol::Udp => PoolProtocol::Udp,
        _ => {
            return Err(format!(
                "pool {}: {} pools are not supported by the data plane",
                p.id,
                protocol_name(p.protocol)
            ))
        }
    };
    let lb_algorithm = match api::LbAlgorithm::try_from(p.lb_algorithm) {
        Ok(api::LbAlgorithm::RoundRobin) => LbAlgorithm::RoundRobin,
        Ok(api::LbAlgorithm::LeastConnections) => LbAlgorithm::LeastConnections,
        Ok(api::LbAlgorithm::SourceIp) => LbAlgorithm::SourceIp,
        Ok(api::LbAlgorithm::SourceIpPort) => LbAlgorithm::SourceIpPort,
        _ => {
            return Err(format!(
                "pool {}: lb_algorithm {} is not supported by the data plane",
                p.id, p.lb_algorithm
            ))
        }
    };
    let session_persistence = p.session_persistence.as_ref().and_then(|sp| {
        match SessionPersistenceType::try_from(sp.r#type) {
            Ok(SessionPersistenceType::SourceIp) => Some(SessionPersistence::SourceIp {
                timeout: sp
                    .persistence_timeout
                    .and_then(|s| u64::try_from(s).ok())
                    .filter(|s| *s > 0)
                    .map(Duration::from_secs),
                granularity: match sp.persistence_granularity.trim() {
                    "" => None,
                    mask => mask
                        .parse::<IpAddr>()
                        .map_err(|_| {
                            warnings.push(format!(
                                "pool {}: persistence_granularity '{mask}' is not a netmask; \
                             the whole client address is used",
                                p.id
                            ));
                        })
                        .ok(),
                },
            }),
            Ok(SessionPersistenceType::HttpCookie) => Some(SessionPersistence::HttpCookie),
            Ok(SessionPersistenceType::AppCookie) => Some(SessionPersistence::AppCookie {
                cookie_name: sp.cookie_name.clone(),
            }),
            _ => None,
        }
    });
    let mut members: Vec<MemberConfig> = state
        .referrers(&p.id, Rel::MemberOf)
        .filter_map(|id| state.get::<Member>(id))
        .filter_map(|m| match member_config(m) {
            Ok(m) => Some(m),
            Err(reason) => {
                warnings.push(format!("pool {}: member {} left out: {reason}", p.id, m.id));
                None
            }
        })
        .collect();
    members.sort_by(|a, b| a.id.cmp(&b.id));
    let health_monitor = state
        .referrers(&p.id, Rel::MonitorOf)
        .filter_map(|id| state.get::<HealthMonitor>(id))
        .min_by(|a, b| a.id.cmp(&b.id))
        .and_then(|hm| match monitor_config(hm) {
            Ok(hm) => Some(hm),
            Err(reason) => {
                warnings.push(format!(
                    "pool {}: health monitor {} left out, members are unmonitored: {reason}",
                    p.id, hm.id
                ));
                None
            }
        });
    Ok(PoolConfig {
        id: p.id.clone(),
        protocol,
        lb_algorithm,
        session_persistence,
        admin_state_up: p.admin_state_up,
        members,
        health_monitor,
    })
}

fn member_config(m: &Member) -> Result<MemberConfig, String> {
    let address: IpAddr = m
        .address
        .parse()
        .map_err(|_| format!("address '{}' is not an IP address", m.address))?;
    let member_port = port(m.protocol_port)
        .ok_or_else(|| format!("protocol_port {} is not a port", m.protocol_port))?;
    let monitor_address = if m.monitor_address.is_empty() {
        None
    } else {
        Some(m.monitor_address.parse::<IpAddr>().map_err(|_| {
            format!(
                "monitor_address '{}' is not an IP address",
                m.monitor_address
            )
        })?)
    };
    let monitor_port = m
        .monitor_port
        .map(|p| port(p).ok_or_else(|| format!("monitor_port {p} is not a port")))
        .transpose()?;
    Ok(MemberConfig {
        id: m.id.clone(),
        address,
        port: member_port,
        weight: u32::try_from(m.weight).unwrap_or(0),
        backup: m.backup,
        admin_state_up: m.admin_state_up,
        monitor_address,
        monitor_port,
    })
}

fn monitor_config(hm: &HealthMonitor) -> Result<HealthMonitorConfig, String> {
    let kind = HealthMonitorType::try_from(hm.r#type).unwrap_or(HealthMonitorType::Unspecified);
    let kind = match kind {
        HealthMonitorType::Tcp => HealthMonitorKind::Tcp,
        HealthMonitorType::Http | HealthMonitorType::Https => {
            let method = match HttpMethod::try_from(hm.http_method) {
                Ok(HttpMethod::Unspecified) | Err(_) => DEFAULT_HTTP_METHOD,
                Ok(m) => m.as_str_name().trim_start_matches("HTTP_METHOD_"),
            };
            let or = |value: &str, default: &str| {
                if value.is_empty() { default } else { value }.to_string()
            };
            let (method, url_path, expected_codes) = (
                method.to_string(),
                or(&hm.url_path, DEFAULT_URL_PATH),
                or(&hm.expected_codes, DEFAULT_EXPECTED_CODES),
            );
            if kind == HealthMonitorType::Https {
                HealthMonitorKind::Https {
                    method,
                    url_path,
                    expected_codes,
                }
            } else {
                HealthMonitorKind::Http {
                    method,
                    url_path,
                    expected_codes,
                }
            }
        }
        // The data plane refuses PING (listener ERROR with the reason) on a host
        // where it can open no ICMP socket; this function stays pure.
        HealthMonitorType::Ping => HealthMonitorKind::Ping,
        HealthMonitorType::TlsHello => HealthMonitorKind::TlsHello,
        HealthMonitorType::UdpConnect => HealthMonitorKind::UdpConnect,
        other => {
            return Err(format!(
                "{} monitors are not implemented by the data plane",
                other
                    .as_str_name()
                    .trim_start_matches("HEALTH_MONITOR_TYPE_")
                    .replace('_', "-")
            ))
        }
    };
    let retries = |n: i32| {
        u32::try_from(n)
            .ok()
            .filter(|n| *n > 0)
            .unwrap_or(DEFAULT_RETRIES)
    };
    Ok(HealthMonitorConfig {
        kind,
        delay: seconds(hm.delay),
        timeout: seconds(hm.timeout),
        max_retries: retries(hm.max_retries),
        max_retries_down: retries(hm.max_retries_down),
        admin_state_up: hm.admin_state_up,
    })
}

/// `Ok(None)`: the policy is not rendered (disabled, no enabled rule, or unusable, which is
/// warned about). `Err`: its redirect pool cannot run, so the listener is left out.
fn policy_config(
    state: &State,
    p: &L7Policy,
    warnings: &mut Vec<String>,
) -> Result<Option<L7PolicyConfig>, String> {
    if !p.admin_state_up {
        return Ok(None);
    }
    let mut rules = Vec::new();
    let mut enabled: Vec<&L7Rule> = state
        .referrers(&p.id, Rel::RuleOf)
        .filter_map(|id| state.get::<L7Rule>(id))
        .filter(|r| r.admin_state_up)
        .collect();
    enabled.sort_by(|a, b| a.id.cmp(&b.id));
    for rule in enabled {
        match rule_config(rule) {
            Ok(r) => rules.push(r),
            Err(reason) => {
                warnings.push(format!(
                    "L7 policy {} left out: rule {}: {reason}",
                    p.id, rule.id
                ));
                return Ok(None);
            }
        }
    }
    if rules.is_empty() {
        return Ok(None);
    }
    let http_code = u16::try_from(p.redirect_http_code).ok().filter(|c| *c != 0);
    let action = match L7PolicyAction::try_from(p.action) {
        Ok(L7PolicyAction::Reject) => L7Action::Reject,
        Ok(L7PolicyAction::RedirectToPool) => match state.get::<Pool>(&p.redirect_pool_id) {
            Some(pool) => L7Action::RedirectToPool(pool_config(state, pool, warnings)?),
            None => {
                warnings.push(format!(
                    "L7 policy {} left out: redirect pool {} not found",
                    p.id, p.redirect_pool_id
                ));
                return Ok(None);
            }
        },
        Ok(L7PolicyAction::RedirectToUrl) => L7Action::RedirectToUrl {
            url: p.redirect_url.clone(),
            http_code,
        },
        Ok(L7PolicyAction::RedirectPrefix) => L7Action::RedirectPrefix {
            prefix: p.redirect_prefix.clone(),
            http_code,
        },
        _ => {
            warnings.push(format!(
                "L7 policy {} left out: unknown action {}",
                p.id, p.action
            ));
            return Ok(None);
        }
    };
    Ok(Some(L7PolicyConfig {
        id: p.id.clone(),
        position: u32::try_from(p.position).unwrap_or(0),
        admin_state_up: true,
        rules,
        action,
    }))
}

fn rule_config(r: &L7Rule) -> Result<L7RuleConfig, String> {
    let rule_type = match api::L7RuleType::try_from(r.r#type) {
        Ok(api::L7RuleType::HostName) => L7RuleType::HostName,
        Ok(api::L7RuleType::Path) => L7RuleType::Path,
        Ok(api::L7RuleType::FileType) => L7RuleType::FileType,
        Ok(api::L7RuleType::Header) => L7RuleType::Header,
        Ok(api::L7RuleType::Cookie) => L7RuleType::Cookie,
        Ok(other) => {
            return Err(format!(
                "{} rules are not supported by the data plane",
                other.as_str_name().trim_start_matches("L7_RULE_TYPE_")
            ))
        }
        Err(_) => return Err(format!("unknown rule type {}", r.r#type)),
    };
    let compare_type = match CompareType::try_from(r.compare_type) {
        Ok(CompareType::Regex) => L7CompareType::Regex,
        Ok(CompareType::StartsWith) => L7CompareType::StartsWith,
        Ok(CompareType::EndsWith) => L7CompareType::EndsWith,
        Ok(CompareType::Contains) => L7CompareType::Contains,
        Ok(CompareType::EqualTo) => L7CompareType::EqualTo,
        _ => return Err(format!("unknown compare type {}", r.compare_type)),
    };
    Ok(L7RuleConfig {
        id: r.id.clone(),
        rule_type,
        compare_type,
        key: (!r.key.is_empty()).then(|| r.key.clone()),
        value: r.value.clone(),
        invert: r.invert,
        admin_state_up: r.admin_state_up,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use fulcrum_proto::internal::{command::Op, command_result, Command, Objects};
    use fulcrum_proto::v1::{
        LoadBalancerUpdate, SessionPersistence as ApiPersistence, UpdateLoadBalancerRequest,
    };

    use super::*;

    /// Octavia's default for listeners with `connection_limit` -1.
    const DEFAULT_LIMIT: u32 = crate::config::DEFAULT_CONNECTION_LIMIT;

    const PROJECT: &str = "project-1";

    // ---- model builders: full, valid objects with chosen ids ----

    fn lb(id: &str, vip: &str) -> LoadBalancer {
        LoadBalancer {
            id: id.into(),
            project_id: PROJECT.into(),
            admin_state_up: true,
            vip_address: vip.into(),
            ..Default::default()
        }
    }

    fn listener(id: &str, lb: &str, protocol: Protocol, port: i32) -> Listener {
        Listener {
            id: id.into(),
            project_id: PROJECT.into(),
            admin_state_up: true,
            loadbalancer_id: lb.into(),
            protocol: protocol as i32,
            protocol_port: port,
            connection_limit: -1,
            timeout_client_data: 50_000,
            timeout_member_connect: 5_000,
            timeout_member_data: 50_000,
            ..Default::default()
        }
    }

    fn pool(id: &str, lb: &str, protocol: Protocol, algorithm: api::LbAlgorithm) -> Pool {
        Pool {
            id: id.into(),
            project_id: PROJECT.into(),
            admin_state_up: true,
            loadbalancer_id: lb.into(),
            protocol: protocol as i32,
            lb_algorithm: algorithm as i32,
            ..Default::default()
        }
    }

    fn member(id: &str, pool: &str, address: &str, port: i32) -> Member {
        Member {
            id: id.into(),
            project_id: PROJECT.into(),
            admin_state_up: true,
            pool_id: pool.into(),
            address: address.into(),
            protocol_port: port,
            weight: 1,
            ..Default::default()
        }
    }

    fn monitor(id: &str, pool: &str, kind: HealthMonitorType) -> HealthMonitor {
        let http = matches!(kind, HealthMonitorType::Http | HealthMonitorType::Https);
        HealthMonitor {
            id: id.into(),
            project_id: PROJECT.into(),
            admin_state_up: true,
            pool_id: pool.into(),
            r#type: kind as i32,
            delay: 5,
            timeout: 3,
            max_retries: 3,
            max_retries_down: 3,
            http_method: if http { HttpMethod::Get as i32 } else { 0 },
            url_path: if http { "/".into() } else { String::new() },
            expected_codes: if http { "200".into() } else { String::new() },
            ..Default::default()
        }
    }

    fn policy(id: &str, listener: &str, position: i32, action: L7PolicyAction) -> L7Policy {
        L7Policy {
            id: id.into(),
            project_id: PROJECT.into(),
            admin_state_up: true,
            listener_id: listener.into(),
            action: action as i32,
            position,
            ..Default::default()
        }
    }

    fn rule(
        id: &str,
        policy: &str,
        kind: api::L7RuleType,
        compare: CompareType,
        value: &str,
    ) -> L7Rule {
        L7Rule {
            id: id.into(),
            project_id: PROJECT.into(),
            admin_state_up: true,
            l7policy_id: policy.into(),
            r#type: kind as i32,
            compare_type: compare as i32,
            value: value.into(),
            ..Default::default()
        }
    }

    fn path_rule(id: &str, policy: &str) -> L7Rule {
        rule(
            id,
            policy,
            api::L7RuleType::Path,
            CompareType::StartsWith,
            "/api",
        )
    }

    // ---- applying through the model's public path ----

    fn apply(state: &mut State, op: Op) {
        let index = state.revision() + 1;
        let result = state.apply(
            index,
            &Command {
                request_id: format!("req-{index}"),
                now: "2025-01-01T00:00:00Z".into(),
                op: Some(op),
            },
        );
        if let Some(command_result::Result::Error(e)) = result.result {
            panic!("command {index} refused: {e:?}");
        }
    }

    fn model(objects: Objects) -> State {
        let mut state = State::new();
        apply(&mut state, Op::Create(objects));
        state
    }

    /// One load balancer at 192.0.2.10 with the given listeners and pools.
    fn one_lb(listeners: Vec<Listener>, pools: Vec<Pool>) -> Objects {
        Objects {
            loadbalancers: vec![lb("lb1", "192.0.2.10")],
            listeners,
            pools,
            ..Default::default()
        }
    }

    fn only_listener(t: &Translated) -> &ListenerConfig {
        assert_eq!(t.config.listeners.len(), 1, "{t:#?}");
        &t.config.listeners[0]
    }

    // ---- listeners ----

    #[test]
    fn listener_protocols_map_and_unservable_ones_are_skipped() {
        let mut terminated = listener("l-term", "lb1", Protocol::TerminatedHttps, 443);
        terminated.default_tls_container_ref = "secret://cert".into();
        terminated.tls_versions = vec!["TLSv1.2".into(), "TLSv1.3".into()];
        let state = model(one_lb(
            vec![
                listener("l-tcp", "lb1", Protocol::Tcp, 22),
                listener("l-http", "lb1", Protocol::Http, 80),
                listener("l-https", "lb1", Protocol::Https, 8443),
                listener("l-udp", "lb1", Protocol::Udp, 53),
                terminated,
            ],
            vec![],
        ));
        let t = translate(&state, DEFAULT_LIMIT);
        let got: Vec<(&str, ListenerProtocol, u16)> = t
            .config
            .listeners
            .iter()
            .map(|l| (l.id.as_str(), l.protocol, l.port))
            .collect();
        // Ordered by listener id.
        assert_eq!(
            got,
            [
                ("l-http", ListenerProtocol::Http, 80),
                ("l-https", ListenerProtocol::Https, 8443),
                ("l-tcp", ListenerProtocol::Tcp, 22),
                ("l-udp", ListenerProtocol::Udp, 53),
            ]
        );
        for l in &t.config.listeners {
            assert_eq!(l.vip, "192.0.2.10".parse::<IpAddr>().unwrap());
            assert!(l.admin_state_up);
            assert_eq!(l.default_pool, None);
            assert!(l.l7policies.is_empty());
        }
        assert_eq!(t.skipped.len(), 1, "{t:#?}");
        assert_eq!(t.skipped[0].listener_id, "l-term");
        assert!(t.skipped[0].reason.contains("TERMINATED_HTTPS"), "{t:#?}");
        assert!(t.warnings.is_empty(), "{t:#?}");
        assert_eq!(dataplane_config(&state, DEFAULT_LIMIT), t.config);
    }

    #[test]
    fn listeners_of_every_load_balancer_use_their_own_vip() {
        let state = model(Objects {
            loadbalancers: vec![lb("lb-b", "2001:db8::7"), lb("lb-a", "192.0.2.20")],
            listeners: vec![
                listener("l2", "lb-b", Protocol::Tcp, 80),
                listener("l1", "lb-a", Protocol::Tcp, 80),
            ],
            ..Default::default()
        });
        let got: Vec<(String, IpAddr)> = dataplane_config(&state, DEFAULT_LIMIT)
            .listeners
            .iter()
            .map(|l| (l.id.clone(), l.vip))
            .collect();
        assert_eq!(
            got,
            [
                ("l1".to_string(), "192.0.2.20".parse().unwrap()),
                ("l2".to_string(), "2001:db8::7".parse().unwrap()),
            ]
        );
    }

    #[test]
    fn listener_is_enabled_only_with_its_load_balancer() {
        for (lb_up, listener_up, expected) in [
            (true, true, true),
            (true, false, false),
            (false, true, false),
            (false, false, false),
        ] {
            let mut objects = one_lb(vec![listener("l1", "lb1", Protocol::Tcp, 80)], vec![]);
            objects.loadbalancers[0].admin_state_up = lb_up;
            objects.listeners[0].admin_state_up = listener_up;
            let state = model(objects);
            let t = translate(&state, DEFAULT_LIMIT);
            assert_eq!(
                only_listener(&t).admin_state_up,
                expected,
                "lb {lb_up}, listener {listener_up}"
            );
        }
    }

    #[test]
    fn disabling_the_load_balancer_later_disables_its_listeners() {
        let mut state = model(one_lb(
            vec![listener("l1", "lb1", Protocol::Tcp, 80)],
            vec![],
        ));
        assert!(dataplane_config(&state, DEFAULT_LIMIT).listeners[0].admin_state_up);
        apply(
            &mut state,
            Op::UpdateLoadbalancer(UpdateLoadBalancerRequest {
                loadbalancer_id: "lb1".into(),
                loadbalancer: Some(LoadBalancerUpdate {
                    admin_state_up: Some(false),
                    ..Default::default()
                }),
                unset: vec![],
            }),
        );
        let config = dataplane_config(&state, DEFAULT_LIMIT);
        assert_eq!(config.listeners.len(), 1);
        assert!(!config.listeners[0].admin_state_up);
    }

    #[test]
    fn listener_limits_cidrs_and_timeouts() {
        let mut l = listener("l1", "lb1", Protocol::Tcp, 80);
        l.connection_limit = 100;
        l.allowed_cidrs = vec!["10.0.0.0/8".into(), "192.168.1.5/24".into()];
        l.timeout_client_data = 1_500;
        l.timeout_member_connect = 250;
        l.timeout_member_data = 0;
        l.timeout_tcp_inspect = 7;
        let state = model(one_lb(
            vec![l, listener("l2", "lb1", Protocol::Tcp, 81)],
            vec![],
        ));
        let config = dataplane_config(&state, DEFAULT_LIMIT);
        let (l1, l2) = (&config.listeners[0], &config.listeners[1]);
        assert_eq!(l1.connection_limit, Some(100));
        assert_eq!(l2.connection_limit, Some(50_000), "-1: Octavia's default");
        let lower = dataplane_config(&state, 7);
        assert_eq!(lower.listeners[0].connection_limit, Some(100));
        assert_eq!(
            lower.listeners[1].connection_limit,
            Some(7),
            "-1: the node's default"
        );
        assert_eq!(
            l1.allowed_cidrs,
            vec![
                "10.0.0.0/8".parse::<IpNet>().unwrap(),
                "192.168.1.0/24".parse::<IpNet>().unwrap()
            ]
        );
        assert!(l2.allowed_cidrs.is_empty());
        assert_eq!(
            l1.timeouts,
            ListenerTimeouts {
                client_data: Duration::from_millis(1_500),
                member_connect: Duration::from_millis(250),
                member_data: Duration::ZERO,
                tcp_inspect: Duration::from_millis(7),
            }
        );
        assert_eq!(l2.timeouts, ListenerTimeouts::default(), "Octavia defaults");
    }

    #[test]
    fn insert_headers_are_on_only_when_true() {
        let headers = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let cases = [
            (headers(&[]), InsertHeaders::default()),
            (
                headers(&[("X-Forwarded-For", "true")]),
                InsertHeaders {
                    x_forwarded_for: true,
                    ..Default::default()
                },
            ),
            (
                headers(&[
                    ("X-Forwarded-For", "False"),
                    ("X-Forwarded-Port", "TRUE"),
                    ("X-Forwarded-Proto", "True"),
                ]),
                InsertHeaders {
                    x_forwarded_for: false,
                    x_forwarded_port: true,
                    x_forwarded_proto: true,
                },
            ),
            (
                headers(&[("X-Forwarded-Port", "yes"), ("X-Real-IP", "true")]),
                InsertHeaders::default(),
            ),
        ];
        for (input, expected) in cases {
            let mut l = listener("l1", "lb1", Protocol::Http, 80);
            l.insert_headers = input.clone();
            let state = model(one_lb(vec![l], vec![]));
            let t = translate(&state, DEFAULT_LIMIT);
            assert_eq!(only_listener(&t).insert_headers, expected, "{input:?}");
        }
    }

    // ---- pools, members, monitors ----

    #[test]
    fn default_pool_with_members_and_monitor() {
        let mut l = listener("l1", "lb1", Protocol::Http, 80);
        l.default_pool_id = "p1".into();
        let mut p = pool(
            "p1",
            "lb1",
            Protocol::Http,
            api::LbAlgorithm::LeastConnections,
        );
        p.session_persistence = Some(ApiPersistence {
            r#type: SessionPersistenceType::AppCookie as i32,
            cookie_name: "JSESSIONID".into(),
            ..Default::default()
        });
        let mut drained = member("m2", "p1", "2001:db8::5", 8080);
        drained.weight = 0;
        drained.backup = true;
        drained.admin_state_up = false;
        drained.monitor_address = "2001:db8::6".into();
        drained.monitor_port = Some(9000);
        let mut weighted = member("m1", "p1", "10.0.0.1", 8080);
        weighted.weight = 256;
        let mut hm = monitor("hm1", "p1", HealthMonitorType::Http);
        hm.http_method = HttpMethod::Head as i32;
        hm.url_path = "/healthz".into();
        hm.expected_codes = "200-204".into();
        hm.delay = 7;
        hm.timeout = 2;
        hm.max_retries = 4;
        hm.max_retries_down = 5;
        hm.admin_state_up = false;
        let state = model(Objects {
            members: vec![drained, weighted],
            healthmonitors: vec![hm],
            ..one_lb(vec![l], vec![p])
        });
        let t = translate(&state, DEFAULT_LIMIT);
        assert!(t.warnings.is_empty() && t.skipped.is_empty(), "{t:#?}");
        let expected = PoolConfig {
            id: "p1".into(),
            protocol: PoolProtocol::Http,
            lb_algorithm: LbAlgorithm::LeastConnections,
            session_persistence: Some(SessionPersistence::AppCookie {
                cookie_name: "JSESSIONID".into(),
            }),
            admin_state_up: true,
            members: vec![
                MemberConfig {
                    weight: 256,
                    ..MemberConfig::new("m1", "10.0.0.1:8080".parse().unwrap())
                },
                MemberConfig {
                    id: "m2".into(),
                    address: "2001:db8::5".parse().unwrap(),
                    port: 8080,
                    weight: 0,
                    backup: true,
                    admin_state_up: false,
                    monitor_address: Some("2001:db8::6".parse().unwrap()),
                    monitor_port: Some(9000),
                },
            ],
            health_monitor: Some(HealthMonitorConfig {
                kind: HealthMonitorKind::Http {
                    method: "HEAD".into(),
                    url_path: "/healthz".into(),
                    expected_codes: "200-204".into(),
                },
                delay: Duration::from_secs(7),
                timeout: Duration::from_secs(2),
                max_retries: 4,
                max_retries_down: 5,
                admin_state_up: false,
            }),
        };
        assert_eq!(only_listener(&t).default_pool, Some(expected));
    }

    #[test]
    fn udp_source_ip_persistence_keeps_timeout_and_granularity() {
        let mut l = listener("l1", "lb1", Protocol::Udp, 53);
        l.default_pool_id = "p1".into();
        let mut p = pool("p1", "lb1", Protocol::Udp, api::LbAlgorithm::RoundRobin);
        p.session_persistence = Some(ApiPersistence {
            r#type: SessionPersistenceType::SourceIp as i32,
            persistence_timeout: Some(60),
            persistence_granularity: "255.255.255.0".into(),
            ..Default::default()
        });
        let mut bad = pool("p2", "lb1", Protocol::Udp, api::LbAlgorithm::RoundRobin);
        bad.session_persistence = Some(ApiPersistence {
            r#type: SessionPersistenceType::SourceIp as i32,
            persistence_timeout: Some(0),
            ..Default::default()
        });
        let mut l2 = listener("l2", "lb1", Protocol::Udp, 54);
        l2.default_pool_id = "p2".into();
        let state = model(one_lb(vec![l, l2], vec![p, bad]));
        let t = translate(&state, DEFAULT_LIMIT);
        let sp = |i: usize| {
            t.config.listeners[i]
                .default_pool
                .as_ref()
                .unwrap()
                .session_persistence
                .clone()
        };
        assert_eq!(
            sp(0),
            Some(SessionPersistence::SourceIp {
                timeout: Some(Duration::from_secs(60)),
                granularity: Some("255.255.255.0".parse().unwrap()),
            })
        );
        assert_eq!(sp(1), Some(SessionPersistence::SOURCE_IP));
    }

    #[test]
    fn pool_protocols_algorithms_and_persistence() {
        use api::LbAlgorithm as A;
        let persistence = |kind: SessionPersistenceType, cookie: &str| {
            Some(ApiPersistence {
                r#type: kind as i32,
                cookie_name: cookie.into(),
                ..Default::default()
            })
        };
        let cases = [
            (
                Protocol::Tcp,
                Protocol::Tcp,
                A::RoundRobin,
                None,
                PoolProtocol::Tcp,
                LbAlgorithm::RoundRobin,
                None,
            ),
            (
                Protocol::Tcp,
                Protocol::Https,
                A::SourceIp,
                persistence(SessionPersistenceType::SourceIp, ""),
                PoolProtocol::Https,
                LbAlgorithm::SourceIp,
                Some(SessionPersistence::SOURCE_IP),
            ),
            (
                Protocol::Http,
                Protocol::Http,
                A::SourceIpPort,
                persistence(SessionPersistenceType::HttpCookie, ""),
                PoolProtocol::Http,
                LbAlgorithm::SourceIpPort,
                Some(SessionPersistence::HttpCookie),
            ),
            (
                Protocol::Http,
                Protocol::Proxy,
                A::LeastConnections,
                persistence(SessionPersistenceType::AppCookie, "sid"),
                PoolProtocol::Proxy,
                LbAlgorithm::LeastConnections,
                Some(SessionPersistence::AppCookie {
                    cookie_name: "sid".into(),
                }),
            ),
            (
                Protocol::Https,
                Protocol::Proxyv2,
                A::RoundRobin,
                None,
                PoolProtocol::ProxyV2,
                LbAlgorithm::RoundRobin,
                None,
            ),
            (
                Protocol::Udp,
                Protocol::Udp,
                A::SourceIp,
                persistence(SessionPersistenceType::SourceIp, ""),
                PoolProtocol::Udp,
                LbAlgorithm::SourceIp,
                Some(SessionPersistence::SOURCE_IP),
            ),
        ];
        for (lp, pp, algorithm, sp, want_protocol, want_algorithm, want_sp) in cases {
            let mut l = listener("l1", "lb1", lp, 80);
            l.default_pool_id = "p1".into();
            let mut p = pool("p1", "lb1", pp, algorithm);
            p.session_persistence = sp;
            let state = model(one_lb(vec![l], vec![p]));
            let t = translate(&state, DEFAULT_LIMIT);
            let got = only_listener(&t)
                .default_pool
                .clone()
                .expect("default pool");
            assert_eq!(
                (got.protocol, got.lb_algorithm, got.session_persistence),
                (want_protocol, want_algorithm, want_sp),
                "{lp:?} listener, {pp:?} pool"
            );
            assert!(got.admin_state_up && got.members.is_empty() && got.health_monitor.is_none());
        }
    }

    #[test]
    fn disabled_pool_keeps_its_config() {
        let mut l = listener("l1", "lb1", Protocol::Tcp, 80);
        l.default_pool_id = "p1".into();
        let mut p = pool("p1", "lb1", Protocol::Tcp, api::LbAlgorithm::RoundRobin);
        p.admin_state_up = false;
        let state = model(Objects {
            members: vec![member("m1", "p1", "10.0.0.1", 80)],
            healthmonitors: vec![monitor("hm1", "p1", HealthMonitorType::Tcp)],
            ..one_lb(vec![l], vec![p])
        });
        let t = translate(&state, DEFAULT_LIMIT);
        let pool = only_listener(&t).default_pool.clone().unwrap();
        assert!(!pool.admin_state_up);
        assert_eq!(pool.members.len(), 1);
        assert!(pool.health_monitor.is_some());
    }

    #[test]
    fn every_monitor_type_the_api_accepts_maps_to_the_data_plane() {
        let cases = [
            (
                Protocol::Tcp,
                HealthMonitorType::Tcp,
                Some(HealthMonitorKind::Tcp),
            ),
            (
                Protocol::Http,
                HealthMonitorType::Http,
                Some(HealthMonitorKind::Http {
                    method: "GET".into(),
                    url_path: "/".into(),
                    expected_codes: "200".into(),
                }),
            ),
            (
                Protocol::Udp,
                HealthMonitorType::Tcp,
                Some(HealthMonitorKind::Tcp),
            ),
            (
                Protocol::Https,
                HealthMonitorType::Https,
                Some(HealthMonitorKind::Https {
                    method: "GET".into(),
                    url_path: "/".into(),
                    expected_codes: "200".into(),
                }),
            ),
            (
                Protocol::Tcp,
                HealthMonitorType::Ping,
                Some(HealthMonitorKind::Ping),
            ),
            (
                Protocol::Https,
                HealthMonitorType::TlsHello,
                Some(HealthMonitorKind::TlsHello),
            ),
            (
                Protocol::Udp,
                HealthMonitorType::UdpConnect,
                Some(HealthMonitorKind::UdpConnect),
            ),
        ];
        for (pool_protocol, kind, expected) in cases {
            let listener_protocol = match pool_protocol {
                Protocol::Http => Protocol::Http,
                Protocol::Udp => Protocol::Udp,
                _ => Protocol::Tcp,
            };
            let mut l = listener("l1", "lb1", listener_protocol, 80);
            l.default_pool_id = "p1".into();
            let state = model(Objects {
                members: vec![member("m1", "p1", "10.0.0.1", 80)],
                healthmonitors: vec![monitor("hm1", "p1", kind)],
                ..one_lb(
                    vec![l],
                    vec![pool(
                        "p1",
                        "lb1",
                        pool_protocol,
                        api::LbAlgorithm::RoundRobin,
                    )],
                )
            });
            let t = translate(&state, DEFAULT_LIMIT);
            let pool = only_listener(&t).default_pool.clone().unwrap();
            assert_eq!(pool.members.len(), 1, "{kind:?}");
            assert_eq!(pool.health_monitor.map(|hm| hm.kind), expected, "{kind:?}");
            assert!(t.warnings.is_empty(), "{kind:?}: {t:#?}");
        }
    }

    // ---- L7 policies ----

    /// An HTTP listener with default pool `p-default` and a policy per rendering case.
    fn policy_model() -> State {
        let mut l = listener("l1", "lb1", Protocol::Http, 80);
        l.default_pool_id = "p-default".into();
        let mut to_pool = policy("pol-pool", "l1", 1, L7PolicyAction::RedirectToPool);
        to_pool.redirect_pool_id = "p-api".into();
        let mut to_url = policy("pol-url", "l1", 2, L7PolicyAction::RedirectToUrl);
        to_url.redirect_url = "https://example.com/moved".into();
        to_url.redirect_http_code = 301;
        let mut disabled = policy("pol-disabled", "l1", 3, L7PolicyAction::Reject);
        disabled.admin_state_up = false;
        let no_rules = policy("pol-no-rules", "l1", 4, L7PolicyAction::Reject);
        let only_disabled_rules = policy("pol-off-rules", "l1", 5, L7PolicyAction::Reject);
        let mut prefix = policy("pol-prefix", "l1", 6, L7PolicyAction::RedirectPrefix);
        prefix.redirect_prefix = "https://example.org".into();
        prefix.redirect_http_code = 308;
        let reject = policy("a-reject", "l1", 7, L7PolicyAction::Reject);
        let off = |id: &str, policy: &str| L7Rule {
            admin_state_up: false,
            ..path_rule(id, policy)
        };
        let mut header = rule(
            "r-header",
            "pol-url",
            api::L7RuleType::Header,
            CompareType::EqualTo,
            "v1",
        );
        header.key = "X-Version".into();
        header.invert = true;
        let l7rules = vec![
            path_rule("r-pool", "pol-pool"),
            header,
            off("r-url-off", "pol-url"),
            path_rule("r-disabled", "pol-disabled"),
            off("r-off", "pol-off-rules"),
            rule(
                "r-prefix",
                "pol-prefix",
                api::L7RuleType::HostName,
                CompareType::EndsWith,
                ".example.net",
            ),
            rule(
                "r-reject",
                "a-reject",
                api::L7RuleType::FileType,
                CompareType::Regex,
                "^(exe|bat)$",
            ),
        ];
        let mut api_pool = pool("p-api", "lb1", Protocol::Http, api::LbAlgorithm::SourceIp);
        api_pool.admin_state_up = false;
        model(Objects {
            members: vec![member("m-api", "p-api", "10.0.1.1", 8080)],
            healthmonitors: vec![monitor("hm-api", "p-api", HealthMonitorType::Tcp)],
            l7policies: vec![
                to_pool,
                to_url,
                disabled,
                no_rules,
                only_disabled_rules,
                prefix,
                reject,
            ],
            l7rules,
            ..one_lb(
                vec![l],
                vec![
                    pool(
                        "p-default",
                        "lb1",
                        Protocol::Http,
                        api::LbAlgorithm::RoundRobin,
                    ),
                    api_pool,
                ],
            )
        })
    }

    #[test]
    fn only_enabled_policies_with_enabled_rules_are_rendered_in_position_order() {
        let t = translate(&policy_model(), DEFAULT_LIMIT);
        assert!(t.warnings.is_empty() && t.skipped.is_empty(), "{t:#?}");
        let l = only_listener(&t);
        let got: Vec<(&str, u32)> = l
            .l7policies
            .iter()
            .map(|p| (p.id.as_str(), p.position))
            .collect();
        // Position order (not id order: "a-reject" is last); disabled, rule-less and
        // only-disabled-rules policies are gone.
        assert_eq!(
            got,
            [
                ("pol-pool", 1),
                ("pol-url", 2),
                ("pol-prefix", 6),
                ("a-reject", 7)
            ]
        );
        assert!(l.l7policies.iter().all(|p| p.admin_state_up));
        let rule_ids: Vec<Vec<&str>> = l
            .l7policies
            .iter()
            .map(|p| p.rules.iter().map(|r| r.id.as_str()).collect())
            .collect();
        assert_eq!(
            rule_ids,
            [
                vec!["r-pool"],
                vec!["r-header"],
                vec!["r-prefix"],
                vec!["r-reject"]
            ],
            "disabled rules are left out"
        );
    }

    #[test]
    fn every_policy_action() {
        let t = translate(&policy_model(), DEFAULT_LIMIT);
        let l = only_listener(&t);
        let action = |id: &str| &l.l7policies.iter().find(|p| p.id == id).unwrap().action;
        let L7Action::RedirectToPool(target) = action("pol-pool") else {
            panic!("pol-pool: {:?}", action("pol-pool"));
        };
        assert_eq!(
            *target,
            PoolConfig {
                admin_state_up: false,
                members: vec![MemberConfig::new("m-api", "10.0.1.1:8080".parse().unwrap())],
                health_monitor: Some(HealthMonitorConfig {
                    kind: HealthMonitorKind::Tcp,
                    delay: Duration::from_secs(5),
                    timeout: Duration::from_secs(3),
                    max_retries: 3,
                    max_retries_down: 3,
                    admin_state_up: true,
                }),
                ..PoolConfig::new("p-api", PoolProtocol::Http, LbAlgorithm::SourceIp)
            },
            "the redirect target carries its full pool config"
        );
        assert_eq!(
            *action("pol-url"),
            L7Action::RedirectToUrl {
                url: "https://example.com/moved".into(),
                http_code: Some(301)
            }
        );
        assert_eq!(
            *action("pol-prefix"),
            L7Action::RedirectPrefix {
                prefix: "https://example.org".into(),
                http_code: Some(308)
            }
        );
        assert_eq!(*action("a-reject"), L7Action::Reject);
        assert_eq!(
            l.default_pool.as_ref().map(|p| p.id.as_str()),
            Some("p-default")
        );
        assert_eq!(l.pools().count(), 2);
    }

    #[test]
    fn rule_fields_map() {
        let t = translate(&policy_model(), DEFAULT_LIMIT);
        let rules: HashMap<String, L7RuleConfig> = only_listener(&t)
            .l7policies
            .iter()
            .flat_map(|p| p.rules.clone())
            .map(|r| (r.id.clone(), r))
            .collect();
        let cases = [
            (
                "r-pool",
                L7RuleType::Path,
                L7CompareType::StartsWith,
                None,
                "/api",
                false,
            ),
            (
                "r-header",
                L7RuleType::Header,
                L7CompareType::EqualTo,
                Some("X-Version"),
                "v1",
                true,
            ),
            (
                "r-prefix",
                L7RuleType::HostName,
                L7CompareType::EndsWith,
                None,
                ".example.net",
                false,
            ),
            (
                "r-reject",
                L7RuleType::FileType,
                L7CompareType::Regex,
                None,
                "^(exe|bat)$",
                false,
            ),
        ];
        for (id, rule_type, compare_type, key, value, invert) in cases {
            assert_eq!(
                rules[id],
                L7RuleConfig {
                    id: id.into(),
                    rule_type,
                    compare_type,
                    key: key.map(str::to_string),
                    value: value.into(),
                    invert,
                    admin_state_up: true,
                },
            );
        }
        // COOKIE and CONTAINS, the remaining type and compare type.
        let mut cookie = rule(
            "r-cookie",
            "pol",
            api::L7RuleType::Cookie,
            CompareType::Contains,
            "beta",
        );
        cookie.key = "group".into();
        let got = rule_config(&cookie).unwrap();
        assert_eq!(
            (got.rule_type, got.compare_type, got.key.as_deref()),
            (L7RuleType::Cookie, L7CompareType::Contains, Some("group"))
        );
    }

    #[test]
    fn a_redirect_without_http_code_leaves_the_default_to_the_data_plane() {
        let p = L7Policy {
            redirect_url: "http://example.com".into(),
            ..policy("pol", "l1", 1, L7PolicyAction::RedirectToUrl)
        };
        let mut state = State::new();
        // Translated directly: the API always stores a code for redirects, this checks 0 -> None.
        let config = policy_config(&state, &p, &mut Vec::new()).unwrap();
        assert_eq!(config, None, "no rules: not rendered");
        let objects = Objects {
            l7policies: vec![L7Policy {
                redirect_http_code: 302,
                ..p.clone()
            }],
            l7rules: vec![path_rule("r1", "pol")],
            ..one_lb(vec![listener("l1", "lb1", Protocol::Http, 80)], vec![])
        };
        apply(&mut state, Op::Create(objects));
        let mut stored = state.get::<L7Policy>("pol").unwrap().clone();
        stored.redirect_http_code = 0;
        let config = policy_config(&state, &stored, &mut Vec::new())
            .unwrap()
            .unwrap();
        assert_eq!(
            config.action,
            L7Action::RedirectToUrl {
                url: "http://example.com".into(),
                http_code: None
            }
        );
    }

    // ---- determinism ----

    #[test]
    fn equal_models_give_equal_configs_whatever_the_creation_order() {
        let forward = policy_model();
        let mut l = listener("l1", "lb1", Protocol::Http, 80);
        l.default_pool_id = "p1".into();
        let build = |reverse: bool| {
            let mut members = vec![
                member("m1", "p1", "10.0.0.1", 80),
                member("m2", "p1", "10.0.0.2", 80),
                member("m3", "p1", "10.0.0.3", 80),
            ];
            let mut rules = vec![
                path_rule("r1", "pol"),
                path_rule("r2", "pol"),
                path_rule("r3", "pol"),
            ];
            if reverse {
                members.reverse();
                rules.reverse();
            }
            model(Objects {
                members,
                l7policies: vec![policy("pol", "l1", 1, L7PolicyAction::Reject)],
                l7rules: rules,
                ..one_lb(
                    vec![l.clone()],
                    vec![pool(
                        "p1",
                        "lb1",
                        Protocol::Http,
                        api::LbAlgorithm::RoundRobin,
                    )],
                )
            })
        };
        let (a, b) = (
            dataplane_config(&build(false), DEFAULT_LIMIT),
            dataplane_config(&build(true), DEFAULT_LIMIT),
        );
        assert_eq!(a, b);
        let ids: Vec<&str> = a.listeners[0]
            .default_pool
            .as_ref()
            .unwrap()
            .members
            .iter()
            .map(|m| m.id.as_str())
            .collect();
        assert_eq!(ids, ["m1", "m2", "m3"]);
        assert_eq!(
            dataplane_config(&forward, DEFAULT_LIMIT),
            dataplane_config(&policy_model(), DEFAULT_LIMIT)
        );
    }
}
