//! Where the CLI connects and who it is: flags, environment, the client config file that
//! `fulcrum dev` writes; the gRPC clients with the bearer-token interceptor; gRPC errors turned
//! into clean messages.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use fulcrum_proto::v1::{
    cluster_service_client::ClusterServiceClient,
    health_monitor_service_client::HealthMonitorServiceClient,
    l7_policy_service_client::L7PolicyServiceClient, l7_rule_service_client::L7RuleServiceClient,
    listener_service_client::ListenerServiceClient,
    load_balancer_service_client::LoadBalancerServiceClient,
    member_service_client::MemberServiceClient, pool_service_client::PoolServiceClient,
    quota_service_client::QuotaServiceClient,
};
use serde::{Deserialize, Serialize};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

/// The admin endpoint used when neither a flag, the environment nor the config file names one.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:9876";

/// Where the CLI connects and who it is. Each setting comes from its flag, then the environment
/// (`FULCRUM_ENDPOINT`, `FULCRUM_TOKEN`), then the client config file that `fulcrum dev` writes
/// ([`CliConfigFile::default_path`]); the endpoint finally defaults to [`DEFAULT_ENDPOINT`].
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ConnectionArgs {
    /// Admin API endpoint, e.g. http://127.0.0.1:9876.
    #[arg(
        long,
        global = true,
        env = "FULCRUM_ENDPOINT",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub endpoint: Option<String>,
    /// Bearer token sent with every call.
    #[arg(
        long,
        global = true,
        env = "FULCRUM_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
}

/// The endpoint and token the CLI ends up using.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedConnection {
    /// URL with a scheme.
    pub endpoint: String,
    /// Bearer token, if any.
    pub token: Option<String>,
}

impl ConnectionArgs {
    /// Fills what the flags and environment left open from the config file at `file` (if it
    /// exists), then the defaults.
    pub fn resolve_with(&self, file: &Path) -> anyhow::Result<ResolvedConnection> {
        let from_file = if (self.endpoint.is_none() || self.token.is_none()) && file.exists() {
            Some(CliConfigFile::read(file)?)
        } else {
            None
        };
        let endpoint = self
            .endpoint
            .clone()
            .filter(|e| !e.is_empty())
            .or_else(|| from_file.as_ref().map(|f| f.endpoint.clone()))
            .filter(|e| !e.is_empty())
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
        let token = self
            .token
            .clone()
            .or_else(|| from_file.map(|f| f.token))
            .filter(|t| !t.is_empty());
        Ok(ResolvedConnection {
            endpoint: with_scheme(&endpoint),
            token,
        })
    }

    /// [`Self::resolve_with`] the default config file.
    pub fn resolve(&self) -> anyhow::Result<ResolvedConnection> {
        self.resolve_with(&CliConfigFile::default_path())
    }
}

/// `host:port` becomes `http://host:port`.
fn with_scheme(endpoint: &str) -> String {
    if endpoint.contains("://") {
        endpoint.to_string()
    } else {
        format!("http://{endpoint}")
    }
}

/// The client config file `fulcrum dev` writes (TOML: `endpoint = "..."`, `token = "..."`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CliConfigFile {
    /// Admin API endpoint URL.
    pub endpoint: String,
    /// Bearer token.
    pub token: String,
}

impl CliConfigFile {
    /// `$FULCRUM_CONFIG`, else `$XDG_CONFIG_HOME/fulcrum/cli.toml`, else
    /// `~/.config/fulcrum/cli.toml`.
    pub fn default_path() -> PathBuf {
        if let Some(p) = std::env::var_os("FULCRUM_CONFIG").filter(|p| !p.is_empty()) {
            return PathBuf::from(p);
        }
        let base = std::env::var_os("XDG_CONFIG_HOME")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
            .unwrap_or_else(|| PathBuf::from("."));
        base.join("fulcrum").join("cli.toml")
    }

    /// Writes the file (creating its directory), readable by the owner only.
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let text = toml::to_string(self).context("encoding the client config")?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("writing {}", path.display()))?;
        f.write_all(text.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }

    /// Reads the file.
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }
}

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Debug, Clone)]
pub struct Auth(Option<MetadataValue<Ascii>>);

impl Interceptor for Auth {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

/// A channel with the token interceptor.
pub type Svc = InterceptedService<Channel, Auth>;

/// One client per admin service, sharing one connection. Clients are cheap to clone.
#[derive(Debug, Clone)]
pub struct Clients {
    /// Load balancers.
    pub lb: LoadBalancerServiceClient<Svc>,
    /// Listeners.
    pub listener: ListenerServiceClient<Svc>,
    /// Pools.
    pub pool: PoolServiceClient<Svc>,
    /// Members.
    pub member: MemberServiceClient<Svc>,
    /// Health monitors.
    pub hm: HealthMonitorServiceClient<Svc>,
    /// L7 policies.
    pub l7policy: L7PolicyServiceClient<Svc>,
    /// L7 rules.
    pub l7rule: L7RuleServiceClient<Svc>,
    /// Quotas.
    pub quota: QuotaServiceClient<Svc>,
    /// Cluster membership.
    pub cluster: ClusterServiceClient<Svc>,
}

impl Clients {
    /// Connects to the endpoint the arguments name.
    pub async fn connect(conn: &ConnectionArgs) -> anyhow::Result<Self> {
        let resolved = conn.resolve()?;
        Self::connect_to(&resolved).await
    }

    /// Connects to a resolved endpoint.
    pub async fn connect_to(conn: &ResolvedConnection) -> anyhow::Result<Self> {
        let auth = match &conn.token {
            Some(t) => Some(
                format!("Bearer {t}")
                    .parse::<MetadataValue<Ascii>>()
                    .map_err(|_| anyhow!("the token holds characters not allowed in a header"))?,
            ),
            None => None,
        };
        let endpoint = Endpoint::from_shared(conn.endpoint.clone())
            .with_context(|| format!("invalid endpoint {:?}", conn.endpoint))?
            .connect_timeout(Duration::from_secs(5));
        let channel = endpoint.connect().await.map_err(|e| {
            anyhow!(
                "cannot connect to the Fulcrum API at {}: {}",
                conn.endpoint,
                error_chain(&e)
            )
        })?;
        let svc = |c: Channel| InterceptedService::new(c, Auth(auth.clone()));
        Ok(Clients {
            lb: LoadBalancerServiceClient::new(svc(channel.clone())),
            listener: ListenerServiceClient::new(svc(channel.clone())),
            pool: PoolServiceClient::new(svc(channel.clone())),
            member: MemberServiceClient::new(svc(channel.clone())),
            hm: HealthMonitorServiceClient::new(svc(channel.clone())),
            l7policy: L7PolicyServiceClient::new(svc(channel.clone())),
            l7rule: L7RuleServiceClient::new(svc(channel.clone())),
            quota: QuotaServiceClient::new(svc(channel.clone())),
            cluster: ClusterServiceClient::new(svc(channel)),
        })
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        let t = inner.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = inner.source();
    }
    s
}

/// The gRPC name of a status code (`INVALID_ARGUMENT`).
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// A failed call, printed as `CODE: message`.
#[derive(Debug)]
pub struct ApiError(pub Status);

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let msg = self.0.message();
        if msg.is_empty() {
            write!(f, "{}", code_name(self.0.code()))
        } else {
            write!(f, "{}: {}", code_name(self.0.code()), msg)
        }
    }
}

impl std::error::Error for ApiError {}

/// Turns a call's result into the message or a clean error.
pub fn api<T>(r: Result<tonic::Response<T>, Status>) -> anyhow::Result<T> {
    r.map(tonic::Response::into_inner)
        .map_err(|s| anyhow::Error::new(ApiError(s)))
}

/// Turns a fetched value's result into the value or a clean error.
pub fn checked<T>(r: Result<T, Status>) -> anyhow::Result<T> {
    r.map_err(|s| anyhow::Error::new(ApiError(s)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_file_round_trips_and_fills_gaps() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/cli.toml");
        let file = CliConfigFile {
            endpoint: "http://10.0.0.1:9876".into(),
            token: "s3cret".into(),
        };
        file.write(&path).unwrap();
        assert_eq!(CliConfigFile::read(&path).unwrap(), file);
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );

        let none = ConnectionArgs::default();
        let r = none.resolve_with(&path).unwrap();
        assert_eq!(r.endpoint, "http://10.0.0.1:9876");
        assert_eq!(r.token.as_deref(), Some("s3cret"));

        let flags = ConnectionArgs {
            endpoint: Some("127.0.0.1:1234".into()),
            token: None,
        };
        let r = flags.resolve_with(&path).unwrap();
        assert_eq!(r.endpoint, "http://127.0.0.1:1234");
        assert_eq!(r.token.as_deref(), Some("s3cret"));

        let r = none.resolve_with(&dir.path().join("missing.toml")).unwrap();
        assert_eq!(r.endpoint, DEFAULT_ENDPOINT);
        assert_eq!(r.token, None);
    }

    #[test]
    fn errors_print_code_and_message() {
        let e = ApiError(Status::invalid_argument("protocol_port: must be 1-65535"));
        assert_eq!(
            e.to_string(),
            "INVALID_ARGUMENT: protocol_port: must be 1-65535"
        );
        assert_eq!(ApiError(Status::not_found("")).to_string(), "NOT_FOUND");
    }

    #[test]
    fn interceptor_adds_bearer_token() {
        let mut auth = Auth(Some("Bearer t0k".parse().unwrap()));
        let req = auth.call(tonic::Request::new(())).unwrap();
        assert_eq!(req.metadata().get("authorization").unwrap(), "Bearer t0k");
        let req = Auth(None).call(tonic::Request::new(())).unwrap();
        assert!(req.metadata().get("authorization").is_none());
    }
}
