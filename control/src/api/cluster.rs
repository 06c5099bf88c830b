//! `ClusterService`: membership of the Raft cluster (admin only).

use std::collections::BTreeSet;

use fulcrum_proto::v1::cluster_service_server::ClusterService;
use fulcrum_proto::v1::*;
use tonic::{Request, Response, Status};

use super::{Api, Store};

impl<S: Store> Api<S> {
    fn voters(&self) -> BTreeSet<u64> {
        self.inner
            .store
            .cluster_status()
            .nodes
            .iter()
            .filter(|n| n.voter)
            .map(|n| n.node_id)
            .collect()
    }
}

#[tonic::async_trait]
impl<S: Store> ClusterService for Api<S> {
    async fn get_cluster_status(
        &self,
        request: Request<GetClusterStatusRequest>,
    ) -> Result<Response<ClusterStatus>, Status> {
        self.caller(&request)?
            .require_admin("reading the cluster status")?;
        Ok(Response::new(self.inner.store.cluster_status()))
    }

    async fn add_learner(
        &self,
        request: Request<AddLearnerRequest>,
    ) -> Result<Response<ClusterStatus>, Status> {
        self.caller(&request)?
            .require_admin("changing the cluster")?;
        let r = request.into_inner();
        if r.node_id == 0 {
            return Err(Status::invalid_argument(
                "node_id: must be a positive integer",
            ));
        }
        if r.peer_address.parse::<std::net::SocketAddr>().is_err() && !r.peer_address.contains(':')
        {
            return Err(Status::invalid_argument(format!(
                "peer_address: '{}' must be host:port",
                r.peer_address
            )));
        }
        self.inner
            .store
            .add_learner(r.node_id, r.peer_address)
            .await?;
        Ok(Response::new(self.inner.store.cluster_status()))
    }

    async fn promote_node(
        &self,
        request: Request<PromoteNodeRequest>,
    ) -> Result<Response<ClusterStatus>, Status> {
        self.caller(&request)?
            .require_admin("changing the cluster")?;
        let id = request.into_inner().node_id;
        let status = self.inner.store.cluster_status();
        if !status.nodes.iter().any(|n| n.node_id == id) {
            return Err(Status::not_found(format!(
                "node {id} is not in the cluster; add it as a learner first"
            )));
        }
        let mut voters = self.voters();
        voters.insert(id);
        self.inner.store.change_voters(voters).await?;
        Ok(Response::new(self.inner.store.cluster_status()))
    }

    async fn remove_node(
        &self,
        request: Request<RemoveNodeRequest>,
    ) -> Result<Response<ClusterStatus>, Status> {
        self.caller(&request)?
            .require_admin("changing the cluster")?;
        let id = request.into_inner().node_id;
        let mut voters = self.voters();
        if !voters.remove(&id) {
            return Err(Status::not_found(format!("node {id} is not a voter")));
        }
        if voters.is_empty() {
            return Err(Status::failed_precondition("cannot remove the last voter"));
        }
        self.inner.store.change_voters(voters).await?;
        Ok(Response::new(self.inner.store.cluster_status()))
    }
}
