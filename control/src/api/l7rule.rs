//! `L7RuleService`.

use fulcrum_proto::internal::{command::Op, Objects};
use fulcrum_proto::v1::l7_rule_service_server::L7RuleService;
use fulcrum_proto::v1::*;
use tonic::{Request, Response, Status};

use super::listing::{check_options, page};
use super::new_objects;
use super::{first, Api, Caller, Store};

impl<S: Store> Api<S> {
    /// A rule the caller may see, in the policy the request names.
    async fn rule_in_policy(
        &self,
        caller: &Caller,
        policy_id: &str,
        rule_id: &str,
    ) -> Result<L7Rule, Status> {
        let r: L7Rule = self.visible_one(caller, rule_id).await?;
        if r.l7policy_id != policy_id {
            return Err(Status::not_found(format!(
                "L7Rule {rule_id} not found in L7 policy {policy_id}"
            )));
        }
        Ok(r)
    }
}

#[tonic::async_trait]
impl<S: Store> L7RuleService for Api<S> {
    async fn create_l7_rule(
        &self,
        request: Request<CreateL7RuleRequest>,
    ) -> Result<Response<L7Rule>, Status> {
        let c = request
            .get_ref()
            .rule
            .clone()
            .ok_or_else(|| Status::invalid_argument("rule: is required"))?;
        let (caller, policy) = self
            .parent_for_create::<L7Policy, _>(&request, "l7policy_id", &c.l7policy_id)
            .await?;
        let objects = Objects {
            l7rules: vec![new_objects::l7rule(&c, &policy.id, &policy.project_id)],
            ..Default::default()
        };
        let o = self
            .propose_objects(&request, &caller, Op::Create(objects))
            .await?;
        Ok(Response::new(first(o.l7rules, "L7 rule")?))
    }

    async fn get_l7_rule(
        &self,
        request: Request<GetL7RuleRequest>,
    ) -> Result<Response<L7Rule>, Status> {
        let caller = self.caller(&request)?;
        let r = request.get_ref();
        Ok(Response::new(
            self.rule_in_policy(&caller, &r.l7policy_id, &r.l7rule_id)
                .await?,
        ))
    }

    async fn list_l7_rules(
        &self,
        request: Request<ListL7RulesRequest>,
    ) -> Result<Response<ListL7RulesResponse>, Status> {
        let caller = self.caller(&request)?;
        let r = request.into_inner();
        self.visible_one::<L7Policy>(&caller, &r.l7policy_id)
            .await?;
        let options = r.options.clone().unwrap_or_default();
        check_options(&caller, &options)?;
        let (rules, next_marker) = self
            .read_with(move |s| {
                page::<L7Rule>(s, &caller, &options, |rule| {
                    rule.l7policy_id == r.l7policy_id
                        && (r.r#type == 0 || rule.r#type == r.r#type)
                        && (r.compare_type == 0 || rule.compare_type == r.compare_type)
                })
            })
            .await?;
        Ok(Response::new(ListL7RulesResponse { rules, next_marker }))
    }

    async fn update_l7_rule(
        &self,
        request: Request<UpdateL7RuleRequest>,
    ) -> Result<Response<L7Rule>, Status> {
        let caller = self.caller(&request)?;
        caller.require_write()?;
        let r = request.get_ref();
        self.rule_in_policy(&caller, &r.l7policy_id, &r.l7rule_id)
            .await?;
        let o = self
            .propose_objects(&request, &caller, Op::UpdateL7rule(r.clone()))
            .await?;
        Ok(Response::new(first(o.l7rules, "L7 rule")?))
    }

    async fn delete_l7_rule(
        &self,
        request: Request<DeleteL7RuleRequest>,
    ) -> Result<Response<DeleteResponse>, Status> {
        let caller = self.caller(&request)?;
        caller.require_write()?;
        let r = request.get_ref();
        self.rule_in_policy(&caller, &r.l7policy_id, &r.l7rule_id)
            .await?;
        self.propose_objects(&request, &caller, Op::DeleteL7rule(r.clone()))
            .await?;
        Ok(Response::new(DeleteResponse {}))
    }
}
