//! VIP failover checks: load balancers on the lab's VIP subnet with backends in the client
//! namespace, API helpers that find the VIP's owner, and [`ArpWatch`], which records every
//! claim of a VIP (ARP replies and gratuitous ARP) seen from the client and from the
//! watcher namespace, the latter asking for each watched VIP every round.
//!
//! Safety checks (invariant 3, "at most one node holds a VIP at any moment"):
//! [`double_answer_spans`] (two MACs replying to one ARP request) and
//! [`check_handover`] (claims follow `old* new*`: once the new owner has claimed, the old
//! one never claims again, and nobody else ever claims).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use fulcrum_proto::v1::{
    CompareType, L7PolicyAction, L7PolicyCreate, L7RuleCreate, LbAlgorithm, ListenerCreate,
    LoadBalancer, LoadBalancerCreate, MemberCreate, PoolCreate, Protocol,
};

use crate::arp::{ArpEvent, Frame, LinkQuery, PacketObserver, PacketRequester};
use crate::client;
use crate::http::{http_get, Backends};
use crate::lab::{Lab, NodeId};
use crate::stats::ms;

/// The VIP subnet every lab node has (see the lab's node configs).
pub const LAB_VIP_SUBNET: &str = "lab";
/// The IPv6 VIP subnet of labs with IPv6 ([`crate::LabConfig::ipv6`]).
pub const LAB6_VIP_SUBNET: &str = "lab6";
/// Port of the TCP listener.
pub const TCP_PORT: u16 = 80;
/// Port of the HTTP listener.
pub const HTTP_PORT: u16 = 8080;
/// Host name the HTTP listener's L7 policy sends to the `www2` pool.
pub const WWW2_HOST: &str = "www2.example.com";
/// Backends of the TCP listener's pool.
pub const TCP_BACKENDS: [&str; 2] = ["b1", "b2"];
/// Backend of the HTTP listener's default pool.
pub const WWW1: &str = "www1";
/// Backend of the pool the HOST_NAME rule routes to.
pub const WWW2: &str = "www2";
/// Every backend name.
pub const ALL_BACKENDS: [&str; 4] = ["b1", "b2", "www1", "www2"];

/// A load balancer on the lab's VIP subnet: a TCP listener on 80 balancing over `b1`/`b2`,
/// an HTTP listener on 8080 whose default pool is `www1` and whose HOST_NAME policy sends
/// `www2.example.com` to `www2`.
pub fn lb_tree(name: &str, backends: &Backends) -> LoadBalancerCreate {
    lb_tree_on(name, backends, LAB_VIP_SUBNET)
}

/// [`lb_tree`] with its VIP from VIP subnet `subnet`.
pub fn lb_tree_on(name: &str, backends: &Backends, subnet: &str) -> LoadBalancerCreate {
    let member = |b: &str| {
        let a = backends.addr(b);
        MemberCreate {
            address: a.ip().to_string(),
            protocol_port: i32::from(a.port()),
            name: b.to_string(),
            ..Default::default()
        }
    };
    let pool = |name: &str, protocol: Protocol, members: Vec<MemberCreate>| PoolCreate {
        name: name.to_string(),
        protocol: protocol as i32,
        lb_algorithm: LbAlgorithm::RoundRobin as i32,
        members,
        ..Default::default()
    };
    let by_name = |name: &str| PoolCreate {
        name: name.to_string(),
        ..Default::default()
    };
    LoadBalancerCreate {
        name: name.to_string(),
        description: "VIP failover chaos test".into(),
        vip_subnet_id: subnet.into(),
        listeners: vec![
            ListenerCreate {
                name: format!("{name}-tcp"),
                protocol: Protocol::Tcp as i32,
                protocol_port: i32::from(TCP_PORT),
                default_pool: Some(by_name("tcp_pool")),
                ..Default::default()
            },
            ListenerCreate {
                name: format!("{name}-http"),
                protocol: Protocol::Http as i32,
                protocol_port: i32::from(HTTP_PORT),
                default_pool: Some(by_name("www1_pool")),
                l7policies: vec![L7PolicyCreate {
                    name: "www2".into(),
                    action: L7PolicyAction::RedirectToPool as i32,
                    redirect_pool: Some(by_name("www2_pool")),
                    rules: vec![L7RuleCreate {
                        r#type: fulcrum_proto::v1::L7RuleType::HostName as i32,
                        compare_type: CompareType::EqualTo as i32,
                        value: WWW2_HOST.into(),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            },
        ],
        pools: vec![
            pool(
                "tcp_pool",
                Protocol::Tcp,
                TCP_BACKENDS.iter().map(|b| member(b)).collect(),
            ),
            pool("www1_pool", Protocol::Http, vec![member(WWW1)]),
            pool("www2_pool", Protocol::Http, vec![member(WWW2)]),
        ],
        ..Default::default()
    }
}

/// A load balancer under test.
#[derive(Debug, Clone)]
pub struct VipLb {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its VIP.
    pub vip: Ipv4Addr,
}

impl VipLb {
    /// The TCP listener's address.
    pub fn tcp(&self) -> SocketAddr {
        SocketAddr::new(self.vip.into(), TCP_PORT)
    }
    /// The HTTP listener's address.
    pub fn http(&self) -> SocketAddr {
        SocketAddr::new(self.vip.into(), HTTP_PORT)
    }
}

/// Creates [`lb_tree`] through any reachable node (retrying for up to 20 s).
pub async fn create_vip_lb(lab: &Lab, name: &str, backends: &Backends) -> Result<VipLb, String> {
    let (id, vip) = create_lb_on(lab, name, backends, LAB_VIP_SUBNET).await?;
    match vip {
        IpAddr::V4(vip) => Ok(VipLb {
            id,
            name: name.to_string(),
            vip,
        }),
        IpAddr::V6(v) => Err(format!("{name}: IPv6 VIP {v} on subnet {LAB_VIP_SUBNET}")),
    }
}

/// A load balancer with an IPv6 VIP.
#[derive(Debug, Clone)]
pub struct Vip6Lb {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its VIP.
    pub vip: Ipv6Addr,
}

impl Vip6Lb {
    /// The TCP listener's address.
    pub fn tcp(&self) -> SocketAddr {
        SocketAddr::new(self.vip.into(), TCP_PORT)
    }
    /// The HTTP listener's address.
    pub fn http(&self) -> SocketAddr {
        SocketAddr::new(self.vip.into(), HTTP_PORT)
    }
}

/// Creates [`lb_tree`] with an IPv6 VIP (subnet [`LAB6_VIP_SUBNET`]; the lab needs IPv6).
pub async fn create_vip6_lb(lab: &Lab, name: &str, backends: &Backends) -> Result<Vip6Lb, String> {
    let (id, vip) = create_lb_on(lab, name, backends, LAB6_VIP_SUBNET).await?;
    match vip {
        IpAddr::V6(vip) => Ok(Vip6Lb {
            id,
            name: name.to_string(),
            vip,
        }),
        IpAddr::V4(v) => Err(format!("{name}: IPv4 VIP {v} on subnet {LAB6_VIP_SUBNET}")),
    }
}

/// Creates [`lb_tree_on`] `subnet` through any reachable node (retrying for up to 20 s);
/// returns its id and VIP.
pub async fn create_lb_on(
    lab: &Lab,
    name: &str,
    backends: &Backends,
    subnet: &str,
) -> Result<(String, IpAddr), String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = String::new();
    while Instant::now() < deadline {
        for id in lab.reachable_nodes() {
            let addr = lab.admin_addr(id);
            let req = lb_tree_on(name, backends, subnet);
            let r = lab
                .client()
                .run(async move { client::create_lb_tree(addr, req, Duration::from_secs(5)).await })
                .await;
            match r {
                Ok(lb) => {
                    let vip = lb
                        .vip_address
                        .parse()
                        .map_err(|e| format!("VIP {:?}: {e}", lb.vip_address))?;
                    return Ok((lb.id, vip));
                }
                // A retry after an unknown outcome may meet the first attempt's object.
                Err(e) if e.contains("AlreadyExists") || e.contains("already") => {
                    return Err(format!("create {name}: {e}"))
                }
                Err(e) => last = e,
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(format!("create {name}: {last}"))
}

/// `GetLoadBalancer` through every reachable node at once; the first answer wins (reads are
/// linearizable, so any answer is current).
pub async fn get_lb(lab: &Lab, id: &str, timeout: Duration) -> Result<LoadBalancer, String> {
    let targets: Vec<(NodeId, SocketAddr)> = lab
        .reachable_nodes()
        .into_iter()
        .map(|n| (n, lab.admin_addr(n)))
        .collect();
    let id = id.to_string();
    lab.client()
        .run(async move {
            let mut set = tokio::task::JoinSet::new();
            for (n, addr) in targets {
                let id = id.clone();
                set.spawn(async move { (n, client::get_lb(addr, &id, timeout).await) });
            }
            let mut errors = Vec::new();
            while let Some(r) = set.join_next().await {
                match r {
                    Ok((_, Ok(lb))) => return Ok(lb),
                    Ok((n, Err(e))) => errors.push(format!("node {n}: {e}")),
                    Err(e) => errors.push(e.to_string()),
                }
            }
            Err(errors.join("; "))
        })
        .await
}

/// The node the API names as the VIP's owner (`None`: nobody holds it now).
pub async fn vip_owner(lab: &Lab, id: &str) -> Result<Option<NodeId>, String> {
    let lb = get_lb(lab, id, Duration::from_millis(800)).await?;
    Ok(lb.vip_owner.parse().ok().filter(|n| *n > 0))
}

/// Waits until the API names an owner that satisfies `ok`; returns it.
pub async fn wait_owner(
    lab: &Lab,
    id: &str,
    within: Duration,
    mut ok: impl FnMut(NodeId) -> bool,
) -> Result<NodeId, String> {
    let deadline = Instant::now() + within;
    loop {
        let last = match vip_owner(lab, id).await {
            Ok(Some(n)) if ok(n) => return Ok(n),
            Ok(o) => format!("owner {o:?}"),
            Err(e) => e,
        };
        if Instant::now() > deadline {
            return Err(format!(
                "load balancer {id}: no suitable VIP owner within {within:?}; last: {last}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The owner of load balancer `id`'s VIP, first moved off `leader` with
/// `FailoverLoadBalancer` if the leader holds it (for scenarios that fault a follower owner).
/// Fails the test if no owner shows up within 20 s.
pub async fn owner_off_leader(lab: &Lab, id: &str, leader: NodeId) -> NodeId {
    let within = Duration::from_secs(20);
    let owner = wait_owner(lab, id, within, |_| true)
        .await
        .unwrap_or_else(|e| lab.fail(&e));
    if owner != leader {
        return owner;
    }
    failover(lab, id)
        .await
        .unwrap_or_else(|e| lab.fail(&format!("move the VIP off the leader: {e}")));
    wait_owner(lab, id, within, |n| n != leader)
        .await
        .unwrap_or_else(|e| lab.fail(&e))
}

/// `FailoverLoadBalancer` through any reachable node.
pub async fn failover(lab: &Lab, id: &str) -> Result<LoadBalancer, String> {
    let mut errors = Vec::new();
    for n in lab.reachable_nodes() {
        let addr = lab.admin_addr(n);
        let id = id.to_string();
        match lab
            .client()
            .run(async move { client::failover_lb(addr, &id, Duration::from_secs(3)).await })
            .await
        {
            Ok(lb) => return Ok(lb),
            Err(e) => errors.push(format!("node {n}: {e}")),
        }
    }
    Err(errors.join("; "))
}

/// Checks routing through the VIP from the client namespace: the TCP listener answers from
/// its pool, the HTTP listener from `www1` and, for `www2.example.com`, from `www2`.
/// Returns the TCP backends seen.
pub async fn check_routing(lab: &Lab, lb: &VipLb) -> Result<BTreeSet<String>, String> {
    check_routing_at(lab, lb.tcp(), lb.http()).await
}

/// [`check_routing`] for the listeners at `tcp` and `http`.
pub async fn check_routing_at(
    lab: &Lab,
    tcp: SocketAddr,
    http: SocketAddr,
) -> Result<BTreeSet<String>, String> {
    lab.client()
        .run(async move {
            let t = Duration::from_secs(2);
            let mut tcp_seen = BTreeSet::new();
            for _ in 0..4 {
                let b = http_get(tcp, "probe.example.com", t)
                    .await
                    .map_err(|e| format!("TCP listener {tcp}: {e}"))?;
                if !TCP_BACKENDS.contains(&b.as_str()) {
                    return Err(format!(
                        "TCP listener {tcp} answered from {b:?}, not its pool"
                    ));
                }
                tcp_seen.insert(b);
            }
            for (host, want) in [("www.example.com", WWW1), (WWW2_HOST, WWW2)] {
                let b = http_get(http, host, t)
                    .await
                    .map_err(|e| format!("HTTP listener {http} (Host {host}): {e}"))?;
                if b != want {
                    return Err(format!(
                        "HTTP listener {http}: Host {host} answered by {b:?}, expected {want}"
                    ));
                }
            }
            Ok(tcp_seen)
        })
        .await
}

/// The MAC the client namespace's neighbour cache holds for `vip` now, with the entry's
/// state (e.g. `REACHABLE`), if it has one.
pub fn client_neighbour(lab: &Lab, vip: impl Into<IpAddr>) -> Option<(String, String)> {
    let vip: IpAddr = vip.into();
    let out =
        crate::netns::ip_stdout(&["-n", lab.client_netns(), "neigh", "show", &vip.to_string()])
            .ok()?;
    let words: Vec<&str> = out.split_whitespace().collect();
    let mac = words
        .iter()
        .skip_while(|w| **w != "lladdr")
        .nth(1)?
        .to_ascii_lowercase();
    let state = words.last().map(|s| s.to_string()).unwrap_or_default();
    Some((mac, state))
}

/// One claim of a VIP seen on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// When it was seen.
    pub at: Instant,
    /// The claiming MAC.
    pub mac: String,
    /// Gratuitous (an announcement) rather than a reply.
    pub garp: bool,
}

/// A neighbour-discovery frame that can claim a VIP: an ARP reply or announcement
/// ([`ArpEvent`]), or an IPv6 neighbour advertisement ([`crate::ndp::NdEvent`]). It is what
/// [`VipWatch`] needs to know of an address family.
pub trait ClaimFrame: Frame {
    /// The family's address.
    type Addr: LinkQuery + std::fmt::Display;
    /// What messages call the requests the watcher sends ("ARP", "NS").
    const REQUESTS: &'static str;
    /// The watcher namespace's own address: the sender of its requests.
    fn watcher_addr(lab: &Lab) -> Self::Addr;
    /// The claim this frame makes of `vip`, if any.
    fn into_claim(self, vip: Self::Addr) -> Option<Claim>;
}

impl ClaimFrame for ArpEvent {
    type Addr = Ipv4Addr;
    const REQUESTS: &'static str = "ARP";

    fn watcher_addr(lab: &Lab) -> Ipv4Addr {
        lab.watcher_ip()
    }

    fn into_claim(self, vip: Ipv4Addr) -> Option<Claim> {
        (self.sender_ip == vip && self.is_claim()).then(|| Claim {
            at: self.at,
            garp: self.sender_ip == self.target_ip,
            mac: self.sender_mac,
        })
    }
}

/// Records who claims the watched VIPs: observers of `E` in the client and the watcher
/// namespaces, and a requester in the watcher namespace asking for every watched VIP each
/// `round`.
pub struct VipWatch<E: ClaimFrame> {
    client: PacketObserver<E>,
    watcher: PacketObserver<E>,
    requester: PacketRequester<E::Addr>,
    /// Node by MAC.
    pub nodes: BTreeMap<String, NodeId>,
}

/// Records who claims the watched IPv4 VIPs: ARP observers in the client and the watcher
/// namespaces, and an [`crate::ArpRequester`] in the watcher namespace asking for every
/// watched VIP each `round`.
pub type ArpWatch = VipWatch<ArpEvent>;

impl<E: ClaimFrame> VipWatch<E> {
    /// Starts observing and asking (no VIP watched yet).
    pub fn start(lab: &Lab, round: Duration) -> Result<VipWatch<E>, String> {
        let mut nodes = BTreeMap::new();
        for id in lab.node_ids() {
            nodes.insert(lab.node_mac(id)?, id);
        }
        Ok(VipWatch {
            client: PacketObserver::start(lab.client_netns())?,
            watcher: PacketObserver::start(lab.watcher_netns())?,
            requester: PacketRequester::start(
                lab.watcher_netns(),
                "eth0",
                E::watcher_addr(lab),
                round,
            )?,
            nodes,
        })
    }

    /// Starts asking for `vip` every round.
    pub fn watch(&self, vip: E::Addr) {
        self.requester.add_target(vip);
    }

    /// Every claim of `vip` seen from either namespace in `[from, to)`, by time.
    pub fn claims(&self, vip: E::Addr, from: Instant, to: Instant) -> Vec<Claim> {
        let mut out: Vec<Claim> = self
            .client
            .events()
            .into_iter()
            .chain(self.watcher.events())
            .filter_map(|e| e.into_claim(vip))
            .filter(|c| c.at >= from && c.at < to)
            .collect();
        out.sort_by_key(|c| c.at);
        out
    }

    /// The MAC of a node.
    pub fn mac_of(&self, node: NodeId) -> String {
        self.nodes
            .iter()
            .find(|(_, n)| **n == node)
            .map(|(m, _)| m.clone())
            .unwrap_or_else(|| panic!("no MAC for node {node}"))
    }

    /// A MAC with its node, for messages.
    pub fn who(&self, mac: &str) -> String {
        match self.nodes.get(mac) {
            Some(n) => format!("node {n} ({mac})"),
            None => format!("unknown host ({mac})"),
        }
    }

    /// When each request for `vip` went out.
    pub fn rounds(&self, vip: E::Addr) -> Vec<Instant> {
        self.requester.rounds(vip)
    }

    /// The MACs that claimed `vip` in `[now - window, now)`.
    pub fn recent(&self, vip: E::Addr, window: Duration) -> BTreeSet<String> {
        let now = Instant::now();
        self.claims(vip, now - window, now + Duration::from_secs(1))
            .into_iter()
            .map(|c| c.mac)
            .collect()
    }

    /// Waits until only `owner` has claimed `vip` over the last `window` (and did claim).
    pub async fn wait_sole_claimer(
        &self,
        vip: E::Addr,
        owner: NodeId,
        window: Duration,
        within: Duration,
    ) -> Result<(), String> {
        let mac = self.mac_of(owner);
        let deadline = Instant::now() + within;
        loop {
            let recent = self.recent(vip, window);
            if recent.len() == 1 && recent.contains(&mac) {
                return Ok(());
            }
            if Instant::now() > deadline {
                let who: Vec<String> = recent.iter().map(|m| self.who(m)).collect();
                return Err(format!(
                    "VIP {vip}: expected only node {owner} to answer {} over the last {}, saw {who:?}",
                    E::REQUESTS,
                    ms(window)
                ));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// A readable timeline of the claims of `vip` in `[from, to)`, relative to `t0`: runs of
    /// claims by one MAC.
    pub fn timeline(&self, vip: E::Addr, from: Instant, to: Instant, t0: Instant) -> String {
        timeline(&self.claims(vip, from, to), t0, |m| self.who(m))
    }
}

fn signed_ms(at: Instant, t0: Instant) -> String {
    if at >= t0 {
        format!("+{}", (at - t0).as_millis())
    } else {
        format!("-{}", (t0 - at).as_millis())
    }
}

/// Runs of claims by one MAC, one line each, times relative to `t0` in milliseconds.
pub fn timeline(claims: &[Claim], t0: Instant, who: impl Fn(&str) -> String) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < claims.len() {
        let mut j = i;
        while j + 1 < claims.len() && claims[j + 1].mac == claims[i].mac {
            j += 1;
        }
        let run = &claims[i..=j];
        let garps = run.iter().filter(|c| c.garp).count();
        out.push_str(&format!(
            "    [{} .. {}] ms {}: {} replies, {} gratuitous\n",
            signed_ms(run[0].at, t0),
            signed_ms(run[run.len() - 1].at, t0),
            who(&claims[i].mac),
            run.len() - garps,
            garps
        ));
        i = j + 1;
    }
    if out.is_empty() {
        out.push_str("    (no claims)\n");
    }
    out
}

/// Checks the claims of one VIP across one fault: before `fault` only `old` claims; from
/// `fault` on the claims read `old* new*` (only `old` when `new == old`). Returns one
/// message per run of violating claims (times relative to `fault`).
pub fn check_handover(
    claims: &[Claim],
    fault: Instant,
    old: &str,
    new: &str,
    who: impl Fn(&str) -> String,
) -> Vec<String> {
    let mut bad: Vec<(Instant, String)> = Vec::new();
    let mut new_since: Option<Instant> = None;
    for c in claims {
        if c.at < fault {
            if c.mac != old {
                bad.push((
                    c.at,
                    format!(
                        "{} claimed the VIP while {} owned it",
                        who(&c.mac),
                        who(old)
                    ),
                ));
            }
            continue;
        }
        if c.mac == new {
            new_since.get_or_insert(c.at);
        } else if c.mac == old {
            if let Some(since) = new_since {
                bad.push((
                    c.at,
                    format!(
                        "old owner {} claimed the VIP after the new owner {} did ({} ms)",
                        who(old),
                        who(new),
                        signed_ms(since, fault)
                    ),
                ));
            }
        } else {
            bad.push((
                c.at,
                format!(
                    "{} claimed the VIP; only {} (before) and {} (after) may",
                    who(&c.mac),
                    who(old),
                    who(new)
                ),
            ));
        }
    }
    // One line per run of the same violation.
    let mut out = Vec::new();
    let mut i = 0;
    while i < bad.len() {
        let mut j = i;
        while j + 1 < bad.len() && bad[j + 1].1 == bad[i].1 {
            j += 1;
        }
        out.push(format!(
            "[{} .. {}] ms, {} claim(s): {}",
            signed_ms(bad[i].0, fault),
            signed_ms(bad[j].0, fault),
            j - i + 1,
            bad[i].1
        ));
        i = j + 1;
    }
    out
}

/// Checks that the claims of one VIP follow a succession of owners, whatever their number:
/// once another MAC has claimed after a MAC, that MAC never claims again (`a* b* c*`, each MAC
/// in one run). Returns one message per violating claim run (times relative to `t0`). For a
/// single move this is [`check_handover`] without knowing the owners.
pub fn check_succession(
    claims: &[Claim],
    t0: Instant,
    who: impl Fn(&str) -> String,
) -> Vec<String> {
    let mut superseded: BTreeMap<String, Instant> = BTreeMap::new();
    let mut current: Option<&Claim> = None;
    let mut out = Vec::new();
    let mut last_bad: Option<String> = None;
    for c in claims {
        match current {
            Some(cur) if cur.mac == c.mac => {}
            Some(cur) => {
                superseded.insert(cur.mac.clone(), c.at);
                if let Some(since) = superseded.get(&c.mac) {
                    let msg = format!(
                        "{} claimed the VIP again at {} ms after {} had taken it over ({} ms)",
                        who(&c.mac),
                        signed_ms(c.at, t0),
                        who(&cur.mac),
                        signed_ms(*since, t0)
                    );
                    if last_bad.as_deref() != Some(c.mac.as_str()) {
                        out.push(msg);
                    }
                    last_bad = Some(c.mac.clone());
                } else {
                    last_bad = None;
                }
                current = Some(c);
            }
            None => current = Some(c),
        }
    }
    out
}

/// How long after a request its replies count as answers to it.
pub const REPLY_WINDOW: Duration = Duration::from_millis(40);

/// Runs of consecutive request rounds in which more than one MAC replied to the round's
/// request (a reply, not a gratuitous announcement, within [`REPLY_WINDOW`] of the request
/// and before the next one): (start of the first round, start of the last, MACs seen).
/// Announcements and replies across rounds are [`check_handover`]'s job.
pub fn double_answer_spans(
    claims: &[Claim],
    rounds: &[Instant],
) -> Vec<(Instant, Instant, BTreeSet<String>)> {
    let mut out: Vec<(Instant, Instant, BTreeSet<String>)> = Vec::new();
    let mut last: Option<usize> = None;
    for (i, w) in rounds.windows(2).enumerate() {
        let end = w[1].min(w[0] + REPLY_WINDOW);
        let macs: BTreeSet<String> = claims
            .iter()
            .filter(|c| !c.garp && c.at >= w[0] && c.at < end)
            .map(|c| c.mac.clone())
            .collect();
        if macs.len() > 1 {
            match out.last_mut() {
                Some(span) if last == Some(i.wrapping_sub(1)) => {
                    span.1 = w[0];
                    span.2.extend(macs);
                }
                _ => out.push((w[0], w[0], macs)),
            }
            last = Some(i);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(t0: Instant, ms: u64, mac: &str) -> Claim {
        Claim {
            at: t0 + Duration::from_millis(ms),
            mac: mac.into(),
            garp: false,
        }
    }

    #[test]
    fn handover_order() {
        let t0 = Instant::now();
        let fault = t0 + Duration::from_millis(100);
        let who = |m: &str| m.to_string();
        let good = [
            c(t0, 0, "a"),
            c(t0, 120, "a"),
            c(t0, 400, "b"),
            c(t0, 450, "b"),
        ];
        assert!(check_handover(&good, fault, "a", "b", who).is_empty());
        let stale = [
            c(t0, 0, "a"),
            c(t0, 400, "b"),
            c(t0, 420, "a"),
            c(t0, 430, "a"),
        ];
        let v = check_handover(&stale, fault, "a", "b", who);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].contains("2 claim(s)"), "{v:?}");
        let third = [c(t0, 0, "a"), c(t0, 50, "c"), c(t0, 400, "c")];
        assert_eq!(check_handover(&third, fault, "a", "b", who).len(), 2);
        let same = [c(t0, 0, "a"), c(t0, 400, "a")];
        assert!(check_handover(&same, fault, "a", "a", who).is_empty());
    }

    #[test]
    fn succession_of_owners() {
        let t0 = Instant::now();
        let who = |m: &str| m.to_string();
        let good = [
            c(t0, 0, "a"),
            c(t0, 10, "a"),
            c(t0, 20, "b"),
            c(t0, 30, "c"),
        ];
        assert!(check_succession(&good, t0, who).is_empty());
        let flap = [
            c(t0, 0, "a"),
            c(t0, 20, "b"),
            c(t0, 30, "a"),
            c(t0, 40, "b"),
        ];
        let v = check_succession(&flap, t0, who);
        assert_eq!(v.len(), 2, "{v:?}");
        assert!(v[0].starts_with("a claimed"), "{v:?}");
    }

    #[test]
    fn rounds_with_two_answers() {
        let t0 = Instant::now();
        let rounds: Vec<Instant> = (0..4).map(|i| t0 + Duration::from_millis(i * 50)).collect();
        let claims = [
            c(t0, 10, "a"),
            c(t0, 60, "a"),
            c(t0, 70, "b"),
            c(t0, 110, "b"),
        ];
        let bad = double_answer_spans(&claims, &rounds);
        assert_eq!(bad.len(), 1);
        assert_eq!((bad[0].0, bad[0].1), (rounds[1], rounds[1]));
        let claims = [
            c(t0, 60, "a"),
            c(t0, 70, "b"),
            c(t0, 110, "b"),
            c(t0, 120, "a"),
        ];
        let spans = double_answer_spans(&claims, &rounds);
        assert_eq!(spans.len(), 1);
        assert_eq!((spans[0].0, spans[0].1), (rounds[1], rounds[2]));
        // Late in a long round, or an announcement: not an answer to the round's request.
        let late = [c(t0, 50, "a"), c(t0, 95, "b")];
        assert!(double_answer_spans(&late, &rounds).is_empty());
        let mut garp = c(t0, 55, "b");
        garp.garp = true;
        assert!(double_answer_spans(&[c(t0, 51, "a"), garp], &rounds).is_empty());
    }
}
