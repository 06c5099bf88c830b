//! Three real `fulcrum serve` processes on loopback: writes through followers, linearizable
//! reads everywhere, kill -9 of the leader under concurrent writers, catch-up of a restarted
//! node, and a full-cluster crash and restart, checking that no acknowledged write is lost.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use fulcrum_proto::v1::*;

fn vip(n: u64) -> String {
    format!("10.{}.{}.{}", (n >> 16) & 255, (n >> 8) & 255, n & 255)
}

fn lb_with_vip(name: &str, n: u64) -> CreateLoadBalancerRequest {
    CreateLoadBalancerRequest {
        loadbalancer: Some(LoadBalancerCreate {
            name: name.into(),
            vip_address: vip(n),
            ..Default::default()
        }),
    }
}

/// Every load balancer id a node lists (all pages).
async fn all_lb_ids(node: &Node) -> Result<BTreeSet<String>, String> {
    let mut client = node.lbs().await;
    let mut ids = BTreeSet::new();
    let mut marker = String::new();
    loop {
        let page = client
            .list_load_balancers(ListLoadBalancersRequest {
                options: Some(ListOptions {
                    marker: marker.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .map_err(|e| e.to_string())?
            .into_inner();
        ids.extend(page.loadbalancers.into_iter().map(|lb| lb.id));
        if page.next_marker.is_empty() {
            return Ok(ids);
        }
        marker = page.next_marker;
    }
}

/// Writers that create load balancers through every running node in turn and record each
/// acknowledged one.
struct Writers {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<String>>>,
    errors: Arc<AtomicU64>,
    last_ack: Arc<Mutex<Instant>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Writers {
    fn start(admins: Vec<String>, writers: u64) -> Writers {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let errors = Arc::new(AtomicU64::new(0));
        let last_ack = Arc::new(Mutex::new(Instant::now()));
        let counter = Arc::new(AtomicU64::new(1000));
        let tasks = (0..writers)
            .map(|w| {
                let (stop, acked, errors, last_ack, counter, admins) =
                    (stop.clone(), acked.clone(), errors.clone(), last_ack.clone(), counter.clone(), admins.clone());
                tokio::spawn(async move {
                    let mut turn = w as usize;
                    while !stop.load(Ordering::Relaxed) {
                        turn += 1;
                        let admin = &admins[turn % admins.len()];
                        let channel = tonic::transport::Channel::from_shared(format!("http://{admin}"))
                            .unwrap()
                            .connect_timeout(Duration::from_millis(300))
                            .timeout(Duration::from_secs(5))
                            .connect_lazy();
                        let mut client = fulcrum_proto::v1::load_balancer_service_client::LoadBalancerServiceClient::with_interceptor(
                            channel,
                            Bearer(ADMIN_TOKEN.into()),
                        );
                        let n = counter.fetch_add(1, Ordering::Relaxed);
                        match client.create_load_balancer(lb_with_vip(&format!("w{w}-{n}"), n)).await {
                            Ok(r) => {
                                acked.lock().unwrap().push(r.into_inner().id);
                                *last_ack.lock().unwrap() = Instant::now();
                            }
                            Err(_) => {
                                errors.fetch_add(1, Ordering::Relaxed);
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                        }
                    }
                })
            })
            .collect();
        Writers {
            stop,
            acked,
            errors,
            last_ack,
            tasks,
        }
    }

    fn acked_count(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    async fn finish(self) -> (Vec<String>, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
        let acked = self.acked.lock().unwrap().clone();
        (acked, self.errors.load(Ordering::Relaxed))
    }
}

async fn wait_acks(writers: &Writers, at_least: usize, within: Duration) {
    let deadline = Instant::now() + within;
    while writers.acked_count() < at_least {
        assert!(
            Instant::now() < deadline,
            "writers made no progress ({} acked)",
            writers.acked_count()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_survive_leader_kill_and_full_restart() {
    let mut cluster = Cluster::start(3);
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await;
    let follower = (1..=3).find(|i| *i != leader).unwrap();

    // A write through a follower is forwarded to the leader and readable on every node.
    let lb = cluster
        .node(follower)
        .lbs()
        .await
        .create_load_balancer(lb_with_vip("through-follower", 1))
        .await
        .expect("create through a follower")
        .into_inner();
    for id in 1..=3 {
        let got = cluster
            .node(id)
            .lbs()
            .await
            .get_load_balancer(GetLoadBalancerRequest {
                loadbalancer_id: lb.id.clone(),
            })
            .await
            .unwrap_or_else(|e| panic!("read on node {id}: {e}"))
            .into_inner();
        assert_eq!(got.name, "through-follower");
    }

    // Concurrent writers through every node; kill -9 the leader in the middle.
    let admins: Vec<String> = cluster.nodes.iter().map(|n| n.admin.clone()).collect();
    let writers = Writers::start(admins, 6);
    wait_acks(&writers, 30, Duration::from_secs(20)).await;
    let killed_at = Instant::now();
    cluster.kill(leader);
    let before = writers.acked_count();
    let new_leader = cluster.wait_for_leader(Duration::from_secs(10)).await;
    assert_ne!(new_leader, leader);
    wait_acks(&writers, before + 30, Duration::from_secs(20)).await;
    let recovered = *writers.last_ack.lock().unwrap() - killed_at;
    eprintln!("leader {leader} killed; new leader {new_leader}; writes acknowledged again after {recovered:?}");

    // The killed node comes back and catches up.
    cluster.restart(leader);
    let (acked, errors) = writers.finish().await;
    eprintln!(
        "{} writes acknowledged, {errors} failed attempts",
        acked.len()
    );
    let expected: BTreeSet<String> = acked.iter().cloned().chain([lb.id.clone()]).collect();
    let restarted = cluster.node(leader);
    eventually(Duration::from_secs(30), || async {
        let ids = all_lb_ids(restarted).await?;
        let missing = expected.difference(&ids).count();
        if missing == 0 {
            Ok(())
        } else {
            Err(format!(
                "{missing} acknowledged writes missing on restarted node"
            ))
        }
    })
    .await;

    // Crash the whole cluster (kill -9 all), start it again: every acknowledged write is there.
    for id in 1..=3 {
        cluster.kill(id);
    }
    for id in 1..=3 {
        cluster.restart(id);
    }
    cluster.wait_for_leader(Duration::from_secs(30)).await;
    for id in 1..=3 {
        let node = cluster.node(id);
        let ids = eventually(Duration::from_secs(30), || async { all_lb_ids(node).await }).await;
        let missing: Vec<&String> = expected.difference(&ids).collect();
        if !missing.is_empty() {
            cluster.dump_logs();
        }
        assert!(
            missing.is_empty(),
            "node {id} lost {} acknowledged writes: {missing:?}",
            missing.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn graceful_stop_and_follower_restart_keep_serving() {
    let mut cluster = Cluster::start(3);
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await;
    let follower = (1..=3).find(|i| *i != leader).unwrap();
    // A follower stopped with SIGTERM exits cleanly; the other two keep a quorum.
    cluster.stop(follower);
    let other = (1..=3).find(|i| *i != leader && *i != follower).unwrap();
    let lb = cluster
        .node(other)
        .lbs()
        .await
        .create_load_balancer(lb_with_vip("while-one-down", 7))
        .await
        .expect("write with one node down")
        .into_inner();
    cluster.restart(follower);
    let node = cluster.node(follower);
    let got = eventually(Duration::from_secs(30), || async {
        node.lbs()
            .await
            .get_load_balancer(GetLoadBalancerRequest {
                loadbalancer_id: lb.id.clone(),
            })
            .await
            .map(|r| r.into_inner())
            .map_err(|e| e.to_string())
    })
    .await;
    assert_eq!(got.name, "while-one-down");
    // The status turns ACTIVE once the data planes confirmed the revision.
    let active = eventually(Duration::from_secs(10), || async {
        let lb = node
            .lbs()
            .await
            .get_load_balancer(GetLoadBalancerRequest {
                loadbalancer_id: lb.id.clone(),
            })
            .await
            .map_err(|e| e.to_string())?
            .into_inner();
        if lb.provisioning_status == ProvisioningStatus::Active as i32 {
            Ok(lb)
        } else {
            Err("still pending".into())
        }
    })
    .await;
    assert_eq!(active.operating_status, OperatingStatus::Online as i32);
}

/// Owner of every load balancer, as one node sees it.
async fn owners(node: &Node) -> Result<std::collections::BTreeMap<String, String>, String> {
    let page = node
        .lbs()
        .await
        .list_load_balancers(ListLoadBalancersRequest::default())
        .await
        .map_err(|e| e.to_string())?
        .into_inner();
    Ok(page
        .loadbalancers
        .into_iter()
        .map(|lb| (lb.id, lb.vip_owner))
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn vips_are_spread_and_move_off_a_dead_node_without_flapping_back() {
    let mut cluster = Cluster::start(3);
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await;
    for n in 0..6 {
        cluster
            .node(leader)
            .lbs()
            .await
            .create_load_balancer(lb_with_vip(&format!("spread-{n}"), 100 + n))
            .await
            .expect("create");
    }
    let placed = eventually(Duration::from_secs(10), || async {
        let o = owners(cluster.node(leader)).await?;
        if o.values().all(|v| !v.is_empty()) {
            Ok(o)
        } else {
            Err(format!("unplaced: {o:?}"))
        }
    })
    .await;
    let mut per_node = std::collections::BTreeMap::<String, usize>::new();
    for owner in placed.values() {
        *per_node.entry(owner.clone()).or_default() += 1;
    }
    assert_eq!(
        per_node.values().copied().collect::<Vec<_>>(),
        vec![2, 2, 2],
        "spread: {per_node:?}"
    );

    // Kill a follower that owns VIPs: its VIPs move to the live nodes.
    let victim = (1..=3).find(|i| *i != leader).unwrap();
    cluster.kill(victim);
    let killed_at = Instant::now();
    let moved = eventually(Duration::from_secs(10), || async {
        let o = owners(cluster.node(leader)).await?;
        if o.values().any(|v| *v == victim.to_string() || v.is_empty()) {
            Err(format!("still on {victim}: {o:?}"))
        } else {
            Ok(o)
        }
    })
    .await;
    eprintln!(
        "VIPs of node {victim} placed elsewhere {:?} after its kill",
        killed_at.elapsed()
    );

    // The node comes back: nothing moves back to it.
    cluster.restart(victim);
    let restarted = cluster.node(victim);
    eventually(Duration::from_secs(20), || async {
        owners(restarted).await
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        owners(cluster.node(leader)).await.unwrap(),
        moved,
        "placement changed after the node returned"
    );
}
