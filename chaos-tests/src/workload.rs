//! Writers that record every acknowledged API write, and the verifier that checks them.
//!
//! Writers create load balancers with explicit VIP addresses from a process-wide counter
//! (in 127.64.0.0/10: dev-mode VIPs that no node announces), spread round robin over the
//! nodes they are given, each call on a fresh connection from the client namespace. An
//! acknowledged write (the create returned OK) must afterwards be readable on every live node.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fulcrum_proto::v1::{CreateLoadBalancerRequest, LoadBalancerCreate};

use crate::client;
use crate::lab::{Lab, NodeId};
use crate::netns::NetnsRuntime;
use crate::stats::ms;

/// The longest stretch within `[from, to)` in which no write was acknowledged (the
/// boundaries count as acknowledgements).
pub fn longest_ack_gap(acks: &[Ack], from: Instant, to: Instant) -> Duration {
    let mut times: Vec<Instant> = acks
        .iter()
        .map(|a| a.acked)
        .filter(|t| *t >= from && *t < to)
        .collect();
    times.push(from);
    times.push(to);
    times.sort();
    times
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default()
}

/// Per-call deadline of a write.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(3);

static VIP_COUNTER: AtomicU64 = AtomicU64::new(1);

/// A fresh, never used VIP address (127.64.0.0/10, so no node ever announces it).
pub fn next_vip() -> (u64, String) {
    let n = VIP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let ip = format!(
        "127.{}.{}.{}",
        64 + ((n >> 16) & 63),
        (n >> 8) & 255,
        n & 255
    );
    (n, ip)
}

/// One acknowledged write.
#[derive(Debug, Clone)]
pub struct Ack {
    /// Id of the created load balancer.
    pub id: String,
    /// Its name (unique per write).
    pub name: String,
    /// Its VIP address.
    pub vip: String,
    /// The node the call went to.
    pub via: NodeId,
    /// When the call was sent.
    pub sent: Instant,
    /// When the acknowledgement arrived.
    pub acked: Instant,
}

/// Creates one load balancer through `via`, from the client namespace.
pub async fn create_lb(
    lab: &Lab,
    via: NodeId,
    name: &str,
    vip: &str,
    timeout: Duration,
) -> Result<String, tonic::Status> {
    let addr = lab.admin_addr(via);
    let (name, vip) = (name.to_string(), vip.to_string());
    lab.client()
        .run(async move { create_lb_at(addr, &name, &vip, timeout).await })
        .await
}

async fn create_lb_at(
    addr: SocketAddr,
    name: &str,
    vip: &str,
    timeout: Duration,
) -> Result<String, tonic::Status> {
    let mut client = client::lbs(addr, timeout);
    let call = client.create_load_balancer(CreateLoadBalancerRequest {
        loadbalancer: Some(LoadBalancerCreate {
            name: name.into(),
            vip_address: vip.into(),
            description: "chaos writer".into(),
            ..Default::default()
        }),
    });
    match tokio::time::timeout(timeout, call).await {
        Ok(r) => r.map(|r| r.into_inner().id),
        Err(_) => Err(tonic::Status::deadline_exceeded("client-side timeout")),
    }
}

#[derive(Default)]
struct WriteLog {
    acks: Vec<Ack>,
    failures: u64,
    last_errors: Vec<String>,
}

/// Concurrent writers (tasks on the client namespace's thread).
pub struct Writers {
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<WriteLog>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    started: Instant,
}

/// What a finished run of writers did.
#[derive(Debug, Clone)]
pub struct WriteReport {
    /// Every acknowledged write, in acknowledgement order.
    pub acks: Vec<Ack>,
    /// Calls that failed or timed out (their outcome is unknown).
    pub failures: u64,
    /// How long the writers ran.
    pub elapsed: Duration,
    /// The longest time without any acknowledgement.
    pub longest_gap: Duration,
}

impl WriteReport {
    /// One line for the test output.
    pub fn line(&self) -> String {
        format!(
            "{} writes acknowledged, {} failed or timed out, in {} ({:.0}/s); longest gap without acks {}",
            self.acks.len(),
            self.failures,
            ms(self.elapsed),
            self.acks.len() as f64 / self.elapsed.as_secs_f64().max(0.001),
            ms(self.longest_gap)
        )
    }
}

impl Writers {
    /// `count` writers sending to every node of the lab in turn.
    pub fn start(lab: &Lab, count: usize) -> Writers {
        Self::start_via(lab, count, &lab.node_ids())
    }

    /// `count` writers sending to `nodes` in turn.
    pub fn start_via(lab: &Lab, count: usize, nodes: &[NodeId]) -> Writers {
        let targets: Vec<(NodeId, SocketAddr)> =
            nodes.iter().map(|id| (*id, lab.admin_addr(*id))).collect();
        Self::spawn(lab.client(), count, targets)
    }

    fn spawn(rt: &NetnsRuntime, count: usize, targets: Vec<(NodeId, SocketAddr)>) -> Writers {
        assert!(!targets.is_empty(), "writers need at least one node");
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(WriteLog::default()));
        let tasks = (0..count)
            .map(|w| {
                let (stop, log, targets) = (stop.clone(), log.clone(), targets.clone());
                rt.spawn(async move {
                    let mut turn = w;
                    while !stop.load(Ordering::Relaxed) {
                        turn += 1;
                        let (via, addr) = targets[turn % targets.len()];
                        let (n, vip) = next_vip();
                        let name = format!("chaos-w{w}-{n}");
                        let sent = Instant::now();
                        match create_lb_at(addr, &name, &vip, WRITE_TIMEOUT).await {
                            Ok(id) => log.lock().expect("write log").acks.push(Ack {
                                id,
                                name,
                                vip,
                                via,
                                sent,
                                acked: Instant::now(),
                            }),
                            Err(e) => {
                                {
                                    let mut l = log.lock().expect("write log");
                                    l.failures += 1;
                                    if l.last_errors.len() >= 20 {
                                        l.last_errors.remove(0);
                                    }
                                    l.last_errors.push(format!(
                                        "via node {via}: {}: {}",
                                        e.code(),
                                        e.message()
                                    ));
                                }
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                        }
                    }
                })
            })
            .collect();
        Writers {
            stop,
            log,
            tasks,
            started: Instant::now(),
        }
    }

    /// Number of acknowledged writes so far.
    pub fn acked(&self) -> usize {
        self.log.lock().expect("write log").acks.len()
    }

    /// A copy of the acknowledged writes so far.
    pub fn acks(&self) -> Vec<Ack> {
        self.log.lock().expect("write log").acks.clone()
    }

    /// The last few errors the writers saw.
    pub fn last_errors(&self) -> Vec<String> {
        self.log.lock().expect("write log").last_errors.clone()
    }

    /// Waits until `n` more writes than now are acknowledged.
    pub async fn wait_for_more(&self, n: usize, within: Duration) -> Result<(), String> {
        let target = self.acked() + n;
        let deadline = Instant::now() + within;
        while self.acked() < target {
            if Instant::now() > deadline {
                return Err(format!(
                    "writers made no progress: {} of {target} acknowledged within {within:?}; last errors: {:?}",
                    self.acked(),
                    self.last_errors()
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }

    /// Waits for the first acknowledged write that was sent at or after `since` and returns
    /// how long after `since` it was acknowledged (the write-unavailability window of a fault).
    pub async fn wait_for_ack_sent_after(
        &self,
        since: Instant,
        within: Duration,
    ) -> Result<Duration, String> {
        let deadline = Instant::now() + within;
        loop {
            let first = self
                .log
                .lock()
                .expect("write log")
                .acks
                .iter()
                .filter(|a| a.sent >= since)
                .map(|a| a.acked)
                .min();
            if let Some(at) = first {
                return Ok(at - since);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "no write sent after the fault acknowledged within {within:?}; last errors: {:?}",
                    self.last_errors()
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops the writers and returns what they did.
    pub async fn finish(mut self) -> WriteReport {
        self.stop.store(true, Ordering::Relaxed);
        for t in std::mem::take(&mut self.tasks) {
            let _ = t.await;
        }
        let elapsed = self.started.elapsed();
        let log = self.log.lock().expect("write log");
        let mut acks = log.acks.clone();
        acks.sort_by_key(|a| a.acked);
        let mut longest_gap = Duration::ZERO;
        let mut prev = self.started;
        for a in &acks {
            longest_gap = longest_gap.max(a.acked.saturating_duration_since(prev));
            prev = a.acked;
        }
        WriteReport {
            acks,
            failures: log.failures,
            elapsed,
            longest_gap,
        }
    }
}

impl Drop for Writers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Checks that every acknowledged write exists, with its name and VIP, on every node the
/// client can reach (linearizable list reads), waiting up to `within` for nodes that are
/// catching up; and that no writer's name exists twice. Fails the test with the node logs
/// otherwise.
pub async fn verify_acked(lab: &Lab, acks: &[Ack], within: Duration) {
    let expected: BTreeMap<&str, &Ack> = acks.iter().map(|a| (a.id.as_str(), a)).collect();
    for id in lab.reachable_nodes() {
        let deadline = Instant::now() + within;
        loop {
            let problem = match lab.list_lbs(id, Duration::from_secs(5)).await {
                Err(e) => Some(format!("list on node {id}: {e}")),
                Ok(listed) => {
                    let by_id: BTreeMap<&str, _> =
                        listed.iter().map(|l| (l.id.as_str(), l)).collect();
                    let missing: Vec<&str> = expected
                        .keys()
                        .filter(|k| !by_id.contains_key(*k))
                        .copied()
                        .collect();
                    let wrong: Vec<String> = expected
                        .values()
                        .filter_map(|a| {
                            let l = by_id.get(a.id.as_str())?;
                            (l.name != a.name || l.vip_address != a.vip).then(|| {
                                format!(
                                    "{} is {}/{} but was created as {}/{}",
                                    a.id, l.name, l.vip_address, a.name, a.vip
                                )
                            })
                        })
                        .collect();
                    let mut names = BTreeSet::new();
                    let dups: Vec<&str> = listed
                        .iter()
                        .filter(|l| l.name.starts_with("chaos-w"))
                        .filter(|l| !names.insert(l.name.as_str()))
                        .map(|l| l.name.as_str())
                        .collect();
                    if !wrong.is_empty() || !dups.is_empty() {
                        lab.fail(&format!(
                            "node {id}: acknowledged writes changed: {wrong:?}; names created twice: {dups:?}"
                        ));
                    }
                    if missing.is_empty() {
                        None
                    } else {
                        Some(format!(
                            "node {id} lacks {} of {} acknowledged writes, e.g. {:?}",
                            missing.len(),
                            expected.len(),
                            &missing[..missing.len().min(5)]
                        ))
                    }
                }
            };
            match problem {
                None => break,
                Some(p) if Instant::now() > deadline => {
                    lab.fail(&format!("acknowledged writes lost: {p}"))
                }
                Some(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
}
