//! ApprovalService: the review chain (审核审批). The inbox ([`inbox`]), single decisions
//! ([`decide`]), delegations ([`delegations`]), party-group meetings ([`meetings`]) and
//! the bureau's cancellation of a final approval ([`cancel`]); every decision, single or at
//! a meeting, goes through [`decide::apply_decision`].

mod cancel;
mod decide;
mod delegations;
mod inbox;
mod meetings;

use relief_domain::Money;
use relief_domain::approval::DecisionKind;
use relief_proto::v1 as pb;
use relief_proto::v1::approval_service_server::ApprovalService;
use relief_store::{DecisionRecord, DelegationRecord, MeetingRecord};
use tonic::{Request, Response, Status};

use crate::ApiContext;
use crate::convert::{role_to_pb, timestamp};
use crate::plumbing::handle;

#[derive(Debug, Clone)]
pub struct ApprovalApi {
    ctx: ApiContext,
}

impl ApprovalApi {
    pub fn new(ctx: ApiContext) -> Self {
        Self { ctx }
    }
}

fn decision_kind_to_pb(k: DecisionKind) -> pb::Decision {
    match k {
        DecisionKind::Approve => pb::Decision::Approve,
        DecisionKind::Return => pb::Decision::Return,
        DecisionKind::Reject => pb::Decision::Reject,
    }
}

fn decision_to_pb(d: &DecisionRecord) -> pb::DecisionRecord {
    pb::DecisionRecord {
        case_id: d.case_id.to_string(),
        step_id: d.step_id.to_string(),
        step_name: d.step_name.clone(),
        decision: decision_kind_to_pb(d.decision).into(),
        actor_subject: d.actor_subject.clone(),
        actor_name: d.actor_name.clone(),
        actor_role: role_to_pb(d.actor_role).into(),
        on_behalf_of_subject: d.on_behalf_of.clone().unwrap_or_default(),
        opinion: d.opinion.clone(),
        amount_before_fen: d.amount_before.fen(),
        amount_after_fen: d.amount_after.fen(),
        over_cap: d.over_cap,
        over_cap_justification: d.over_cap_justification.clone(),
        meeting_id: d.meeting_id.clone().unwrap_or_default(),
        decide_time: Some(timestamp(d.decided_at)),
        return_to_step_id: d.return_to_step_id.clone().unwrap_or_default(),
    }
}

fn delegation_to_pb(d: &DelegationRecord) -> pb::Delegation {
    pb::Delegation {
        delegation_id: d.id.clone(),
        delegator_subject: d.delegator_subject.clone(),
        delegator_name: d.delegator_name.clone(),
        delegate_subject: d.delegate_subject.clone(),
        role: role_to_pb(d.role).into(),
        start_time: Some(timestamp(d.starts_at)),
        end_time: Some(timestamp(d.ends_at)),
        revoke_time: d.revoked_at.map(timestamp),
        create_time: Some(timestamp(d.created_at)),
    }
}

fn meeting_to_pb(m: &MeetingRecord) -> pb::Meeting {
    pb::Meeting {
        meeting_id: m.id.clone(),
        meeting_date: m.meeting_date.clone(),
        attendees: m.attendees.clone(),
        minutes_reference: m.minutes_reference.clone(),
        state: if m.open {
            pb::MeetingState::Open
        } else {
            pb::MeetingState::Closed
        }
        .into(),
        items: m
            .items
            .iter()
            .map(|i| pb::MeetingItem {
                case_id: i.case_id.to_string(),
                decision: i
                    .decision
                    .map_or(pb::Decision::Unspecified, decision_kind_to_pb)
                    .into(),
                approved_amount_fen: i.approved_amount.map_or(0, Money::fen),
                return_to_step_id: i.return_to_step_id.clone().unwrap_or_default(),
                opinion: i.opinion.clone().unwrap_or_default(),
            })
            .collect(),
        opened_by: m.opened_by.clone(),
        open_time: Some(timestamp(m.opened_at)),
        close_time: m.closed_at.map(timestamp),
    }
}

#[tonic::async_trait]
impl ApprovalService for ApprovalApi {
    async fn list_my_tasks(
        &self,
        request: Request<pb::ListMyTasksRequest>,
    ) -> Result<Response<pb::ListMyTasksResponse>, Status> {
        handle!(self, request, list_my_tasks)
    }

    async fn list_overdue(
        &self,
        request: Request<pb::ListOverdueRequest>,
    ) -> Result<Response<pb::ListOverdueResponse>, Status> {
        handle!(self, request, list_overdue)
    }

    async fn decide_case(
        &self,
        request: Request<pb::DecideCaseRequest>,
    ) -> Result<Response<pb::DecideCaseResponse>, Status> {
        handle!(self, request, decide_case)
    }

    async fn cancel_approval(
        &self,
        request: Request<pb::CancelApprovalRequest>,
    ) -> Result<Response<pb::CancelApprovalResponse>, Status> {
        handle!(self, request, cancel_approval)
    }

    async fn create_delegation(
        &self,
        request: Request<pb::CreateDelegationRequest>,
    ) -> Result<Response<pb::CreateDelegationResponse>, Status> {
        handle!(self, request, create_delegation)
    }

    async fn list_delegations(
        &self,
        request: Request<pb::ListDelegationsRequest>,
    ) -> Result<Response<pb::ListDelegationsResponse>, Status> {
        handle!(self, request, list_delegations)
    }

    async fn revoke_delegation(
        &self,
        request: Request<pb::RevokeDelegationRequest>,
    ) -> Result<Response<pb::RevokeDelegationResponse>, Status> {
        handle!(self, request, revoke_delegation)
    }

    async fn open_meeting(
        &self,
        request: Request<pb::OpenMeetingRequest>,
    ) -> Result<Response<pb::OpenMeetingResponse>, Status> {
        handle!(self, request, open_meeting)
    }

    async fn add_meeting_cases(
        &self,
        request: Request<pb::AddMeetingCasesRequest>,
    ) -> Result<Response<pb::AddMeetingCasesResponse>, Status> {
        handle!(self, request, add_meeting_cases)
    }

    async fn record_meeting_decision(
        &self,
        request: Request<pb::RecordMeetingDecisionRequest>,
    ) -> Result<Response<pb::RecordMeetingDecisionResponse>, Status> {
        handle!(self, request, record_meeting_decision)
    }

    async fn close_meeting(
        &self,
        request: Request<pb::CloseMeetingRequest>,
    ) -> Result<Response<pb::CloseMeetingResponse>, Status> {
        handle!(self, request, close_meeting)
    }

    async fn get_meeting(
        &self,
        request: Request<pb::GetMeetingRequest>,
    ) -> Result<Response<pb::GetMeetingResponse>, Status> {
        handle!(self, request, get_meeting)
    }
}
