//! ApprovalService: the review chain (审核审批). Every decision goes through
//! [`apply_decision`], which checks the step, the caller's right to act on it (their own role
//! or a delegation), separation of duties, the amount, and at the final approval the budget;
//! then moves the case, records the decision, and reserves the money, all in the caller's
//! one transaction.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use relief_domain::approval::{
    CaseFacts, DecideError, Decision, PriorDecision, check_separation, decide,
};
use relief_domain::ledger::EntryKind;
use relief_domain::rules::{ApprovalStep, may_hold_step};
use relief_domain::{
    CaseId, CaseState, DistrictId, FundRules, Money, Role, StepId, Subject, Violation,
};
use relief_proto::v1 as pb;
use relief_proto::v1::approval_service_server::ApprovalService;
use relief_store::{
    Actor, CaseRecord, DecisionRecord, DelegationRecord, MeetingItemRecord, MeetingRecord, WriteTx,
};
use tonic::{Request, Response, Status};

use crate::auth::{Caller, CaseVisibility};
use crate::cases::{check_version, handle, move_to, parse_case_id, visible};
use crate::convert::{case_to_pb, role_from_pb, role_to_pb, timestamp};
use crate::error::{ApiError, ApiResult};
use crate::paging::ListKey;
use crate::{ApiContext, Begun, Locking, commit};

const MAX_OPINION_CHARS: usize = 2000;
const MAX_AGENDA_BATCH: usize = 200;
const MAX_ATTENDEES: usize = 50;
const MAX_DELEGATION_DAYS: i64 = 90;

#[derive(Debug, Clone)]
pub struct ApprovalApi {
    ctx: ApiContext,
}

impl ApprovalApi {
    pub fn new(ctx: ApiContext) -> Self {
        Self { ctx }
    }
}

fn decide_error(e: DecideError) -> ApiError {
    match e {
        DecideError::NotInReview => ApiError::precondition("CASE_NOT_IN_REVIEW", e.to_string()),
        DecideError::WrongStep { .. } => ApiError::precondition("CASE_MOVED_ON", e.to_string()),
        DecideError::UnknownStep(_) => ApiError::precondition("UNKNOWN_STEP", e.to_string()),
        DecideError::AmountRaised { .. } | DecideError::AmountZero => {
            ApiError::invalid("approved_amount_fen", e)
        }
        DecideError::NotAnEarlierStep(_) => ApiError::invalid("return_to_step_id", e),
    }
}

/// Reads a decision off the wire; field names are those of the request.
fn parse_decision(
    decision: i32,
    amount_fen: i64,
    return_to: &str,
    opinion: &str,
) -> ApiResult<Decision> {
    let mut v = Vec::new();
    let decision = match pb::Decision::try_from(decision) {
        Ok(pb::Decision::Approve) => match amount_fen {
            0 => Some(Decision::Approve { amount: None }),
            fen => match Money::from_fen(fen) {
                Ok(m) => Some(Decision::Approve { amount: Some(m) }),
                Err(e) => {
                    v.push(Violation::new("approved_amount_fen", e));
                    None
                }
            },
        },
        Ok(pb::Decision::Return) => match return_to {
            "" => Some(Decision::Return { to: None }),
            s => match StepId::parse(s) {
                Ok(step) => Some(Decision::Return { to: Some(step) }),
                Err(e) => {
                    v.push(Violation::new("return_to_step_id", e));
                    None
                }
            },
        },
        Ok(pb::Decision::Reject) => Some(Decision::Reject),
        Ok(pb::Decision::Unspecified) | Err(_) => {
            v.push(Violation::new(
                "decision",
                "must be approve, return or reject",
            ));
            None
        }
    };
    let opinion = opinion.trim();
    if opinion.chars().count() > MAX_OPINION_CHARS {
        v.push(Violation::new(
            "opinion",
            format_args!("must be at most {MAX_OPINION_CHARS} characters"),
        ));
    }
    if let Some(d) = &decision
        && d.needs_opinion()
        && opinion.is_empty()
    {
        v.push(Violation::new(
            "opinion",
            "a written opinion (审核意见) is required to return or reject",
        ));
    }
    if let (Some(d), true) = (decision, v.is_empty()) {
        if !matches!(d, Decision::Approve { .. }) && amount_fen != 0 {
            return Err(ApiError::invalid(
                "approved_amount_fen",
                "only an approval carries an amount",
            ));
        }
        Ok(d)
    } else {
        Err(ApiError::InvalidArgument(v))
    }
}

/// The rules a case was filed under.
async fn case_rules(tx: &WriteTx, case: &CaseRecord) -> ApiResult<FundRules> {
    tx.rules_version(&case.district_id, case.rules_version)
        .await?
        .ok_or_else(|| {
            ApiError::Internal(format!("rules version {} is missing", case.rules_version))
        })
}

/// Who the caller acts as on a step of `role`: themself when they hold it, else the person
/// who delegated it to them.
async fn acting_identity(
    tx: &WriteTx,
    caller: &Caller,
    district: &DistrictId,
    role: Role,
) -> ApiResult<Actor> {
    if caller.has_role(Role::Finance) {
        return Err(ApiError::denied("the finance section never approves"));
    }
    if caller.has_role(role) {
        return Ok(caller.actor(role));
    }
    let delegations = tx
        .active_delegations(district, caller.claims().subject().as_str())
        .await?;
    match delegations.iter().find(|d| d.role == role) {
        Some(d) => Ok(Actor {
            on_behalf_of: Some(
                Subject::parse(&d.delegator_subject)
                    .map_err(|e| ApiError::Internal(format!("stored delegator: {e}")))?,
            ),
            ..caller.actor(role)
        }),
        None => Err(ApiError::denied(format!(
            "this step is decided by the role {role}"
        ))),
    }
}

/// Decides `case` at `step_id` for `caller`; the one path for single decisions and meetings.
#[allow(clippy::too_many_arguments)]
async fn apply_decision(
    tx: &mut WriteTx,
    caller: &Caller,
    before: &CaseRecord,
    rules: &FundRules,
    step_id: &StepId,
    decision: &Decision,
    opinion: &str,
    meeting_id: Option<&str>,
) -> ApiResult<(CaseRecord, DecisionRecord)> {
    let district = before.district_id.clone();
    let chain = &rules.approval_chain;
    // The state and step first: a caller deciding a case that moved on learns that.
    let facts = CaseFacts {
        state: &before.state,
        requested: before.application.requested_amount,
        current: before
            .approved_amount
            .unwrap_or(before.application.requested_amount),
        over_cap: before.over_cap,
    };
    let outcome = decide(chain, facts, step_id, decision).map_err(decide_error)?;
    let step = chain
        .step(step_id)
        .ok_or_else(|| decide_error(DecideError::UnknownStep(step_id.clone())))?;
    if step.batched && meeting_id.is_none() {
        return Err(ApiError::precondition(
            "DECIDED_AT_MEETING",
            format!("step {} is decided at a party-group meeting", step.id),
        ));
    }
    let actor = acting_identity(tx, caller, &district, step.role).await?;
    if caller.claims().unit() == Some(&before.applicant_unit_id) {
        return Err(ApiError::denied(
            "nobody decides a case their own unit filed",
        ));
    }
    let prior: Vec<PriorDecision> = tx
        .decisions_for_case(&district, before.id)
        .await?
        .into_iter()
        .filter_map(|d| {
            Some(PriorDecision {
                step: d.step_id,
                actor: Subject::parse(&d.actor_subject).ok()?,
                on_behalf_of: d.on_behalf_of.and_then(|s| Subject::parse(&s).ok()),
            })
        })
        .collect();
    let filed_by = Subject::parse(&before.created_by)
        .map_err(|e| ApiError::Internal(format!("stored creator: {e}")))?;
    check_separation(
        &prior,
        &filed_by,
        &actor.subject,
        actor.on_behalf_of.as_ref(),
        step_id,
    )
    .map_err(|c| ApiError::denied(c.to_string()))?;
    tx.act_as(actor.clone());
    // The decision is a new row that nothing else refers to yet, so it is written before
    // the district's queue is joined.
    let record = DecisionRecord {
        id: uuid_v7(),
        case_id: before.id,
        step_id: step_id.clone(),
        step_name: step.name.clone(),
        decision: decision.as_str().to_owned(),
        actor_subject: actor.subject.to_string(),
        actor_name: actor.name.clone(),
        actor_role: actor.role,
        on_behalf_of: actor.on_behalf_of.as_ref().map(ToString::to_string),
        opinion: opinion.to_owned(),
        amount_before: facts.current,
        amount_after: outcome.amount,
        over_cap: before.over_cap,
        over_cap_justification: before.application.over_cap_justification.clone(),
        meeting_id: meeting_id.map(str::to_owned),
        return_to_step_id: match decision {
            Decision::Return { to } => to.as_ref().map(ToString::to_string),
            Decision::Approve { .. } | Decision::Reject => None,
        },
        decided_at: tx.now(),
        fiscal_year: before.application.fiscal_year,
        waited_secs: before
            .step_entered_at
            .map_or(0, |t| (tx.now() - t).num_seconds().max(0)),
    };
    tx.insert_decision(&district, &record).await?;

    if outcome.final_approval {
        let year = before
            .application
            .fiscal_year
            .ok_or_else(|| ApiError::Internal(format!("case {} has no fiscal year", before.id)))?;
        if tx.year_closed(&district, year).await? {
            return Err(ApiError::precondition(
                "YEAR_CLOSED",
                format!("fiscal year {year} is closed"),
            ));
        }
        let balance = tx.budget_balance(&district, year).await?;
        balance.check_reserve(outcome.amount).map_err(|e| {
            ApiError::precondition("BUDGET_EXCEEDED", format!("fiscal year {year}: {e}"))
        })?;
        tx.add_ledger_entry(
            &district,
            year,
            Some(before.id),
            EntryKind::Reserve,
            outcome.amount,
        )
        .await?;
    }

    let next_step: Option<&ApprovalStep> = outcome.state.step().and_then(|s| chain.step(s));
    let mut after = CaseRecord {
        approved_amount: Some(outcome.amount),
        ..before.clone()
    };
    let now = tx.now();
    move_to(
        &mut after,
        outcome.state.clone(),
        next_step.filter(|_| matches!(outcome.state, CaseState::InReview { .. })),
        now,
    );
    let action = match (decision, outcome.final_approval) {
        (Decision::Approve { .. }, true) => "case.approved",
        (Decision::Approve { .. }, false) => "case.step_approved",
        (Decision::Return { .. }, _) => "case.returned",
        (Decision::Reject, _) => "case.rejected",
    };
    let note = (!opinion.is_empty()).then_some(opinion);
    tx.update_case(action, note, before, &mut after).await?;
    Ok((after, record))
}

fn uuid_v7() -> String {
    CaseId::new_v7().to_string()
}

fn decision_to_pb(d: &DecisionRecord) -> pb::DecisionRecord {
    pb::DecisionRecord {
        case_id: d.case_id.to_string(),
        step_id: d.step_id.to_string(),
        step_name: d.step_name.clone(),
        decision: match d.decision.as_str() {
            "approve" => pb::Decision::Approve,
            "return" => pb::Decision::Return,
            "reject" => pb::Decision::Reject,
            _ => pb::Decision::Unspecified,
        }
        .into(),
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

fn decision_kind_to_pb(s: Option<&str>) -> pb::Decision {
    match s {
        Some("approve") => pb::Decision::Approve,
        Some("return") => pb::Decision::Return,
        Some("reject") => pb::Decision::Reject,
        _ => pb::Decision::Unspecified,
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
                decision: decision_kind_to_pb(i.decision.as_deref()).into(),
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

fn from_pb_time(field: &str, t: Option<&prost_types::Timestamp>) -> ApiResult<DateTime<Utc>> {
    let t = t.ok_or_else(|| ApiError::invalid(field, "is required"))?;
    u32::try_from(t.nanos)
        .ok()
        .and_then(|n| DateTime::from_timestamp(t.seconds, n))
        .ok_or_else(|| ApiError::invalid(field, "is not a valid time"))
}

/// Rules by version, read once per call.
struct RulesCache<'a> {
    ctx: &'a ApiContext,
    by_version: HashMap<i64, FundRules>,
}

impl RulesCache<'_> {
    async fn step(&mut self, case: &CaseRecord) -> ApiResult<Option<ApprovalStep>> {
        if !self.by_version.contains_key(&case.rules_version) {
            let r = self
                .ctx
                .store
                .rules_version(&case.district_id, case.rules_version)
                .await?
                .ok_or_else(|| ApiError::Internal("rules version missing".to_owned()))?;
            self.by_version.insert(case.rules_version, r.rules);
        }
        Ok(case
            .state
            .step()
            .and_then(|s| {
                self.by_version
                    .get(&case.rules_version)
                    .and_then(|r| r.approval_chain.step(s))
            })
            .cloned())
    }
}

impl ApprovalApi {
    async fn tasks(
        &self,
        caller: &Caller,
        cases: Vec<CaseRecord>,
        delegated: &HashMap<Role, String>,
    ) -> ApiResult<Vec<pb::Task>> {
        let now = self.ctx.clock.now();
        let mut cache = RulesCache {
            ctx: &self.ctx,
            by_version: HashMap::new(),
        };
        let mut out = Vec::with_capacity(cases.len());
        for c in cases {
            let step = cache.step(&c).await?;
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

    async fn list_my_tasks(
        &self,
        caller: Caller,
        req: pb::ListMyTasksRequest,
    ) -> ApiResult<pb::ListMyTasksResponse> {
        let district = caller.district()?.clone();
        let limit = self.ctx.page_size(req.page_size)?;
        let key = ListKey::of(district.as_str(), &req);
        let offset = key.offset(&req.page_token)?;
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
            .cases_waiting_for(&district, &roles, subject, now, offset, limit + 1)
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
        let next_page_token = key.next_offset_page(&mut rows, offset, limit);
        Ok(pb::ListMyTasksResponse {
            tasks: self.tasks(&caller, rows, &delegated).await?,
            next_page_token,
        })
    }

    async fn list_overdue(
        &self,
        caller: Caller,
        req: pb::ListOverdueRequest,
    ) -> ApiResult<pb::ListOverdueResponse> {
        let district = caller.district()?.clone();
        if caller.case_visibility()? != CaseVisibility::District {
            return Err(ApiError::denied(
                "only the bureau and auditors see overdue cases",
            ));
        }
        let limit = self.ctx.page_size(req.page_size)?;
        let key = ListKey::of(district.as_str(), &req);
        let offset = key.offset(&req.page_token)?;
        let mut rows = self
            .ctx
            .store
            .overdue_cases(&district, self.ctx.clock.now(), offset, limit + 1)
            .await?;
        let next_page_token = key.next_offset_page(&mut rows, offset, limit);
        Ok(pb::ListOverdueResponse {
            tasks: self.tasks(&caller, rows, &HashMap::new()).await?,
            next_page_token,
        })
    }

    /// A district-scoped caller's write, attributed provisionally to its first role until the
    /// step tells which role it acts in.
    fn provisional_role(caller: &Caller) -> Role {
        caller
            .claims()
            .roles()
            .first()
            .copied()
            .unwrap_or(Role::Auditor)
    }

    /// One approval step. It reads the case before joining the district's queue of
    /// writers, so that deciding different cases overlaps. Only a success is answered from
    /// that attempt: if the case changed meanwhile, or the step cannot be decided (which a
    /// stale read could cause, or an identical call still in flight), it is decided again,
    /// queued, so every refusal is judged on the latest state.
    async fn decide_case(
        &self,
        caller: Caller,
        req: pb::DecideCaseRequest,
    ) -> ApiResult<pb::DecideCaseResponse> {
        match self
            .decide_case_as(Locking::Optimistic, &caller, &req)
            .await
        {
            Ok(resp) => Ok(resp),
            Err(_) => self.decide_case_as(Locking::Queued, &caller, &req).await,
        }
    }

    async fn decide_case_as(
        &self,
        locking: Locking,
        caller: &Caller,
        req: &pb::DecideCaseRequest,
    ) -> ApiResult<pb::DecideCaseResponse> {
        if caller.is_city() {
            return Err(ApiError::denied("decisions need a district-scoped token"));
        }
        let district = caller.district()?.clone();
        let key = self
            .ctx
            .idempotency_key(caller, "DecideCase", &req.request_id, req)?;
        let id = parse_case_id(&req.case_id)?;
        let step_id = StepId::parse(&req.step_id).map_err(|e| ApiError::invalid("step_id", e))?;
        let decision = parse_decision(
            req.decision,
            req.approved_amount_fen,
            &req.return_to_step_id,
            &req.opinion,
        )?;
        let mut tx = match self
            .ctx
            .begin_as(
                locking,
                Some(&district),
                caller,
                Self::provisional_role(caller),
                &key,
            )
            .await?
        {
            Begun::Replayed(resp) => return Ok(resp),
            Begun::Fresh(tx) => *tx,
        };
        let found = match locking {
            Locking::Optimistic => tx.case_optimistic(&district, id).await?,
            Locking::Queued => tx.case(&district, id).await?,
        };
        let before = visible(found, &CaseVisibility::District)?;
        check_version(req.expected_version, &before)?;
        let rules = case_rules(&tx, &before).await?;
        let (after, record) = apply_decision(
            &mut tx,
            caller,
            &before,
            &rules,
            &step_id,
            &decision,
            req.opinion.trim(),
            None,
        )
        .await?;
        let resp = pb::DecideCaseResponse {
            case: Some(case_to_pb(&after, &caller.case_view(&after))),
            decision: Some(decision_to_pb(&record)),
        };
        commit(tx, &key, &resp).await?;
        tracing::info!(district = %district, case = %id, step = %step_id, decision = decision.as_str(), "case decided");
        Ok(resp)
    }

    async fn create_delegation(
        &self,
        caller: Caller,
        req: pb::CreateDelegationRequest,
    ) -> ApiResult<pb::CreateDelegationResponse> {
        if caller.is_city() {
            return Err(ApiError::denied("delegations need a district-scoped token"));
        }
        let district = caller.district()?.clone();
        let key = self
            .ctx
            .idempotency_key(&caller, "CreateDelegation", &req.request_id, &req)?;
        let role =
            role_from_pb(req.role).ok_or_else(|| ApiError::invalid("role", "is required"))?;
        if !may_hold_step(role) {
            return Err(ApiError::invalid(
                "role",
                format_args!("{role} is not a role that acts on approval steps"),
            ));
        }
        caller.require_role(role)?;
        let delegate = Subject::parse(&req.delegate_subject)
            .map_err(|e| ApiError::invalid("delegate_subject", e))?;
        if &delegate == caller.claims().subject() {
            return Err(ApiError::invalid(
                "delegate_subject",
                "a person cannot delegate to themself",
            ));
        }
        let starts_at = from_pb_time("start_time", req.start_time.as_ref())?;
        let ends_at = from_pb_time("end_time", req.end_time.as_ref())?;
        if ends_at <= starts_at {
            return Err(ApiError::invalid("end_time", "must be after start_time"));
        }
        if ends_at - starts_at > chrono::Duration::days(MAX_DELEGATION_DAYS) {
            return Err(ApiError::invalid(
                "end_time",
                format_args!("a delegation lasts at most {MAX_DELEGATION_DAYS} days"),
            ));
        }
        let mut tx = match self.ctx.begin(Some(&district), &caller, role, &key).await? {
            Begun::Replayed(resp) => return Ok(resp),
            Begun::Fresh(tx) => *tx,
        };
        if ends_at <= tx.now() {
            return Err(ApiError::invalid("end_time", "must be in the future"));
        }
        let record = DelegationRecord {
            id: uuid_v7(),
            district_id: district.clone(),
            delegator_subject: caller.claims().subject().to_string(),
            delegator_name: caller.claims().name().to_owned(),
            delegate_subject: delegate.to_string(),
            role,
            starts_at,
            ends_at,
            revoked_at: None,
            created_at: tx.now(),
        };
        tx.insert_delegation(&record).await?;
        let resp = pb::CreateDelegationResponse {
            delegation: Some(delegation_to_pb(&record)),
        };
        commit(tx, &key, &resp).await?;
        tracing::info!(district = %district, role = %role, delegate = %delegate, "role delegated");
        Ok(resp)
    }

    async fn list_delegations(
        &self,
        caller: Caller,
        req: pb::ListDelegationsRequest,
    ) -> ApiResult<pb::ListDelegationsResponse> {
        let district = caller.district()?.clone();
        if caller.case_visibility()? != CaseVisibility::District {
            return Err(ApiError::denied(
                "only the bureau and auditors see delegations",
            ));
        }
        let limit = self.ctx.page_size(req.page_size)?;
        let key = ListKey::of(district.as_str(), &req);
        let offset = key.offset(&req.page_token)?;
        let mut rows = self
            .ctx
            .store
            .delegations(&district, offset, limit + 1)
            .await?;
        let next_page_token = key.next_offset_page(&mut rows, offset, limit);
        Ok(pb::ListDelegationsResponse {
            delegations: rows.iter().map(delegation_to_pb).collect(),
            next_page_token,
        })
    }

    async fn revoke_delegation(
        &self,
        caller: Caller,
        req: pb::RevokeDelegationRequest,
    ) -> ApiResult<pb::RevokeDelegationResponse> {
        if caller.is_city() {
            return Err(ApiError::denied("delegations need a district-scoped token"));
        }
        let district = caller.district()?.clone();
        let key = self
            .ctx
            .idempotency_key(&caller, "RevokeDelegation", &req.request_id, &req)?;
        let mut tx = match self
            .ctx
            .begin(
                Some(&district),
                &caller,
                Self::provisional_role(&caller),
                &key,
            )
            .await?
        {
            Begun::Replayed(resp) => return Ok(resp),
            Begun::Fresh(tx) => *tx,
        };
        let before = tx
            .delegation(&district, &req.delegation_id)
            .await?
            .ok_or(ApiError::NotFound("delegation"))?;
        if before.delegator_subject != caller.claims().subject().as_str() {
            return Err(ApiError::denied(
                "only the delegator may revoke a delegation",
            ));
        }
        if before.revoked_at.is_some() || before.ends_at <= tx.now() {
            return Err(ApiError::precondition(
                "DELEGATION_ENDED",
                "the delegation has already ended",
            ));
        }
        tx.act_as(caller.actor(before.role));
        let after = tx.revoke_delegation(&before).await?;
        let resp = pb::RevokeDelegationResponse {
            delegation: Some(delegation_to_pb(&after)),
        };
        commit(tx, &key, &resp).await?;
        Ok(resp)
    }

    async fn open_meeting(
        &self,
        caller: Caller,
        req: pb::OpenMeetingRequest,
    ) -> ApiResult<pb::OpenMeetingResponse> {
        let district = caller.require_district_role(Role::BureauOffice)?.clone();
        let key = self
            .ctx
            .idempotency_key(&caller, "OpenMeeting", &req.request_id, &req)?;
        let mut v = Vec::new();
        if NaiveDate::parse_from_str(&req.meeting_date, "%Y-%m-%d").is_err() {
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
        let mut tx = match self
            .ctx
            .begin(Some(&district), &caller, Role::BureauOffice, &key)
            .await?
        {
            Begun::Replayed(resp) => return Ok(resp),
            Begun::Fresh(tx) => *tx,
        };
        let record = MeetingRecord {
            id: uuid_v7(),
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
        let resp = pb::OpenMeetingResponse {
            meeting: Some(meeting_to_pb(&record)),
        };
        commit(tx, &key, &resp).await?;
        Ok(resp)
    }

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

    async fn add_meeting_cases(
        &self,
        caller: Caller,
        req: pb::AddMeetingCasesRequest,
    ) -> ApiResult<pb::AddMeetingCasesResponse> {
        let district = caller.require_district_role(Role::BureauOffice)?.clone();
        let key = self
            .ctx
            .idempotency_key(&caller, "AddMeetingCases", &req.request_id, &req)?;
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
        let mut tx = match self
            .ctx
            .begin(Some(&district), &caller, Role::BureauOffice, &key)
            .await?
        {
            Begun::Replayed(resp) => return Ok(resp),
            Begun::Fresh(tx) => *tx,
        };
        let before = Self::open_meeting_for_office(&tx, &district, &req.meeting_id).await?;
        for id in &ids {
            let case = visible(tx.case(&district, *id).await?, &CaseVisibility::District)?;
            let rules = case_rules(&tx, &case).await?;
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
        let resp = pb::AddMeetingCasesResponse {
            meeting: Some(meeting_to_pb(&after)),
        };
        commit(tx, &key, &resp).await?;
        Ok(resp)
    }

    async fn record_meeting_decision(
        &self,
        caller: Caller,
        req: pb::RecordMeetingDecisionRequest,
    ) -> ApiResult<pb::RecordMeetingDecisionResponse> {
        let district = caller.require_district_role(Role::BureauOffice)?.clone();
        let key =
            self.ctx
                .idempotency_key(&caller, "RecordMeetingDecision", &req.request_id, &req)?;
        let id = parse_case_id(&req.case_id)?;
        let decision = parse_decision(
            req.decision,
            req.approved_amount_fen,
            &req.return_to_step_id,
            &req.opinion,
        )?;
        let mut tx = match self
            .ctx
            .begin(Some(&district), &caller, Role::BureauOffice, &key)
            .await?
        {
            Begun::Replayed(resp) => return Ok(resp),
            Begun::Fresh(tx) => *tx,
        };
        let before = Self::open_meeting_for_office(&tx, &district, &req.meeting_id).await?;
        if !before.items.iter().any(|i| i.case_id == id) {
            return Err(ApiError::NotFound("case on this meeting's agenda"));
        }
        // Check the decision against the case now, so the meeting learns of a bad amount or
        // return target when it records it, not only when it closes.
        let case = visible(tx.case(&district, id).await?, &CaseVisibility::District)?;
        let rules = case_rules(&tx, &case).await?;
        if let Some(step) = case.state.step() {
            let facts = CaseFacts {
                state: &case.state,
                requested: case.application.requested_amount,
                current: case
                    .approved_amount
                    .unwrap_or(case.application.requested_amount),
                over_cap: case.over_cap,
            };
            decide(&rules.approval_chain, facts, step, &decision).map_err(decide_error)?;
        }
        let item = MeetingItemRecord {
            case_id: id,
            decision: Some(decision.as_str().to_owned()),
            approved_amount: match &decision {
                Decision::Approve { amount } => *amount,
                Decision::Return { .. } | Decision::Reject => None,
            },
            return_to_step_id: match &decision {
                Decision::Return { to } => to.as_ref().map(ToString::to_string),
                Decision::Approve { .. } | Decision::Reject => None,
            },
            opinion: Some(req.opinion.trim().to_owned()).filter(|o| !o.is_empty()),
        };
        let after = tx.set_meeting_decision(&before, item).await?;
        let resp = pb::RecordMeetingDecisionResponse {
            meeting: Some(meeting_to_pb(&after)),
        };
        commit(tx, &key, &resp).await?;
        Ok(resp)
    }

    async fn close_meeting(
        &self,
        caller: Caller,
        req: pb::CloseMeetingRequest,
    ) -> ApiResult<pb::CloseMeetingResponse> {
        let district = caller.require_district_role(Role::BureauOffice)?.clone();
        let key = self
            .ctx
            .idempotency_key(&caller, "CloseMeeting", &req.request_id, &req)?;
        let mut tx = match self
            .ctx
            .begin(Some(&district), &caller, Role::BureauOffice, &key)
            .await?
        {
            Begun::Replayed(resp) => return Ok(resp),
            Begun::Fresh(tx) => *tx,
        };
        let before = Self::open_meeting_for_office(&tx, &district, &req.meeting_id).await?;
        let undecided: Vec<String> = before
            .items
            .iter()
            .filter(|i| i.decision.is_none())
            .map(|i| i.case_id.to_string())
            .collect();
        if !undecided.is_empty() {
            return Err(ApiError::precondition(
                "UNDECIDED_CASES",
                format!("no decision recorded for {}", undecided.join(", ")),
            ));
        }
        let after_meeting = tx.close_meeting(&before).await?;
        let mut cases = Vec::new();
        let mut decided = Vec::new();
        // All or nothing: the first case that cannot take its decision fails the close, and
        // dropping the transaction undoes every case already moved.
        for item in &before.items {
            let case = visible(
                tx.case(&district, item.case_id).await?,
                &CaseVisibility::District,
            )?;
            let rules = case_rules(&tx, &case).await?;
            let decision = parse_decision(
                match item.decision.as_deref() {
                    Some("approve") => pb::Decision::Approve.into(),
                    Some("return") => pb::Decision::Return.into(),
                    Some("reject") => pb::Decision::Reject.into(),
                    _ => pb::Decision::Unspecified.into(),
                },
                item.approved_amount.map_or(0, Money::fen),
                item.return_to_step_id.as_deref().unwrap_or(""),
                item.opinion.as_deref().unwrap_or(""),
            )?;
            let step = case
                .state
                .step()
                .cloned()
                .filter(|_| matches!(case.state, CaseState::InReview { .. }));
            let Some(step) = step else {
                return Err(ApiError::precondition(
                    "CASE_MOVED_ON",
                    format!(
                        "case {} is no longer waiting for the party-group decision",
                        case.id
                    ),
                ));
            };
            let (after, record) = apply_decision(
                &mut tx,
                &caller,
                &case,
                &rules,
                &step,
                &decision,
                item.opinion.as_deref().unwrap_or(""),
                Some(&before.id),
            )
            .await
            .map_err(|e| match e {
                ApiError::FailedPrecondition { reason, message } => ApiError::FailedPrecondition {
                    reason,
                    message: format!("case {}: {message}; nothing was applied", case.id),
                },
                other => other,
            })?;
            cases.push(case_to_pb(&after, &caller.case_view(&after)));
            decided.push(record);
        }
        let resp = pb::CloseMeetingResponse {
            meeting: Some(meeting_to_pb(&after_meeting)),
            cases,
        };
        commit(tx, &key, &resp).await?;
        for d in &decided {
            tracing::info!(district = %district, case = %d.case_id, step = %d.step_id, decision = %d.decision, meeting = %before.id, "case decided");
        }
        tracing::info!(district = %district, meeting = %before.id, cases = before.items.len(), "meeting closed");
        Ok(resp)
    }

    async fn get_meeting(
        &self,
        caller: Caller,
        req: pb::GetMeetingRequest,
    ) -> ApiResult<pb::GetMeetingResponse> {
        let district = caller.district()?.clone();
        if caller.case_visibility()? != CaseVisibility::District {
            return Err(ApiError::denied(
                "only the bureau and auditors see meetings",
            ));
        }
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
