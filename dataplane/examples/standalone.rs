//! Runs the data plane alone from a JSON `DataplaneConfig` file.
//!
//! ```text
//! cargo run --release -p fulcrum-dataplane --example standalone -- [--workers N] config.json
//! ```
//!
//! Prints one line per listener (`listener <id> <protocol> <bound address>`,
//! or `listener <id> error <reason>`), then `ready`, and serves until SIGTERM
//! or SIGINT, when listeners stop accepting and the process exits with 0.
//! Exits with 1 when the file cannot be read or parsed, or a listener fails.
//!
//! `--workers N` sets the data plane's worker threads (default: available
//! cores), as the node's `[dataplane] workers` does; `apply` and the health
//! monitors run on a current-thread runtime of their own. The benchmark in
//! `bench/` runs it with `--workers 1` under `taskset -c 0`.

use std::num::NonZeroUsize;
use std::process::ExitCode;
use std::time::Duration;

use fulcrum_dataplane::{Dataplane, DataplaneConfig};
use tokio::signal::unix::{signal, SignalKind};

/// The allocator of the `fulcrum` binary (see node/src/main.rs), so the
/// benchmark measures what a node runs.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str = "usage: standalone [--workers N] CONFIG.json";

fn main() -> ExitCode {
    let mut workers = std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN);
    let mut path = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-w" | "--workers" => match args.next().and_then(|v| v.parse().ok()) {
                Some(n) => workers = n,
                None => {
                    eprintln!("--workers needs a positive number\n{USAGE}");
                    return ExitCode::from(2);
                }
            },
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            _ if path.is_none() && !arg.starts_with('-') => path = Some(arg),
            _ => {
                eprintln!("unexpected argument {arg:?}\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let Some(path) = path else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let config: DataplaneConfig = match std::fs::read(&path)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{path}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(run(config, workers));
    // The data plane (and its worker threads) is gone by now.
    runtime.shutdown_timeout(Duration::from_millis(100));
    code
}

async fn run(config: DataplaneConfig, workers: NonZeroUsize) -> ExitCode {
    let (mut term, mut int) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(t), Ok(i)) => (t, i),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let dataplane = match Dataplane::with_workers(workers, async move {
        let _ = stop_rx.await;
    }) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let protocols: Vec<(String, String)> = config
        .listeners
        .iter()
        .map(|l| (l.id.clone(), format!("{:?}", l.protocol).to_uppercase()))
        .collect();
    let mut ok = true;
    for result in dataplane.apply(config).await {
        let proto = protocols
            .iter()
            .find(|(id, _)| *id == result.listener_id)
            .map_or("?", |(_, p)| p.as_str());
        match (&result.outcome, dataplane.local_addr(&result.listener_id)) {
            (Ok(_), Some(addr)) => println!("listener {} {proto} {addr}", result.listener_id),
            (Ok(change), None) => println!("listener {} {change:?}", result.listener_id),
            (Err(e), _) => {
                ok = false;
                println!("listener {} error {e}", result.listener_id);
            }
        }
    }
    if !ok {
        let _ = stop_tx.send(());
        return ExitCode::FAILURE;
    }
    println!("ready");
    tokio::select! {
        _ = term.recv() => eprintln!("SIGTERM: stopping"),
        _ = int.recv() => eprintln!("SIGINT: stopping"),
    }
    let _ = stop_tx.send(());
    // Let the listeners stop accepting, then drop the data plane: its worker
    // threads end, cutting the connections still open (no drain here).
    tokio::time::sleep(Duration::from_millis(20)).await;
    drop(dataplane);
    ExitCode::SUCCESS
}
