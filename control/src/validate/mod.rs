//! Field rules of each resource, checked on the whole object (after defaults are filled in and,
//! for updates, after the change is merged), so create and update share one set of rules.
//! Rules that need other objects (parents, uniqueness, protocol compatibility) live in the model.

mod common;
mod healthmonitor;
mod l7;
mod listener;
mod loadbalancer;
mod member;
mod pool;

pub use common::{check_name, check_tags, parse_cidr, parse_ip};
pub use healthmonitor::{healthmonitor, healthmonitor_fits_pool};
pub use l7::{l7policy, l7rule};
pub use listener::{listener, pool_fits_listener, LISTENER_PROTOCOLS};
pub use loadbalancer::loadbalancer;
pub use member::member;
pub use pool::pool;
