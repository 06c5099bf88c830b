//! Pooled HTTP/1.1 connections to members, on hyper's `client::conn::http1`.
//!
//! Each member keeps a stack of idle connections per worker thread (in its
//! [`MemberState`], so the stacks survive reconfiguration by member id): a
//! connection's task runs on the worker that opened it, and only requests on
//! that worker reuse it, so a request and its member connection never wake
//! each other across threads (another worker opens a connection of its own,
//! as nginx's worker processes do). A request pops the most
//! recently used connection (LIFO keeps few connections hot), or opens one;
//! the connection's task is spawned once, when it is opened. The connection
//! goes back on the stack when the response body has been read to its end
//! and the request body has been sent to its end (see [`MemberBody`]), not
//! before, so a popped connection is one hyper will accept a request on. No hashing per request: the stack is found
//! through the member the balancer already picked, under a short lock.
//!
//! Members of `PROXY` / `PROXYV2` pools are the exception: such a connection
//! starts with a PROXY header naming one client connection (its address and
//! port, and the listener's), so it must only ever carry that client
//! connection's requests. Sharing it, even between connections of one client
//! address, would let the member attribute requests to the wrong source port.
//! Those connections live in a stack private to the client connection (see
//! `http.rs`): reused for its keep-alive requests, closed with it. This is
//! HAProxy's behaviour for `send-proxy` servers (their connections are
//! private to the session).
//!
//! Idle connections older than [`MEMBER_IDLE`] or closed by the member are
//! dropped when they are met at either end of the stack, and by a reaper that
//! the data plane runs every few seconds, so a member that gets no traffic
//! does not keep idle connections (and fds) open.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::access_log::{self, HttpLog, Termination};
#[cfg(doc)]
use crate::balancer::MemberState;
use crate::io::{Activity, Busy};
use crate::pool::Lease;
use crate::proxy_protocol::ProxyVersion;
use crate::status::StatsCounters;
use crate::wait::maybe_timeout;

/// How long an idle member connection is kept.
pub(crate) const MEMBER_IDLE: Duration = Duration::from_secs(30);
/// Idle connections kept per member and worker; more are closed.
const MAX_IDLE_PER_MEMBER: usize = 1024;
/// Idle connections a client connection keeps of its own (PROXY pools, see
/// [`IdleConns::private`]); more are closed. An HTTP/2 client's burst of
/// streams needs as many member connections, but its connection keeps only
/// a few of them once they are done.
const MAX_PRIVATE_IDLE: usize = 8;

/// The sending half of one member connection (request bodies are the client's).
pub(crate) type Sender = SendRequest<RequestBody>;

/// What a member connection was opened as: the member's address and the
/// PROXY header it began with, if any. Only a connection opened as the same
/// key is reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConnKey {
    pub(crate) addr: SocketAddr,
    pub(crate) proxy: Option<ProxyVersion>,
}

/// The two ends of the client connection, named by a PROXY header.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ends {
    pub(crate) client: SocketAddr,
    pub(crate) listener: SocketAddr,
}

/// A member's idle connections: a stack per worker thread (indexed by
/// [`crate::workers::current`]), most recently used last.
#[derive(Debug)]
pub(crate) struct IdleConns {
    stacks: Box<[Stack]>,
    /// The most connections a stack keeps.
    max: usize,
}

/// One worker's stack, under a lock of its own, on a cache line of its own
/// (workers do not contend for one another's).
#[derive(Debug, Default)]
#[repr(align(128))]
struct Stack(Mutex<VecDeque<Idle>>);

impl Stack {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Idle>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Debug)]
struct Idle {
    sender: Sender,
    /// What the connection was opened as (a member's address may change).
    key: ConnKey,
    since: Instant,
}

impl IdleConns {
    /// A member's empty stacks, for `workers` workers (at least one).
    pub(crate) fn new(workers: usize) -> Self {
        Self::with_max(workers, MAX_IDLE_PER_MEMBER)
    }

    /// The one empty stack of a client connection's own member connections
    /// (ones that began with a PROXY header naming it), all on its worker.
    pub(crate) fn private() -> Self {
        Self::with_max(1, MAX_PRIVATE_IDLE)
    }

    fn with_max(workers: usize, max: usize) -> Self {
        Self {
            stacks: (0..workers.max(1)).map(|_| Stack::default()).collect(),
            max,
        }
    }

    /// The calling worker's stack.
    fn own(&self) -> std::sync::MutexGuard<'_, VecDeque<Idle>> {
        self.stacks[crate::workers::current() % self.stacks.len()].lock()
    }

    /// The calling worker's most recently used idle connection opened as
    /// `key` that is still open. Connections opened as another key are left
    /// in place: in a client's private stack they are other members' (see
    /// the module doc); in a member's stack, ones to its previous address,
    /// left to the reaper.
    fn pop(&self, key: ConnKey) -> Option<(Sender, Duration)> {
        let mut stack = self.own();
        let mut i = stack.len();
        while i > 0 {
            i -= 1;
            if stack[i].sender.is_closed() {
                stack.remove(i);
                continue;
            }
            if stack[i].key != key {
                continue;
            }
            let idle_for = stack[i].since.elapsed();
            if idle_for < MEMBER_IDLE {
                return stack.remove(i).map(|c| (c.sender, idle_for));
            }
            // This one and everything below it (pushed earlier) are too old.
            stack.drain(..=i);
            return None;
        }
        None
    }

    /// Drops idle connections older than [`MEMBER_IDLE`] or closed by the member
    /// (the periodic reaper; see `Dataplane::new`).
    pub(crate) fn reap(&self) {
        let now = Instant::now();
        for stack in self.stacks.iter() {
            stack
                .lock()
                .retain(|c| !c.sender.is_closed() && now.duration_since(c.since) < MEMBER_IDLE);
        }
    }

    /// Returns a connection whose last response has been read to its end, to
    /// the calling worker's stack (the worker it was checked out on).
    pub(crate) fn push(&self, sender: Sender, key: ConnKey) {
        if sender.is_closed() {
            return;
        }
        let now = Instant::now();
        let mut stack = self.own();
        while stack
            .front()
            .is_some_and(|c| c.sender.is_closed() || now.duration_since(c.since) >= MEMBER_IDLE)
            || stack.len() >= self.max
        {
            stack.pop_front();
        }
        stack.push_back(Idle {
            sender,
            key,
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
    #[error("sending the PROXY header: {0}")]
    ProxyHeader(io::Error),
}

/// How long a pooled connection must have been idle before a request sent
/// on it may be sent again (see [`send`]). A member closes idle connections
/// after its own keep-alive timeout (seconds, for common servers); a
/// connection reused sooner than this cannot be meeting that close, and a
/// busy pool reuses its connections within milliseconds, so most requests
/// never pay for the copy a second attempt needs (a copy for every request
/// measured 3 % more instructions per keep-alive request).
pub(crate) const RESEND_AFTER_IDLE: Duration = Duration::from_millis(250);

/// A connection to send one request on.
#[derive(Debug)]
pub(crate) struct Checkout {
    pub(crate) sender: Sender,
    /// Taken from the idle stack after at least [`RESEND_AFTER_IDLE`]: the
    /// member may be closing it as the request goes out.
    pub(crate) stale: bool,
}

/// An idle connection from `idle` opened as `key` that is ready for a
/// request, or a new one (which starts with the PROXY header for `ends` when
/// `key` asks for one).
pub(crate) async fn checkout(
    idle: &IdleConns,
    key: ConnKey,
    ends: Ends,
    connect_timeout: Duration,
) -> Result<Checkout, ConnectError> {
    while let Some((mut sender, idle_for)) = idle.pop(key) {
        // Ready at once, or as soon as its task has taken in the end of the
        // last exchange: a connection is pooled only once both its request
        // and its response are complete (see `MemberBody`), so nothing else
        // can keep it busy, and a closed one answers with an error. (No timer
        // here: this wait is pending for most requests, briefly.)
        if sender.ready().await.is_ok() {
            let stale = idle_for >= RESEND_AFTER_IDLE;
            return Ok(Checkout { sender, stale });
        }
    }
    // Boxed: the connect future is large and rarely needed; inline it would
    // grow every request's future (moved several times per request).
    let sender = Box::pin(connect(key, ends, connect_timeout)).await?;
    Ok(Checkout {
        sender,
        stale: false,
    })
}

/// Why a request got no response head from its member.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SendError {
    /// The pooled connection had been closed, and a new one could not be had.
    #[error("reconnecting: {0}")]
    Connect(#[from] ConnectError),
    #[error(transparent)]
    Exchange(hyper::Error),
}

/// Sends `req` on `sender` and waits for the response head.
///
/// The request goes once more, on a new connection opened as `key`, when
/// - it was not written at all because the (pooled) connection had been
///   closed (hyper hands it back), or
/// - `again` holds a copy of it (see [`with_resend_copy`]) and the connection
///   broke before a whole response head came: a member's keep-alive close
///   crossing the request on the way (RFC 9112 §9.3.1 allows retrying an
///   idempotent request then; nginx's `proxy_next_upstream error` does the
///   same). That counts as a failed attempt in the listener's `member_errors`.
///
/// Not an `async fn`: the request goes to hyper before the returned future
/// exists, so that future does not hold it, and hyper's future is polled in
/// place in [`Sending`] (an `async fn` keeps its arguments for its whole life
/// and an `async` block moves a future it awaits, while this future lives
/// inside every request's).
pub(crate) fn send(
    mut sender: Sender,
    req: Request<RequestBody>,
    again: Option<Box<Resend>>,
    key: ConnKey,
    ends: Ends,
    connect_timeout: Duration,
) -> Sending<impl Future<Output = HyperAnswer>> {
    Sending {
        first: sender.try_send_request(req),
        rest: Some(Rest {
            sender,
            again,
            key,
            ends,
            connect_timeout,
        }),
        second: None,
    }
}

/// What hyper answers to a request on one connection.
type HyperAnswer =
    Result<Response<Incoming>, hyper::client::conn::TrySendError<Request<RequestBody>>>;

/// [`send`]'s second attempt, boxed: rare, and kept out of every request's
/// future.
type SecondAttempt =
    Pin<Box<dyn Future<Output = Result<(Response<Incoming>, Sender), SendError>> + Send>>;

pin_project_lite::pin_project! {
    /// [`send`]'s future: hyper's answer on the first connection, then,
    /// rarely, a second attempt on a new one.
    pub(crate) struct Sending<F> {
        #[pin]
        first: F,
        // Taken when `first` is done.
        rest: Option<Rest>,
        second: Option<SecondAttempt>,
    }
}

/// What [`Sending`] needs once hyper has answered.
struct Rest {
    sender: Sender,
    again: Option<Box<Resend>>,
    key: ConnKey,
    ends: Ends,
    connect_timeout: Duration,
}

impl<F: Future<Output = HyperAnswer>> Future for Sending<F> {
    type Output = Result<(Response<Incoming>, Sender), SendError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Some(second) = this.second.as_mut() {
            return second.as_mut().poll(cx);
        }
        let answer = std::task::ready!(this.first.poll(cx));
        let rest = this.rest.take().expect("Sending polled after completion");
        let retry = match answer {
            Ok(resp) => return Poll::Ready(Ok((resp, rest.sender))),
            Err(mut e) => match (e.take_message(), rest.again) {
                (Some(req), _) => req,
                (None, Some(again)) if broke_before_answer(e.error()) => {
                    tracing::debug!(member = %rest.key.addr, error = %e.error(),
                        "reused member connection broke before answering; sending again");
                    again.stats.member_error();
                    again.copy
                }
                (None, _) => return Poll::Ready(Err(SendError::Exchange(e.into_error()))),
            },
        };
        let second = resend(retry, rest.key, rest.ends, rest.connect_timeout);
        this.second.insert(Box::pin(second)).as_mut().poll(cx)
    }
}

/// A request [`send`] may send again, and where to count that.
pub(crate) struct Resend {
    copy: Request<RequestBody>,
    stats: Arc<StatsCounters>,
}

/// `req`, and for a [`Checkout::stale`] connection a copy of it for [`send`]
/// to send again, if it may be: an idempotent method (RFC 9110 §9.2.2) and
/// no body (a body is streamed from the client, not kept). The copy has the
/// method, target, version and headers; not the extensions, which hyper's
/// HTTP/1 client reads only for header case, a setting this proxy leaves off.
pub(crate) fn with_resend_copy(
    req: Request<RequestBody>,
    stale: bool,
    stats: &Arc<StatsCounters>,
) -> (Request<RequestBody>, Option<Box<Resend>>) {
    if !stale || !req.method().is_idempotent() || !req.body().is_end_stream() {
        return (req, None);
    }
    let mut copy = Request::new(RequestBody::empty());
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    let stats = stats.clone();
    (req, Some(Box::new(Resend { copy, stats })))
}

/// Whether `e` says the connection closed or broke (reset, broken pipe)
/// before a whole response head came (hyper does not tell whether part of
/// one had), rather than that the member answered wrongly.
fn broke_before_answer(e: &hyper::Error) -> bool {
    e.is_incomplete_message() || std::error::Error::source(e).is_some_and(|s| s.is::<io::Error>())
}

/// [`send`]'s second attempt, on a new connection.
async fn resend(
    req: Request<RequestBody>,
    key: ConnKey,
    ends: Ends,
    connect_timeout: Duration,
) -> Result<(Response<Incoming>, Sender), SendError> {
    let mut sender = connect(key, ends, connect_timeout).await?;
    match sender.try_send_request(req).await {
        Ok(resp) => Ok((resp, sender)),
        Err(e) => Err(SendError::Exchange(e.into_error())),
    }
}

/// Opens a connection as `key`, sends the PROXY header for `ends` if `key`
/// asks for one, and spawns the connection's task (with upgrades, for
/// `Upgrade` pass-through). `timeout` (zero: none) bounds the TCP connect.
pub(crate) async fn connect(
    key: ConnKey,
    ends: Ends,
    timeout: Duration,
) -> Result<Sender, ConnectError> {
    let addr = key.addr;
    let mut stream = maybe_timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| ConnectError::Timeout)??;
    let _ = stream.set_nodelay(true);
    if let Some(v) = key.proxy {
        stream
            .write_all(&v.header(ends.client, ends.listener))
            .await
            .map_err(ConnectError::ProxyHeader)?;
    }
    let (sender, conn) = http1::Builder::new()
        .max_header_size(crate::http::MAX_HEAD_BYTES)
        .handshake(TokioIo::new(stream))
        .await?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(member = %addr, error = %e, "member connection ended with error");
        }
    });
    Ok(sender)
}

/// A client's request body on its way to a member; counts its bytes into
/// the request's access log record when there is one, and, for a request that
/// has a body, reports its progress in an [`Upload`].
///
/// `timeout_client_data` bounds each wait for the client's next body bytes
/// (HAProxy's `timeout client` applies there too): a client that stalls
/// mid-upload fails the body, and the request is answered 408, whatever
/// `timeout_member_data` is (with none, such a request would otherwise hold
/// its member connection forever). As for [`MemberBody`], the timer is
/// armed only when the body has to wait.
#[derive(Debug)]
pub(crate) struct RequestBody {
    /// `None`: no body (a copy to send again, see [`with_resend_copy`]).
    inner: Option<Incoming>,
    counted: Option<Arc<AtomicU64>>,
    upload: Option<Arc<Upload>>,
    stall: Stall,
    /// Keeps the client connection busy until the body has been read (its
    /// end, or a failure): a member that answers before the upload ends does
    /// not start the client's idle timeout while the upload goes on (its
    /// stalls are `stall`'s to end).
    client_busy: Option<Busy>,
}

/// How the upload of one request body is going, shared by the body, the wait
/// for the member's answer and the member's response body.
#[derive(Debug)]
pub(crate) struct Upload {
    /// When body bytes last moved: the wait for the response head is an
    /// inactivity timeout (HAProxy's `timeout server`), not a total one.
    pub(crate) progress: Activity,
    /// The whole body has been handed to the member connection.
    sent: AtomicBool,
    /// The client's side of the body failed (it left, sent broken chunks, or
    /// stalled).
    client_failed: AtomicBool,
    /// The client sent nothing for `timeout_client_data` mid-body.
    client_stalled: AtomicBool,
}

impl Upload {
    /// Whether the whole body has been sent.
    pub(crate) fn sent(&self) -> bool {
        self.sent.load(Ordering::Acquire)
    }

    /// Whether the body failed on the client's side.
    pub(crate) fn client_failed(&self) -> bool {
        self.client_failed.load(Ordering::Acquire)
    }

    /// Whether it failed because the client stalled mid-body.
    pub(crate) fn client_stalled(&self) -> bool {
        self.client_stalled.load(Ordering::Acquire)
    }
}

impl RequestBody {
    /// Wraps a client's request body; a body that is not empty gets an
    /// [`Upload`] (returned by [`Self::upload`]) and keeps the client
    /// connection busy until read (from `busy`). `client_data`: the longest
    /// wait for the client's next bytes (zero: none).
    pub(crate) fn new(
        inner: Incoming,
        counted: Option<Arc<AtomicU64>>,
        client_data: Duration,
        busy: &Busy,
    ) -> Self {
        let upload = (!inner.is_end_stream()).then(|| {
            Arc::new(Upload {
                progress: Activity::new(),
                sent: AtomicBool::new(false),
                client_failed: AtomicBool::new(false),
                client_stalled: AtomicBool::new(false),
            })
        });
        let client_busy = upload.as_ref().map(|_| busy.activity().busy());
        Self {
            inner: Some(inner),
            counted,
            upload,
            stall: Stall::new(client_data),
            client_busy,
        }
    }

    /// No body at all.
    fn empty() -> Self {
        Self {
            inner: None,
            counted: None,
            upload: None,
            stall: Stall::new(Duration::ZERO),
            client_busy: None,
        }
    }

    /// The upload's state, for a request that has a body.
    pub(crate) fn upload(&self) -> Option<Arc<Upload>> {
        self.upload.clone()
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let Some(inner) = &mut this.inner else {
            return Poll::Ready(None);
        };
        let res = Pin::new(&mut *inner).poll_frame(cx);
        match (&this.upload, &res) {
            (Some(up), Poll::Pending) if this.stall.expired(cx) => {
                up.client_stalled.store(true, Ordering::Release);
                up.client_failed.store(true, Ordering::Release);
                let stalled = BodyStalled("client", this.stall.limit);
                return Poll::Ready(Some(Err(stalled.into())));
            }
            (_, Poll::Ready(Some(Ok(_)))) => this.stall.moved(),
            _ => {}
        }
        if let (Some(c), Poll::Ready(Some(Ok(f)))) = (&this.counted, &res) {
            if let Some(d) = f.data_ref() {
                c.fetch_add(d.len() as u64, Ordering::Relaxed);
            }
        }
        if let (Some(up), Poll::Ready(r)) = (&this.upload, &res) {
            up.progress.touch_now();
            let ended = match r {
                Some(Err(_)) => &up.client_failed,
                None => &up.sent,
                Some(Ok(_)) if inner.is_end_stream() => &up.sent,
                Some(Ok(_)) => return res.map(|f| f.map(|r| r.map_err(Into::into))),
            };
            ended.store(true, Ordering::Release);
            // Read to its end, or failed: the client connection waits on its
            // client again (from now: dropping the guard records it).
            this.client_busy = None;
        }
        res.map(|f| f.map(|r| r.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Some(b) => b.size_hint(),
            None => SizeHint::with_exact(0),
        }
    }
}

/// Where a member connection goes back when its response has been read: the
/// stack it came from, and what it was opened as.
pub(crate) type Home = (Sender, Arc<IdleConns>, ConnKey);

/// A member's response body that puts its connection back on the idle stack
/// it came from once it has been read to its end (and only then: a body
/// dropped half-read closes its connection). It also ends the request's
/// access log record, if any: completed, client abort, member abort or
/// member timeout.
///
/// `timeout_member_data` bounds each wait for the member's next bytes (as
/// HAProxy's `timeout server` does): a member that stalls mid-body breaks
/// the response off (the client connection closes) instead of holding both
/// connections forever. The timer is armed only when the body has to wait,
/// and re-armed only when it runs out, so a body that is there at once (most
/// responses) costs no timer.
#[derive(Debug)]
pub(crate) struct MemberBody {
    inner: Incoming,
    done: bool,
    conn: Option<Home>,
    /// The request's upload, if it had a body: the connection is reused only
    /// once that is sent too (hyper takes no new request on it before).
    upload: Option<Arc<Upload>>,
    /// The member's share of this exchange (least-connections counts it
    /// until the body is done).
    _lease: Option<Lease>,
    log: Option<Box<HttpLog>>,
    stall: Stall,
}

/// A body's wait for its sender's next bytes (see [`MemberBody`],
/// [`RequestBody`]).
#[derive(Debug)]
struct Stall {
    /// Zero: no limit.
    limit: Duration,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Since when the member has been silent: the first wait's start, then
    /// each frame that came after it.
    last: Option<Instant>,
}

/// One side (the client, the member) sent nothing for its data timeout in
/// the middle of a body.
#[derive(Debug, thiserror::Error)]
#[error("{0} sent no body bytes for {1:?}")]
pub(crate) struct BodyStalled(&'static str, Duration);

impl Stall {
    /// `limit`: the longest wait (zero: none).
    fn new(limit: Duration) -> Self {
        Self {
            limit,
            timer: None,
            last: None,
        }
    }

    /// A frame came: a wait now counts from here (if one was ever armed).
    fn moved(&mut self) {
        if self.last.is_some() {
            self.last = Some(Instant::now());
        }
    }

    /// Polled while the body waits: whether the member has now been silent
    /// for the whole limit.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        if self.limit.is_zero() {
            return false;
        }
        let last = *self.last.get_or_insert_with(Instant::now);
        let limit = self.limit;
        let deadline = move || tokio::time::Instant::from_std(last + limit);
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline())));
        // The timer may be set for an earlier deadline (bytes came since it
        // was armed): then it is moved on when it runs out, not per frame.
        loop {
            if timer.as_mut().poll(cx).is_pending() {
                return false;
            }
            if tokio::time::Instant::now() >= deadline() {
                return true;
            }
            timer.as_mut().reset(deadline());
        }
    }
}

impl MemberBody {
    /// `conn`: where to return the connection; `None` keeps it out of the
    /// pool. `exchange`: the request's upload and the member's lease, kept
    /// until the body is done. `member_data`: the longest wait for the
    /// member's next bytes (zero: none).
    pub(crate) fn new(
        inner: Incoming,
        conn: Option<Home>,
        exchange: (Option<Arc<Upload>>, Option<Lease>),
        log: Option<Box<HttpLog>>,
        member_data: Duration,
    ) -> Self {
        Self {
            inner,
            done: false,
            conn,
            upload: exchange.0,
            _lease: exchange.1,
            log,
            stall: Stall::new(member_data),
        }
    }
}

impl Body for MemberBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let res = Pin::new(&mut this.inner).poll_frame(cx);
        match &res {
            Poll::Ready(None) => this.done = true,
            Poll::Ready(Some(Ok(f))) => {
                this.stall.moved();
                if let (Some(log), Some(d)) = (&mut this.log, f.data_ref()) {
                    log.add_bytes_out(d.len());
                }
            }
            Poll::Ready(Some(Err(_))) => access_log::note(&mut this.log, Termination::MemberAbort),
            Poll::Pending => {
                if this.stall.expired(cx) {
                    access_log::note(&mut this.log, Termination::MemberTimeout);
                    let stalled = BodyStalled("member", this.stall.limit);
                    return Poll::Ready(Some(Err(stalled.into())));
                }
            }
        }
        res.map(|f| f.map(|r| r.map_err(Into::into)))
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
            if let Some(log) = &mut self.log {
                log.body_done();
            }
            let sent = self.upload.as_ref().is_none_or(|u| u.sent());
            if let Some((sender, idle, key)) = self.conn.take().filter(|_| sent) {
                idle.push(sender, key);
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
        let idle = IdleConns::new(1);
        let key = ConnKey { addr, proxy: None };
        let ends = Ends {
            client: addr,
            listener: addr,
        };
        for _ in 0..2 {
            let c = connect(key, ends, Duration::from_secs(5)).await.unwrap();
            idle.push(c, key);
        }
        idle.own()[0].since -= MEMBER_IDLE; // the older one has been idle too long
        idle.reap();
        assert_eq!(idle.own().len(), 1);
        // Only a connection opened as the same key is handed out, once.
        let proxied = ConnKey {
            addr,
            proxy: Some(ProxyVersion::V1),
        };
        assert!(idle.pop(proxied).is_none());
        assert!(idle.pop(key).is_some());
        assert!(idle.pop(key).is_none());

        // A client's private stack keeps a few (the newest, pushed last).
        let private = IdleConns::private();
        for _ in 0..MAX_PRIVATE_IDLE + 3 {
            let c = connect(proxied, ends, Duration::from_secs(5))
                .await
                .unwrap();
            private.push(c, proxied);
        }
        assert_eq!(private.own().len(), MAX_PRIVATE_IDLE);
        accept.abort();
    }
}
