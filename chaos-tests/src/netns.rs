//! Network namespaces from the test process: `ip` commands, and a thread living inside a
//! namespace that runs a tokio runtime, so sockets opened by its tasks belong to that namespace.

use std::fs::File;
use std::future::Future;
use std::process::{Command, Output, Stdio};
use std::thread::JoinHandle;

use nix::sched::{setns, CloneFlags};
use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// Where `ip netns add` puts the namespace handles.
pub const NETNS_DIR: &str = "/var/run/netns";

/// Runs `ip <args>`; an error carries the command line and its stderr.
pub fn ip(args: &[&str]) -> Result<(), String> {
    let out = ip_output(args)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Runs `ip <args>` and returns its whole output whatever the exit status.
pub fn ip_output(args: &[&str]) -> Result<Output, String> {
    Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run `ip {}`: {e}", args.join(" ")))
}

/// Runs `ip <args>` and returns its stdout, failing on a non-zero exit.
pub fn ip_stdout(args: &[&str]) -> Result<String, String> {
    let out = ip_output(args)?;
    if !out.status.success() {
        return Err(format!(
            "`ip {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Opens a named namespace's handle (`/var/run/netns/<name>`).
fn open_netns(name: &str) -> std::io::Result<File> {
    File::open(format!("{NETNS_DIR}/{name}"))
}

/// Moves the calling OS thread into the named network namespace. Sockets the thread opens
/// afterwards live there; threads it spawns inherit the namespace.
pub fn enter_netns(name: &str) -> std::io::Result<()> {
    let handle = open_netns(name)?;
    setns(&handle, CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)
}

/// A dedicated OS thread inside a network namespace that owns a current-thread tokio
/// runtime. Futures handed to [`NetnsRuntime::run`] or [`NetnsRuntime::spawn`] run on that
/// thread, so every socket they open (gRPC channels included) is in the namespace: the
/// test talks to the lab like a client on a separate host.
///
/// Cloning shares the thread; it stops when the last clone is dropped.
#[derive(Clone)]
pub struct NetnsRuntime {
    handle: Handle,
    _thread: std::sync::Arc<ThreadGuard>,
}

struct ThreadGuard {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for ThreadGuard {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            // Never join from the runtime's own thread (the last clone may be dropped there).
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
    }
}

impl NetnsRuntime {
    /// Starts the thread, enters `netns` and builds the runtime.
    pub fn start(netns: &str) -> Result<NetnsRuntime, String> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let name = netns.to_string();
        let thread = std::thread::Builder::new()
            .name(format!("netns-{netns}"))
            .spawn(move || {
                let built = enter_netns(&name)
                    .map_err(|e| format!("setns into {name}: {e}"))
                    .and_then(|()| {
                        tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()
                            .map_err(|e| format!("runtime in {name}: {e}"))
                    });
                match built {
                    Ok(rt) => {
                        let _ = ready_tx.send(Ok(rt.handle().clone()));
                        rt.block_on(async {
                            let _ = stop_rx.await;
                        });
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            })
            .map_err(|e| format!("spawn netns thread: {e}"))?;
        let handle = ready_rx
            .recv()
            .map_err(|_| "netns thread died before it was ready".to_string())??;
        Ok(NetnsRuntime {
            handle,
            _thread: std::sync::Arc::new(ThreadGuard {
                stop: Some(stop_tx),
                thread: Some(thread),
            }),
        })
    }

    /// Spawns a task on the namespace's thread.
    pub fn spawn<F>(&self, fut: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(fut)
    }

    /// Runs a future on the namespace's thread and waits for its output (from any runtime).
    pub async fn run<F>(&self, fut: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match self.handle.spawn(fut).await {
            Ok(v) => v,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("task in network namespace cancelled: {e}"),
        }
    }
}
