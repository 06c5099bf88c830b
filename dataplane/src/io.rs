//! Stream wrappers that count bytes and record activity, and the idle watchdog.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::status::StatsCounters;

/// Last time bytes moved on a connection, in milliseconds since it opened,
/// and how many requests on it wait for something other than the client
/// (HTTP: a request is busy until its response has been sent).
#[derive(Debug)]
pub(crate) struct Activity {
    start: Instant,
    last_ms: AtomicU64,
    busy: AtomicU64,
    /// Since when (milliseconds since `start`, plus one; zero: not) a write
    /// to this side has been waiting for the peer to read.
    write_blocked: AtomicU64,
}

/// A request in progress on a connection (see [`Activity::busy`]).
#[derive(Debug)]
pub(crate) struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        // The client's idle time starts when the response is done.
        self.0.touch();
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Activity {
    pub(crate) fn new() -> Self {
        Self {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            busy: AtomicU64::new(0),
            write_blocked: AtomicU64::new(0),
        }
    }

    /// Marks a request in progress until the returned guard is dropped:
    /// meanwhile [`Self::idle`] does not complete.
    pub(crate) fn busy(self: &Arc<Self>) -> Busy {
        self.busy.fetch_add(1, Ordering::Relaxed);
        Busy(self.clone())
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
                // response cannot be written.
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
    activity: Option<Arc<Activity>>,
}

impl<S> Metered<S> {
    pub(crate) fn new(
        inner: S,
        stats: Option<Arc<StatsCounters>>,
        activity: Option<Arc<Activity>>,
    ) -> Self {
        Self {
            inner,
            stats,
            activity,
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
                if let Some(a) = &self.activity {
                    a.write_went_through();
                }
            }
            Poll::Pending => {
                if let Some(a) = &self.activity {
                    a.write_blocked();
                }
            }
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
            if let Some(a) = &self.activity {
                a.touch();
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

/// Runs `fut` under `timeout` unless the timeout is zero ("no timeout").
///
/// A plain function returning tokio's `Timeout` (an infinite deadline stands
/// for "none"), not an `async fn`: the future is moved once, into the
/// `Timeout`, instead of into a wrapper future and then into the `Timeout`
/// (large request futures made those moves show up in profiles).
pub(crate) fn maybe_timeout<F: std::future::Future>(
    timeout: Duration,
    fut: F,
) -> tokio::time::Timeout<F> {
    if timeout.is_zero() {
        // ~30 years: tokio's own representation of "far future".
        tokio::time::timeout(Duration::from_secs(86400 * 365 * 30), fut)
    } else {
        tokio::time::timeout(timeout, fut)
    }
}

/// One timer for the requests of one HTTP/1 client connection, which come
/// one at a time (`timeout_member_data` until the response head): the first
/// request that waits arms it, and it is moved on only when it runs out,
/// instead of a timer armed and cancelled for every request (the timer
/// wheel's insert and removal were 3 % of the instructions of a keep-alive
/// request). Made when a request first waits, so a connection that never
/// forwarded one holds none; then kept, armed for the last request's
/// deadline (it wakes the connection once for nothing then), until the
/// connection ends or [`Self::clear`] drops it.
#[derive(Debug, Default)]
pub(crate) struct ReusedTimer(std::sync::Mutex<Option<Pin<Box<tokio::time::Sleep>>>>);

impl ReusedTimer {
    /// Drops the timer (a connection that becomes a tunnel sends no more
    /// requests).
    pub(crate) fn clear(&self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    /// `fut`'s output, or `None` if `fut` is not done `limit` after it was
    /// first polled (zero: no limit). One such future at a time per timer.
    pub(crate) fn limit<F: std::future::Future>(&self, limit: Duration, fut: F) -> Within<'_, F> {
        Within {
            fut,
            timer: self,
            limit,
            deadline: None,
        }
    }
}

pin_project_lite::pin_project! {
    /// [`ReusedTimer::limit`]'s future.
    pub(crate) struct Within<'t, F> {
        #[pin]
        fut: F,
        timer: &'t ReusedTimer,
        limit: Duration,
        deadline: Option<tokio::time::Instant>,
    }
}

impl<F: std::future::Future> std::future::Future for Within<'_, F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(v) = this.fut.poll(cx) {
            return Poll::Ready(Some(v));
        }
        if this.limit.is_zero() {
            return Poll::Pending;
        }
        let limit = *this.limit;
        let deadline = *this
            .deadline
            .get_or_insert_with(|| tokio::time::Instant::now() + limit);
        let mut slot = this.timer.0.lock().unwrap_or_else(|e| e.into_inner());
        let sleep = slot.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        // Armed by an earlier request for its own, earlier deadline (moved on
        // below if it runs out first), or for a later one (the limit was
        // shortened by a reconfiguration since).
        if sleep.deadline() > deadline {
            sleep.as_mut().reset(deadline);
        }
        loop {
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            if tokio::time::Instant::now() >= deadline {
                return Poll::Ready(None);
            }
            sleep.as_mut().reset(deadline);
        }
    }
}

/// The waker for futures polled beside a connection that rarely complete
/// (its stop signal, its idle timeout): it records that one of them woke the
/// task, so that they are polled only then, not at every wake-up of the
/// connection's task (polling both cost ~600 instructions per keep-alive
/// request).
pub(crate) struct SideWaker {
    woke: Arc<SideWoke>,
    waker: std::task::Waker,
}

/// What a [`SideWaker`] shares with its wakers.
#[derive(Default)]
struct SideWoke {
    /// A side future woke the task since they were last polled (or they
    /// never were, or [`SideWaker::nudge`] asks for a poll).
    woken: std::sync::atomic::AtomicBool,
    /// The waker of the task that polls them.
    task: std::sync::Mutex<Option<std::task::Waker>>,
}

impl std::task::Wake for SideWoke {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(w) = &*task {
            w.wake_by_ref();
        }
    }
}

impl SideWaker {
    /// Side futures are polled at the first [`Self::woken`].
    pub(crate) fn new() -> Self {
        let woke = Arc::new(SideWoke::default());
        woke.woken.store(true, Ordering::Relaxed);
        let waker = std::task::Waker::from(woke.clone());
        Self { woke, waker }
    }

    /// The side futures are to be polled at the next [`Self::woken`] (one
    /// is polled for the first time).
    pub(crate) fn nudge(&self) {
        self.woke.woken.store(true, Ordering::Relaxed);
    }

    /// A context to poll the side futures with, if one of them woke the task
    /// since they were last polled (`cx` is the task's).
    pub(crate) fn woken(&self, cx: &Context<'_>) -> Option<Context<'_>> {
        {
            let mut task = self.woke.task.lock().unwrap_or_else(|e| e.into_inner());
            if !task.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *task = Some(cx.waker().clone());
            }
        }
        self.woke
            .woken
            .swap(false, Ordering::AcqRel)
            .then(|| Context::from_waker(&self.waker))
    }
}

/// Completes when the stop flag turns true or its sender goes away.
pub(crate) async fn stopped(rx: &mut tokio::sync::watch::Receiver<bool>) {
    let done = rx.wait_for(|s| *s).await.is_ok();
    let _ = done;
}
