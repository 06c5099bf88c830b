//! Stream wrappers that count bytes and record activity, and the idle watchdog.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::status::StatsCounters;

/// Last activity on a connection, in milliseconds since it opened (bytes
/// moved, or for HTTP clients the end of a request), and how many requests on
/// it wait for something other than the client (HTTP: a request is busy until
/// its response has been sent).
#[derive(Debug)]
pub(crate) struct Activity {
    start: Instant,
    last_ms: AtomicU64,
    busy: AtomicU64,
    /// Since when (milliseconds since `start`, plus one; zero: not) a write
    /// to this side has been waiting for the peer to read.
    write_blocked: AtomicU64,
    /// HTTP/2: the responses being sent (see [`Waiting`]).
    streams: Mutex<Vec<Weak<dyn Waiting>>>,
}

/// Something sent to the peer that may wait for it on its own, which the
/// idle watch ends when it has waited too long (an HTTP/2 stream's response
/// waiting for the client's flow-control window, while the connection's
/// other streams go on).
pub(crate) trait Waiting: Send + Sync {
    /// Since when it has waited ([`Activity::stamp`] then; zero: it does not).
    fn waiting_since(&self) -> u64;
    /// Ends it: the peer has kept it waiting for the idle timeout.
    fn cut(&self);
}

/// A request in progress on a connection (see [`Activity::busy`]).
#[derive(Debug)]
pub(crate) struct Busy {
    activity: Arc<Activity>,
    /// An HTTP/2 stream's (see [`Activity::busy_stream`]).
    stream: bool,
}

impl Busy {
    /// Whether this is an HTTP/2 stream's.
    pub(crate) fn is_stream(&self) -> bool {
        self.stream
    }

    /// The connection's activity.
    pub(crate) fn activity(&self) -> &Arc<Activity> {
        &self.activity
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        // The client's idle time starts when the response is done.
        self.activity.touch();
        self.activity.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Activity {
    pub(crate) fn new() -> Self {
        Self {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            busy: AtomicU64::new(0),
            write_blocked: AtomicU64::new(0),
            streams: Mutex::new(Vec::new()),
        }
    }

    /// Marks a request in progress until the returned guard is dropped:
    /// meanwhile [`Self::idle`] does not complete.
    pub(crate) fn busy(self: &Arc<Self>) -> Busy {
        self.busy.fetch_add(1, Ordering::Relaxed);
        Busy {
            activity: self.clone(),
            stream: false,
        }
    }

    /// [`Self::busy`] for an HTTP/2 stream, whose response is watched on its
    /// own (see [`Self::watch`]).
    pub(crate) fn busy_stream(self: &Arc<Self>) -> Busy {
        let mut busy = self.busy();
        busy.stream = true;
        busy
    }

    /// Watches `it` until it is dropped: [`Self::idle`] cuts it once it has
    /// waited for the idle timeout.
    pub(crate) fn watch(&self, it: Weak<dyn Waiting>) {
        let mut streams = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        if streams.len() == streams.capacity() {
            streams.retain(|s| s.strong_count() > 0);
        }
        streams.push(it);
    }

    /// Now, as [`Waiting::waiting_since`] gives it.
    pub(crate) fn stamp(&self) -> u64 {
        self.elapsed_ms() + 1
    }

    /// Cuts what has waited `idle_ms` by `now_ms` (see [`Waiting`]); the
    /// earliest time another will have, if one waits.
    fn cut_waited_out(&self, now_ms: u64, idle_ms: u64) -> Option<u64> {
        let waiting: Vec<_> = {
            let streams = self.streams.lock().unwrap_or_else(|p| p.into_inner());
            streams
                .iter()
                .filter_map(Weak::upgrade)
                .filter(|s| s.waiting_since() != 0)
                .collect()
        };
        let mut next = None;
        for it in waiting {
            let until = it.waiting_since() - 1 + idle_ms;
            if now_ms >= until {
                it.cut();
            } else {
                next = Some(next.map_or(until, |n: u64| n.min(until)));
            }
        }
        next
    }

    /// Records activity now (for callers that move data themselves).
    pub(crate) fn touch_now(&self) {
        self.touch();
    }

    fn touch(&self) {
        self.last_ms.store(self.elapsed_ms(), Ordering::Relaxed);
    }

    fn elapsed_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// A write would block: the peer is not reading (noted once per stall).
    fn write_blocked(&self) {
        if self.write_blocked.load(Ordering::Relaxed) == 0 {
            self.write_blocked
                .store(self.elapsed_ms() + 1, Ordering::Relaxed);
        }
    }

    /// A write went through: the peer reads again.
    fn write_went_through(&self) {
        if self.write_blocked.load(Ordering::Relaxed) != 0 {
            self.write_blocked.store(0, Ordering::Relaxed);
        }
    }

    fn last(&self) -> u64 {
        self.last_ms.load(Ordering::Relaxed)
    }

    /// Whether the connection waits on its peer, so that [`Self::idle`] has
    /// something to watch: no request is in progress, or a write waits for
    /// the peer to read.
    pub(crate) fn waits_on_peer(&self) -> bool {
        self.busy.load(Ordering::Relaxed) == 0 || self.write_blocked.load(Ordering::Relaxed) != 0
    }

    /// Completes once nothing has moved for `idle` and no request is busy,
    /// or once a write has waited `idle` for the peer to read (a busy request
    /// whose client stopped reading its response); never if `idle` is zero.
    /// Meanwhile it cuts what it watches (see [`Self::watch`]) once that has
    /// waited `idle`.
    /// One timer, re-armed only when it runs out.
    pub(crate) async fn idle(&self, idle: Duration) {
        if idle.is_zero() {
            return std::future::pending().await;
        }
        let idle_ms = idle.as_millis() as u64;
        let at = |ms: u64| (self.start + Duration::from_millis(ms)).into();
        let sleep = tokio::time::sleep(idle);
        tokio::pin!(sleep);
        let mut deadline_ms = self.last() + idle_ms;
        loop {
            sleep.as_mut().reset(at(deadline_ms));
            sleep.as_mut().await;
            let now_ms = self.elapsed_ms();
            if self.busy.load(Ordering::Relaxed) > 0 {
                // Busy requests answer to their own timeouts, unless their
                // response cannot be written: a socket write that waits ends
                // the connection, an HTTP/2 response that waits its stream.
                deadline_ms = match self.write_blocked.load(Ordering::Relaxed) {
                    0 => now_ms + idle_ms,
                    since => {
                        let stuck_until = since - 1 + idle_ms;
                        if now_ms >= stuck_until {
                            return;
                        }
                        stuck_until
                    }
                };
                if let Some(next) = self.cut_waited_out(now_ms, idle_ms) {
                    deadline_ms = deadline_ms.min(next);
                }
            } else {
                let last = self.last();
                if now_ms >= last + idle_ms {
                    return;
                }
                deadline_ms = last + idle_ms;
            }
        }
    }
}

/// A stream that records activity and, for the client side, counts bytes
/// into the listener's stats (reads are `bytes_in`, writes `bytes_out`).
#[derive(Debug)]
pub(crate) struct Metered<S> {
    inner: S,
    stats: Option<Arc<StatsCounters>>,
    activity: Arc<Activity>,
    /// Whether bytes read restart the idle clock (tunnels), or only the end
    /// of a request does (HTTP clients, see [`Metered::http_client`]).
    reads_are_activity: bool,
}

impl<S> Metered<S> {
    /// One side of a tunnel: bytes read either way are activity.
    pub(crate) fn tunnel(inner: S, activity: Arc<Activity>) -> Self {
        Self {
            inner,
            stats: None,
            activity,
            reads_are_activity: true,
        }
    }

    /// An HTTP client connection, its bytes counted into `stats`. Bytes read
    /// do not restart its idle clock: only the end of a request does (see
    /// [`Busy`]), so a request head must be whole within the idle timeout of
    /// the time the connection began to wait for it, however slowly its
    /// bytes trickle in (a slow-headers client holds a connection no longer).
    pub(crate) fn http_client(
        inner: S,
        stats: Arc<StatsCounters>,
        activity: Arc<Activity>,
    ) -> Self {
        Self {
            inner,
            stats: Some(stats),
            activity,
            reads_are_activity: false,
        }
    }

    /// Counts written bytes and notes writes that wait for the peer. Writes
    /// are not recorded as activity: an HTTP client is written to while a
    /// request of it is busy, and the end of the response records activity
    /// (see [`Busy`]).
    fn wrote(&self, res: &Poll<io::Result<usize>>) {
        match res {
            Poll::Ready(Ok(n)) => {
                if let Some(s) = &self.stats {
                    s.bytes_out.fetch_add(*n as u64, Ordering::Relaxed);
                }
                self.activity.write_went_through();
            }
            Poll::Pending => self.activity.write_blocked(),
            Poll::Ready(Err(_)) => {}
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Metered<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            if let Some(s) = &self.stats {
                s.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
            }
            if self.reads_are_activity {
                self.activity.touch();
            }
        }
        res
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Metered<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.wrote(&res);
        res
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.wrote(&res);
        res
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
