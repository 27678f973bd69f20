//! ListMyTasks and ListOverdue: the cases waiting at a step, with the step each waits at.

use std::collections::HashMap;

use relief_domain::Role;
use relief_domain::rules::{ApprovalStep, may_hold_step};
use relief_proto::v1 as pb;
use relief_store::CaseRecord;

use super::ApprovalApi;
use crate::auth::Caller;
use crate::convert::{case_to_pb, role_to_pb, timestamp};
use crate::error::{ApiError, ApiResult};
use crate::paging::{ListKey, parse_case_time_key, time_key};

impl ApprovalApi {
    /// The step `case` waits at, from the rules it was filed under (which the store keeps
    /// in memory once read).
    async fn waiting_step(&self, case: &CaseRecord) -> ApiResult<Option<ApprovalStep>> {
        let Some(step) = case.state.step() else {
            return Ok(None);
        };
        let rules = self
            .ctx
            .store
            .rules_version(&case.district_id, case.rules_version)
            .await?
            .ok_or_else(|| ApiError::Internal("rules version missing".to_owned()))?;
        Ok(rules.rules.approval_chain.step(step).cloned())
    }

    async fn tasks(
        &self,
        caller: &Caller,
        cases: Vec<CaseRecord>,
        delegated: &HashMap<Role, String>,
    ) -> ApiResult<Vec<pb::Task>> {
        let now = self.ctx.clock.now();
        let mut out = Vec::with_capacity(cases.len());
        for c in cases {
            let step = self.waiting_step(&c).await?;
            let role = c.step_role;
            out.push(pb::Task {
                step_id: step.as_ref().map(|s| s.id.to_string()).unwrap_or_default(),
                step_name: step.as_ref().map(|s| s.name.clone()).unwrap_or_default(),
                role: role.map_or(pb::Role::Unspecified, role_to_pb).into(),
                arrive_time: c.step_entered_at.map(timestamp),
                deadline_time: c.step_deadline_at.map(timestamp),
                overdue: c.step_deadline_at.is_some_and(|d| d < now),
                on_behalf_of_subject: role
                    .filter(|r| !caller.has_role(*r))
                    .and_then(|r| delegated.get(&r).cloned())
                    .unwrap_or_default(),
                case: Some(case_to_pb(&c, &caller.case_view(&c))),
            });
        }
        Ok(out)
    }

    pub(super) async fn list_my_tasks(
        &self,
        caller: Caller,
        req: pb::ListMyTasksRequest,
    ) -> ApiResult<pb::ListMyTasksResponse> {
        let district = caller.district()?.clone();
        let limit = self.ctx.page_size(req.page_size)?;
        let key = ListKey::of(district.as_str(), &req);
        let after = key.cursor_as(&req.page_token, parse_case_time_key)?;
        let now = self.ctx.clock.now();
        let roles: Vec<Role> = caller
            .claims()
            .roles()
            .iter()
            .copied()
            .filter(|r| may_hold_step(*r))
            .collect();
        let subject = caller.claims().subject().as_str();
        let mut rows = self
            .ctx
            .store
            .cases_waiting_for(&district, &roles, subject, now, after, limit + 1)
            .await?;
        // Who delegated a step is looked up only when the inbox holds one.
        let mut delegated = HashMap::new();
        if rows
            .iter()
            .any(|c| c.step_role.is_some_and(|r| !caller.has_role(r)))
        {
            for d in self
                .ctx
                .store
                .active_delegations(&district, subject, now)
                .await?
            {
                delegated.insert(d.role, d.delegator_subject);
            }
        }
        let next_page_token = key.next_page(&mut rows, limit, |c| {
            time_key(c.step_entered_at.unwrap_or_default(), &c.id.to_string())
        });
        Ok(pb::ListMyTasksResponse {
            tasks: self.tasks(&caller, rows, &delegated).await?,
            next_page_token,
        })
    }

    pub(super) async fn list_overdue(
        &self,
        caller: Caller,
        req: pb::ListOverdueRequest,
    ) -> ApiResult<pb::ListOverdueResponse> {
        let district = caller.district_reader("see overdue cases")?;
        let limit = self.ctx.page_size(req.page_size)?;
        let key = ListKey::of(district.as_str(), &req);
        let after = key.cursor_as(&req.page_token, parse_case_time_key)?;
        let mut rows = self
            .ctx
            .store
            .overdue_cases(&district, self.ctx.clock.now(), after, limit + 1)
            .await?;
        let next_page_token = key.next_page(&mut rows, limit, |c| {
            time_key(c.step_deadline_at.unwrap_or_default(), &c.id.to_string())
        });
        Ok(pb::ListOverdueResponse {
            tasks: self.tasks(&caller, rows, &HashMap::new()).await?,
            next_page_token,
        })
    }
}
