//! DecideCase and the one path of every decision, single or at a meeting: the facts are
//! gathered, [`relief_domain::approval::decide_step`] decides, and what it returned is
//! written: the decision record, the reservation of a final approval, the case's move.

use chrono::{DateTime, Utc};
use relief_domain::approval::{
    DecideError, Decider, Decision, ReserveRefusal, StepFacts, StepOutcome, StepRefusal,
    StoredDecider, check_reservation, decide_step,
};
use relief_domain::ledger::EntryKind;
use relief_domain::{Money, Role, StepId, Violation};
use relief_observe::DecisionPath;
use relief_proto::v1 as pb;
use relief_store::{Actor, CaseRecord, DecisionRecord, WriteTx};

use super::{ApprovalApi, decision_to_pb};
use crate::access::{check_version, new_id, parse_case_id, visible};
use crate::auth::{Caller, CaseVisibility};
use crate::convert::case_to_pb;
use crate::error::{ApiError, ApiResult};
use crate::plumbing::Locking;

const MAX_OPINION_CHARS: usize = 2000;

pub(super) fn decide_error(e: DecideError) -> ApiError {
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

fn step_refusal(e: StepRefusal) -> ApiError {
    match e {
        StepRefusal::Decide(e) => decide_error(e),
        StepRefusal::DecidedAtMeeting(_) => {
            ApiError::precondition("DECIDED_AT_MEETING", e.to_string())
        }
        StepRefusal::FinanceNeverApproves
        | StepRefusal::NotYourStep(_)
        | StepRefusal::OwnUnit
        | StepRefusal::Duty(_) => ApiError::denied(e.to_string()),
        StepRefusal::Unreadable { .. } => ApiError::Internal(e.to_string()),
    }
}

/// Reads a decision off the wire; field names are those of the request.
pub(super) fn parse_decision(
    decision: i32,
    amount_fen: i64,
    return_to: &str,
    opinion: &str,
) -> ApiResult<Decision> {
    let mut v = Vec::new();
    let decision = match pb::Decision::try_from(decision) {
        Ok(pb::Decision::Approve) => match amount_fen {
            0 => Some(Decision::Approve { amount: None }),
            fen => Money::from_fen(fen)
                .map(|m| Decision::Approve { amount: Some(m) })
                .map_err(|e| v.push(Violation::new("approved_amount_fen", e)))
                .ok(),
        },
        Ok(pb::Decision::Return) => match return_to {
            "" => Some(Decision::Return { to: None }),
            s => StepId::parse(s)
                .map(|step| Decision::Return { to: Some(step) })
                .map_err(|e| v.push(Violation::new("return_to_step_id", e)))
                .ok(),
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
    match (decision, v.is_empty()) {
        (Some(d), true) if !matches!(d, Decision::Approve { .. }) && amount_fen != 0 => Err(
            ApiError::invalid("approved_amount_fen", "only an approval carries an amount"),
        ),
        (Some(d), true) => Ok(d),
        _ => Err(ApiError::InvalidArgument(v)),
    }
}

/// Decides `before` at `step` for `caller`, at the meeting `meeting_id` if any: gathers the
/// facts (the case's rules, the caller's delegations, the earlier decisions), lets
/// [`decide_step`] decide, and writes what it returned in the caller's transaction.
///
/// DecideCase comes here for one case, CloseMeeting for each case of its agenda in one
/// transaction. The events of the transaction are attributed to the role the caller acts in
/// and, under a delegation, to the delegator ([`WriteTx::act_as`]). In an optimistic
/// DecideCase the reads and the decision row come before the district's queue is joined;
/// the queue is joined at the first statement that needs it: a final approval's
/// reservation (the year's closure and balance are read queued, so two final approvals
/// never spend the same money), or else the case's update, which matches no row
/// (`Conflict`) if the case changed since it was read. An error anywhere rolls back the
/// decision row, the reservation and the event together.
pub(super) async fn apply_decision(
    tx: &mut WriteTx,
    caller: &Caller,
    before: &CaseRecord,
    step: &StepId,
    decision: &Decision,
    opinion: &str,
    meeting_id: Option<&str>,
) -> ApiResult<(CaseRecord, DecisionRecord)> {
    let district = before.district_id.clone();
    let outcome = decide_on_facts(tx, caller, before, step, decision, meeting_id).await?;
    let mut actor = caller.actor(outcome.acting_role);
    actor.on_behalf_of = outcome.on_behalf_of.clone();
    tx.act_as(actor.clone());
    // The decision is a new row that nothing else refers to yet, so it is written before
    // the district's queue is joined.
    let record = decision_record(
        before,
        step,
        &outcome,
        &actor,
        opinion,
        meeting_id,
        tx.now(),
    );
    tx.insert_decision(&district, &record).await?;
    if let Some(amount) = outcome.reserve {
        reserve(tx, before, amount).await?;
    }
    let mut after = CaseRecord {
        approved_amount: Some(outcome.amount),
        ..before.clone()
    };
    after.enter(outcome.state, outcome.waits_at.as_ref(), tx.now());
    let note = (!opinion.is_empty()).then_some(opinion);
    tx.update_case(outcome.event, note, before, &mut after)
        .await?;
    Ok((after, record))
}

/// Gathers the facts of a decision on `before` at `step` (the case's rules, the caller's
/// delegations, the earlier decisions) and lets [`decide_step`] decide.
async fn decide_on_facts(
    tx: &mut WriteTx,
    caller: &Caller,
    before: &CaseRecord,
    step: &StepId,
    decision: &Decision,
    meeting_id: Option<&str>,
) -> ApiResult<StepOutcome> {
    let district = &before.district_id;
    let rules = tx.case_rules(before).await?;
    let delegations = tx
        .active_delegations(district, caller.claims().subject().as_str())
        .await?;
    let delegations: Vec<_> = delegations.iter().map(|d| d.facts()).collect();
    let prior = tx.decisions_for_case(district, before.id).await?;
    let prior: Vec<StoredDecider<'_>> = prior
        .iter()
        .map(|d| StoredDecider {
            step: &d.step_id,
            actor: &d.actor_subject,
            on_behalf_of: d.on_behalf_of.as_deref(),
        })
        .collect();
    decide_step(StepFacts {
        chain: &rules.approval_chain,
        case: before.decision_facts(),
        applicant_unit: &before.applicant_unit_id,
        filed_by: &before.created_by,
        step,
        decision,
        at_meeting: meeting_id.is_some(),
        decider: Decider {
            subject: caller.claims().subject(),
            roles: caller.claims().roles(),
            unit: caller.claims().unit(),
        },
        delegations: &delegations,
        prior: &prior,
        now: tx.now(),
    })
    .map_err(step_refusal)
}

/// The record of a decision `outcome` taken by `actor` on `before` at `step`.
fn decision_record(
    before: &CaseRecord,
    step: &StepId,
    outcome: &StepOutcome,
    actor: &Actor,
    opinion: &str,
    meeting_id: Option<&str>,
    now: DateTime<Utc>,
) -> DecisionRecord {
    DecisionRecord {
        id: new_id(),
        case_id: before.id,
        step_id: step.clone(),
        step_name: outcome.step_name.clone(),
        decision: outcome.kind,
        actor_subject: actor.subject.to_string(),
        actor_name: actor.name.clone(),
        actor_role: actor.role,
        on_behalf_of: actor.on_behalf_of.as_ref().map(ToString::to_string),
        opinion: opinion.to_owned(),
        amount_before: outcome.amount_before,
        amount_after: outcome.amount,
        over_cap: before.over_cap,
        over_cap_justification: before.application.over_cap_justification.clone(),
        meeting_id: meeting_id.map(str::to_owned),
        return_to_step_id: outcome.return_to.as_ref().map(ToString::to_string),
        decided_at: now,
        fiscal_year: before.application.fiscal_year,
        waited_secs: before
            .step_entered_at
            .map_or(0, |t| (now - t).num_seconds().max(0)),
    }
}

/// Reserves `amount` of the case's fiscal year for a final approval, if the year is open
/// and its budget can carry it ([`check_reservation`]).
async fn reserve(tx: &mut WriteTx, case: &CaseRecord, amount: Money) -> ApiResult<()> {
    let year = case
        .application
        .fiscal_year
        .ok_or_else(|| ApiError::Internal(format!("case {} has no fiscal year", case.id)))?;
    let closed = tx.year_closed(&case.district_id, year).await?;
    let balance = tx.budget_balance(&case.district_id, year).await?;
    check_reservation(year, closed, &balance, amount).map_err(|e| match e {
        ReserveRefusal::YearClosed(_) => ApiError::precondition("YEAR_CLOSED", e.to_string()),
        ReserveRefusal::BudgetExceeded { .. } => {
            ApiError::precondition("BUDGET_EXCEEDED", e.to_string())
        }
    })?;
    tx.add_ledger_entry(
        &case.district_id,
        year,
        Some(case.id),
        EntryKind::Reserve,
        amount,
    )
    .await?;
    Ok(())
}

/// A district-scoped caller's write, attributed provisionally to its first role until the
/// step tells which role it acts in.
pub(super) fn provisional_role(caller: &Caller) -> Role {
    caller
        .claims()
        .roles()
        .first()
        .copied()
        .unwrap_or(Role::Auditor)
}

impl ApprovalApi {
    /// One approval step. It reads the case before joining the district's queue of
    /// writers, so that deciding different cases overlaps. Only a success is answered from
    /// that attempt: if the case changed meanwhile, or the step cannot be decided (which a
    /// stale read could cause, or an identical call still in flight), it is decided again,
    /// queued, so every refusal is judged on the latest state, a replay answers the stored
    /// response, and a conflict never reaches the client. Which of the two paths a decision
    /// took is counted (`relief_decisions_total{district, path}`).
    pub(super) async fn decide_case(
        &self,
        caller: Caller,
        req: pb::DecideCaseRequest,
    ) -> ApiResult<pb::DecideCaseResponse> {
        let (resp, path) = match self
            .decide_case_as(Locking::Optimistic, &caller, &req)
            .await
        {
            Ok(resp) => (resp, DecisionPath::Optimistic),
            Err(_) => (
                self.decide_case_as(Locking::Queued, &caller, &req).await?,
                DecisionPath::Queued,
            ),
        };
        if let Ok(district) = caller.district() {
            self.ctx.labels.count_decision(district.as_str(), path);
        }
        Ok(resp)
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
        let m = self.ctx.mutation(caller, &req.request_id, req)?;
        let id = parse_case_id(&req.case_id)?;
        let step = StepId::parse(&req.step_id).map_err(|e| ApiError::invalid("step_id", e))?;
        let decision = parse_decision(
            req.decision,
            req.approved_amount_fen,
            &req.return_to_step_id,
            &req.opinion,
        )?;
        m.run_as(locking, Some(&district), provisional_role(caller), async |tx| {
            let found = match locking {
                Locking::Optimistic => tx.case_optimistic(&district, id).await?,
                Locking::Queued => tx.case(&district, id).await?,
            };
            let before = visible(found, &CaseVisibility::District)?;
            check_version(req.expected_version, &before)?;
            let (after, record) = apply_decision(
                tx,
                caller,
                &before,
                &step,
                &decision,
                req.opinion.trim(),
                None,
            )
            .await?;
            tracing::info!(district = %district, case = %id, step = %step, decision = ?record.decision, "case decided");
            Ok(pb::DecideCaseResponse {
                case: Some(case_to_pb(&after, &caller.case_view(&after))),
                decision: Some(decision_to_pb(&record)),
            })
        })
        .await
    }
}
