//! gRPC clients of the nodes' admin APIs, opened from the client namespace.
//!
//! Every call goes over a fresh connection made on the client namespace's thread (see
//! [`crate::netns::NetnsRuntime`]): a client that reconnects per call sees the cluster as a
//! new client would, and no half-dead connection from before a fault skews a measurement.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use fulcrum_proto::v1::cluster_service_client::ClusterServiceClient;
use fulcrum_proto::v1::load_balancer_service_client::LoadBalancerServiceClient;
use fulcrum_proto::v1::*;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

/// The admin token every lab node accepts (its SHA-256 is in each node's config).
pub const ADMIN_TOKEN: &str = "fulcrum-chaos-admin-token";

/// Adds `authorization: Bearer <token>` to every request.
#[derive(Clone)]
pub struct Bearer(pub String);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut r: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let value = format!("Bearer {}", self.0)
            .parse()
            .map_err(|_| tonic::Status::internal("token is not a valid header value"))?;
        r.metadata_mut().insert("authorization", value);
        Ok(r)
    }
}

/// A channel with the bearer token.
pub type Authed = InterceptedService<Channel, Bearer>;

/// A lazily connecting channel to `addr`. Must be called on the client namespace's thread
/// (inside [`crate::netns::NetnsRuntime::run`] or a task it spawned).
pub fn channel(addr: SocketAddr, timeout: Duration) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .expect("a socket address is a valid URI")
        .connect_timeout(Duration::from_millis(500).min(timeout))
        .timeout(timeout)
        .connect_lazy()
}

/// The load balancer service at `addr`, authenticated as admin.
pub fn lbs(addr: SocketAddr, timeout: Duration) -> LoadBalancerServiceClient<Authed> {
    LoadBalancerServiceClient::with_interceptor(channel(addr, timeout), Bearer(ADMIN_TOKEN.into()))
}

/// The cluster service at `addr`, authenticated as admin.
pub fn cluster(addr: SocketAddr, timeout: Duration) -> ClusterServiceClient<Authed> {
    ClusterServiceClient::with_interceptor(channel(addr, timeout), Bearer(ADMIN_TOKEN.into()))
}

/// `GetClusterStatus` of one node (its own view: no forwarding).
pub async fn cluster_status(addr: SocketAddr, timeout: Duration) -> Result<ClusterStatus, String> {
    let mut client = cluster(addr, timeout);
    let call = client.get_cluster_status(GetClusterStatusRequest {});
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(r)) => Ok(r.into_inner()),
        Ok(Err(e)) => Err(format!("{}: {}", e.code(), e.message())),
        Err(_) => Err(format!("no answer within {timeout:?}")),
    }
}

/// A summary of one load balancer as listed by a node.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct LbSummary {
    /// Object id.
    pub id: String,
    /// Name given at create.
    pub name: String,
    /// VIP address.
    pub vip_address: String,
}

/// Every load balancer a node lists (all pages; linearizable reads through the leader).
pub async fn list_all_lbs(addr: SocketAddr, timeout: Duration) -> Result<Vec<LbSummary>, String> {
    let mut client = lbs(addr, timeout);
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    let mut marker = String::new();
    loop {
        let call = client.list_load_balancers(ListLoadBalancersRequest {
            options: Some(ListOptions {
                marker: marker.clone(),
                limit: 1000,
                ..Default::default()
            }),
            ..Default::default()
        });
        let page = match tokio::time::timeout(timeout, call).await {
            Ok(Ok(r)) => r.into_inner(),
            Ok(Err(e)) => return Err(format!("{}: {}", e.code(), e.message())),
            Err(_) => return Err(format!("no answer within {timeout:?}")),
        };
        for lb in page.loadbalancers {
            if seen.insert(lb.id.clone()) {
                out.push(LbSummary {
                    id: lb.id,
                    name: lb.name,
                    vip_address: lb.vip_address,
                });
            }
        }
        if page.next_marker.is_empty() {
            return Ok(out);
        }
        marker = page.next_marker;
    }
}

fn status_text(e: &tonic::Status) -> String {
    format!("{}: {}", e.code(), e.message())
}

/// Creates a load balancer (a whole tree if `lb` has listeners and pools); returns it as
/// acknowledged.
pub async fn create_lb_tree(
    addr: SocketAddr,
    lb: LoadBalancerCreate,
    timeout: Duration,
) -> Result<LoadBalancer, String> {
    let mut client = lbs(addr, timeout);
    let call = client.create_load_balancer(CreateLoadBalancerRequest {
        loadbalancer: Some(lb),
    });
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(r)) => Ok(r.into_inner()),
        Ok(Err(e)) => Err(status_text(&e)),
        Err(_) => Err(format!("no answer within {timeout:?}")),
    }
}

/// `GetLoadBalancer` (a linearizable read).
pub async fn get_lb(addr: SocketAddr, id: &str, timeout: Duration) -> Result<LoadBalancer, String> {
    let mut client = lbs(addr, timeout);
    let call = client.get_load_balancer(GetLoadBalancerRequest {
        loadbalancer_id: id.to_string(),
    });
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(r)) => Ok(r.into_inner()),
        Ok(Err(e)) => Err(status_text(&e)),
        Err(_) => Err(format!("no answer within {timeout:?}")),
    }
}

/// `FailoverLoadBalancer` (admin): moves the VIP to another node.
pub async fn failover_lb(
    addr: SocketAddr,
    id: &str,
    timeout: Duration,
) -> Result<LoadBalancer, String> {
    let mut client = lbs(addr, timeout);
    let call = client.failover_load_balancer(FailoverLoadBalancerRequest {
        loadbalancer_id: id.to_string(),
    });
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(r)) => r
            .into_inner()
            .loadbalancer
            .ok_or_else(|| "failover answered no load balancer".to_string()),
        Ok(Err(e)) => Err(status_text(&e)),
        Err(_) => Err(format!("no answer within {timeout:?}")),
    }
}
