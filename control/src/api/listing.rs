//! Reading objects as a caller may see them: tenancy filter, Octavia's list filters, sorting
//! by (created_at, id) and marker pagination.

use fulcrum_proto::v1::{
    HealthMonitor, L7Policy, L7Rule, ListOptions, Listener, LoadBalancer, Member, Pool,
};
use tonic::Status;

use super::auth::Caller;
use crate::model::{Object, State};

/// Largest and default page size.
pub const MAX_PAGE: usize = 1000;

/// What listing needs from each object type.
pub trait Listed: Object + Send + Sync {
    fn name(&self) -> &str;
    fn admin_state_up(&self) -> bool;
    fn operating_status(&self) -> i32;
    fn tags(&self) -> &[String];
    fn created_at(&self) -> &str;
    /// The object with its derived fields (child id lists) filled in.
    fn render(&self, state: &State) -> Self;
}

macro_rules! listed {
    ($ty:ty, |$o:ident| $name:expr, |$s:ident, $r:ident| $render:expr) => {
        impl Listed for $ty {
            fn name(&self) -> &str {
                let $o = self;
                $name
            }
            fn admin_state_up(&self) -> bool {
                self.admin_state_up
            }
            fn operating_status(&self) -> i32 {
                self.operating_status
            }
            fn tags(&self) -> &[String] {
                &self.tags
            }
            fn created_at(&self) -> &str {
                &self.created_at
            }
            fn render(&self, $s: &State) -> Self {
                let $r = self;
                $render
            }
        }
    };
}

listed!(LoadBalancer, |o| &o.name, |s, r| s.render_loadbalancer(r));
listed!(Listener, |o| &o.name, |s, r| s.render_listener(r));
listed!(Pool, |o| &o.name, |s, r| s.render_pool(r));
listed!(Member, |o| &o.name, |_s, r| r.clone());
listed!(HealthMonitor, |o| &o.name, |_s, r| r.clone());
listed!(L7Policy, |o| &o.name, |s, r| s.render_l7policy(r));
listed!(L7Rule, |_o| "", |_s, r| r.clone());

/// Checks list options against the caller (only admins may ask for other projects) and the
/// page size.
pub fn check_options(caller: &Caller, options: &ListOptions) -> Result<(), Status> {
    if !options.project_id.is_empty() && !caller.can_see(&options.project_id) {
        return Err(Status::permission_denied(format!(
            "project_id: only admins may list project {}",
            options.project_id
        )));
    }
    if options.limit < 0 || options.limit as usize > MAX_PAGE {
        return Err(Status::invalid_argument(format!(
            "options.limit: must be between 1 and {MAX_PAGE} (0 = {MAX_PAGE}), got {}",
            options.limit
        )));
    }
    Ok(())
}

/// One page of the objects of type `T` the caller may see that pass `options` and `keep`.
pub fn page<T: Listed>(
    state: &State,
    caller: &Caller,
    options: &ListOptions,
    keep: impl Fn(&T) -> bool,
) -> Result<(Vec<T>, String), Status> {
    let mut items: Vec<&T> = state
        .all::<T>()
        .filter(|o| caller.can_see(o.project_id()))
        .filter(|o| options.project_id.is_empty() || o.project_id() == options.project_id)
        .filter(|o| options.name.is_empty() || o.name() == options.name)
        .filter(|o| {
            options
                .admin_state_up
                .is_none_or(|a| o.admin_state_up() == a)
        })
        .filter(|o| {
            options.provisioning_status == 0
                || o.provisioning_status() as i32 == options.provisioning_status
        })
        .filter(|o| {
            options.operating_status == 0 || o.operating_status() == options.operating_status
        })
        .filter(|o| options.tags.iter().all(|t| o.tags().contains(t)))
        .filter(|o| keep(o))
        .collect();
    items.sort_by(|a, b| (a.created_at(), a.id()).cmp(&(b.created_at(), b.id())));
    if options.page_reverse {
        items.reverse();
    }
    if !options.marker.is_empty() {
        let at = items
            .iter()
            .position(|o| o.id() == options.marker)
            .ok_or_else(|| {
                Status::invalid_argument(format!(
                    "options.marker: {} is not an object of this list",
                    options.marker
                ))
            })?;
        items.drain(..=at);
    }
    let limit = if options.limit == 0 {
        MAX_PAGE
    } else {
        options.limit as usize
    };
    let more = items.len() > limit;
    items.truncate(limit);
    let next = if more {
        items.last().map(|o| o.id().to_string()).unwrap_or_default()
    } else {
        String::new()
    };
    Ok((items.into_iter().map(|o| o.render(state)).collect(), next))
}

/// An object by id if the caller may see it; NOT_FOUND otherwise (never revealing that an
/// object of another project exists).
pub fn visible<T: Listed>(state: &State, caller: &Caller, id: &str) -> Result<T, Status> {
    state
        .get::<T>(id)
        .filter(|o| caller.can_see(o.project_id()))
        .map(|o| o.render(state))
        .ok_or_else(|| Status::not_found(format!("{} {id} not found", T::KIND.name())))
}
