//! `fulcrum loadbalancer l7rule create|list|show|set|unset|delete` (rules live in a policy).

use fulcrum_proto::v1::{
    CompareType, CreateL7RuleRequest, DeleteL7RuleRequest, GetL7RuleRequest, L7Rule, L7RuleCreate,
    L7RuleType, L7RuleUpdate, ListL7RulesRequest, OperatingStatus, ProvisioningStatus,
    UpdateL7RuleRequest,
};
use tonic::Status;

use super::collection::Collection;
use super::common::{fields_to_unset, unset_flags, AdminState, TagArgs, TagFilter, TagUnsetArgs};
use super::connection::{api, checked, Clients};
use super::emit_one;
use super::enums::{self, choices, cli_name, enum_value};
use super::l7policy::L7Policies;
use super::listener::Listeners;
use super::loadbalancer::LoadBalancers;
use super::output::{ListOutput, Record, ShowOutput};
use super::value::Value;

/// Columns of `l7rule list`.
pub const LIST_COLUMNS: &[&str] = &[
    "id",
    "project_id",
    "provisioning_status",
    "compare_type",
    "type",
    "key",
    "value",
    "invert",
    "admin_state_up",
];

/// `loadbalancer l7rule ...`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum L7RuleCommand {
    /// Create a l7rule.
    Create(CreateArgs),
    /// List l7rules for l7policy.
    List(ListArgs),
    /// Show the details of a single l7rule.
    Show(ShowArgs),
    /// Update a l7rule.
    Set(SetArgs),
    /// Clear l7rule settings.
    Unset(UnsetArgs),
    /// Delete a l7rule.
    Delete(DeleteArgs),
}

/// Options that `l7rule create` and `l7rule set` share.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct L7RuleOptions {
    /// Set the key for the l7rule's value to match on.
    #[arg(long, value_name = "key")]
    pub key: Option<String>,
    /// Invert l7rule.
    #[arg(long)]
    pub invert: bool,
    #[command(flatten)]
    pub admin: AdminState,
    #[command(flatten)]
    pub tags: TagArgs,
    /// Wait for action to complete.
    #[arg(long)]
    pub wait: bool,
}

/// octaviaclient's check that COOKIE and HEADER rules name a key.
fn check_key(rule_type: Option<L7RuleType>, key: &Option<String>) -> anyhow::Result<()> {
    if let Some(t @ (L7RuleType::Cookie | L7RuleType::Header)) = rule_type {
        if key.is_none() {
            anyhow::bail!(
                "Missing argument: --type {} requires --key <key>",
                cli_name(t)
            );
        }
    }
    Ok(())
}

/// `l7rule create`.
#[derive(Debug, Clone, clap::Args)]
pub struct CreateArgs {
    /// l7policy to add l7rule to (name or ID).
    #[arg(value_name = "l7policy")]
    pub l7policy: String,
    /// Set the compare type for the l7rule.
    #[arg(long, required = true, value_parser = choices::<CompareType>(enums::COMPARE_TYPES), ignore_case = true)]
    pub compare_type: Option<CompareType>,
    /// Set the rule value to match on.
    #[arg(long, required = true, value_name = "value")]
    pub value: Option<String>,
    /// Set the type for the l7rule.
    #[arg(long = "type", required = true, value_parser = choices::<L7RuleType>(enums::L7_RULE_TYPES), ignore_case = true)]
    pub rule_type: Option<L7RuleType>,
    #[command(flatten)]
    pub opts: L7RuleOptions,
    #[command(flatten)]
    pub output: ShowOutput,
}

/// `l7rule list`.
#[derive(Debug, Clone, clap::Args)]
pub struct ListArgs {
    /// l7policy to list rules of (name or ID).
    #[arg(value_name = "l7policy")]
    pub l7policy: String,
    #[command(flatten)]
    pub tag_filter: TagFilter,
    #[command(flatten)]
    pub output: ListOutput,
}

/// `l7rule show`.
#[derive(Debug, Clone, clap::Args)]
pub struct ShowArgs {
    /// l7policy to show rule from (name or ID).
    #[arg(value_name = "l7policy")]
    pub l7policy: String,
    /// l7rule to show.
    #[arg(value_name = "l7rule_id")]
    pub l7rule: String,
    #[command(flatten)]
    pub output: ShowOutput,
}

/// `l7rule set`.
#[derive(Debug, Clone, clap::Args)]
pub struct SetArgs {
    /// L7policy to update l7rule on (name or ID).
    #[arg(value_name = "l7policy")]
    pub l7policy: String,
    /// l7rule to update.
    #[arg(value_name = "l7rule_id")]
    pub l7rule: String,
    /// Set the compare type for the l7rule.
    #[arg(long, value_parser = choices::<CompareType>(enums::COMPARE_TYPES), ignore_case = true)]
    pub compare_type: Option<CompareType>,
    /// Set the rule value to match on.
    #[arg(long, value_name = "value")]
    pub value: Option<String>,
    /// Set the type for the l7rule.
    #[arg(long = "type", value_parser = choices::<L7RuleType>(enums::L7_RULE_TYPES), ignore_case = true)]
    pub rule_type: Option<L7RuleType>,
    #[command(flatten)]
    pub opts: L7RuleOptions,
}

unset_flags! {
    /// What `l7rule unset` clears.
    UnsetFlags {
        /// Reset the l7rule invert to the API default.
        invert => "invert",
        /// Clear the l7rule key.
        key => "key",
    }
}

/// `l7rule unset`.
#[derive(Debug, Clone, clap::Args)]
pub struct UnsetArgs {
    /// L7policy to update (name or ID).
    #[arg(value_name = "l7policy")]
    pub l7policy: String,
    /// l7rule to update.
    #[arg(value_name = "l7rule_id")]
    pub l7rule: String,
    #[command(flatten)]
    pub flags: UnsetFlags,
    #[command(flatten)]
    pub tags: TagUnsetArgs,
    /// Wait for action to complete.
    #[arg(long)]
    pub wait: bool,
}

/// `l7rule delete`.
#[derive(Debug, Clone, clap::Args)]
pub struct DeleteArgs {
    /// l7policy to delete rule from (name or ID).
    #[arg(value_name = "l7policy")]
    pub l7policy: String,
    /// l7rule to delete.
    #[arg(value_name = "rule_id")]
    pub l7rule: String,
    /// Wait for action to complete.
    #[arg(long)]
    pub wait: bool,
}

/// The rules of one L7 policy (its ID). Rules have no names: they are found by ID only.
#[derive(Debug, Clone, Copy)]
pub(crate) struct L7Rules<'a>(pub &'a str);

impl Collection for L7Rules<'_> {
    type Item = L7Rule;
    type List = ListL7RulesRequest;
    type Update = L7RuleUpdate;
    const KIND: &'static str = "l7rule";
    const NAMED: bool = false;

    async fn get(&self, c: &Clients, id: &str) -> Result<L7Rule, Status> {
        let req = GetL7RuleRequest {
            l7policy_id: self.0.to_string(),
            l7rule_id: id.to_string(),
        };
        Ok(c.l7rule.clone().get_l7_rule(req).await?.into_inner())
    }

    async fn page(
        &self,
        c: &Clients,
        req: ListL7RulesRequest,
    ) -> Result<(Vec<L7Rule>, String), Status> {
        let r = c.l7rule.clone().list_l7_rules(req).await?.into_inner();
        Ok((r.rules, r.next_marker))
    }

    async fn update(
        &self,
        c: &Clients,
        id: &str,
        update: L7RuleUpdate,
        unset: Vec<String>,
    ) -> Result<(), Status> {
        let req = UpdateL7RuleRequest {
            l7policy_id: self.0.to_string(),
            l7rule_id: id.to_string(),
            rule: Some(update),
            unset,
        };
        c.l7rule.clone().update_l7_rule(req).await.map(drop)
    }

    fn scope(&self) -> ListL7RulesRequest {
        ListL7RulesRequest {
            l7policy_id: self.0.to_string(),
            ..Default::default()
        }
    }
}

/// The fields `l7rule show` prints, in octaviaclient's order.
pub fn record(r: &L7Rule) -> Record {
    vec![
        ("created_at", Value::opt_str(&r.created_at)),
        ("compare_type", enum_value::<CompareType>(r.compare_type)),
        (
            "provisioning_status",
            enum_value::<ProvisioningStatus>(r.provisioning_status),
        ),
        ("invert", Value::Bool(r.invert)),
        ("admin_state_up", Value::Bool(r.admin_state_up)),
        ("updated_at", Value::opt_str(&r.updated_at)),
        ("value", Value::str(&r.value)),
        ("key", Value::opt_str(&r.key)),
        ("project_id", Value::str(&r.project_id)),
        ("type", enum_value::<L7RuleType>(r.r#type)),
        ("id", Value::str(&r.id)),
        (
            "operating_status",
            enum_value::<OperatingStatus>(r.operating_status),
        ),
        ("tags", Value::Lines(r.tags.clone())),
    ]
}

/// Runs one L7 rule command.
pub async fn run(c: &Clients, cmd: L7RuleCommand) -> anyhow::Result<()> {
    match cmd {
        L7RuleCommand::Create(a) => create(c, a).await,
        L7RuleCommand::List(a) => {
            let p = L7Policies.find(c, &a.l7policy).await?;
            let rules = L7Rules(&p.id);
            let req = rules.scope();
            rules
                .print_list(c, req, &a.tag_filter, LIST_COLUMNS, record, &a.output)
                .await
        }
        L7RuleCommand::Show(a) => {
            let p = L7Policies.find(c, &a.l7policy).await?;
            let r = L7Rules(&p.id).find(c, &a.l7rule).await?;
            emit_one(&record(&r), &a.output)
        }
        L7RuleCommand::Set(a) => {
            let o = &a.opts;
            check_key(a.rule_type, &o.key)?;
            let p = L7Policies.find(c, &a.l7policy).await?;
            let r = L7Rules(&p.id).find(c, &a.l7rule).await?;
            let update = L7RuleUpdate {
                r#type: a.rule_type.map_or(0, |v| v as i32),
                compare_type: a.compare_type.map_or(0, |v| v as i32),
                key: o.key.clone(),
                value: a.value.clone(),
                invert: o.invert.then_some(true),
                admin_state_up: o.admin.value(),
                tags: o.tags.for_set(&r.tags),
            };
            L7Rules(&r.l7policy_id)
                .update_and_wait(c, &r.id, update, vec![], o.wait)
                .await
        }
        L7RuleCommand::Unset(a) => {
            let Some(fields) = fields_to_unset(a.flags.fields(), &a.tags) else {
                return Ok(());
            };
            let p = L7Policies.find(c, &a.l7policy).await?;
            let r = L7Rules(&p.id).find(c, &a.l7rule).await?;
            L7Rules(&r.l7policy_id)
                .unset(c, &r, fields, &a.tags, a.wait)
                .await
        }
        L7RuleCommand::Delete(a) => {
            let p = L7Policies.find(c, &a.l7policy).await?;
            let r = L7Rules(&p.id).find(c, &a.l7rule).await?;
            let req = DeleteL7RuleRequest {
                l7policy_id: p.id.clone(),
                l7rule_id: r.id.clone(),
            };
            L7Rules(&p.id)
                .delete_and_wait(c, &r.id, c.l7rule.clone().delete_l7_rule(req), a.wait)
                .await
        }
    }
}

async fn create(c: &Clients, a: CreateArgs) -> anyhow::Result<()> {
    let o = &a.opts;
    check_key(a.rule_type, &o.key)?;
    let p = L7Policies.find(c, &a.l7policy).await?;
    let create = L7RuleCreate {
        l7policy_id: p.id.clone(),
        r#type: a.rule_type.map_or(0, |v| v as i32),
        compare_type: a.compare_type.map_or(0, |v| v as i32),
        key: o.key.clone().unwrap_or_default(),
        value: a.value.clone().unwrap_or_default(),
        invert: o.invert,
        admin_state_up: o.admin.value(),
        tags: o.tags.for_create(),
        project_id: String::new(),
    };
    let req = CreateL7RuleRequest { rule: Some(create) };
    let mut r = api(c.l7rule.clone().create_l7_rule(req).await)?;
    if o.wait {
        let l = checked(Listeners.get(c, &p.listener_id).await)?;
        LoadBalancers.wait_active(c, &l.loadbalancer_id).await?;
        r = checked(L7Rules(&p.id).get(c, &r.id).await)?;
    }
    emit_one(&record(&r), &a.output)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_cookie_rules_need_a_key() {
        assert_eq!(
            check_key(Some(L7RuleType::Header), &None)
                .unwrap_err()
                .to_string(),
            "Missing argument: --type HEADER requires --key <key>"
        );
        assert!(check_key(Some(L7RuleType::Cookie), &Some("sid".into())).is_ok());
        assert!(check_key(Some(L7RuleType::HostName), &None).is_ok());
    }

    #[test]
    fn record_prints_enums_by_octavia_name() {
        let r = L7Rule {
            id: "r".into(),
            r#type: L7RuleType::HostName as i32,
            compare_type: CompareType::EqualTo as i32,
            value: "www2.example.com".into(),
            ..Default::default()
        };
        let rec = record(&r);
        let get = |k: &str| rec.iter().find(|(n, _)| *n == k).unwrap().1.clone();
        assert_eq!(get("type"), Value::str("HOST_NAME"));
        assert_eq!(get("compare_type"), Value::str("EQUAL_TO"));
        assert_eq!(get("key"), Value::Null);
    }
}
