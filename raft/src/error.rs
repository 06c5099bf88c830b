//! The crate's error type.

/// Errors of [`RaftNode`](crate::RaftNode) operations.
///
/// Every variant says whether retrying is safe: see [`RaftError::is_retry_safe`] and
/// [`RaftError::outcome_unknown`]. A write whose outcome is unknown may have been applied (or
/// may still be applied); retry it only with the same request id so the application
/// de-duplicates it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RaftError {
    /// No leader was known (or reachable) within the wait; nothing was proposed.
    #[error("no Raft leader available after waiting {waited_ms} ms; nothing was proposed, safe to retry")]
    NoLeader {
        /// How long the call waited for a leader.
        waited_ms: u64,
    },

    /// Forwarding the operation to the leader failed.
    #[error(
        "forwarding to leader {leader_id} at {addr} failed: {reason}; {}",
        retry_note(*.outcome_unknown)
    )]
    Forward {
        /// The leader the operation was forwarded to.
        leader_id: u64,
        /// Its peer address.
        addr: String,
        /// What went wrong.
        reason: String,
        /// `true` if the request may have reached the leader, so it is unknown whether it was
        /// applied.
        outcome_unknown: bool,
    },

    /// The leader accepted the command but could not confirm it was committed (leadership
    /// changed, or the commit timed out).
    #[error("{reason}; {}", retry_note(true))]
    OutcomeUnknown {
        /// What happened.
        reason: String,
    },

    /// The leader could not confirm its leadership with a quorum (linearizable read).
    #[error("leader could not reach a quorum: {0}; nothing was changed, safe to retry")]
    QuorumUnavailable(String),

    /// This node did not apply up to the read index in time (it lags behind the leader).
    #[error(
        "this node applied up to index {applied} but the read needs {index}; gave up after {waited_ms} ms; nothing was changed, safe to retry"
    )]
    ReadTimeout {
        /// The read index obtained from the leader.
        index: u64,
        /// This node's last applied index when giving up.
        applied: u64,
        /// How long the read waited.
        waited_ms: u64,
    },

    /// The membership change was refused (e.g. a change is already in progress, unknown
    /// learner, changed address of a known node). Nothing was changed.
    #[error("membership change rejected: {0}")]
    MembershipRejected(String),

    /// Invalid configuration.
    #[error("invalid raft configuration: {0}")]
    Config(String),

    /// Reading or writing the local RocksDB failed.
    #[error("raft storage error: {0}")]
    Storage(String),

    /// The peer transport (gRPC server) failed.
    #[error("raft peer transport error: {0}")]
    Transport(String),

    /// A peer sent a message that could not be decoded.
    #[error("malformed raft peer message: {0}")]
    Protocol(String),

    /// The Raft node has stopped (after [`RaftNode::shutdown`](crate::RaftNode::shutdown) or a
    /// storage failure). Not retryable on this node.
    #[error("raft node stopped: {0}")]
    Fatal(String),
}

fn retry_note(outcome_unknown: bool) -> &'static str {
    if outcome_unknown {
        "unknown whether the command was applied; retry only with de-duplication (same request id)"
    } else {
        "the command was not applied, safe to retry"
    }
}

impl RaftError {
    /// `true` if the operation certainly had no effect, so retrying it (here or on another
    /// node) cannot apply it twice.
    pub fn is_retry_safe(&self) -> bool {
        match self {
            RaftError::NoLeader { .. }
            | RaftError::QuorumUnavailable(_)
            | RaftError::ReadTimeout { .. } => true,
            RaftError::Forward {
                outcome_unknown, ..
            } => !outcome_unknown,
            RaftError::OutcomeUnknown { .. } => false,
            RaftError::MembershipRejected(_) => true,
            RaftError::Config(_)
            | RaftError::Storage(_)
            | RaftError::Transport(_)
            | RaftError::Protocol(_)
            | RaftError::Fatal(_) => false,
        }
    }

    /// `true` if a write may have been applied although the call failed.
    pub fn outcome_unknown(&self) -> bool {
        matches!(
            self,
            RaftError::OutcomeUnknown { .. }
                | RaftError::Forward {
                    outcome_unknown: true,
                    ..
                }
        )
    }
}
