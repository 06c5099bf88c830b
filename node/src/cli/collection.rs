//! The plumbing every resource command shares, written once: fetch by ID, list every page,
//! find by name or ID, update, delete, and `--wait` for the outcome. Each resource module
//! implements [`Collection`] with its own three RPCs (get, list, update) and nothing else.

use std::future::Future;

use fulcrum_proto::v1::{
    HealthMonitor, HealthMonitorUpdate, L7Policy, L7PolicyUpdate, L7Rule, L7RuleUpdate,
    ListHealthMonitorsRequest, ListL7PoliciesRequest, ListL7RulesRequest, ListListenersRequest,
    ListLoadBalancersRequest, ListMembersRequest, ListOptions, ListPoolsRequest, Listener,
    ListenerUpdate, LoadBalancer, LoadBalancerUpdate, Member, MemberUpdate, Pool, PoolUpdate,
    StringList,
};
use tonic::Status;

use super::common::{wait_for_active, wait_for_delete, TagFilter, TagUnsetArgs};
use super::connection::{api, checked, Clients};
use super::output::{ListOutput, Record};
use super::{emit_list, resolve};

/// An API object as the shared plumbing sees it.
pub(crate) trait ApiObject {
    /// The object's ID.
    fn id(&self) -> &str;
    /// The object's tags.
    fn tags(&self) -> &[String];
    /// The object's provisioning status (a `ProvisioningStatus` value).
    fn provisioning_status(&self) -> i32;
}

/// A list request: it carries [`ListOptions`] (name, tags, paging marker).
pub(crate) trait ListRequest: Clone + Default {
    /// The request's options.
    fn options_mut(&mut self) -> &mut Option<ListOptions>;
}

/// An update message that can carry a new tag list alone.
pub(crate) trait TagsUpdate {
    /// An update that changes the tags (or nothing, for `None`) and no other field.
    fn tags_only(tags: Option<StringList>) -> Self;
}

/// Implements the three traits above for each `(object, list request, update)` of the API:
/// their fields have the same names in every resource.
macro_rules! same_field_names {
    ($(($object:ty, $list:ty, $update:ty),)*) => {$(
        impl ApiObject for $object {
            fn id(&self) -> &str {
                &self.id
            }
            fn tags(&self) -> &[String] {
                &self.tags
            }
            fn provisioning_status(&self) -> i32 {
                self.provisioning_status
            }
        }

        impl ListRequest for $list {
            fn options_mut(&mut self) -> &mut Option<ListOptions> {
                &mut self.options
            }
        }

        impl TagsUpdate for $update {
            fn tags_only(tags: Option<StringList>) -> Self {
                Self {
                    tags,
                    ..Default::default()
                }
            }
        }
    )*};
}

same_field_names! {
    (LoadBalancer, ListLoadBalancersRequest, LoadBalancerUpdate),
    (Listener, ListListenersRequest, ListenerUpdate),
    (Pool, ListPoolsRequest, PoolUpdate),
    (Member, ListMembersRequest, MemberUpdate),
    (HealthMonitor, ListHealthMonitorsRequest, HealthMonitorUpdate),
    (L7Policy, ListL7PoliciesRequest, L7PolicyUpdate),
    (L7Rule, ListL7RulesRequest, L7RuleUpdate),
}

/// The objects of one kind that a command can reach: every load balancer (listener, pool,
/// health monitor, L7 policy), or the members of one pool, or the rules of one L7 policy.
///
/// An implementation names its kind and its get, list and update RPCs; the provided methods
/// are the commands' shared steps, with octaviaclient's messages (see [`resolve`]).
pub(crate) trait Collection {
    /// The object.
    type Item: ApiObject;
    /// The list request.
    type List: ListRequest;
    /// The update message.
    type Update: TagsUpdate;
    /// What messages call one object ("load balancer").
    const KIND: &'static str;
    /// Whether objects can be found by name (L7 rules have no names).
    const NAMED: bool = true;

    /// Fetches one object by ID.
    fn get(&self, c: &Clients, id: &str) -> impl Future<Output = Result<Self::Item, Status>>;

    /// Fetches one page: the objects and the marker of the next page.
    fn page(
        &self,
        c: &Clients,
        req: Self::List,
    ) -> impl Future<Output = Result<(Vec<Self::Item>, String), Status>>;

    /// Sends an update of one object that also clears the `unset` fields.
    fn update(
        &self,
        c: &Clients,
        id: &str,
        update: Self::Update,
        unset: Vec<String>,
    ) -> impl Future<Output = Result<(), Status>>;

    /// The list request for the whole collection (for a pool's members: that pool's ID).
    fn scope(&self) -> Self::List {
        Self::List::default()
    }

    /// Lists every object matching `req` (all pages).
    async fn list(&self, c: &Clients, req: Self::List) -> anyhow::Result<Vec<Self::Item>> {
        resolve::list_all(|marker| {
            let mut req = req.clone();
            req.options_mut()
                .get_or_insert_with(Default::default)
                .marker = marker;
            self.page(c, req)
        })
        .await
    }

    /// Finds one object by name or ID.
    async fn find(&self, c: &Clients, input: &str) -> anyhow::Result<Self::Item> {
        resolve::find(
            Self::KIND,
            input,
            |id| async move { self.get(c, &id).await },
            |name| async move {
                if !Self::NAMED {
                    return Ok(vec![]);
                }
                let mut req = self.scope();
                *req.options_mut() = Some(ListOptions {
                    name,
                    ..Default::default()
                });
                self.list(c, req).await
            },
        )
        .await
    }

    /// Polls until the object is ACTIVE (`--wait` after a change).
    async fn wait_active(&self, c: &Clients, id: &str) -> anyhow::Result<()> {
        wait_for_active(|| async move { self.get(c, id).await.map(|x| x.provisioning_status()) })
            .await
    }

    /// Polls until the object is gone (`--wait` after a delete).
    async fn wait_deleted(&self, c: &Clients, id: &str) -> anyhow::Result<()> {
        wait_for_delete(|| async move { self.get(c, id).await.map(|x| x.provisioning_status()) })
            .await
    }

    /// Updates one object (clearing the `unset` fields), then with `wait` waits until it is
    /// ACTIVE again.
    async fn update_and_wait(
        &self,
        c: &Clients,
        id: &str,
        update: Self::Update,
        unset: Vec<String>,
        wait: bool,
    ) -> anyhow::Result<()> {
        checked(self.update(c, id, update, unset).await)?;
        if wait {
            self.wait_active(c, id).await?;
        }
        Ok(())
    }

    /// Runs an `unset` on `item`: clears the `fields` and the tags that `tags` names.
    async fn unset(
        &self,
        c: &Clients,
        item: &Self::Item,
        fields: Vec<String>,
        tags: &TagUnsetArgs,
        wait: bool,
    ) -> anyhow::Result<()> {
        let update = Self::Update::tags_only(tags.for_unset(item.tags()));
        self.update_and_wait(c, item.id(), update, fields, wait)
            .await
    }

    /// Runs a `delete` of the object `id`: makes the delete `call`, then with `wait` waits
    /// until the object is gone.
    async fn delete_and_wait<T>(
        &self,
        c: &Clients,
        id: &str,
        call: impl Future<Output = Result<tonic::Response<T>, Status>>,
        wait: bool,
    ) -> anyhow::Result<()> {
        api(call.await)?;
        if wait {
            self.wait_deleted(c, id).await?;
        }
        Ok(())
    }

    /// Runs a `list`: asks for the objects matching `req` and the filter's `--tags`, keeps
    /// those that pass the whole filter, and prints them with `record` under `columns`.
    async fn print_list(
        &self,
        c: &Clients,
        mut req: Self::List,
        filter: &TagFilter,
        columns: &[&str],
        record: fn(&Self::Item) -> Record,
        output: &ListOutput,
    ) -> anyhow::Result<()> {
        req.options_mut().get_or_insert_with(Default::default).tags = filter.tags.clone();
        let records: Vec<Record> = self
            .list(c, req)
            .await?
            .iter()
            .filter(|x| filter.matches(x.tags()))
            .map(record)
            .collect();
        emit_list(columns, &records, output)
    }
}
