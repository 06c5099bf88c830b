//! Operating status and statistics the data plane reports upwards.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::balancer::Health;
use crate::config::MemberConfig;

/// Octavia `operating_status` of a member as observed by this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OperatingStatus {
    /// Monitored and passing checks.
    Online,
    /// Failing checks: gets no traffic.
    Error,
    /// Weight 0: no new connections.
    Draining,
    /// Administratively down, or monitored but not checked yet.
    Offline,
    /// No health monitor: status unknown, traffic flows.
    NoMonitor,
}

impl OperatingStatus {
    pub(crate) fn of_member(cfg: &MemberConfig, health: Health) -> Self {
        if !cfg.admin_state_up {
            return Self::Offline;
        }
        match health {
            Health::Down => Self::Error,
            _ if cfg.weight == 0 => Self::Draining,
            Health::NoMonitor => Self::NoMonitor,
            Health::Unchecked => Self::Offline,
            Health::Up => Self::Online,
        }
    }
}

/// Counters of one listener (Octavia listener stats), cumulative since the
/// listener was first created on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ListenerStats {
    /// Bytes received from clients.
    pub bytes_in: u64,
    /// Bytes sent to clients.
    pub bytes_out: u64,
    /// Connections open now.
    pub active_connections: u64,
    /// Connections accepted (and not refused by admin state, CIDR or limit).
    pub total_connections: u64,
    /// Connections or requests that could not be fulfilled (no member,
    /// member failure, malformed request, refused by limit or CIDR).
    pub request_errors: u64,
    /// Failed attempts to reach a member (connection refused or timed out, or
    /// a reused connection that broke before answering), including those that
    /// were retried and succeeded.
    #[serde(default)]
    pub member_errors: u64,
}

/// The live counters behind [`ListenerStats`].
#[derive(Debug, Default)]
pub(crate) struct StatsCounters {
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) active_connections: AtomicU64,
    pub(crate) total_connections: AtomicU64,
    pub(crate) request_errors: AtomicU64,
    pub(crate) member_errors: AtomicU64,
}

impl StatsCounters {
    pub(crate) fn snapshot(&self) -> ListenerStats {
        ListenerStats {
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
            active_connections: self.active_connections.load(Ordering::Relaxed),
            total_connections: self.total_connections.load(Ordering::Relaxed),
            request_errors: self.request_errors.load(Ordering::Relaxed),
            member_errors: self.member_errors.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn error(&self) {
        self.request_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a failed attempt to reach a member.
    pub(crate) fn member_error(&self) {
        self.member_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a new connection; the guard decrements `active_connections` on drop.
    pub(crate) fn open(self: &Arc<Self>) -> ActiveGuard {
        self.total_connections.fetch_add(1, Ordering::Relaxed);
        self.active_connections.fetch_add(1, Ordering::Relaxed);
        ActiveGuard(self.clone())
    }

    /// Counts a new connection if fewer than `limit` are active; `None` (and
    /// nothing counted) otherwise. Check and count are one atomic step, so
    /// workers admitting connections at the same moment never exceed it.
    pub(crate) fn open_within(self: &Arc<Self>, limit: u64) -> Option<ActiveGuard> {
        self.active_connections
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()?;
        self.total_connections.fetch_add(1, Ordering::Relaxed);
        Some(ActiveGuard(self.clone()))
    }
}

/// Keeps a connection counted as active.
#[derive(Debug)]
pub(crate) struct ActiveGuard(Arc<StatsCounters>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active_connections.fetch_sub(1, Ordering::Relaxed);
    }
}
