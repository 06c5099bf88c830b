//! What the API needs from replication: propose a command, read the model (linearizably),
//! and see and change the cluster. `fulcrum-node` implements it over Raft; [`LocalStore`]
//! is a single-process implementation for tests of the API layer itself.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::{Arc, Mutex};

use fulcrum_proto::internal::{Command, CommandResult};
use fulcrum_proto::v1::ClusterStatus;

use crate::model::State;

/// A replication failure, saying whether a retry is safe.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// Nothing was written (no leader, shutting down, ...): retrying is safe.
    #[error("the cluster cannot take the request now: {0}")]
    Unavailable(String),
    /// The command may or may not have been applied (e.g. the leader went away mid-call).
    #[error("the outcome is unknown (the change may or may not have been applied): {0}")]
    Unknown(String),
    /// A bug or a broken store.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StoreError> for tonic::Status {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) => tonic::Status::unavailable(e.to_string()),
            StoreError::Unknown(_) => tonic::Status::unknown(e.to_string()),
            StoreError::Internal(_) => tonic::Status::internal(e.to_string()),
        }
    }
}

/// The replicated model as the API sees it.
pub trait Store: Send + Sync + 'static {
    /// Replicates and applies a command; returns its result once applied on a quorum.
    fn propose(
        &self,
        command: Command,
    ) -> impl Future<Output = Result<CommandResult, StoreError>> + Send;

    /// Runs `f` on a linearizable view of the model.
    fn read<R, F>(&self, f: F) -> impl Future<Output = Result<R, StoreError>> + Send
    where
        R: Send + 'static,
        F: FnOnce(&State) -> R + Send + 'static;

    /// The cluster as this node sees it.
    fn cluster_status(&self) -> ClusterStatus;

    /// Adds a node that receives the log but does not vote.
    fn add_learner(
        &self,
        node_id: u64,
        peer_address: String,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Sets the voters of the cluster.
    fn change_voters(
        &self,
        voters: BTreeSet<u64>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// One in-process model with no replication: for tests of the API rules.
#[derive(Debug, Clone, Default)]
pub struct LocalStore {
    state: Arc<Mutex<State>>,
}

impl LocalStore {
    /// An empty local model.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Store for LocalStore {
    async fn propose(&self, command: Command) -> Result<CommandResult, StoreError> {
        let mut state = self.lock();
        let index = state.revision() + 1;
        let result = state.apply(index, &command);
        state.take_changes();
        Ok(result)
    }

    async fn read<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&State) -> R + Send + 'static,
    {
        Ok(f(&self.lock()))
    }

    fn cluster_status(&self) -> ClusterStatus {
        ClusterStatus {
            node_id: 1,
            leader_id: 1,
            last_applied: self.lock().revision(),
            ..Default::default()
        }
    }

    async fn add_learner(&self, _: u64, _: String) -> Result<(), StoreError> {
        Err(StoreError::Unavailable(
            "a local store has no cluster".into(),
        ))
    }

    async fn change_voters(&self, _: BTreeSet<u64>) -> Result<(), StoreError> {
        Err(StoreError::Unavailable(
            "a local store has no cluster".into(),
        ))
    }
}
