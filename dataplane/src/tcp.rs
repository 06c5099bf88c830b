//! The L4 proxy (TCP and HTTPS pass-through listeners).
//!
//! Per connection: admission (admin state, allowed CIDRs, connection limit),
//! a member from the default pool (up to three members are tried when
//! connecting fails or times out), the PROXY header for PROXY/PROXYV2 pools,
//! then bytes both ways until both sides close or the connection has been idle
//! for `min(timeout_client_data, timeout_member_data)`. With no usable member
//! the client connection is closed at once.

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::config::PoolProtocol;
use crate::io::{maybe_timeout, Activity};
use crate::listener::{ListenerShared, Routes};
use crate::proxy_protocol;
use crate::splice::Pipe;
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
        let Some(lease) = pool.pick_for(peer, &mut tried) else {
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
        shared.stats.member_error();
        if tried.len() >= CONNECT_ATTEMPTS {
            shared.stats.error();
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let _ = member.set_nodelay(true);
    let activity = Activity::new();
    let local = client.local_addr().ok();
    let header = match pool.config.protocol {
        PoolProtocol::Proxy => Some(proxy_protocol::v1_header(peer, local.unwrap_or(peer))),
        PoolProtocol::ProxyV2 => Some(proxy_protocol::v2_header(peer, local.unwrap_or(peer))),
        _ => None,
    };
    if let Some(h) = header {
        if write_all(&member, &h).await.is_err() {
            shared.stats.error();
            return;
        }
    }
    let idle = idle_timeout(cfg.timeouts.client_data, cfg.timeouts.member_data);
    let stats = &shared.stats;
    let both_ways = async {
        tokio::try_join!(
            pump(&client, &member, &stats.bytes_in, &activity),
            pump(&member, &client, &stats.bytes_out, &activity),
        )
    };
    tokio::select! {
        res = both_ways => {
            if let Err(e) = res {
                tracing::debug!(listener = %cfg.id, %peer, error = %e, "connection ended with error");
            }
        }
        _ = activity.idle(idle) => {
            tracing::debug!(listener = %cfg.id, %peer, "idle timeout");
        }
    }
}

thread_local! {
    /// Copy buffers released by quiet connections, reused by busy ones.
    static SPARE_BUFFERS: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}
/// Spare buffers kept per worker thread (64 x 16 KiB = 1 MiB).
const MAX_SPARE_BUFFERS: usize = 64;

fn take_buffer() -> Vec<u8> {
    SPARE_BUFFERS
        .with(|s| s.borrow_mut().pop())
        .unwrap_or_else(|| Vec::with_capacity(BUF_SIZE))
}

fn give_buffer(mut buf: Vec<u8>) {
    buf.clear();
    SPARE_BUFFERS.with(|s| {
        let mut spare = s.borrow_mut();
        if spare.len() < MAX_SPARE_BUFFERS {
            spare.push(buf);
        }
    });
}

/// Moves bytes from `from` to `to` until `from` reaches EOF, then half-closes
/// `to` (like `copy_bidirectional`). Counts the bytes into `counter` and
/// records activity.
///
/// Small exchanges are copied through a buffer held only while data is in
/// flight: it is taken when `from` turns readable and given back when `from`
/// is drained, so an idle connection holds no copy buffer (as in HAProxy);
/// 10,000 idle L4 connections cost ~3 KiB each instead of two 16 KiB buffers
/// each. Once a read fills the whole buffer the direction is bulk and moves
/// on to `splice(2)` through a pipe (taken and given back the same way), so
/// its bytes no longer cross user space (HAProxy's `splice-auto`).
async fn pump(
    from: &TcpStream,
    to: &TcpStream,
    counter: &AtomicU64,
    activity: &Activity,
) -> io::Result<()> {
    let mut buf: Option<Vec<u8>> = None;
    let mut pipe: Option<Pipe> = None;
    let mut bulk = false;
    let res = loop {
        if let Err(e) = from.readable().await {
            break Err(e);
        }
        if bulk {
            let p = match pipe.take().map_or_else(Pipe::take, Ok) {
                Ok(p) => p,
                Err(e) => break Err(e),
            };
            match p.fill(from) {
                Ok(0) => {
                    p.give();
                    break Ok(());
                }
                Ok(n) => {
                    counter.fetch_add(n as u64, Ordering::Relaxed);
                    activity.touch_now();
                    // On error the pipe may hold bytes: it is dropped, not reused.
                    if let Err(e) = p.drain(to, n).await {
                        break Err(e);
                    }
                    pipe = Some(p);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => p.give(),
                Err(e) => break Err(e),
            }
            continue;
        }
        let b = buf.get_or_insert_with(take_buffer);
        b.clear();
        match from.try_read_buf(b) {
            Ok(0) => break Ok(()),
            Ok(n) => {
                counter.fetch_add(n as u64, Ordering::Relaxed);
                activity.touch_now();
                if let Err(e) = write_all(to, &b[..n]).await {
                    break Err(e);
                }
                if n >= BUF_SIZE {
                    bulk = true;
                    if let Some(b) = buf.take() {
                        give_buffer(b);
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if let Some(b) = buf.take() {
                    give_buffer(b);
                }
            }
            Err(e) => break Err(e),
        }
    };
    if let Some(b) = buf.take() {
        give_buffer(b);
    }
    if let Some(p) = pipe.take() {
        p.give();
    }
    res?;
    let _ = socket2::SockRef::from(to).shutdown(std::net::Shutdown::Write);
    Ok(())
}

async fn write_all(to: &TcpStream, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        to.writable().await?;
        match to.try_write(data) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
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
