//! Server side of the peer transport: the `fulcrum.raft.v1.RaftPeer` gRPC service.

use openraft::raft::AppendEntriesRequest;
use openraft::raft::TransferLeaderRequest;
use openraft::raft::VoteRequest;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::Request;
use tonic::Response;
use tonic::Status;
use tonic::Streaming;

use crate::node::attempt_to_peer_error;
use crate::node::Attempt;
use crate::node::Op;
use crate::node::Out;
use crate::pb;
use crate::pb::raft_peer_server::RaftPeer;
use crate::types::Snapshot;
use crate::types::SnapshotMeta;
use crate::types::TypeConfig;
use crate::types::Vote;
use crate::App;
use crate::RaftNode;

/// The peer gRPC service of one [`RaftNode`]; see [`RaftNode::peer_service`].
pub struct PeerService<A: App> {
    node: RaftNode<A>,
}

impl<A: App> PeerService<A> {
    pub(crate) fn new(node: RaftNode<A>) -> Self {
        Self { node }
    }
}

fn decode<T: DeserializeOwned>(json: &[u8], what: &str) -> Result<T, Status> {
    serde_json::from_slice(json)
        .map_err(|e| Status::invalid_argument(format!("malformed {what}: {e}")))
}

fn reply<T: Serialize>(v: &T) -> Result<Response<pb::RaftMessage>, Status> {
    serde_json::to_vec(v)
        .map(|json| Response::new(pb::RaftMessage { json }))
        .map_err(|e| Status::internal(format!("encode reply: {e}")))
}

fn stopped(e: impl std::fmt::Display) -> Status {
    Status::unavailable(format!("raft node stopped: {e}"))
}

#[tonic::async_trait]
impl<A: App> RaftPeer for PeerService<A> {
    async fn append_entries(
        &self,
        request: Request<pb::RaftMessage>,
    ) -> Result<Response<pb::RaftMessage>, Status> {
        let rpc: AppendEntriesRequest<TypeConfig> =
            decode(&request.into_inner().json, "AppendEntriesRequest")?;
        let resp = self
            .node
            .inner
            .raft
            .append_entries(rpc)
            .await
            .map_err(stopped)?;
        reply(&resp)
    }

    async fn vote(
        &self,
        request: Request<pb::RaftMessage>,
    ) -> Result<Response<pb::RaftMessage>, Status> {
        let rpc: VoteRequest<TypeConfig> = decode(&request.into_inner().json, "VoteRequest")?;
        let resp = self.node.inner.raft.vote(rpc).await.map_err(stopped)?;
        reply(&resp)
    }

    async fn pre_vote(
        &self,
        request: Request<pb::RaftMessage>,
    ) -> Result<Response<pb::RaftMessage>, Status> {
        let rpc: VoteRequest<TypeConfig> = decode(&request.into_inner().json, "VoteRequest")?;
        let resp = self.node.inner.raft.pre_vote(rpc).await.map_err(stopped)?;
        reply(&resp)
    }

    async fn transfer_leader(
        &self,
        request: Request<pb::RaftMessage>,
    ) -> Result<Response<pb::RaftMessage>, Status> {
        let rpc: TransferLeaderRequest<TypeConfig> =
            decode(&request.into_inner().json, "TransferLeaderRequest")?;
        let resp = self
            .node
            .inner
            .raft
            .handle_transfer_leader(rpc)
            .await
            .map_err(stopped)?;
        reply(&resp)
    }

    async fn install_snapshot(
        &self,
        request: Request<Streaming<pb::SnapshotChunk>>,
    ) -> Result<Response<pb::RaftMessage>, Status> {
        let mut stream = request.into_inner();
        let first = stream
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("empty snapshot stream"))?;
        let vote: Vote = decode(&first.vote_json, "snapshot vote")?;
        let meta: SnapshotMeta = decode(&first.meta_json, "snapshot meta")?;
        let mut data = first.data;
        while let Some(chunk) = stream.message().await? {
            data.extend_from_slice(&chunk.data);
        }
        // Reject garbage before openraft sees it (it panics on inconsistent snapshots).
        let embedded = crate::store::decode_snapshot_meta(&data)
            .map_err(|e| Status::invalid_argument(format!("malformed snapshot data: {e}")))?;
        if embedded != meta {
            return Err(Status::invalid_argument(
                "snapshot meta does not match its data",
            ));
        }
        let snapshot = Snapshot {
            meta,
            snapshot: data,
        };
        let resp = self
            .node
            .inner
            .raft
            .install_full_snapshot(vote, snapshot)
            .await
            .map_err(stopped)?;
        reply(&resp)
    }

    async fn forward(
        &self,
        request: Request<pb::ForwardRequest>,
    ) -> Result<Response<pb::ForwardResponse>, Status> {
        let op = Op::Write(request.into_inner().command);
        let res = self.node.run_local(&op).await;
        let error = attempt_to_peer_error(&res);
        let response = match res {
            Ok(Attempt::Done(Out::Bytes(b))) => b,
            _ => Vec::new(),
        };
        Ok(Response::new(pb::ForwardResponse { response, error }))
    }

    async fn read_index(
        &self,
        _request: Request<pb::ReadIndexRequest>,
    ) -> Result<Response<pb::ReadIndexResponse>, Status> {
        let res = self.node.run_local(&Op::ReadIndex).await;
        let error = attempt_to_peer_error(&res);
        let index = match res {
            Ok(Attempt::Done(Out::Index(i))) => i,
            _ => 0,
        };
        Ok(Response::new(pb::ReadIndexResponse { index, error }))
    }

    async fn add_learner(
        &self,
        request: Request<pb::AddLearnerRequest>,
    ) -> Result<Response<pb::ManagementResponse>, Status> {
        let req = request.into_inner();
        let res = self
            .node
            .run_local(&Op::AddLearner(req.node_id, req.addr))
            .await;
        Ok(Response::new(pb::ManagementResponse {
            error: attempt_to_peer_error(&res),
        }))
    }

    async fn renew_lease(
        &self,
        request: Request<pb::LeaseRequest>,
    ) -> Result<Response<pb::LeaseResponse>, Status> {
        let req = request.into_inner();
        let index = self.node.grant_lease(req.node_id, req.term, req.holding);
        Ok(Response::new(pb::LeaseResponse {
            granted: index.is_some(),
            log_index: index.unwrap_or(0),
        }))
    }

    async fn change_voters(
        &self,
        request: Request<pb::ChangeVotersRequest>,
    ) -> Result<Response<pb::ManagementResponse>, Status> {
        let voters = request.into_inner().voters.into_iter().collect();
        let res = self.node.run_local(&Op::ChangeVoters(voters)).await;
        Ok(Response::new(pb::ManagementResponse {
            error: attempt_to_peer_error(&res),
        }))
    }
}
