//! The node config file (`fulcrum serve --config node.toml`): parsed strictly (unknown keys
//! are errors) and checked as a whole, so a bad file is refused with a message naming the key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use fulcrum_control::api::{Role, TokenEntry, VipSubnet};
use fulcrum_proto::v1::Quota;
use serde::{Deserialize, Serialize};

/// Default ports (DESIGN.md): admin 9876, peer 9877.
pub const ADMIN_PORT: u16 = 9876;
pub const PEER_PORT: u16 = 9877;

/// A config file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config {key}: {reason}")]
    Invalid { key: String, reason: String },
}

fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        reason: reason.into(),
    }
}

/// One node's configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// This node's Raft id (positive, unique in the cluster, stable with its data dir).
    pub node_id: u64,
    /// Where RocksDB keeps the log and the model.
    pub data_dir: PathBuf,
    /// Admin gRPC API address.
    #[serde(default = "default_admin")]
    pub admin_listen: SocketAddr,
    /// Raft peer gRPC address.
    #[serde(default = "default_peer")]
    pub peer_listen: SocketAddr,
    /// Peer address other nodes use to reach this one (default: `peer_listen`).
    #[serde(default)]
    pub peer_advertise: Option<String>,
    /// Prometheus metrics address (absent = no metrics endpoint).
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// The initial voters: node id -> peer address. Every initial node has the same list;
    /// nodes that join later as learners leave it empty.
    #[serde(default)]
    pub cluster: BTreeMap<String, String>,
    /// Accepted API tokens (SHA-256 digests; see `fulcrum token hash`).
    #[serde(default)]
    pub tokens: Vec<TokenConfig>,
    /// VIP address pools, referred to by `vip_subnet_id`.
    #[serde(default)]
    pub vip_subnets: Vec<VipSubnetConfig>,
    /// Default quotas of every project (-1 = unlimited).
    #[serde(default)]
    pub quota_defaults: QuotaConfig,
    /// Raft timings.
    #[serde(default)]
    pub raft: RaftTimings,
    /// Data plane settings local to this node.
    #[serde(default)]
    pub dataplane: DataplaneSettings,
}

fn default_admin() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], ADMIN_PORT))
}

fn default_peer() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], PEER_PORT))
}

/// One accepted API token.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Hex SHA-256 of the token.
    pub sha256: String,
    pub project_id: String,
    pub role: Role,
}

/// One VIP address pool.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VipSubnetConfig {
    pub name: String,
    pub cidr: String,
    #[serde(default)]
    pub first: Option<String>,
    #[serde(default)]
    pub last: Option<String>,
    /// Interface the VIPs are announced on (empty for loopback VIPs).
    #[serde(default)]
    pub interface: String,
}

/// Default quotas; absent = unlimited.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaConfig {
    pub loadbalancer: Option<i32>,
    pub listener: Option<i32>,
    pub pool: Option<i32>,
    pub member: Option<i32>,
    pub healthmonitor: Option<i32>,
    pub l7policy: Option<i32>,
    pub l7rule: Option<i32>,
}

/// Raft timings in milliseconds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RaftTimings {
    pub heartbeat_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
}

impl Default for RaftTimings {
    fn default() -> Self {
        Self {
            heartbeat_ms: 50,
            election_timeout_min_ms: 200,
            election_timeout_max_ms: 300,
        }
    }
}

/// `[dataplane]`: data plane settings local to this node (not replicated).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataplaneSettings {
    /// One structured record per HTTP request, TCP connection and UDP flow,
    /// logged with target `fulcrum::access` at INFO (default: off).
    #[serde(default)]
    pub access_log: bool,
    /// Threads that carry traffic, each with a socket of every listener (an
    /// `SO_REUSEPORT` group per listener); default: one per core.
    #[serde(default)]
    pub workers: Option<usize>,
    /// The most concurrent connections (UDP: flows) a listener whose
    /// `connection_limit` is -1 takes (Octavia's `[haproxy_amphora]
    /// default_connection_limit`); default 50,000.
    #[serde(default)]
    pub default_connection_limit: Option<u32>,
}

/// The most data plane worker threads a node may ask for.
pub const MAX_DATAPLANE_WORKERS: usize = 1024;

/// What a listener's `connection_limit` of -1 stands for unless
/// `[dataplane] default_connection_limit` says otherwise (Octavia's default).
pub const DEFAULT_CONNECTION_LIMIT: u32 = 50_000;

impl DataplaneSettings {
    /// The worker thread count to start: the configured one, or one per core.
    pub fn workers(&self) -> std::num::NonZeroUsize {
        self.workers
            .and_then(std::num::NonZeroUsize::new)
            .unwrap_or_else(fulcrum_dataplane::default_workers)
    }

    /// The limit that listeners with `connection_limit` -1 get.
    pub fn default_connection_limit(&self) -> u32 {
        self.default_connection_limit
            .unwrap_or(DEFAULT_CONNECTION_LIMIT)
    }
}

/// A checked configuration, in the types the node runs with.
#[derive(Debug, Clone)]
pub struct Checked {
    pub file: NodeConfig,
    pub members: BTreeMap<u64, String>,
    pub peer_advertise: String,
    pub tokens: Vec<TokenEntry>,
    pub vip_subnets: Vec<VipSubnet>,
    pub quota_defaults: Quota,
}

impl NodeConfig {
    /// Reads and checks a config file.
    pub fn load(path: &Path) -> Result<Checked, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        let file: NodeConfig = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.into(),
            message: e.to_string(),
        })?;
        file.check()
    }

    /// Checks a parsed config.
    pub fn check(self) -> Result<Checked, ConfigError> {
        if self.node_id == 0 {
            return Err(invalid("node_id", "must be a positive integer"));
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(invalid("data_dir", "must not be empty"));
        }
        let mut members = BTreeMap::new();
        for (id, addr) in &self.cluster {
            let id: u64 = id.parse().ok().filter(|i| *i > 0).ok_or_else(|| {
                invalid(
                    format!("cluster.{id}"),
                    "node ids must be positive integers",
                )
            })?;
            check_host_port(&format!("cluster.{id}"), addr)?;
            members.insert(id, addr.clone());
        }
        if !members.is_empty() && !members.contains_key(&self.node_id) {
            return Err(invalid(
                "cluster",
                format!(
                    "does not list this node's id {} (leave it empty for a node that joins later)",
                    self.node_id
                ),
            ));
        }
        let peer_advertise = self
            .peer_advertise
            .clone()
            .unwrap_or_else(|| self.peer_listen.to_string());
        check_host_port("peer_advertise", &peer_advertise)?;
        if let Some(own) = members.get(&self.node_id) {
            if *own != peer_advertise {
                return Err(invalid(
                    format!("cluster.{}", self.node_id),
                    format!(
                        "is {own} but this node advertises {peer_advertise} (set peer_advertise)"
                    ),
                ));
            }
        }
        let mut tokens = Vec::new();
        for (i, t) in self.tokens.iter().enumerate() {
            if t.sha256.len() != 64 || !t.sha256.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(invalid(
                    format!("tokens[{i}].sha256"),
                    "must be 64 hex digits (see `fulcrum token hash`)",
                ));
            }
            if t.project_id.is_empty() {
                return Err(invalid(
                    format!("tokens[{i}].project_id"),
                    "must not be empty",
                ));
            }
            tokens.push(TokenEntry {
                sha256: t.sha256.to_ascii_lowercase(),
                project_id: t.project_id.clone(),
                role: t.role,
            });
        }
        let mut vip_subnets: Vec<VipSubnet> = Vec::new();
        for (i, s) in self.vip_subnets.iter().enumerate() {
            if s.name.is_empty() {
                return Err(invalid(
                    format!("vip_subnets[{i}].name"),
                    "must not be empty",
                ));
            }
            if vip_subnets.iter().any(|o| o.name == s.name) {
                return Err(invalid(
                    format!("vip_subnets[{i}].name"),
                    format!("'{}' is defined twice", s.name),
                ));
            }
            let subnet = VipSubnet::parse(
                &s.name,
                &s.cidr,
                s.first.as_deref(),
                s.last.as_deref(),
                &s.interface,
            )
            .map_err(|e| invalid(format!("vip_subnets[{i}]"), e.to_string()))?;
            vip_subnets.push(subnet);
        }
        let q = &self.quota_defaults;
        for (key, v) in [
            ("loadbalancer", q.loadbalancer),
            ("listener", q.listener),
            ("pool", q.pool),
            ("member", q.member),
            ("healthmonitor", q.healthmonitor),
            ("l7policy", q.l7policy),
            ("l7rule", q.l7rule),
        ] {
            if v.is_some_and(|v| v < -1) {
                return Err(invalid(
                    format!("quota_defaults.{key}"),
                    "must be -1 (unlimited) or more",
                ));
            }
        }
        let quota_defaults = Quota {
            project_id: String::new(),
            loadbalancer: q.loadbalancer,
            listener: q.listener,
            pool: q.pool,
            member: q.member,
            healthmonitor: q.healthmonitor,
            l7policy: q.l7policy,
            l7rule: q.l7rule,
        };
        if self
            .dataplane
            .workers
            .is_some_and(|w| w == 0 || w > MAX_DATAPLANE_WORKERS)
        {
            return Err(invalid(
                "dataplane.workers",
                format!(
                    "must be between 1 and {MAX_DATAPLANE_WORKERS} (leave it out for one per core)"
                ),
            ));
        }
        if self.dataplane.default_connection_limit == Some(0) {
            return Err(invalid(
                "dataplane.default_connection_limit",
                "must be 1 or more (leave it out for 50,000)",
            ));
        }
        let r = &self.raft;
        // A follower stands for election only after the leader's Raft lease
        // (election_timeout_max_ms) and then a random election timeout have passed without a
        // heartbeat; a VIP lease (four heartbeats) must run out well within the Raft lease, so
        // a deposed leader has let its VIPs go before anyone else can lead.
        if r.heartbeat_ms == 0
            || r.election_timeout_min_ms < 2 * r.heartbeat_ms
            || r.election_timeout_max_ms <= 4 * r.heartbeat_ms
            || r.election_timeout_max_ms <= r.election_timeout_min_ms
        {
            return Err(invalid(
                "raft",
                "need 0 < 2 * heartbeat_ms <= election_timeout_min_ms < election_timeout_max_ms and 4 * heartbeat_ms < election_timeout_max_ms (VIP leases last four heartbeats and must run out before the Raft leader lease)",
            ));
        }
        Ok(Checked {
            file: self,
            members,
            peer_advertise,
            tokens,
            vip_subnets,
            quota_defaults,
        })
    }
}

fn check_host_port(key: &str, value: &str) -> Result<(), ConfigError> {
    let ok = value
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
    if !ok {
        return Err(invalid(key, format!("'{value}' must be host:port")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Checked, ConfigError> {
        let file: NodeConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: "test.toml".into(),
            message: e.to_string(),
        })?;
        file.check()
    }

    const GOOD: &str = r#"
node_id = 1
data_dir = "/tmp/x"
peer_listen = "127.0.0.1:9877"
[cluster]
1 = "127.0.0.1:9877"
2 = "127.0.0.2:9877"
[[tokens]]
sha256 = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
project_id = "admin"
role = "admin"
[[vip_subnets]]
name = "private-subnet"
cidr = "127.0.10.0/24"
first = "127.0.10.10"
last = "127.0.10.250"
"#;

    #[test]
    fn good_config_is_accepted() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.members.len(), 2);
        assert_eq!(c.tokens[0].role, Role::Admin);
        assert_eq!(c.vip_subnets[0].name, "private-subnet");
        assert_eq!(c.file.admin_listen.port(), ADMIN_PORT);
    }

    #[test]
    fn dataplane_access_log_is_off_unless_set() {
        assert!(!parse(GOOD).unwrap().file.dataplane.access_log);
        let on = format!("{GOOD}[dataplane]\naccess_log = true\n");
        assert!(parse(&on).unwrap().file.dataplane.access_log);
        let off = format!("{GOOD}[dataplane]\naccess_log = false\n");
        assert!(!parse(&off).unwrap().file.dataplane.access_log);
        for (bad, needle) in [
            ("[dataplane]\naccess_log = \"yes\"\n", "access_log"),
            (
                "[dataplane]\naccess_logs = true\n",
                "unknown field `access_logs`",
            ),
        ] {
            let err = parse(&format!("{GOOD}{bad}")).expect_err(bad).to_string();
            assert!(err.contains(needle), "'{err}' should mention '{needle}'");
        }
    }

    #[test]
    fn dataplane_workers_default_to_one_per_core_and_are_bounded() {
        let cores = std::thread::available_parallelism().unwrap();
        assert_eq!(parse(GOOD).unwrap().file.dataplane.workers(), cores);
        let three = format!("{GOOD}[dataplane]\nworkers = 3\n");
        assert_eq!(parse(&three).unwrap().file.dataplane.workers().get(), 3);
        for bad in [
            "workers = 0",
            "workers = 1025",
            "workers = -1",
            "workers = \"2\"",
        ] {
            let err = parse(&format!("{GOOD}[dataplane]\n{bad}\n"))
                .expect_err(bad)
                .to_string();
            assert!(err.contains("workers"), "'{err}' should name the key");
        }
    }

    #[test]
    fn default_connection_limit_is_octavias_unless_set() {
        let dp = |extra: &str| parse(&format!("{GOOD}[dataplane]\n{extra}\n"));
        assert_eq!(
            parse(GOOD)
                .unwrap()
                .file
                .dataplane
                .default_connection_limit(),
            50_000
        );
        let set = dp("default_connection_limit = 7").unwrap();
        assert_eq!(set.file.dataplane.default_connection_limit(), 7);
        for bad in [
            "default_connection_limit = 0",
            "default_connection_limit = -1",
            "default_connection_limit = 4294967296",
        ] {
            let err = dp(bad).expect_err(bad).to_string();
            assert!(
                err.contains("default_connection_limit"),
                "'{err}' should name the key"
            );
        }
    }

    #[test]
    fn bad_configs_name_the_key() {
        let cases: &[(&str, &str, &str)] = &[
            ("node_id = 1", "node_id = 0", "node_id"),
            ("node_id = 1", "node_id = 1\nbogus = 3", "unknown field `bogus`"),
            ("1 = \"127.0.0.1:9877\"", "1 = \"127.0.0.1\"", "cluster.1"),
            ("1 = \"127.0.0.1:9877\"", "x = \"127.0.0.1:9877\"", "cluster.x"),
            ("1 = \"127.0.0.1:9877\"\n2", "3 = \"127.0.0.3:9877\"\n2", "does not list this node"),
            ("project_id = \"admin\"", "project_id = \"\"", "tokens[0].project_id"),
            ("2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824", "abc", "tokens[0].sha256"),
            ("role = \"admin\"", "role = \"root\"", "unknown variant `root`"),
            ("cidr = \"127.0.10.0/24\"", "cidr = \"127.0.10.0/40\"", "vip_subnets[0]"),
            ("first = \"127.0.10.10\"", "first = \"127.0.11.10\"", "vip_subnets[0]"),
            ("last = \"127.0.10.250\"", "last = \"127.0.10.250\"\n[raft]\nheartbeat_ms = 500\nelection_timeout_min_ms = 300\nelection_timeout_max_ms = 600", "raft"),
        ];
        for (from, to, needle) in cases {
            assert!(GOOD.contains(from), "{from}");
            let text = GOOD.replacen(from, to, 1);
            let err = parse(&text).expect_err(needle).to_string();
            assert!(err.contains(needle), "'{err}' should mention '{needle}'");
        }
    }
}
