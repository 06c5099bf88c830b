//! Access logs: one structured `tracing` event per HTTP request (L7), per TCP
//! connection (L4 TCP and HTTPS pass-through) and per UDP flow (when it ends),
//! under the target [`TARGET`] (`fulcrum::access`), level INFO, message `access`.
//!
//! Off by default; [`crate::Dataplane::set_access_log`] turns it on or off for
//! every listener at once. The data path checks the switch once per request
//! (L7) or per connection / flow (L4) before building anything, so a disabled
//! access log costs one relaxed atomic load: no allocation, no clock read, no
//! formatting. When it is on, a record is a small heap value filled in as the
//! request goes, and emitted when it is dropped, so a request or connection
//! that is cut short (client gone, listener stopped) still gets its record,
//! with the reason. A subscriber can also filter the target out
//! (`FULCRUM_LOG=info,fulcrum::access=off`): then nothing is built either.
//!
//! The fields are documented on [`TARGET`] (exported as
//! `fulcrum_dataplane::ACCESS_LOG_TARGET`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use hyper::body::Body;

use crate::listener::Routes;

/// The `tracing` target of access log records (events at INFO, message
/// `access`), switched on by [`crate::Dataplane::set_access_log`].
///
/// Fields (a field that does not apply is absent):
///
/// | field | meaning |
/// |---|---|
/// | `protocol` | `http`, `tcp` (also HTTPS pass-through) or `udp` |
/// | `listener` | listener id |
/// | `client` | client `addr:port` |
/// | `member`, `member_id` | the member that served (the last one tried); absent when none was chosen |
/// | `method`, `host`, `path` | HTTP only: request method, `Host` (or `:authority`), path without the query |
/// | `status` | HTTP only: status sent to the client (absent when the client left before one was sent) |
/// | `bytes_in` | HTTP: request body bytes read from the client; L4: bytes from the client |
/// | `bytes_out` | HTTP: response body bytes towards the client; L4: bytes to the client |
/// | `duration_us` | from the request's arrival (HTTP) or the connection's accept / the flow's first datagram (L4) to the end |
/// | `ttfb_us` | time to the first byte from the member: HTTP, response headers; L4, first data |
/// | `termination` | how it ended: `completed`; `client_abort` (client gone first); `no_member` (503); `member_connect_failed` (502); `member_reset` (502, or an L4 error on the member's side); `member_timeout` (504, or the body stalled for `timeout_member_data`); `member_abort` (response body broke off); `rejected` (403); `redirected`; `bad_request` (400); `upgraded` (101, then a tunnel); L4: `idle_timeout`, `client_reset`, `listener_stopped` (UDP), `proxy_error` |
///
/// HTTP byte counts are bodies only (headers are not counted, unlike HAProxy's `%B`).
pub const TARGET: &str = "fulcrum::access";

/// The on/off switch shared by every listener of one data plane.
#[derive(Debug, Default)]
pub(crate) struct AccessLogSwitch(AtomicBool);

impl AccessLogSwitch {
    pub(crate) fn set(&self, on: bool) {
        self.0.store(on, Ordering::Relaxed);
    }

    pub(crate) fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Whether a record should be built now: switched on, and a subscriber
    /// wants INFO events of [`TARGET`] (checked only when switched on).
    #[inline]
    pub(crate) fn on(&self) -> bool {
        self.is_set() && tracing::enabled!(target: TARGET, tracing::Level::INFO)
    }
}

/// How a request, connection or flow ended (the `termination` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Termination {
    /// Served to its end (HTTP: the whole response body sent; L4: both sides closed).
    Completed,
    /// The client went away first (HTTP: before the whole response was sent;
    /// L4: closed while its first bytes were awaited, see `timeout_tcp_inspect`).
    ClientAbort,
    /// No member to send to: no pool, pool disabled or no usable member (HTTP 503).
    NoMember,
    /// Every connect attempt failed: refused or `timeout_member_connect` (HTTP 502).
    MemberConnectFailed,
    /// The member closed or reset the connection, or sent garbage, before the
    /// response headers (HTTP 502); L4: an I/O error on the member's side.
    MemberReset,
    /// No response headers within `timeout_member_data` (HTTP 504).
    MemberTimeout,
    /// The member's response body broke off midway.
    MemberAbort,
    /// Answered 403 by a `REJECT` policy.
    Rejected,
    /// Answered with a redirect by a `REDIRECT_TO_URL` / `REDIRECT_PREFIX` policy.
    Redirected,
    /// Answered 400 by the proxy (a redirect that cannot be built from the request).
    BadRequest,
    /// `101 Switching Protocols`: the connection became a tunnel.
    Upgraded,
    /// Nothing moved for the idle timeout (L4).
    IdleTimeout,
    /// An I/O error on the client's side (L4).
    ClientReset,
    /// The listener was stopped or removed while the UDP flow was open.
    ListenerStopped,
    /// A UDP flow not yet settled (its member had not answered, or its client
    /// sent nothing 2 s or more after it began), ended to make room for a new
    /// one at the listener's connection limit.
    Evicted,
    /// A local resource (e.g. a pipe, file descriptors) ran out (L4).
    ProxyError,
}

impl Termination {
    /// The value logged in the `termination` field.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::ClientAbort => "client_abort",
            Self::NoMember => "no_member",
            Self::MemberConnectFailed => "member_connect_failed",
            Self::MemberReset => "member_reset",
            Self::MemberTimeout => "member_timeout",
            Self::MemberAbort => "member_abort",
            Self::Rejected => "rejected",
            Self::Redirected => "redirected",
            Self::BadRequest => "bad_request",
            Self::Upgraded => "upgraded",
            Self::IdleTimeout => "idle_timeout",
            Self::ClientReset => "client_reset",
            Self::ListenerStopped => "listener_stopped",
            Self::Evicted => "evicted",
            Self::ProxyError => "proxy_error",
        }
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// The record of one HTTP request, emitted when dropped.
#[derive(Debug)]
pub(crate) struct HttpLog {
    start: Instant,
    routes: Arc<Routes>,
    client: SocketAddr,
    method: Method,
    uri: Uri,
    host: Option<HeaderValue>,
    /// Request body bytes, counted by the body on its way to the member.
    bytes_in: Arc<AtomicU64>,
    member: Option<(SocketAddr, Arc<str>)>,
    status: Option<StatusCode>,
    bytes_out: u64,
    ttfb: Option<Duration>,
    termination: Termination,
}

impl HttpLog {
    /// Starts the record of `req` (call only when [`AccessLogSwitch::on`]).
    pub(crate) fn begin<B>(
        req: &Request<B>,
        client: SocketAddr,
        routes: &Arc<Routes>,
    ) -> Box<Self> {
        Box::new(Self {
            start: Instant::now(),
            routes: routes.clone(),
            client,
            method: req.method().clone(),
            uri: req.uri().clone(),
            host: req.headers().get(header::HOST).cloned(),
            bytes_in: Arc::default(),
            member: None,
            status: None,
            bytes_out: 0,
            ttfb: None,
            termination: Termination::ClientAbort,
        })
    }

    /// The counter the request body adds its bytes to.
    pub(crate) fn bytes_in(&self) -> Arc<AtomicU64> {
        self.bytes_in.clone()
    }

    pub(crate) fn set_member(&mut self, addr: SocketAddr, id: &Arc<str>) {
        self.member = Some((addr, id.clone()));
    }

    /// The member's response headers arrived.
    pub(crate) fn member_answered(&mut self, status: StatusCode) {
        self.ttfb = Some(self.start.elapsed());
        self.status = Some(status);
    }

    /// Response body bytes passed towards the client.
    pub(crate) fn add_bytes_out(&mut self, n: usize) {
        self.bytes_out += n as u64;
    }

    /// The response body was sent to its end (unless it broke off before).
    pub(crate) fn body_done(&mut self) {
        if self.termination == Termination::ClientAbort {
            self.termination = Termination::Completed;
        }
    }

    /// Ends the record with a response whose body is not followed: one made by
    /// the proxy itself (sent at once) or a `101`. `termination` has been set
    /// by whoever chose the answer.
    pub(crate) fn finish_with<B: Body>(mut self: Box<Self>, resp: &Response<B>) {
        self.status = Some(resp.status());
        self.bytes_out = resp.body().size_hint().exact().unwrap_or(0);
    }
}

impl Drop for HttpLog {
    fn drop(&mut self) {
        let host = self
            .host
            .as_ref()
            .and_then(|h| h.to_str().ok())
            .or_else(|| self.uri.authority().map(|a| a.as_str()));
        tracing::info!(
            target: TARGET,
            protocol = "http",
            listener = self.routes.config.id.as_str(),
            client = %self.client,
            member = self.member.as_ref().map(|(a, _)| tracing::field::display(a)),
            member_id = self.member.as_ref().map(|(_, id)| &**id),
            method = self.method.as_str(),
            host,
            path = self.uri.path(),
            status = self.status.map(|s| s.as_u16()),
            bytes_in = self.bytes_in.load(Ordering::Relaxed),
            bytes_out = self.bytes_out,
            duration_us = micros(self.start.elapsed()),
            ttfb_us = self.ttfb.map(micros),
            termination = self.termination.as_str(),
            "access"
        );
    }
}

/// The record of one TCP connection or UDP flow, emitted when dropped.
#[derive(Debug)]
pub(crate) struct ConnLog {
    protocol: &'static str,
    start: Instant,
    routes: Arc<Routes>,
    client: SocketAddr,
    member: Option<(SocketAddr, Arc<str>)>,
    /// Bytes from the client, when counted elsewhere (UDP: by the listener's receive loop).
    shared_in: Option<Arc<AtomicU64>>,
    bytes_in: u64,
    bytes_out: u64,
    first_member_byte: Option<Instant>,
    termination: Termination,
}

impl ConnLog {
    /// Starts the record of a TCP connection (call only when [`AccessLogSwitch::on`]).
    pub(crate) fn tcp(client: SocketAddr, routes: &Arc<Routes>) -> Box<Self> {
        Self::new("tcp", client, routes, None)
    }

    /// Starts the record of a UDP flow; `bytes_in` is the flow's client byte counter.
    pub(crate) fn udp(
        client: SocketAddr,
        routes: &Arc<Routes>,
        bytes_in: Option<Arc<AtomicU64>>,
    ) -> Box<Self> {
        Self::new("udp", client, routes, bytes_in)
    }

    fn new(
        protocol: &'static str,
        client: SocketAddr,
        routes: &Arc<Routes>,
        shared_in: Option<Arc<AtomicU64>>,
    ) -> Box<Self> {
        Box::new(Self {
            protocol,
            start: Instant::now(),
            routes: routes.clone(),
            client,
            member: None,
            shared_in,
            bytes_in: 0,
            bytes_out: 0,
            first_member_byte: None,
            termination: Termination::ListenerStopped,
        })
    }

    pub(crate) fn set_member(&mut self, addr: SocketAddr, id: &Arc<str>) {
        self.member = Some((addr, id.clone()));
    }

    pub(crate) fn set_bytes(&mut self, bytes_in: u64, bytes_out: u64) {
        self.bytes_in = bytes_in;
        self.bytes_out = bytes_out;
    }

    pub(crate) fn add_bytes_out(&mut self, n: usize) {
        self.bytes_out += n as u64;
    }

    /// Records the first byte from the member (later calls keep the first time).
    pub(crate) fn member_sent(&mut self, at: Instant) {
        self.first_member_byte.get_or_insert(at);
    }
}

impl Drop for ConnLog {
    fn drop(&mut self) {
        let bytes_in = self
            .shared_in
            .as_ref()
            .map_or(self.bytes_in, |c| c.load(Ordering::Relaxed));
        tracing::info!(
            target: TARGET,
            protocol = self.protocol,
            listener = self.routes.config.id.as_str(),
            client = %self.client,
            member = self.member.as_ref().map(|(a, _)| tracing::field::display(a)),
            member_id = self.member.as_ref().map(|(_, id)| &**id),
            bytes_in,
            bytes_out = self.bytes_out,
            duration_us = micros(self.start.elapsed()),
            ttfb_us = self
                .first_member_byte
                .map(|t| micros(t.saturating_duration_since(self.start))),
            termination = self.termination.as_str(),
            "access"
        );
    }
}

/// Sets the termination of an optional record.
pub(crate) fn note<L: Terminates>(log: &mut Option<Box<L>>, t: Termination) {
    if let Some(l) = log {
        l.terminate(t);
    }
}

/// Records that carry a [`Termination`].
pub(crate) trait Terminates {
    fn terminate(&mut self, t: Termination);
}

impl Terminates for HttpLog {
    fn terminate(&mut self, t: Termination) {
        self.termination = t;
    }
}

impl Terminates for ConnLog {
    fn terminate(&mut self, t: Termination) {
        self.termination = t;
    }
}
