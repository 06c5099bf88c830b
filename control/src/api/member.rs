//! `MemberService`.

use fulcrum_proto::internal::{command::Op, BatchMembers, Objects};
use fulcrum_proto::v1::member_service_server::MemberService;
use fulcrum_proto::v1::*;
use tonic::{Request, Response, Status};

use super::listing::{check_options, page};
use super::new_objects;
use super::{first, Api, Store};

impl<S: Store> Api<S> {
    /// A member the caller may see, in the pool the request names.
    async fn member_in_pool(
        &self,
        caller: &super::Caller,
        pool_id: &str,
        member_id: &str,
    ) -> Result<Member, Status> {
        let m: Member = self.visible_one(caller, member_id).await?;
        if m.pool_id != pool_id {
            return Err(Status::not_found(format!(
                "Member {member_id} not found in pool {pool_id}"
            )));
        }
        Ok(m)
    }
}

#[tonic::async_trait]
impl<S: Store> MemberService for Api<S> {
    async fn create_member(
        &self,
        request: Request<CreateMemberRequest>,
    ) -> Result<Response<Member>, Status> {
        let c = request
            .get_ref()
            .member
            .clone()
            .ok_or_else(|| Status::invalid_argument("member: is required"))?;
        if c.request_sriov {
            return Err(Status::invalid_argument(
                "request_sriov: Fulcrum has no SR-IOV member ports",
            ));
        }
        let (caller, pool) = self
            .parent_for_create::<Pool, _>(&request, "pool_id", &c.pool_id)
            .await?;
        let objects = Objects {
            members: vec![new_objects::member(&c, &pool.id, &pool.project_id)],
            ..Default::default()
        };
        let o = self
            .propose_objects(&request, &caller, Op::Create(objects))
            .await?;
        Ok(Response::new(first(o.members, "member")?))
    }

    async fn get_member(
        &self,
        request: Request<GetMemberRequest>,
    ) -> Result<Response<Member>, Status> {
        let caller = self.caller(&request)?;
        let r = request.get_ref();
        Ok(Response::new(
            self.member_in_pool(&caller, &r.pool_id, &r.member_id)
                .await?,
        ))
    }

    async fn list_members(
        &self,
        request: Request<ListMembersRequest>,
    ) -> Result<Response<ListMembersResponse>, Status> {
        let caller = self.caller(&request)?;
        let r = request.into_inner();
        self.visible_one::<Pool>(&caller, &r.pool_id).await?;
        let options = r.options.clone().unwrap_or_default();
        check_options(&caller, &options)?;
        let (members, next_marker) = self
            .read_with(move |s| {
                page::<Member>(s, &caller, &options, |m| {
                    m.pool_id == r.pool_id
                        && (r.address.is_empty() || m.address == r.address)
                        && (r.protocol_port == 0 || m.protocol_port == r.protocol_port)
                })
            })
            .await?;
        Ok(Response::new(ListMembersResponse {
            members,
            next_marker,
        }))
    }

    async fn update_member(
        &self,
        request: Request<UpdateMemberRequest>,
    ) -> Result<Response<Member>, Status> {
        let caller = self.caller(&request)?;
        caller.require_write()?;
        let r = request.get_ref();
        self.member_in_pool(&caller, &r.pool_id, &r.member_id)
            .await?;
        let op = Op::UpdateMember(r.clone());
        let o = self.propose_objects(&request, &caller, op).await?;
        Ok(Response::new(first(o.members, "member")?))
    }

    async fn delete_member(
        &self,
        request: Request<DeleteMemberRequest>,
    ) -> Result<Response<DeleteResponse>, Status> {
        let caller = self.caller(&request)?;
        caller.require_write()?;
        let r = request.get_ref();
        self.member_in_pool(&caller, &r.pool_id, &r.member_id)
            .await?;
        let op = Op::DeleteMember(r.clone());
        self.propose_objects(&request, &caller, op).await?;
        Ok(Response::new(DeleteResponse {}))
    }

    async fn batch_update_members(
        &self,
        request: Request<BatchUpdateMembersRequest>,
    ) -> Result<Response<BatchUpdateMembersResponse>, Status> {
        let (caller, pool) = self
            .parent_for_create::<Pool, _>(&request, "pool_id", &request.get_ref().pool_id)
            .await?;
        let r = request.get_ref();
        let batch = BatchMembers {
            pool_id: pool.id.clone(),
            members: r
                .members
                .iter()
                .map(|m| new_objects::member(m, &pool.id, &pool.project_id))
                .collect(),
            additive_only: r.additive_only,
        };
        let o = self
            .propose_objects(&request, &caller, Op::BatchMembers(batch))
            .await?;
        Ok(Response::new(BatchUpdateMembersResponse {
            members: o.members,
        }))
    }
}
