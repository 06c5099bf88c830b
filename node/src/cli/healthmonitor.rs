//! `fulcrum loadbalancer healthmonitor create|list|show|set|unset|delete`.

use clap::builder::{PossibleValuesParser, TypedValueParser};
use fulcrum_proto::v1::{
    CreateHealthMonitorRequest, DeleteHealthMonitorRequest, GetHealthMonitorRequest, HealthMonitor,
    HealthMonitorCreate, HealthMonitorType, HealthMonitorUpdate, HttpMethod,
    ListHealthMonitorsRequest, OperatingStatus, ProvisioningStatus, UpdateHealthMonitorRequest,
};
use tonic::Status;

use super::collection::Collection;
use super::common::{fields_to_unset, unset_flags, AdminState, TagArgs, TagFilter, TagUnsetArgs};
use super::connection::{api, checked, Clients};
use super::emit_one;
use super::enums::{self, choices, enum_value};
use super::loadbalancer::LoadBalancers;
use super::output::{ListOutput, Record, ShowOutput};
use super::pool::Pools;
use super::value::Value;

/// Columns of `healthmonitor list`.
pub const LIST_COLUMNS: &[&str] = &["id", "name", "project_id", "type", "admin_state_up"];

/// `loadbalancer healthmonitor ...`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum HealthMonitorCommand {
    /// Create a health monitor.
    Create(CreateArgs),
    /// List health monitors.
    List(ListArgs),
    /// Show the details of a single health monitor.
    Show(ShowArgs),
    /// Update a health monitor.
    Set(SetArgs),
    /// Clear health monitor settings.
    Unset(UnsetArgs),
    /// Delete a health monitor.
    Delete(DeleteArgs),
}

fn http_versions() -> impl TypedValueParser<Value = f64> {
    PossibleValuesParser::new(["1.0", "1.1"]).map(|s| if s == "1.1" { 1.1 } else { 1.0 })
}

fn retries() -> impl TypedValueParser<Value = i32> {
    clap::value_parser!(i32).range(1..=10)
}

/// Options that `healthmonitor create` and `healthmonitor set` share.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct HealthMonitorOptions {
    /// Set the health monitor name.
    #[arg(long)]
    pub name: Option<String>,
    /// Set the domain name of the HTTP request sent by the health monitor (needs
    /// --http-version 1.1).
    #[arg(long, value_name = "domain_name")]
    pub domain_name: Option<String>,
    /// Set the list of HTTP status codes expected in response from the member to declare it
    /// healthy (200, 200,202 or 200-204).
    #[arg(long, value_name = "codes")]
    pub expected_codes: Option<String>,
    /// Set the HTTP method that the health monitor uses for requests.
    #[arg(long, value_parser = choices::<HttpMethod>(enums::HTTP_METHODS), ignore_case = true)]
    pub http_method: Option<HttpMethod>,
    /// Set the HTTP version.
    #[arg(long, value_parser = http_versions())]
    pub http_version: Option<f64>,
    /// Set the HTTP URL path of the request sent by the monitor to test the health of a backend
    /// member.
    #[arg(long, value_name = "url_path")]
    pub url_path: Option<String>,
    /// Set the number of allowed check failures before changing the operating status of the
    /// member to ERROR (1-10).
    #[arg(long, value_name = "max_retries_down", value_parser = retries())]
    pub max_retries_down: Option<i32>,
    #[command(flatten)]
    pub admin: AdminState,
    #[command(flatten)]
    pub tags: TagArgs,
    /// Wait for action to complete.
    #[arg(long)]
    pub wait: bool,
}

/// `healthmonitor create`.
#[derive(Debug, Clone, clap::Args)]
pub struct CreateArgs {
    /// Set the pool for the health monitor (name or ID).
    #[arg(value_name = "pool")]
    pub pool: String,
    /// Set the time in seconds, between sending probes to members.
    #[arg(long, required = true, value_name = "delay")]
    pub delay: Option<i32>,
    /// Set the maximum time, in seconds, that a monitor waits to connect before it times out.
    #[arg(long, required = true, value_name = "timeout")]
    pub timeout: Option<i32>,
    /// The number of successful checks before changing the operating status of the member to
    /// ONLINE (1-10).
    #[arg(long, required = true, value_name = "max_retries", value_parser = retries())]
    pub max_retries: Option<i32>,
    /// Set the health monitor type.
    #[arg(long = "type", required = true, value_parser = choices::<HealthMonitorType>(enums::HM_TYPES), ignore_case = true)]
    pub hm_type: Option<HealthMonitorType>,
    #[command(flatten)]
    pub opts: HealthMonitorOptions,
    #[command(flatten)]
    pub output: ShowOutput,
}

/// `healthmonitor list`.
#[derive(Debug, Clone, clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub tag_filter: TagFilter,
    #[command(flatten)]
    pub output: ListOutput,
}

/// `healthmonitor show`.
#[derive(Debug, Clone, clap::Args)]
pub struct ShowArgs {
    /// Name or ID of the health monitor to show.
    #[arg(value_name = "health_monitor")]
    pub health_monitor: String,
    #[command(flatten)]
    pub output: ShowOutput,
}

/// `healthmonitor set`.
#[derive(Debug, Clone, clap::Args)]
pub struct SetArgs {
    /// Health monitor to modify (name or ID).
    #[arg(value_name = "health_monitor")]
    pub health_monitor: String,
    /// Set the time in seconds, between sending probes to members.
    #[arg(long, value_name = "delay")]
    pub delay: Option<i32>,
    /// Set the maximum time, in seconds, that a monitor waits to connect before it times out.
    #[arg(long, value_name = "timeout")]
    pub timeout: Option<i32>,
    /// Set the number of successful checks before changing the operating status of the member
    /// to ONLINE (1-10).
    #[arg(long, value_name = "max_retries", value_parser = retries())]
    pub max_retries: Option<i32>,
    #[command(flatten)]
    pub opts: HealthMonitorOptions,
}

unset_flags! {
    /// What `healthmonitor unset` clears.
    UnsetFlags {
        /// Clear the health monitor domain name.
        domain_name => "domain_name",
        /// Reset the health monitor expected codes to the API default.
        expected_codes => "expected_codes",
        /// Reset the health monitor HTTP method to the API default.
        http_method => "http_method",
        /// Reset the health monitor HTTP version to the API default.
        http_version => "http_version",
        /// Reset the health monitor max retries down to the API default.
        max_retries_down => "max_retries_down",
        /// Clear the health monitor name.
        name => "name",
        /// Clear the health monitor URL path.
        url_path => "url_path",
    }
}

/// `healthmonitor unset`.
#[derive(Debug, Clone, clap::Args)]
pub struct UnsetArgs {
    /// Health monitor to update (name or ID).
    #[arg(value_name = "health_monitor")]
    pub health_monitor: String,
    #[command(flatten)]
    pub flags: UnsetFlags,
    #[command(flatten)]
    pub tags: TagUnsetArgs,
    /// Wait for action to complete.
    #[arg(long)]
    pub wait: bool,
}

/// `healthmonitor delete`.
#[derive(Debug, Clone, clap::Args)]
pub struct DeleteArgs {
    /// Health monitor to delete (name or ID).
    #[arg(value_name = "health_monitor")]
    pub health_monitor: String,
    /// Wait for action to complete.
    #[arg(long)]
    pub wait: bool,
}

/// Every health monitor.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HealthMonitors;

impl Collection for HealthMonitors {
    type Item = HealthMonitor;
    type List = ListHealthMonitorsRequest;
    type Update = HealthMonitorUpdate;
    const KIND: &'static str = "health monitor";

    async fn get(&self, c: &Clients, id: &str) -> Result<HealthMonitor, Status> {
        let req = GetHealthMonitorRequest {
            healthmonitor_id: id.to_string(),
        };
        Ok(c.hm.clone().get_health_monitor(req).await?.into_inner())
    }

    async fn page(
        &self,
        c: &Clients,
        req: ListHealthMonitorsRequest,
    ) -> Result<(Vec<HealthMonitor>, String), Status> {
        let r = c.hm.clone().list_health_monitors(req).await?.into_inner();
        Ok((r.healthmonitors, r.next_marker))
    }

    async fn update(
        &self,
        c: &Clients,
        id: &str,
        update: HealthMonitorUpdate,
        unset: Vec<String>,
    ) -> Result<(), Status> {
        let req = UpdateHealthMonitorRequest {
            healthmonitor_id: id.to_string(),
            healthmonitor: Some(update),
            unset,
        };
        c.hm.clone().update_health_monitor(req).await.map(drop)
    }
}

/// The fields `healthmonitor show` prints, in octaviaclient's order.
pub fn record(h: &HealthMonitor) -> Record {
    vec![
        ("project_id", Value::str(&h.project_id)),
        ("name", Value::str(&h.name)),
        ("admin_state_up", Value::Bool(h.admin_state_up)),
        ("pools", Value::id_list_of(&h.pool_id)),
        ("created_at", Value::opt_str(&h.created_at)),
        (
            "provisioning_status",
            enum_value::<ProvisioningStatus>(h.provisioning_status),
        ),
        ("updated_at", Value::opt_str(&h.updated_at)),
        ("delay", Value::Int(h.delay.into())),
        ("expected_codes", Value::opt_str(&h.expected_codes)),
        ("max_retries", Value::Int(h.max_retries.into())),
        ("http_method", enum_value::<HttpMethod>(h.http_method)),
        ("timeout", Value::Int(h.timeout.into())),
        ("max_retries_down", Value::Int(h.max_retries_down.into())),
        ("url_path", Value::opt_str(&h.url_path)),
        ("type", enum_value::<HealthMonitorType>(h.r#type)),
        ("id", Value::str(&h.id)),
        (
            "operating_status",
            enum_value::<OperatingStatus>(h.operating_status),
        ),
        (
            "http_version",
            if h.http_version == 0.0 {
                Value::Null
            } else {
                Value::Float(h.http_version)
            },
        ),
        ("domain_name", Value::opt_str(&h.domain_name)),
        ("tags", Value::Lines(h.tags.clone())),
    ]
}

/// Runs one health monitor command.
pub async fn run(c: &Clients, cmd: HealthMonitorCommand) -> anyhow::Result<()> {
    match cmd {
        HealthMonitorCommand::Create(a) => create(c, a).await,
        HealthMonitorCommand::List(a) => {
            let req = HealthMonitors.scope();
            HealthMonitors
                .print_list(c, req, &a.tag_filter, LIST_COLUMNS, record, &a.output)
                .await
        }
        HealthMonitorCommand::Show(a) => {
            let h = HealthMonitors.find(c, &a.health_monitor).await?;
            emit_one(&record(&h), &a.output)
        }
        HealthMonitorCommand::Set(a) => {
            let o = &a.opts;
            let h = HealthMonitors.find(c, &a.health_monitor).await?;
            let update = HealthMonitorUpdate {
                name: o.name.clone(),
                admin_state_up: o.admin.value(),
                delay: a.delay,
                timeout: a.timeout,
                max_retries: a.max_retries,
                max_retries_down: o.max_retries_down,
                http_method: o.http_method.map_or(0, |m| m as i32),
                url_path: o.url_path.clone(),
                expected_codes: o.expected_codes.clone(),
                http_version: o.http_version,
                domain_name: o.domain_name.clone(),
                tags: o.tags.for_set(&h.tags),
            };
            HealthMonitors
                .update_and_wait(c, &h.id, update, vec![], o.wait)
                .await
        }
        HealthMonitorCommand::Unset(a) => {
            let Some(fields) = fields_to_unset(a.flags.fields(), &a.tags) else {
                return Ok(());
            };
            let h = HealthMonitors.find(c, &a.health_monitor).await?;
            HealthMonitors.unset(c, &h, fields, &a.tags, a.wait).await
        }
        HealthMonitorCommand::Delete(a) => {
            let h = HealthMonitors.find(c, &a.health_monitor).await?;
            let req = DeleteHealthMonitorRequest {
                healthmonitor_id: h.id.clone(),
            };
            HealthMonitors
                .delete_and_wait(c, &h.id, c.hm.clone().delete_health_monitor(req), a.wait)
                .await
        }
    }
}

async fn create(c: &Clients, a: CreateArgs) -> anyhow::Result<()> {
    let o = &a.opts;
    let p = Pools.find(c, &a.pool).await?;
    let create = HealthMonitorCreate {
        pool_id: p.id.clone(),
        r#type: a.hm_type.map_or(0, |t| t as i32),
        delay: a.delay.unwrap_or_default(),
        timeout: a.timeout.unwrap_or_default(),
        max_retries: a.max_retries.unwrap_or_default(),
        max_retries_down: o.max_retries_down,
        http_method: o.http_method.map_or(0, |m| m as i32),
        url_path: o.url_path.clone().unwrap_or_default(),
        expected_codes: o.expected_codes.clone().unwrap_or_default(),
        http_version: o.http_version,
        domain_name: o.domain_name.clone().unwrap_or_default(),
        name: o.name.clone().unwrap_or_default(),
        admin_state_up: o.admin.value(),
        tags: o.tags.for_create(),
        project_id: String::new(),
    };
    let req = CreateHealthMonitorRequest {
        healthmonitor: Some(create),
    };
    let mut h = api(c.hm.clone().create_health_monitor(req).await)?;
    if o.wait {
        LoadBalancers.wait_active(c, &p.loadbalancer_id).await?;
        h = checked(HealthMonitors.get(c, &h.id).await)?;
    }
    emit_one(&record(&h), &a.output)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_prints_type_with_hyphen_and_version_as_float() {
        let h = HealthMonitor {
            id: "h".into(),
            pool_id: "p".into(),
            r#type: HealthMonitorType::TlsHello as i32,
            http_version: 1.1,
            ..Default::default()
        };
        let r = record(&h);
        let get = |k: &str| r.iter().find(|(n, _)| *n == k).unwrap().1.clone();
        assert_eq!(get("type"), Value::str("TLS-HELLO"));
        assert_eq!(get("http_version").human(), "1.1");
        assert_eq!(get("http_method"), Value::Null);
        assert_eq!(get("pools").human(), "p");
        assert_eq!(r.len(), 20);
    }
}
