//! Dispatch of one replicated command, with de-duplication and all-or-nothing semantics.

use fulcrum_proto::internal::{command::Op, command_result, Command, CommandResult, Objects};
use prost::Message;

use super::records::RecordKey;
use super::State;
use crate::error::ModelResult;

/// What a command handler knows about the command being applied.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    /// Log index of the command: the new model revision.
    pub revision: u64,
    /// RFC 3339 time chosen by the proposer.
    pub now: String,
}

impl State {
    /// Applies the command at log `index`. A refused command changes nothing but the revision;
    /// a command whose `request_id` was already applied returns the remembered result.
    pub fn apply(&mut self, index: u64, command: &Command) -> CommandResult {
        if let Some(result) = self
            .remembered(&command.request_id)
            .and_then(|r| CommandResult::decode(r).ok())
        {
            self.revision = index;
            self.touch(RecordKey::Revision);
            return result;
        }
        self.revision = index;
        self.touch(RecordKey::Revision);
        self.journal.clear();
        let ctx = Ctx {
            revision: index,
            now: command.now.clone(),
        };
        let result = match self.dispatch(&ctx, command.op.as_ref()) {
            Ok(result) => result,
            Err(error) => {
                self.rollback(0);
                command_result::Result::Error(error.to_proto())
            }
        };
        self.journal.clear();
        let result = CommandResult {
            result: Some(result),
        };
        self.remember_request(&command.request_id, result.encode_to_vec());
        result
    }

    fn dispatch(&mut self, ctx: &Ctx, op: Option<&Op>) -> ModelResult<command_result::Result> {
        use command_result::Result as R;
        let objects = |o: Objects| Ok(R::Objects(o));
        let Some(op) = op else {
            return objects(Objects::default());
        };
        match op {
            Op::Create(o) => objects(self.create(ctx, o)?),
            Op::UpdateLoadbalancer(r) => objects(self.update_loadbalancer(ctx, r)?),
            Op::UpdateListener(r) => objects(self.update_listener(ctx, r)?),
            Op::UpdatePool(r) => objects(self.update_pool(ctx, r)?),
            Op::UpdateMember(r) => objects(self.update_member(ctx, r)?),
            Op::UpdateHealthmonitor(r) => objects(self.update_healthmonitor(ctx, r)?),
            Op::UpdateL7policy(r) => objects(self.update_l7policy(ctx, r)?),
            Op::UpdateL7rule(r) => objects(self.update_l7rule(ctx, r)?),
            Op::DeleteLoadbalancer(r) => {
                objects(self.delete_loadbalancer(ctx, &r.loadbalancer_id, r.cascade)?)
            }
            Op::DeleteListener(r) => objects(self.delete_listener(ctx, &r.listener_id)?),
            Op::DeletePool(r) => objects(self.delete_pool(ctx, &r.pool_id)?),
            Op::DeleteMember(r) => objects(self.delete_member(ctx, &r.pool_id, &r.member_id)?),
            Op::DeleteHealthmonitor(r) => {
                objects(self.delete_healthmonitor(ctx, &r.healthmonitor_id)?)
            }
            Op::DeleteL7policy(r) => objects(self.delete_l7policy(ctx, &r.l7policy_id)?),
            Op::DeleteL7rule(r) => {
                objects(self.delete_l7rule(ctx, &r.l7policy_id, &r.l7rule_id)?)
            }
            Op::BatchMembers(b) => objects(self.batch_members(ctx, b)?),
            Op::SetQuota(q) => Ok(R::Quota(self.set_quota(q)?)),
            Op::DeleteQuota(q) => {
                self.delete_quota(&q.project_id);
                objects(Objects::default())
            }
            Op::SetQuotaDefaults(q) => Ok(R::Quota(self.set_quota_defaults(q)?)),
            Op::ConfirmApplied(c) => {
                self.confirm_applied(c.revision, &c.listener_errors);
                objects(Objects::default())
            }
            Op::Failover(f) => objects(self.failover(ctx, &f.loadbalancer_id)?),
            Op::VipAssignments(v) => {
                self.assign_vips(v);
                objects(Objects::default())
            }
            Op::MemberHealth(h) => {
                self.member_health(&h.statuses);
                objects(Objects::default())
            }
        }
    }
}
