//! The lab: a bridge in its own network namespace, one namespace per node and one for the
//! client, each wired to the bridge by a veth pair; real `fulcrum serve` processes in the node
//! namespaces; faults injected with `ip` and signals; everything undone on drop.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use fulcrum_proto::v1::ClusterStatus;
use nix::sys::signal::{kill as send_signal, Signal};
use nix::unistd::Pid;
use sha2::{Digest, Sha256};

use crate::client::{self, LbSummary, ADMIN_TOKEN};
use crate::delay::{DelayStats, Delayer};
use crate::netns::{enter_netns, ip, ip_output, ip_stdout, NetnsRuntime, NETNS_DIR};
use crate::nft::{Family, Hook, Match, QueueRule};

/// A node's Raft id (1-based, as in the config files).
pub type NodeId = u64;

/// Admin API port of every node (each node has its own namespace, so ports never clash).
pub const ADMIN_PORT: u16 = 9876;
/// Raft peer port of every node.
pub const PEER_PORT: u16 = 9877;
/// How long one status poll may take before the node counts as not answering.
const STATUS_TIMEOUT: Duration = Duration::from_millis(400);
/// First `ip rule` preference used for partition rules (the local table moves to 1000).
const RULE_PREF_BASE: u32 = 100;
/// Where the local table's lookup rule goes so that partition rules can come before it.
const LOCAL_RULE_PREF: u32 = 1000;
/// Host number of the watcher namespace on the lab subnet.
const WATCHER_HOST: u8 = 101;

/// Why a lab could not be built.
#[derive(Debug)]
pub enum LabError {
    /// The machine cannot host a lab (not root, no `ip`, namespaces refused): tests skip.
    Unsupported(String),
    /// Something that should work did not (missing binary, a node that does not start).
    Failed(String),
}

impl std::fmt::Display for LabError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LabError::Unsupported(why) => write!(f, "lab unsupported here: {why}"),
            LabError::Failed(why) => write!(f, "lab setup failed: {why}"),
        }
    }
}

/// Knobs of a lab.
#[derive(Debug, Clone)]
pub struct LabConfig {
    /// Number of nodes (initial voters).
    pub nodes: u64,
    /// Raft timings in milliseconds (heartbeat, election timeout min, max); `None` leaves the
    /// node's defaults (no `[raft]` section in the config).
    pub raft_ms: Option<(u64, u64, u64)>,
    /// `FULCRUM_LOG` of the nodes (default: `$FULCRUM_CHAOS_LOG`, else `info,openraft=warn`).
    pub log_filter: String,
    /// IPv6 on the lab's link too: every namespace gets `fd77:0:K::<host>/64` on `eth0`
    /// (no DAD), and the nodes a second VIP subnet `lab6` (`fd77:0:K::200-250`, `eth0`).
    pub ipv6: bool,
}

impl Default for LabConfig {
    fn default() -> Self {
        LabConfig {
            nodes: 3,
            raft_ms: None,
            log_filter: std::env::var("FULCRUM_CHAOS_LOG")
                .unwrap_or_else(|_| "info,openraft=warn".into()),
            ipv6: false,
        }
    }
}

/// What a node process is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcState {
    /// Running normally.
    Running,
    /// Frozen with SIGSTOP.
    Stopped,
    /// Not running (killed, stopped gracefully, or never started).
    Down,
}

struct NodeProc {
    id: NodeId,
    ns: String,
    /// Name of the bridge-side end of its veth pair (in the lab namespace).
    bridge_port: String,
    ip: Ipv4Addr,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    state: ProcState,
    starts: u32,
}

/// What [`Lab::watch_leader_for`] saw.
#[derive(Debug, Clone, Default)]
pub struct LeaderLog {
    /// (term, leader) in the order seen.
    pub leaders: Vec<(u64, NodeId)>,
    /// The longest stretch without a leader a quorum agreed on.
    pub longest_leaderless: Duration,
}

impl LeaderLog {
    /// `term 3: node 1, term 4: node 2`.
    pub fn describe(&self) -> String {
        let parts: Vec<String> = self
            .leaders
            .iter()
            .map(|(t, l)| format!("term {t}: node {l}"))
            .collect();
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(", ")
        }
    }
}

/// A delayer running in one node's namespace.
struct NodeDelay {
    /// The node whose namespace holds the rules and the queue.
    at: NodeId,
    /// The peer for a pair delay (`None`: the node's whole link).
    peer: Option<NodeId>,
    delayer: Delayer,
}

/// A partition rule installed in one namespace: drop everything arriving from `from`.
struct DropRule {
    ns: String,
    pref: u32,
    from: Ipv4Addr,
}

/// A lab of `fulcrum serve` processes in network namespaces. Dropping it kills the processes
/// it started and deletes its namespaces, also when a test panics (then it prints the tails
/// of the node logs and keeps the log directory).
pub struct Lab {
    prefix: String,
    lab_ns: String,
    client_ns: String,
    watcher_ns: String,
    namespaces: Vec<String>,
    subnet: [u8; 3],
    dir: Option<tempfile::TempDir>,
    bin: PathBuf,
    cfg: LabConfig,
    nodes: Vec<NodeProc>,
    client: Option<NetnsRuntime>,
    rules: Vec<DropRule>,
    next_pref: u32,
    cut: BTreeSet<NodeId>,
    delays: Vec<NodeDelay>,
    next_queue: u16,
}

static LABS_IN_PROCESS: AtomicU32 = AtomicU32::new(0);

/// Writes a line straight to the process's stderr, past the test harness's output capture,
/// so SKIPPED lines and measurements show up in `cargo test` output.
pub fn say(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{line}");
}

impl Lab {
    /// Builds a lab with the default config (three nodes) and waits for a leader; prints a
    /// loud `SKIPPED: <why>` line and returns `None` where the machine cannot host one.
    /// Panics on any other failure.
    pub async fn start_or_skip(test: &str) -> Option<Lab> {
        Self::start_with_or_skip(test, LabConfig::default()).await
    }

    /// [`Lab::start_or_skip`] with a config.
    pub async fn start_with_or_skip(test: &str, cfg: LabConfig) -> Option<Lab> {
        match Lab::build(cfg).await {
            Ok(lab) => Some(lab),
            Err(LabError::Unsupported(why)) => {
                say(&format!("\n**********\nSKIPPED: {test}: {why}\n**********"));
                None
            }
            Err(e) => panic!("{test}: {e}"),
        }
    }

    /// Checks the machine, builds the namespaces and the bridge, starts the nodes and waits
    /// until they elected a leader.
    pub async fn build(cfg: LabConfig) -> Result<Lab, LabError> {
        preflight()?;
        let bin = find_fulcrum_bin()?;
        cleanup_stale_labs();
        let pid = std::process::id();
        let seq = LABS_IN_PROCESS.fetch_add(1, Ordering::Relaxed);
        let prefix = if seq == 0 {
            format!("fc{pid}")
        } else {
            format!("fc{pid}_{seq}")
        };
        let subnet = [10, 77, ((pid + seq) % 200) as u8];
        let dir = tempfile::Builder::new()
            .prefix(&format!("{prefix}-"))
            .tempdir()
            .map_err(|e| LabError::Failed(format!("temp dir: {e}")))?;
        let mut lab = Lab {
            lab_ns: format!("{prefix}lab"),
            client_ns: format!("{prefix}c"),
            watcher_ns: format!("{prefix}w"),
            prefix,
            namespaces: Vec::new(),
            subnet,
            dir: Some(dir),
            bin,
            cfg,
            nodes: Vec::new(),
            client: None,
            rules: Vec::new(),
            next_pref: RULE_PREF_BASE,
            cut: BTreeSet::new(),
            delays: Vec::new(),
            next_queue: 0,
        };
        // From here on, Drop undoes whatever was built.
        lab.build_network()?;
        lab.client = Some(NetnsRuntime::start(&lab.client_ns).map_err(LabError::Failed)?);
        lab.write_configs()
            .map_err(|e| LabError::Failed(format!("configs: {e}")))?;
        for id in lab.node_ids() {
            lab.start_node(id);
        }
        let leader = lab.try_wait_for_leader(Duration::from_secs(30)).await;
        if leader.is_none() {
            lab.dump_logs();
            return Err(LabError::Failed(format!(
                "no leader within 30 s; logs in {}",
                lab.log_dir().display()
            )));
        }
        Ok(lab)
    }

    fn build_network(&mut self) -> Result<(), LabError> {
        let lab_ns = self.lab_ns.clone();
        self.add_netns(&lab_ns)?;
        ip(&["-n", &lab_ns, "link", "set", "lo", "up"]).map_err(LabError::Failed)?;
        ip(&["-n", &lab_ns, "link", "add", "br0", "type", "bridge"]).map_err(LabError::Failed)?;
        ip(&["-n", &lab_ns, "link", "set", "br0", "up"]).map_err(LabError::Failed)?;
        if self.cfg.ipv6 {
            // Flood IPv6 multicast (neighbour solicitations) to every port rather than only
            // to ports a host's MLD report registered: no querier runs on this bridge.
            ip(&[
                "-n",
                &lab_ns,
                "link",
                "set",
                "br0",
                "type",
                "bridge",
                "mcast_snooping",
                "0",
            ])
            .map_err(LabError::Failed)?;
        }
        let mut hosts: Vec<(String, String, Ipv4Addr)> = Vec::new();
        for id in 1..=self.cfg.nodes {
            hosts.push((
                format!("{}n{id}", self.prefix),
                format!("vn{id}"),
                self.addr(id as u8),
            ));
        }
        hosts.push((self.client_ns.clone(), "vc".into(), self.addr(100)));
        hosts.push((
            self.watcher_ns.clone(),
            "vw".into(),
            self.addr(WATCHER_HOST),
        ));
        for (ns, port, addr) in &hosts {
            self.add_netns(ns)?;
            if self.cfg.ipv6 {
                // No DAD: addresses (link-local too) are usable at once.
                set_sysctls(
                    ns,
                    &[
                        ("net/ipv6/conf/all/accept_dad", "0"),
                        ("net/ipv6/conf/default/accept_dad", "0"),
                    ],
                )
                .map_err(LabError::Failed)?;
            }
            let cidr = format!("{addr}/24");
            for args in [
                vec!["-n", ns, "link", "set", "lo", "up"],
                vec![
                    "-n", &lab_ns, "link", "add", port, "type", "veth", "peer", "name", "eth0",
                    "netns", ns,
                ],
                vec!["-n", &lab_ns, "link", "set", port, "master", "br0"],
                vec!["-n", &lab_ns, "link", "set", port, "up"],
                vec!["-n", ns, "addr", "add", &cidr, "dev", "eth0"],
                vec!["-n", ns, "link", "set", "eth0", "up"],
                // Partition rules must come before the local table, which answers first.
                vec![
                    "-n",
                    ns,
                    "rule",
                    "add",
                    "pref",
                    &LOCAL_RULE_PREF.to_string(),
                    "lookup",
                    "local",
                ],
                vec!["-n", ns, "rule", "del", "pref", "0"],
            ] {
                ip(&args).map_err(LabError::Failed)?;
            }
            if self.cfg.ipv6 {
                let host = addr.octets()[3];
                let cidr6 = format!("{}/64", self.addr6(u16::from(host)));
                ip(&["-n", ns, "addr", "add", &cidr6, "dev", "eth0", "nodad"])
                    .map_err(LabError::Failed)?;
            }
        }
        if self.cfg.ipv6 {
            // IPv6 brings its addresses and prefix route up only once the link has carrier
            // (a linkwatch event, up to a second later); until then IPv6 is unreachable.
            let prefix = format!("{}/64", self.addr6(0));
            let deadline = Instant::now() + Duration::from_secs(10);
            for (ns, _, _) in &hosts {
                loop {
                    let routes = ip_stdout(&["-n", ns, "-6", "route", "show", "dev", "eth0"])
                        .unwrap_or_default();
                    if routes.contains(&prefix) {
                        break;
                    }
                    if Instant::now() > deadline {
                        return Err(LabError::Failed(format!(
                            "no IPv6 route {prefix} in {ns} within 10 s"
                        )));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
        let dir = self.log_dir().to_path_buf();
        for (i, (ns, port, addr)) in hosts.into_iter().take(self.cfg.nodes as usize).enumerate() {
            let id = i as NodeId + 1;
            self.nodes.push(NodeProc {
                id,
                ns,
                bridge_port: port,
                ip: addr,
                config: dir.join(format!("node{id}.toml")),
                log: dir.join(format!("node{id}.log")),
                child: None,
                state: ProcState::Down,
                starts: 0,
            });
        }
        Ok(())
    }

    fn add_netns(&mut self, ns: &str) -> Result<(), LabError> {
        match ip(&["netns", "add", ns]) {
            Ok(()) => {
                self.namespaces.push(ns.to_string());
                Ok(())
            }
            Err(e) if self.namespaces.is_empty() => Err(LabError::Unsupported(e)),
            Err(e) => Err(LabError::Failed(e)),
        }
    }

    fn write_configs(&self) -> std::io::Result<()> {
        let hash = hex::encode(Sha256::digest(ADMIN_TOKEN.as_bytes()));
        let mut members = String::new();
        for n in &self.nodes {
            let _ = writeln!(members, "{} = \"{}:{PEER_PORT}\"", n.id, n.ip);
        }
        let [a, b, c] = self.subnet;
        for n in &self.nodes {
            let text = format!(
                r#"node_id = {id}
data_dir = "{data}"
admin_listen = "{ip}:{ADMIN_PORT}"
peer_listen = "{ip}:{PEER_PORT}"

[cluster]
{members}
[[tokens]]
sha256 = "{hash}"
project_id = "admin"
role = "admin"

[[vip_subnets]]
name = "lab"
cidr = "{a}.{b}.{c}.0/24"
first = "{a}.{b}.{c}.200"
last = "{a}.{b}.{c}.250"
interface = "eth0"
{lab6}{raft}"#,
                id = n.id,
                ip = n.ip,
                data = self.log_dir().join(format!("data{}", n.id)).display(),
                lab6 = if self.cfg.ipv6 {
                    format!(
                        "\n[[vip_subnets]]\nname = \"lab6\"\ncidr = \"{}/64\"\nfirst = \"{}\"\nlast = \"{}\"\ninterface = \"eth0\"\n",
                        self.addr6(0),
                        self.addr6(0x200),
                        self.addr6(0x250)
                    )
                } else {
                    String::new()
                },
                raft = match self.cfg.raft_ms {
                    None => String::new(),
                    Some((hb, emin, emax)) => format!(
                        "\n[raft]\nheartbeat_ms = {hb}\nelection_timeout_min_ms = {emin}\nelection_timeout_max_ms = {emax}\n"
                    ),
                },
            );
            std::fs::write(&n.config, text)?;
        }
        Ok(())
    }

    // ---------------------------------------------------------------- addresses and names

    fn addr(&self, host: u8) -> Ipv4Addr {
        let [a, b, c] = self.subnet;
        Ipv4Addr::new(a, b, c, host)
    }

    /// `fd77:0:K::<host>` (host in hex groups: `addr6(0x200)` is `fd77:0:K::200`).
    fn addr6(&self, host: u16) -> Ipv6Addr {
        Ipv6Addr::new(0xfd77, 0, u16::from(self.subnet[2]), 0, 0, 0, 0, host)
    }

    /// Whether the lab's link has IPv6 ([`LabConfig::ipv6`]).
    pub fn has_ipv6(&self) -> bool {
        self.cfg.ipv6
    }

    /// A node's IPv6 address on the lab bridge (labs with [`LabConfig::ipv6`]).
    pub fn node_ip6(&self, id: NodeId) -> Ipv6Addr {
        assert!(self.cfg.ipv6, "this lab has no IPv6");
        self.addr6(u16::from(self.node(id).ip.octets()[3]))
    }

    /// The client namespace's IPv6 address (labs with [`LabConfig::ipv6`]).
    pub fn client_ip6(&self) -> Ipv6Addr {
        assert!(self.cfg.ipv6, "this lab has no IPv6");
        self.addr6(100)
    }

    /// The watcher namespace's IPv6 address (labs with [`LabConfig::ipv6`]).
    pub fn watcher_ip6(&self) -> Ipv6Addr {
        assert!(self.cfg.ipv6, "this lab has no IPv6");
        self.addr6(u16::from(WATCHER_HOST))
    }

    /// The node ids, 1..=n.
    pub fn node_ids(&self) -> Vec<NodeId> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    fn node(&self, id: NodeId) -> &NodeProc {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .unwrap_or_else(|| panic!("no node {id} in this lab"))
    }

    fn node_mut(&mut self, id: NodeId) -> &mut NodeProc {
        self.nodes
            .iter_mut()
            .find(|n| n.id == id)
            .unwrap_or_else(|| panic!("no node {id} in this lab"))
    }

    /// A node's address on the lab bridge.
    pub fn node_ip(&self, id: NodeId) -> Ipv4Addr {
        self.node(id).ip
    }

    /// A node's admin API address.
    pub fn admin_addr(&self, id: NodeId) -> SocketAddr {
        SocketAddr::new(self.node(id).ip.into(), ADMIN_PORT)
    }

    /// The client namespace's address.
    pub fn client_ip(&self) -> Ipv4Addr {
        self.addr(100)
    }

    /// The lab's /24 (first three octets).
    pub fn subnet(&self) -> [u8; 3] {
        self.subnet
    }

    /// The node's network namespace name.
    pub fn node_netns(&self, id: NodeId) -> &str {
        &self.node(id).ns
    }

    /// The client namespace's name.
    pub fn client_netns(&self) -> &str {
        &self.client_ns
    }

    /// The watcher namespace's name: a second host on the bridge (`10.77.K.101`, `eth0`)
    /// that runs nothing by itself. ARP probes sent from there leave the client's neighbour
    /// cache alone, so the client sees a VIP move only through the nodes' announcements.
    pub fn watcher_netns(&self) -> &str {
        &self.watcher_ns
    }

    /// The watcher namespace's address.
    pub fn watcher_ip(&self) -> Ipv4Addr {
        self.addr(WATCHER_HOST)
    }

    /// The MAC address of a node's `eth0`.
    pub fn node_mac(&self, id: NodeId) -> Result<String, String> {
        let out = ip_stdout(&["-n", &self.node(id).ns, "-o", "link", "show", "eth0"])?;
        out.split_whitespace()
            .skip_while(|w| *w != "link/ether")
            .nth(1)
            .map(|m| m.to_ascii_lowercase())
            .ok_or_else(|| format!("no MAC in `{out}`"))
    }

    /// The directory holding configs, data dirs and logs.
    pub fn log_dir(&self) -> &Path {
        self.dir
            .as_ref()
            .map(|d| d.path())
            .expect("the lab's directory lives as long as the lab")
    }

    /// The client namespace's runtime: futures run there open their sockets in the client
    /// namespace.
    pub fn client(&self) -> &NetnsRuntime {
        self.client
            .as_ref()
            .expect("the client runtime lives as long as the lab")
    }

    /// What a node's process is doing.
    pub fn state(&self, id: NodeId) -> ProcState {
        self.node(id).state
    }

    /// Whether a node runs (not killed, not SIGSTOPped).
    pub fn is_running(&self, id: NodeId) -> bool {
        self.state(id) == ProcState::Running
    }

    /// Nodes that run and whose link is up: the ones the client can expect answers from.
    pub fn reachable_nodes(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|n| n.state == ProcState::Running && !self.cut.contains(&n.id))
            .map(|n| n.id)
            .collect()
    }

    /// Quorum size of the initial membership.
    pub fn quorum(&self) -> usize {
        self.nodes.len() / 2 + 1
    }

    // ---------------------------------------------------------------- processes

    fn start_node(&mut self, id: NodeId) {
        let bin = self.bin.clone();
        let filter = self.cfg.log_filter.clone();
        let node = self.node_mut(id);
        assert!(node.child.is_none(), "node {id} is already running");
        node.starts += 1;
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .unwrap_or_else(|e| panic!("open {}: {e}", node.log.display()));
        let _ = writeln!(
            log,
            "===== chaos lab: start #{} of node {id} =====",
            node.starts
        );
        let child = Command::new("ip")
            .args(["netns", "exec", &node.ns])
            .arg(&bin)
            .args(["serve", "--config"])
            .arg(&node.config)
            .env("FULCRUM_LOG", filter)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn node {id}: {e}"));
        // `ip netns exec` execs the binary, so this pid is the node's.
        node.child = Some(child);
        node.state = ProcState::Running;
    }

    fn pid(&self, id: NodeId) -> Option<Pid> {
        self.node(id)
            .child
            .as_ref()
            .map(|c| Pid::from_raw(c.id() as i32))
    }

    /// Starts a node that is down (after [`Lab::kill`] or [`Lab::stop`]).
    pub fn start(&mut self, id: NodeId) {
        self.start_node(id);
    }

    /// kill -9 a node.
    pub fn kill(&mut self, id: NodeId) {
        let node = self.node_mut(id);
        if let Some(mut c) = node.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        node.state = ProcState::Down;
    }

    /// kill -9 every node at once (power loss).
    pub fn kill_all(&mut self) {
        for id in self.node_ids() {
            if let Some(pid) = self.pid(id) {
                let _ = send_signal(pid, Signal::SIGKILL);
            }
        }
        for id in self.node_ids() {
            self.kill(id);
        }
    }

    /// SIGTERM a node and wait up to 10 s for a clean exit (then kill -9). Returns whether
    /// it exited cleanly on its own.
    pub fn stop(&mut self, id: NodeId) -> bool {
        let pid = self.pid(id);
        let node = self.node_mut(id);
        let Some(mut c) = node.child.take() else {
            return true;
        };
        if let Some(pid) = pid {
            if node.state == ProcState::Stopped {
                let _ = send_signal(pid, Signal::SIGCONT);
            }
            let _ = send_signal(pid, Signal::SIGTERM);
        }
        node.state = ProcState::Down;
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = c.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
        say(&format!(
            "chaos lab: node {id} did not exit within 10 s of SIGTERM; killed it (log: {})",
            self.node(id).log.display()
        ));
        false
    }

    /// Graceful restart: SIGTERM, wait for the exit, start again.
    pub fn restart(&mut self, id: NodeId) {
        self.stop(id);
        self.start_node(id);
    }

    /// SIGTERMs every running node at once and waits up to 10 s for them all to exit (then
    /// kill -9). Returns how long each node took to exit (`None`: it had to be killed).
    pub fn stop_all(&mut self) -> BTreeMap<NodeId, Option<Duration>> {
        let t0 = Instant::now();
        for id in self.node_ids() {
            if let Some(pid) = self.pid(id) {
                let _ = send_signal(pid, Signal::SIGCONT);
                let _ = send_signal(pid, Signal::SIGTERM);
            }
        }
        let deadline = t0 + Duration::from_secs(10);
        let mut out = BTreeMap::new();
        loop {
            for n in &mut self.nodes {
                if let Some(c) = n.child.as_mut() {
                    if let Ok(Some(_)) = c.try_wait() {
                        n.child = None;
                        n.state = ProcState::Down;
                        out.insert(n.id, Some(t0.elapsed()));
                    }
                } else {
                    n.state = ProcState::Down;
                    out.entry(n.id).or_insert(Some(Duration::ZERO));
                }
            }
            if self.nodes.iter().all(|n| n.child.is_none()) {
                return out;
            }
            if Instant::now() > deadline {
                for id in self.node_ids() {
                    if self.node(id).child.is_some() {
                        say(&format!(
                            "chaos lab: node {id} did not exit within 10 s of SIGTERM; killed it (log: {})",
                            self.node(id).log.display()
                        ));
                        self.kill(id);
                        out.insert(id, None);
                    }
                }
                return out;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops every node gracefully ([`Lab::stop_all`]), then starts them all again.
    pub fn restart_all(&mut self) -> BTreeMap<NodeId, Option<Duration>> {
        let stops = self.stop_all();
        for id in self.node_ids() {
            self.start_node(id);
        }
        stops
    }

    /// Starts every node that is down.
    pub fn start_all(&mut self) {
        for id in self.node_ids() {
            if self.state(id) == ProcState::Down {
                self.start_node(id);
            }
        }
    }

    /// Freezes a node's process (SIGSTOP): it holds its sockets but answers nothing.
    pub fn stop_process(&mut self, id: NodeId) {
        let pid = self
            .pid(id)
            .unwrap_or_else(|| panic!("node {id} is not running"));
        send_signal(pid, Signal::SIGSTOP).unwrap_or_else(|e| panic!("SIGSTOP node {id}: {e}"));
        self.node_mut(id).state = ProcState::Stopped;
    }

    /// Thaws a node frozen with [`Lab::stop_process`] (SIGCONT).
    pub fn cont(&mut self, id: NodeId) {
        let pid = self
            .pid(id)
            .unwrap_or_else(|| panic!("node {id} is not running"));
        send_signal(pid, Signal::SIGCONT).unwrap_or_else(|e| panic!("SIGCONT node {id}: {e}"));
        self.node_mut(id).state = ProcState::Running;
    }

    /// Whether a node's process exited by itself (a crash); reaps it if so.
    pub fn exited_by_itself(&mut self, id: NodeId) -> Option<std::process::ExitStatus> {
        let node = self.node_mut(id);
        let status = node
            .child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten());
        if status.is_some() {
            node.child = None;
            node.state = ProcState::Down;
        }
        status
    }

    // ---------------------------------------------------------------- network faults

    /// Pulls a node's cable: its veth's bridge-side end goes down, so nothing passes either way.
    pub fn cut(&mut self, id: NodeId) {
        let port = self.node(id).bridge_port.clone();
        ip(&["-n", &self.lab_ns, "link", "set", &port, "down"])
            .unwrap_or_else(|e| panic!("cut node {id}: {e}"));
        self.cut.insert(id);
    }

    /// Plugs a cut node's cable back in.
    pub fn heal(&mut self, id: NodeId) {
        let port = self.node(id).bridge_port.clone();
        ip(&["-n", &self.lab_ns, "link", "set", &port, "up"])
            .unwrap_or_else(|e| panic!("heal node {id}: {e}"));
        self.cut.remove(&id);
    }

    /// Splits the nodes: every packet between a node of `a` and a node of `b` is silently
    /// dropped on arrival (an `ip rule ... blackhole` before the local table in the receiving
    /// node's namespace). The client still reaches every node.
    pub fn partition(&mut self, a: &[NodeId], b: &[NodeId]) {
        for &x in a {
            for &y in b {
                self.drop_from(x, y);
                self.drop_from(y, x);
            }
        }
    }

    /// Drops, in `at`'s namespace, every packet arriving from `from` (one direction only).
    pub fn drop_from(&mut self, at: NodeId, from: NodeId) {
        let ns = self.node(at).ns.clone();
        let from_ip = self.node(from).ip;
        let pref = self.next_pref;
        self.next_pref += 1;
        assert!(pref < LOCAL_RULE_PREF, "too many partition rules");
        ip(&[
            "-n",
            &ns,
            "rule",
            "add",
            "pref",
            &pref.to_string(),
            "from",
            &format!("{from_ip}/32"),
            "blackhole",
        ])
        .unwrap_or_else(|e| panic!("partition rule on node {at}: {e}"));
        self.rules.push(DropRule {
            ns,
            pref,
            from: from_ip,
        });
    }

    /// Loses every packet `from` sends to `to`, while `to` -> `from` still flows: a one-way
    /// partition (the packets are dropped on arrival at `to`, see [`Lab::drop_from`]). Undone
    /// by [`Lab::heal_all`].
    pub fn cut_one_way(&mut self, from: NodeId, to: NodeId) {
        self.drop_from(to, from);
    }

    /// Delays every IP packet node `id` sends on its link by `delay`, as netem on its `eth0`
    /// would: each round trip with the node grows by `delay` (packets it receives are not
    /// held). Replaces an earlier delay of the node. See [`crate::delay`].
    pub fn delay(&mut self, id: NodeId, delay: Duration) {
        self.delay_jitter(id, delay, Duration::ZERO);
    }

    /// [`Lab::delay`] with a uniform jitter of up to ±`jitter` per packet (order kept).
    pub fn delay_jitter(&mut self, id: NodeId, delay: Duration, jitter: Duration) {
        self.undelay(id);
        self.start_delayer(id, None, delay, jitter);
    }

    /// Delays the packets between nodes `a` and `b` by `delay` in each direction (a round
    /// trip between them grows by twice `delay`); their other traffic is not touched.
    pub fn delay_between(&mut self, a: NodeId, b: NodeId, delay: Duration) {
        assert_ne!(a, b, "a pair delay needs two nodes");
        self.start_delayer(a, Some(b), delay, Duration::ZERO);
        self.start_delayer(b, Some(a), delay, Duration::ZERO);
    }

    fn start_delayer(
        &mut self,
        at: NodeId,
        peer: Option<NodeId>,
        delay: Duration,
        jitter: Duration,
    ) {
        let queue = self.next_queue;
        self.next_queue += 1;
        let mut families = vec![(Family::Ipv4, "ip")];
        if self.cfg.ipv6 {
            families.push((Family::Ipv6, "ip6"));
        }
        let rules = families
            .into_iter()
            .map(|(family, tag)| {
                let mut matches = vec![Match::OutIface("eth0".into())];
                if let Some(p) = peer {
                    matches.push(Match::Daddr(match family {
                        Family::Ipv4 => IpAddr::V4(self.node_ip(p)),
                        Family::Ipv6 => IpAddr::V6(self.node_ip6(p)),
                    }));
                }
                QueueRule {
                    table: format!("chaos_delay_{tag}"),
                    chain: "out".into(),
                    family,
                    hook: Hook::Output,
                    matches,
                    queue,
                }
            })
            .collect();
        let ns = self.node(at).ns.clone();
        let delayer = Delayer::start(&ns, queue, rules, delay, jitter)
            .unwrap_or_else(|e| panic!("delay node {at}'s link (peer {peer:?}) by {delay:?}: {e}"));
        self.delays.push(NodeDelay { at, peer, delayer });
    }

    /// Removes every delay whose rules live in node `id`'s namespace (its link delay and its
    /// side of pair delays); held packets are released at their due time. Returns what the
    /// delayers did, added up.
    pub fn undelay(&mut self, id: NodeId) -> DelayStats {
        let (stop, keep): (Vec<NodeDelay>, Vec<NodeDelay>) = std::mem::take(&mut self.delays)
            .into_iter()
            .partition(|d| d.at == id);
        self.delays = keep;
        let mut total = DelayStats::default();
        for d in stop {
            total.add(&d.delayer.stop());
        }
        total
    }

    /// Removes every delay.
    pub fn undelay_all(&mut self) -> DelayStats {
        let mut total = DelayStats::default();
        for id in self.node_ids() {
            total.add(&self.undelay(id));
        }
        total
    }

    /// Packets delayed so far by the delays in node `id`'s namespace.
    pub fn delayed_packets(&self, id: NodeId) -> u64 {
        self.delays
            .iter()
            .filter(|d| d.at == id)
            .map(|d| d.delayer.packets())
            .sum()
    }

    /// The delays in force: (node whose sends are held, peer or `None` for its whole link,
    /// delay).
    pub fn delays(&self) -> Vec<(NodeId, Option<NodeId>, Duration)> {
        self.delays
            .iter()
            .map(|d| (d.at, d.peer, d.delayer.delay()))
            .collect()
    }

    /// Removes every partition rule and every delay, and plugs every cut cable back in.
    pub fn heal_all(&mut self) {
        self.undelay_all();
        for r in std::mem::take(&mut self.rules) {
            if let Err(e) = ip(&["-n", &r.ns, "rule", "del", "pref", &r.pref.to_string()]) {
                panic!("remove partition rule (from {}) in {}: {e}", r.from, r.ns);
            }
        }
        let cut: Vec<NodeId> = self.cut.iter().copied().collect();
        for id in cut {
            self.heal(id);
        }
    }

    // ---------------------------------------------------------------- cluster status

    /// One node's `GetClusterStatus`, from the client namespace.
    pub async fn status(&self, id: NodeId) -> Result<ClusterStatus, String> {
        let addr = self.admin_addr(id);
        self.client()
            .run(async move { client::cluster_status(addr, STATUS_TIMEOUT).await })
            .await
    }

    /// Every reachable node's status, polled in parallel; absent where a node did not answer.
    pub async fn statuses(&self) -> BTreeMap<NodeId, ClusterStatus> {
        let targets: Vec<(NodeId, SocketAddr)> = self
            .reachable_nodes()
            .into_iter()
            .map(|id| (id, self.admin_addr(id)))
            .collect();
        self.client()
            .run(async move {
                let calls = targets.into_iter().map(|(id, addr)| async move {
                    (id, client::cluster_status(addr, STATUS_TIMEOUT).await)
                });
                let mut out = BTreeMap::new();
                let handles: Vec<_> = calls.map(tokio::spawn).collect();
                for h in handles {
                    if let Ok((id, Ok(s))) = h.await {
                        out.insert(id, s);
                    }
                }
                out
            })
            .await
    }

    /// The leader a quorum of reachable nodes agrees on right now, with its term: the leader
    /// must be reachable and report itself as leader.
    pub async fn leader(&self) -> Option<(NodeId, u64)> {
        let statuses = self.statuses().await;
        let mut votes: BTreeMap<(NodeId, u64), usize> = BTreeMap::new();
        for s in statuses.values() {
            if s.leader_id != 0 {
                *votes.entry((s.leader_id, s.term)).or_default() += 1;
            }
        }
        votes
            .into_iter()
            .filter(|((l, term), n)| {
                *n >= self.quorum()
                    && statuses
                        .get(l)
                        .is_some_and(|s| s.leader_id == *l && s.term == *term)
            })
            .max_by_key(|((_, term), _)| *term)
            .map(|(k, _)| k)
    }

    /// Nodes the lab believes alive whose process has exited by itself (a crash, or a
    /// refused config): their pid is a zombie or gone.
    pub fn crashed_nodes(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|n| n.state != ProcState::Down)
            .filter(|n| {
                let Some(c) = &n.child else { return false };
                match std::fs::read_to_string(format!("/proc/{}/stat", c.id())) {
                    // The state follows the parenthesised command name.
                    Ok(stat) => stat
                        .rsplit_once(')')
                        .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
                    Err(_) => true,
                }
            })
            .map(|n| n.id)
            .collect()
    }

    /// Fails the test at once if a node crashed.
    pub fn check_no_crash(&self) {
        let crashed = self.crashed_nodes();
        if !crashed.is_empty() {
            self.fail(&format!("node(s) {crashed:?} exited on their own"));
        }
    }

    async fn try_wait_for_leader(&self, within: Duration) -> Option<(NodeId, u64)> {
        let deadline = Instant::now() + within;
        loop {
            self.check_no_crash();
            if let Some(l) = self.leader().await {
                return Some(l);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Polls the leader every 50 ms for `hold` (failing at once on a crash): the leaders seen,
    /// in order, and the longest stretch without one a quorum agrees on.
    pub async fn watch_leader_for(&self, hold: Duration) -> LeaderLog {
        let start = Instant::now();
        let mut log = LeaderLog::default();
        let mut leaderless_since: Option<Instant> = None;
        while start.elapsed() < hold {
            self.check_no_crash();
            match self.leader().await {
                Some((l, t)) => {
                    if log.leaders.last() != Some(&(t, l)) {
                        log.leaders.push((t, l));
                    }
                    if let Some(since) = leaderless_since.take() {
                        log.longest_leaderless = log.longest_leaderless.max(since.elapsed());
                    }
                }
                None => {
                    let since = *leaderless_since.get_or_insert_with(Instant::now);
                    log.longest_leaderless = log.longest_leaderless.max(since.elapsed());
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        log
    }

    /// Waits (up to 20 s) for a leader a quorum agrees on; returns it and its term.
    pub async fn wait_for_leader(&self) -> (NodeId, u64) {
        self.wait_for_leader_within(Duration::from_secs(20)).await
    }

    /// [`Lab::wait_for_leader`] with a deadline.
    pub async fn wait_for_leader_within(&self, within: Duration) -> (NodeId, u64) {
        match self.try_wait_for_leader(within).await {
            Some(l) => l,
            None => self.fail(&format!(
                "no leader agreed on by a quorum within {within:?}"
            )),
        }
    }

    /// Waits (up to 20 s) for a quorum to agree on a leader of a term after `term`.
    pub async fn wait_for_leader_after(&self, term: u64) -> (NodeId, u64) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            self.check_no_crash();
            if let Some((l, t)) = self.leader().await {
                if t > term {
                    return (l, t);
                }
            }
            if Instant::now() > deadline {
                self.fail(&format!("no leader of a term after {term} within 20 s"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until every reachable node has applied the log up to the leader's commit index
    /// as read now (a node that was down or cut has caught up).
    pub async fn wait_for_catch_up(&self, within: Duration) {
        let deadline = Instant::now() + within;
        let (leader, _) = self.wait_for_leader_within(within).await;
        let target = loop {
            match self.status(leader).await {
                Ok(s) => break s.committed,
                Err(e) if Instant::now() > deadline => {
                    self.fail(&format!("leader {leader} status: {e}"))
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        loop {
            self.check_no_crash();
            let statuses = self.statuses().await;
            let behind: Vec<String> = self
                .reachable_nodes()
                .into_iter()
                .filter(|id| statuses.get(id).is_none_or(|s| s.last_applied < target))
                .map(|id| match statuses.get(&id) {
                    Some(s) => format!("node {id} applied {}", s.last_applied),
                    None => format!("node {id} not answering"),
                })
                .collect();
            if behind.is_empty() {
                return;
            }
            if Instant::now() > deadline {
                self.fail(&format!(
                    "not caught up to index {target} within {within:?}: {}",
                    behind.join(", ")
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every load balancer one node lists (linearizable read), from the client namespace.
    pub async fn list_lbs(&self, id: NodeId, timeout: Duration) -> Result<Vec<LbSummary>, String> {
        let addr = self.admin_addr(id);
        self.client()
            .run(async move { client::list_all_lbs(addr, timeout).await })
            .await
    }

    // ---------------------------------------------------------------- diagnostics

    /// Prints the last lines of every node's log.
    pub fn dump_logs(&self) {
        for n in &self.nodes {
            let text = std::fs::read_to_string(&n.log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(60)..];
            say(&format!(
                "--- node {} log ({}), last lines ---",
                n.id,
                n.log.display()
            ));
            for l in tail {
                // Some lines (e.g. a leader's placement of hundreds of VIPs) are huge.
                if l.len() > 400 {
                    let cut: String = l.chars().take(400).collect();
                    say(&format!("{cut} ... ({} bytes)", l.len()));
                } else {
                    say(l);
                }
            }
        }
    }

    /// Prints the logs, keeps the lab directory and panics with `msg`.
    pub fn fail(&self, msg: &str) -> ! {
        self.dump_logs();
        panic!("{msg}; lab directory: {}", self.log_dir().display());
    }

    /// Counts lines of a node's log containing `needle` (e.g. "panicked").
    pub fn log_count(&self, id: NodeId, needle: &str) -> usize {
        std::fs::read_to_string(&self.node(id).log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// Panics if any node's log shows a panic.
    pub fn assert_no_panics(&self) {
        for id in self.node_ids() {
            if self.log_count(id, "panicked") > 0 {
                self.fail(&format!("node {id} panicked (see its log)"));
            }
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Processes first (SIGKILL works on SIGSTOPped ones too), by the pids we started.
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        // Delayer threads live in node namespaces: stop them before the namespaces go.
        for d in std::mem::take(&mut self.delays) {
            let _ = d.delayer.stop();
        }
        self.client = None;
        for ns in self.namespaces.iter().rev() {
            let _ = ip_output(&["netns", "del", ns]);
        }
        let keep_all = std::env::var_os("FULCRUM_CHAOS_KEEP").is_some();
        if std::thread::panicking() || keep_all {
            if let Some(dir) = self.dir.take() {
                let kept = dir.keep();
                // A failed test keeps what explains it (configs, logs), not
                // the RocksDB data dirs (tens of MB per node), which would
                // fill the disk over many failed runs.
                let what = match keep_all {
                    true => "logs and data",
                    false => {
                        for n in &self.nodes {
                            let _ = std::fs::remove_dir_all(kept.join(format!("data{}", n.id)));
                        }
                        "configs and logs (FULCRUM_CHAOS_KEEP=1 keeps the data dirs too)"
                    }
                };
                say(&format!("chaos lab: kept {what} in {}", kept.display()));
            }
        }
    }
}

/// Writes sysctls (`net/...` paths under `/proc/sys`) in a namespace, from a thread that
/// entered it (the `net` sysctls a thread sees are its namespace's).
fn set_sysctls(ns: &str, values: &[(&str, &str)]) -> Result<(), String> {
    let ns = ns.to_string();
    let values: Vec<(String, String)> = values
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    std::thread::spawn(move || -> Result<(), String> {
        enter_netns(&ns).map_err(|e| format!("setns into {ns}: {e}"))?;
        for (k, v) in values {
            std::fs::write(format!("/proc/sys/{k}"), &v)
                .map_err(|e| format!("sysctl {k}={v} in {ns}: {e}"))?;
        }
        Ok(())
    })
    .join()
    .map_err(|_| "sysctl thread panicked".to_string())?
}

/// Checks what a lab needs: root, `ip`, and network namespaces that can be made.
fn preflight() -> Result<(), LabError> {
    if !nix::unistd::geteuid().is_root() {
        return Err(LabError::Unsupported(
            "not root (network namespaces need CAP_NET_ADMIN and CAP_SYS_ADMIN)".into(),
        ));
    }
    match Command::new("ip")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(LabError::Unsupported(format!("`ip -V` failed: {s}"))),
        Err(e) => Err(LabError::Unsupported(format!(
            "no `ip` command (install iproute2): {e}"
        ))),
    }
}

/// Finds the `fulcrum` binary: `FULCRUM_BIN`, else next to the running test binary's
/// directory (`target/<profile>/fulcrum`, which `cargo test --workspace` and
/// `cargo nextest run --workspace` build), else `$CARGO_TARGET_DIR/debug/fulcrum`, else the
/// workspace's `target/debug/fulcrum`.
pub fn find_fulcrum_bin() -> Result<PathBuf, LabError> {
    if let Some(p) = std::env::var_os("FULCRUM_BIN") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(LabError::Failed(format!(
                "FULCRUM_BIN={} is not a file",
                p.display()
            )))
        };
    }
    let mut candidates = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        // target/<profile>/deps/<test>-<hash>
        if let Some(profile_dir) = exe.parent().and_then(|d| d.parent()) {
            candidates.push(profile_dir.join("fulcrum"));
        }
    }
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        candidates.push(PathBuf::from(t).join("debug").join("fulcrum"));
    }
    candidates.push(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("target")
            .join("debug")
            .join("fulcrum"),
    );
    candidates.into_iter().find(|p| p.is_file()).ok_or_else(|| {
        LabError::Failed(
            "no fulcrum binary: run `cargo build -p fulcrum-node --bin fulcrum` first (same \
             target dir and profile as the tests), or set FULCRUM_BIN=/path/to/fulcrum"
                .into(),
        )
    })
}

/// Deletes namespaces left by earlier lab processes that died without cleaning up
/// (`fc<pid>...` whose pid is gone), killing what still runs in them. Only names of this
/// harness's own pattern are touched.
fn cleanup_stale_labs() {
    let Ok(entries) = std::fs::read_dir(NETNS_DIR) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = lab_pid(&name) else { continue };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        if let Ok(pids) = ip_stdout(&["netns", "pids", &name]) {
            for p in pids
                .split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok())
            {
                let _ = send_signal(Pid::from_raw(p), Signal::SIGKILL);
            }
        }
        let _ = ip_output(&["netns", "del", &name]);
    }
}

/// The pid in a lab namespace name: `fc<pid>(_<seq>)?(lab|c|w|n<digits>)`.
fn lab_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("fc")?;
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    let pid: u32 = digits.parse().ok()?;
    let mut tail = &rest[digits.len()..];
    if let Some(t) = tail.strip_prefix('_') {
        let seq: String = t.chars().take_while(|c| c.is_ascii_digit()).collect();
        if seq.is_empty() {
            return None;
        }
        tail = &t[seq.len()..];
    }
    let ok = tail == "lab"
        || tail == "c"
        || tail == "w"
        || tail
            .strip_prefix('n')
            .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
    ok.then_some(pid)
}

#[cfg(test)]
mod tests {
    use super::lab_pid;

    #[test]
    fn lab_namespace_names_are_recognised() {
        assert_eq!(lab_pid("fc123lab"), Some(123));
        assert_eq!(lab_pid("fc123n2"), Some(123));
        assert_eq!(lab_pid("fc123_4c"), Some(123));
        assert_eq!(lab_pid("fc123w"), Some(123));
        assert_eq!(lab_pid("fc123_4n10"), Some(123));
        assert_eq!(lab_pid("fc123x"), None);
        assert_eq!(lab_pid("fcxlab"), None);
        assert_eq!(lab_pid("other"), None);
        assert_eq!(lab_pid("fc12n"), None);
    }
}
