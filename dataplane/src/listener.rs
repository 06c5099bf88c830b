//! Listener plumbing shared by the protocols: binding with `IP_FREEBIND`, the
//! routing snapshot behind an `ArcSwap`, and connection admission.

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use http::{HeaderValue, StatusCode};
use socket2::{Domain, Protocol, Socket, Type};

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
        self.admit_making_room(peer, || false)
    }

    /// [`Self::admit`]; at the connection limit, `make_room` may end another
    /// connection (dropping its guard; then it returns true) to let this one
    /// in.
    pub(crate) fn admit_making_room(
        &self,
        peer: SocketAddr,
        make_room: impl FnOnce() -> bool,
    ) -> Option<(Arc<Routes>, ActiveGuard)> {
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
            Some(limit) => match self.stats.open_within(u64::from(limit)).or_else(|| {
                make_room()
                    .then(|| self.stats.open_within(u64::from(limit)))
                    .flatten()
            }) {
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
pub(crate) fn bind_tcp(
    addr: SocketAddr,
    count: usize,
) -> Result<Vec<std::net::TcpListener>, DataplaneError> {
    // The probe is kept bound until the group listens, so a port 0 stays
    // reserved. It does not stand in the group's way: it never listens, and it
    // and the group's sockets all have SO_REUSEADDR (Linux refuses a second
    // bind or a listen only next to a socket that listens).
    bind_group(addr, count, Type::STREAM, Protocol::TCP, true, |socket| {
        socket.listen(1024)?;
        Ok(socket.into())
    })
}

/// Binds `count` UDP sockets on `addr` with `IP_FREEBIND`, one per worker.
/// More than one form an `SO_REUSEPORT` group: the kernel picks a socket by
/// the datagram's addresses and ports, so a client's datagrams all reach the
/// same one (and its flow).
pub(crate) fn bind_udp(
    addr: SocketAddr,
    count: usize,
) -> Result<Vec<std::net::UdpSocket>, DataplaneError> {
    // The probe is closed before the group binds: a bound UDP socket without
    // SO_REUSEPORT would stand in its way. For a port 0 the group binds the
    // port the probe was given; should another socket take it in between, the
    // bind fails.
    bind_group(addr, count, Type::DGRAM, Protocol::UDP, false, |socket| {
        Ok(socket.into())
    })
}

/// Binds `count` sockets (at least one) on `addr`, each finished by `finish`;
/// more than one with `SO_REUSEPORT`.
///
/// An address another socket is bound to (TCP: listens on) is refused, even
/// when that socket has `SO_REUSEPORT` too: it would otherwise silently join
/// the group and take a share of the traffic. A first socket without the
/// option (the probe) is bound to find out; `hold_probe` keeps it bound until
/// the group is finished.
fn bind_group<T>(
    addr: SocketAddr,
    count: usize,
    ty: Type,
    proto: Protocol,
    hold_probe: bool,
    finish: impl Fn(Socket) -> std::io::Result<T>,
) -> Result<Vec<T>, DataplaneError> {
    let bind = || -> std::io::Result<Vec<T>> {
        let group = count > 1;
        let mut at = addr;
        let mut probe = None;
        if group {
            let socket = socket_for(addr, ty, proto, false)?;
            at = socket.local_addr()?.as_socket().unwrap_or(addr);
            if hold_probe {
                probe = Some(socket);
            }
        }
        let sockets = (0..count.max(1))
            .map(|_| finish(socket_for(at, ty, proto, group)?))
            .collect();
        drop(probe);
        sockets
    };
    bind().map_err(|source| DataplaneError::Bind { addr, source })
}
