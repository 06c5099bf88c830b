//! Pooled HTTP/1.1 connections to members, on hyper's `client::conn::http1`.
//!
//! Each member keeps a stack of idle connections (in its [`MemberState`], so
//! the stack survives reconfiguration by member id). A request pops the most
//! recently used connection (LIFO keeps few connections hot), or opens one;
//! the connection's task is spawned once, when it is opened. The connection
//! goes back on the stack when the response body has been read to its end
//! (see [`MemberBody`]), not before, so a popped connection is one hyper
//! will accept a request on. No hashing per request: the stack is found
//! through the member the balancer already picked, under a short lock.
//!
//! Idle connections older than [`MEMBER_IDLE`] or closed by the member are
//! dropped when they are met at either end of the stack, and by a reaper that
//! the data plane runs every few seconds, so a member that gets no traffic
//! does not keep idle connections (and fds) open.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::balancer::MemberState;
use crate::io::maybe_timeout;

/// How long an idle member connection is kept.
pub(crate) const MEMBER_IDLE: Duration = Duration::from_secs(30);
/// Idle connections kept per member; more are closed.
const MAX_IDLE_PER_MEMBER: usize = 1024;

/// The sending half of one member connection (request bodies are the client's).
pub(crate) type Sender = SendRequest<Incoming>;

/// A member's idle connections, most recently used last.
#[derive(Debug, Default)]
pub(crate) struct IdleConns {
    stack: Mutex<VecDeque<Idle>>,
}

#[derive(Debug)]
struct Idle {
    sender: Sender,
    /// The member address the connection goes to (a member's address may change).
    addr: SocketAddr,
    since: Instant,
}

impl IdleConns {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Idle>> {
        self.stack.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The most recently used idle connection to `addr` that is still open.
    fn pop(&self, addr: SocketAddr) -> Option<Sender> {
        let mut stack = self.lock();
        let mut now = None;
        while let Some(c) = stack.pop_back() {
            if c.addr != addr || c.sender.is_closed() {
                continue;
            }
            let now = *now.get_or_insert_with(Instant::now);
            if now.duration_since(c.since) < MEMBER_IDLE {
                return Some(c.sender);
            }
            // Everything below is older still.
            stack.clear();
        }
        None
    }

    /// Drops idle connections older than [`MEMBER_IDLE`] or closed by the member
    /// (the periodic reaper; see `Dataplane::new`).
    pub(crate) fn reap(&self) {
        let now = Instant::now();
        let mut stack = self.lock();
        stack.retain(|c| !c.sender.is_closed() && now.duration_since(c.since) < MEMBER_IDLE);
    }

    /// Returns a connection whose last response has been read to its end.
    pub(crate) fn push(&self, sender: Sender, addr: SocketAddr) {
        if sender.is_closed() {
            return;
        }
        let now = Instant::now();
        let mut stack = self.lock();
        while stack
            .front()
            .is_some_and(|c| c.sender.is_closed() || now.duration_since(c.since) >= MEMBER_IDLE)
            || stack.len() >= MAX_IDLE_PER_MEMBER
        {
            stack.pop_front();
        }
        stack.push_back(Idle {
            sender,
            addr,
            since: now,
        });
    }
}

/// Why no connection to a member could be had.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    #[error("connect: {0}")]
    Io(#[from] io::Error),
    #[error("connect timed out")]
    Timeout,
    #[error("handshake: {0}")]
    Handshake(#[from] hyper::Error),
}

/// An idle connection to `addr` that is ready for a request, or a new one.
pub(crate) async fn checkout(
    state: &MemberState,
    addr: SocketAddr,
    connect_timeout: Duration,
) -> Result<Sender, ConnectError> {
    while let Some(mut sender) = state.idle.pop(addr) {
        if sender.ready().await.is_ok() {
            return Ok(sender);
        }
    }
    // Boxed: the connect future is large and rarely needed; inline it would
    // grow every request's future (moved several times per request).
    Box::pin(connect(addr, connect_timeout)).await
}

/// Opens a connection to `addr` and spawns its task (with upgrades, for
/// `Upgrade` pass-through). `timeout` zero means none.
pub(crate) async fn connect(addr: SocketAddr, timeout: Duration) -> Result<Sender, ConnectError> {
    let stream = maybe_timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| ConnectError::Timeout)??;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(member = %addr, error = %e, "member connection ended with error");
        }
    });
    Ok(sender)
}

/// A member's response body that puts its connection back on the member's
/// idle stack once it has been read to its end (and only then: a body
/// dropped half-read closes its connection).
#[derive(Debug)]
pub(crate) struct MemberBody {
    inner: Incoming,
    done: bool,
    conn: Option<(Sender, Arc<MemberState>, SocketAddr)>,
}

impl MemberBody {
    /// `conn`: where to return the connection; `None` keeps it out of the pool.
    pub(crate) fn new(
        inner: Incoming,
        conn: Option<(Sender, Arc<MemberState>, SocketAddr)>,
    ) -> Self {
        Self {
            inner,
            done: false,
            conn,
        }
    }
}

impl Body for MemberBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let res = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) = res {
            self.done = true;
        }
        res
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for MemberBody {
    fn drop(&mut self) {
        if self.done || self.inner.is_end_stream() {
            if let Some((sender, state, addr)) = self.conn.take() {
                state.idle.push(sender, addr);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stale_idle_connections_are_reaped_and_fresh_ones_reused() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let accept = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = l.accept().await {
                held.push(s);
            }
        });
        let idle = IdleConns::default();
        for _ in 0..2 {
            idle.push(connect(addr, Duration::from_secs(5)).await.unwrap(), addr);
        }
        idle.lock()[0].since -= MEMBER_IDLE; // the older one has been idle too long
        idle.reap();
        assert_eq!(idle.lock().len(), 1);
        // The fresh one is handed out, once.
        assert!(idle.pop(addr).is_some());
        assert!(idle.pop(addr).is_none());
        accept.abort();
    }
}
