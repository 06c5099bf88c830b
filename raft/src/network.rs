//! Client side of the peer transport: one lazily connected, self-reconnecting tonic `Channel`
//! per peer address, shared by openraft's replication ([`NetworkFactory`]) and by forwarding.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use openraft::errors::NetworkError;
use openraft::errors::RPCError;
use openraft::errors::ReplicationClosed;
use openraft::errors::StreamingError;
use openraft::errors::Unreachable;
use openraft::network::RPCOption;
use openraft::raft::AppendEntriesRequest;
use openraft::raft::AppendEntriesResponse;
use openraft::raft::SnapshotResponse;
use openraft::raft::TransferLeaderRequest;
use openraft::raft::TransferLeaderResponse;
use openraft::raft::VoteRequest;
use openraft::raft::VoteResponse;
use openraft::BasicNode;
use openraft::OptionalSend;
use openraft::RaftNetworkFactory;
use openraft::RaftNetworkV2;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::Channel;
use tonic::transport::Endpoint;
use tonic::Code;

use crate::pb;
use crate::pb::raft_peer_client::RaftPeerClient;
use crate::types::Snapshot;
use crate::types::TypeConfig;
use crate::types::Vote;

/// Largest gRPC message accepted or sent on the peer transport.
pub(crate) const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

/// Size of one snapshot chunk on the wire.
const SNAPSHOT_CHUNK_BYTES: usize = 1024 * 1024;

/// Pool of peer channels, keyed by peer address.
#[derive(Clone, Default)]
pub(crate) struct PeerClients {
    channels: Arc<Mutex<HashMap<String, Channel>>>,
}

impl PeerClients {
    /// A client for `addr` ("host:port"), reusing the pooled channel.
    pub(crate) fn client(&self, addr: &str) -> Result<RaftPeerClient<Channel>, String> {
        let mut map = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        let channel = match map.get(addr) {
            Some(c) => c.clone(),
            None => {
                let endpoint = Endpoint::from_shared(format!("http://{addr}"))
                    .map_err(|e| format!("invalid peer address {addr:?}: {e}"))?
                    .connect_timeout(Duration::from_secs(1))
                    .tcp_nodelay(true)
                    .http2_keep_alive_interval(Duration::from_secs(5))
                    .keep_alive_timeout(Duration::from_secs(5))
                    .keep_alive_while_idle(true);
                let c = endpoint.connect_lazy();
                map.insert(addr.to_string(), c.clone());
                c
            }
        };
        Ok(RaftPeerClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES))
    }
}

/// `true` if the status says the connection could not be established, i.e. the request was
/// certainly not delivered.
pub(crate) fn is_connect_failure(status: &tonic::Status) -> bool {
    if status.code() != Code::Unavailable {
        return false;
    }
    let msg = status.message().to_ascii_lowercase();
    msg.contains("tcp connect error")
        || msg.contains("connection refused")
        || msg.contains("error trying to connect")
        || msg.contains("connect timeout")
        || msg.contains("timed out connecting")
        || msg.contains("dns error")
}

/// Creates per-target openraft network clients.
pub(crate) struct NetworkFactory {
    pub(crate) clients: PeerClients,
    /// Least deadline of a unary RPC. openraft asks for one heartbeat interval on heartbeats
    /// and appends; on a link slower than that (a round trip over 50 ms) nothing would ever
    /// complete and the leader could commit nothing, so deadlines are at least the Raft
    /// leader lease (election_timeout_max).
    pub(crate) min_deadline: Duration,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerNetwork;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> Self::Network {
        PeerNetwork {
            target,
            addr: node.addr.clone(),
            clients: self.clients.clone(),
            min_deadline: self.min_deadline,
        }
    }
}

/// Sends Raft RPCs to one peer.
pub(crate) struct PeerNetwork {
    target: u64,
    addr: String,
    clients: PeerClients,
    /// Least deadline of a unary RPC (see [`NetworkFactory::min_deadline`]).
    min_deadline: Duration,
}

fn unreachable(msg: impl ToString) -> RPCError<TypeConfig> {
    RPCError::Unreachable(Unreachable::from_string(msg))
}

fn network_err(msg: impl ToString) -> RPCError<TypeConfig> {
    RPCError::Network(NetworkError::from_string(msg))
}

fn status_to_rpc(target: u64, addr: &str, s: tonic::Status) -> RPCError<TypeConfig> {
    let msg = format!(
        "raft rpc to node {target} at {addr}: {}: {}",
        s.code(),
        s.message()
    );
    match s.code() {
        Code::Unavailable | Code::Cancelled | Code::Unknown | Code::DeadlineExceeded => {
            unreachable(msg)
        }
        _ => network_err(msg),
    }
}

fn encode<T: Serialize>(v: &T) -> Result<pb::RaftMessage, RPCError<TypeConfig>> {
    serde_json::to_vec(v)
        .map(|json| pb::RaftMessage { json })
        .map_err(|e| network_err(format!("encode raft message: {e}")))
}

fn decode<T: DeserializeOwned>(m: pb::RaftMessage) -> Result<T, RPCError<TypeConfig>> {
    serde_json::from_slice(&m.json).map_err(|e| network_err(format!("decode raft message: {e}")))
}

impl PeerNetwork {
    fn client(&self) -> Result<RaftPeerClient<Channel>, RPCError<TypeConfig>> {
        self.clients.client(&self.addr).map_err(unreachable)
    }

    /// One unary call with openraft's deadline.
    async fn unary<Req, Resp, F, Fut>(
        &self,
        req: &Req,
        option: &RPCOption,
        call: F,
    ) -> Result<Resp, RPCError<TypeConfig>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        F: FnOnce(RaftPeerClient<Channel>, tonic::Request<pb::RaftMessage>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<pb::RaftMessage>, tonic::Status>>,
    {
        let client = self.client()?;
        let ttl = option.hard_ttl().max(self.min_deadline);
        let mut request = tonic::Request::new(encode(req)?);
        request.set_timeout(ttl);
        match tokio::time::timeout(ttl, call(client, request)).await {
            Ok(Ok(resp)) => decode(resp.into_inner()),
            Ok(Err(status)) => Err(status_to_rpc(self.target, &self.addr, status)),
            Err(_) => Err(unreachable(format!(
                "raft rpc to node {} at {} timed out after {ttl:?}",
                self.target, self.addr
            ))),
        }
    }
}

impl RaftNetworkV2<TypeConfig> for PeerNetwork {
    type SnapshotData = Vec<u8>;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.unary(&rpc, &option, |mut c, r| async move {
            c.append_entries(r).await
        })
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.unary(&rpc, &option, |mut c, r| async move { c.vote(r).await })
            .await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.unary(&rpc, &option, |mut c, r| async move { c.pre_vote(r).await })
            .await
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.unary(&req, &option, |mut c, r| async move {
            c.transfer_leader(r).await
        })
        .await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let to_streaming = |e: RPCError<TypeConfig>| -> StreamingError<TypeConfig> {
            match e {
                RPCError::Unreachable(u) => StreamingError::Unreachable(u),
                RPCError::Network(n) => StreamingError::Network(n),
                RPCError::Timeout(t) => StreamingError::Timeout(t),
                RPCError::RemoteError(r) => StreamingError::Network(NetworkError::from_string(r)),
            }
        };
        let vote_json = serde_json::to_vec(&vote)
            .map_err(|e| to_streaming(network_err(format!("encode vote: {e}"))))?;
        let meta_json = serde_json::to_vec(&snapshot.meta)
            .map_err(|e| to_streaming(network_err(format!("encode snapshot meta: {e}"))))?;

        // Every chunk is prepared before the call starts, so the request stream never waits on
        // the response (the client-streaming deadlock noted in DESIGN.md cannot happen).
        let data = snapshot.snapshot;
        let mut chunks = Vec::with_capacity(data.len() / SNAPSHOT_CHUNK_BYTES + 1);
        let mut pieces = data.chunks(SNAPSHOT_CHUNK_BYTES);
        chunks.push(pb::SnapshotChunk {
            vote_json,
            meta_json,
            data: pieces.next().map(<[u8]>::to_vec).unwrap_or_default(),
        });
        chunks.extend(pieces.map(|p| pb::SnapshotChunk {
            data: p.to_vec(),
            ..Default::default()
        }));

        let mut client = self.client().map_err(to_streaming)?;
        let ttl = option.hard_ttl();
        let mut request = tonic::Request::new(futures::stream::iter(chunks));
        request.set_timeout(ttl);
        let call = tokio::time::timeout(ttl, client.install_snapshot(request));
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            res = call => match res {
                Ok(Ok(resp)) => decode(resp.into_inner()).map_err(to_streaming),
                Ok(Err(status)) => Err(to_streaming(status_to_rpc(self.target, &self.addr, status))),
                Err(_) => Err(to_streaming(unreachable(format!(
                    "snapshot transfer to node {} at {} timed out after {ttl:?}",
                    self.target, self.addr
                )))),
            },
        }
    }
}
