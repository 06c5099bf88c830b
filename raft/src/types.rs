//! The openraft type configuration and aliases used throughout the crate.

use std::fmt;

use serde::Deserialize;
use serde::Serialize;

/// A command proposed to the replicated state machine: opaque bytes for Raft.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command(pub Vec<u8>);

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Command({} bytes)", self.0.len())
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

openraft::declare_raft_types!(
    /// Openraft type configuration of Fulcrum: u64 node ids, `BasicNode { addr }` with the
    /// peer address, opaque byte commands and responses, tokio runtime.
    pub TypeConfig:
        D = Command,
        R = Vec<u8>,
        NodeId = u64,
        Node = openraft::BasicNode,
);

pub(crate) type LogId = openraft::alias::LogIdOf<TypeConfig>;
pub(crate) type Entry = openraft::alias::EntryOf<TypeConfig>;
pub(crate) type Vote = openraft::alias::VoteOf<TypeConfig>;
pub(crate) type StoredMembership = openraft::alias::StoredMembershipOf<TypeConfig>;
pub(crate) type SnapshotMeta = openraft::alias::SnapshotMetaOf<TypeConfig>;
pub(crate) type Snapshot = openraft::alias::SnapshotOf<TypeConfig, Vec<u8>>;
