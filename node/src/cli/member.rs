//! `fulcrum loadbalancer member create|list|show|set|unset|delete` (members live in a pool).

use fulcrum_proto::v1::{
    CreateMemberRequest, DeleteMemberRequest, GetMemberRequest, ListMembersRequest, Member,
    MemberCreate, MemberUpdate, OperatingStatus, ProvisioningStatus, UpdateMemberRequest,
};
use tonic::Status;

use super::collection::Collection;
use super::common::{
    check_port, fields_to_unset, unset_flags, AdminState, TagArgs, TagFilter, TagUnsetArgs,
};
use super::connection::{api, checked, Clients};
use super::emit_one;
use super::enums::enum_value;
use super::loadbalancer::LoadBalancers;
use super::output::{ListOutput, Record, ShowOutput};
use super::pool::Pools;
use super::value::Value;

/// Columns of `member list`.
pub const LIST_COLUMNS: &[&str] = &[
    "id",
    "name",
    "project_id",
    "provisioning_status",
    "address",
    "protocol_port",
    "operating_status",
    "weight",
];

/// `loadbalancer member ...`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum MemberCommand {
    /// Creating a member in a pool.
    Create(CreateArgs),
    /// List members in a pool.
    List(ListArgs),
    /// Shows details of a single Member.
    Show(ShowArgs),
    /// Update a member.
    Set(SetArgs),
    /// Clear member settings.
    Unset(UnsetArgs),
    /// Delete a member from a pool.
    Delete(DeleteArgs),
}

/// Options that `member create` and `member set` share.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct MemberOptions {
    /// Name of the member.
    #[arg(long)]
    pub name: Option<String>,
    /// Disable member backup (default).
    #[arg(long, conflicts_with = "enable_backup")]
    pub disable_backup: bool,
    /// Enable member backup.
    #[arg(long)]
    pub enable_backup: bool,
    /// The weight of a member determines the portion of requests or connections it services
    /// compared to the other members of the pool (0-256; 0 drains the member).
    #[arg(long)]
    pub weight: Option<i32>,
    /// An alternate protocol port used for health monitoring a backend member.
    #[arg(long, value_name = "monitor_port")]
    pub monitor_port: Option<i32>,
    /// An alternate IP address used for health monitoring a backend member.
    #[arg(long, value_name = "monitor_address")]
    pub monitor_address: Option<String>,
    #[command(flatten)]
    pub admin: AdminState,
    #[command(flatten)]
    pub tags: TagArgs,
    /// Wait for action to complete.
    #[arg(long)]
    pub wait: bool,
}

impl MemberOptions {
    fn backup(&self) -> Option<bool> {
        if self.enable_backup {
            Some(true)
        } else if self.disable_backup {
            Some(false)
        } else {
            None
        }
    }

    fn check(&self) -> anyhow::Result<()> {
        if let Some(w) = self.weight {
            if !(0..=256).contains(&w) {
                anyhow::bail!(
                    "Invalid input for field/attribute 'weight', Value: '{w}'. Value must be between 0 and 256."
                );
            }
        }
        if let Some(p) = self.monitor_port {
            check_port("monitor-port", p)?;
        }
        Ok(())
    }
}

/// `member create`.
#[derive(Debug, Clone, clap::Args)]
pub struct CreateArgs {
    /// ID or name of the pool to create the member for.
    #[arg(value_name = "pool")]
    pub pool: String,
    /// The IP address of the backend member server.
    #[arg(long, required = true, value_name = "ip_address")]
    pub address: Option<String>,
    /// The subnet ID the member service is accessible from.
    #[arg(long, value_name = "subnet_id")]
    pub subnet_id: Option<String>,
    /// The protocol port number the backend member server is listening on.
    #[arg(long, required = true, value_name = "protocol_port")]
    pub protocol_port: Option<i32>,
    #[command(flatten)]
    pub opts: MemberOptions,
    #[command(flatten)]
    pub output: ShowOutput,
}

/// `member list`.
#[derive(Debug, Clone, clap::Args)]
pub struct ListArgs {
    /// Pool name or ID to list the members of.
    #[arg(value_name = "pool")]
    pub pool: String,
    #[command(flatten)]
    pub tag_filter: TagFilter,
    #[command(flatten)]
    pub output: ListOutput,
}

/// `member show`.
#[derive(Debug, Clone, clap::Args)]
pub struct ShowArgs {
    /// Pool name or ID to show the members of.
    #[arg(value_name = "pool")]
    pub pool: String,
    /// Name or ID of the member to show.
    #[arg(value_name = "member")]
    pub member: String,
    #[command(flatten)]
    pub output: ShowOutput,
}

/// `member set`.
#[derive(Debug, Clone, clap::Args)]
pub struct SetArgs {
    /// Pool that the member to update belongs to (name or ID).
    #[arg(value_name = "pool")]
    pub pool: String,
    /// Name or ID of the member to update.
    #[arg(value_name = "member")]
    pub member: String,
    #[command(flatten)]
    pub opts: MemberOptions,
}

unset_flags! {
    /// What `member unset` clears.
    UnsetFlags {
        /// Clear the backup member flag.
        backup => "backup",
        /// Clear the member monitor address.
        monitor_address => "monitor_address",
        /// Clear the member monitor port.
        monitor_port => "monitor_port",
        /// Clear the member name.
        name => "name",
        /// Reset the member weight to the API default.
        weight => "weight",
    }
}

/// `member unset`.
#[derive(Debug, Clone, clap::Args)]
pub struct UnsetArgs {
    /// Pool that the member to update belongs to (name or ID).
    #[arg(value_name = "pool")]
    pub pool: String,
    /// Member to modify (name or ID).
    #[arg(value_name = "member")]
    pub member: String,
    #[command(flatten)]
    pub flags: UnsetFlags,
    #[command(flatten)]
    pub tags: TagUnsetArgs,
    /// Wait for action to complete.
    #[arg(long)]
    pub wait: bool,
}

/// `member delete`.
#[derive(Debug, Clone, clap::Args)]
pub struct DeleteArgs {
    /// Pool name or ID to delete the member from.
    #[arg(value_name = "pool")]
    pub pool: String,
    /// Name or ID of the member to be deleted.
    #[arg(value_name = "member")]
    pub member: String,
    /// Wait for action to complete.
    #[arg(long)]
    pub wait: bool,
}

/// The members of one pool (its ID).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Members<'a>(pub &'a str);

impl Collection for Members<'_> {
    type Item = Member;
    type List = ListMembersRequest;
    type Update = MemberUpdate;
    const KIND: &'static str = "member";

    async fn get(&self, c: &Clients, id: &str) -> Result<Member, Status> {
        let req = GetMemberRequest {
            pool_id: self.0.to_string(),
            member_id: id.to_string(),
        };
        Ok(c.member.clone().get_member(req).await?.into_inner())
    }

    async fn page(
        &self,
        c: &Clients,
        req: ListMembersRequest,
    ) -> Result<(Vec<Member>, String), Status> {
        let r = c.member.clone().list_members(req).await?.into_inner();
        Ok((r.members, r.next_marker))
    }

    async fn update(
        &self,
        c: &Clients,
        id: &str,
        update: MemberUpdate,
        unset: Vec<String>,
    ) -> Result<(), Status> {
        let req = UpdateMemberRequest {
            pool_id: self.0.to_string(),
            member_id: id.to_string(),
            member: Some(update),
            unset,
        };
        c.member.clone().update_member(req).await.map(drop)
    }

    fn scope(&self) -> ListMembersRequest {
        ListMembersRequest {
            pool_id: self.0.to_string(),
            ..Default::default()
        }
    }
}

/// The fields `member show` prints, in octaviaclient's order.
pub fn record(m: &Member) -> Record {
    vec![
        ("address", Value::str(&m.address)),
        ("admin_state_up", Value::Bool(m.admin_state_up)),
        ("created_at", Value::opt_str(&m.created_at)),
        ("id", Value::str(&m.id)),
        ("name", Value::str(&m.name)),
        (
            "operating_status",
            enum_value::<OperatingStatus>(m.operating_status),
        ),
        ("project_id", Value::str(&m.project_id)),
        ("protocol_port", Value::Int(m.protocol_port.into())),
        (
            "provisioning_status",
            enum_value::<ProvisioningStatus>(m.provisioning_status),
        ),
        ("subnet_id", Value::opt_str(&m.subnet_id)),
        ("updated_at", Value::opt_str(&m.updated_at)),
        ("weight", Value::Int(m.weight.into())),
        ("monitor_port", Value::opt_int(m.monitor_port)),
        ("monitor_address", Value::opt_str(&m.monitor_address)),
        ("backup", Value::Bool(m.backup)),
        ("tags", Value::Lines(m.tags.clone())),
        ("vnic_type", Value::str("normal")),
    ]
}

/// Runs one member command.
pub async fn run(c: &Clients, cmd: MemberCommand) -> anyhow::Result<()> {
    match cmd {
        MemberCommand::Create(a) => create(c, a).await,
        MemberCommand::List(a) => {
            let p = Pools.find(c, &a.pool).await?;
            let members = Members(&p.id);
            let req = members.scope();
            members
                .print_list(c, req, &a.tag_filter, LIST_COLUMNS, record, &a.output)
                .await
        }
        MemberCommand::Show(a) => {
            let p = Pools.find(c, &a.pool).await?;
            let m = Members(&p.id).find(c, &a.member).await?;
            emit_one(&record(&m), &a.output)
        }
        MemberCommand::Set(a) => {
            let o = &a.opts;
            o.check()?;
            let p = Pools.find(c, &a.pool).await?;
            let m = Members(&p.id).find(c, &a.member).await?;
            let update = MemberUpdate {
                name: o.name.clone(),
                admin_state_up: o.admin.value(),
                weight: o.weight,
                backup: o.backup(),
                monitor_address: o.monitor_address.clone(),
                monitor_port: o.monitor_port,
                tags: o.tags.for_set(&m.tags),
            };
            Members(&m.pool_id)
                .update_and_wait(c, &m.id, update, vec![], o.wait)
                .await
        }
        MemberCommand::Unset(a) => {
            let Some(fields) = fields_to_unset(a.flags.fields(), &a.tags) else {
                return Ok(());
            };
            let p = Pools.find(c, &a.pool).await?;
            let m = Members(&p.id).find(c, &a.member).await?;
            Members(&m.pool_id)
                .unset(c, &m, fields, &a.tags, a.wait)
                .await
        }
        MemberCommand::Delete(a) => {
            let p = Pools.find(c, &a.pool).await?;
            let m = Members(&p.id).find(c, &a.member).await?;
            let req = DeleteMemberRequest {
                pool_id: p.id.clone(),
                member_id: m.id.clone(),
            };
            Members(&p.id)
                .delete_and_wait(c, &m.id, c.member.clone().delete_member(req), a.wait)
                .await
        }
    }
}

async fn create(c: &Clients, a: CreateArgs) -> anyhow::Result<()> {
    let o = &a.opts;
    let port = a.protocol_port.unwrap_or_default();
    check_port("protocol-port", port)?;
    o.check()?;
    let p = Pools.find(c, &a.pool).await?;
    let create = MemberCreate {
        pool_id: p.id.clone(),
        address: a.address.clone().unwrap_or_default(),
        protocol_port: port,
        name: o.name.clone().unwrap_or_default(),
        admin_state_up: o.admin.value(),
        weight: o.weight,
        backup: o.enable_backup,
        subnet_id: a.subnet_id.clone().unwrap_or_default(),
        monitor_address: o.monitor_address.clone().unwrap_or_default(),
        monitor_port: o.monitor_port,
        tags: o.tags.for_create(),
        project_id: String::new(),
        ..Default::default()
    };
    let req = CreateMemberRequest {
        member: Some(create),
    };
    let mut m = api(c.member.clone().create_member(req).await)?;
    if o.wait {
        LoadBalancers.wait_active(c, &p.loadbalancer_id).await?;
        m = checked(Members(&p.id).get(c, &m.id).await)?;
    }
    emit_one(&record(&m), &a.output)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_and_ports_are_checked_client_side() {
        let ok = MemberOptions {
            weight: Some(0),
            monitor_port: Some(8080),
            ..Default::default()
        };
        assert!(ok.check().is_ok());
        let heavy = MemberOptions {
            weight: Some(257),
            ..Default::default()
        };
        assert_eq!(
            heavy.check().unwrap_err().to_string(),
            "Invalid input for field/attribute 'weight', Value: '257'. Value must be between 0 and 256."
        );
        let bad_port = MemberOptions {
            monitor_port: Some(70000),
            ..Default::default()
        };
        assert!(bad_port.check().is_err());
    }

    #[test]
    fn record_matches_member_rows() {
        let m = Member {
            id: "m".into(),
            address: "10.0.0.4".into(),
            protocol_port: 80,
            weight: 1,
            ..Default::default()
        };
        let names: Vec<&str> = record(&m).iter().map(|(k, _)| *k).collect();
        assert_eq!(names[0], "address");
        assert_eq!(names.len(), 17);
        assert!(names.contains(&"monitor_port") && names.contains(&"backup"));
    }
}
