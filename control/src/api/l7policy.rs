//! `L7PolicyService`.

use fulcrum_proto::internal::{command::Op, Objects};
use fulcrum_proto::v1::l7_policy_service_server::L7PolicyService;
use fulcrum_proto::v1::*;
use tonic::{Request, Response, Status};

use super::listing::{check_options, page};
use super::new_objects;
use super::{first, Api, Store};

#[tonic::async_trait]
impl<S: Store> L7PolicyService for Api<S> {
    async fn create_l7_policy(
        &self,
        request: Request<CreateL7PolicyRequest>,
    ) -> Result<Response<L7Policy>, Status> {
        let c = request
            .get_ref()
            .l7policy
            .clone()
            .ok_or_else(|| Status::invalid_argument("l7policy: is required"))?;
        let (caller, listener) = self
            .parent_for_create::<Listener, _>(&request, "listener_id", &c.listener_id)
            .await?;
        if c.redirect_pool.is_some() {
            return Err(Status::invalid_argument(
                "redirect_pool: only valid inside a load balancer tree; use redirect_pool_id",
            ));
        }
        let policy =
            new_objects::l7policy(&c, &listener.id, &c.redirect_pool_id, &listener.project_id);
        let rules = c
            .rules
            .iter()
            .map(|r| new_objects::l7rule(r, &policy.id, &listener.project_id))
            .collect();
        let objects = Objects {
            l7policies: vec![policy],
            l7rules: rules,
            ..Default::default()
        };
        let o = self
            .propose_objects(&request, &caller, Op::Create(objects))
            .await?;
        Ok(Response::new(first(o.l7policies, "L7 policy")?))
    }

    async fn get_l7_policy(
        &self,
        request: Request<GetL7PolicyRequest>,
    ) -> Result<Response<L7Policy>, Status> {
        let caller = self.caller(&request)?;
        let p = self
            .visible_one(&caller, &request.get_ref().l7policy_id)
            .await?;
        Ok(Response::new(p))
    }

    async fn list_l7_policies(
        &self,
        request: Request<ListL7PoliciesRequest>,
    ) -> Result<Response<ListL7PoliciesResponse>, Status> {
        let caller = self.caller(&request)?;
        let r = request.into_inner();
        let options = r.options.clone().unwrap_or_default();
        check_options(&caller, &options)?;
        let (l7policies, next_marker) = self
            .read_with(move |s| {
                page::<L7Policy>(s, &caller, &options, |p| {
                    (r.listener_id.is_empty() || p.listener_id == r.listener_id)
                        && (r.action == 0 || p.action == r.action)
                })
            })
            .await?;
        Ok(Response::new(ListL7PoliciesResponse {
            l7policies,
            next_marker,
        }))
    }

    async fn update_l7_policy(
        &self,
        request: Request<UpdateL7PolicyRequest>,
    ) -> Result<Response<L7Policy>, Status> {
        let id = request.get_ref().l7policy_id.clone();
        let op = Op::UpdateL7policy(request.get_ref().clone());
        let o = self.change::<L7Policy, _>(&request, &id, op).await?;
        Ok(Response::new(first(o.l7policies, "L7 policy")?))
    }

    async fn delete_l7_policy(
        &self,
        request: Request<DeleteL7PolicyRequest>,
    ) -> Result<Response<DeleteResponse>, Status> {
        let id = request.get_ref().l7policy_id.clone();
        let op = Op::DeleteL7policy(request.get_ref().clone());
        self.change::<L7Policy, _>(&request, &id, op).await?;
        Ok(Response::new(DeleteResponse {}))
    }
}
