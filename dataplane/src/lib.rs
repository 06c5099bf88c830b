//! Fulcrum data plane.
//!
//! Takes a [`DataplaneConfig`] (pure data, derived elsewhere from the
//! replicated Octavia model) and converges to it: binds listeners, proxies
//! TCP and HTTP traffic to pool members with Octavia's balancing algorithms,
//! evaluates L7 policies, runs health monitors and counts per-listener stats.
//! Entry point: [`Dataplane`].

mod access_log;
pub mod config;
mod dataplane;
mod error;
mod health;
mod status;

mod balancer;
mod client_stream;
mod http;
mod http_headers;
mod io;
mod l7;
mod listener;
mod member_pool;
mod persistence;
mod pool;
mod proxy_protocol;
mod splice;
mod tcp;
mod udp;
mod wait;
mod workers;

pub use access_log::TARGET as ACCESS_LOG_TARGET;
pub use config::*;
pub use dataplane::{ApplyResult, Dataplane, ListenerChange};
pub use error::DataplaneError;
pub use health::HealthEvent;
pub use status::{ListenerStats, OperatingStatus};
pub use workers::default_count as default_workers;
