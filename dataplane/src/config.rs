//! `DataplaneConfig`: the pure-data description the data plane converges to.
//!
//! It is derived elsewhere (in `node`) from the replicated Octavia model, so it
//! carries only what the data path needs: no project ids, names, provisioning
//! status. Pools are embedded by value wherever a listener uses them (default
//! pool, `REDIRECT_TO_POOL` targets); the data plane de-duplicates them by
//! `id`, so one pool used by two listeners gets one health monitor and one set
//! of member counters.
//!
//! Durations are [`Duration`]s (the control plane converts Octavia's seconds
//! and milliseconds), so tests can run with millisecond health checks.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use ipnet::IpNet;

/// Everything one node's data plane should serve.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DataplaneConfig {
    /// All listeners of all load balancers; ids must be unique.
    pub listeners: Vec<ListenerConfig>,
}

/// Listener protocol (Octavia `listener.protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ListenerProtocol {
    /// Layer-4 TCP proxy.
    Tcp,
    /// HTTP/1.1 and h2c reverse proxy with L7 policies.
    Http,
    /// TLS pass-through: proxied like [`ListenerProtocol::Tcp`].
    Https,
    /// UDP with per-client flows.
    Udp,
}

/// One listener: a (VIP, port, protocol) socket and how to route what arrives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListenerConfig {
    /// Octavia listener id; the key for diffing and stats.
    pub id: String,
    /// Address to bind (bound with `IP_FREEBIND`, so the node need not hold it).
    pub vip: IpAddr,
    /// Port to bind; 0 picks a free port (tests); see `Dataplane::local_addr`.
    pub port: u16,
    pub protocol: ListenerProtocol,
    /// `false`: the socket stays bound but new connections are closed at once.
    pub admin_state_up: bool,
    /// Maximum concurrent connections; excess connections are closed. `None` = unlimited.
    pub connection_limit: Option<u32>,
    /// Source networks allowed to connect; empty = everyone.
    pub allowed_cidrs: Vec<IpNet>,
    pub timeouts: ListenerTimeouts,
    /// Headers added to requests towards members (HTTP listeners only).
    pub insert_headers: InsertHeaders,
    /// Pool used when no L7 policy matches.
    pub default_pool: Option<PoolConfig>,
    /// L7 policies, evaluated in `position` order (the data plane sorts them).
    pub l7policies: Vec<L7PolicyConfig>,
}

impl ListenerConfig {
    /// A listener with Octavia's defaults and no pool.
    pub fn new(id: impl Into<String>, vip: IpAddr, port: u16, protocol: ListenerProtocol) -> Self {
        Self {
            id: id.into(),
            vip,
            port,
            protocol,
            admin_state_up: true,
            connection_limit: None,
            allowed_cidrs: Vec::new(),
            timeouts: ListenerTimeouts::default(),
            insert_headers: InsertHeaders::default(),
            default_pool: None,
            l7policies: Vec::new(),
        }
    }

    /// The socket address this listener binds.
    pub fn bind_addr(&self) -> SocketAddr {
        SocketAddr::new(self.vip, self.port)
    }

    /// Every pool this listener can route to (default pool first), possibly with repeats.
    pub fn pools(&self) -> impl Iterator<Item = &PoolConfig> {
        self.default_pool
            .iter()
            .chain(self.l7policies.iter().filter_map(|p| match &p.action {
                L7Action::RedirectToPool(pool) => Some(pool),
                _ => None,
            }))
    }
}

/// Listener timeouts (Octavia's `timeout_*`, converted from milliseconds).
/// A zero duration means "no timeout".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerTimeouts {
    /// Client inactivity (L4: whole connection idle; L7: idle keep-alive / slow request).
    pub client_data: Duration,
    /// Time allowed to establish a connection to a member.
    pub member_connect: Duration,
    /// Member inactivity (L4: whole connection idle; L7: waiting for response headers).
    pub member_data: Duration,
    /// Octavia `timeout_tcp_inspect` ("time to wait for additional TCP packets
    /// for content inspection"). TCP and HTTPS pass-through listeners choose
    /// and connect a member only once the client has sent its first bytes or
    /// this time has passed, whichever comes first; a client that closes
    /// meanwhile never reaches a member. Zero (the default): connect at once.
    /// HTTP listeners (which wait for the request head under `client_data`)
    /// and UDP listeners do not use it.
    pub tcp_inspect: Duration,
}

impl Default for ListenerTimeouts {
    /// Octavia's defaults: 50 s, 5 s, 50 s, 0.
    fn default() -> Self {
        Self {
            client_data: Duration::from_millis(50_000),
            member_connect: Duration::from_millis(5_000),
            member_data: Duration::from_millis(50_000),
            tcp_inspect: Duration::ZERO,
        }
    }
}

/// Octavia `insert_headers` that the data plane renders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct InsertHeaders {
    pub x_forwarded_for: bool,
    pub x_forwarded_port: bool,
    pub x_forwarded_proto: bool,
}

/// Pool protocol: how the data plane talks to members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PoolProtocol {
    Tcp,
    Http,
    Https,
    /// PROXY protocol v1 header, then the listener's protocol.
    Proxy,
    /// PROXY protocol v2 header, then the listener's protocol.
    #[serde(rename = "PROXYV2")]
    ProxyV2,
    Udp,
}

/// Balancing algorithm (Octavia `lb_algorithm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LbAlgorithm {
    /// Smooth weighted round robin.
    RoundRobin,
    /// Fewest active connections relative to weight.
    LeastConnections,
    /// Consistent (weighted rendezvous) hash of the client address.
    SourceIp,
    /// Consistent hash of the client address and port.
    SourceIpPort,
}

/// Session persistence (Octavia `session_persistence`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SessionPersistence {
    /// Stick a client address to a member: a stick table keyed by the client's
    /// address (masked by `granularity`), each entry kept for `timeout` after
    /// its last use.
    SourceIp {
        /// Octavia `persistence_timeout` (UDP pools); `None`: 360 s, keepalived's default.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout: Option<Duration>,
        /// Octavia `persistence_granularity`, a netmask such as `255.255.255.0`
        /// applied to the client address (UDP pools); `None`: the whole address.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        granularity: Option<IpAddr>,
    },
    /// The data plane inserts a cookie (`SRV`) naming the member and removes it
    /// from requests before they reach the member.
    HttpCookie,
    /// Stick on the value of an application cookie: learnt from the member's
    /// `Set-Cookie`, matched on the request's `Cookie`.
    AppCookie { cookie_name: String },
}

impl SessionPersistence {
    /// `SOURCE_IP` with the defaults (no timeout or granularity given).
    pub const SOURCE_IP: Self = Self::SourceIp {
        timeout: None,
        granularity: None,
    };
}

/// A pool of members behind one balancing algorithm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolConfig {
    pub id: String,
    pub protocol: PoolProtocol,
    pub lb_algorithm: LbAlgorithm,
    pub session_persistence: Option<SessionPersistence>,
    /// `false`: the pool serves nothing (L4 close, L7 503).
    pub admin_state_up: bool,
    pub members: Vec<MemberConfig>,
    pub health_monitor: Option<HealthMonitorConfig>,
}

impl PoolConfig {
    /// An enabled pool with no members, persistence or monitor.
    pub fn new(id: impl Into<String>, protocol: PoolProtocol, lb_algorithm: LbAlgorithm) -> Self {
        Self {
            id: id.into(),
            protocol,
            lb_algorithm,
            session_persistence: None,
            admin_state_up: true,
            members: Vec::new(),
            health_monitor: None,
        }
    }
}

/// One backend server of a pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberConfig {
    /// Octavia member id; health and connection counters are carried by it.
    pub id: String,
    pub address: IpAddr,
    pub port: u16,
    /// 0..=256; 0 drains (no new connections).
    pub weight: u32,
    /// Serves only when no non-backup member is up.
    pub backup: bool,
    pub admin_state_up: bool,
    /// Health-check target override (default: `address`).
    pub monitor_address: Option<IpAddr>,
    /// Health-check port override (default: `port`).
    pub monitor_port: Option<u16>,
}

impl MemberConfig {
    /// An enabled, weight-1, non-backup member.
    pub fn new(id: impl Into<String>, addr: SocketAddr) -> Self {
        Self {
            id: id.into(),
            address: addr.ip(),
            port: addr.port(),
            weight: 1,
            backup: false,
            admin_state_up: true,
            monitor_address: None,
            monitor_port: None,
        }
    }

    /// Where traffic goes.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.address, self.port)
    }

    /// Where health checks go.
    pub fn monitor_addr(&self) -> SocketAddr {
        SocketAddr::new(
            self.monitor_address.unwrap_or(self.address),
            self.monitor_port.unwrap_or(self.port),
        )
    }
}

/// Health monitor kinds implemented by the data plane.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HealthMonitorKind {
    /// Healthy when a TCP connection can be opened.
    Tcp,
    /// Healthy when an HTTP request answers with an expected status code.
    Http {
        /// Method, e.g. `GET`.
        method: String,
        /// Request path, e.g. `/healthz`.
        url_path: String,
        /// Octavia syntax: `200`, `200,202`, `200-204`.
        expected_codes: String,
    },
    /// [`HealthMonitorKind::Http`] over TLS; the member's certificate is not
    /// verified (HAProxy's `check-ssl verify none`, as Octavia renders it).
    Https {
        method: String,
        url_path: String,
        expected_codes: String,
    },
    /// Healthy when a TLS handshake completes (certificate not verified).
    #[serde(rename = "TLS-HELLO")]
    TlsHello,
    /// Sends a datagram; down when the member answers with ICMP port unreachable.
    #[serde(rename = "UDP-CONNECT")]
    UdpConnect,
    /// ICMP echo (unprivileged ICMP socket, else a raw socket). Refused as
    /// unsupported when neither can be opened.
    Ping,
}

/// A pool's health monitor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthMonitorConfig {
    pub kind: HealthMonitorKind,
    /// Interval between checks of one member.
    pub delay: Duration,
    /// Time allowed for one check.
    pub timeout: Duration,
    /// Consecutive successes to go ONLINE (Octavia `max_retries`, "rise").
    pub max_retries: u32,
    /// Consecutive failures to go ERROR (Octavia `max_retries_down`, "fall").
    pub max_retries_down: u32,
    pub admin_state_up: bool,
}

/// An L7 policy: when all rules match, take `action`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct L7PolicyConfig {
    pub id: String,
    /// 1-based evaluation order.
    pub position: u32,
    pub admin_state_up: bool,
    pub rules: Vec<L7RuleConfig>,
    pub action: L7Action,
}

/// What a matching policy does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum L7Action {
    /// Answer 403.
    Reject,
    /// Send the request to this pool.
    RedirectToPool(PoolConfig),
    /// Redirect to `url` (the request path is dropped).
    RedirectToUrl { url: String, http_code: Option<u16> },
    /// Redirect to `prefix` + request path and query.
    RedirectPrefix {
        prefix: String,
        http_code: Option<u16>,
    },
}

/// An L7 rule (Octavia `l7rule`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct L7RuleConfig {
    pub id: String,
    pub rule_type: L7RuleType,
    pub compare_type: L7CompareType,
    /// Header or cookie name for `HEADER` / `COOKIE`.
    pub key: Option<String>,
    pub value: String,
    pub invert: bool,
    pub admin_state_up: bool,
}

/// What part of the request a rule looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum L7RuleType {
    HostName,
    Path,
    FileType,
    Header,
    Cookie,
}

/// How a rule compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum L7CompareType {
    Regex,
    StartsWith,
    EndsWith,
    Contains,
    EqualTo,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_round_trip_and_wire_names() {
        let mut pool = PoolConfig::new("p", PoolProtocol::ProxyV2, LbAlgorithm::SourceIpPort);
        pool.session_persistence = Some(SessionPersistence::AppCookie {
            cookie_name: "JSESSIONID".into(),
        });
        pool.members
            .push(MemberConfig::new("m", "127.0.0.1:8080".parse().unwrap()));
        pool.health_monitor = Some(HealthMonitorConfig {
            kind: HealthMonitorKind::Http {
                method: "GET".into(),
                url_path: "/".into(),
                expected_codes: "200".into(),
            },
            delay: Duration::from_secs(5),
            timeout: Duration::from_secs(3),
            max_retries: 3,
            max_retries_down: 3,
            admin_state_up: true,
        });
        let mut l = ListenerConfig::new(
            "l",
            "192.0.2.10".parse().unwrap(),
            80,
            ListenerProtocol::Http,
        );
        l.allowed_cidrs = vec!["10.0.0.0/8".parse().unwrap()];
        l.l7policies.push(L7PolicyConfig {
            id: "pol".into(),
            position: 1,
            admin_state_up: true,
            rules: vec![L7RuleConfig {
                id: "r".into(),
                rule_type: L7RuleType::FileType,
                compare_type: L7CompareType::EqualTo,
                key: None,
                value: "jpg".into(),
                invert: true,
                admin_state_up: true,
            }],
            action: L7Action::RedirectToPool(pool.clone()),
        });
        l.default_pool = Some(pool);
        let cfg = DataplaneConfig { listeners: vec![l] };
        let json = serde_json::to_string(&cfg).unwrap();
        for name in [
            "\"PROXYV2\"",
            "\"SOURCE_IP_PORT\"",
            "\"APP_COOKIE\"",
            "\"FILE_TYPE\"",
            "\"REDIRECT_TO_POOL\"",
        ] {
            assert!(json.contains(name), "{name} missing in {json}");
        }
        assert_eq!(serde_json::from_str::<DataplaneConfig>(&json).unwrap(), cfg);
        assert_eq!(cfg.listeners[0].pools().count(), 2);
    }
}
