//! Deciding a case at a step of its approval chain (审核审批), as pure functions: what a
//! decision turns the case into, who may take it (separation of duties), and whether the
//! budget can carry a final approval. The store persists whatever these return.

use std::fmt;

use chrono::{DateTime, Utc};

use crate::case::{CaseState, TransitionError};
use crate::ids::{StepId, Subject, UnitId};
use crate::money::Money;
use crate::payment::PaymentState;
use crate::role::Role;
use crate::rules::{ApprovalChain, ApprovalStep};

/// What a reviewer decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Approve, optionally lowering the amount.
    Approve { amount: Option<Money> },
    /// Return for amendment: to an earlier step, or (`None`) to the applicant unit.
    Return { to: Option<StepId> },
    /// Reject; final.
    Reject,
}

/// The kind of a decision, as its record keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecisionKind {
    Approve,
    Return,
    Reject,
}

impl Decision {
    pub const fn kind(&self) -> DecisionKind {
        match self {
            Decision::Approve { .. } => DecisionKind::Approve,
            Decision::Return { .. } => DecisionKind::Return,
            Decision::Reject => DecisionKind::Reject,
        }
    }

    /// The amount an approval sets, if it sets one.
    pub const fn amount(&self) -> Option<Money> {
        match self {
            Decision::Approve { amount } => *amount,
            Decision::Return { .. } | Decision::Reject => None,
        }
    }

    /// The step a return sends the case back to, if it names one.
    pub fn return_to(&self) -> Option<&StepId> {
        match self {
            Decision::Return { to } => to.as_ref(),
            Decision::Approve { .. } | Decision::Reject => None,
        }
    }

    /// Return and reject must say why (审核意见).
    pub const fn needs_opinion(&self) -> bool {
        match self {
            Decision::Approve { .. } => false,
            Decision::Return { .. } | Decision::Reject => true,
        }
    }
}

/// The case facts a decision depends on.
#[derive(Debug, Clone, Copy)]
pub struct CaseFacts<'a> {
    pub state: &'a CaseState,
    /// The amount requested (申报金额); the chain's conditions look at this.
    pub requested: Money,
    /// The amount as approved so far (starts at the requested amount).
    pub current: Money,
    pub over_cap: bool,
}

/// Where the case goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub state: CaseState,
    pub amount: Money,
    /// The decision was the final approval: the amount must be reserved.
    pub final_approval: bool,
}

/// Why a decision cannot be taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecideError {
    #[error("the case is not in review")]
    NotInReview,
    #[error("the case is at step {current}, not {claimed}")]
    WrongStep { current: StepId, claimed: StepId },
    #[error("step {0} is not part of this case's approval chain")]
    UnknownStep(StepId),
    #[error("the approved amount {amount} is above the requested {requested}")]
    AmountRaised { amount: Money, requested: Money },
    #[error("the approved amount must be positive; reject the case instead")]
    AmountZero,
    #[error("a case can only be returned to an earlier step of its chain; {0} is not one")]
    NotAnEarlierStep(StepId),
}

/// Applies `decision` at `at` to a case, under `chain`.
pub fn decide(
    chain: &ApprovalChain,
    case: CaseFacts<'_>,
    at: &StepId,
    decision: &Decision,
) -> Result<Outcome, DecideError> {
    let current_step = match case.state {
        CaseState::InReview { step } => step,
        CaseState::Draft
        | CaseState::Returned { .. }
        | CaseState::Withdrawn
        | CaseState::Rejected
        | CaseState::Approved
        | CaseState::Paid
        | CaseState::Cancelled => return Err(DecideError::NotInReview),
    };
    if current_step != at {
        return Err(DecideError::WrongStep {
            current: current_step.clone(),
            claimed: at.clone(),
        });
    }
    if chain.step(at).is_none() {
        return Err(DecideError::UnknownStep(at.clone()));
    }
    match decision {
        Decision::Approve { amount } => {
            let amount = amount.unwrap_or(case.current);
            if amount > case.requested {
                return Err(DecideError::AmountRaised {
                    amount,
                    requested: case.requested,
                });
            }
            if amount.is_zero() {
                return Err(DecideError::AmountZero);
            }
            Ok(match chain.next_step(at, case.requested, case.over_cap) {
                Some(next) => Outcome {
                    state: CaseState::InReview {
                        step: next.id.clone(),
                    },
                    amount,
                    final_approval: false,
                },
                None => Outcome {
                    state: CaseState::Approved,
                    amount,
                    final_approval: true,
                },
            })
        }
        Decision::Return { to: None } => Ok(Outcome {
            state: CaseState::Returned {
                resume_at: Some(at.clone()),
            },
            amount: case.current,
            final_approval: false,
        }),
        Decision::Return { to: Some(target) } => {
            let earlier = chain
                .applicable_steps(case.requested, case.over_cap)
                .take_while(|s| &s.id != at)
                .any(|s| &s.id == target);
            if !earlier {
                return Err(DecideError::NotAnEarlierStep(target.clone()));
            }
            Ok(Outcome {
                state: CaseState::InReview {
                    step: target.clone(),
                },
                amount: case.current,
                final_approval: false,
            })
        }
        Decision::Reject => Ok(Outcome {
            state: CaseState::Rejected,
            amount: case.current,
            final_approval: false,
        }),
    }
}

/// The step a (re)submitted case enters: where a return asked it to resume when that step
/// still applies to the amount now requested, else the chain's first step.
pub fn entry_step<'c>(
    chain: &'c ApprovalChain,
    state: &CaseState,
    amount: Money,
    over_cap: bool,
) -> Option<&'c ApprovalStep> {
    if let CaseState::Returned {
        resume_at: Some(resume),
    } = state
        && let Some(step) = chain
            .applicable_steps(amount, over_cap)
            .find(|s| &s.id == resume)
    {
        return Some(step);
    }
    chain.first_step(amount, over_cap)
}

/// An earlier decision on the same case.
#[derive(Debug, Clone)]
pub struct PriorDecision {
    pub step: StepId,
    pub actor: Subject,
    pub on_behalf_of: Option<Subject>,
}

/// Why a person may not decide this case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DutyConflict(pub String);

impl fmt::Display for DutyConflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Separation of duties (谁审核、谁负责): one person acts on at most one step of a case,
/// whether in their own name or for someone else, and nobody decides a case they filed.
pub fn check_separation(
    prior: &[PriorDecision],
    filed_by: &Subject,
    actor: &Subject,
    on_behalf_of: Option<&Subject>,
    step: &StepId,
) -> Result<(), DutyConflict> {
    let people: Vec<&Subject> = std::iter::once(actor).chain(on_behalf_of).collect();
    if people.contains(&filed_by) {
        return Err(DutyConflict(format!(
            "{filed_by} filed this case and may not decide it"
        )));
    }
    for p in prior.iter().filter(|p| &p.step != step) {
        let earlier: Vec<&Subject> = std::iter::once(&p.actor)
            .chain(p.on_behalf_of.as_ref())
            .collect();
        if let Some(who) = people.iter().find(|s| earlier.contains(s)) {
            return Err(DutyConflict(format!(
                "{who} already acted on step {} of this case; one person acts on at most one step",
                p.step
            )));
        }
    }
    Ok(())
}

/// A delegation in force at `now`.
pub fn delegation_active(
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    revoked_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> bool {
    starts_at <= now && now < ends_at && revoked_at.is_none_or(|r| now < r)
}

/// A delegation as the store holds it: `delegator` gave `role` to the caller for a while.
#[derive(Debug, Clone, Copy)]
pub struct DelegationFacts<'a> {
    pub role: Role,
    pub delegator: &'a str,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl DelegationFacts<'_> {
    /// In force at `now` ([`delegation_active`]).
    pub fn active(&self, now: DateTime<Utc>) -> bool {
        delegation_active(self.starts_at, self.ends_at, self.revoked_at, now)
    }

    /// Over at `now`: revoked, or past its end. One that has not begun is not over.
    pub fn ended(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_some() || self.ends_at <= now
    }
}

/// The person deciding: who they are, the roles their token holds, and their unit if any.
#[derive(Debug, Clone, Copy)]
pub struct Decider<'a> {
    pub subject: &'a Subject,
    pub roles: &'a [Role],
    pub unit: Option<&'a UnitId>,
}

/// An earlier decision on the case as the store holds it, its people not yet read.
#[derive(Debug, Clone, Copy)]
pub struct StoredDecider<'a> {
    pub step: &'a StepId,
    pub actor: &'a str,
    pub on_behalf_of: Option<&'a str>,
}

/// Everything a decision at one step depends on.
#[derive(Debug, Clone, Copy)]
pub struct StepFacts<'a> {
    /// The chain of the rules the case was filed under.
    pub chain: &'a ApprovalChain,
    pub case: CaseFacts<'a>,
    /// The unit that filed the case, and the person who created it (as stored).
    pub applicant_unit: &'a UnitId,
    pub filed_by: &'a str,
    /// The step the decider means to decide, and what they decide.
    pub step: &'a StepId,
    pub decision: &'a Decision,
    /// Recorded at a party-group meeting that is closing.
    pub at_meeting: bool,
    pub decider: Decider<'a>,
    /// The delegations given to the decider (the store may leave out those not in force).
    pub delegations: &'a [DelegationFacts<'a>],
    /// Every earlier decision on the case.
    pub prior: &'a [StoredDecider<'a>],
    pub now: DateTime<Utc>,
}

/// What a decision at a step does: the case's next state and amount, the step it then
/// waits at, who the decision is recorded as, what to reserve and which event to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepOutcome {
    pub state: CaseState,
    /// The amount before and after the decision.
    pub amount_before: Money,
    pub amount: Money,
    /// The step the case waits at next, while in review.
    pub waits_at: Option<ApprovalStep>,
    /// The step decided, as the decision record names it.
    pub step_name: String,
    pub kind: DecisionKind,
    pub return_to: Option<StepId>,
    /// The role the decider acts in, and whom they stand in for under a delegation.
    pub acting_role: Role,
    pub on_behalf_of: Option<Subject>,
    /// The final approval reserves this much of the case's fiscal year
    /// ([`check_reservation`]).
    pub reserve: Option<Money>,
    /// The audit event's action.
    pub event: &'static str,
}

/// Why a decision at a step is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StepRefusal {
    #[error(transparent)]
    Decide(#[from] DecideError),
    #[error("step {0} is decided at a party-group meeting")]
    DecidedAtMeeting(StepId),
    #[error("the finance section never approves")]
    FinanceNeverApproves,
    #[error("this step is decided by the role {0}")]
    NotYourStep(Role),
    #[error("nobody decides a case their own unit filed")]
    OwnUnit,
    #[error("{0}")]
    Duty(DutyConflict),
    /// A stored person does not read: the decision is refused rather than judged without
    /// them.
    #[error("stored {what} {value:?} is not a subject")]
    Unreadable { what: &'static str, value: String },
}

/// Decides `facts.case` at `facts.step`: the state and step first (a decider of a case that
/// moved on learns that), then a meeting's step, the decider's right to the step (their own
/// role, or a delegation in force), their unit, and separation of duties. Separation fails
/// closed: an earlier decider who does not read refuses the decision.
pub fn decide_step(facts: StepFacts<'_>) -> Result<StepOutcome, StepRefusal> {
    let outcome = decide(facts.chain, facts.case, facts.step, facts.decision)?;
    let step = facts
        .chain
        .step(facts.step)
        .ok_or_else(|| DecideError::UnknownStep(facts.step.clone()))?;
    if step.batched && !facts.at_meeting {
        return Err(StepRefusal::DecidedAtMeeting(step.id.clone()));
    }
    let decider = facts.decider;
    if decider.roles.contains(&Role::Finance) {
        return Err(StepRefusal::FinanceNeverApproves);
    }
    let on_behalf_of = if decider.roles.contains(&step.role) {
        None
    } else {
        let d = facts
            .delegations
            .iter()
            .find(|d| d.role == step.role && d.active(facts.now))
            .ok_or(StepRefusal::NotYourStep(step.role))?;
        Some(read_subject("delegator", d.delegator)?)
    };
    if decider.unit == Some(facts.applicant_unit) {
        return Err(StepRefusal::OwnUnit);
    }
    let filed_by = read_subject("creator", facts.filed_by)?;
    let prior = facts
        .prior
        .iter()
        .map(|p| {
            Ok(PriorDecision {
                step: p.step.clone(),
                actor: read_subject("decider", p.actor)?,
                on_behalf_of: p
                    .on_behalf_of
                    .map(|s| read_subject("delegator", s))
                    .transpose()?,
            })
        })
        .collect::<Result<Vec<_>, StepRefusal>>()?;
    check_separation(
        &prior,
        &filed_by,
        decider.subject,
        on_behalf_of.as_ref(),
        facts.step,
    )
    .map_err(StepRefusal::Duty)?;
    let kind = facts.decision.kind();
    let event = match (kind, outcome.final_approval) {
        (DecisionKind::Approve, true) => "case.approved",
        (DecisionKind::Approve, false) => "case.step_approved",
        (DecisionKind::Return, _) => "case.returned",
        (DecisionKind::Reject, _) => "case.rejected",
    };
    let waits_at = match &outcome.state {
        CaseState::InReview { step } => facts.chain.step(step).cloned(),
        _ => None,
    };
    Ok(StepOutcome {
        amount_before: facts.case.current,
        amount: outcome.amount,
        reserve: outcome.final_approval.then_some(outcome.amount),
        state: outcome.state,
        waits_at,
        step_name: step.name.clone(),
        kind,
        return_to: facts.decision.return_to().cloned(),
        acting_role: step.role,
        on_behalf_of,
        event,
    })
}

fn read_subject(what: &'static str, value: &str) -> Result<Subject, StepRefusal> {
    Subject::parse(value).map_err(|_| StepRefusal::Unreadable {
        what,
        value: value.to_owned(),
    })
}

/// Why a final approval's reservation is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReserveRefusal {
    #[error("fiscal year {0} is closed")]
    YearClosed(i32),
    #[error("fiscal year {year}: {exceeded}")]
    BudgetExceeded { year: i32, exceeded: BudgetExceeded },
}

/// Whether fiscal year `year`, `closed` or not and holding `balance`, can reserve `amount`.
pub fn check_reservation(
    year: i32,
    closed: bool,
    balance: &BudgetBalance,
    amount: Money,
) -> Result<(), ReserveRefusal> {
    if closed {
        return Err(ReserveRefusal::YearClosed(year));
    }
    balance
        .check_reserve(amount)
        .map_err(|exceeded| ReserveRefusal::BudgetExceeded { year, exceeded })
}

/// Everything whether a final approval can be cancelled (审批撤销) depends on.
#[derive(Debug, Clone, Copy)]
pub struct CancelFacts<'a> {
    pub state: &'a CaseState,
    /// The case's payments so far: id and state.
    pub payments: &'a [(&'a str, &'a PaymentState)],
    pub fiscal_year: Option<i32>,
    /// Whether `fiscal_year` is closed.
    pub year_closed: bool,
    /// The amount the final approval reserved.
    pub approved: Option<Money>,
}

/// A cancelled final approval: the case's final state, and the reservation it gives back to
/// the fiscal year's budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cancellation {
    pub state: CaseState,
    pub fiscal_year: i32,
    pub release: Money,
}

/// Why a final approval cannot be cancelled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CancelRefusal {
    /// Only an approved case has an approval to cancel.
    #[error("{0}")]
    State(#[from] TransitionError),
    /// A payment of the case is with the bank (or paid); it must fail first.
    #[error(
        "payment {id} of the case is {state}; an approval is cancelled only while no payment is under way"
    )]
    PaymentUnderWay { id: String, state: &'static str },
    #[error("fiscal year {0} is closed")]
    YearClosed(i32),
    #[error("the approved case has no fiscal year")]
    NoFiscalYear,
    #[error("the approved case has no approved amount")]
    NoAmount,
}

/// Whether the bureau may cancel a case's final approval, and what the cancellation
/// produces. Only an approved case qualifies, with no live payment (pending, or paid and not
/// returned: [`PaymentState::is_live`]), in an open fiscal year; the case becomes
/// [`CaseState::Cancelled`] and its whole approved amount is released. A paid case is
/// refused by its state; a case whose payment the bank returned is approved again and may be
/// cancelled.
pub fn cancel_approval(f: CancelFacts<'_>) -> Result<Cancellation, CancelRefusal> {
    if *f.state != CaseState::Approved {
        return Err(CancelRefusal::State(TransitionError {
            action: "cancel the approval of",
            from: f.state.kind(),
        }));
    }
    if let Some((id, state)) = f.payments.iter().find(|(_, s)| s.is_live()) {
        return Err(CancelRefusal::PaymentUnderWay {
            id: (*id).to_owned(),
            state: state.as_str(),
        });
    }
    let fiscal_year = f.fiscal_year.ok_or(CancelRefusal::NoFiscalYear)?;
    if f.year_closed {
        return Err(CancelRefusal::YearClosed(fiscal_year));
    }
    let release = f.approved.ok_or(CancelRefusal::NoAmount)?;
    Ok(Cancellation {
        state: CaseState::Cancelled,
        fiscal_year,
        release,
    })
}

/// The budget of one fiscal year as the ledger sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BudgetBalance {
    pub allocated: Money,
    pub reserved: Money,
    pub paid: Money,
}

/// A reservation that does not fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the budget has {available} left; this approval needs {needed}")]
pub struct BudgetExceeded {
    pub available: Money,
    pub needed: Money,
}

impl BudgetBalance {
    /// What is neither reserved nor paid; zero if the books are already over.
    pub fn available(&self) -> Money {
        self.reserved
            .checked_add(self.paid)
            .ok()
            .and_then(|used| self.allocated.checked_sub(used))
            .unwrap_or(Money::ZERO)
    }

    /// Checks that `amount` can be reserved: reserved + paid never exceeds allocated.
    pub fn check_reserve(&self, amount: Money) -> Result<(), BudgetExceeded> {
        let available = self.available();
        if amount > available {
            Err(BudgetExceeded {
                available,
                needed: amount,
            })
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::defaults::default_chain;
    use proptest::prelude::*;

    fn id(s: &str) -> StepId {
        StepId::parse(s).unwrap()
    }
    fn sub(s: &str) -> Subject {
        Subject::parse(s).unwrap()
    }
    fn yuan(y: i64) -> Money {
        Money::from_yuan(y).unwrap()
    }

    fn at(step: &str) -> CaseState {
        CaseState::InReview { step: id(step) }
    }

    fn cancel(
        state: &CaseState,
        payments: &[(&str, &PaymentState)],
        year_closed: bool,
    ) -> Result<Cancellation, CancelRefusal> {
        cancel_approval(CancelFacts {
            state,
            payments,
            fiscal_year: Some(2022),
            year_closed,
            approved: Some(yuan(8_000)),
        })
    }

    #[test]
    fn cancelling_an_approval_releases_its_whole_amount() {
        let failed = PaymentState::Failed {
            reason: "账户冻结".into(),
        };
        let reversed = PaymentState::Reversed {
            bank_reference: "B1".into(),
            paid_on: chrono::NaiveDate::from_ymd_opt(2022, 5, 1).unwrap(),
            reason: "退汇".into(),
        };
        let expected = Ok(Cancellation {
            state: CaseState::Cancelled,
            fiscal_year: 2022,
            release: yuan(8_000),
        });
        assert_eq!(cancel(&CaseState::Approved, &[], false), expected);
        // Payments that ended without money leaving do not stand in the way.
        assert_eq!(
            cancel(
                &CaseState::Approved,
                &[("p1", &failed), ("p2", &reversed)],
                false
            ),
            expected
        );
    }

    #[test]
    fn only_an_approved_case_without_a_payment_under_way_is_cancelled() {
        for state in [
            CaseState::Draft,
            at("case_officer_review"),
            CaseState::Returned { resume_at: None },
            CaseState::Withdrawn,
            CaseState::Rejected,
            CaseState::Paid,
            CaseState::Cancelled,
        ] {
            assert_eq!(
                cancel(&state, &[], false),
                Err(CancelRefusal::State(TransitionError {
                    action: "cancel the approval of",
                    from: state.kind(),
                })),
                "{state:?}"
            );
        }
        assert_eq!(
            cancel(
                &CaseState::Approved,
                &[("p1", &PaymentState::Pending)],
                false
            ),
            Err(CancelRefusal::PaymentUnderWay {
                id: "p1".into(),
                state: "pending"
            })
        );
        assert_eq!(
            cancel(&CaseState::Approved, &[], true),
            Err(CancelRefusal::YearClosed(2022))
        );
        let facts = |fiscal_year, approved| CancelFacts {
            state: &CaseState::Approved,
            payments: &[],
            fiscal_year,
            year_closed: false,
            approved,
        };
        assert_eq!(
            cancel_approval(facts(None, Some(yuan(1)))),
            Err(CancelRefusal::NoFiscalYear)
        );
        assert_eq!(
            cancel_approval(facts(Some(2022), None)),
            Err(CancelRefusal::NoAmount)
        );
    }

    fn check(
        state: CaseState,
        step: &str,
        decision: Decision,
        expected: Result<(CaseState, i64, bool), DecideError>,
    ) {
        let chain = default_chain();
        let facts = CaseFacts {
            state: &state,
            requested: yuan(20_000),
            current: yuan(20_000),
            over_cap: false,
        };
        let got = decide(&chain, facts, &id(step), &decision)
            .map(|o| (o.state, o.amount.fen() / 100, o.final_approval));
        assert_eq!(got, expected, "{state:?} {step} {decision:?}");
    }

    #[test]
    fn decisions_table() {
        let approve = Decision::Approve { amount: None };
        check(
            at("case_officer_review"),
            "case_officer_review",
            approve.clone(),
            Ok((at("deputy_leader_review"), 20_000, false)),
        );
        check(
            at("bureau_head_review"),
            "bureau_head_review",
            Decision::Approve {
                amount: Some(yuan(15_000)),
            },
            Ok((at("party_group_decision"), 15_000, false)),
        );
        check(
            at("district_leader_approval"),
            "district_leader_approval",
            approve.clone(),
            Ok((CaseState::Approved, 20_000, true)),
        );
        check(
            at("deputy_leader_review"),
            "case_officer_review",
            approve.clone(),
            Err(DecideError::WrongStep {
                current: id("deputy_leader_review"),
                claimed: id("case_officer_review"),
            }),
        );
        check(
            CaseState::Draft,
            "case_officer_review",
            approve,
            Err(DecideError::NotInReview),
        );
        check(
            at("case_officer_review"),
            "case_officer_review",
            Decision::Approve {
                amount: Some(yuan(20_001)),
            },
            Err(DecideError::AmountRaised {
                amount: yuan(20_001),
                requested: yuan(20_000),
            }),
        );
        check(
            at("case_officer_review"),
            "case_officer_review",
            Decision::Approve {
                amount: Some(Money::ZERO),
            },
            Err(DecideError::AmountZero),
        );
        check(
            at("bureau_head_review"),
            "bureau_head_review",
            Decision::Return { to: None },
            Ok((
                CaseState::Returned {
                    resume_at: Some(id("bureau_head_review")),
                },
                20_000,
                false,
            )),
        );
        check(
            at("bureau_head_review"),
            "bureau_head_review",
            Decision::Return {
                to: Some(id("case_officer_review")),
            },
            Ok((at("case_officer_review"), 20_000, false)),
        );
        check(
            at("bureau_head_review"),
            "bureau_head_review",
            Decision::Return {
                to: Some(id("district_leader_approval")),
            },
            Err(DecideError::NotAnEarlierStep(id(
                "district_leader_approval",
            ))),
        );
        check(
            at("bureau_head_review"),
            "bureau_head_review",
            Decision::Return {
                to: Some(id("bureau_head_review")),
            },
            Err(DecideError::NotAnEarlierStep(id("bureau_head_review"))),
        );
        check(
            at("deputy_leader_review"),
            "deputy_leader_review",
            Decision::Reject,
            Ok((CaseState::Rejected, 20_000, false)),
        );
    }

    #[test]
    fn resubmission_resumes_where_returned() {
        let chain = default_chain();
        let returned = CaseState::Returned {
            resume_at: Some(id("bureau_head_review")),
        };
        assert_eq!(
            entry_step(&chain, &returned, yuan(1), false).map(|s| s.id.as_str()),
            Some("bureau_head_review")
        );
        assert_eq!(
            entry_step(&chain, &CaseState::Draft, yuan(1), false).map(|s| s.id.as_str()),
            Some("case_officer_review")
        );
        let gone = CaseState::Returned {
            resume_at: Some(id("no_such_step")),
        };
        assert_eq!(
            entry_step(&chain, &gone, yuan(1), false).map(|s| s.id.as_str()),
            Some("case_officer_review")
        );
    }

    #[test]
    fn separation_of_duties() {
        let prior = vec![
            PriorDecision {
                step: id("case_officer_review"),
                actor: sub("officer"),
                on_behalf_of: None,
            },
            PriorDecision {
                step: id("deputy_leader_review"),
                actor: sub("acting"),
                on_behalf_of: Some(sub("deputy")),
            },
        ];
        let filer = sub("unit-clerk");
        let ok = |actor: &str, behalf: Option<&str>, step: &str| {
            check_separation(
                &prior,
                &filer,
                &sub(actor),
                behalf.map(sub).as_ref(),
                &id(step),
            )
            .is_ok()
        };
        assert!(ok("head", None, "bureau_head_review"));
        assert!(!ok("officer", None, "bureau_head_review"));
        assert!(
            ok("officer", None, "case_officer_review"),
            "the same step again after a return"
        );
        assert!(
            !ok("deputy", None, "bureau_head_review"),
            "acted through a delegate"
        );
        assert!(!ok("acting", None, "bureau_head_review"));
        assert!(!ok("someone", Some("officer"), "bureau_head_review"));
        assert!(!ok("unit-clerk", None, "bureau_head_review"));
    }

    #[test]
    fn delegation_window() {
        let t = |s: i64| DateTime::from_timestamp(s, 0).unwrap();
        assert!(delegation_active(t(10), t(20), None, t(10)));
        assert!(!delegation_active(t(10), t(20), None, t(20)));
        assert!(!delegation_active(t(10), t(20), None, t(9)));
        assert!(!delegation_active(t(10), t(20), Some(t(15)), t(15)));
        assert!(delegation_active(t(10), t(20), Some(t(15)), t(14)));
    }

    proptest! {
        /// Reserving only what `check_reserve` allows never takes reserved + paid over the
        /// allocation, whatever the order of requests.
        #[test]
        fn reservations_never_exceed_budget(allocated in 0i64..10_000_000, asks in proptest::collection::vec(1i64..2_000_000, 0..60)) {
            let mut b = BudgetBalance { allocated: Money::from_fen(allocated).unwrap(), ..Default::default() };
            for a in asks {
                let a = Money::from_fen(a).unwrap();
                if b.check_reserve(a).is_ok() {
                    b.reserved = b.reserved.checked_add(a).unwrap();
                }
                prop_assert!(b.reserved.checked_add(b.paid).unwrap() <= b.allocated);
            }
        }
    }

    fn step_facts<'a>(
        chain: &'a ApprovalChain,
        state: &'a CaseState,
        step: &'a StepId,
        decision: &'a Decision,
        decider: Decider<'a>,
        prior: &'a [StoredDecider<'a>],
        unit: &'a UnitId,
    ) -> StepFacts<'a> {
        StepFacts {
            chain,
            case: CaseFacts {
                state,
                requested: yuan(20_000),
                current: yuan(20_000),
                over_cap: false,
            },
            applicant_unit: unit,
            filed_by: "unit-clerk",
            step,
            decision,
            at_meeting: false,
            decider,
            delegations: &[],
            prior,
            now: t(0),
        }
    }

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(s, 0).unwrap()
    }

    #[test]
    fn an_unreadable_earlier_decider_refuses_the_decision() {
        let chain = default_chain();
        let state = at("deputy_leader_review");
        let step = id("deputy_leader_review");
        let earlier = id("case_officer_review");
        let decision = Decision::Approve { amount: None };
        let unit = UnitId::parse("street-1").unwrap();
        let me = sub("deputy");
        let decider = Decider {
            subject: &me,
            roles: &[Role::DeputyLeader],
            unit: None,
        };
        let readable = [StoredDecider {
            step: &earlier,
            actor: "officer",
            on_behalf_of: None,
        }];
        let got = decide_step(step_facts(
            &chain, &state, &step, &decision, decider, &readable, &unit,
        ))
        .unwrap();
        assert_eq!(got.state, at("bureau_head_review"));
        assert_eq!(got.acting_role, Role::DeputyLeader);
        assert_eq!(got.event, "case.step_approved");
        for (actor, behalf) in [("", None), ("officer", Some("not a subject"))] {
            let unreadable = [StoredDecider {
                step: &earlier,
                actor,
                on_behalf_of: behalf,
            }];
            let got = decide_step(step_facts(
                &chain,
                &state,
                &step,
                &decision,
                decider,
                &unreadable,
                &unit,
            ));
            assert!(
                matches!(got, Err(StepRefusal::Unreadable { .. })),
                "{actor:?} {behalf:?}: {got:?}"
            );
        }
    }

    #[test]
    fn a_step_is_taken_under_a_delegation_only_while_it_is_in_force() {
        let chain = default_chain();
        let state = at("deputy_leader_review");
        let step = id("deputy_leader_review");
        let decision = Decision::Reject;
        let unit = UnitId::parse("street-1").unwrap();
        let me = sub("acting");
        let decider = Decider {
            subject: &me,
            roles: &[Role::CaseOfficer],
            unit: None,
        };
        let given = |starts, ends, revoked: Option<i64>| DelegationFacts {
            role: Role::DeputyLeader,
            delegator: "deputy",
            starts_at: t(starts),
            ends_at: t(ends),
            revoked_at: revoked.map(t),
        };
        for (delegation, ok) in [
            (given(-10, 10, None), true),
            (given(1, 10, None), false),
            (given(-10, 0, None), false),
            (given(-10, 10, Some(-1)), false),
        ] {
            let delegations = [delegation];
            let facts = StepFacts {
                delegations: &delegations,
                ..step_facts(&chain, &state, &step, &decision, decider, &[], &unit)
            };
            let got = decide_step(facts);
            if ok {
                assert_eq!(got.unwrap().on_behalf_of, Some(sub("deputy")));
            } else {
                assert_eq!(got, Err(StepRefusal::NotYourStep(Role::DeputyLeader)));
            }
        }
    }
}
