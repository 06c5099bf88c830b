//! `ListenerService`.

use fulcrum_proto::internal::{command::Op, Objects};
use fulcrum_proto::v1::listener_service_server::ListenerService;
use fulcrum_proto::v1::*;
use tonic::{Request, Response, Status};

use super::listing::{check_options, page};
use super::new_objects::Tree;
use super::{first, Api, Store};
use crate::model::Object;

#[tonic::async_trait]
impl<S: Store> ListenerService for Api<S> {
    async fn create_listener(
        &self,
        request: Request<CreateListenerRequest>,
    ) -> Result<Response<Listener>, Status> {
        let c = request
            .get_ref()
            .listener
            .clone()
            .ok_or_else(|| Status::invalid_argument("listener: is required"))?;
        let (caller, lb) = self
            .parent_for_create::<LoadBalancer, _>(&request, "loadbalancer_id", &c.loadbalancer_id)
            .await?;
        let mut tree = Tree::new(&lb.id, lb.project_id());
        tree.add_listener(0, &c)?;
        let objects: Objects = tree.objects;
        let o = self
            .propose_objects(&request, &caller, Op::Create(objects))
            .await?;
        Ok(Response::new(first(o.listeners, "listener")?))
    }

    async fn get_listener(
        &self,
        request: Request<GetListenerRequest>,
    ) -> Result<Response<Listener>, Status> {
        let caller = self.caller(&request)?;
        let l = self
            .visible_one(&caller, &request.get_ref().listener_id)
            .await?;
        Ok(Response::new(l))
    }

    async fn list_listeners(
        &self,
        request: Request<ListListenersRequest>,
    ) -> Result<Response<ListListenersResponse>, Status> {
        let caller = self.caller(&request)?;
        let r = request.into_inner();
        let options = r.options.clone().unwrap_or_default();
        check_options(&caller, &options)?;
        let (listeners, next_marker) = self
            .read_with(move |s| {
                page::<Listener>(s, &caller, &options, |l| {
                    (r.loadbalancer_id.is_empty() || l.loadbalancer_id == r.loadbalancer_id)
                        && (r.protocol == 0 || l.protocol == r.protocol)
                        && (r.protocol_port == 0 || l.protocol_port == r.protocol_port)
                })
            })
            .await?;
        Ok(Response::new(ListListenersResponse {
            listeners,
            next_marker,
        }))
    }

    async fn update_listener(
        &self,
        request: Request<UpdateListenerRequest>,
    ) -> Result<Response<Listener>, Status> {
        let id = request.get_ref().listener_id.clone();
        let op = Op::UpdateListener(request.get_ref().clone());
        let o = self.change::<Listener, _>(&request, &id, op).await?;
        Ok(Response::new(first(o.listeners, "listener")?))
    }

    async fn delete_listener(
        &self,
        request: Request<DeleteListenerRequest>,
    ) -> Result<Response<DeleteResponse>, Status> {
        let id = request.get_ref().listener_id.clone();
        let op = Op::DeleteListener(request.get_ref().clone());
        self.change::<Listener, _>(&request, &id, op).await?;
        Ok(Response::new(DeleteResponse {}))
    }

    async fn get_listener_stats(
        &self,
        request: Request<GetListenerStatsRequest>,
    ) -> Result<Response<Stats>, Status> {
        let caller = self.caller(&request)?;
        let l: Listener = self
            .visible_one(&caller, &request.get_ref().listener_id)
            .await?;
        Ok(Response::new(self.listener_stats(&l.id)))
    }
}
