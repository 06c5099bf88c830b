//! Raft replication for Fulcrum: a generic replicated state-machine driver over bytes.
//!
//! - [`App`]: the application's deterministic state machine (commands and responses are opaque
//!   bytes, state is a set of key/value records).
//! - [`RaftNode`]: one Raft member. It persists the log, the vote and the application's records
//!   in RocksDB, talks to its peers over gRPC (package `fulcrum.raft.v1`, see
//!   `raft/proto/raft.proto`), forwards writes, reads and membership changes from followers to
//!   the leader, and serves linearizable reads through a read index.
//!
//! openraft (`=0.10.0-alpha.37`) and RocksDB stay behind this crate: nothing in the public API
//! names an openraft or rocksdb type.

#![warn(missing_docs)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

mod error;
mod lease;
mod network;
mod node;
mod service;
mod store;
mod types;

pub use error::RaftError;
pub use node::RaftNode;
pub use service::PeerService;

/// Generated code of the peer transport, package `fulcrum.raft.v1`.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("fulcrum.raft.v1");
}

/// The application's deterministic state machine, replicated by Raft. Commands and responses
/// are opaque bytes.
///
/// The crate persists the records an `App` reports as changed, and gives them back through
/// [`App::restore`] at startup and when a snapshot is installed, so the `App` itself keeps its
/// state in memory only.
pub trait App: Send + Sync + 'static {
    /// Apply one committed command at log `index`. Must be deterministic (no clock, random or
    /// I/O): every node applies the same commands in the same order and must reach the same
    /// state. Invalid commands must be answered with an error *response*, not a panic.
    ///
    /// Returns the response bytes for the proposer and the record changes to persist.
    fn apply(&mut self, index: u64, command: &[u8]) -> Applied;

    /// Every record of the current state (for building snapshots).
    fn records(&self) -> Vec<(Vec<u8>, Vec<u8>)>;

    /// Replace the whole state from records (at startup from RocksDB, and when installing a
    /// snapshot).
    fn restore(&mut self, records: Vec<(Vec<u8>, Vec<u8>)>) -> Result<(), String>;
}

/// The outcome of [`App::apply`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// Returned to the proposer by [`RaftNode::write`] (on the node that proposed it).
    pub response: Vec<u8>,
    /// Record changes: `(key, Some(value))` puts, `(key, None)` deletes. Persisted together
    /// with the applied index in one synced RocksDB write per applied batch.
    pub changes: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

/// Configuration of a [`RaftNode`]. Build it with [`RaftConfig::new`] and adjust fields.
#[derive(Debug, Clone)]
pub struct RaftConfig {
    /// This node's id; stable for the life of its data directory.
    pub node_id: u64,
    /// Directory of the node's RocksDB database (created if missing).
    pub data_dir: PathBuf,
    /// This node's advertised peer address, "host:port".
    pub peer_addr: String,
    /// Node id -> peer address; used once to initialize a fresh cluster (see
    /// [`RaftNode::initialize_if_fresh`]). Nodes that join later as learners leave it empty.
    pub initial_members: BTreeMap<u64, String>,
    /// Leader heartbeat interval (default 100 ms).
    pub heartbeat_ms: u64,
    /// Election timeout range (default 300..600 ms). Must exceed `heartbeat_ms`.
    pub election_timeout_min_ms: u64,
    /// See `election_timeout_min_ms`.
    pub election_timeout_max_ms: u64,
    /// Length of a follower lease (default four heartbeats; see [`ClusterStatus::lease_age`]).
    /// Must be shorter than `election_timeout_max_ms`, the Raft leader lease.
    pub lease_ms: u64,
    /// Build a snapshot (and purge the log behind it) every this many applied entries
    /// (default 5000).
    pub snapshot_every_logs: u64,
    /// Log entries kept behind the last snapshot for lagging followers (default 1000).
    pub logs_kept_after_snapshot: u64,
    /// How long [`RaftNode::write`] and the other leader operations wait for a leader to be
    /// elected or reachable before failing with [`RaftError::NoLeader`] (default 3000 ms).
    pub leader_wait_ms: u64,
    /// How long a proposed write may take to commit before it fails with an unknown outcome
    /// (default 10000 ms). Also bounds linearizable reads waiting for the local apply.
    pub write_timeout_ms: u64,
    /// How long a membership change (including a new learner's catch-up) may take
    /// (default 60000 ms).
    pub membership_timeout_ms: u64,
    /// Timeout of one snapshot transfer to a peer (default 60000 ms).
    pub snapshot_timeout_ms: u64,
}

impl RaftConfig {
    /// A configuration with default timings.
    pub fn new(
        node_id: u64,
        data_dir: impl Into<PathBuf>,
        peer_addr: impl Into<String>,
        initial_members: BTreeMap<u64, String>,
    ) -> Self {
        Self {
            node_id,
            data_dir: data_dir.into(),
            peer_addr: peer_addr.into(),
            initial_members,
            heartbeat_ms: 100,
            election_timeout_min_ms: 300,
            election_timeout_max_ms: 600,
            lease_ms: 400,
            snapshot_every_logs: 5000,
            logs_kept_after_snapshot: 1000,
            leader_wait_ms: 3000,
            write_timeout_ms: 10_000,
            membership_timeout_ms: 60_000,
            snapshot_timeout_ms: 60_000,
        }
    }
}

/// Role of a node in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Elected leader of the current term.
    Leader,
    /// Voter following a leader.
    Follower,
    /// Voter campaigning for leadership.
    Candidate,
    /// Non-voting member receiving the log (or not yet part of any membership).
    Learner,
    /// The node has stopped.
    Shutdown,
}

/// Replication progress of one peer, as seen by the leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerProgress {
    /// Highest log index known to be replicated on the peer.
    pub matched_index: Option<u64>,
    /// Time since the peer last acknowledged a heartbeat or replication.
    pub last_ack_age: Option<Duration>,
    /// Time since the peer's last lease request in this term arrived, granted or not (its
    /// lease, measured from when it sent a request, has run out once this exceeds the
    /// lease).
    pub lease_request_age: Option<Duration>,
    /// Time since the last lease request in this term that the peer sent while it held a
    /// valid lease. A peer that keeps asking but never holds one (its round trip to the
    /// leader exceeds the lease) cannot answer for anything placed on it.
    pub holding_request_age: Option<Duration>,
}

/// A node's view of the cluster (see [`RaftNode::status`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterStatus {
    /// This node's id.
    pub node_id: u64,
    /// This node's role.
    pub role: Role,
    /// The leader this node knows of.
    pub leader_id: Option<u64>,
    /// Current term.
    pub term: u64,
    /// Index of the last log entry on this node.
    pub last_log_index: Option<u64>,
    /// Highest index known committed.
    pub committed_index: Option<u64>,
    /// Index of the last entry applied and persisted by this node's state machine.
    pub last_applied: u64,
    /// Index covered by the last snapshot.
    pub snapshot_index: Option<u64>,
    /// Entries up to this index have been purged from the log.
    pub purged_index: Option<u64>,
    /// Voters (id -> peer address). During a joint change: the union of both configurations.
    pub voters: BTreeMap<u64, String>,
    /// Learners (id -> peer address).
    pub learners: BTreeMap<u64, String>,
    /// `false` while a membership change is not yet committed.
    pub membership_committed: bool,
    /// Per-peer replication progress; only on the leader.
    pub replication: Option<BTreeMap<u64, PeerProgress>>,
    /// Lease input for fencing: on the leader, time since the send time of the last
    /// heartbeat a quorum acknowledged; on a follower or learner, time since it sent the
    /// newest lease request the current leader granted with a log index this node has
    /// applied (so its state includes every decision the leader took before granting,
    /// committed then or not). `None` if never.
    pub lease_age: Option<Duration>,
    /// The instant `lease_age` counts from. A deadline computed from it stays right however
    /// late it is computed: one computed as "now + lease - `lease_age`" after a pause (a
    /// process frozen by SIGSTOP between reading the status and using it) would extend a
    /// lease that ran out meanwhile.
    pub lease_since: Option<std::time::Instant>,
    /// On a follower or learner: the log index of that grant (at most `last_applied`).
    /// `None` on the leader.
    pub lease_log_index: Option<u64>,
}
