//! The `fulcrum` admin CLI: `fulcrum loadbalancer ...` mirrors `openstack loadbalancer ...`
//! (python-octaviaclient) verb for verb and option for option, with cliff's output formats;
//! `fulcrum cluster ...` manages the Raft membership.
//!
//! Deliberate differences from octaviaclient: `--wait` polls every second (not three) and gives
//! up after ten minutes; names are resolved against Fulcrum only (no Keystone or Neutron, so
//! `--project`, `--vip-subnet-id`, `--flavor` are passed through as given); health monitor
//! `--max-retries`/`--max-retries-down` accept 1-10 as the API does (octaviaclient: 1-9).

mod cluster;
mod collection;
mod common;
mod connection;
mod enums;
mod healthmonitor;
mod l7policy;
mod l7rule;
mod listener;
mod loadbalancer;
mod member;
mod output;
mod pool;
mod quota;
mod resolve;
mod value;

#[cfg(test)]
mod tests;

pub use cluster::ClusterCommand;
pub use connection::{CliConfigFile, ConnectionArgs};

use std::io::Write as _;

use connection::Clients;
use output::{ListOutput, Record, ShowOutput};

/// Everything under `fulcrum loadbalancer ...`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum LoadBalancerCommand {
    /// Create a load balancer.
    Create(Box<loadbalancer::CreateArgs>),
    /// List load balancers.
    List(Box<loadbalancer::ListArgs>),
    /// Show the details for a single load balancer.
    Show(Box<loadbalancer::ShowArgs>),
    /// Update a load balancer.
    Set(Box<loadbalancer::SetArgs>),
    /// Clear load balancer settings.
    Unset(Box<loadbalancer::UnsetArgs>),
    /// Delete a load balancer.
    Delete(Box<loadbalancer::DeleteArgs>),
    /// Trigger load balancer failover (move its VIP to another node).
    Failover(Box<loadbalancer::FailoverArgs>),
    /// Load balancer status tree.
    #[command(subcommand)]
    Status(Box<loadbalancer::StatusCommand>),
    /// Load balancer statistics.
    #[command(subcommand)]
    Stats(Box<loadbalancer::StatsCommand>),
    /// Listeners.
    #[command(subcommand)]
    Listener(Box<listener::ListenerCommand>),
    /// Pools.
    #[command(subcommand)]
    Pool(Box<pool::PoolCommand>),
    /// Pool members.
    #[command(subcommand)]
    Member(Box<member::MemberCommand>),
    /// Health monitors.
    #[command(subcommand, name = "healthmonitor")]
    Healthmonitor(Box<healthmonitor::HealthMonitorCommand>),
    /// L7 policies.
    #[command(subcommand, name = "l7policy")]
    L7policy(Box<l7policy::L7PolicyCommand>),
    /// L7 rules.
    #[command(subcommand, name = "l7rule")]
    L7rule(Box<l7rule::L7RuleCommand>),
    /// Quotas.
    #[command(subcommand)]
    Quota(Box<quota::QuotaCommand>),
}

/// Runs one `fulcrum loadbalancer ...` command.
pub async fn run_loadbalancer(
    conn: &ConnectionArgs,
    cmd: LoadBalancerCommand,
) -> anyhow::Result<()> {
    let c = &Clients::connect(conn).await?;
    use LoadBalancerCommand as C;
    match cmd {
        C::Create(a) => loadbalancer::create(c, *a).await,
        C::List(a) => loadbalancer::list_cmd(c, *a).await,
        C::Show(a) => loadbalancer::show(c, *a).await,
        C::Set(a) => loadbalancer::set(c, *a).await,
        C::Unset(a) => loadbalancer::unset(c, *a).await,
        C::Delete(a) => loadbalancer::delete(c, *a).await,
        C::Failover(a) => loadbalancer::failover(c, *a).await,
        C::Status(s) => {
            let loadbalancer::StatusCommand::Show { loadbalancer } = *s;
            loadbalancer::status_show(c, &loadbalancer).await
        }
        C::Stats(s) => {
            let loadbalancer::StatsCommand::Show(a) = *s;
            loadbalancer::stats_show(c, a).await
        }
        C::Listener(cmd) => listener::run(c, *cmd).await,
        C::Pool(cmd) => pool::run(c, *cmd).await,
        C::Member(cmd) => member::run(c, *cmd).await,
        C::Healthmonitor(cmd) => healthmonitor::run(c, *cmd).await,
        C::L7policy(cmd) => l7policy::run(c, *cmd).await,
        C::L7rule(cmd) => l7rule::run(c, *cmd).await,
        C::Quota(cmd) => quota::run(c, *cmd).await,
    }
}

/// Runs one `fulcrum cluster ...` command.
pub async fn run_cluster(conn: &ConnectionArgs, cmd: ClusterCommand) -> anyhow::Result<()> {
    let c = Clients::connect(conn).await?;
    cluster::run(&c, cmd).await
}

/// Prints one object as the output options ask.
fn emit_one(record: &Record, opts: &ShowOutput) -> anyhow::Result<()> {
    write_stdout(&output::render_one(record, opts)?)
}

/// Prints a list of objects with the given columns.
fn emit_list(columns: &[&str], records: &[Record], opts: &ListOutput) -> anyhow::Result<()> {
    write_stdout(&output::render_list(columns, records, opts)?)
}

fn write_stdout(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        // `fulcrum ... | head` is fine.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}
