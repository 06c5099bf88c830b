//! A running node: Raft on the peer port, the admin API on the admin port (with gRPC
//! reflection and health, so grpcurl works with no .proto files), the data plane and the
//! loops that keep it converged.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use fulcrum_control::api::{Api, ApiConfig};
use fulcrum_dataplane::Dataplane;
use fulcrum_proto::v1::cluster_service_server::ClusterServiceServer;
use fulcrum_proto::v1::health_monitor_service_server::HealthMonitorServiceServer;
use fulcrum_proto::v1::l7_policy_service_server::L7PolicyServiceServer;
use fulcrum_proto::v1::l7_rule_service_server::L7RuleServiceServer;
use fulcrum_proto::v1::listener_service_server::ListenerServiceServer;
use fulcrum_proto::v1::load_balancer_service_server::LoadBalancerServiceServer;
use fulcrum_proto::v1::member_service_server::MemberServiceServer;
use fulcrum_proto::v1::pool_service_server::PoolServiceServer;
use fulcrum_proto::v1::quota_service_server::QuotaServiceServer;
use fulcrum_raft::{RaftConfig, RaftNode};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::Checked;
use crate::ownership::{self, HeldVip, OwnershipTimings, VipHolder};
use crate::reconcile;
use crate::replica::{ModelApp, RaftStore};
use crate::vip::{VipManager, VipManagerConfig};

/// How long a stopping node lets established connections finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Asks the cluster to place this node's VIPs elsewhere (bounded: a node that lost its
/// quorum cannot, and its lease runs out anyway).
async fn release_vips(raft: &RaftNode<ModelApp>) {
    let me = raft.node_id().to_string();
    let owners: std::collections::HashMap<String, u64> = raft.read_local(|app| {
        app.state
            .vip_owners()
            .get(&me)
            .map(|ids| ids.iter().map(|id| (id.clone(), 0)).collect())
            .unwrap_or_default()
    });
    if owners.is_empty() {
        return;
    }
    let op = fulcrum_proto::internal::command::Op::VipAssignments(
        fulcrum_proto::internal::VipAssignments {
            owners,
            ..Default::default()
        },
    );
    let write = raft.write(reconcile::background_command(op));
    match tokio::time::timeout(Duration::from_secs(2), write).await {
        Ok(Ok(_)) => tracing::info!("VIPs handed over"),
        _ => tracing::warn!("could not hand VIPs over; they move when this node's lease runs out"),
    }
}

/// Holds VIPs by logging only (until the host VIP manager is wired in).
struct LoggingHolder;

impl VipHolder for LoggingHolder {
    async fn set_local(&self, vips: &BTreeSet<HeldVip>) {
        tracing::debug!(count = vips.len(), "local VIPs");
    }
    async fn set_held(&self, vips: &BTreeSet<HeldVip>) {
        tracing::info!(?vips, "VIPs held");
    }
}

async fn bind(what: &str, addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for the {what} on {addr}"))
}

/// Runs a node until `outer_shutdown` turns true (or the admin server fails); then stops
/// accepting, drains and returns.
pub async fn run(config: Checked, outer_shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let file = &config.file;
    // One internal signal, raised by the caller's or by a failing admin server.
    let (stop_tx, shutdown) = watch::channel(false);
    let stop_tx = Arc::new(stop_tx);
    tokio::spawn({
        let (mut outer, stop_tx) = (outer_shutdown, stop_tx.clone());
        async move {
            let _ = outer.wait_for(|s| *s).await;
            let _ = stop_tx.send(true);
        }
    });
    std::fs::create_dir_all(&file.data_dir)
        .with_context(|| format!("cannot create data_dir {}", file.data_dir.display()))?;
    let peer_listener = bind("Raft peers", file.peer_listen).await?;
    let admin_listener = bind("admin API", file.admin_listen).await?;
    let metrics_listener = match file.metrics_listen {
        Some(addr) => Some(bind("metrics", addr).await?),
        None => None,
    };

    let timings = OwnershipTimings::from_heartbeat(Duration::from_millis(file.raft.heartbeat_ms));
    let mut raft_config = RaftConfig::new(
        file.node_id,
        file.data_dir.join("raft"),
        config.peer_advertise.clone(),
        config.members.clone(),
    );
    raft_config.heartbeat_ms = file.raft.heartbeat_ms;
    raft_config.election_timeout_min_ms = file.raft.election_timeout_min_ms;
    raft_config.election_timeout_max_ms = file.raft.election_timeout_max_ms;
    raft_config.lease_ms = u64::try_from(timings.lease.as_millis()).unwrap_or(u64::MAX);
    // Building a snapshot copies the whole model while applying waits; every 100,000 entries
    // keeps that rare at thousands of writes/s, for a log of some tens of MB.
    raft_config.snapshot_every_logs = 100_000;
    let raft = RaftNode::start(raft_config, ModelApp::default())
        .await
        .context("cannot start Raft")?;

    let stop = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let peer = tokio::spawn({
        let raft = raft.clone();
        // Serves until Raft shuts down: a stopping node still takes part while it hands its
        // leadership and VIPs over and drains.
        async move { raft.serve_peer(peer_listener, std::future::pending()).await }
    });
    raft.initialize_if_fresh()
        .await
        .context("cannot initialize the cluster")?;

    let dataplane = Dataplane::with_workers(file.dataplane.workers(), stop(shutdown.clone()))
        .context("cannot start the data plane")?;
    dataplane.set_access_log(file.dataplane.access_log);
    let store = RaftStore {
        raft: raft.clone(),
        timings,
    };
    let api = Api::new(
        store,
        ApiConfig {
            tokens: config.tokens.clone(),
            vip_subnets: config.vip_subnets.clone(),
        },
        Some(Arc::new(reconcile::DataplaneStats(dataplane.clone()))),
    );
    // VIPs announced on an interface need the host machinery (CAP_NET_ADMIN, CAP_NET_RAW);
    // loopback-only clusters (dev, tests) hold VIPs by bookkeeping alone.
    let vip_stop = watch::channel(false).0;
    let vip_manager = if config.vip_subnets.iter().any(|s| !s.interface.is_empty()) {
        Some(
            // Stopped only after the data plane drained: removing the addresses earlier would
            // cut established connections.
            VipManager::start(VipManagerConfig::default(), stop(vip_stop.subscribe()))
                .await
                .context("cannot start the VIP manager (needs CAP_NET_ADMIN and CAP_NET_RAW)")?,
        )
    } else {
        None
    };
    if let Some(listener) = metrics_listener {
        tokio::spawn({
            let (raft, dataplane, vips, shutdown) = (
                raft.clone(),
                dataplane.clone(),
                vip_manager.clone(),
                shutdown.clone(),
            );
            async move {
                if let Err(e) =
                    crate::metrics::serve(listener, raft, dataplane, vips, shutdown).await
                {
                    tracing::error!(error = %e, "metrics endpoint stopped");
                }
            }
        });
    }
    let holding = match vip_manager.clone() {
        Some(vm) => tokio::spawn(ownership::hold(
            raft.clone(),
            vm,
            config.vip_subnets.clone(),
            timings,
            shutdown.clone(),
        )),
        None => tokio::spawn(ownership::hold(
            raft.clone(),
            LoggingHolder,
            config.vip_subnets.clone(),
            timings,
            shutdown.clone(),
        )),
    };
    let loops = [
        holding,
        tokio::spawn(reconcile::run(
            raft.clone(),
            dataplane.clone(),
            config.quota_defaults.clone(),
            file.dataplane.default_connection_limit(),
            shutdown.clone(),
        )),
        tokio::spawn(reconcile::report_health(
            raft.clone(),
            dataplane.clone(),
            shutdown.clone(),
        )),
        tokio::spawn(ownership::place(raft.clone(), timings, shutdown.clone())),
    ];

    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(fulcrum_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("reflection service")?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(fulcrum_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .context("reflection service")?;
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<LoadBalancerServiceServer<Api<RaftStore>>>()
        .await;

    tracing::info!(
        node_id = file.node_id,
        admin = %file.admin_listen,
        peer = %file.peer_listen,
        "fulcrum node serving"
    );
    let incoming =
        tonic::transport::server::TcpIncoming::from(admin_listener).with_nodelay(Some(true));
    let admin = tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(LoadBalancerServiceServer::new(api.clone()))
        .add_service(ListenerServiceServer::new(api.clone()))
        .add_service(PoolServiceServer::new(api.clone()))
        .add_service(MemberServiceServer::new(api.clone()))
        .add_service(HealthMonitorServiceServer::new(api.clone()))
        .add_service(L7PolicyServiceServer::new(api.clone()))
        .add_service(L7RuleServiceServer::new(api.clone()))
        .add_service(QuotaServiceServer::new(api.clone()))
        .add_service(ClusterServiceServer::new(api))
        .serve_with_incoming_shutdown(incoming, stop(shutdown.clone()));
    let result = admin.await.context("admin API server");
    let _ = stop_tx.send(true);
    for task in loops {
        let _ = task.await;
    }
    // Graceful stop: hand leadership (so no election timeout is needed) and this node's VIPs
    // to the others, then let established connections finish (bounded), then remove the
    // addresses and leave the cluster.
    raft.step_down(Duration::from_secs(1)).await;
    release_vips(&raft).await;
    let open = dataplane.drained(DRAIN_TIMEOUT).await;
    if open > 0 {
        tracing::warn!(open, "connections still open after the drain timeout");
    }
    let _ = vip_stop.send(true);
    if let Some(vm) = &vip_manager {
        vm.stopped().await;
    }
    raft.shutdown().await.context("Raft shutdown")?;
    let _ = peer.await;
    tracing::info!(node_id = file.node_id, "fulcrum node stopped");
    result
}
