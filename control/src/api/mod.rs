//! The admin API: one gRPC service per resource, all implemented by [`Api`]. A call is
//! authenticated, checked against the caller's project, turned into a replicated
//! [`Command`] (ids and timestamps chosen here) and answered with what applying it produced.

mod auth;
mod cluster;
mod healthmonitor;
mod l7policy;
mod l7rule;
mod listener;
mod listing;
mod loadbalancer;
mod member;
mod new_objects;
mod pool;
mod quota;
mod status_tree;
mod store;
mod vip;

use std::sync::Arc;

use fulcrum_proto::internal::{
    command, command_result, Command, CommandResult, ErrorCode, Objects,
};
use fulcrum_proto::v1::{Quota, Stats};
use tonic::{Request, Status};

pub use auth::{hash_token, Authenticator, Caller, Role, TokenEntry};
pub use listing::{Listed, MAX_PAGE};
pub use store::{LocalStore, Store, StoreError};
pub use vip::{VipSubnet, VipSubnetError};

/// Live traffic counters, fed by the data plane (zeros until it reports).
pub trait StatsSource: Send + Sync + 'static {
    /// Counters of one listener, summed over the nodes.
    fn listener_stats(&self, listener_id: &str) -> Stats;
}

/// Settings of the API layer.
#[derive(Debug, Clone, Default)]
pub struct ApiConfig {
    /// Accepted bearer tokens.
    pub tokens: Vec<TokenEntry>,
    /// Address pools VIPs are allocated from (`vip_subnet_id` names one).
    pub vip_subnets: Vec<VipSubnet>,
}

/// Every admin API service over one replicated store.
pub struct Api<S> {
    inner: Arc<Inner<S>>,
}

impl<S> Clone for Api<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<S> {
    store: S,
    auth: Authenticator,
    subnets: Vec<VipSubnet>,
    stats: Option<Arc<dyn StatsSource>>,
}

impl<S: Store> Api<S> {
    /// The API over `store`; `stats` feeds the stats calls (zeros without it).
    pub fn new(store: S, config: ApiConfig, stats: Option<Arc<dyn StatsSource>>) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                auth: Authenticator::new(&config.tokens),
                subnets: config.vip_subnets,
                stats,
            }),
        }
    }

    /// The store this API proposes to.
    pub fn store(&self) -> &S {
        &self.inner.store
    }

    fn caller<T>(&self, request: &Request<T>) -> Result<Caller, Status> {
        self.inner.auth.authenticate(request.metadata())
    }

    /// Runs `f` on a linearizable view of the model.
    async fn read<R, F>(&self, f: F) -> Result<R, Status>
    where
        R: Send + 'static,
        F: FnOnce(&crate::State) -> R + Send + 'static,
    {
        Ok(self.inner.store.read(f).await?)
    }

    /// Like [`Api::read`] for closures that can fail with a status.
    async fn read_with<R, F>(&self, f: F) -> Result<R, Status>
    where
        R: Send + 'static,
        F: FnOnce(&crate::State) -> Result<R, Status> + Send + 'static,
    {
        self.read(f).await?
    }

    /// Proposes an operation. A client that sets `x-request-id` metadata gets its retries of
    /// the same request applied once (the model remembers the result per id); without it the
    /// command carries no id and nothing is remembered.
    async fn propose<T>(
        &self,
        request: &Request<T>,
        caller: &Caller,
        op: command::Op,
    ) -> Result<command_result::Result, Status> {
        let request_id = match request
            .metadata()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
        {
            Some(id) if !id.is_empty() => format!("{}:{id}", caller.project_id),
            _ => String::new(),
        };
        let command = Command {
            request_id,
            now: now(),
            op: Some(op),
        };
        let CommandResult { result } = self.inner.store.propose(command).await?;
        match result {
            Some(command_result::Result::Error(e)) => Err(error_status(&e)),
            Some(r) => Ok(r),
            None => Err(Status::internal("empty command result")),
        }
    }

    /// Proposes an operation that answers with objects.
    async fn propose_objects<T>(
        &self,
        request: &Request<T>,
        caller: &Caller,
        op: command::Op,
    ) -> Result<Objects, Status> {
        match self.propose(request, caller, op).await? {
            command_result::Result::Objects(o) => Ok(o),
            _ => Err(Status::internal("unexpected command result")),
        }
    }

    /// Proposes an operation that answers with a quota.
    async fn propose_quota<T>(
        &self,
        request: &Request<T>,
        caller: &Caller,
        op: command::Op,
    ) -> Result<Quota, Status> {
        match self.propose(request, caller, op).await? {
            command_result::Result::Quota(q) => Ok(q),
            _ => Err(Status::internal("unexpected command result")),
        }
    }

    fn listener_stats(&self, listener_id: &str) -> Stats {
        self.inner
            .stats
            .as_ref()
            .map(|s| s.listener_stats(listener_id))
            .unwrap_or_default()
    }
}

/// The gRPC status of a refused command.
fn error_status(e: &fulcrum_proto::internal::CommandError) -> Status {
    let message = e.message.clone();
    match ErrorCode::try_from(e.code).unwrap_or(ErrorCode::Unspecified) {
        ErrorCode::InvalidArgument => Status::invalid_argument(message),
        ErrorCode::NotFound => Status::not_found(message),
        ErrorCode::AlreadyExists => Status::already_exists(message),
        ErrorCode::FailedPrecondition => Status::failed_precondition(message),
        ErrorCode::ResourceExhausted => Status::resource_exhausted(message),
        ErrorCode::Unspecified => Status::internal(message),
    }
}

/// Current time in RFC 3339 (seconds), as Octavia shows `created_at`.
fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// The first object of a kind in a command result.
fn first<T>(items: Vec<T>, what: &str) -> Result<T, Status> {
    items
        .into_iter()
        .next()
        .ok_or_else(|| Status::internal(format!("command result has no {what}")))
}

impl<S: Store> Api<S> {
    /// An object the caller may see (NOT_FOUND otherwise), rendered.
    async fn visible_one<T: Listed + 'static>(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<T, Status> {
        let (caller, id) = (caller.clone(), id.to_string());
        self.read_with(move |s| listing::visible::<T>(s, &caller, &id))
            .await
    }

    /// The write path of update and delete calls: the caller may write and see object `id` of
    /// type `T`; then `op` is proposed.
    async fn change<T: Listed + 'static, R>(
        &self,
        request: &Request<R>,
        id: &str,
        op: command::Op,
    ) -> Result<Objects, Status> {
        let caller = self.caller(request)?;
        caller.require_write()?;
        self.visible_one::<T>(&caller, id).await?;
        self.propose_objects(request, &caller, op).await
    }

    /// The write path of create calls under a parent: the caller may write and see the
    /// parent; returns the caller and the parent (whose project the new object joins).
    async fn parent_for_create<P: Listed + 'static, R>(
        &self,
        request: &Request<R>,
        field: &str,
        parent_id: &str,
    ) -> Result<(Caller, P), Status> {
        let caller = self.caller(request)?;
        caller.require_write()?;
        if parent_id.is_empty() {
            return Err(Status::invalid_argument(format!("{field}: is required")));
        }
        let parent = self.visible_one::<P>(&caller, parent_id).await?;
        Ok((caller, parent))
    }
}
