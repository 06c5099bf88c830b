//! `PoolService`.

use fulcrum_proto::internal::{command::Op, Objects};
use fulcrum_proto::v1::pool_service_server::PoolService;
use fulcrum_proto::v1::*;
use tonic::{Request, Response, Status};

use super::listing::{check_options, page};
use super::new_objects;
use super::{first, Api, Store};

#[tonic::async_trait]
impl<S: Store> PoolService for Api<S> {
    async fn create_pool(
        &self,
        request: Request<CreatePoolRequest>,
    ) -> Result<Response<Pool>, Status> {
        let c = request
            .get_ref()
            .pool
            .clone()
            .ok_or_else(|| Status::invalid_argument("pool: is required"))?;
        let mut objects = Objects::default();
        let (caller, lb_id, project) = if !c.listener_id.is_empty() {
            let (caller, listener) = self
                .parent_for_create::<Listener, _>(&request, "listener_id", &c.listener_id)
                .await?;
            if !c.loadbalancer_id.is_empty() && c.loadbalancer_id != listener.loadbalancer_id {
                return Err(Status::invalid_argument(format!(
                    "loadbalancer_id: listener {} is on load balancer {}, not {}",
                    listener.id, listener.loadbalancer_id, c.loadbalancer_id
                )));
            }
            (caller, listener.loadbalancer_id, listener.project_id)
        } else if !c.loadbalancer_id.is_empty() {
            let (caller, lb) = self
                .parent_for_create::<LoadBalancer, _>(
                    &request,
                    "loadbalancer_id",
                    &c.loadbalancer_id,
                )
                .await?;
            (caller, lb.id, lb.project_id)
        } else {
            return Err(Status::invalid_argument(
                "loadbalancer_id: must provide at least one of: loadbalancer_id, listener_id",
            ));
        };
        let pool = new_objects::pool(&c, &lb_id, &project);
        if let Some(hm) = &c.healthmonitor {
            objects
                .healthmonitors
                .push(new_objects::healthmonitor(hm, &pool.id, &project));
        }
        for m in &c.members {
            objects
                .members
                .push(new_objects::member(m, &pool.id, &project));
        }
        if !c.listener_id.is_empty() {
            objects
                .default_pools
                .insert(c.listener_id.clone(), pool.id.clone());
        }
        objects.pools.push(pool);
        let o = self
            .propose_objects(&request, &caller, Op::Create(objects))
            .await?;
        Ok(Response::new(first(o.pools, "pool")?))
    }

    async fn get_pool(&self, request: Request<GetPoolRequest>) -> Result<Response<Pool>, Status> {
        let caller = self.caller(&request)?;
        let p = self
            .visible_one(&caller, &request.get_ref().pool_id)
            .await?;
        Ok(Response::new(p))
    }

    async fn list_pools(
        &self,
        request: Request<ListPoolsRequest>,
    ) -> Result<Response<ListPoolsResponse>, Status> {
        let caller = self.caller(&request)?;
        let r = request.into_inner();
        let options = r.options.clone().unwrap_or_default();
        check_options(&caller, &options)?;
        let (pools, next_marker) = self
            .read_with(move |s| {
                page::<Pool>(s, &caller, &options, |p| {
                    (r.loadbalancer_id.is_empty() || p.loadbalancer_id == r.loadbalancer_id)
                        && (r.listener_id.is_empty()
                            || s.render_pool(p).listener_ids.contains(&r.listener_id))
                })
            })
            .await?;
        Ok(Response::new(ListPoolsResponse { pools, next_marker }))
    }

    async fn update_pool(
        &self,
        request: Request<UpdatePoolRequest>,
    ) -> Result<Response<Pool>, Status> {
        let id = request.get_ref().pool_id.clone();
        let op = Op::UpdatePool(request.get_ref().clone());
        let o = self.change::<Pool, _>(&request, &id, op).await?;
        Ok(Response::new(first(o.pools, "pool")?))
    }

    async fn delete_pool(
        &self,
        request: Request<DeletePoolRequest>,
    ) -> Result<Response<DeleteResponse>, Status> {
        let id = request.get_ref().pool_id.clone();
        let op = Op::DeletePool(request.get_ref().clone());
        self.change::<Pool, _>(&request, &id, op).await?;
        Ok(Response::new(DeleteResponse {}))
    }
}
