//! `fulcrum loadbalancer listener create|list|show|set|unset|delete|stats show`.

use std::collections::HashMap;

use fulcrum_proto::v1::{
    ClientAuthentication, CreateListenerRequest, DeleteListenerRequest, GetListenerRequest,
    GetListenerStatsRequest, ListListenersRequest, ListOptions, Listener, ListenerCreate,
    ListenerUpdate, OperatingStatus, Protocol, ProvisioningStatus, StringList, StringMap,
    UpdateListenerRequest,
};
use tonic::Status;

use super::collection::Collection;
use super::common::{
    check_port, fields_to_unset, is_none_word, unset_flags, AdminState, KvList, TagArgs, TagFilter,
    TagUnsetArgs,
};
use super::connection::{api, checked, Clients};
use super::emit_one;
use super::enums::{self, choices, enum_value};
use super::loadbalancer::{self, LoadBalancers};
use super::output::{ListOutput, Record, ShowOutput};
use super::pool::Pools;
use super::value::Value;

/// Columns of `listener list`.
pub const LIST_COLUMNS: &[&str] = &[
    "id",
    "default_pool_id",
    "name",
    "project_id",
    "protocol",
    "protocol_port",
    "admin_state_up",
];

/// `loadbalancer listener ...`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ListenerCommand {
    /// Create a listener.
    Create(CreateArgs),
    /// List listeners.
    List(ListArgs),
    /// Show the details of a single listener.
    Show(ShowArgs),
    /// Update a listener.
    Set(SetArgs),
    /// Clear listener settings.
    Unset(UnsetArgs),
    /// Delete a listener.
    Delete(DeleteArgs),
    /// Listener statistics.
    #[command(subcommand)]
    Stats(StatsCommand),
}

/// `listener stats ...`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum StatsCommand {
    /// Shows the current statistics for a listener.
    Show(ShowArgs),
}

/// Options that `listener create` and `listener set` share.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ListenerOptions {
    /// Set the listener name.
    #[arg(long)]
    pub name: Option<String>,
    /// Set the description of this listener.
    #[arg(long)]
    pub description: Option<String>,
    /// Set the maximum number of connections permitted for this listener (-1 = unlimited).
    #[arg(long, value_name = "limit", allow_negative_numbers = true)]
    pub connection_limit: Option<i32>,
    /// Set the name or ID of the pool used by the listener if no L7 policies match.
    #[arg(long, value_name = "pool")]
    pub default_pool: Option<String>,
    /// The URI to the key manager service secrets container with the certificate and key for
    /// TERMINATED_TLS listeners.
    #[arg(long, value_name = "container_ref")]
    pub default_tls_container_ref: Option<String>,
    /// A list of URIs to the key manager service secrets containers for SNI.
    #[arg(long, value_name = "container_ref", num_args = 0..)]
    pub sni_container_refs: Option<Vec<String>>,
    /// A dictionary of optional headers to insert into the request before it is sent to the
    /// backend member.
    #[arg(long, value_name = "header=value,...", value_parser = super::common::kv_list)]
    pub insert_headers: Option<KvList>,
    /// Frontend client inactivity timeout in milliseconds.
    #[arg(long, value_name = "timeout")]
    pub timeout_client_data: Option<i32>,
    /// Backend member connection timeout in milliseconds.
    #[arg(long, value_name = "timeout")]
    pub timeout_member_connect: Option<i32>,
    /// Backend member inactivity timeout in milliseconds.
    #[arg(long, value_name = "timeout")]
    pub timeout_member_data: Option<i32>,
    /// Time, in milliseconds, to wait for additional TCP packets for content inspection.
    #[arg(long, value_name = "timeout")]
    pub timeout_tcp_inspect: Option<i32>,
    /// The URI to the key manager service secrets container with the CA certificate(s) for
    /// TERMINATED_TLS listeners.
    #[arg(long, value_name = "container_ref")]
    pub client_ca_tls_container_ref: Option<String>,
    /// The TLS client authentication verify options for TERMINATED_TLS listeners.
    #[arg(long, value_parser = choices::<ClientAuthentication>(enums::CLIENT_AUTH), ignore_case = true)]
    pub client_authentication: Option<ClientAuthentication>,
    /// The URI to the key manager service secrets container with the CRL for TERMINATED_TLS
    /// listeners.
    #[arg(long, value_name = "client_crl_container_ref")]
    pub client_crl_container_ref: Option<String>,
    /// CIDR to allow access to the listener (can be set multiple times).
    #[arg(long = "allowed-cidr", value_name = "allowed_cidr")]
    pub allowed_cidrs: Vec<String>,
    /// Set the TLS ciphers to be used by the listener in OpenSSL format.
    #[arg(long)]
    pub tls_ciphers: Option<String>,
    /// Set the TLS protocol version to be used by the listener (can be set multiple times).
    #[arg(long = "tls-version", value_name = "tls_versions")]
    pub tls_versions: Vec<String>,
    /// Set the ALPN protocol to be used by the listener (can be set multiple times).
    #[arg(long = "alpn-protocol", value_name = "alpn_protocols")]
    pub alpn_protocols: Vec<String>,
    /// The value of the max_age directive for the Strict-Transport-Security HTTP response
    /// header.
    #[arg(long)]
    pub hsts_max_age: Option<i32>,
    /// Define whether the includeSubDomains directive should be added to the
    /// Strict-Transport-Security HTTP response header.
    #[arg(long)]
    pub hsts_include_subdomains: bool,
    /// Define whether the preload directive should be added to the Strict-Transport-Security
    /// HTTP response header.
    #[arg(long)]
    pub hsts_preload: bool,
    #[command(flatten)]
    pub admin: AdminState,
    #[command(flatten)]
    pub tags: TagArgs,
    /// Wait for action to complete.
    #[arg(long)]
    pub wait: bool,
}

/// `listener create`.
#[derive(Debug, Clone, clap::Args)]
pub struct CreateArgs {
    /// Load balancer for the listener (name or ID).
    #[arg(value_name = "loadbalancer")]
    pub loadbalancer: String,
    /// The protocol for the listener.
    #[arg(long, required = true, value_parser = choices::<Protocol>(enums::LISTENER_PROTOCOLS), ignore_case = true)]
    pub protocol: Option<Protocol>,
    /// Set the protocol port number for the listener.
    #[arg(long, required = true, value_name = "port")]
    pub protocol_port: Option<i32>,
    #[command(flatten)]
    pub opts: ListenerOptions,
    #[command(flatten)]
    pub output: ShowOutput,
}

/// `listener list`.
#[derive(Debug, Clone, clap::Args)]
pub struct ListArgs {
    /// List listeners by listener name.
    #[arg(long)]
    pub name: Option<String>,
    /// Filter by load balancer (name or ID).
    #[arg(long, value_name = "loadbalancer")]
    pub loadbalancer: Option<String>,
    #[command(flatten)]
    pub admin: AdminState,
    /// List listeners by project ID.
    #[arg(long)]
    pub project: Option<String>,
    #[command(flatten)]
    pub tag_filter: TagFilter,
    #[command(flatten)]
    pub output: ListOutput,
}

/// A command taking one listener and printing something.
#[derive(Debug, Clone, clap::Args)]
pub struct ShowArgs {
    /// Name or ID of the listener.
    #[arg(value_name = "listener")]
    pub listener: String,
    #[command(flatten)]
    pub output: ShowOutput,
}

/// `listener set`.
#[derive(Debug, Clone, clap::Args)]
pub struct SetArgs {
    /// Listener to modify (name or ID).
    #[arg(value_name = "listener")]
    pub listener: String,
    #[command(flatten)]
    pub opts: ListenerOptions,
}

unset_flags! {
    /// What `listener unset` clears.
    UnsetFlags {
        /// Clear the listener name.
        name => "name",
        /// Clear the description of this listener.
        description => "description",
        /// Reset the connection limit to the API default.
        connection_limit => "connection_limit",
        /// Clear the default pool from the listener.
        default_pool => "default_pool_id",
        /// Remove the default TLS container reference from the listener.
        default_tls_container_ref => "default_tls_container_ref",
        /// Remove the TLS SNI container references from the listener.
        sni_container_refs => "sni_container_refs",
        /// Clear the insert headers from the listener.
        insert_headers => "insert_headers",
        /// Reset the client data timeout to the API default.
        timeout_client_data => "timeout_client_data",
        /// Reset the member connect timeout to the API default.
        timeout_member_connect => "timeout_member_connect",
        /// Reset the member data timeout to the API default.
        timeout_member_data => "timeout_member_data",
        /// Reset the TCP inspection timeout to the API default.
        timeout_tcp_inspect => "timeout_tcp_inspect",
        /// Clear the client CA TLS container reference from the listener.
        client_ca_tls_container_ref => "client_ca_tls_container_ref",
        /// Reset the client authentication setting to the API default.
        client_authentication => "client_authentication",
        /// Clear the client CRL container reference from the listener.
        client_crl_container_ref => "client_crl_container_ref",
        /// Clear all allowed CIDRs from the listener.
        allowed_cidrs => "allowed_cidrs",
        /// Clear all TLS versions from the listener.
        tls_versions => "tls_versions",
        /// Clear all TLS ciphers from the listener.
        tls_ciphers => "tls_ciphers",
        /// Clear all ALPN protocols from the listener.
        alpn_protocols => "alpn_protocols",
        /// Disable HTTP Strict Transport Security (HSTS) for the listener.
        hsts_max_age => "hsts_max_age",
        /// Remove the includeSubDomains directive from the Strict-Transport-Security header.
        hsts_include_subdomains => "hsts_include_subdomains",
        /// Remove the preload directive from the Strict-Transport-Security header.
        hsts_preload => "hsts_preload",
    }
}

/// `listener unset`.
#[derive(Debug, Clone, clap::Args)]
pub struct UnsetArgs {
    /// Listener to modify (name or ID).
    #[arg(value_name = "listener")]
    pub listener: String,
    #[command(flatten)]
    pub flags: UnsetFlags,
    #[command(flatten)]
    pub tags: TagUnsetArgs,
    /// Wait for action to complete.
    #[arg(long)]
    pub wait: bool,
}

/// `listener delete`.
#[derive(Debug, Clone, clap::Args)]
pub struct DeleteArgs {
    /// Listener to delete (name or ID).
    #[arg(value_name = "listener")]
    pub listener: String,
    /// Wait for action to complete.
    #[arg(long)]
    pub wait: bool,
}

/// Every listener.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Listeners;

impl Collection for Listeners {
    type Item = Listener;
    type List = ListListenersRequest;
    type Update = ListenerUpdate;
    const KIND: &'static str = "listener";

    async fn get(&self, c: &Clients, id: &str) -> Result<Listener, Status> {
        let req = GetListenerRequest {
            listener_id: id.to_string(),
        };
        Ok(c.listener.clone().get_listener(req).await?.into_inner())
    }

    async fn page(
        &self,
        c: &Clients,
        req: ListListenersRequest,
    ) -> Result<(Vec<Listener>, String), Status> {
        let r = c.listener.clone().list_listeners(req).await?.into_inner();
        Ok((r.listeners, r.next_marker))
    }

    async fn update(
        &self,
        c: &Clients,
        id: &str,
        update: ListenerUpdate,
        unset: Vec<String>,
    ) -> Result<(), Status> {
        let req = UpdateListenerRequest {
            listener_id: id.to_string(),
            listener: Some(update),
            unset,
        };
        c.listener.clone().update_listener(req).await.map(drop)
    }
}

fn sorted_map(m: &HashMap<String, String>) -> Vec<(String, Value)> {
    let mut kv: Vec<(String, Value)> = m.iter().map(|(k, v)| (k.clone(), Value::str(v))).collect();
    kv.sort_by(|a, b| a.0.cmp(&b.0));
    kv
}

/// The fields `listener show` prints, in octaviaclient's order.
pub fn record(l: &Listener) -> Record {
    vec![
        ("admin_state_up", Value::Bool(l.admin_state_up)),
        ("connection_limit", Value::Int(l.connection_limit.into())),
        ("created_at", Value::opt_str(&l.created_at)),
        ("default_pool_id", Value::opt_str(&l.default_pool_id)),
        (
            "default_tls_container_ref",
            Value::opt_str(&l.default_tls_container_ref),
        ),
        ("description", Value::str(&l.description)),
        ("id", Value::str(&l.id)),
        ("insert_headers", Value::Hash(sorted_map(&l.insert_headers))),
        ("l7policies", Value::IdList(l.l7policy_ids.clone())),
        ("loadbalancers", Value::id_list_of(&l.loadbalancer_id)),
        ("name", Value::str(&l.name)),
        (
            "operating_status",
            enum_value::<OperatingStatus>(l.operating_status),
        ),
        ("project_id", Value::str(&l.project_id)),
        ("protocol", enum_value::<Protocol>(l.protocol)),
        ("protocol_port", Value::Int(l.protocol_port.into())),
        (
            "provisioning_status",
            enum_value::<ProvisioningStatus>(l.provisioning_status),
        ),
        ("sni_container_refs", Value::str_list(&l.sni_container_refs)),
        (
            "timeout_client_data",
            Value::Int(l.timeout_client_data.into()),
        ),
        (
            "timeout_member_connect",
            Value::Int(l.timeout_member_connect.into()),
        ),
        (
            "timeout_member_data",
            Value::Int(l.timeout_member_data.into()),
        ),
        (
            "timeout_tcp_inspect",
            Value::Int(l.timeout_tcp_inspect.into()),
        ),
        ("updated_at", Value::opt_str(&l.updated_at)),
        (
            "client_ca_tls_container_ref",
            Value::opt_str(&l.client_ca_tls_container_ref),
        ),
        (
            "client_authentication",
            enum_value::<ClientAuthentication>(l.client_authentication),
        ),
        (
            "client_crl_container_ref",
            Value::opt_str(&l.client_crl_container_ref),
        ),
        ("allowed_cidrs", Value::Lines(l.allowed_cidrs.clone())),
        ("tls_ciphers", Value::opt_str(&l.tls_ciphers)),
        ("tls_versions", Value::str_list(&l.tls_versions)),
        ("alpn_protocols", Value::str_list(&l.alpn_protocols)),
        ("tags", Value::Lines(l.tags.clone())),
        ("hsts_max_age", Value::opt_int(l.hsts_max_age)),
        (
            "hsts_include_subdomains",
            Value::Bool(l.hsts_include_subdomains),
        ),
        ("hsts_preload", Value::Bool(l.hsts_preload)),
        ("provisioning_error", Value::opt_str(&l.provisioning_error)),
    ]
}

/// `Some(value)` unless the option is absent or asks to clear (then its field is unset).
fn ref_or_unset(v: &Option<String>, field: &str, unset: &mut Vec<String>) -> Option<String> {
    match v {
        Some(s) if is_none_word(s) => {
            unset.push(field.to_string());
            None
        }
        other => other.clone(),
    }
}

fn kv_map(kv: &KvList) -> HashMap<String, String> {
    kv.0.iter().cloned().collect()
}

/// Runs one listener command.
pub async fn run(c: &Clients, cmd: ListenerCommand) -> anyhow::Result<()> {
    match cmd {
        ListenerCommand::Create(a) => create(c, a).await,
        ListenerCommand::List(a) => list_cmd(c, a).await,
        ListenerCommand::Show(a) => {
            let l = Listeners.find(c, &a.listener).await?;
            emit_one(&record(&l), &a.output)
        }
        ListenerCommand::Set(a) => set(c, a).await,
        ListenerCommand::Unset(a) => {
            let Some(fields) = fields_to_unset(a.flags.fields(), &a.tags) else {
                return Ok(());
            };
            let l = Listeners.find(c, &a.listener).await?;
            Listeners.unset(c, &l, fields, &a.tags, a.wait).await
        }
        ListenerCommand::Delete(a) => {
            let l = Listeners.find(c, &a.listener).await?;
            let req = DeleteListenerRequest {
                listener_id: l.id.clone(),
            };
            Listeners
                .delete_and_wait(c, &l.id, c.listener.clone().delete_listener(req), a.wait)
                .await
        }
        ListenerCommand::Stats(StatsCommand::Show(a)) => {
            let l = Listeners.find(c, &a.listener).await?;
            let req = GetListenerStatsRequest {
                listener_id: l.id.clone(),
            };
            let stats = api(c.listener.clone().get_listener_stats(req).await)?;
            emit_one(&loadbalancer::stats_record(&stats), &a.output)
        }
    }
}

async fn create(c: &Clients, a: CreateArgs) -> anyhow::Result<()> {
    let o = &a.opts;
    let port = a.protocol_port.unwrap_or_default();
    check_port("protocol-port", port)?;
    if (o.hsts_preload || o.hsts_include_subdomains) && o.hsts_max_age.is_none() {
        anyhow::bail!(
            "Argument hsts_max_age is required when using hsts_preload or hsts_include_subdomains arguments."
        );
    }
    let lb = LoadBalancers.find(c, &a.loadbalancer).await?;
    let default_pool_id = match &o.default_pool {
        Some(p) => Pools.find(c, p).await?.id,
        None => String::new(),
    };
    let create = ListenerCreate {
        loadbalancer_id: lb.id.clone(),
        protocol: a.protocol.map_or(0, |p| p as i32),
        protocol_port: port,
        name: o.name.clone().unwrap_or_default(),
        description: o.description.clone().unwrap_or_default(),
        admin_state_up: o.admin.value(),
        connection_limit: o.connection_limit,
        default_pool_id,
        default_pool: None,
        l7policies: vec![],
        insert_headers: o.insert_headers.as_ref().map(kv_map).unwrap_or_default(),
        timeout_client_data: o.timeout_client_data,
        timeout_member_connect: o.timeout_member_connect,
        timeout_member_data: o.timeout_member_data,
        timeout_tcp_inspect: o.timeout_tcp_inspect,
        default_tls_container_ref: o.default_tls_container_ref.clone().unwrap_or_default(),
        sni_container_refs: o.sni_container_refs.clone().unwrap_or_default(),
        client_authentication: o.client_authentication.map_or(0, |v| v as i32),
        client_ca_tls_container_ref: o.client_ca_tls_container_ref.clone().unwrap_or_default(),
        client_crl_container_ref: o.client_crl_container_ref.clone().unwrap_or_default(),
        allowed_cidrs: o.allowed_cidrs.clone(),
        tls_ciphers: o.tls_ciphers.clone().unwrap_or_default(),
        tls_versions: o.tls_versions.clone(),
        alpn_protocols: o.alpn_protocols.clone(),
        hsts_max_age: o.hsts_max_age,
        hsts_include_subdomains: o.hsts_include_subdomains,
        hsts_preload: o.hsts_preload,
        tags: o.tags.for_create(),
        project_id: String::new(),
    };
    let req = CreateListenerRequest {
        listener: Some(create),
    };
    let mut l = api(c.listener.clone().create_listener(req).await)?;
    if o.wait {
        LoadBalancers.wait_active(c, &lb.id).await?;
        l = checked(Listeners.get(c, &l.id).await)?;
    }
    emit_one(&record(&l), &a.output)
}

async fn list_cmd(c: &Clients, a: ListArgs) -> anyhow::Result<()> {
    let loadbalancer_id = match &a.loadbalancer {
        Some(lb) => LoadBalancers.find(c, lb).await?.id,
        None => String::new(),
    };
    let req = ListListenersRequest {
        options: Some(ListOptions {
            project_id: a.project.clone().unwrap_or_default(),
            name: a.name.clone().unwrap_or_default(),
            admin_state_up: a.admin.value(),
            ..Default::default()
        }),
        loadbalancer_id,
        ..Default::default()
    };
    Listeners
        .print_list(c, req, &a.tag_filter, LIST_COLUMNS, record, &a.output)
        .await
}

async fn set(c: &Clients, a: SetArgs) -> anyhow::Result<()> {
    let o = &a.opts;
    let l = Listeners.find(c, &a.listener).await?;
    let mut unset = vec![];
    let default_pool_id = match &o.default_pool {
        Some(p) if is_none_word(p) => {
            unset.push("default_pool_id".to_string());
            None
        }
        Some(p) => Some(Pools.find(c, p).await?.id),
        None => None,
    };
    let list = |v: &Vec<String>| (!v.is_empty()).then(|| StringList { values: v.clone() });
    let update = ListenerUpdate {
        name: o.name.clone(),
        description: o.description.clone(),
        admin_state_up: o.admin.value(),
        connection_limit: o.connection_limit,
        default_pool_id,
        insert_headers: o.insert_headers.as_ref().map(|kv| StringMap {
            entries: kv_map(kv),
        }),
        timeout_client_data: o.timeout_client_data,
        timeout_member_connect: o.timeout_member_connect,
        timeout_member_data: o.timeout_member_data,
        timeout_tcp_inspect: o.timeout_tcp_inspect,
        default_tls_container_ref: o.default_tls_container_ref.clone(),
        sni_container_refs: o
            .sni_container_refs
            .clone()
            .map(|values| StringList { values }),
        client_authentication: o.client_authentication.map_or(0, |v| v as i32),
        client_ca_tls_container_ref: ref_or_unset(
            &o.client_ca_tls_container_ref,
            "client_ca_tls_container_ref",
            &mut unset,
        ),
        client_crl_container_ref: ref_or_unset(
            &o.client_crl_container_ref,
            "client_crl_container_ref",
            &mut unset,
        ),
        allowed_cidrs: list(&o.allowed_cidrs),
        tls_ciphers: o.tls_ciphers.clone(),
        tls_versions: list(&o.tls_versions),
        alpn_protocols: list(&o.alpn_protocols),
        hsts_max_age: o.hsts_max_age,
        hsts_include_subdomains: o.hsts_include_subdomains.then_some(true),
        hsts_preload: o.hsts_preload.then_some(true),
        tags: o.tags.for_set(&l.tags),
    };
    Listeners
        .update_and_wait(c, &l.id, update, unset, o.wait)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_formats_headers_and_refs() {
        let l = Listener {
            id: "l1".into(),
            loadbalancer_id: "lb1".into(),
            protocol: Protocol::Http as i32,
            protocol_port: 80,
            insert_headers: [
                ("X-Forwarded-Port".to_string(), "true".to_string()),
                ("X-Forwarded-For".to_string(), "true".to_string()),
            ]
            .into(),
            tls_versions: vec!["TLSv1.2".into(), "TLSv1.3".into()],
            ..Default::default()
        };
        let r = record(&l);
        let get = |k: &str| r.iter().find(|(n, _)| *n == k).unwrap().1.clone();
        assert_eq!(
            get("insert_headers").human(),
            "X-Forwarded-For=true\nX-Forwarded-Port=true"
        );
        assert_eq!(get("loadbalancers").human(), "lb1");
        assert_eq!(get("protocol"), Value::str("HTTP"));
        assert_eq!(get("tls_versions").human(), "['TLSv1.2', 'TLSv1.3']");
        assert_eq!(get("default_pool_id"), Value::Null);
        assert_eq!(get("hsts_max_age"), Value::Null);
        assert_eq!(r.len(), 34);
    }

    #[test]
    fn unset_flags_name_api_fields() {
        let f = UnsetFlags {
            default_pool: true,
            insert_headers: true,
            hsts_max_age: true,
            ..Default::default()
        };
        assert_eq!(
            f.fields(),
            vec!["default_pool_id", "insert_headers", "hsts_max_age"]
        );
    }
}
