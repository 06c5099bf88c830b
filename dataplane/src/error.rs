//! Errors at the data plane's boundary.

use std::net::SocketAddr;

/// Why a listener could not be (re)configured. The caller marks the listener
/// `provisioning_status = ERROR` with this message.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    /// The listener socket could not be bound (address in use, permissions...).
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The configuration cannot be served (bad regex, bad expected codes...).
    #[error("invalid {field}: {reason}")]
    InvalidConfig { field: &'static str, reason: String },
    /// The protocol is not implemented by this data plane yet.
    #[error("listener protocol {0} is not supported yet")]
    Unsupported(&'static str),
    /// A health monitor type this host cannot run (e.g. PING without an ICMP socket).
    #[error("{kind} health monitors are not supported here: {reason}")]
    UnsupportedMonitor { kind: &'static str, reason: String },
    /// The data plane's worker threads could not be started.
    #[error("cannot start the data plane's worker threads: {0}")]
    Workers(#[source] std::io::Error),
    /// The data plane has been shut down.
    #[error("data plane is shut down")]
    ShutDown,
}
