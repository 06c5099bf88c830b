//! The L7 proxy (HTTP listeners): hyper 1 server (HTTP/1.1 and h2c from
//! clients), pooled HTTP/1.1 connections to members ([`crate::member_pool`]),
//! L7 policies, header insertion, session persistence and `Upgrade`
//! pass-through.
//!
//! Answers generated here: 400 malformed request (by hyper, before any member
//! is involved), 403 `REJECT`, 3xx redirects, 502 member failure (refused,
//! reset, garbage), 503 no usable member, 504 member too slow
//! (`timeout_member_data` until response headers).
//!
//! `PROXY` / `PROXYV2` pools: each member connection starts with a PROXY
//! header naming the client connection, so such connections are private to
//! that client connection (see [`crate::member_pool`]): pooled for its
//! keep-alive requests, never shared with another client, closed with it.
//!
//! Access logs: one record per request when switched on (see
//! [`crate::access_log`]); nothing is built when off.
//!
//! Retries: when connecting to a member fails (refused or timed out), the
//! request has not been sent and its body not read, so it is retried once on
//! another member (counted in `member_errors`); a pooled connection that the
//! member closed before the request was written is replaced by a new one to
//! the same member. A request that reached a member is sent again only when
//! it is idempotent, has no body, and went out on a connection idle long
//! enough to be meeting the member's keep-alive close (see
//! [`member_pool::send`]).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::{Either, Full};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::sync::watch;

use crate::access_log::{note, HttpLog, Termination};
use crate::client_stream::{Acceptor, ClientProtocol, ClientStream};
use crate::config::{ListenerTimeouts, SessionPersistence};
use crate::http_headers::{
    append_forwarded_for, remove_cookie, request_cookie, response_cookie, strip_hop_by_hop,
    upgrade_requested,
};
use crate::io::{Activity, Busy, Metered, Waiting};
use crate::l7::{self, RequestView};
use crate::listener::{ListenerShared, RouteAction, Routes};
use crate::member_pool::{self, Checkout, ConnKey, Ends, IdleConns, MemberBody, RequestBody};
use crate::pool::{Lease, PoolRuntime, Tried};
use crate::proxy_protocol::ProxyVersion;
use crate::status::ActiveGuard;
use crate::wait::{maybe_timeout, ReusedTimer, SideWaker};

type Body = Either<MemberBody, Full<Bytes>>;

/// A response on its way to the client. Its request counts as busy (see
/// [`Activity::busy`]) until hyper drops it, so the client's idle timeout
/// does not run while the member thinks or the body streams, unless the
/// client holds the body up that long: on HTTP/1 a write to it blocks (then
/// the connection ends, see `Metered`), on HTTP/2 a piece waits for its
/// flow-control window (then the stream ends, see [`StreamResponse`]).
enum Answer {
    Whole { body: Body, _busy: Busy },
    Pieces(Arc<StreamResponse>),
}

/// The most an HTTP/2 response hands hyper at once (one frame's worth at
/// the default frame size). hyper asks for more only once what it holds has
/// gone out, so the wait for the client's window between two asks is that
/// of one piece (a whole chunk from the member may be 100s of KiB, which a
/// client reading slowly but steadily takes long to open the window for).
const H2_PIECE: usize = 16 * 1024;

/// HTTP/2: a stream's response, given to hyper a piece at a time. While
/// hyper waits for the client's window for a piece, it does not poll the
/// response; the connection's idle watch ends it (the member connection
/// closed, the request no longer busy, the stream reset when hyper next
/// polls) once the piece has waited `timeout_client_data`. The connection's
/// other streams go on.
struct StreamResponse {
    /// When hyper was given the piece it holds ([`Activity::stamp`]); zero:
    /// none.
    given: AtomicU64,
    /// `None` once cut.
    held: Mutex<Option<Pieces>>,
}

struct Pieces {
    body: Body,
    /// What is left of the body's last chunk.
    rest: Bytes,
    /// The request's, which also gives the connection's clock.
    busy: Busy,
}

/// An HTTP/2 response cut for want of window (see [`StreamResponse`]).
#[derive(Debug, thiserror::Error)]
#[error("the client gave the response no flow-control window for timeout_client_data")]
struct WindowWaitedOut;

impl Answer {
    fn new(body: Body, busy: Busy) -> Self {
        if !busy.is_stream() {
            return Self::Whole { body, _busy: busy };
        }
        let activity = busy.activity().clone();
        let stream = Arc::new(StreamResponse {
            given: AtomicU64::new(0),
            held: Mutex::new(Some(Pieces {
                body,
                rest: Bytes::new(),
                busy,
            })),
        });
        let watched: Arc<dyn Waiting> = stream.clone();
        activity.watch(Arc::downgrade(&watched));
        Self::Pieces(stream)
    }
}

impl StreamResponse {
    fn held(&self) -> std::sync::MutexGuard<'_, Option<Pieces>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn poll_piece(
        &self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, <Body as hyper::body::Body>::Error>>> {
        self.given.store(0, Ordering::Relaxed);
        let mut held = self.held();
        let Some(p) = held.as_mut() else {
            return Poll::Ready(Some(Err(Box::new(WindowWaitedOut))));
        };
        if p.rest.is_empty() {
            match ready!(hyper::body::Body::poll_frame(Pin::new(&mut p.body), cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => p.rest = data,
                    Err(trailers) => return Poll::Ready(Some(Ok(trailers))),
                },
                end_or_error => return Poll::Ready(end_or_error),
            }
        }
        let piece = p.rest.split_to(p.rest.len().min(H2_PIECE));
        self.given
            .store(p.busy.activity().stamp(), Ordering::Relaxed);
        Poll::Ready(Some(Ok(Frame::data(piece))))
    }
}

impl Waiting for StreamResponse {
    fn waiting_since(&self) -> u64 {
        self.given.load(Ordering::Relaxed)
    }

    fn cut(&self) {
        self.given.store(0, Ordering::Relaxed);
        let cut = self.held().take();
        if cut.is_some() {
            tracing::debug!("HTTP/2 response waited timeout_client_data for window: stream ended");
        }
    }
}

impl hyper::body::Body for Answer {
    type Data = Bytes;
    type Error = <Body as hyper::body::Body>::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            Self::Whole { body, .. } => Pin::new(body).poll_frame(cx),
            Self::Pieces(stream) => stream.poll_piece(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Whole { body, .. } => body.is_end_stream(),
            Self::Pieces(stream) => stream
                .held()
                .as_ref()
                .is_some_and(|p| p.rest.is_empty() && p.body.is_end_stream()),
        }
    }

    fn size_hint(&self) -> SizeHint {
        let p = match self {
            Self::Whole { body, .. } => return body.size_hint(),
            Self::Pieces(stream) => stream.held(),
        };
        let Some(p) = p.as_ref() else {
            return SizeHint::default();
        };
        let body = p.body.size_hint();
        let rest = p.rest.len() as u64;
        let mut hint = SizeHint::new();
        hint.set_lower(body.lower() + rest);
        if let Some(upper) = body.upper() {
            hint.set_upper(upper + rest);
        }
        hint
    }
}

/// Cookie inserted for `HTTP_COOKIE` persistence (the name Octavia's haproxy uses).
const PERSISTENCE_COOKIE: &str = "SRV";
/// Members tried per request when connecting fails (the first and one retry).
const CONNECT_ATTEMPTS: usize = 2;

/// Accepts connections until `stop` turns true; then open connections finish
/// their in-flight requests and close (graceful shutdown).
pub(crate) async fn serve(
    acceptor: Acceptor,
    shared: Arc<ListenerShared>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let first = tokio::select! {
            accepted = acceptor.accept() => accepted,
            _ = crate::wait::stopped(&mut stop) => break,
        };
        // Then take what else is already waiting, up to a batch, before
        // looking at `stop` again (a wake-up per connection costs more).
        let mut next = Some(first);
        let mut taken = 0;
        while let Some(accepted) = next.take() {
            taken += 1;
            match accepted {
                Ok((stream, peer)) => {
                    if let Some((routes, guard)) = shared.admit(peer) {
                        let stop = stop.clone();
                        let shared = shared.clone();
                        // Boxed: tokio copies a task's future several
                        // times (spawning, finishing); a pointer copies
                        // cheaper than the ~1 KiB connection future.
                        tokio::spawn(Box::pin(serve_connection(
                            stream, peer, routes, shared, stop, guard,
                        )));
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    break;
                }
            }
            if taken < ACCEPT_BATCH {
                next = acceptor.try_accept();
            }
        }
    }
}

/// How many waiting connections one wake-up of an HTTP listener accepts at most.
const ACCEPT_BATCH: usize = 16;

/// The largest HTTP/1 message head (start line and headers) taken from a
/// client (else 431) or a member (else 502): what a connection may make the
/// proxy buffer before its message starts, instead of hyper's ~400 KiB.
/// Envoy's and AWS ALB's limit; HAProxy's is ~15 KiB (`tune.bufsize`),
/// nginx's 8 KiB per line. (HTTP/2 clients keep hyper's 16 KiB header list:
/// each of a connection's up to 200 streams may hold one.)
pub(crate) const MAX_HEAD_BYTES: usize = 64 * 1024;

struct ConnCtx {
    shared: Arc<ListenerShared>,
    peer: SocketAddr,
    /// The listener address the client connected to.
    local: SocketAddr,
    /// The client's address as an `X-Forwarded-For` value, made on first use.
    peer_ip: std::sync::OnceLock<HeaderValue>,
    /// Member connections that began with a PROXY header naming this client
    /// connection; made on first use, dropped (closing them) with it.
    private: std::sync::OnceLock<Arc<IdleConns>>,
    /// Counts the connection as active until it ends, tunnel included.
    _guard: ActiveGuard,
    /// The client connection's idle timeout (`timeout_client_data`).
    client_data: Duration,
    /// HTTP/1 (one request at a time): the timer of `timeout_member_data`,
    /// reused by request after request. HTTP/2 streams each arm their own.
    member_wait: Option<ReusedTimer>,
}

impl ConnCtx {
    fn peer_ip(&self) -> &HeaderValue {
        self.peer_ip.get_or_init(|| {
            HeaderValue::try_from(self.peer.ip().to_string())
                .unwrap_or_else(|_| HeaderValue::from_static("unknown"))
        })
    }

    fn private_conns(&self) -> &Arc<IdleConns> {
        // One stack: the connection and its member connections stay on one worker.
        self.private.get_or_init(|| Arc::new(IdleConns::private()))
    }

    fn ends(&self) -> Ends {
        Ends {
            client: self.peer,
            listener: self.local,
        }
    }
}

/// Serves one accepted client connection: waits for its first bytes (to
/// tell HTTP/1 from HTTP/2), then lets hyper serve it until it ends, the
/// listener stops, or it idles for `timeout_client_data`.
///
/// A plain fn returning one `async move` block, which is the task of a
/// connection still waiting for its first bytes, so its size is memory per
/// idle connection: an `async fn` keeps each argument twice (936 bytes then,
/// 768 now, an allocator size class less).
#[allow(clippy::manual_async_fn)] // on purpose: see above
fn serve_connection(
    mut stream: ClientStream,
    peer: SocketAddr,
    routes: Arc<Routes>,
    shared: Arc<ListenerShared>,
    mut stop: watch::Receiver<bool>,
    guard: ActiveGuard,
) -> impl Future<Output = ()> {
    async move {
        let client_data = routes.config.timeouts.client_data;
        drop(routes);
        // A stop while the first bytes are awaited ends the connection (they
        // are there at once, mostly: then `stop` is not even looked at).
        let sniffed = tokio::select! {
            biased;
            p = stream.sniff(client_data) => p,
            _ = crate::wait::stopped(&mut stop) => return,
        };
        let protocol = match sniffed {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "client sent no request");
                shared.stats.error();
                return;
            }
        };
        // The bound address, unless bound to a wildcard (then ask the socket).
        let local = match shared.local_addr {
            a if a.ip().is_unspecified() => stream.local_addr().unwrap_or(a),
            a => a,
        };
        let activity = Arc::new(Activity::new());
        let ctx = Arc::new(ConnCtx {
            shared: shared.clone(),
            peer,
            local,
            peer_ip: std::sync::OnceLock::new(),
            private: std::sync::OnceLock::new(),
            _guard: guard,
            client_data,
            member_wait: matches!(protocol, ClientProtocol::Http1).then(ReusedTimer::default),
        });
        let busy_on = activity.clone();
        let streams = matches!(protocol, ClientProtocol::Http2);
        let service = service_fn(move |req| {
            let busy = match streams {
                true => busy_on.busy_stream(),
                false => busy_on.busy(),
            };
            handle(req, ctx.clone(), busy)
        });
        let io = TokioIo::new(Metered::http_client(
            stream,
            shared.stats.clone(),
            activity.clone(),
        ));
        // timeout_client_data: the connection closes once no request of it has
        // been in progress for that long; bytes read do not restart the clock,
        // so a request head must be whole by then (HAProxy's `timeout client`
        // and `timeout http-request`; responses are written only while a
        // request is in progress). One timer
        // per connection (hyper's header-read timeout armed one per request),
        // started once the connection first waits on its client (see `drive`).
        //
        // Boxed: hyper's connection state (and HTTP/2's, larger still) is
        // allocated only once the client has sent something, so a connection
        // that waits for its first bytes holds a small task, and spawning one
        // copies less. The connection and the idle timeout are made and pinned
        // in place inside the box (passed by value, each would be held twice
        // more in the futures that drive them).
        let res = match protocol {
            ClientProtocol::Http1 => {
                Box::pin(async move {
                    // `half_close`: a client may shut its sending side down once
                    // the request is out, and no read of the client socket is
                    // made while a request without a body is in progress
                    // (HAProxy's default; it also keeps the socket
                    // unregistered, see `client_stream`). A client that leaves
                    // meanwhile is noticed when the response is written.
                    // No timer: the only HTTP/1 timeout hyper would run (the
                    // header read) is off; `idle` does that job.
                    let conn = pin!(http1::Builder::new()
                        .max_header_size(MAX_HEAD_BYTES)
                        .keep_alive(true)
                        .half_close(true)
                        .header_read_timeout(None)
                        .serve_connection(io, service)
                        .with_upgrades());
                    let idle = pin!(activity.idle(client_data));
                    until_stopped(conn, &mut stop, &activity, true, idle, |c| {
                        c.graceful_shutdown()
                    })
                    .await
                })
                .await
            }
            ClientProtocol::Http2 => {
                Box::pin(async move {
                    let conn = pin!(http2::Builder::new(TokioExecutor::new())
                        .timer(TokioTimer::new())
                        .serve_connection(io, service));
                    let idle = pin!(activity.idle(client_data));
                    until_stopped(conn, &mut stop, &activity, false, idle, |c| {
                        c.graceful_shutdown()
                    })
                    .await
                })
                .await
            }
        };
        if let Err(e) = res {
            // Malformed requests end here (hyper has answered 400 when it could).
            tracing::debug!(%peer, error = %e, "client connection error");
            shared.stats.error();
        }
    }
}

/// Drives a client connection until it ends or `idle` completes (then it is
/// dropped, closing it); when `stop` turns true, asks it to shut down
/// gracefully (finish in-flight requests) and drives it to the end.
///
/// `lazy`: the idle timeout starts only once the connection waits on its
/// client (see [`drive`]). Only for HTTP/1, where requests end while the
/// connection is polled; HTTP/2 streams end in tasks of their own.
async fn until_stopped<C, I>(
    mut conn: Pin<&mut C>,
    stop: &mut watch::Receiver<bool>,
    activity: &Activity,
    lazy: bool,
    mut idle: Pin<&mut I>,
    graceful_shutdown: impl FnOnce(Pin<&mut C>),
) -> Result<(), hyper::Error>
where
    C: Future<Output = Result<(), hyper::Error>>,
    I: Future<Output = ()>,
{
    let mut timing = !lazy;
    let side = SideWaker::new();
    let idled = || {
        tracing::debug!("client connection idle for timeout_client_data: closed");
        Ok(())
    };
    let stopped = pin!(crate::wait::stopped(stop));
    match drive(
        conn.as_mut(),
        idle.as_mut(),
        stopped,
        activity,
        &mut timing,
        &side,
    )
    .await
    {
        Ended::Conn(res) => return res,
        Ended::Idle => return idled(),
        Ended::Stopped => {}
    }
    // In-flight requests finish; a client that sends half a head, or stops
    // reading, still meets the idle timeout.
    graceful_shutdown(conn.as_mut());
    let never = pin!(std::future::pending());
    match drive(conn, idle, never, activity, &mut timing, &side).await {
        Ended::Conn(res) => res,
        Ended::Idle | Ended::Stopped => idled(),
    }
}

/// How [`drive`] ended.
enum Ended {
    /// The connection did, with this.
    Conn(Result<(), hyper::Error>),
    /// The idle timeout ran out first.
    Idle,
    /// The stop signal came first.
    Stopped,
}

/// Polls a client connection, its idle timeout and a stop signal until one
/// of them completes. The two beside the connection are polled only when
/// one of them woke the task (see [`SideWaker`]). The timeout is polled (its
/// timer started) only from the first time the connection waits on its
/// client (`timing`): a connection whose one request came with it and that
/// closes after the response never starts a timer (its request has timeouts
/// of its own). On HTTP/1, everything that makes a connection wait on its
/// client (a response done, a write that blocks) happens while it is polled
/// here.
async fn drive<C, I, S>(
    mut conn: Pin<&mut C>,
    mut idle: Pin<&mut I>,
    mut stop: Pin<&mut S>,
    activity: &Activity,
    timing: &mut bool,
    side: &SideWaker,
) -> Ended
where
    C: Future<Output = Result<(), hyper::Error>>,
    I: Future<Output = ()>,
    S: Future<Output = ()>,
{
    std::future::poll_fn(|cx| {
        if let Poll::Ready(res) = conn.as_mut().poll(cx) {
            return Poll::Ready(Ended::Conn(res));
        }
        if !*timing && activity.waits_on_peer() {
            *timing = true;
            side.nudge(); // the timeout's first poll starts its timer
        }
        if let Some(mut side_cx) = side.woken(cx) {
            if *timing && idle.as_mut().poll(&mut side_cx).is_ready() {
                return Poll::Ready(Ended::Idle);
            }
            if stop.as_mut().poll(&mut side_cx).is_ready() {
                return Poll::Ready(Ended::Stopped);
            }
        }
        Poll::Pending
    })
    .await
}

/// Answers one request: routed, then answered by the proxy or forwarded to a
/// member (on a pooled connection, or a new one: once more on another member
/// when connecting fails).
///
/// One `async move` block, returned by a plain fn: its future is the one
/// hyper moves into place for every request, and an `async fn` keeps each
/// argument twice (as argument and as local) and a nested one once more, so
/// the request (264 bytes) was held five times in it (3,120 bytes in all,
/// 1,584 now). Here it is held once, the helpers it awaits take references,
/// and no local that outlives an await is borrowed (rustc keeps a borrowed
/// local across every later await).
#[allow(clippy::manual_async_fn)] // on purpose: see above
fn handle(
    mut req: Request<Incoming>,
    ctx: Arc<ConnCtx>,
    busy: Busy,
) -> impl Future<Output = Result<Response<Answer>, Infallible>> {
    async move {
        let routes = ctx.shared.routes.load_full();
        let mut log = ctx
            .shared
            .access_log
            .on()
            .then(|| HttpLog::begin(&req, ctx.peer, &routes));
        let resp = 'answer: {
            let pool = match route(&req, &routes, &mut log) {
                Ok(pool) => pool,
                Err(own) => break 'answer own.response(&ctx),
            };
            let mut tried = Tried::default();
            let Some((lease, persist)) = choose_member(pool, req.headers(), ctx.peer, &mut tried)
            else {
                note(&mut log, Termination::NoMember);
                break 'answer error(&ctx, StatusCode::SERVICE_UNAVAILABLE);
            };
            let upgrade = upgrade_requested(&req);
            let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
            // (Not bound before the match: a binding that outlives the await
            // below would be kept in the future across it.)
            let (checkout, lease, key) =
                match connect_member(pool, &ctx, &routes, lease, &mut tried, &mut log).await {
                    Ok(c) => c,
                    Err(resp) => break 'answer resp,
                };
            let chosen_by_cookie =
                matches!(persist, Persist::HttpCookie { matched: true }) && tried.len() == 1;
            let counted = log.as_ref().map(|l| l.bytes_in());
            let (req, upload) = member_request(
                req,
                &ctx,
                &routes,
                &lease,
                &persist,
                upgrade,
                BodyWatch {
                    counted,
                    busy: &busy,
                },
            );
            // Taken and given back, not borrowed: a local borrowed anywhere is
            // kept in the future across every later await.
            let (req, again) =
                member_pool::with_resend_copy(req, checkout.stale, &ctx.shared.stats);
            let (sender, ends) = (checkout.sender, ctx.ends());
            let timeouts = routes.config.timeouts;
            // `timeout_member_data` counts from the last request body bytes
            // sent, if there is a body (an upload may take longer than the
            // timeout); without a body, on HTTP/1, it runs on the connection's
            // reused timer. The send is made in each arm, not bound before:
            // the future then holds one of them, not all.
            let answered = match (&upload, &ctx.member_wait) {
                (None, Some(timer)) => {
                    timer
                        .limit(
                            timeouts.member_data,
                            member_pool::send(
                                sender,
                                req,
                                again,
                                key,
                                ends,
                                timeouts.member_connect,
                            ),
                        )
                        .await
                }
                (None, None) => maybe_timeout(
                    timeouts.member_data,
                    member_pool::send(sender, req, again, key, ends, timeouts.member_connect),
                )
                .await
                .ok(),
                (Some(up), _) => tokio::select! {
                    biased;
                    r = member_pool::send(sender, req, again, key, ends, timeouts.member_connect) => Some(r),
                    _ = up.progress.idle(timeouts.member_data) => None,
                },
            };
            match answered {
                Some(Ok((resp, sender))) => {
                    let exchange = Exchange {
                        sender,
                        key,
                        lease,
                        persist,
                        chosen_by_cookie,
                        upload,
                        client_upgrade,
                    };
                    exchange.answer(resp, &ctx, pool, timeouts, &mut log)
                }
                Some(Err(e)) => unanswered(Some(e), upload.as_deref(), &ctx, key, &mut log),
                None => unanswered(None, upload.as_deref(), &ctx, key, &mut log),
            }
        };
        // Still here: answered by the proxy (or an upgrade); otherwise the
        // response body ends the record.
        if let Some(log) = log {
            log.finish_with(&resp);
        }
        Ok(resp.map(|body| Answer::new(body, busy)))
    }
}
/// The proxy's own answer to a request it does not forward.
enum OwnAnswer {
    /// A plain status (a rejection).
    Plain(StatusCode),
    /// An error status, counted as a request error.
    Error(StatusCode),
    Redirect(StatusCode, HeaderValue),
}

impl OwnAnswer {
    fn response(self, ctx: &ConnCtx) -> Response<Body> {
        match self {
            Self::Plain(status) => local(status),
            Self::Error(status) => error(ctx, status),
            Self::Redirect(code, location) => redirect(code, location),
        }
    }
}

/// Applies the L7 policies: the pool to forward to, or the proxy's own
/// answer (a redirect, a rejection, an error).
fn route<'r>(
    req: &Request<Incoming>,
    routes: &'r Routes,
    log: &mut Option<Box<HttpLog>>,
) -> Result<&'r PoolRuntime, OwnAnswer> {
    let view = RequestView::new(req.uri(), req.headers());
    // Two Host headers: the rules would judge the first while a member may
    // take the last (a way around HOST_NAME rules). Refused, as HAProxy does.
    if view.second_host {
        note(log, Termination::BadRequest);
        return Err(OwnAnswer::Error(StatusCode::BAD_REQUEST));
    }
    let matched = l7::first_match(&routes.policies, &view).map(|p| {
        tracing::trace!(policy = %p.id, "l7 policy matched");
        &p.action
    });
    let pool = match matched {
        Some(RouteAction::Reject) => {
            note(log, Termination::Rejected);
            return Err(OwnAnswer::Plain(StatusCode::FORBIDDEN));
        }
        Some(RouteAction::RedirectUrl { location, code }) => {
            note(log, Termination::Redirected);
            return Err(OwnAnswer::Redirect(*code, location.clone()));
        }
        Some(RouteAction::RedirectPrefix { prefix, code }) => {
            let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
            return Err(match HeaderValue::try_from(format!("{prefix}{pq}")) {
                Ok(location) => {
                    note(log, Termination::Redirected);
                    OwnAnswer::Redirect(*code, location)
                }
                Err(_) => {
                    note(log, Termination::BadRequest);
                    OwnAnswer::Plain(StatusCode::BAD_REQUEST)
                }
            });
        }
        Some(RouteAction::Pool(pool)) => pool,
        None => match &routes.default_pool {
            Some(pool) => pool,
            None => {
                note(log, Termination::NoMember);
                return Err(OwnAnswer::Error(StatusCode::SERVICE_UNAVAILABLE));
            }
        },
    };
    Ok(pool)
}

/// How a pool's session persistence applies to one request.
enum Persist<'a> {
    None,
    /// `HTTP_COOKIE`: `true` when the request's `SRV` cookie chose the member.
    HttpCookie {
        matched: bool,
    },
    /// `APP_COOKIE` with this cookie name: learn from the response.
    AppCookie(&'a str),
}

/// Picks the first member for a request, honouring persistence: the `SRV`
/// cookie (`HTTP_COOKIE`), the application cookie's stick entry
/// (`APP_COOKIE`) or the client's stick entry (`SOURCE_IP`).
fn choose_member<'a>(
    pool: &'a PoolRuntime,
    headers: &HeaderMap,
    peer: SocketAddr,
    tried: &mut Tried,
) -> Option<(Lease, Persist<'a>)> {
    match &pool.config.session_persistence {
        Some(SessionPersistence::HttpCookie) => {
            if let Some((i, lease)) =
                request_cookie(headers, PERSISTENCE_COOKIE).and_then(|id| pool.usable_member(id))
            {
                tried.push(i);
                return Some((lease, Persist::HttpCookie { matched: true }));
            }
            let lease = pool.pick(peer, tried)?;
            Some((lease, Persist::HttpCookie { matched: false }))
        }
        Some(SessionPersistence::AppCookie { .. }) => {
            let name = pool.app_cookie()?;
            if let Some((i, lease)) =
                request_cookie(headers, name).and_then(|v| pool.stuck_to_cookie(v))
            {
                tried.push(i);
                return Some((lease, Persist::AppCookie(name)));
            }
            Some((pool.pick(peer, tried)?, Persist::AppCookie(name)))
        }
        _ => Some((pool.pick_for(peer, tried)?, Persist::None)),
    }
}

/// A connection for a request to `pool`, starting with `lease`'s member;
/// when connecting fails, once more on another member. PROXY pools: from
/// this client connection's private stack. Err: the answer (502).
async fn connect_member(
    pool: &PoolRuntime,
    ctx: &ConnCtx,
    routes: &Routes,
    mut lease: Lease,
    tried: &mut Tried,
    log: &mut Option<Box<HttpLog>>,
) -> Result<(Checkout, Lease, ConnKey), Response<Body>> {
    let timeouts = routes.config.timeouts;
    let proxy = ProxyVersion::of(pool.config.protocol);
    loop {
        let member = lease.backend.addr;
        if let Some(log) = log {
            log.set_member(member, &lease.backend.id);
        }
        let key = ConnKey {
            addr: member,
            proxy,
        };
        let idle = match proxy {
            Some(_) => ctx.private_conns(),
            None => &lease.backend.state.idle,
        };
        match member_pool::checkout(idle, key, ctx.ends(), timeouts.member_connect).await {
            Ok(c) => return Ok((c, lease, key)),
            Err(e) => {
                tracing::debug!(%member, error = %e, "member connect failed");
                ctx.shared.stats.member_error();
            }
        }
        let next = (tried.len() < CONNECT_ATTEMPTS)
            .then(|| pool.pick_for(ctx.peer, tried))
            .flatten();
        match next {
            Some(l) => lease = l,
            None => {
                note(log, Termination::MemberConnectFailed);
                return Err(error(ctx, StatusCode::BAD_GATEWAY));
            }
        }
    }
}

/// A request that reached a member, once the member's response head came.
struct Exchange<'p> {
    sender: member_pool::Sender,
    key: ConnKey,
    lease: Lease,
    persist: Persist<'p>,
    /// The `SRV` cookie chose the member, and it was the one that answered.
    chosen_by_cookie: bool,
    upload: Option<Arc<member_pool::Upload>>,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
}

impl Exchange<'_> {
    /// The member's response as it goes to the client: an upgrade becomes a
    /// tunnel; hop-by-hop headers out, persistence cookie in (or learned);
    /// the body puts the member connection back and ends the log record.
    fn answer(
        self,
        mut resp: Response<Incoming>,
        ctx: &Arc<ConnCtx>,
        pool: &PoolRuntime,
        timeouts: ListenerTimeouts,
        log: &mut Option<Box<HttpLog>>,
    ) -> Response<Body> {
        if let Some(log) = log {
            log.member_answered(resp.status());
        }
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            if let Some(client_upgrade) = self.client_upgrade {
                let member_upgrade = hyper::upgrade::on(&mut resp);
                if let Some(timer) = &ctx.member_wait {
                    timer.clear();
                }
                let tunnel = Tunnel {
                    _conn: ctx.clone(),
                    _lease: self.lease,
                    idle: tunnel_idle(ctx.client_data, timeouts.member_data),
                };
                tokio::spawn(tunnel.run(client_upgrade, member_upgrade));
                note(log, Termination::Upgraded);
                return resp.map(|b| {
                    Either::Left(MemberBody::new(b, None, (None, None), None, Duration::ZERO))
                });
            }
        }
        strip_hop_by_hop(resp.headers_mut());
        let lease = self.lease;
        match self.persist {
            Persist::HttpCookie { .. } if !self.chosen_by_cookie => {
                if let Ok(cookie) = HeaderValue::try_from(format!(
                    "{PERSISTENCE_COOKIE}={}; path=/",
                    lease.backend.config.id
                )) {
                    resp.headers_mut().append(header::SET_COOKIE, cookie);
                    // HAProxy's `nocache`: a response that sets it must not be cached.
                    resp.headers_mut()
                        .entry(header::CACHE_CONTROL)
                        .or_insert(HeaderValue::from_static("private"));
                }
            }
            Persist::AppCookie(name) => {
                if let Some(value) = response_cookie(resp.headers(), name) {
                    pool.learn_cookie(value, &lease.backend.id);
                }
            }
            _ => {}
        }
        let home = match self.key.proxy {
            Some(_) => ctx.private_conns().clone(),
            None => lease.backend.state.idle.clone(),
        };
        let log = log.take();
        let conn = Some((self.sender, home, self.key));
        let exchange = (self.upload, Some(lease));
        resp.map(|b| {
            Either::Left(MemberBody::new(
                b,
                conn,
                exchange,
                log,
                timeouts.member_data,
            ))
        })
    }
}

/// The answer to a request whose member gave no response head; `failure`
/// says why (`None`: `timeout_member_data` ran out first). The client's
/// fault when its request body failed (400, 408 when it stalled) or, at the
/// timeout, was not all sent (408, as HAProxy answers); else 502, or 504 at
/// the timeout.
fn unanswered(
    failure: Option<member_pool::SendError>,
    upload: Option<&member_pool::Upload>,
    ctx: &ConnCtx,
    key: ConnKey,
    log: &mut Option<Box<HttpLog>>,
) -> Response<Body> {
    let member = key.addr;
    let Some(e) = failure else {
        if upload.is_some_and(|u| !u.sent()) {
            tracing::debug!(%member, "client request body stalled");
            note(log, Termination::ClientAbort);
            return error(ctx, StatusCode::REQUEST_TIMEOUT);
        }
        tracing::debug!(%member, "member timed out");
        note(log, Termination::MemberTimeout);
        return error(ctx, StatusCode::GATEWAY_TIMEOUT);
    };
    if upload.is_some_and(|u| u.client_failed()) {
        let stalled = upload.is_some_and(|u| u.client_stalled());
        tracing::debug!(%member, stalled, "client request body failed");
        note(log, Termination::ClientAbort);
        return error(
            ctx,
            match stalled {
                true => StatusCode::REQUEST_TIMEOUT,
                false => StatusCode::BAD_REQUEST,
            },
        );
    }
    tracing::debug!(%member, error = %e, "member request failed");
    let termination = match e {
        // A pooled connection had closed, and no new one could be opened.
        member_pool::SendError::Connect(_) => {
            ctx.shared.stats.member_error();
            Termination::MemberConnectFailed
        }
        member_pool::SendError::Exchange(_) => Termination::MemberReset,
    };
    note(log, termination);
    error(ctx, StatusCode::BAD_GATEWAY)
}

/// What follows a request body to the member: its byte count for the access
/// log, and the client connection's busy guard (see [`RequestBody::new`]).
struct BodyWatch<'a> {
    counted: Option<Arc<AtomicU64>>,
    busy: &'a Busy,
}

/// The client's request as it goes to a member: hop-by-hop headers out,
/// `Host` kept (or taken from HTTP/2's `:authority`, else the member's
/// address), the persistence cookie out, the listener's `insert_headers`
/// in, origin-form target, HTTP/1.1, and a body of unknown length chunked.
/// Also the upload's state, for a request that has a body. (Not part of
/// `handle`'s future: nothing here waits.)
fn member_request(
    req: Request<Incoming>,
    ctx: &ConnCtx,
    routes: &Routes,
    lease: &Lease,
    persist: &Persist<'_>,
    upgrade: bool,
    watch: BodyWatch<'_>,
) -> (Request<RequestBody>, Option<Arc<member_pool::Upload>>) {
    let (mut parts, body) = req.into_parts();
    // Host: keep the client's; h2 requests carry it as :authority.
    if !parts.headers.contains_key(header::HOST) {
        if let Some(host) = parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::try_from(a.as_str()).ok())
        {
            parts.headers.insert(header::HOST, host);
        }
    }
    strip_hop_by_hop(&mut parts.headers);
    if let Some(proto) = upgrade
        .then(|| parts.headers.get(header::UPGRADE).cloned())
        .flatten()
    {
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        parts.headers.insert(header::UPGRADE, proto);
    }
    if matches!(persist, Persist::HttpCookie { .. }) {
        remove_cookie(&mut parts.headers, PERSISTENCE_COOKIE);
    }
    let ins = routes.config.insert_headers;
    if ins.x_forwarded_for {
        append_forwarded_for(&mut parts.headers, ctx.peer_ip());
    }
    if ins.x_forwarded_port {
        parts.headers.insert(
            HeaderName::from_static("x-forwarded-port"),
            routes.port_header.clone(),
        );
    }
    if ins.x_forwarded_proto {
        parts.headers.insert(
            HeaderName::from_static("x-forwarded-proto"),
            HeaderValue::from_static("http"),
        );
    }
    // Origin form towards the member: only the path and query.
    parts.uri = match parts.uri.path_and_query() {
        Some(pq) if pq.as_str().starts_with('/') => {
            let mut u = std::mem::take(&mut parts.uri).into_parts();
            u.scheme = None;
            u.authority = None;
            Uri::from_parts(u).unwrap_or_else(|_| Uri::from_static("/"))
        }
        Some(pq) if pq.as_str() == "*" => std::mem::take(&mut parts.uri),
        _ => Uri::from(PathAndQuery::from_static("/")),
    };
    parts.version = Version::HTTP_11;

    if !parts.headers.contains_key(header::HOST) {
        if let Some(a) = &lease.backend.authority {
            if let Ok(host) = HeaderValue::try_from(a.as_str()) {
                parts.headers.insert(header::HOST, host);
            }
        }
    }
    let body = RequestBody::new(body, watch.counted, ctx.client_data, watch.busy);
    let upload = body.upload();
    if upload.is_some() && !parts.headers.contains_key(header::CONTENT_LENGTH) {
        // A body of unknown length (HTTP/1 chunked, HTTP/2 without a length):
        // chunked towards the member, whatever the method (hyper would send
        // a GET's body as empty otherwise).
        parts.headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
    }
    (Request::from_parts(parts, body), upload)
}

/// An upgraded connection (`101 Switching Protocols`, e.g. WebSocket): bytes
/// copied both ways until either side closes or nothing moves for `idle`.
/// It keeps the client connection counted as active (the listener's drain
/// waits for it, as for L4 connections) and the member's lease.
struct Tunnel {
    _conn: Arc<ConnCtx>,
    _lease: Lease,
    /// Zero: no limit.
    idle: Duration,
}

impl Tunnel {
    async fn run(self, client: hyper::upgrade::OnUpgrade, member: hyper::upgrade::OnUpgrade) {
        let (Ok(client), Ok(member)) = tokio::join!(client, member) else {
            return;
        };
        let moved = Arc::new(Activity::new());
        let mut client = Metered::tunnel(TokioIo::new(client), moved.clone());
        let mut member = Metered::tunnel(TokioIo::new(member), moved.clone());
        tokio::select! {
            _ = tokio::io::copy_bidirectional(&mut client, &mut member) => {}
            _ = moved.idle(self.idle) => {
                tracing::debug!("tunnel idle: closed");
            }
        }
    }
}

/// A tunnel's idle timeout: the longer of the client and member data
/// timeouts (HAProxy without `timeout tunnel`); none if either is none.
fn tunnel_idle(client_data: Duration, member_data: Duration) -> Duration {
    if client_data.is_zero() || member_data.is_zero() {
        Duration::ZERO
    } else {
        client_data.max(member_data)
    }
}

fn local(status: StatusCode) -> Response<Body> {
    let mut resp = Response::new(Either::Right(Full::new(Bytes::from(format!(
        "{} {}\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    )))));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

fn error(ctx: &ConnCtx, status: StatusCode) -> Response<Body> {
    ctx.shared.stats.error();
    local(status)
}

fn redirect(code: StatusCode, location: HeaderValue) -> Response<Body> {
    let mut resp = local(code);
    resp.headers_mut().insert(header::LOCATION, location);
    resp
}
