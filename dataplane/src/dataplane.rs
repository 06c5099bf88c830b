//! The [`Dataplane`] handle: converges the running listeners, pools and
//! monitors to a [`DataplaneConfig`].
//!
//! `apply` diffs by listener id:
//! * same config: untouched (not even the routing snapshot is swapped);
//! * same (vip, port, protocol), other settings changed: the routing snapshot is
//!   swapped atomically; the socket and established connections stay;
//! * (vip, port, protocol) changed: the old socket is closed (its connections
//!   drain) and a new one bound;
//! * gone: the socket is closed and its connections drain.
//!
//! Pools are shared by id across listeners and carried forward while their
//! config is unchanged; member health and connection counts are carried by
//! member id even when a pool changes.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::ArcSwap;
use http::{HeaderValue, StatusCode};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use crate::access_log::AccessLogSwitch;
use crate::balancer::MemberState;
use crate::client_stream::Acceptor;
use crate::config::{DataplaneConfig, L7Action, ListenerConfig, ListenerProtocol, PoolConfig};
use crate::error::DataplaneError;
use crate::health::{self, HealthEvent};
use crate::listener::{self, ListenerShared, RouteAction, Routes};
use crate::pool::PoolRuntime;
use crate::proxy_protocol::ProxyVersion;
use crate::status::{ListenerStats, OperatingStatus, StatsCounters};
use crate::workers::Workers;
use crate::{http as l7http, l7, tcp, udp};

/// What `apply` did to one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerChange {
    /// Bound and started.
    Created,
    /// Address or protocol changed: old socket closed (draining), new one bound.
    Rebound,
    /// Routing or settings swapped in place; socket and connections kept.
    Updated,
    /// Identical config: nothing touched.
    Unchanged,
    /// No longer configured: socket closed, connections draining.
    Removed,
}

/// The outcome of `apply` for one listener.
#[derive(Debug)]
pub struct ApplyResult {
    pub listener_id: String,
    /// `Err`: the listener could not be converged (e.g. cannot bind, bad regex);
    /// if it was running before with another config, that config keeps serving
    /// unless its address had to be released.
    pub outcome: Result<ListenerChange, DataplaneError>,
}

/// A running listener.
struct ListenerHandle {
    config: ListenerConfig,
    shared: Arc<ListenerShared>,
    stop: watch::Sender<bool>,
    /// The accept (UDP: receive) loops, one per worker.
    tasks: Vec<JoinHandle<()>>,
    local_addr: SocketAddr,
}

impl ListenerHandle {
    /// Stops accepting and waits until the sockets are closed.
    async fn close(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

#[derive(Default)]
struct State {
    listeners: HashMap<String, ListenerHandle>,
    pools: HashMap<String, Arc<PoolRuntime>>,
    members: HashMap<String, Arc<MemberState>>,
    shut_down: bool,
    /// Counters of the listeners stopped at shutdown, whose connections are draining.
    draining: Vec<Arc<ListenerShared>>,
}

struct Inner {
    state: Mutex<State>,
    /// Serialises `apply` calls (which await while closing sockets).
    apply_lock: tokio::sync::Mutex<()>,
    health_tx: broadcast::Sender<HealthEvent>,
    /// Access logs on or off, shared by every listener.
    access_log: Arc<AccessLogSwitch>,
    /// The threads the listeners and their connections run on.
    workers: Workers,
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The data plane of one node. Cheap to clone; all clones drive the same listeners.
#[derive(Clone)]
pub struct Dataplane {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Dataplane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.inner.state();
        f.debug_struct("Dataplane")
            .field("listeners", &state.listeners.keys().collect::<Vec<_>>())
            .field("pools", &state.pools.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Dataplane {
    /// Creates an empty data plane with one worker thread per core (see
    /// [`Dataplane::with_workers`]).
    ///
    /// # Panics
    /// When the worker threads cannot be started.
    pub fn new(shutdown: impl Future<Output = ()> + Send + 'static) -> Self {
        Self::with_workers(crate::workers::default_count(), shutdown)
            .expect("cannot start the data plane's worker threads")
    }

    /// Creates an empty data plane whose listeners and connections run on
    /// `workers` threads of their own, each with a current-thread runtime;
    /// every listener gets one socket per worker (an `SO_REUSEPORT` group; for
    /// UDP the kernel keeps each client address on one socket, so its flow
    /// stays on one worker). Health monitors and `apply` run on the caller's
    /// runtime.
    ///
    /// When `shutdown` completes, every listener stops accepting (established
    /// connections drain) and monitors stop. Dropping the last clone ends the
    /// worker threads and cuts the connections still open.
    /// Must be called within a tokio runtime.
    pub fn with_workers(
        workers: NonZeroUsize,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<Self, DataplaneError> {
        let workers = Workers::start(workers).map_err(DataplaneError::Workers)?;
        let (health_tx, _) = broadcast::channel(1024);
        let inner = Arc::new(Inner {
            state: Mutex::new(State::default()),
            apply_lock: tokio::sync::Mutex::new(()),
            health_tx,
            access_log: Arc::default(),
            workers,
        });
        let reaper = Arc::downgrade(&inner);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(crate::member_pool::MEMBER_IDLE / 6);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(inner) = reaper.upgrade() else {
                    return;
                };
                let pools: Vec<Arc<PoolRuntime>> = {
                    let state = inner.state();
                    if state.shut_down {
                        return;
                    }
                    state.pools.values().cloned().collect()
                };
                for p in pools {
                    p.reap_idle();
                }
            }
        });
        let weak = Arc::downgrade(&inner);
        tokio::spawn(async move {
            shutdown.await;
            if let Some(inner) = weak.upgrade() {
                let mut state = inner.state();
                state.shut_down = true;
                let stopped: Vec<ListenerHandle> =
                    state.listeners.drain().map(|(_, l)| l).collect();
                for l in stopped {
                    let _ = l.stop.send(true);
                    state.draining.push(l.shared.clone());
                }
                for (_, p) in state.pools.drain() {
                    p.stop_monitor();
                }
                tracing::info!("data plane shut down");
            }
        });
        Ok(Self { inner })
    }

    /// Converges to `config`; one result per listener in `config` (in order),
    /// then one per removed listener.
    pub async fn apply(&self, config: DataplaneConfig) -> Vec<ApplyResult> {
        let _serial = self.inner.apply_lock.lock().await;
        let mut results: Vec<ApplyResult> = Vec::with_capacity(config.listeners.len());
        if self.inner.state().shut_down {
            return config
                .listeners
                .into_iter()
                .map(|l| ApplyResult {
                    listener_id: l.id,
                    outcome: Err(DataplaneError::ShutDown),
                })
                .collect();
        }

        // 1. Pools: reuse unchanged ones, build the others (not yet monitored).
        let mut wanted: Vec<ListenerConfig> = Vec::with_capacity(config.listeners.len());
        let mut seen = HashSet::new();
        for l in config.listeners {
            if seen.insert(l.id.clone()) {
                wanted.push(l);
            } else {
                results.push(ApplyResult {
                    listener_id: l.id,
                    outcome: Err(DataplaneError::InvalidConfig {
                        field: "listener.id",
                        reason: "duplicate listener id".into(),
                    }),
                });
            }
        }
        let (pools, pool_errors, fresh) = self.build_pools(&wanted);

        // 2. Classify listeners; close what must close before binding anything.
        enum Plan {
            Keep,
            Swap(Box<Routes>),
            Bind { rebind: bool },
            Fail(DataplaneError),
        }
        let mut plans = Vec::with_capacity(wanted.len());
        let mut to_close = Vec::new();
        {
            let mut state = self.inner.state();
            let removed: Vec<String> = state
                .listeners
                .keys()
                .filter(|id| !seen.contains(*id))
                .cloned()
                .collect();
            for id in removed {
                if let Some(h) = state.listeners.remove(&id) {
                    to_close.push(h);
                }
                results.push(ApplyResult {
                    listener_id: id,
                    outcome: Ok(ListenerChange::Removed),
                });
            }
            for cfg in &wanted {
                let plan = match (state.listeners.get(&cfg.id), check_pools(cfg, &pool_errors)) {
                    (_, Err(e)) => Plan::Fail(e),
                    (Some(old), Ok(())) if old.config == *cfg => Plan::Keep,
                    (Some(old), Ok(())) if bind_key(&old.config) == bind_key(cfg) => {
                        match build_routes(cfg, &pools, old.local_addr.port()) {
                            Ok(r) => Plan::Swap(Box::new(r)),
                            Err(e) => Plan::Fail(e),
                        }
                    }
                    (Some(_), Ok(())) => {
                        to_close.push(state.listeners.remove(&cfg.id).expect("present"));
                        Plan::Bind { rebind: true }
                    }
                    (None, Ok(())) => Plan::Bind { rebind: false },
                };
                plans.push(plan);
            }
        }
        let mut carried_stats: HashMap<String, Arc<StatsCounters>> = HashMap::new();
        for h in to_close {
            carried_stats.insert(h.config.id.clone(), h.shared.stats.clone());
            h.close().await;
        }

        // 3. Swap, bind, start.
        let mut state = self.inner.state();
        for (cfg, plan) in wanted.into_iter().zip(plans) {
            let id = cfg.id.clone();
            let outcome = match plan {
                Plan::Keep => Ok(ListenerChange::Unchanged),
                Plan::Fail(e) => Err(e),
                Plan::Swap(routes) => {
                    let h = state.listeners.get_mut(&id).expect("kept listener");
                    h.shared.routes.store(Arc::from(routes));
                    h.config = cfg;
                    Ok(ListenerChange::Updated)
                }
                Plan::Bind { rebind } => {
                    let stats = carried_stats.remove(&id).unwrap_or_default();
                    match start_listener(
                        cfg,
                        &pools,
                        stats,
                        &self.inner.access_log,
                        &self.inner.workers,
                    ) {
                        Ok(h) => {
                            state.listeners.insert(id.clone(), h);
                            Ok(if rebind {
                                ListenerChange::Rebound
                            } else {
                                ListenerChange::Created
                            })
                        }
                        Err(e) => Err(e),
                    }
                }
            };
            if let Err(e) = &outcome {
                tracing::warn!(listener = %id, error = %e, "listener not converged");
            }
            results.push(ApplyResult {
                listener_id: id,
                outcome,
            });
        }

        // 4. Keep exactly the pools live routes use; monitor the new ones.
        let mut live: HashMap<String, Arc<PoolRuntime>> = HashMap::new();
        for h in state.listeners.values() {
            let routes = h.shared.routes.load();
            for p in routes_pools(&routes) {
                live.entry(p.config.id.clone()).or_insert_with(|| p.clone());
            }
        }
        for (id, old) in state.pools.drain() {
            if !live.get(&id).is_some_and(|p| Arc::ptr_eq(p, &old)) {
                old.stop_monitor();
            }
        }
        for p in fresh {
            if live.get(&p.config.id).is_some_and(|l| Arc::ptr_eq(l, &p)) {
                p.start_monitor(self.inner.health_tx.clone());
            }
        }
        let live_members: HashSet<&str> = live
            .values()
            .flat_map(|p| p.config.members.iter().map(|m| m.id.as_str()))
            .collect();
        let members = std::mem::take(&mut state.members);
        state.members = members
            .into_iter()
            .filter(|(id, _)| live_members.contains(id.as_str()))
            .collect();
        state.pools = live;
        results
    }

    /// Builds the pool runtimes the wanted listeners need.
    #[allow(clippy::type_complexity)]
    fn build_pools(
        &self,
        wanted: &[ListenerConfig],
    ) -> (
        HashMap<String, Arc<PoolRuntime>>,
        HashMap<String, DataplaneError>,
        Vec<Arc<PoolRuntime>>,
    ) {
        let mut state = self.inner.state();
        let mut pools = HashMap::new();
        let mut errors = HashMap::new();
        let mut fresh = Vec::new();
        for cfg in wanted.iter().flat_map(|l| l.pools()) {
            if pools.contains_key(&cfg.id) || errors.contains_key(&cfg.id) {
                continue;
            }
            if let Err(e) = validate_pool(cfg) {
                errors.insert(cfg.id.clone(), e);
                continue;
            }
            let pool = match state.pools.get(&cfg.id) {
                Some(p) if p.config == *cfg => p.clone(),
                prev => {
                    let prev = prev.cloned();
                    let p = PoolRuntime::new(
                        cfg.clone(),
                        &mut state.members,
                        prev.as_deref(),
                        self.inner.workers.count(),
                    );
                    fresh.push(p.clone());
                    p
                }
            };
            pools.insert(cfg.id.clone(), pool);
        }
        (pools, errors, fresh)
    }

    /// Turns access logs on or off for every listener, at once (requests and
    /// connections already under way keep the setting they started with).
    /// Off by default. Records are `tracing` events of target
    /// [`crate::ACCESS_LOG_TARGET`], whose doc lists their fields.
    ///
    /// A node-local setting (the node's `[dataplane] access_log` key), not part
    /// of [`DataplaneConfig`], which is derived from the replicated model and
    /// equal on every node.
    pub fn set_access_log(&self, on: bool) {
        self.inner.access_log.set(on);
    }

    /// Whether access logs are on.
    pub fn access_log(&self) -> bool {
        self.inner.access_log.is_set()
    }

    /// The address a listener is bound to (useful with port 0).
    pub fn local_addr(&self, listener_id: &str) -> Option<SocketAddr> {
        self.inner
            .state()
            .listeners
            .get(listener_id)
            .map(|l| l.local_addr)
    }

    /// Counters of every running listener.
    pub fn stats(&self) -> HashMap<String, ListenerStats> {
        self.inner
            .state()
            .listeners
            .iter()
            .map(|(id, l)| (id.clone(), l.shared.stats.snapshot()))
            .collect()
    }

    /// After shutdown: waits until the connections of every listener have ended, or
    /// `timeout` has passed; returns how many were still open.
    pub async fn drained(&self, timeout: std::time::Duration) -> u64 {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let open: u64 = {
                let state = self.inner.state();
                let shared = state
                    .draining
                    .iter()
                    .chain(state.listeners.values().map(|l| &l.shared));
                shared.map(|s| s.stats.snapshot().active_connections).sum()
            };
            if open == 0 || tokio::time::Instant::now() >= deadline {
                return open;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Operating status of every member of every pool in use.
    pub fn member_health(&self) -> HashMap<String, OperatingStatus> {
        let state = self.inner.state();
        state
            .pools
            .values()
            .flat_map(|p| {
                p.member_statuses()
                    .map(|(id, s)| (id.to_owned(), s))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Health changes as they happen (a lagging receiver loses the oldest;
    /// re-read [`Dataplane::member_health`] then).
    pub fn subscribe_health(&self) -> broadcast::Receiver<HealthEvent> {
        self.inner.health_tx.subscribe()
    }
}

fn bind_key(l: &ListenerConfig) -> (SocketAddr, ListenerProtocol) {
    (l.bind_addr(), l.protocol)
}

fn validate_pool(p: &PoolConfig) -> Result<(), DataplaneError> {
    if let Some(hm) = &p.health_monitor {
        health::validate(hm)?;
    }
    Ok(())
}

fn check_pools(
    cfg: &ListenerConfig,
    errors: &HashMap<String, DataplaneError>,
) -> Result<(), DataplaneError> {
    for p in cfg.pools() {
        if let Some(e) = errors.get(&p.id) {
            return Err(DataplaneError::InvalidConfig {
                field: "pool",
                reason: format!("pool {}: {e}", p.id),
            });
        }
    }
    Ok(())
}

fn routes_pools(r: &Routes) -> impl Iterator<Item = &Arc<PoolRuntime>> {
    r.default_pool
        .iter()
        .chain(r.policies.iter().filter_map(|p| match &p.action {
            RouteAction::Pool(pool) => Some(pool),
            _ => None,
        }))
}

fn redirect_code(code: Option<u16>) -> Result<StatusCode, DataplaneError> {
    match code.unwrap_or(302) {
        c @ (301 | 302 | 303 | 307 | 308) => Ok(StatusCode::from_u16(c).expect("valid code")),
        c => Err(DataplaneError::InvalidConfig {
            field: "l7policy.redirect_http_code",
            reason: format!("{c} is not one of 301, 302, 303, 307, 308"),
        }),
    }
}

/// Compiles a listener's routing snapshot.
fn build_routes(
    cfg: &ListenerConfig,
    pools: &HashMap<String, Arc<PoolRuntime>>,
    port: u16,
) -> Result<Routes, DataplaneError> {
    let pool = |id: &str| {
        pools
            .get(id)
            .cloned()
            .ok_or_else(|| DataplaneError::InvalidConfig {
                field: "pool",
                reason: format!("pool {id} is not available"),
            })
    };
    if cfg.protocol == ListenerProtocol::Udp {
        if let Some(p) = cfg.pools().find(|p| ProxyVersion::of(p.protocol).is_some()) {
            return Err(DataplaneError::InvalidConfig {
                field: "pool.protocol",
                reason: format!(
                    "pool {}: PROXY and PROXYV2 pools need a TCP, HTTPS or HTTP listener, not UDP",
                    p.id
                ),
            });
        }
    }
    let default_pool = cfg.default_pool.as_ref().map(|p| pool(&p.id)).transpose()?;
    let http = cfg.protocol == ListenerProtocol::Http;
    let policies = if http {
        l7::compile_policies(&cfg.l7policies, |p| {
            Ok(match &p.action {
                L7Action::Reject => RouteAction::Reject,
                L7Action::RedirectToPool(pc) => RouteAction::Pool(pool(&pc.id)?),
                L7Action::RedirectToUrl { url, http_code } => RouteAction::RedirectUrl {
                    location: HeaderValue::try_from(url.as_str()).map_err(|_| {
                        DataplaneError::InvalidConfig {
                            field: "l7policy.redirect_url",
                            reason: format!("{url:?} is not a valid Location"),
                        }
                    })?,
                    code: redirect_code(*http_code)?,
                },
                L7Action::RedirectPrefix { prefix, http_code } => RouteAction::RedirectPrefix {
                    prefix: prefix.trim_end_matches('/').to_owned(),
                    code: redirect_code(*http_code)?,
                },
            })
        })?
    } else {
        Vec::new()
    };
    Ok(Routes {
        config: cfg.clone(),
        default_pool,
        policies,
        port_header: HeaderValue::from(port),
    })
}

/// Binds a listener and starts its accept loops on the workers.
fn start_listener(
    cfg: ListenerConfig,
    pools: &HashMap<String, Arc<PoolRuntime>>,
    stats: Arc<StatsCounters>,
    access_log: &Arc<AccessLogSwitch>,
    workers: &Workers,
) -> Result<ListenerHandle, DataplaneError> {
    // Compile before binding so a bad config never opens a socket.
    build_routes(&cfg, pools, cfg.port)?;
    let addr = cfg.bind_addr();
    let (stop, stop_rx) = watch::channel(false);
    let bind_error = |source| DataplaneError::Bind { addr, source };
    let (local_addr, shared, tasks) = if cfg.protocol == ListenerProtocol::Udp {
        let sockets = listener::bind_udp(addr, workers.count())?;
        let local_addr = sockets[0].local_addr().map_err(bind_error)?;
        let shared = new_shared(&cfg, pools, local_addr, stats, access_log.clone())?;
        let sockets = register(workers, sockets, UdpSocket::from_std).map_err(bind_error)?;
        let tasks = sockets
            .into_iter()
            .enumerate()
            .map(|(index, socket)| {
                workers.spawn(index, udp::serve(socket, shared.clone(), stop_rx.clone()))
            })
            .collect();
        (local_addr, shared, tasks)
    } else {
        let sockets = listener::bind_tcp(addr, workers.count())?;
        let local_addr = sockets[0].local_addr().map_err(bind_error)?;
        let shared = new_shared(&cfg, pools, local_addr, stats, access_log.clone())?;
        let tasks = if cfg.protocol == ListenerProtocol::Http {
            register(workers, sockets, Acceptor::new)
                .map_err(bind_error)?
                .into_iter()
                .enumerate()
                .map(|(index, acceptor)| {
                    let serve = l7http::serve(acceptor, shared.clone(), stop_rx.clone());
                    workers.spawn(index, serve)
                })
                .collect()
        } else {
            register(workers, sockets, TcpListener::from_std)
                .map_err(bind_error)?
                .into_iter()
                .enumerate()
                .map(|(index, listener)| {
                    workers.spawn(index, tcp::serve(listener, shared.clone(), stop_rx.clone()))
                })
                .collect()
        };
        (local_addr, shared, tasks)
    };
    tracing::info!(listener = %cfg.id, addr = %local_addr, protocol = ?cfg.protocol, "listener started");
    Ok(ListenerHandle {
        config: cfg,
        shared,
        stop,
        tasks,
        local_addr,
    })
}

/// Registers socket `i` with worker `i`'s reactor; here rather than in the
/// worker's task, so that a failure is the listener's error.
fn register<S, T>(
    workers: &Workers,
    sockets: Vec<S>,
    tokio_socket: fn(S) -> std::io::Result<T>,
) -> std::io::Result<Vec<T>> {
    sockets
        .into_iter()
        .enumerate()
        .map(|(index, socket)| {
            let _worker = workers.enter(index);
            tokio_socket(socket)
        })
        .collect()
}

fn new_shared(
    cfg: &ListenerConfig,
    pools: &HashMap<String, Arc<PoolRuntime>>,
    local_addr: SocketAddr,
    stats: Arc<StatsCounters>,
    access_log: Arc<AccessLogSwitch>,
) -> Result<Arc<ListenerShared>, DataplaneError> {
    let routes = build_routes(cfg, pools, local_addr.port())?;
    Ok(Arc::new(ListenerShared {
        routes: ArcSwap::from_pointee(routes),
        stats,
        access_log,
        local_addr,
    }))
}
