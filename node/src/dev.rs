//! `fulcrum dev`: a single-node Fulcrum with everything embedded, for trying it out. The
//! first start creates the data dir, a node config and an admin token, prints the token
//! once and writes the CLI's config file so that `fulcrum loadbalancer ...` works with no flags.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use rand::RngCore;

use crate::cli::CliConfigFile;
use crate::config::{NodeConfig, TokenConfig, VipSubnetConfig};

/// Options of `fulcrum dev`.
#[derive(Debug, Clone, clap::Args)]
pub struct DevArgs {
    /// Where the node keeps its data, config and admin token.
    #[arg(long, default_value = ".fulcrum-dev")]
    pub data_dir: PathBuf,
    /// Admin API address.
    #[arg(long, default_value = "127.0.0.1:9876")]
    pub admin_listen: SocketAddr,
    /// Raft peer address.
    #[arg(long, default_value = "127.0.0.1:9877")]
    pub peer_listen: SocketAddr,
    /// Prometheus metrics address.
    #[arg(long, default_value = "127.0.0.1:9878")]
    pub metrics_listen: SocketAddr,
    /// Do not write the CLI config file (~/.config/fulcrum/cli.toml or $FULCRUM_CONFIG).
    #[arg(long)]
    pub no_cli_config: bool,
}

/// The node config `fulcrum dev` runs with: one node, loopback VIPs from `private-subnet`.
fn dev_config(args: &DevArgs, token_hash: String) -> NodeConfig {
    NodeConfig {
        node_id: 1,
        data_dir: args.data_dir.join("node"),
        admin_listen: args.admin_listen,
        peer_listen: args.peer_listen,
        peer_advertise: None,
        metrics_listen: Some(args.metrics_listen),
        cluster: [("1".to_string(), args.peer_listen.to_string())].into(),
        tokens: vec![TokenConfig {
            sha256: token_hash,
            project_id: "admin".into(),
            role: fulcrum_control::api::Role::Admin,
        }],
        vip_subnets: vec![VipSubnetConfig {
            name: "private-subnet".into(),
            cidr: "127.0.10.0/24".into(),
            first: Some("127.0.10.10".into()),
            last: Some("127.0.10.250".into()),
            interface: String::new(),
        }],
        quota_defaults: Default::default(),
        raft: Default::default(),
        dataplane: Default::default(),
    }
}

/// Prepares the dev data dir (the first start creates the admin token; every start writes
/// the node config from the options) and returns the config path and the admin token.
pub fn prepare(args: &DevArgs) -> anyhow::Result<(PathBuf, String)> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create {}", args.data_dir.display()))?;
    let config_path = args.data_dir.join("node.toml");
    let token_path = args.data_dir.join("admin-token");
    if !token_path.exists() {
        let mut bytes = [0u8; 24];
        rand::rng().fill_bytes(&mut bytes);
        write_private(&token_path, &hex::encode(bytes))?;
    }
    let token = std::fs::read_to_string(&token_path)
        .with_context(|| format!("cannot read the admin token from {}", token_path.display()))?
        .trim()
        .to_string();
    // The config follows this start's options; the token and the data stay.
    let config = dev_config(args, fulcrum_control::api::hash_token(&token));
    let text = toml::to_string(&config).context("encoding the dev config")?;
    std::fs::write(&config_path, text)
        .with_context(|| format!("cannot write {}", config_path.display()))?;
    if !args.no_cli_config {
        let cli = CliConfigFile {
            endpoint: format!("http://{}", args.admin_listen),
            token: token.clone(),
        };
        cli.write(&CliConfigFile::default_path())?;
    }
    Ok((config_path, token))
}

fn write_private(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}
