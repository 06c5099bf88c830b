//! `fulcrum loadbalancer pool create|list|show|set|unset|delete`.

use anyhow::{anyhow, bail};
use fulcrum_proto::v1::{
    CreatePoolRequest, DeletePoolRequest, GetPoolRequest, LbAlgorithm, ListPoolsRequest,
    OperatingStatus, Pool, PoolCreate, PoolUpdate, Protocol, ProvisioningStatus,
    SessionPersistence, SessionPersistenceType, StringList, UpdatePoolRequest,
};
use tonic::Status;

use super::collection::Collection;
use super::common::{
    fields_to_unset, is_none_word, unset_flags, AdminState, KvList, TagArgs, TagFilter,
    TagUnsetArgs,
};
use super::connection::{api, checked, Clients};
use super::emit_one;
use super::enums::{self, choices, enum_value, parse_cli};
use super::listener::Listeners;
use super::loadbalancer::LoadBalancers;
use super::output::{ListOutput, Record, ShowOutput};
use super::value::Value;

/// Columns of `pool list`.
pub const LIST_COLUMNS: &[&str] = &[
    "id",
    "name",
    "project_id",
    "provisioning_status",
    "protocol",
    "lb_algorithm",
    "admin_state_up",
];

/// `loadbalancer pool ...`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum PoolCommand {
    /// Create a pool.
    Create(CreateArgs),
    /// List pools.
    List(ListArgs),
    /// Show the details of a single pool.
    Show(ShowArgs),
    /// Update a pool.
    Set(SetArgs),
    /// Clear pool settings.
    Unset(UnsetArgs),
    /// Delete a pool.
    Delete(DeleteArgs),
}

/// Options that `pool create` and `pool set` share.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct PoolOptions {
    /// Set pool name.
    #[arg(long)]
    pub name: Option<String>,
    /// Set pool description.
    #[arg(long)]
    pub description: Option<String>,
    /// Set the session persistence for the pool (key=value,...: type, cookie_name,
    /// persistence_timeout, persistence_granularity).
    #[arg(long, value_name = "session persistence", value_parser = super::common::kv_list)]
    pub session_persistence: Option<KvList>,
    /// The URI to the key manager service secrets container with the client certificate and
    /// key presented to members.
    #[arg(long, value_name = "container-ref")]
    pub tls_container_ref: Option<String>,
    /// The URI to the key manager service secrets container with the CA certificate(s) used to
    /// validate members.
    #[arg(long, value_name = "ca_tls_container_ref")]
    pub ca_tls_container_ref: Option<String>,
    /// The URI to the key manager service secrets container with the member CRL.
    #[arg(long, value_name = "crl_container_ref")]
    pub crl_container_ref: Option<String>,
    /// Enable backend member re-encryption.
    #[arg(long, conflicts_with = "disable_tls")]
    pub enable_tls: bool,
    /// Disable backend member re-encryption.
    #[arg(long)]
    pub disable_tls: bool,
    /// Set the TLS ciphers to be used by the pool in OpenSSL cipher string format.
    #[arg(long)]
    pub tls_ciphers: Option<String>,
    /// Set the TLS protocol version to be used by the pool (can be set multiple times).
    #[arg(long = "tls-version", value_name = "tls_versions")]
    pub tls_versions: Vec<String>,
    /// Set the ALPN protocol to be used by the pool (can be set multiple times).
    #[arg(long = "alpn-protocol", value_name = "alpn_protocols")]
    pub alpn_protocols: Vec<String>,
    #[command(flatten)]
    pub admin: AdminState,
    #[command(flatten)]
    pub tags: TagArgs,
    /// Wait for action to complete.
    #[arg(long)]
    pub wait: bool,
}

impl PoolOptions {
    fn tls_enabled(&self) -> Option<bool> {
        if self.enable_tls {
            Some(true)
        } else if self.disable_tls {
            Some(false)
        } else {
            None
        }
    }
}

/// `pool create`.
#[derive(Debug, Clone, clap::Args)]
pub struct CreateArgs {
    /// Set pool protocol.
    #[arg(long, required = true, value_parser = choices::<Protocol>(enums::POOL_PROTOCOLS), ignore_case = true)]
    pub protocol: Option<Protocol>,
    /// Listener to add the pool to, as its default pool (name or ID).
    #[arg(
        long,
        conflicts_with = "loadbalancer",
        required_unless_present = "loadbalancer"
    )]
    pub listener: Option<String>,
    /// Load balancer to add the pool to (name or ID).
    #[arg(long, value_name = "load_balancer")]
    pub loadbalancer: Option<String>,
    /// Load balancing algorithm to use.
    #[arg(long, required = true, value_parser = choices::<LbAlgorithm>(enums::LB_ALGORITHMS), ignore_case = true)]
    pub lb_algorithm: Option<LbAlgorithm>,
    #[command(flatten)]
    pub opts: PoolOptions,
    #[command(flatten)]
    pub output: ShowOutput,
}

/// `pool list`.
#[derive(Debug, Clone, clap::Args)]
pub struct ListArgs {
    /// Filter by load balancer (name or ID).
    #[arg(long)]
    pub loadbalancer: Option<String>,
    #[command(flatten)]
    pub tag_filter: TagFilter,
    #[command(flatten)]
    pub output: ListOutput,
}

/// `pool show`.
#[derive(Debug, Clone, clap::Args)]
pub struct ShowArgs {
    /// Name or ID of the pool to show.
    #[arg(value_name = "pool")]
    pub pool: String,
    #[command(flatten)]
    pub output: ShowOutput,
}

/// `pool set`.
#[derive(Debug, Clone, clap::Args)]
pub struct SetArgs {
    /// Pool to update (name or ID).
    #[arg(value_name = "pool")]
    pub pool: String,
    /// Set the load balancing algorithm to use.
    #[arg(long, value_parser = choices::<LbAlgorithm>(enums::LB_ALGORITHMS), ignore_case = true)]
    pub lb_algorithm: Option<LbAlgorithm>,
    #[command(flatten)]
    pub opts: PoolOptions,
}

unset_flags! {
    /// What `pool unset` clears.
    UnsetFlags {
        /// Clear the pool name.
        name => "name",
        /// Clear the description of this pool.
        description => "description",
        /// Clear the certificate authority certificate reference on this pool.
        ca_tls_container_ref => "ca_tls_container_ref",
        /// Clear the certificate revocation list reference on this pool.
        crl_container_ref => "crl_container_ref",
        /// Disables session persistence on the pool.
        session_persistence => "session_persistence",
        /// Clear the certificate reference for this pool.
        tls_container_ref => "tls_container_ref",
        /// Clear all TLS versions from the pool.
        tls_versions => "tls_versions",
        /// Clear all TLS ciphers from the pool.
        tls_ciphers => "tls_ciphers",
        /// Clear all ALPN protocols from the pool.
        alpn_protocols => "alpn_protocols",
    }
}

/// `pool unset`.
#[derive(Debug, Clone, clap::Args)]
pub struct UnsetArgs {
    /// Pool to modify (name or ID).
    #[arg(value_name = "pool")]
    pub pool: String,
    #[command(flatten)]
    pub flags: UnsetFlags,
    #[command(flatten)]
    pub tags: TagUnsetArgs,
    /// Wait for action to complete.
    #[arg(long)]
    pub wait: bool,
}

/// `pool delete`.
#[derive(Debug, Clone, clap::Args)]
pub struct DeleteArgs {
    /// Pool to delete (name or ID).
    #[arg(value_name = "pool")]
    pub pool: String,
    /// Wait for action to complete.
    #[arg(long)]
    pub wait: bool,
}

/// Every pool.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pools;

impl Collection for Pools {
    type Item = Pool;
    type List = ListPoolsRequest;
    type Update = PoolUpdate;
    const KIND: &'static str = "pool";

    async fn get(&self, c: &Clients, id: &str) -> Result<Pool, Status> {
        let req = GetPoolRequest {
            pool_id: id.to_string(),
        };
        Ok(c.pool.clone().get_pool(req).await?.into_inner())
    }

    async fn page(
        &self,
        c: &Clients,
        req: ListPoolsRequest,
    ) -> Result<(Vec<Pool>, String), Status> {
        let r = c.pool.clone().list_pools(req).await?.into_inner();
        Ok((r.pools, r.next_marker))
    }

    async fn update(
        &self,
        c: &Clients,
        id: &str,
        update: PoolUpdate,
        unset: Vec<String>,
    ) -> Result<(), Status> {
        let req = UpdatePoolRequest {
            pool_id: id.to_string(),
            pool: Some(update),
            unset,
        };
        c.pool.clone().update_pool(req).await.map(drop)
    }
}

/// Parses `--session-persistence type=APP_COOKIE,cookie_name=x`.
pub fn session_persistence(kv: &KvList) -> anyhow::Result<SessionPersistence> {
    let mut sp = SessionPersistence::default();
    for (k, v) in &kv.0 {
        match k.as_str() {
            "type" => {
                sp.r#type = parse_cli::<SessionPersistenceType>(v)
                    .ok_or_else(|| {
                        anyhow!("Invalid session persistence type '{v}' (expected SOURCE_IP, HTTP_COOKIE or APP_COOKIE)")
                    })?
                    .into();
            }
            "cookie_name" => sp.cookie_name = v.clone(),
            "persistence_timeout" => {
                sp.persistence_timeout = Some(v.parse().map_err(|_| {
                    anyhow!("Invalid session persistence persistence_timeout '{v}' (expected seconds)")
                })?)
            }
            "persistence_granularity" => sp.persistence_granularity = v.clone(),
            other => bail!(
                "Invalid session persistence key '{other}' (expected type, cookie_name, persistence_timeout or persistence_granularity)"
            ),
        }
    }
    Ok(sp)
}

fn session_persistence_value(sp: Option<&SessionPersistence>) -> Value {
    match sp {
        Some(sp) if sp.r#type != 0 => Value::Hash(vec![
            (
                "type".into(),
                enum_value::<SessionPersistenceType>(sp.r#type),
            ),
            ("cookie_name".into(), Value::opt_str(&sp.cookie_name)),
            (
                "persistence_timeout".into(),
                Value::opt_int(sp.persistence_timeout),
            ),
            (
                "persistence_granularity".into(),
                Value::opt_str(&sp.persistence_granularity),
            ),
        ]),
        _ => Value::Null,
    }
}

/// The fields `pool show` prints, in octaviaclient's order.
pub fn record(p: &Pool) -> Record {
    vec![
        ("admin_state_up", Value::Bool(p.admin_state_up)),
        ("created_at", Value::opt_str(&p.created_at)),
        ("description", Value::str(&p.description)),
        ("healthmonitor_id", Value::opt_str(&p.healthmonitor_id)),
        ("id", Value::str(&p.id)),
        ("lb_algorithm", enum_value::<LbAlgorithm>(p.lb_algorithm)),
        ("listeners", Value::IdList(p.listener_ids.clone())),
        ("loadbalancers", Value::id_list_of(&p.loadbalancer_id)),
        ("members", Value::IdList(p.member_ids.clone())),
        ("name", Value::str(&p.name)),
        (
            "operating_status",
            enum_value::<OperatingStatus>(p.operating_status),
        ),
        ("project_id", Value::str(&p.project_id)),
        ("protocol", enum_value::<Protocol>(p.protocol)),
        (
            "provisioning_status",
            enum_value::<ProvisioningStatus>(p.provisioning_status),
        ),
        (
            "session_persistence",
            session_persistence_value(p.session_persistence.as_ref()),
        ),
        ("updated_at", Value::opt_str(&p.updated_at)),
        ("tls_container_ref", Value::opt_str(&p.tls_container_ref)),
        (
            "ca_tls_container_ref",
            Value::opt_str(&p.ca_tls_container_ref),
        ),
        ("crl_container_ref", Value::opt_str(&p.crl_container_ref)),
        ("tls_enabled", Value::Bool(p.tls_enabled)),
        ("tls_ciphers", Value::opt_str(&p.tls_ciphers)),
        ("tls_versions", Value::str_list(&p.tls_versions)),
        ("tags", Value::Lines(p.tags.clone())),
        ("alpn_protocols", Value::str_list(&p.alpn_protocols)),
    ]
}

/// Runs one pool command.
pub async fn run(c: &Clients, cmd: PoolCommand) -> anyhow::Result<()> {
    match cmd {
        PoolCommand::Create(a) => create(c, a).await,
        PoolCommand::List(a) => {
            let loadbalancer_id = match &a.loadbalancer {
                Some(lb) => LoadBalancers.find(c, lb).await?.id,
                None => String::new(),
            };
            let req = ListPoolsRequest {
                loadbalancer_id,
                ..Default::default()
            };
            Pools
                .print_list(c, req, &a.tag_filter, LIST_COLUMNS, record, &a.output)
                .await
        }
        PoolCommand::Show(a) => emit_one(&record(&Pools.find(c, &a.pool).await?), &a.output),
        PoolCommand::Set(a) => set(c, a).await,
        PoolCommand::Unset(a) => {
            let Some(fields) = fields_to_unset(a.flags.fields(), &a.tags) else {
                return Ok(());
            };
            let p = Pools.find(c, &a.pool).await?;
            Pools.unset(c, &p, fields, &a.tags, a.wait).await
        }
        PoolCommand::Delete(a) => {
            let p = Pools.find(c, &a.pool).await?;
            let req = DeletePoolRequest {
                pool_id: p.id.clone(),
            };
            Pools
                .delete_and_wait(c, &p.id, c.pool.clone().delete_pool(req), a.wait)
                .await
        }
    }
}

async fn create(c: &Clients, a: CreateArgs) -> anyhow::Result<()> {
    let o = &a.opts;
    let (loadbalancer_id, listener_id, lb_id) = match (&a.listener, &a.loadbalancer) {
        (Some(l), _) => {
            let l = Listeners.find(c, l).await?;
            (String::new(), l.id, l.loadbalancer_id)
        }
        (None, Some(lb)) => {
            let lb = LoadBalancers.find(c, lb).await?;
            (lb.id.clone(), String::new(), lb.id)
        }
        (None, None) => {
            bail!("Missing required argument: Requires one of --listener or --loadbalancer")
        }
    };
    let create = PoolCreate {
        loadbalancer_id,
        listener_id,
        protocol: a.protocol.map_or(0, |p| p as i32),
        lb_algorithm: a.lb_algorithm.map_or(0, |p| p as i32),
        session_persistence: o
            .session_persistence
            .as_ref()
            .map(session_persistence)
            .transpose()?,
        name: o.name.clone().unwrap_or_default(),
        description: o.description.clone().unwrap_or_default(),
        admin_state_up: o.admin.value(),
        tls_enabled: o.enable_tls,
        tls_container_ref: o.tls_container_ref.clone().unwrap_or_default(),
        ca_tls_container_ref: o.ca_tls_container_ref.clone().unwrap_or_default(),
        crl_container_ref: o.crl_container_ref.clone().unwrap_or_default(),
        tls_ciphers: o.tls_ciphers.clone().unwrap_or_default(),
        tls_versions: o.tls_versions.clone(),
        alpn_protocols: o.alpn_protocols.clone(),
        tags: o.tags.for_create(),
        healthmonitor: None,
        members: vec![],
        project_id: String::new(),
    };
    let req = CreatePoolRequest { pool: Some(create) };
    let mut p = api(c.pool.clone().create_pool(req).await)?;
    if o.wait {
        let lb_id = if p.loadbalancer_id.is_empty() {
            lb_id
        } else {
            p.loadbalancer_id.clone()
        };
        LoadBalancers.wait_active(c, &lb_id).await?;
        p = checked(Pools.get(c, &p.id).await)?;
    }
    emit_one(&record(&p), &a.output)
}

async fn set(c: &Clients, a: SetArgs) -> anyhow::Result<()> {
    let o = &a.opts;
    let p = Pools.find(c, &a.pool).await?;
    let mut unset = vec![];
    let mut reference = |v: &Option<String>, field: &str| match v {
        Some(s) if is_none_word(s) => {
            unset.push(field.to_string());
            None
        }
        other => other.clone(),
    };
    let tls_container_ref = reference(&o.tls_container_ref, "tls_container_ref");
    let ca_tls_container_ref = reference(&o.ca_tls_container_ref, "ca_tls_container_ref");
    let crl_container_ref = reference(&o.crl_container_ref, "crl_container_ref");
    let list = |v: &Vec<String>| (!v.is_empty()).then(|| StringList { values: v.clone() });
    let update = PoolUpdate {
        name: o.name.clone(),
        description: o.description.clone(),
        admin_state_up: o.admin.value(),
        lb_algorithm: a.lb_algorithm.map_or(0, |v| v as i32),
        session_persistence: o
            .session_persistence
            .as_ref()
            .map(session_persistence)
            .transpose()?,
        tls_enabled: o.tls_enabled(),
        tls_container_ref,
        ca_tls_container_ref,
        crl_container_ref,
        tls_ciphers: o.tls_ciphers.clone(),
        tls_versions: list(&o.tls_versions),
        alpn_protocols: list(&o.alpn_protocols),
        tags: o.tags.for_set(&p.tags),
    };
    Pools.update_and_wait(c, &p.id, update, unset, o.wait).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::common::parse_kv;

    #[test]
    fn session_persistence_parses_octavia_syntax() {
        let sp = session_persistence(&KvList(parse_kv("type=APP_COOKIE,cookie_name=x").unwrap()))
            .unwrap();
        assert_eq!(sp.r#type, SessionPersistenceType::AppCookie as i32);
        assert_eq!(sp.cookie_name, "x");
        let sp = session_persistence(&KvList(
            parse_kv("type=source_ip,persistence_timeout=60,persistence_granularity=255.255.255.0")
                .unwrap(),
        ))
        .unwrap();
        assert_eq!(sp.r#type, SessionPersistenceType::SourceIp as i32);
        assert_eq!(sp.persistence_timeout, Some(60));
        assert!(session_persistence(&KvList(parse_kv("type=STICKY").unwrap())).is_err());
        assert!(session_persistence(&KvList(parse_kv("color=red").unwrap())).is_err());
        assert!(
            session_persistence(&KvList(parse_kv("persistence_timeout=soon").unwrap())).is_err()
        );
    }

    #[test]
    fn record_shows_session_persistence_as_kv_lines() {
        let p = Pool {
            id: "p".into(),
            protocol: Protocol::Http as i32,
            lb_algorithm: LbAlgorithm::RoundRobin as i32,
            session_persistence: Some(SessionPersistence {
                r#type: SessionPersistenceType::AppCookie as i32,
                cookie_name: "x".into(),
                ..Default::default()
            }),
            member_ids: vec!["m1".into()],
            ..Default::default()
        };
        let r = record(&p);
        let get = |k: &str| r.iter().find(|(n, _)| *n == k).unwrap().1.clone();
        assert_eq!(
            get("session_persistence").human(),
            "type=APP_COOKIE\ncookie_name=x\npersistence_timeout=None\npersistence_granularity=None"
        );
        assert_eq!(get("lb_algorithm"), Value::str("ROUND_ROBIN"));
        assert_eq!(get("members").human(), "m1");
        assert_eq!(get("loadbalancers").human(), "");
        assert_eq!(session_persistence_value(None), Value::Null);
    }
}
