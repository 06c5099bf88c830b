//! A pool at run time: its members, the eligible-member snapshot the
//! balancer reads, and the health monitor that keeps that snapshot current.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwap;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::balancer::{Backend, Eligible, Health, MemberState};
use crate::config::PoolConfig;
use crate::health::{self, HealthEvent};
use crate::persistence::{cookie_key, source_key, Stick};
use crate::status::OperatingStatus;

/// One pool, shared by every listener that routes to it.
#[derive(Debug)]
pub(crate) struct PoolRuntime {
    pub(crate) config: PoolConfig,
    backends: Vec<Arc<Backend>>,
    eligible: ArcSwap<Eligible>,
    counter: AtomicUsize,
    monitors: Mutex<Vec<JoinHandle<()>>>,
    /// Stick table for `SOURCE_IP` / `APP_COOKIE` persistence.
    stick: Option<Arc<Stick>>,
}

/// A member chosen for one connection or request; holds its slot in the
/// member's active-connection count until dropped.
#[derive(Debug)]
pub(crate) struct Lease {
    pub(crate) backend: Arc<Backend>,
}

impl Lease {
    fn new(backend: Arc<Backend>) -> Self {
        backend.state.active.fetch_add(1, Ordering::Relaxed);
        Self { backend }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.backend.state.active.fetch_sub(1, Ordering::Relaxed);
    }
}

impl PoolRuntime {
    /// Builds the runtime, taking member states from `members` (by member id)
    /// or creating them, and the stick table from `prev` (the pool's previous
    /// runtime) when the persistence settings are unchanged. Member states it
    /// creates keep idle connections for `workers` worker threads. Does not
    /// start monitoring; see [`PoolRuntime::start_monitor`].
    pub(crate) fn new(
        config: PoolConfig,
        members: &mut HashMap<String, Arc<MemberState>>,
        prev: Option<&PoolRuntime>,
        workers: usize,
    ) -> Arc<Self> {
        let monitored = config
            .health_monitor
            .as_ref()
            .is_some_and(|hm| hm.admin_state_up);
        let backends: Vec<Arc<Backend>> = config
            .members
            .iter()
            .map(|m| {
                let state = members
                    .entry(m.id.clone())
                    .or_insert_with(|| Arc::new(MemberState::new(Health::Unchecked, workers)))
                    .clone();
                // Monitor added or removed since the state was created.
                match (monitored, state.health()) {
                    (false, h) if h != Health::NoMonitor => {
                        state.set_health(Health::NoMonitor);
                    }
                    (true, Health::NoMonitor) => {
                        state.set_health(Health::Unchecked);
                    }
                    _ => {}
                }
                Arc::new(Backend::new(m.clone(), state))
            })
            .collect();
        let eligible = Eligible::build(&backends, config.lb_algorithm);
        let stick = match prev {
            Some(p) if p.config.session_persistence == config.session_persistence => {
                p.stick.clone()
            }
            _ => Stick::for_config(config.session_persistence.as_ref()).map(Arc::new),
        };
        Arc::new(Self {
            config,
            backends,
            eligible: ArcSwap::from_pointee(eligible),
            counter: AtomicUsize::new(0),
            monitors: Mutex::new(Vec::new()),
            stick,
        })
    }

    /// Starts one health-check task per enabled member, if the pool has an enabled monitor.
    pub(crate) fn start_monitor(self: &Arc<Self>, events: broadcast::Sender<HealthEvent>) {
        let Some(hm) = self
            .config
            .health_monitor
            .clone()
            .filter(|hm| hm.admin_state_up)
        else {
            return;
        };
        let mut tasks = self.monitors.lock().unwrap_or_else(|e| e.into_inner());
        for b in self.backends.iter().filter(|b| b.config.admin_state_up) {
            tasks.push(tokio::spawn(health::monitor_member(
                b.clone(),
                hm.clone(),
                Arc::downgrade(self),
                events.clone(),
            )));
        }
    }

    /// Stops health checking (the pool was replaced or removed).
    pub(crate) fn stop_monitor(&self) {
        let mut tasks = self.monitors.lock().unwrap_or_else(|e| e.into_inner());
        for t in tasks.drain(..) {
            t.abort();
        }
    }

    /// Rebuilds the eligible snapshot after a health change.
    pub(crate) fn refresh(&self) {
        self.eligible.store(Arc::new(Eligible::build(
            &self.backends,
            self.config.lb_algorithm,
        )));
    }

    /// Picks a member for a client, skipping members already tried.
    /// `None` when the pool is disabled or has no usable member left.
    pub(crate) fn pick(&self, client: SocketAddr, tried: &mut Tried) -> Option<Lease> {
        if !self.config.admin_state_up {
            return None;
        }
        let eligible = self.eligible.load();
        let i = eligible.pick(
            self.config.lb_algorithm,
            &self.counter,
            client,
            tried.as_slice(),
        )?;
        tried.push(i);
        Some(Lease::new(eligible.members()[i].clone()))
    }

    /// Picks a member for a client, honouring `SOURCE_IP` persistence: a
    /// client stuck to a usable member gets it (on the first attempt); otherwise
    /// the algorithm picks and the client is stuck to that member.
    pub(crate) fn pick_for(&self, client: SocketAddr, tried: &mut Tried) -> Option<Lease> {
        let Some(Stick::SourceIp { table, mask }) = self.stick.as_deref() else {
            return self.pick(client, tried);
        };
        let key = source_key(client, *mask);
        let now = Instant::now();
        if tried.is_empty() {
            if let Some((i, lease)) = table.get(&key, now).and_then(|id| self.usable_member(&id)) {
                tried.push(i);
                return Some(lease);
            }
        }
        let lease = self.pick(client, tried)?;
        table.put(key, &lease.backend.id, now);
        Some(lease)
    }

    /// Refreshes a client's `SOURCE_IP` entry (a UDP flow ended: the entry
    /// lives `persistence_timeout` after the client's last flow).
    pub(crate) fn touch_source(&self, client: SocketAddr) {
        if let Some(Stick::SourceIp { table, mask }) = self.stick.as_deref() {
            table.get(&source_key(client, *mask), Instant::now());
        }
    }

    /// The cookie name of `APP_COOKIE` persistence.
    pub(crate) fn app_cookie(&self) -> Option<&str> {
        match self.stick.as_deref() {
            Some(Stick::AppCookie { cookie_name, .. }) => Some(cookie_name),
            _ => None,
        }
    }

    /// The usable member an `APP_COOKIE` value is stuck to.
    pub(crate) fn stuck_to_cookie(&self, value: &str) -> Option<(usize, Lease)> {
        let Some(Stick::AppCookie { table, .. }) = self.stick.as_deref() else {
            return None;
        };
        let id = table.get(cookie_key(value), Instant::now())?;
        self.usable_member(&id)
    }

    /// Sticks an `APP_COOKIE` value (seen in a member's `Set-Cookie`) to that member.
    pub(crate) fn learn_cookie(&self, value: &str, member: &Arc<str>) {
        if let Some(Stick::AppCookie { table, .. }) = self.stick.as_deref() {
            table.put(Box::from(cookie_key(value)), member, Instant::now());
        }
    }

    /// A specific member by id, if it is usable (session persistence), with
    /// its index for [`PoolRuntime::pick`]'s `tried` list.
    pub(crate) fn usable_member(&self, id: &str) -> Option<(usize, Lease)> {
        if !self.config.admin_state_up {
            return None;
        }
        let eligible = self.eligible.load();
        eligible
            .members()
            .iter()
            .position(|b| &*b.id == id)
            .map(|i| (i, Lease::new(eligible.members()[i].clone())))
    }

    /// Closes the members' stale idle HTTP connections.
    pub(crate) fn reap_idle(&self) {
        for b in &self.backends {
            b.state.idle.reap();
        }
    }

    /// Operating status of each member, per Octavia's member roll-up.
    pub(crate) fn member_statuses(&self) -> impl Iterator<Item = (&str, OperatingStatus)> {
        self.backends.iter().map(|b| {
            (
                b.config.id.as_str(),
                OperatingStatus::of_member(&b.config, b.state.health()),
            )
        })
    }
}

impl Drop for PoolRuntime {
    fn drop(&mut self) {
        self.stop_monitor();
    }
}

/// The members already tried for one request or connection (indices into
/// the pool's eligible members), kept inline: callers try a few at most, and
/// a `Vec` here was an allocation per request.
#[derive(Debug, Default)]
pub(crate) struct Tried {
    picked: [usize; Tried::CAPACITY],
    len: usize,
}

impl Tried {
    /// More than any caller tries (HTTP: 2, the first pick included; TCP: 3;
    /// UDP: 1).
    const CAPACITY: usize = 4;

    /// Adds a member; beyond [`Self::CAPACITY`] it is not remembered.
    pub(crate) fn push(&mut self, i: usize) {
        debug_assert!(
            self.len < Self::CAPACITY,
            "more members tried than expected"
        );
        if let Some(slot) = self.picked.get_mut(self.len) {
            *slot = i;
            self.len += 1;
        }
    }

    /// The members tried, in order.
    pub(crate) fn as_slice(&self) -> &[usize] {
        &self.picked[..self.len]
    }

    /// How many were tried.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether none was.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }
}
