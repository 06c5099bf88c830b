//! `fulcrum loadbalancer create|list|show|set|unset|delete|failover|status show|stats show`.

use fulcrum_proto::v1::{
    CreateLoadBalancerRequest, DeleteLoadBalancerRequest, FailoverLoadBalancerRequest,
    GetLoadBalancerRequest, GetLoadBalancerStatsRequest, GetLoadBalancerStatusTreeRequest,
    HealthMonitorType, ListLoadBalancersRequest, ListOptions, LoadBalancer, LoadBalancerCreate,
    LoadBalancerStatus, LoadBalancerUpdate, OperatingStatus, ProvisioningStatus, Stats,
    UpdateLoadBalancerRequest,
};
use tonic::Status;

use super::collection::Collection;
use super::common::{
    fields_to_unset, is_none_word, unset_flags, AdminState, TagArgs, TagFilter, TagUnsetArgs,
};
use super::connection::{api, checked, Clients};
use super::enums::{self, choices, enum_value};
use super::output::{ListOutput, Record, ShowOutput};
use super::value::{self, Value};
use super::{emit_list, emit_one};

/// Columns of `loadbalancer list`.
pub const LIST_COLUMNS: &[&str] = &[
    "id",
    "name",
    "project_id",
    "vip_address",
    "provisioning_status",
    "operating_status",
    "provider",
];

/// `loadbalancer create`.
#[derive(Debug, Clone, clap::Args)]
pub struct CreateArgs {
    /// New load balancer name.
    #[arg(long)]
    pub name: Option<String>,
    /// Set load balancer description.
    #[arg(long)]
    pub description: Option<String>,
    /// Set the VIP IP Address.
    #[arg(long)]
    pub vip_address: Option<String>,
    /// Set Port for the load balancer.
    #[arg(long)]
    pub vip_port_id: Option<String>,
    /// Set subnet (VIP address pool) for the load balancer.
    #[arg(long)]
    pub vip_subnet_id: Option<String>,
    /// Set network for the load balancer.
    #[arg(long)]
    pub vip_network_id: Option<String>,
    /// Set QoS policy ID for VIP port.
    #[arg(long)]
    pub vip_qos_policy_id: Option<String>,
    /// Project for the load balancer (admins only).
    #[arg(long)]
    pub project: Option<String>,
    /// Provider name for the load balancer.
    #[arg(long)]
    pub provider: Option<String>,
    /// Availability zone for the load balancer.
    #[arg(long)]
    pub availability_zone: Option<String>,
    /// The flavor for the load balancer.
    #[arg(long)]
    pub flavor: Option<String>,
    #[command(flatten)]
    pub admin: AdminState,
    #[command(flatten)]
    pub tags: TagArgs,
    /// Wait for action to complete.
    #[arg(long)]
    pub wait: bool,
    #[command(flatten)]
    pub output: ShowOutput,
}

/// `loadbalancer list`.
#[derive(Debug, Clone, clap::Args)]
pub struct ListArgs {
    /// List load balancers according to their name.
    #[arg(long)]
    pub name: Option<String>,
    #[command(flatten)]
    pub admin: AdminState,
    /// List load balancers according to their project.
    #[arg(long)]
    pub project: Option<String>,
    /// List load balancers according to their VIP address.
    #[arg(long)]
    pub vip_address: Option<String>,
    /// List load balancers according to their VIP network.
    #[arg(long)]
    pub vip_network_id: Option<String>,
    /// List load balancers according to their VIP subnet.
    #[arg(long)]
    pub vip_subnet_id: Option<String>,
    /// List load balancers according to their VIP QoS policy.
    #[arg(long)]
    pub vip_qos_policy_id: Option<String>,
    /// List load balancers according to their VIP port.
    #[arg(long)]
    pub vip_port_id: Option<String>,
    /// List load balancers according to their provisioning status.
    #[arg(long, value_parser = choices::<ProvisioningStatus>(enums::PROVISIONING_STATUSES), ignore_case = true)]
    pub provisioning_status: Option<ProvisioningStatus>,
    /// List load balancers according to their operating status.
    #[arg(long, value_parser = choices::<OperatingStatus>(enums::OPERATING_STATUSES), ignore_case = true)]
    pub operating_status: Option<OperatingStatus>,
    /// List load balancers according to their provider.
    #[arg(long)]
    pub provider: Option<String>,
    /// List load balancers according to their flavor.
    #[arg(long)]
    pub flavor: Option<String>,
    /// List load balancers according to their availability zone.
    #[arg(long)]
    pub availability_zone: Option<String>,
    #[command(flatten)]
    pub tag_filter: TagFilter,
    #[command(flatten)]
    pub output: ListOutput,
}

/// A command taking one load balancer and printing it.
#[derive(Debug, Clone, clap::Args)]
pub struct ShowArgs {
    /// Name or ID of the load balancer.
    #[arg(value_name = "load_balancer")]
    pub loadbalancer: String,
    #[command(flatten)]
    pub output: ShowOutput,
}

/// `loadbalancer set`.
#[derive(Debug, Clone, clap::Args)]
pub struct SetArgs {
    /// Name or ID of the load balancer to update.
    #[arg(value_name = "load_balancer")]
    pub loadbalancer: String,
    /// Set load balancer name.
    #[arg(long)]
    pub name: Option<String>,
    /// Set load balancer description.
    #[arg(long)]
    pub description: Option<String>,
    /// Set QoS policy ID for VIP port. Unset with 'None'.
    #[arg(long)]
    pub vip_qos_policy_id: Option<String>,
    #[command(flatten)]
    pub admin: AdminState,
    #[command(flatten)]
    pub tags: TagArgs,
    /// Wait for action to complete.
    #[arg(long)]
    pub wait: bool,
}

unset_flags! {
    /// What `loadbalancer unset` clears.
    UnsetFlags {
        /// Clear the load balancer name.
        name => "name",
        /// Clear the load balancer description.
        description => "description",
        /// Clear the load balancer QoS policy.
        vip_qos_policy_id => "vip_qos_policy_id",
    }
}

/// `loadbalancer unset`.
#[derive(Debug, Clone, clap::Args)]
pub struct UnsetArgs {
    /// Name or ID of the load balancer to update.
    #[arg(value_name = "load_balancer")]
    pub loadbalancer: String,
    #[command(flatten)]
    pub flags: UnsetFlags,
    #[command(flatten)]
    pub tags: TagUnsetArgs,
    /// Wait for action to complete.
    #[arg(long)]
    pub wait: bool,
}

/// `loadbalancer delete`.
#[derive(Debug, Clone, clap::Args)]
pub struct DeleteArgs {
    /// Load balancer to delete (name or ID).
    #[arg(value_name = "load_balancer")]
    pub loadbalancer: String,
    /// Cascade the delete to all child elements of the load balancer.
    #[arg(long)]
    pub cascade: bool,
    /// Wait for action to complete.
    #[arg(long)]
    pub wait: bool,
}

/// `loadbalancer failover`.
#[derive(Debug, Clone, clap::Args)]
pub struct FailoverArgs {
    /// Name or ID of the load balancer.
    #[arg(value_name = "load_balancer")]
    pub loadbalancer: String,
    /// Wait for action to complete.
    #[arg(long)]
    pub wait: bool,
}

/// `loadbalancer status ...`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum StatusCommand {
    /// Display load balancer status tree in json format.
    Show {
        /// Name or ID of the load balancer.
        #[arg(value_name = "load_balancer")]
        loadbalancer: String,
    },
}

/// `loadbalancer stats ...`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum StatsCommand {
    /// Shows the current statistics for a load balancer.
    Show(ShowArgs),
}

/// Every load balancer. Its `wait_active` is also the `--wait` of a child's create.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LoadBalancers;

impl Collection for LoadBalancers {
    type Item = LoadBalancer;
    type List = ListLoadBalancersRequest;
    type Update = LoadBalancerUpdate;
    const KIND: &'static str = "load balancer";

    async fn get(&self, c: &Clients, id: &str) -> Result<LoadBalancer, Status> {
        let req = GetLoadBalancerRequest {
            loadbalancer_id: id.to_string(),
        };
        Ok(c.lb.clone().get_load_balancer(req).await?.into_inner())
    }

    async fn page(
        &self,
        c: &Clients,
        req: ListLoadBalancersRequest,
    ) -> Result<(Vec<LoadBalancer>, String), Status> {
        let r = c.lb.clone().list_load_balancers(req).await?.into_inner();
        Ok((r.loadbalancers, r.next_marker))
    }

    async fn update(
        &self,
        c: &Clients,
        id: &str,
        update: LoadBalancerUpdate,
        unset: Vec<String>,
    ) -> Result<(), Status> {
        let req = UpdateLoadBalancerRequest {
            loadbalancer_id: id.to_string(),
            loadbalancer: Some(update),
            unset,
        };
        c.lb.clone().update_load_balancer(req).await.map(drop)
    }
}

/// The fields `loadbalancer show` prints, in octaviaclient's order (plus Fulcrum's
/// `vip_owner`).
pub fn record(lb: &LoadBalancer) -> Record {
    vec![
        ("admin_state_up", Value::Bool(lb.admin_state_up)),
        ("availability_zone", Value::opt_str(&lb.availability_zone)),
        ("created_at", Value::opt_str(&lb.created_at)),
        ("description", Value::str(&lb.description)),
        ("flavor_id", Value::opt_str(&lb.flavor_id)),
        ("id", Value::str(&lb.id)),
        ("listeners", Value::IdList(lb.listener_ids.clone())),
        ("name", Value::str(&lb.name)),
        (
            "operating_status",
            enum_value::<OperatingStatus>(lb.operating_status),
        ),
        ("pools", Value::IdList(lb.pool_ids.clone())),
        ("project_id", Value::str(&lb.project_id)),
        ("provider", Value::opt_str(&lb.provider)),
        (
            "provisioning_status",
            enum_value::<ProvisioningStatus>(lb.provisioning_status),
        ),
        ("updated_at", Value::opt_str(&lb.updated_at)),
        ("vip_address", Value::opt_str(&lb.vip_address)),
        ("vip_network_id", Value::opt_str(&lb.vip_network_id)),
        ("vip_port_id", Value::opt_str(&lb.vip_port_id)),
        ("vip_qos_policy_id", Value::opt_str(&lb.vip_qos_policy_id)),
        ("vip_subnet_id", Value::opt_str(&lb.vip_subnet_id)),
        ("vip_vnic_type", Value::str("normal")),
        ("vip_sg_ids", Value::Null),
        ("tags", Value::Lines(lb.tags.clone())),
        ("additional_vips", Value::List(vec![])),
        ("vip_owner", Value::opt_str(&lb.vip_owner)),
        ("vip_previous_owner", Value::opt_str(&lb.vip_previous_owner)),
    ]
}

/// The rows of `loadbalancer stats show` and `listener stats show`.
pub fn stats_record(s: &Stats) -> Record {
    let n = |v: u64| Value::Int(i64::try_from(v).unwrap_or(i64::MAX));
    vec![
        ("active_connections", n(s.active_connections)),
        ("bytes_in", n(s.bytes_in)),
        ("bytes_out", n(s.bytes_out)),
        ("request_errors", n(s.request_errors)),
        ("total_connections", n(s.total_connections)),
    ]
}

/// The status tree as Octavia's `statuses` JSON object.
pub fn status_tree_value(lb: &LoadBalancerStatus) -> Value {
    let st = |p: i32, o: i32| {
        [
            (
                "provisioning_status".to_string(),
                enum_value::<ProvisioningStatus>(p),
            ),
            (
                "operating_status".to_string(),
                enum_value::<OperatingStatus>(o),
            ),
        ]
    };
    let head = |id: &str, name: &str| {
        vec![
            ("id".to_string(), Value::str(id)),
            ("name".to_string(), Value::str(name)),
        ]
    };
    let listeners = lb
        .listeners
        .iter()
        .map(|l| {
            let pools = l
                .pools
                .iter()
                .map(|p| {
                    let mut m = head(&p.id, &p.name);
                    m.extend(st(p.provisioning_status, p.operating_status));
                    if let Some(hm) = &p.health_monitor {
                        let mut h = head(&hm.id, &hm.name);
                        h.push(("type".into(), enum_value::<HealthMonitorType>(hm.r#type)));
                        h.extend(st(hm.provisioning_status, hm.operating_status));
                        m.push(("health_monitor".into(), Value::Map(h)));
                    }
                    let members = p
                        .members
                        .iter()
                        .map(|mb| {
                            let mut x = head(&mb.id, &mb.name);
                            x.extend(st(mb.provisioning_status, mb.operating_status));
                            x.push(("address".into(), Value::str(&mb.address)));
                            x.push(("protocol_port".into(), Value::Int(mb.protocol_port.into())));
                            Value::Map(x)
                        })
                        .collect();
                    m.push(("members".into(), Value::List(members)));
                    Value::Map(m)
                })
                .collect();
            let mut m = head(&l.id, &l.name);
            m.extend(st(l.provisioning_status, l.operating_status));
            m.push(("pools".into(), Value::List(pools)));
            Value::Map(m)
        })
        .collect();
    let mut m = head(&lb.id, &lb.name);
    m.extend(st(lb.provisioning_status, lb.operating_status));
    m.push(("listeners".into(), Value::List(listeners)));
    Value::Map(vec![("loadbalancer".into(), Value::Map(m))])
}

fn opt(s: &Option<String>) -> String {
    s.clone().unwrap_or_default()
}

/// Runs `loadbalancer create`.
pub async fn create(c: &Clients, a: CreateArgs) -> anyhow::Result<()> {
    // Fulcrum also takes an explicit --vip-address alone (no subnet needed).
    if a.vip_subnet_id.is_none()
        && a.vip_network_id.is_none()
        && a.vip_port_id.is_none()
        && a.vip_address.is_none()
    {
        anyhow::bail!(
            "Missing required argument: Requires one of --vip-subnet-id, --vip-network-id, --vip-port-id or --vip-address"
        );
    }
    if a.vip_network_id.is_some() && a.vip_port_id.is_some() {
        anyhow::bail!("Argument error: --vip-port-id can not be used with --vip-network-id");
    }
    let create = LoadBalancerCreate {
        name: opt(&a.name),
        description: opt(&a.description),
        admin_state_up: a.admin.value(),
        project_id: opt(&a.project),
        vip_address: opt(&a.vip_address),
        vip_subnet_id: opt(&a.vip_subnet_id),
        vip_network_id: opt(&a.vip_network_id),
        vip_port_id: opt(&a.vip_port_id),
        vip_qos_policy_id: opt(&a.vip_qos_policy_id),
        provider: opt(&a.provider),
        flavor_id: opt(&a.flavor),
        availability_zone: opt(&a.availability_zone),
        tags: a.tags.for_create(),
        listeners: vec![],
        pools: vec![],
        ..Default::default()
    };
    let req = CreateLoadBalancerRequest {
        loadbalancer: Some(create),
    };
    let mut lb = api(c.lb.clone().create_load_balancer(req).await)?;
    if a.wait {
        LoadBalancers.wait_active(c, &lb.id).await?;
        lb = checked(LoadBalancers.get(c, &lb.id).await)?;
    }
    emit_one(&record(&lb), &a.output)
}

/// Runs `loadbalancer list`.
pub async fn list_cmd(c: &Clients, a: ListArgs) -> anyhow::Result<()> {
    let req = ListLoadBalancersRequest {
        options: Some(ListOptions {
            project_id: opt(&a.project),
            name: opt(&a.name),
            admin_state_up: a.admin.value(),
            provisioning_status: a.provisioning_status.map_or(0, |s| s as i32),
            operating_status: a.operating_status.map_or(0, |s| s as i32),
            tags: a.tag_filter.tags.clone(),
            ..Default::default()
        }),
        vip_address: opt(&a.vip_address),
        vip_subnet_id: opt(&a.vip_subnet_id),
        provider: opt(&a.provider),
    };
    let eq = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
    let records: Vec<Record> = LoadBalancers
        .list(c, req)
        .await?
        .iter()
        .filter(|lb| {
            eq(&a.vip_network_id, &lb.vip_network_id)
                && eq(&a.vip_port_id, &lb.vip_port_id)
                && eq(&a.vip_qos_policy_id, &lb.vip_qos_policy_id)
                && eq(&a.flavor, &lb.flavor_id)
                && eq(&a.availability_zone, &lb.availability_zone)
                && a.tag_filter.matches(&lb.tags)
        })
        .map(record)
        .collect();
    emit_list(LIST_COLUMNS, &records, &a.output)
}

/// Runs `loadbalancer set`.
pub async fn set(c: &Clients, a: SetArgs) -> anyhow::Result<()> {
    let lb = LoadBalancers.find(c, &a.loadbalancer).await?;
    let mut unset = vec![];
    let mut qos = a.vip_qos_policy_id.clone();
    if qos.as_deref().is_some_and(is_none_word) {
        qos = None;
        unset.push("vip_qos_policy_id".to_string());
    }
    let update = LoadBalancerUpdate {
        name: a.name.clone(),
        description: a.description.clone(),
        admin_state_up: a.admin.value(),
        vip_qos_policy_id: qos,
        tags: a.tags.for_set(&lb.tags),
    };
    LoadBalancers
        .update_and_wait(c, &lb.id, update, unset, a.wait)
        .await
}

/// Runs `loadbalancer unset`.
pub async fn unset(c: &Clients, a: UnsetArgs) -> anyhow::Result<()> {
    let Some(fields) = fields_to_unset(a.flags.fields(), &a.tags) else {
        return Ok(());
    };
    let lb = LoadBalancers.find(c, &a.loadbalancer).await?;
    LoadBalancers.unset(c, &lb, fields, &a.tags, a.wait).await
}

/// Runs `loadbalancer delete`.
pub async fn delete(c: &Clients, a: DeleteArgs) -> anyhow::Result<()> {
    let lb = LoadBalancers.find(c, &a.loadbalancer).await?;
    let req = DeleteLoadBalancerRequest {
        loadbalancer_id: lb.id.clone(),
        cascade: a.cascade,
    };
    LoadBalancers
        .delete_and_wait(c, &lb.id, c.lb.clone().delete_load_balancer(req), a.wait)
        .await
}

/// Runs `loadbalancer failover`.
pub async fn failover(c: &Clients, a: FailoverArgs) -> anyhow::Result<()> {
    let lb = LoadBalancers.find(c, &a.loadbalancer).await?;
    let req = FailoverLoadBalancerRequest {
        loadbalancer_id: lb.id.clone(),
    };
    api(c.lb.clone().failover_load_balancer(req).await)?;
    if a.wait {
        LoadBalancers.wait_active(c, &lb.id).await?;
    }
    Ok(())
}

/// Runs `loadbalancer status show`: the tree as JSON indented by four, as octaviaclient does.
pub async fn status_show(c: &Clients, loadbalancer: &str) -> anyhow::Result<()> {
    let lb = LoadBalancers.find(c, loadbalancer).await?;
    let req = GetLoadBalancerStatusTreeRequest {
        loadbalancer_id: lb.id.clone(),
    };
    let tree = api(c.lb.clone().get_load_balancer_status_tree(req).await)?;
    let v = match &tree.loadbalancer {
        Some(s) => status_tree_value(s),
        None => Value::Map(vec![]),
    };
    println!("{}", value::json_value(&v, Some(4)));
    Ok(())
}

/// Runs `loadbalancer stats show`.
pub async fn stats_show(c: &Clients, a: ShowArgs) -> anyhow::Result<()> {
    let lb = LoadBalancers.find(c, &a.loadbalancer).await?;
    let req = GetLoadBalancerStatsRequest {
        loadbalancer_id: lb.id.clone(),
    };
    let stats = api(c.lb.clone().get_load_balancer_stats(req).await)?;
    emit_one(&stats_record(&stats), &a.output)
}

/// Runs `loadbalancer show`.
pub async fn show(c: &Clients, a: ShowArgs) -> anyhow::Result<()> {
    let lb = LoadBalancers.find(c, &a.loadbalancer).await?;
    emit_one(&record(&lb), &a.output)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fulcrum_proto::v1::{HealthMonitorStatus, ListenerStatus, MemberStatus, PoolStatus};

    #[test]
    fn record_uses_octavia_names_and_order() {
        let lb = LoadBalancer {
            id: "lb-1".into(),
            name: "lb_test_1".into(),
            admin_state_up: true,
            provisioning_status: ProvisioningStatus::Active as i32,
            operating_status: OperatingStatus::Online as i32,
            vip_address: "10.0.0.10".into(),
            vip_subnet_id: "private-subnet".into(),
            listener_ids: vec!["l1".into(), "l2".into()],
            tags: vec!["t".into()],
            ..Default::default()
        };
        let r = record(&lb);
        let names: Vec<&str> = r.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            &names[..6],
            &[
                "admin_state_up",
                "availability_zone",
                "created_at",
                "description",
                "flavor_id",
                "id"
            ]
        );
        let get = |k: &str| r.iter().find(|(n, _)| *n == k).unwrap().1.clone();
        assert_eq!(get("provisioning_status"), Value::str("ACTIVE"));
        assert_eq!(get("operating_status"), Value::str("ONLINE"));
        assert_eq!(get("listeners").human(), "l1\nl2");
        assert_eq!(get("flavor_id"), Value::Null);
        let out = ShowOutput {
            format: super::super::output::OneFormat::Json,
            columns: vec!["listeners".into(), "vip_address".into()],
            ..Default::default()
        };
        assert_eq!(
            super::super::output::render_one(&r, &out).unwrap(),
            "{\n  \"listeners\": [\n    {\n      \"id\": \"l1\"\n    },\n    {\n      \"id\": \"l2\"\n    }\n  ],\n  \"vip_address\": \"10.0.0.10\"\n}\n"
        );
    }

    #[test]
    fn status_tree_json_has_octavia_shape() {
        let tree = LoadBalancerStatus {
            id: "lb".into(),
            name: "lb1".into(),
            provisioning_status: ProvisioningStatus::Active as i32,
            operating_status: OperatingStatus::Online as i32,
            listeners: vec![ListenerStatus {
                id: "l".into(),
                name: "80_listener".into(),
                provisioning_status: ProvisioningStatus::Active as i32,
                operating_status: OperatingStatus::Online as i32,
                pools: vec![PoolStatus {
                    id: "p".into(),
                    name: "".into(),
                    provisioning_status: ProvisioningStatus::Active as i32,
                    operating_status: OperatingStatus::Online as i32,
                    health_monitor: Some(HealthMonitorStatus {
                        id: "h".into(),
                        name: "".into(),
                        r#type: HealthMonitorType::TlsHello as i32,
                        provisioning_status: ProvisioningStatus::Active as i32,
                        operating_status: OperatingStatus::Online as i32,
                    }),
                    members: vec![MemberStatus {
                        id: "m".into(),
                        name: "m1".into(),
                        provisioning_status: ProvisioningStatus::Active as i32,
                        operating_status: OperatingStatus::NoMonitor as i32,
                        address: "10.0.0.4".into(),
                        protocol_port: 80,
                    }],
                }],
            }],
        };
        let json = value::json_value(&status_tree_value(&tree), Some(4));
        let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
        let pool = &parsed["loadbalancer"]["listeners"][0]["pools"][0];
        assert_eq!(pool["health_monitor"]["type"], "TLS-HELLO");
        assert_eq!(pool["members"][0]["operating_status"], "NO_MONITOR");
        assert_eq!(pool["members"][0]["protocol_port"], 80);
        assert!(json.starts_with("{\n    \"loadbalancer\": {\n        \"id\": \"lb\",\n        \"name\": \"lb1\",\n        \"provisioning_status\": \"ACTIVE\""), "{json}");
    }
}
