//! The L4 proxy (TCP and HTTPS pass-through listeners).
//!
//! Per connection: admission (admin state, allowed CIDRs, connection limit),
//! the inspection delay (below), a member from the default pool (up to three
//! members are tried when connecting fails or times out), the PROXY header
//! for PROXY/PROXYV2 pools, then bytes both ways until both sides close or the
//! connection has been idle for `min(timeout_client_data, timeout_member_data)`.
//! With no usable member the client connection is closed at once.
//!
//! `timeout_tcp_inspect` (Octavia: "time to wait for additional TCP packets
//! for content inspection"; HAProxy's `tcp-request inspect-delay`): when it is
//! non-zero, no member is chosen or contacted until the client has sent its
//! first bytes or that time has passed, whichever comes first; then the
//! connection proceeds either way (a silent client is not refused). A client
//! that closes during that time never reaches a member. So clients that
//! connect and send nothing (probes, scanners, idle pre-connections) cost the
//! members nothing for that long, and the first bytes travel right behind the
//! PROXY header. The price, as with HAProxy's delay: a protocol where the
//! server speaks first (SMTP, SSH, MySQL) waits that long for its greeting.
//! Zero (Octavia's default) connects at once. HAProxy applies the delay only
//! to `tcp-request content` rules, which Octavia's template does not render,
//! so there it changes nothing; this is the behaviour the setting names.
//! HTTP listeners do not use it: the request head is what they inspect, and
//! waiting for it is bounded by `timeout_client_data`. UDP listeners neither.
//!
//! Access logs: one record per connection when switched on (see
//! [`crate::access_log`]).

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::Poll;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::access_log::{note, ConnLog, Termination};
use crate::io::Activity;
use crate::listener::{ListenerShared, Routes};
use crate::pool::Tried;
use crate::proxy_protocol::ProxyVersion;
use crate::splice::Pipe;
use crate::status::ActiveGuard;
use crate::wait::maybe_timeout;

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
    // Accepted sockets inherit TCP_NODELAY (Linux): no setsockopt per connection.
    let _ = socket2::SockRef::from(&listener).set_tcp_nodelay(true);
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
            _ = crate::wait::stopped(&mut stop) => break,
        }
    }
}

/// Waits up to `delay` for the client's first bytes (`timeout_tcp_inspect`).
/// `false` when the client closed or reset the connection meanwhile.
async fn inspect(client: &TcpStream, delay: Duration) -> bool {
    let mut probe = [0u8; 1];
    match tokio::time::timeout(delay, client.peek(&mut probe)).await {
        Ok(Ok(0)) | Ok(Err(_)) => false,
        Ok(Ok(_)) | Err(_) => true,
    }
}

async fn proxy(
    client: TcpStream,
    peer: SocketAddr,
    routes: Arc<Routes>,
    shared: Arc<ListenerShared>,
    _guard: ActiveGuard,
) {
    let mut log = shared.access_log.on().then(|| ConnLog::tcp(peer, &routes));
    let cfg = &routes.config;
    let Some(pool) = routes.default_pool.as_ref() else {
        note(&mut log, Termination::NoMember);
        shared.stats.error();
        return;
    };
    let delay = cfg.timeouts.tcp_inspect;
    if !delay.is_zero() && !inspect(&client, delay).await {
        tracing::debug!(listener = %cfg.id, %peer, "client left during tcp inspection");
        note(&mut log, Termination::ClientAbort);
        return;
    }
    let mut tried = Tried::default();
    let (member, _lease) = loop {
        let Some(lease) = pool.pick_for(peer, &mut tried) else {
            tracing::debug!(listener = %cfg.id, %peer, "no usable member");
            let t = if tried.is_empty() {
                Termination::NoMember
            } else {
                Termination::MemberConnectFailed
            };
            note(&mut log, t);
            shared.stats.error();
            return;
        };
        let addr = lease.backend.addr;
        if let Some(log) = &mut log {
            log.set_member(addr, &lease.backend.id);
        }
        match maybe_timeout(cfg.timeouts.member_connect, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => break (s, lease),
            Ok(Err(e)) => {
                tracing::debug!(listener = %cfg.id, member = %addr, error = %e, "connect failed")
            }
            Err(_) => tracing::debug!(listener = %cfg.id, member = %addr, "connect timed out"),
        }
        shared.stats.member_error();
        if tried.len() >= CONNECT_ATTEMPTS {
            note(&mut log, Termination::MemberConnectFailed);
            shared.stats.error();
            return;
        }
    };
    let _ = member.set_nodelay(true);
    let activity = Arc::new(Activity::new());
    if let Some(v) = ProxyVersion::of(pool.config.protocol) {
        let local = client.local_addr().unwrap_or(shared.local_addr);
        if write_all(&member, &v.header(peer, local)).await.is_err() {
            note(&mut log, Termination::MemberReset);
            shared.stats.error();
            return;
        }
    }
    let idle = idle_timeout(cfg.timeouts.client_data, cfg.timeouts.member_data);
    let stats = &shared.stats;
    // Per-connection counts, kept only for the access log.
    let tally = log.as_ref().map(|_| (Tally::default(), Tally::default()));
    let (up, down) = match &tally {
        Some((u, d)) => (Some(u), Some(d)),
        None => (None, None),
    };
    let (mut client, mut member) = (client, member);
    let (client_rx, client_tx) = client.split();
    let (member_rx, member_tx) = member.split();
    let both_ways = async {
        tokio::try_join!(
            pump(client_rx, member_tx, &stats.bytes_in, &activity, up),
            async {
                pump(member_rx, client_tx, &stats.bytes_out, &activity, down)
                    .await
                    .map_err(PumpError::reversed)
            },
        )
    };
    let end = tokio::select! {
        res = both_ways => match res {
            Ok(_) => Termination::Completed,
            Err(e) => {
                tracing::debug!(listener = %cfg.id, %peer, error = %e.error(), "connection ended with error");
                e.termination()
            }
        },
        _ = activity.idle(idle) => {
            tracing::debug!(listener = %cfg.id, %peer, "idle timeout");
            Termination::IdleTimeout
        }
    };
    if let (Some(log), Some((up, down))) = (&mut log, &tally) {
        log.set_bytes(
            up.bytes.load(Ordering::Relaxed),
            down.bytes.load(Ordering::Relaxed),
        );
        if let Some(at) = down.first.get() {
            log.member_sent(*at);
        }
    }
    note(&mut log, end);
}

/// One direction's counts for the access log record.
#[derive(Debug, Default)]
struct Tally {
    bytes: AtomicU64,
    /// When the first byte went this way.
    first: OnceLock<Instant>,
}

impl Tally {
    fn add(&self, n: usize) {
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
        self.first.get_or_init(Instant::now);
    }
}

/// Why one direction of a connection failed, by side. `pump` reports errors
/// reading its source as [`PumpError::From`]; for the member-to-client
/// direction [`PumpError::reversed`] turns them into client/member terms.
#[derive(Debug)]
enum PumpError {
    /// Reading the source failed (client-to-member: the client).
    From(io::Error),
    /// Writing the destination failed (client-to-member: the member).
    To(io::Error),
    /// A local resource (a pipe) could not be had.
    Local(io::Error),
}

impl PumpError {
    fn reversed(self) -> Self {
        match self {
            Self::From(e) => Self::To(e),
            Self::To(e) => Self::From(e),
            local => local,
        }
    }

    fn error(&self) -> &io::Error {
        match self {
            Self::From(e) | Self::To(e) | Self::Local(e) => e,
        }
    }

    /// In client-to-member terms.
    fn termination(&self) -> Termination {
        match self {
            Self::From(_) => Termination::ClientReset,
            Self::To(_) => Termination::MemberReset,
            Self::Local(_) => Termination::ProxyError,
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
/// `to` (like `copy_bidirectional`). Counts the bytes into `counter` (and
/// `tally`, when the access log keeps one) and records activity.
///
/// Small exchanges are copied through a buffer held only while data is in
/// flight: it is taken when `from` turns readable and given back when `from`
/// is drained, so an idle connection holds no copy buffer (as in HAProxy);
/// 10,000 idle L4 connections cost ~3 KiB each instead of two 16 KiB buffers
/// each. Once a read fills the whole buffer the direction is bulk and moves
/// on to `splice(2)` through a pipe (taken and given back the same way), so
/// its bytes no longer cross user space (HAProxy's `splice-auto`).
///
/// A buffered read is tokio's `poll_read` (of the stream's read half), which
/// clears the socket's readiness after a short read: the next wait then
/// costs no failed `read` (`try_read` would leave the readiness set, and
/// every message would cost a `read` returning `EAGAIN`).
async fn pump(
    mut from: ReadHalf<'_>,
    to: WriteHalf<'_>,
    counter: &AtomicU64,
    activity: &Activity,
    tally: Option<&Tally>,
) -> Result<(), PumpError> {
    let to: &TcpStream = to.as_ref();
    let mut buf: Option<Vec<u8>> = None;
    let mut pipe: Option<Pipe> = None;
    let mut bulk = false;
    let res = loop {
        if let Err(e) = from.readable().await {
            break Err(PumpError::From(e));
        }
        if bulk {
            let p = match pipe.take().map_or_else(Pipe::take, Ok) {
                Ok(p) => p,
                Err(e) => break Err(PumpError::Local(e)),
            };
            match p.fill(from.as_ref()) {
                Ok(0) => {
                    p.give();
                    break Ok(());
                }
                Ok(n) => {
                    counter.fetch_add(n as u64, Ordering::Relaxed);
                    if let Some(t) = tally {
                        t.add(n);
                    }
                    activity.touch_now();
                    // On error the pipe may hold bytes: it is dropped, not reused.
                    if let Err(e) = p.drain(to, n).await {
                        break Err(PumpError::To(e));
                    }
                    pipe = Some(p);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => p.give(),
                Err(e) => break Err(PumpError::From(e)),
            }
            continue;
        }
        let b = buf.get_or_insert_with(take_buffer);
        b.clear();
        // One attempt (readiness said readable); `Pending` is a spurious
        // readiness (now cleared): give the buffer back and wait again.
        let read = std::future::poll_fn(|cx| {
            let attempt = std::pin::pin!(from.read_buf(&mut *b)).poll(cx);
            Poll::Ready(match attempt {
                Poll::Pending => Err(io::Error::from(io::ErrorKind::WouldBlock)),
                Poll::Ready(res) => res,
            })
        })
        .await;
        match read {
            Ok(0) => break Ok(()),
            Ok(n) => {
                counter.fetch_add(n as u64, Ordering::Relaxed);
                if let Some(t) = tally {
                    t.add(n);
                }
                activity.touch_now();
                if let Err(e) = write_all(to, &b[..n]).await {
                    break Err(PumpError::To(e));
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
            Err(e) => break Err(PumpError::From(e)),
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
