//! The `fulcrum` binary: node daemon (`serve`, `dev`) and the admin CLI.

mod cli;
mod config;
mod dev;
mod metrics;
mod ownership;
mod reconcile;
mod replica;
mod server;
mod translate;
mod vip;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio::sync::watch;

/// Fulcrum: load balancers as a service (Octavia's model, Raft-replicated).
#[derive(Debug, Parser)]
#[command(name = "fulcrum", version, about)]
struct Cli {
    #[command(flatten)]
    connection: cli::ConnectionArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a node from a config file.
    Serve {
        /// The node's config file (TOML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run a single-node Fulcrum with everything embedded (data in ./.fulcrum-dev).
    Dev(dev::DevArgs),
    /// Manage load balancers, listeners, pools, members, monitors, L7 policies and rules, quotas.
    #[command(subcommand)]
    Loadbalancer(cli::LoadBalancerCommand),
    /// Inspect and change the Raft cluster.
    #[command(subcommand)]
    Cluster(cli::ClusterCommand),
    /// Token utilities.
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Print the SHA-256 digest of a token, for the `tokens` section of a node config.
    Hash { token: String },
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FULCRUM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// A shutdown signal raised by SIGINT or SIGTERM.
fn shutdown_on_signals() -> anyhow::Result<watch::Receiver<bool>> {
    use tokio::signal::unix::{signal, SignalKind};
    let (tx, rx) = watch::channel(false);
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("shutting down");
        let _ = tx.send(true);
    });
    Ok(rx)
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve { config } => {
            init_logging();
            let config = config::NodeConfig::load(&config)?;
            server::run(config, shutdown_on_signals()?).await
        }
        Command::Dev(args) => {
            init_logging();
            let (config_path, token) = dev::prepare(&args)?;
            let config = config::NodeConfig::load(&config_path)?;
            println!(
                "Fulcrum dev node: admin API on {} (data in {})",
                args.admin_listen,
                args.data_dir.display()
            );
            println!("Admin token: {token}");
            if !args.no_cli_config {
                println!(
                    "CLI configured in {}: try `fulcrum loadbalancer list`",
                    cli::CliConfigFile::default_path().display()
                );
            }
            server::run(config, shutdown_on_signals()?).await
        }
        Command::Loadbalancer(cmd) => cli::run_loadbalancer(&cli.connection, cmd).await,
        Command::Cluster(cmd) => cli::run_cluster(&cli.connection, cmd).await,
        Command::Token(TokenCommand::Hash { token }) => {
            println!("{}", fulcrum_control::api::hash_token(&token));
            Ok(())
        }
    }
}

/// mimalloc instead of glibc's allocator: the data plane allocates and frees
/// a few KiB per client connection (task, hyper's buffers), where glibc's
/// malloc consolidates its fast bins on every such allocation. bench: 5 %
/// less CPU per `Connection: close` request.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("Error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
