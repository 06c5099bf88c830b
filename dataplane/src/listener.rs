//! Listener plumbing shared by the protocols: binding with `IP_FREEBIND`, the
//! routing snapshot behind an `ArcSwap`, and connection admission.

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use http::{HeaderValue, StatusCode};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, UdpSocket};

use crate::access_log::AccessLogSwitch;
use crate::config::ListenerConfig;
use crate::error::DataplaneError;
use crate::l7::CompiledPolicy;
use crate::pool::PoolRuntime;
use crate::status::{ActiveGuard, StatsCounters};

/// What a matching L7 policy does, resolved for the data path.
#[derive(Debug)]
pub(crate) enum RouteAction {
    Reject,
    Pool(Arc<PoolRuntime>),
    RedirectUrl {
        location: HeaderValue,
        code: StatusCode,
    },
    RedirectPrefix {
        prefix: String,
        code: StatusCode,
    },
}

/// The immutable routing snapshot of one listener. Replaced as a whole on
/// reconfiguration; connections load it once (L4) or per request (L7).
#[derive(Debug)]
pub(crate) struct Routes {
    pub(crate) config: ListenerConfig,
    pub(crate) default_pool: Option<Arc<PoolRuntime>>,
    pub(crate) policies: Vec<CompiledPolicy<RouteAction>>,
    /// Precomputed `X-Forwarded-Port` value.
    pub(crate) port_header: HeaderValue,
}

/// State shared between a listener's handle and its tasks.
#[derive(Debug)]
pub(crate) struct ListenerShared {
    pub(crate) routes: ArcSwap<Routes>,
    pub(crate) stats: Arc<StatsCounters>,
    /// The data plane's access log switch (one for all listeners).
    pub(crate) access_log: Arc<AccessLogSwitch>,
    /// The address the listener is bound to (the PROXY header's destination).
    pub(crate) local_addr: SocketAddr,
}

impl ListenerShared {
    /// Decides whether a new connection from `peer` is served; returns the
    /// guard that keeps it counted as active.
    pub(crate) fn admit(&self, peer: SocketAddr) -> Option<(Arc<Routes>, ActiveGuard)> {
        let routes = self.routes.load_full();
        let cfg = &routes.config;
        if !cfg.admin_state_up {
            return None;
        }
        let ip = match peer.ip() {
            std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer.ip(), std::net::IpAddr::V4),
            v4 => v4,
        };
        if !cfg.allowed_cidrs.is_empty() && !cfg.allowed_cidrs.iter().any(|n| n.contains(&ip)) {
            tracing::debug!(listener = %cfg.id, %peer, "refused by allowed_cidrs");
            self.stats.error();
            return None;
        }
        let guard = match cfg.connection_limit {
            None => self.stats.open(),
            Some(limit) => match self.stats.open_within(u64::from(limit)) {
                Some(guard) => guard,
                None => {
                    tracing::debug!(listener = %cfg.id, %peer, limit, "refused by connection_limit");
                    self.stats.error();
                    return None;
                }
            },
        };
        Some((routes, guard))
    }
}

fn socket_for(
    addr: SocketAddr,
    ty: Type,
    proto: Protocol,
    reuse_port: bool,
) -> std::io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), ty, Some(proto))?;
    // TCP: rebinding next to the closed listener's connections in TIME_WAIT.
    // Not UDP, where it would let a second socket bind the same address.
    if ty == Type::STREAM {
        socket.set_reuse_address(true)?;
    }
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    let freebind = if addr.is_ipv4() {
        socket.set_freebind_v4(true)
    } else {
        socket.set_only_v6(true)?;
        socket.set_freebind_v6(true)
    };
    if let Err(e) = freebind {
        tracing::debug!(%addr, error = %e, "IP_FREEBIND not available");
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket)
}

/// Binds `count` TCP listening sockets on `addr` with `IP_FREEBIND` (so the
/// VIP need not be local yet), one per worker. More than one form an
/// `SO_REUSEPORT` group, over which the kernel spreads new connections.
///
/// An address some other socket listens on is refused, even when that socket
/// has `SO_REUSEPORT` too (it would otherwise silently join the group and take
/// a share of the connections): a first socket without the option is bound to
/// find out, then closed.
pub(crate) fn bind_tcp(
    addr: SocketAddr,
    count: usize,
) -> Result<Vec<std::net::TcpListener>, DataplaneError> {
    let bind = || -> std::io::Result<Vec<std::net::TcpListener>> {
        let mut addr = addr;
        let group = count > 1;
        // Kept bound until the group listens, so a port 0 stays reserved. It
        // does not stand in the group's way: it never listens, and it and the
        // group's sockets all have SO_REUSEADDR (Linux refuses a second bind
        // or a listen only next to a socket that listens).
        let probe = if group {
            let probe = socket_for(addr, Type::STREAM, Protocol::TCP, false)?;
            addr = probe.local_addr()?.as_socket().unwrap_or(addr);
            Some(probe)
        } else {
            None
        };
        let sockets = (0..count.max(1))
            .map(|_| {
                let socket = socket_for(addr, Type::STREAM, Protocol::TCP, group)?;
                socket.listen(1024)?;
                Ok(socket.into())
            })
            .collect();
        drop(probe);
        sockets
    };
    bind().map_err(|source| DataplaneError::Bind { addr, source })
}

/// Binds `count` UDP sockets on `addr` with `IP_FREEBIND`, one per worker.
/// More than one form an `SO_REUSEPORT` group: the kernel picks a socket by
/// the datagram's addresses and ports, so a client's datagrams all reach the
/// same one (and its flow).
///
/// As for TCP, an address another socket is bound to is refused, even when
/// that socket has `SO_REUSEPORT`: a first socket without the option is bound
/// to find out, and closed before the group binds (it would stand in the
/// group's way). For a port 0 the group binds the port the probe was given;
/// should another socket take it in between, the bind fails.
pub(crate) fn bind_udp(
    addr: SocketAddr,
    count: usize,
) -> Result<Vec<std::net::UdpSocket>, DataplaneError> {
    let bind = || -> std::io::Result<Vec<std::net::UdpSocket>> {
        let mut addr = addr;
        let group = count > 1;
        if group {
            let probe = socket_for(addr, Type::DGRAM, Protocol::UDP, false)?;
            addr = probe.local_addr()?.as_socket().unwrap_or(addr);
        }
        (0..count.max(1))
            .map(|_| socket_for(addr, Type::DGRAM, Protocol::UDP, group).map(Into::into))
            .collect()
    };
    bind().map_err(|source| DataplaneError::Bind { addr, source })
}

/// Registers a listening socket with the runtime of the calling task.
pub(crate) fn tokio_tcp(socket: std::net::TcpListener) -> std::io::Result<TcpListener> {
    TcpListener::from_std(socket)
}

/// Registers a UDP socket with the runtime of the calling task.
pub(crate) fn tokio_udp(socket: std::net::UdpSocket) -> std::io::Result<UdpSocket> {
    UdpSocket::from_std(socket)
}
