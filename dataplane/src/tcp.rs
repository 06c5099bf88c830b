//! The L4 proxy (TCP and HTTPS pass-through listeners).
//!
//! Per connection: admission (admin state, allowed CIDRs, connection limit),
//! a member from the default pool (up to three members are tried when
//! connecting fails or times out), the PROXY header for PROXY/PROXYV2 pools,
//! then bytes both ways until both sides close or the connection has been idle
//! for `min(timeout_client_data, timeout_member_data)`. With no usable member
//! the client connection is closed at once.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::config::PoolProtocol;
use crate::io::{maybe_timeout, Activity, Metered};
use crate::listener::{ListenerShared, Routes};
use crate::proxy_protocol;
use crate::status::ActiveGuard;

/// Connect attempts per client connection (haproxy's `retries 3`).
const CONNECT_ATTEMPTS: usize = 3;
const BUF_SIZE: usize = 16 * 1024;

/// Accepts connections until `stop` turns true (or its sender goes away).
/// Established connections are not cut when the listener stops.
pub(crate) async fn serve(
    listener: TcpListener,
    shared: Arc<ListenerShared>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let Some((routes, guard)) = shared.admit(peer) else { continue };
                tokio::spawn(proxy(stream, peer, routes, shared.clone(), guard));
            }
            _ = crate::io::stopped(&mut stop) => break,
        }
    }
}

async fn proxy(
    client: TcpStream,
    peer: SocketAddr,
    routes: Arc<Routes>,
    shared: Arc<ListenerShared>,
    _guard: ActiveGuard,
) {
    let cfg = &routes.config;
    let Some(pool) = routes.default_pool.as_ref() else {
        shared.stats.error();
        return;
    };
    let mut tried = Vec::with_capacity(CONNECT_ATTEMPTS);
    let (member, _lease) = loop {
        let Some(lease) = pool.pick(peer, &mut tried) else {
            tracing::debug!(listener = %cfg.id, %peer, "no usable member");
            shared.stats.error();
            return;
        };
        let addr = lease.backend.addr;
        match maybe_timeout(cfg.timeouts.member_connect, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => break (s, lease),
            Ok(Err(e)) => {
                tracing::debug!(listener = %cfg.id, member = %addr, error = %e, "connect failed")
            }
            Err(_) => tracing::debug!(listener = %cfg.id, member = %addr, "connect timed out"),
        }
        if tried.len() >= CONNECT_ATTEMPTS {
            shared.stats.error();
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let _ = member.set_nodelay(true);
    let activity = Activity::new();
    let mut client = Metered::new(client, Some(shared.stats.clone()), Some(activity.clone()));
    let mut member = Metered::new(member, None, Some(activity.clone()));
    let local = client_local_addr(&client);
    let header = match pool.config.protocol {
        PoolProtocol::Proxy => Some(proxy_protocol::v1_header(peer, local.unwrap_or(peer))),
        PoolProtocol::ProxyV2 => Some(proxy_protocol::v2_header(peer, local.unwrap_or(peer))),
        _ => None,
    };
    if let Some(h) = header {
        if member.write_all(&h).await.is_err() {
            shared.stats.error();
            return;
        }
    }
    let idle = idle_timeout(cfg.timeouts.client_data, cfg.timeouts.member_data);
    tokio::select! {
        res = tokio::io::copy_bidirectional_with_sizes(&mut client, &mut member, BUF_SIZE, BUF_SIZE) => {
            if let Err(e) = res {
                tracing::debug!(listener = %cfg.id, %peer, error = %e, "connection ended with error");
            }
        }
        _ = activity.idle(idle) => {
            tracing::debug!(listener = %cfg.id, %peer, "idle timeout");
        }
    }
}

fn client_local_addr(s: &Metered<TcpStream>) -> Option<SocketAddr> {
    s.get_ref().local_addr().ok()
}

/// Idle timeout of an L4 connection: any byte in either direction is activity
/// on both sides, so the smaller non-zero timeout wins; zero means none.
fn idle_timeout(a: std::time::Duration, b: std::time::Duration) -> std::time::Duration {
    match (a.is_zero(), b.is_zero()) {
        (true, _) => b,
        (_, true) => a,
        _ => a.min(b),
    }
}
