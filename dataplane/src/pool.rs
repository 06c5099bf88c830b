//! A pool at run time: its members, the eligible-member snapshot the
//! balancer reads, and the health monitor that keeps that snapshot current.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::balancer::{Backend, Eligible, Health, MemberState};
use crate::config::PoolConfig;
use crate::health::{self, HealthEvent};
use crate::status::OperatingStatus;

/// One pool, shared by every listener that routes to it.
#[derive(Debug)]
pub(crate) struct PoolRuntime {
    pub(crate) config: PoolConfig,
    backends: Vec<Arc<Backend>>,
    eligible: ArcSwap<Eligible>,
    counter: AtomicUsize,
    monitors: Mutex<Vec<JoinHandle<()>>>,
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
    /// or creating them. Does not start monitoring; see [`PoolRuntime::start_monitor`].
    pub(crate) fn new(
        config: PoolConfig,
        members: &mut HashMap<String, Arc<MemberState>>,
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
                    .or_insert_with(|| Arc::new(MemberState::new(Health::Unchecked)))
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
        Arc::new(Self {
            config,
            backends,
            eligible: ArcSwap::from_pointee(eligible),
            counter: AtomicUsize::new(0),
            monitors: Mutex::new(Vec::new()),
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
    pub(crate) fn pick(&self, client: SocketAddr, tried: &mut Vec<usize>) -> Option<Lease> {
        if !self.config.admin_state_up {
            return None;
        }
        let eligible = self.eligible.load();
        let i = eligible.pick(self.config.lb_algorithm, &self.counter, client, tried)?;
        tried.push(i);
        Some(Lease::new(eligible.members()[i].clone()))
    }

    /// A specific member by id, if it is usable (session persistence).
    pub(crate) fn usable_member(&self, id: &str) -> Option<Lease> {
        if !self.config.admin_state_up {
            return None;
        }
        let eligible = self.eligible.load();
        eligible
            .members()
            .iter()
            .find(|b| b.config.id == id)
            .map(|b| Lease::new(b.clone()))
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
