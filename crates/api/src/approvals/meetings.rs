//! OpenMeeting, AddMeetingCases, RecordMeetingDecision, CloseMeeting and GetMeeting: the
//! party-group meeting (党组会) that decides a batched step. Its decisions are recorded
//! item by item and applied all together when it closes, each through
//! [`super::decide::apply_decision`].

use chrono::NaiveDate;
use relief_domain::approval::{Decision, DecisionKind, decide};
use relief_domain::{CaseId, CaseState, DistrictId, Role, StepId, Violation};
use relief_proto::v1 as pb;
use relief_store::{CaseRecord, DecisionRecord, MeetingItemRecord, MeetingRecord, WriteTx};

use super::decide::{apply_decision, decide_error, parse_decision};
use super::{ApprovalApi, meeting_to_pb};
use crate::access::{DATE, new_id, parse_case_id, visible};
use crate::auth::{Caller, CaseVisibility};
use crate::convert::case_to_pb;
use crate::error::{ApiError, ApiResult};

const MAX_AGENDA_BATCH: usize = 200;
const MAX_ATTENDEES: usize = 50;

async fn open_meeting_for_office(
    tx: &WriteTx,
    district: &DistrictId,
    id: &str,
) -> ApiResult<MeetingRecord> {
    let m = tx
        .meeting(district, id)
        .await?
        .ok_or(ApiError::NotFound("meeting"))?;
    if !m.open {
        return Err(ApiError::precondition(
            "MEETING_CLOSED",
            "the meeting is closed",
        ));
    }
    Ok(m)
}

/// The decision recorded for an agenda item.
fn recorded_decision(item: &MeetingItemRecord) -> ApiResult<Decision> {
    let corrupt = || ApiError::Internal(format!("agenda item {} is corrupt", item.case_id));
    match item.decision {
        Some(DecisionKind::Approve) => Ok(Decision::Approve {
            amount: item.approved_amount,
        }),
        Some(DecisionKind::Return) => Ok(Decision::Return {
            to: item
                .return_to_step_id
                .as_deref()
                .map(StepId::parse)
                .transpose()
                .map_err(|_| corrupt())?,
        }),
        Some(DecisionKind::Reject) => Ok(Decision::Reject),
        None => Err(corrupt()),
    }
}

/// Refuses to close a meeting while any case of its agenda has no decision recorded.
fn check_all_decided(meeting: &MeetingRecord) -> ApiResult<()> {
    let undecided: Vec<String> = meeting
        .items
        .iter()
        .filter(|i| i.decision.is_none())
        .map(|i| i.case_id.to_string())
        .collect();
    if undecided.is_empty() {
        return Ok(());
    }
    Err(ApiError::precondition(
        "UNDECIDED_CASES",
        format!("no decision recorded for {}", undecided.join(", ")),
    ))
}

/// The step a case of the agenda waits at for the party-group decision.
fn step_awaiting_meeting(case: &CaseRecord) -> ApiResult<StepId> {
    case.state
        .step()
        .cloned()
        .filter(|_| matches!(case.state, CaseState::InReview { .. }))
        .ok_or_else(|| {
            ApiError::precondition(
                "CASE_MOVED_ON",
                format!(
                    "case {} is no longer waiting for the party-group decision",
                    case.id
                ),
            )
        })
}

/// Applies the decision recorded for one agenda `item` of the meeting `meeting_id` in
/// `district`; a
/// refusal names the case and says that nothing of the meeting was applied.
async fn apply_item(
    tx: &mut WriteTx,
    caller: &Caller,
    district: &DistrictId,
    meeting_id: &str,
    item: &MeetingItemRecord,
) -> ApiResult<(CaseRecord, DecisionRecord)> {
    let case = visible(
        tx.case(district, item.case_id).await?,
        &CaseVisibility::District,
    )?;
    let decision = recorded_decision(item)?;
    let step = step_awaiting_meeting(&case)?;
    let opinion = item.opinion.as_deref().unwrap_or("");
    apply_decision(
        tx,
        caller,
        &case,
        &step,
        &decision,
        opinion,
        Some(meeting_id),
    )
    .await
    .map_err(|e| match e {
        ApiError::FailedPrecondition { reason, message } => ApiError::FailedPrecondition {
            reason,
            message: format!("case {}: {message}; nothing was applied", case.id),
        },
        other => other,
    })
}

impl ApprovalApi {
    pub(super) async fn open_meeting(
        &self,
        caller: Caller,
        req: pb::OpenMeetingRequest,
    ) -> ApiResult<pb::OpenMeetingResponse> {
        let district = caller.require_district_role(Role::BureauOffice)?.clone();
        let m = self.ctx.mutation(&caller, &req.request_id, &req)?;
        let mut v = Vec::new();
        if NaiveDate::parse_from_str(&req.meeting_date, DATE).is_err() {
            v.push(Violation::new("meeting_date", "must be a date YYYY-MM-DD"));
        }
        // Counted before any name is looked at: too many are refused once, not each.
        let counted = !req.attendees.is_empty() && req.attendees.len() <= MAX_ATTENDEES;
        if !counted {
            v.push(Violation::new(
                "attendees",
                format_args!("between 1 and {MAX_ATTENDEES} names"),
            ));
        }
        let names = if counted { &req.attendees[..] } else { &[][..] };
        for (i, a) in names.iter().enumerate() {
            if a.trim().is_empty() || a.chars().count() > 64 {
                v.push(Violation::new(
                    format!("attendees[{i}]"),
                    "a name of 1 to 64 characters",
                ));
            }
        }
        if req.minutes_reference.chars().count() > 200 {
            v.push(Violation::new(
                "minutes_reference",
                "must be at most 200 characters",
            ));
        }
        if !v.is_empty() {
            return Err(ApiError::InvalidArgument(v));
        }
        m.run(Some(&district), Role::BureauOffice, async |tx| {
            let record = MeetingRecord {
                id: new_id(),
                district_id: district.clone(),
                meeting_date: req.meeting_date.clone(),
                attendees: req.attendees.iter().map(|a| a.trim().to_owned()).collect(),
                minutes_reference: req.minutes_reference.trim().to_owned(),
                open: true,
                opened_by: caller.claims().subject().to_string(),
                opened_at: tx.now(),
                closed_at: None,
                items: Vec::new(),
            };
            tx.insert_meeting(&record).await?;
            Ok(pb::OpenMeetingResponse {
                meeting: Some(meeting_to_pb(&record)),
            })
        })
        .await
    }

    pub(super) async fn add_meeting_cases(
        &self,
        caller: Caller,
        req: pb::AddMeetingCasesRequest,
    ) -> ApiResult<pb::AddMeetingCasesResponse> {
        let district = caller.require_district_role(Role::BureauOffice)?.clone();
        let m = self.ctx.mutation(&caller, &req.request_id, &req)?;
        if req.case_ids.is_empty() || req.case_ids.len() > MAX_AGENDA_BATCH {
            return Err(ApiError::invalid(
                "case_ids",
                format_args!("between 1 and {MAX_AGENDA_BATCH} cases"),
            ));
        }
        let mut ids = Vec::new();
        for (i, s) in req.case_ids.iter().enumerate() {
            let id =
                CaseId::parse(s).map_err(|e| ApiError::invalid(format!("case_ids[{i}]"), e))?;
            if ids.contains(&id) {
                return Err(ApiError::invalid(format!("case_ids[{i}]"), "appears twice"));
            }
            ids.push(id);
        }
        m.run(Some(&district), Role::BureauOffice, async |tx| {
            let before = open_meeting_for_office(tx, &district, &req.meeting_id).await?;
            for id in &ids {
                let case = visible(tx.case(&district, *id).await?, &CaseVisibility::District)?;
                let rules = tx.case_rules(&case).await?;
                let batched = case
                    .state
                    .step()
                    .filter(|_| matches!(case.state, CaseState::InReview { .. }))
                    .and_then(|s| rules.approval_chain.step(s))
                    .is_some_and(|s| s.batched);
                if !batched {
                    return Err(ApiError::precondition(
                        "NOT_AWAITING_MEETING",
                        format!("case {id} is not waiting for the party-group decision"),
                    ));
                }
                if let Some(m) = tx.open_meeting_of_case(&district, *id).await? {
                    return Err(ApiError::precondition(
                        "ALREADY_ON_AGENDA",
                        format!("case {id} is already on the agenda of open meeting {m}"),
                    ));
                }
            }
            let after = tx.add_meeting_items(&before, &ids).await?;
            Ok(pb::AddMeetingCasesResponse {
                meeting: Some(meeting_to_pb(&after)),
            })
        })
        .await
    }

    pub(super) async fn record_meeting_decision(
        &self,
        caller: Caller,
        req: pb::RecordMeetingDecisionRequest,
    ) -> ApiResult<pb::RecordMeetingDecisionResponse> {
        let district = caller.require_district_role(Role::BureauOffice)?.clone();
        let m = self.ctx.mutation(&caller, &req.request_id, &req)?;
        let id = parse_case_id(&req.case_id)?;
        let decision = parse_decision(
            req.decision,
            req.approved_amount_fen,
            &req.return_to_step_id,
            &req.opinion,
        )?;
        m.run(Some(&district), Role::BureauOffice, async |tx| {
            let before = open_meeting_for_office(tx, &district, &req.meeting_id).await?;
            if !before.items.iter().any(|i| i.case_id == id) {
                return Err(ApiError::NotFound("case on this meeting's agenda"));
            }
            // Check the decision against the case now, so the meeting learns of a bad amount
            // or return target when it records it, not only when it closes.
            let case = visible(tx.case(&district, id).await?, &CaseVisibility::District)?;
            let rules = tx.case_rules(&case).await?;
            if let Some(step) = case.state.step() {
                decide(
                    &rules.approval_chain,
                    case.decision_facts(),
                    step,
                    &decision,
                )
                .map_err(decide_error)?;
            }
            let item = MeetingItemRecord {
                case_id: id,
                decision: Some(decision.kind()),
                approved_amount: decision.amount(),
                return_to_step_id: decision.return_to().map(ToString::to_string),
                opinion: Some(req.opinion.trim().to_owned()).filter(|o| !o.is_empty()),
            };
            let after = tx.set_meeting_decision(&before, item).await?;
            Ok(pb::RecordMeetingDecisionResponse {
                meeting: Some(meeting_to_pb(&after)),
            })
        })
        .await
    }

    /// Closes a meeting, applying every recorded decision. All or nothing: the first case
    /// that cannot take its decision fails the close, and the transaction undoes every case
    /// already moved.
    pub(super) async fn close_meeting(
        &self,
        caller: Caller,
        req: pb::CloseMeetingRequest,
    ) -> ApiResult<pb::CloseMeetingResponse> {
        let district = caller.require_district_role(Role::BureauOffice)?.clone();
        let m = self.ctx.mutation(&caller, &req.request_id, &req)?;
        m.run(Some(&district), Role::BureauOffice, async |tx| {
            let before = open_meeting_for_office(tx, &district, &req.meeting_id).await?;
            check_all_decided(&before)?;
            let after_meeting = tx.close_meeting(&before).await?;
            let mut cases = Vec::new();
            for item in &before.items {
                let (after, record) = apply_item(tx, &caller, &district, &before.id, item).await?;
                tracing::info!(district = %district, case = %record.case_id, step = %record.step_id, decision = ?record.decision, meeting = %before.id, "case decided");
                cases.push(case_to_pb(&after, &caller.case_view(&after)));
            }
            tracing::info!(district = %district, meeting = %before.id, cases = before.items.len(), "meeting closed");
            Ok(pb::CloseMeetingResponse {
                meeting: Some(meeting_to_pb(&after_meeting)),
                cases,
            })
        })
        .await
    }

    pub(super) async fn get_meeting(
        &self,
        caller: Caller,
        req: pb::GetMeetingRequest,
    ) -> ApiResult<pb::GetMeetingResponse> {
        let district = caller.district_reader("see meetings")?;
        let m = self
            .ctx
            .store
            .meeting(&district, &req.meeting_id)
            .await?
            .ok_or(ApiError::NotFound("meeting"))?;
        Ok(pb::GetMeetingResponse {
            meeting: Some(meeting_to_pb(&m)),
        })
    }
}
