//! Waiting: timeouts, the timer an HTTP/1 connection reuses request after
//! request, the stop signal, and the waker that has a connection's rarely
//! completing side futures polled only when they woke its task.

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

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
