//! `QuotaService`: admins set limits; every caller may read its own project's.

use fulcrum_proto::internal::command::Op;
use fulcrum_proto::v1::quota_service_server::QuotaService;
use fulcrum_proto::v1::*;
use tonic::{Request, Response, Status};

use super::{Api, Store};
use crate::model::Kind;

#[tonic::async_trait]
impl<S: Store> QuotaService for Api<S> {
    async fn list_quotas(
        &self,
        request: Request<ListQuotasRequest>,
    ) -> Result<Response<ListQuotasResponse>, Status> {
        let caller = self.caller(&request)?;
        let project = request.into_inner().project_id;
        if !project.is_empty() && !caller.can_see(&project) {
            return Err(Status::permission_denied(format!(
                "project_id: only admins may read quotas of project {project}"
            )));
        }
        let quotas = self
            .read(move |s| {
                s.quotas()
                    .iter()
                    .filter(|(p, _)| caller.can_see(p) && (project.is_empty() || **p == project))
                    .map(|(p, _)| s.effective_quota(p))
                    .collect()
            })
            .await?;
        Ok(Response::new(ListQuotasResponse { quotas }))
    }

    async fn get_quota(
        &self,
        request: Request<GetQuotaRequest>,
    ) -> Result<Response<GetQuotaResponse>, Status> {
        let caller = self.caller(&request)?;
        let project = request.into_inner().project_id;
        let project = if project.is_empty() {
            caller.project_id.clone()
        } else {
            project
        };
        if !caller.can_see(&project) {
            return Err(Status::permission_denied(format!(
                "project_id: only admins may read quotas of project {project}"
            )));
        }
        let response = self
            .read(move |s| GetQuotaResponse {
                quota: Some(s.effective_quota(&project)),
                in_use: Some(QuotaUsage {
                    loadbalancer: s.usage(&project, Kind::LoadBalancer),
                    listener: s.usage(&project, Kind::Listener),
                    pool: s.usage(&project, Kind::Pool),
                    healthmonitor: s.usage(&project, Kind::HealthMonitor),
                    member: s.usage(&project, Kind::Member),
                    l7policy: s.usage(&project, Kind::L7Policy),
                    l7rule: s.usage(&project, Kind::L7Rule),
                }),
            })
            .await?;
        Ok(Response::new(response))
    }

    async fn get_quota_defaults(
        &self,
        request: Request<GetQuotaDefaultsRequest>,
    ) -> Result<Response<Quota>, Status> {
        self.caller(&request)?;
        let defaults = self.read(|s| s.effective_quota("")).await?;
        Ok(Response::new(defaults))
    }

    async fn update_quota(
        &self,
        request: Request<UpdateQuotaRequest>,
    ) -> Result<Response<Quota>, Status> {
        let caller = self.caller(&request)?;
        caller.require_admin("changing quotas")?;
        let op = Op::SetQuota(request.get_ref().clone());
        Ok(Response::new(
            self.propose_quota(&request, &caller, op).await?,
        ))
    }

    async fn delete_quota(
        &self,
        request: Request<DeleteQuotaRequest>,
    ) -> Result<Response<DeleteResponse>, Status> {
        let caller = self.caller(&request)?;
        caller.require_admin("resetting quotas")?;
        if request.get_ref().project_id.is_empty() {
            return Err(Status::invalid_argument("project_id: is required"));
        }
        let op = Op::DeleteQuota(request.get_ref().clone());
        self.propose_objects(&request, &caller, op).await?;
        Ok(Response::new(DeleteResponse {}))
    }
}
