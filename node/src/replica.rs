//! The control plane's model replicated by Raft: [`ModelApp`] is the state machine the Raft
//! crate drives, [`RaftStore`] is the API's view of it.

use std::collections::BTreeSet;

use fulcrum_control::api::{Store, StoreError};
use fulcrum_control::State;
use fulcrum_proto::internal::{command_result, Command, CommandError, CommandResult};
use fulcrum_proto::v1::{ClusterNode, ClusterStatus, NodeRole};
use fulcrum_raft::{App, Applied, RaftError, RaftNode, Role};
use prost::Message;

/// The object model as a Raft state machine over protobuf-encoded commands.
#[derive(Debug, Default)]
pub struct ModelApp {
    pub state: State,
}

impl App for ModelApp {
    fn apply(&mut self, index: u64, command: &[u8]) -> Applied {
        let result = match Command::decode(command) {
            Ok(command) => self.state.apply(index, &command),
            // A command this build cannot decode changes nothing, on every node alike.
            Err(e) => CommandResult {
                result: Some(command_result::Result::Error(CommandError {
                    code: 0,
                    message: format!("undecodable command: {e}"),
                })),
            },
        };
        Applied {
            response: result.encode_to_vec(),
            changes: self.state.take_changes(),
        }
    }

    fn records(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.state.records()
    }

    fn restore(&mut self, records: Vec<(Vec<u8>, Vec<u8>)>) -> Result<(), String> {
        self.state = State::from_records(records).map_err(|e| e.to_string())?;
        Ok(())
    }
}

/// The API's store: the model replicated by this node's Raft.
#[derive(Clone)]
pub struct RaftStore {
    pub raft: RaftNode<ModelApp>,
    /// VIP ownership timings (when the leader counts a node as gone).
    pub timings: crate::ownership::OwnershipTimings,
}

fn store_error(e: RaftError) -> StoreError {
    if e.outcome_unknown() {
        StoreError::Unknown(e.to_string())
    } else if e.is_retry_safe() {
        StoreError::Unavailable(e.to_string())
    } else {
        StoreError::Internal(e.to_string())
    }
}

impl Store for RaftStore {
    async fn propose(&self, command: Command) -> Result<CommandResult, StoreError> {
        let response = self
            .raft
            .write(command.encode_to_vec())
            .await
            .map_err(store_error)?;
        CommandResult::decode(response.as_slice())
            .map_err(|e| StoreError::Internal(format!("bad command result: {e}")))
    }

    async fn read<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&State) -> R + Send + 'static,
    {
        self.raft
            .read_linearizable(|app| f(&app.state))
            .await
            .map_err(store_error)
    }

    fn cluster_status(&self) -> ClusterStatus {
        let s = self.raft.status();
        let role_of = |id: u64| {
            if Some(id) == s.leader_id {
                NodeRole::Leader
            } else if s.learners.contains_key(&id) {
                NodeRole::Learner
            } else if id == s.node_id && s.role == Role::Candidate {
                NodeRole::Candidate
            } else {
                NodeRole::Follower
            }
        };
        let matched = |id: u64| {
            s.replication
                .as_ref()
                .and_then(|r| r.get(&id))
                .and_then(|p| p.matched_index)
                .unwrap_or(0)
        };
        let owners = self.raft.read_local(|app| app.state.vip_owners().clone());
        let vips_of = |id: u64| -> Vec<String> {
            owners
                .get(&id.to_string())
                .map(|ids| ids.iter().cloned().collect())
                .unwrap_or_default()
        };
        let leader = s.role == Role::Leader;
        let alive =
            crate::ownership::alive_nodes(&s, std::time::Duration::MAX, &self.timings, None);
        let contact_ms = |id: u64| {
            s.replication
                .as_ref()
                .and_then(|r| r.get(&id))
                .and_then(|p| p.last_ack_age)
                .map_or(0, |a| a.as_millis() as u64)
        };
        let nodes = s
            .voters
            .iter()
            .map(|(id, addr)| (id, addr, true))
            .chain(s.learners.iter().map(|(id, addr)| (id, addr, false)))
            .map(|(id, addr, voter)| ClusterNode {
                node_id: *id,
                peer_address: addr.clone(),
                role: role_of(*id) as i32,
                voter,
                matched_index: matched(*id),
                vips: vips_of(*id),
                last_contact_ms: contact_ms(*id),
                // Only the leader sees every node's contact; elsewhere report what is known.
                healthy: !leader || alive.contains(id),
            })
            .collect();
        ClusterStatus {
            node_id: s.node_id,
            leader_id: s.leader_id.unwrap_or(0),
            term: s.term,
            last_applied: s.last_applied,
            committed: s.committed_index.unwrap_or(0),
            nodes,
        }
    }

    async fn add_learner(&self, node_id: u64, peer_address: String) -> Result<(), StoreError> {
        self.raft
            .add_learner(node_id, peer_address)
            .await
            .map_err(store_error)
    }

    async fn change_voters(&self, voters: BTreeSet<u64>) -> Result<(), StoreError> {
        self.raft.change_voters(voters).await.map_err(store_error)
    }
}
