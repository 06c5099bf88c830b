//! The threads that carry the data plane's traffic: each runs a
//! current-thread tokio runtime of its own.
//!
//! Every listener has one socket per worker (an `SO_REUSEPORT` group, so the
//! kernel spreads new connections, and UDP clients, over them), and a
//! connection (or UDP flow) lives on the worker that accepted it: its task,
//! its timers and the member connections it opens stay on one thread, with no
//! work stealing and no wake-ups handed across threads. Health monitors, the
//! idle-connection reaper and `apply` itself run on the caller's runtime.

use std::cell::Cell;
use std::future::Future;
use std::num::NonZeroUsize;

use tokio::runtime::{Builder, EnterGuard, Handle};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The worker threads of one data plane. Dropping it ends them: the tasks
/// still running on them (draining connections) are dropped, which closes
/// their sockets.
pub(crate) struct Workers {
    handles: Vec<Handle>,
    /// One per thread; dropping a sender lets its thread's runtime end.
    _exit: Vec<oneshot::Sender<()>>,
}

impl Workers {
    /// Starts `count` worker threads, named `fulcrum-dp-N`.
    pub(crate) fn start(count: NonZeroUsize) -> std::io::Result<Self> {
        let mut handles = Vec::with_capacity(count.get());
        let mut exit = Vec::with_capacity(count.get());
        for index in 0..count.get() {
            let (tx, rx) = oneshot::channel::<()>();
            let (handle_tx, handle_rx) = std::sync::mpsc::sync_channel(1);
            // The runtime is built and dropped on its own thread: a runtime
            // dropped on the caller's (async) thread would panic.
            std::thread::Builder::new()
                .name(format!("fulcrum-dp-{index}"))
                .spawn(move || {
                    INDEX.set(index);
                    match Builder::new_current_thread().enable_all().build() {
                        Ok(runtime) => {
                            if handle_tx.send(Ok(runtime.handle().clone())).is_ok() {
                                // Ends when the sender is dropped (or sends);
                                // dropping the runtime then drops the tasks
                                // left on it.
                                let _ = runtime.block_on(rx);
                            }
                        }
                        Err(e) => {
                            let _ = handle_tx.send(Err(e));
                        }
                    }
                })?;
            let handle = handle_rx
                .recv()
                .map_err(|_| std::io::Error::other("a worker thread ended while starting"))??;
            handles.push(handle);
            exit.push(tx);
        }
        Ok(Self {
            handles,
            _exit: exit,
        })
    }

    /// How many workers there are.
    pub(crate) fn count(&self) -> usize {
        self.handles.len()
    }

    /// Makes worker `index` (modulo the count) the runtime that sockets and
    /// timers created while the guard lives register with.
    pub(crate) fn enter(&self, index: usize) -> EnterGuard<'_> {
        self.handles[index % self.handles.len()].enter()
    }

    /// Runs `task` on worker `index` (modulo the count).
    pub(crate) fn spawn<F>(&self, index: usize, task: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handles[index % self.handles.len()].spawn(task)
    }
}

thread_local! {
    /// The index of the worker this thread is; 0 on other threads.
    static INDEX: Cell<usize> = const { Cell::new(0) };
}

/// The index of the worker the caller runs on (0 off the workers): for state
/// kept per worker, such as members' idle connections.
pub(crate) fn current() -> usize {
    INDEX.get()
}

/// The number of data plane worker threads when none is asked for: one per
/// core this process may run on.
pub fn default_count() -> NonZeroUsize {
    std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `/proc/<pid>/task/<tid>` of the calling thread.
    fn thread_dir() -> std::path::PathBuf {
        std::path::Path::new("/proc").join(std::fs::read_link("/proc/thread-self").unwrap())
    }

    #[tokio::test]
    async fn tasks_run_on_the_worker_asked_for_and_the_threads_end_with_the_workers() {
        let workers = Workers::start(NonZeroUsize::new(2).unwrap()).unwrap();
        assert_eq!(workers.count(), 2);
        let mut dirs = Vec::new();
        for index in 0..4 {
            let (name, current, dir) = workers
                .spawn(index, async {
                    let name = std::thread::current().name().map(str::to_owned);
                    (name, current(), thread_dir())
                })
                .await
                .unwrap();
            let expected = format!("fulcrum-dp-{}", index % 2);
            assert_eq!(name.as_deref(), Some(expected.as_str()));
            assert_eq!(current, index % 2);
            dirs.push(dir);
        }
        assert_eq!(dirs[0], dirs[2]);
        assert_ne!(dirs[0], dirs[1]);
        assert!(dirs.iter().all(|d| d.exists()));

        // A task still running when the workers go is dropped with them.
        let (dropped_tx, dropped_rx) = oneshot::channel::<()>();
        workers.spawn(0, async move {
            let _tell = dropped_tx;
            std::future::pending::<()>().await
        });
        drop(workers);
        let dropped = tokio::time::timeout(std::time::Duration::from_secs(5), dropped_rx).await;
        assert!(
            matches!(dropped, Ok(Err(_))),
            "the pending task was dropped"
        );
        for _ in 0..100 {
            if !dirs.iter().any(|d| d.exists()) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("worker threads still running: {dirs:?}");
    }
}
