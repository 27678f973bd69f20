//! FollowUpService: whether relief ended the petition (跟踪回访). Payment schedules the
//! follow-ups; the bureau's reviewing staff record them.

use relief_domain::Role;
use relief_proto::v1 as pb;
use relief_proto::v1::follow_up_service_server::FollowUpService;
use relief_store::{CaseRecord, FollowUpRecord, WriteTx};
use tonic::{Request, Response, Status};

use crate::ApiContext;
use crate::access::{DATE, parse_case_id, parse_date, required_text, visible};
use crate::auth::{Caller, CaseVisibility};
use crate::convert::timestamp;
use crate::error::{ApiError, ApiResult};
use crate::paging::{ListKey, date_key, parse_date_key};
use crate::plumbing::handle;

const MAX_TEXT: usize = 2000;

fn follow_up_to_pb(f: &FollowUpRecord) -> pb::FollowUp {
    pb::FollowUp {
        follow_up_id: f.id.clone(),
        case_id: f.case_id.to_string(),
        sequence: f.sequence,
        due_date: f.due_date.format(DATE).to_string(),
        done: f.done,
        done_date: f
            .done_date
            .map(|d| d.format(DATE).to_string())
            .unwrap_or_default(),
        method: f.method.clone().unwrap_or_default(),
        petitioned_again: f.petitioned_again,
        notes: f.notes.clone().unwrap_or_default(),
        recorded_by: f.recorded_by.clone().unwrap_or_default(),
        record_time: f.recorded_at.map(timestamp),
    }
}

/// Marks the case of `follow_up` as petitioned again (再次上访), once.
async fn flag_petitioned_again(tx: &mut WriteTx, follow_up: &FollowUpRecord) -> ApiResult<()> {
    let case = visible(
        tx.case(&follow_up.district_id, follow_up.case_id).await?,
        &CaseVisibility::District,
    )?;
    if !case.petitioned_again {
        let mut flagged = CaseRecord {
            petitioned_again: true,
            ..case.clone()
        };
        tx.update_case(
            "case.petitioned_again",
            Some("follow-up found a new petition"),
            &case,
            &mut flagged,
        )
        .await?;
    }
    Ok(())
}

/// Roles that record follow-ups: the bureau's reviewing staff.
const FOLLOW_UP_ROLES: [Role; 4] = [
    Role::CaseOfficer,
    Role::DeputyLeader,
    Role::BureauHead,
    Role::BureauOffice,
];

#[derive(Debug, Clone)]
pub struct FollowUpApi {
    ctx: ApiContext,
}

impl FollowUpApi {
    pub fn new(ctx: ApiContext) -> Self {
        Self { ctx }
    }

    async fn list_due(
        &self,
        caller: Caller,
        req: pb::ListDueFollowUpsRequest,
    ) -> ApiResult<pb::ListDueFollowUpsResponse> {
        let district = caller.district_reader("see payments and the ledger")?;
        let due_by = match req.due_on_or_before.as_str() {
            "" => self.ctx.clock.now().date_naive(),
            s => parse_date("due_on_or_before", s)?,
        };
        let limit = self.ctx.page_size(req.page_size)?;
        let key = ListKey::of(district.as_str(), &req);
        let after = key.cursor_as(&req.page_token, parse_date_key)?;
        let mut rows = self
            .ctx
            .store
            .due_follow_ups(&district, due_by, after, limit + 1)
            .await?;
        let next_page_token = key.next_page(&mut rows, limit, |f| date_key(f.due_date, &f.id));
        Ok(pb::ListDueFollowUpsResponse {
            follow_ups: rows.iter().map(follow_up_to_pb).collect(),
            next_page_token,
        })
    }

    async fn list_case(
        &self,
        caller: Caller,
        req: pb::ListCaseFollowUpsRequest,
    ) -> ApiResult<pb::ListCaseFollowUpsResponse> {
        let district = caller.district_reader("see payments and the ledger")?;
        let id = parse_case_id(&req.case_id)?;
        visible(
            self.ctx.store.case(&district, id).await?,
            &CaseVisibility::District,
        )?;
        let rows = self.ctx.store.case_follow_ups(&district, id).await?;
        Ok(pb::ListCaseFollowUpsResponse {
            follow_ups: rows.iter().map(follow_up_to_pb).collect(),
        })
    }

    async fn record(
        &self,
        caller: Caller,
        req: pb::RecordFollowUpRequest,
    ) -> ApiResult<pb::RecordFollowUpResponse> {
        if caller.is_city() {
            return Err(ApiError::denied(
                "follow-ups are recorded with a district-scoped token",
            ));
        }
        let district = caller.district()?.clone();
        let role = FOLLOW_UP_ROLES
            .into_iter()
            .find(|r| caller.has_role(*r))
            .ok_or_else(|| {
                ApiError::denied("follow-ups are recorded by the bureau's reviewing staff")
            })?;
        let m = self.ctx.mutation(&caller, &req.request_id, &req)?;
        let done_on = parse_date("done_date", &req.done_date)?;
        let method = required_text("method", &req.method, 64)?;
        if req.notes.chars().count() > MAX_TEXT {
            return Err(ApiError::invalid(
                "notes",
                format_args!("must be at most {MAX_TEXT} characters"),
            ));
        }
        m.run(Some(&district), role, async |tx| {
            if done_on > tx.now().date_naive() {
                return Err(ApiError::invalid("done_date", "must not be in the future"));
            }
            let before = tx
                .follow_up(&district, &req.follow_up_id)
                .await?
                .ok_or(ApiError::NotFound("follow-up"))?;
            if before.done {
                return Err(ApiError::precondition(
                    "FOLLOW_UP_RECORDED",
                    "this follow-up is already recorded",
                ));
            }
            let after = FollowUpRecord {
                done: true,
                done_date: Some(done_on),
                method: Some(method),
                petitioned_again: req.petitioned_again,
                notes: Some(req.notes.trim().to_owned()).filter(|n| !n.is_empty()),
                recorded_by: Some(caller.claims().subject().to_string()),
                recorded_at: Some(tx.now()),
                ..before.clone()
            };
            tx.record_follow_up(&before, &after).await?;
            if req.petitioned_again {
                flag_petitioned_again(tx, &before).await?;
            }
            Ok(pb::RecordFollowUpResponse {
                follow_up: Some(follow_up_to_pb(&after)),
            })
        })
        .await
    }
}

#[tonic::async_trait]
impl FollowUpService for FollowUpApi {
    async fn list_due_follow_ups(
        &self,
        request: Request<pb::ListDueFollowUpsRequest>,
    ) -> Result<Response<pb::ListDueFollowUpsResponse>, Status> {
        handle!(self, request, list_due)
    }
    async fn list_case_follow_ups(
        &self,
        request: Request<pb::ListCaseFollowUpsRequest>,
    ) -> Result<Response<pb::ListCaseFollowUpsResponse>, Status> {
        handle!(self, request, list_case)
    }
    async fn record_follow_up(
        &self,
        request: Request<pb::RecordFollowUpRequest>,
    ) -> Result<Response<pb::RecordFollowUpResponse>, Status> {
        handle!(self, request, record)
    }
}
