//! `HealthMonitorService`.

use fulcrum_proto::internal::{command::Op, Objects};
use fulcrum_proto::v1::health_monitor_service_server::HealthMonitorService;
use fulcrum_proto::v1::*;
use tonic::{Request, Response, Status};

use super::listing::{check_options, page};
use super::new_objects;
use super::{first, Api, Store};

#[tonic::async_trait]
impl<S: Store> HealthMonitorService for Api<S> {
    async fn create_health_monitor(
        &self,
        request: Request<CreateHealthMonitorRequest>,
    ) -> Result<Response<HealthMonitor>, Status> {
        let c = request
            .get_ref()
            .healthmonitor
            .clone()
            .ok_or_else(|| Status::invalid_argument("healthmonitor: is required"))?;
        let (caller, pool) = self
            .parent_for_create::<Pool, _>(&request, "pool_id", &c.pool_id)
            .await?;
        let objects = Objects {
            healthmonitors: vec![new_objects::healthmonitor(&c, &pool.id, &pool.project_id)],
            ..Default::default()
        };
        let o = self
            .propose_objects(&request, &caller, Op::Create(objects))
            .await?;
        Ok(Response::new(first(o.healthmonitors, "health monitor")?))
    }

    async fn get_health_monitor(
        &self,
        request: Request<GetHealthMonitorRequest>,
    ) -> Result<Response<HealthMonitor>, Status> {
        let caller = self.caller(&request)?;
        let hm = self
            .visible_one(&caller, &request.get_ref().healthmonitor_id)
            .await?;
        Ok(Response::new(hm))
    }

    async fn list_health_monitors(
        &self,
        request: Request<ListHealthMonitorsRequest>,
    ) -> Result<Response<ListHealthMonitorsResponse>, Status> {
        let caller = self.caller(&request)?;
        let r = request.into_inner();
        let options = r.options.clone().unwrap_or_default();
        check_options(&caller, &options)?;
        let (healthmonitors, next_marker) = self
            .read_with(move |s| {
                page::<HealthMonitor>(s, &caller, &options, |hm| {
                    (r.pool_id.is_empty() || hm.pool_id == r.pool_id)
                        && (r.r#type == 0 || hm.r#type == r.r#type)
                })
            })
            .await?;
        Ok(Response::new(ListHealthMonitorsResponse {
            healthmonitors,
            next_marker,
        }))
    }

    async fn update_health_monitor(
        &self,
        request: Request<UpdateHealthMonitorRequest>,
    ) -> Result<Response<HealthMonitor>, Status> {
        let id = request.get_ref().healthmonitor_id.clone();
        let op = Op::UpdateHealthmonitor(request.get_ref().clone());
        let o = self.change::<HealthMonitor, _>(&request, &id, op).await?;
        Ok(Response::new(first(o.healthmonitors, "health monitor")?))
    }

    async fn delete_health_monitor(
        &self,
        request: Request<DeleteHealthMonitorRequest>,
    ) -> Result<Response<DeleteResponse>, Status> {
        let id = request.get_ref().healthmonitor_id.clone();
        let op = Op::DeleteHealthmonitor(request.get_ref().clone());
        self.change::<HealthMonitor, _>(&request, &id, op).await?;
        Ok(Response::new(DeleteResponse {}))
    }
}
