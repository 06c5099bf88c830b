//! `fulcrum loadbalancer quota list|show|defaults show|set|unset|reset`.

use fulcrum_proto::v1::{
    DeleteQuotaRequest, GetQuotaDefaultsRequest, GetQuotaRequest, ListQuotasRequest, Quota,
    UpdateQuotaRequest,
};

use super::common::unset_flags;
use super::connection::{api, Clients};
use super::output::{ListOutput, Record, ShowOutput};
use super::value::Value;
use super::{emit_list, emit_one};

/// Columns of `quota list`.
pub const LIST_COLUMNS: &[&str] = &[
    "project_id",
    "load_balancer",
    "listener",
    "pool",
    "health_monitor",
    "member",
    "l7policy",
    "l7rule",
];

/// `loadbalancer quota ...`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum QuotaCommand {
    /// List quotas.
    List(ListArgs),
    /// Show the quota details for a project.
    Show(ShowArgs),
    /// Quota defaults.
    #[command(subcommand)]
    Defaults(DefaultsCommand),
    /// Update a quota.
    Set(SetArgs),
    /// Clear quota settings.
    Unset(UnsetArgs),
    /// Resets quotas to default quotas.
    Reset {
        /// Project to reset quotas (name or ID).
        #[arg(value_name = "project")]
        project: String,
    },
}

/// `quota defaults ...`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum DefaultsCommand {
    /// Show quota defaults.
    Show {
        #[command(flatten)]
        output: ShowOutput,
    },
}

/// `quota list`.
#[derive(Debug, Clone, clap::Args)]
pub struct ListArgs {
    /// Name or ID of the project.
    #[arg(long, value_name = "project-id")]
    pub project: Option<String>,
    #[command(flatten)]
    pub output: ListOutput,
}

/// `quota show`.
#[derive(Debug, Clone, clap::Args)]
pub struct ShowArgs {
    /// Name or ID of the project.
    #[arg(value_name = "project")]
    pub project: String,
    #[command(flatten)]
    pub output: ShowOutput,
}

/// `quota set`.
#[derive(Debug, Clone, clap::Args)]
pub struct SetArgs {
    /// Name or ID of the project.
    #[arg(value_name = "project")]
    pub project: String,
    /// New value for the health monitor quota. Value -1 means unlimited.
    #[arg(long, value_name = "health_monitor", allow_negative_numbers = true)]
    pub healthmonitor: Option<i32>,
    /// New value for the listener quota. Value -1 means unlimited.
    #[arg(long, value_name = "listener", allow_negative_numbers = true)]
    pub listener: Option<i32>,
    /// New value for the load balancer quota limit. Value -1 means unlimited.
    #[arg(long, value_name = "load_balancer", allow_negative_numbers = true)]
    pub loadbalancer: Option<i32>,
    /// New value for the member quota limit. Value -1 means unlimited.
    #[arg(long, value_name = "member", allow_negative_numbers = true)]
    pub member: Option<i32>,
    /// New value for the pool quota limit. Value -1 means unlimited.
    #[arg(long, value_name = "pool", allow_negative_numbers = true)]
    pub pool: Option<i32>,
    /// New value for the l7policy quota limit. Value -1 means unlimited.
    #[arg(long, value_name = "l7policy", allow_negative_numbers = true)]
    pub l7policy: Option<i32>,
    /// New value for the l7rule quota limit. Value -1 means unlimited.
    #[arg(long, value_name = "l7rule", allow_negative_numbers = true)]
    pub l7rule: Option<i32>,
    #[command(flatten)]
    pub output: ShowOutput,
}

unset_flags! {
    /// What `quota unset` resets to the default.
    UnsetFlags {
        /// Reset the load balancer quota to the default.
        loadbalancer => "loadbalancer",
        /// Reset the listener quota to the default.
        listener => "listener",
        /// Reset the pool quota to the default.
        pool => "pool",
        /// Reset the member quota to the default.
        member => "member",
        /// Reset the health monitor quota to the default.
        healthmonitor => "healthmonitor",
        /// Reset the l7policy quota to the default.
        l7policy => "l7policy",
        /// Reset the l7rule quota to the default.
        l7rule => "l7rule",
    }
}

/// `quota unset`.
#[derive(Debug, Clone, clap::Args)]
pub struct UnsetArgs {
    /// Name or ID of the project.
    #[arg(value_name = "project")]
    pub project: String,
    #[command(flatten)]
    pub flags: UnsetFlags,
}

/// The rows of `quota show` with Octavia's names (`None` = the deployment default applies).
pub fn record(q: &Quota) -> Record {
    vec![
        ("load_balancer", Value::opt_int(q.loadbalancer)),
        ("listener", Value::opt_int(q.listener)),
        ("pool", Value::opt_int(q.pool)),
        ("health_monitor", Value::opt_int(q.healthmonitor)),
        ("member", Value::opt_int(q.member)),
        ("l7policy", Value::opt_int(q.l7policy)),
        ("l7rule", Value::opt_int(q.l7rule)),
    ]
}

fn list_record(q: &Quota) -> Record {
    let mut r = vec![("project_id", Value::str(&q.project_id))];
    r.extend(record(q));
    r
}

impl SetArgs {
    fn quota(&self) -> anyhow::Result<Quota> {
        let q = Quota {
            project_id: self.project.clone(),
            loadbalancer: self.loadbalancer,
            listener: self.listener,
            pool: self.pool,
            healthmonitor: self.healthmonitor,
            member: self.member,
            l7policy: self.l7policy,
            l7rule: self.l7rule,
        };
        if q == (Quota {
            project_id: self.project.clone(),
            ..Default::default()
        }) {
            anyhow::bail!(
                "Missing required argument. Requires at least one of: --healthmonitor, --listener, --loadbalancer, --member, --pool, --l7policy, --l7rule"
            );
        }
        Ok(q)
    }
}

/// Runs one quota command.
pub async fn run(c: &Clients, cmd: QuotaCommand) -> anyhow::Result<()> {
    let mut cl = c.quota.clone();
    match cmd {
        QuotaCommand::List(a) => {
            let req = ListQuotasRequest {
                project_id: a.project.clone().unwrap_or_default(),
            };
            let quotas = api(cl.list_quotas(req).await)?.quotas;
            let records: Vec<Record> = quotas.iter().map(list_record).collect();
            emit_list(LIST_COLUMNS, &records, &a.output)
        }
        QuotaCommand::Show(a) => {
            let req = GetQuotaRequest {
                project_id: a.project.clone(),
            };
            let q = api(cl.get_quota(req).await)?.quota.unwrap_or_default();
            emit_one(&record(&q), &a.output)
        }
        QuotaCommand::Defaults(DefaultsCommand::Show { output }) => {
            let q = api(cl.get_quota_defaults(GetQuotaDefaultsRequest {}).await)?;
            emit_one(&record(&q), &output)
        }
        QuotaCommand::Set(a) => {
            let req = UpdateQuotaRequest {
                project_id: a.project.clone(),
                quota: Some(a.quota()?),
                unset: vec![],
            };
            let q = api(cl.update_quota(req).await)?;
            emit_one(&record(&q), &a.output)
        }
        QuotaCommand::Unset(a) => {
            let fields = a.flags.fields();
            if fields.is_empty() {
                return Ok(());
            }
            let req = UpdateQuotaRequest {
                project_id: a.project.clone(),
                quota: None,
                unset: fields,
            };
            api(cl.update_quota(req).await)?;
            Ok(())
        }
        QuotaCommand::Reset { project } => {
            api(cl
                .delete_quota(DeleteQuotaRequest {
                    project_id: project,
                })
                .await)?;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_needs_a_limit_and_maps_flags() {
        let mut a = SetArgs {
            project: "p1".into(),
            healthmonitor: None,
            listener: None,
            loadbalancer: None,
            member: None,
            pool: None,
            l7policy: None,
            l7rule: None,
            output: ShowOutput::default(),
        };
        assert!(a
            .quota()
            .unwrap_err()
            .to_string()
            .starts_with("Missing required argument"));
        a.loadbalancer = Some(-1);
        a.l7rule = Some(5);
        let q = a.quota().unwrap();
        assert_eq!(
            (q.loadbalancer, q.l7rule, q.pool),
            (Some(-1), Some(5), None)
        );
        let r = record(&q);
        assert_eq!(r[0], ("load_balancer", Value::Int(-1)));
        assert_eq!(r[2], ("pool", Value::Null));
    }
}
