//! `fulcrum loadbalancer l7policy create|list|show|set|unset|delete`.

use clap::builder::{PossibleValuesParser, TypedValueParser};
use fulcrum_proto::v1::{
    CreateL7PolicyRequest, DeleteL7PolicyRequest, GetL7PolicyRequest, L7Policy, L7PolicyAction,
    L7PolicyCreate, L7PolicyUpdate, ListL7PoliciesRequest, OperatingStatus, ProvisioningStatus,
    UpdateL7PolicyRequest,
};
use tonic::Status;

use super::collection::Collection;
use super::common::{fields_to_unset, unset_flags, AdminState, TagArgs, TagFilter, TagUnsetArgs};
use super::connection::{api, checked, Clients};
use super::emit_one;
use super::enums::{self, choices, enum_value};
use super::listener::Listeners;
use super::loadbalancer::LoadBalancers;
use super::output::{ListOutput, Record, ShowOutput};
use super::pool::Pools;
use super::value::Value;

/// Columns of `l7policy list`.
pub const LIST_COLUMNS: &[&str] = &[
    "id",
    "name",
    "project_id",
    "provisioning_status",
    "action",
    "position",
    "admin_state_up",
];

/// `loadbalancer l7policy ...`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum L7PolicyCommand {
    /// Create a l7policy.
    Create(CreateArgs),
    /// List l7policies.
    List(ListArgs),
    /// Show the details of a single l7policy.
    Show(ShowArgs),
    /// Update a l7policy.
    Set(SetArgs),
    /// Clear l7policy settings.
    Unset(UnsetArgs),
    /// Delete a l7policy.
    Delete(DeleteArgs),
}

fn redirect_codes() -> impl TypedValueParser<Value = i32> {
    PossibleValuesParser::new(["301", "302", "303", "307", "308"])
        .map(|s| s.parse::<i32>().unwrap_or(302))
}

/// Options that `l7policy create` and `l7policy set` share.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct L7PolicyOptions {
    /// Set the l7policy name.
    #[arg(long)]
    pub name: Option<String>,
    /// Set l7policy description.
    #[arg(long)]
    pub description: Option<String>,
    /// Set the pool to redirect requests to (name or ID).
    #[arg(long, value_name = "pool")]
    pub redirect_pool: Option<String>,
    /// Set the URL to redirect requests to.
    #[arg(long, value_name = "url")]
    pub redirect_url: Option<String>,
    /// Set the URL Prefix to redirect requests to.
    #[arg(long, value_name = "url")]
    pub redirect_prefix: Option<String>,
    /// Set the HTTP response code for REDIRECT_URL or REDIRECT_PREFIX action.
    #[arg(long, value_parser = redirect_codes())]
    pub redirect_http_code: Option<i32>,
    /// Sequence number of this L7 Policy.
    #[arg(long, value_name = "position")]
    pub position: Option<i32>,
    #[command(flatten)]
    pub admin: AdminState,
    #[command(flatten)]
    pub tags: TagArgs,
    /// Wait for action to complete.
    #[arg(long)]
    pub wait: bool,
}

impl L7PolicyOptions {
    /// octaviaclient's check that the action's redirect option is present.
    fn check(&self, action: Option<L7PolicyAction>) -> anyhow::Result<()> {
        let missing = match action {
            Some(L7PolicyAction::RedirectToPool) if self.redirect_pool.is_none() => {
                "--redirect-pool"
            }
            Some(L7PolicyAction::RedirectToUrl) if self.redirect_url.is_none() => "--redirect-url",
            Some(L7PolicyAction::RedirectPrefix) if self.redirect_prefix.is_none() => {
                "--redirect-prefix"
            }
            _ => return Ok(()),
        };
        anyhow::bail!("Missing argument: {missing}")
    }
}

/// `l7policy create`.
#[derive(Debug, Clone, clap::Args)]
pub struct CreateArgs {
    /// Listener to add l7policy to (name or ID).
    #[arg(value_name = "listener")]
    pub listener: String,
    /// Set the action of the policy.
    #[arg(long, required = true, value_parser = choices::<L7PolicyAction>(enums::L7_ACTIONS), ignore_case = true)]
    pub action: Option<L7PolicyAction>,
    #[command(flatten)]
    pub opts: L7PolicyOptions,
    #[command(flatten)]
    pub output: ShowOutput,
}

/// `l7policy list`.
#[derive(Debug, Clone, clap::Args)]
pub struct ListArgs {
    /// List l7policies that applied to the given listener (name or ID).
    #[arg(long, value_name = "listener")]
    pub listener: Option<String>,
    #[command(flatten)]
    pub tag_filter: TagFilter,
    #[command(flatten)]
    pub output: ListOutput,
}

/// `l7policy show`.
#[derive(Debug, Clone, clap::Args)]
pub struct ShowArgs {
    /// l7policy to display (name or ID).
    #[arg(value_name = "policy")]
    pub l7policy: String,
    #[command(flatten)]
    pub output: ShowOutput,
}

/// `l7policy set`.
#[derive(Debug, Clone, clap::Args)]
pub struct SetArgs {
    /// l7policy to update (name or ID).
    #[arg(value_name = "policy")]
    pub l7policy: String,
    /// Set the action of the policy.
    #[arg(long, value_parser = choices::<L7PolicyAction>(enums::L7_ACTIONS), ignore_case = true)]
    pub action: Option<L7PolicyAction>,
    #[command(flatten)]
    pub opts: L7PolicyOptions,
}

unset_flags! {
    /// What `l7policy unset` clears.
    UnsetFlags {
        /// Clear the l7policy description.
        description => "description",
        /// Clear the l7policy name.
        name => "name",
        /// Clear the l7policy redirect HTTP code.
        redirect_http_code => "redirect_http_code",
    }
}

/// `l7policy unset`.
#[derive(Debug, Clone, clap::Args)]
pub struct UnsetArgs {
    /// L7policy to update (name or ID).
    #[arg(value_name = "policy")]
    pub l7policy: String,
    #[command(flatten)]
    pub flags: UnsetFlags,
    #[command(flatten)]
    pub tags: TagUnsetArgs,
    /// Wait for action to complete.
    #[arg(long)]
    pub wait: bool,
}

/// `l7policy delete`.
#[derive(Debug, Clone, clap::Args)]
pub struct DeleteArgs {
    /// l7policy to delete (name or ID).
    #[arg(value_name = "policy")]
    pub l7policy: String,
    /// Wait for action to complete.
    #[arg(long)]
    pub wait: bool,
}

/// Every L7 policy.
#[derive(Debug, Clone, Copy)]
pub(crate) struct L7Policies;

impl Collection for L7Policies {
    type Item = L7Policy;
    type List = ListL7PoliciesRequest;
    type Update = L7PolicyUpdate;
    const KIND: &'static str = "l7policy";

    async fn get(&self, c: &Clients, id: &str) -> Result<L7Policy, Status> {
        let req = GetL7PolicyRequest {
            l7policy_id: id.to_string(),
        };
        Ok(c.l7policy.clone().get_l7_policy(req).await?.into_inner())
    }

    async fn page(
        &self,
        c: &Clients,
        req: ListL7PoliciesRequest,
    ) -> Result<(Vec<L7Policy>, String), Status> {
        let r = c.l7policy.clone().list_l7_policies(req).await?.into_inner();
        Ok((r.l7policies, r.next_marker))
    }

    async fn update(
        &self,
        c: &Clients,
        id: &str,
        update: L7PolicyUpdate,
        unset: Vec<String>,
    ) -> Result<(), Status> {
        let req = UpdateL7PolicyRequest {
            l7policy_id: id.to_string(),
            l7policy: Some(update),
            unset,
        };
        c.l7policy.clone().update_l7_policy(req).await.map(drop)
    }
}

/// The fields `l7policy show` prints, in octaviaclient's order.
pub fn record(p: &L7Policy) -> Record {
    vec![
        ("listener_id", Value::str(&p.listener_id)),
        ("description", Value::str(&p.description)),
        ("admin_state_up", Value::Bool(p.admin_state_up)),
        ("rules", Value::IdList(p.rule_ids.clone())),
        ("project_id", Value::str(&p.project_id)),
        ("created_at", Value::opt_str(&p.created_at)),
        (
            "provisioning_status",
            enum_value::<ProvisioningStatus>(p.provisioning_status),
        ),
        ("updated_at", Value::opt_str(&p.updated_at)),
        ("redirect_pool_id", Value::opt_str(&p.redirect_pool_id)),
        ("redirect_url", Value::opt_str(&p.redirect_url)),
        ("redirect_prefix", Value::opt_str(&p.redirect_prefix)),
        ("action", enum_value::<L7PolicyAction>(p.action)),
        ("position", Value::Int(p.position.into())),
        ("id", Value::str(&p.id)),
        (
            "operating_status",
            enum_value::<OperatingStatus>(p.operating_status),
        ),
        ("name", Value::str(&p.name)),
        (
            "redirect_http_code",
            Value::opt_int((p.redirect_http_code != 0).then_some(p.redirect_http_code)),
        ),
        ("tags", Value::Lines(p.tags.clone())),
    ]
}

async fn pool_id(c: &Clients, input: &Option<String>) -> anyhow::Result<Option<String>> {
    Ok(match input {
        Some(p) => Some(Pools.find(c, p).await?.id),
        None => None,
    })
}

/// Runs one L7 policy command.
pub async fn run(c: &Clients, cmd: L7PolicyCommand) -> anyhow::Result<()> {
    match cmd {
        L7PolicyCommand::Create(a) => create(c, a).await,
        L7PolicyCommand::List(a) => {
            let listener_id = match &a.listener {
                Some(l) => Listeners.find(c, l).await?.id,
                None => String::new(),
            };
            let req = ListL7PoliciesRequest {
                listener_id,
                ..Default::default()
            };
            L7Policies
                .print_list(c, req, &a.tag_filter, LIST_COLUMNS, record, &a.output)
                .await
        }
        L7PolicyCommand::Show(a) => {
            let p = L7Policies.find(c, &a.l7policy).await?;
            emit_one(&record(&p), &a.output)
        }
        L7PolicyCommand::Set(a) => {
            let o = &a.opts;
            o.check(a.action)?;
            let p = L7Policies.find(c, &a.l7policy).await?;
            let update = L7PolicyUpdate {
                name: o.name.clone(),
                description: o.description.clone(),
                admin_state_up: o.admin.value(),
                action: a.action.map_or(0, |v| v as i32),
                redirect_pool_id: pool_id(c, &o.redirect_pool).await?,
                redirect_url: o.redirect_url.clone(),
                redirect_prefix: o.redirect_prefix.clone(),
                redirect_http_code: o.redirect_http_code,
                position: o.position,
                tags: o.tags.for_set(&p.tags),
            };
            L7Policies
                .update_and_wait(c, &p.id, update, vec![], o.wait)
                .await
        }
        L7PolicyCommand::Unset(a) => {
            let Some(fields) = fields_to_unset(a.flags.fields(), &a.tags) else {
                return Ok(());
            };
            let p = L7Policies.find(c, &a.l7policy).await?;
            L7Policies.unset(c, &p, fields, &a.tags, a.wait).await
        }
        L7PolicyCommand::Delete(a) => {
            let p = L7Policies.find(c, &a.l7policy).await?;
            let req = DeleteL7PolicyRequest {
                l7policy_id: p.id.clone(),
            };
            L7Policies
                .delete_and_wait(c, &p.id, c.l7policy.clone().delete_l7_policy(req), a.wait)
                .await
        }
    }
}

async fn create(c: &Clients, a: CreateArgs) -> anyhow::Result<()> {
    let o = &a.opts;
    o.check(a.action)?;
    let l = Listeners.find(c, &a.listener).await?;
    let create = L7PolicyCreate {
        listener_id: l.id.clone(),
        action: a.action.map_or(0, |v| v as i32),
        redirect_pool_id: pool_id(c, &o.redirect_pool).await?.unwrap_or_default(),
        redirect_pool: None,
        redirect_url: o.redirect_url.clone().unwrap_or_default(),
        redirect_prefix: o.redirect_prefix.clone().unwrap_or_default(),
        redirect_http_code: o.redirect_http_code,
        position: o.position,
        name: o.name.clone().unwrap_or_default(),
        description: o.description.clone().unwrap_or_default(),
        admin_state_up: o.admin.value(),
        rules: vec![],
        tags: o.tags.for_create(),
        project_id: String::new(),
    };
    let req = CreateL7PolicyRequest {
        l7policy: Some(create),
    };
    let mut p = api(c.l7policy.clone().create_l7_policy(req).await)?;
    if o.wait {
        LoadBalancers.wait_active(c, &l.loadbalancer_id).await?;
        p = checked(L7Policies.get(c, &p.id).await)?;
    }
    emit_one(&record(&p), &a.output)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_options_are_required_by_action() {
        let none = L7PolicyOptions::default();
        assert_eq!(
            none.check(Some(L7PolicyAction::RedirectToPool))
                .unwrap_err()
                .to_string(),
            "Missing argument: --redirect-pool"
        );
        assert!(none.check(Some(L7PolicyAction::Reject)).is_ok());
        assert!(none.check(None).is_ok());
        let url = L7PolicyOptions {
            redirect_url: Some("http://x".into()),
            ..Default::default()
        };
        assert!(url.check(Some(L7PolicyAction::RedirectToUrl)).is_ok());
    }

    #[test]
    fn record_prints_action_and_code() {
        let p = L7Policy {
            id: "p".into(),
            action: L7PolicyAction::RedirectToPool as i32,
            position: 1,
            rule_ids: vec!["r1".into()],
            ..Default::default()
        };
        let r = record(&p);
        let get = |k: &str| r.iter().find(|(n, _)| *n == k).unwrap().1.clone();
        assert_eq!(get("action"), Value::str("REDIRECT_TO_POOL"));
        assert_eq!(get("redirect_http_code"), Value::Null);
        assert_eq!(get("rules").human(), "r1");
    }
}
