//! A relief case: the application (申请) as the applicant unit files it, and the state machine
//! that moves it from draft through review. Transitions are pure functions returning the next
//! state or a typed error; the store persists whatever they return.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{CaseId, CategoryCode, StepId};
use crate::money::Money;
use crate::resident_id::ResidentId;
use crate::role::Role;
use crate::rules::{ApprovalStep, FundRules};
use crate::violation::{Violation, Violations};

/// Limits on free text, in characters: enough for a real application, small enough that one
/// request cannot fill the database.
pub const MAX_NAME_CHARS: usize = 64;
pub const MAX_LINE_CHARS: usize = 200;
pub const MAX_TEXT_CHARS: usize = 4000;
pub const MAX_ATTACHMENTS: usize = 50;
/// The largest attachment the bureau accepts: 50 MiB.
pub const MAX_ATTACHMENT_BYTES: u64 = 50 * 1024 * 1024;
/// The most any one application may ask for, whatever the district's budget: 10,000,000
/// yuan. A submitted application is bounded by its fiscal year's whole budget as well.
pub const MAX_REQUESTED_FEN: i64 = 10_000_000 * crate::money::FEN_PER_YUAN;

/// Why a requested amount cannot be right, if it cannot: not positive, above
/// [`MAX_REQUESTED_FEN`], or above `budget` (the fiscal year's whole allocation) when known.
pub fn requested_amount_problem(amount: Money, budget: Option<Money>) -> Option<String> {
    if amount.is_zero() {
        return Some("must be positive".to_owned());
    }
    if amount.fen() > MAX_REQUESTED_FEN {
        return Some(format!(
            "must be at most {}, the most one application may ask for",
            Money::from_fen(MAX_REQUESTED_FEN).unwrap_or(Money::ZERO)
        ));
    }
    match budget {
        Some(budget) if amount > budget => Some(format!(
            "must be at most the fiscal year's whole budget of {budget}"
        )),
        _ => None,
    }
}

/// The recipient (救助对象).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Recipient {
    pub name: String,
    pub resident_id: Option<ResidentId>,
    pub phone: String,
    pub address: String,
}

/// The unit that receives the money (接受拨款单位).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ReceivingUnit {
    pub name: String,
    pub bank_name: String,
    pub bank_account: String,
}

/// The petition (信访事项) the case belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PetitionRef {
    pub number: String,
    pub summary: String,
}

/// The applicant unit's seal (加盖公章) on the application.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Seal {
    pub sealed: bool,
    pub sealed_by: String,
    pub sealed_at: Option<DateTime<Utc>>,
}

/// A supporting document, described by its digest; the content lives elsewhere.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// What the document is (e.g. 息诉罢访承诺书); rules may require types before payment.
    #[serde(default)]
    pub document_type: String,
    pub name: String,
    pub media_type: String,
    pub sha256_hex: String,
    pub size_bytes: u64,
}

/// Everything the applicant unit states about one case. A draft may be incomplete; each field
/// that is present has passed its format checks, and [`check_submission`] decides whether the
/// whole is complete enough to enter review.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Application {
    pub recipient: Recipient,
    /// 基本情况
    pub basic_situation: String,
    /// 申报理由
    pub reason: String,
    pub category: Option<CategoryCode>,
    /// 申报金额; zero while not yet stated.
    pub requested_amount: Money,
    /// 具体救助单位
    pub implementing_unit: String,
    pub receiving_unit: ReceivingUnit,
    pub petition: PetitionRef,
    pub seal: Seal,
    pub attachments: Vec<Attachment>,
    pub fiscal_year: Option<i32>,
    pub over_cap_justification: String,
    pub repeat_relief_justification: String,
}

/// What submission found that reviewers must see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SubmissionFlags {
    /// Above the district's soft cap; carries a justification.
    pub over_cap: bool,
    /// The recipient was helped, or has another application pending, within the waiting
    /// period; carries a justification.
    pub repeat_relief: bool,
}

/// Decides whether an application may enter review under `rules`. `recent_cases` are the
/// district's other cases for the same recipient within the waiting period (in review,
/// approved or paid), found by the store.
pub fn check_submission(
    app: &Application,
    rules: &FundRules,
    recent_cases: &[CaseId],
) -> Result<SubmissionFlags, Vec<Violation>> {
    let mut v = Violations::new();
    let f = |name: &str| format!("application.{name}");
    v.text(
        &f("recipient.name"),
        &app.recipient.name,
        MAX_NAME_CHARS,
        true,
    );
    if app.recipient.resident_id.is_none() {
        v.add(f("recipient.resident_id_number"), "is required");
    }
    v.text(
        &f("recipient.phone"),
        &app.recipient.phone,
        MAX_NAME_CHARS,
        true,
    );
    v.text(
        &f("recipient.address"),
        &app.recipient.address,
        MAX_LINE_CHARS,
        true,
    );
    v.text(
        &f("basic_situation"),
        &app.basic_situation,
        MAX_TEXT_CHARS,
        true,
    );
    v.text(&f("reason"), &app.reason, MAX_TEXT_CHARS, true);
    match &app.category {
        None => v.add(f("category_code"), "is required"),
        Some(code) if rules.category(code).is_none() => {
            v.add(
                f("category_code"),
                format_args!("{code} is not a category of this district"),
            );
        }
        Some(_) => {}
    }
    let budget = app
        .fiscal_year
        .and_then(|y| rules.budget_for(y))
        .map(|b| b.allocated);
    if let Some(problem) = requested_amount_problem(app.requested_amount, budget) {
        v.add(f("requested_amount_fen"), problem);
    }
    v.text(
        &f("implementing_unit"),
        &app.implementing_unit,
        MAX_LINE_CHARS,
        true,
    );
    v.text(
        &f("receiving_unit.name"),
        &app.receiving_unit.name,
        MAX_LINE_CHARS,
        true,
    );
    v.text(
        &f("receiving_unit.bank_name"),
        &app.receiving_unit.bank_name,
        MAX_LINE_CHARS,
        true,
    );
    v.text(
        &f("receiving_unit.bank_account"),
        &app.receiving_unit.bank_account,
        MAX_NAME_CHARS,
        true,
    );
    v.text(
        &f("petition.petition_number"),
        &app.petition.number,
        MAX_NAME_CHARS,
        true,
    );
    if !app.seal.sealed {
        v.add(
            f("seal.sealed"),
            "the application must carry the applicant unit's seal",
        );
    }
    match app.fiscal_year {
        None => v.add(f("fiscal_year"), "is required"),
        Some(year) if rules.budget_for(year).is_none() => {
            v.add(
                f("fiscal_year"),
                format_args!("the district has no budget for fiscal year {year}"),
            );
        }
        Some(_) => {}
    }
    let over_cap = rules.is_over_cap(app.requested_amount);
    if over_cap && app.over_cap_justification.trim().is_empty() {
        v.add(
            f("over_cap_justification"),
            format_args!(
                "the amount is above the district's cap of {}: a justification is required",
                rules.case_cap
            ),
        );
    }
    let repeat_relief = !recent_cases.is_empty();
    if repeat_relief && app.repeat_relief_justification.trim().is_empty() {
        let ids: Vec<String> = recent_cases.iter().map(ToString::to_string).collect();
        v.add(
            f("repeat_relief_justification"),
            format_args!(
                "the recipient was helped or applied for within {} days (cases {}): a justification is required",
                rules.repeat_relief_wait_days,
                ids.join(", ")
            ),
        );
    }
    v.into_result(SubmissionFlags {
        over_cap,
        repeat_relief,
    })
}

/// Where a case stands. Each state carries what is true only in that state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseState {
    /// 草稿: being written by the applicant unit.
    Draft,
    /// 审核中: waiting at an approval step.
    InReview { step: StepId },
    /// 退回补正: sent back to the applicant unit to amend; on resubmission review resumes at
    /// the step that returned it (when that step still applies).
    Returned { resume_at: Option<StepId> },
    /// 撤回: withdrawn by the applicant unit; final.
    Withdrawn,
    /// 不予救助: rejected by a reviewer; final.
    Rejected,
    /// 审批通过: approved; the amount is reserved against the budget.
    Approved,
    /// 已核拨: paid.
    Paid,
    /// 审批撤销: the final approval was cancelled by the bureau before payment
    /// ([`cancel_approval`]); its reservation is released. Final.
    Cancelled,
}

/// The state without its data: the database column and the wire enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StateKind {
    Draft,
    InReview,
    Returned,
    Withdrawn,
    Rejected,
    Approved,
    Paid,
    Cancelled,
}

impl StateKind {
    pub const ALL: [StateKind; 8] = [
        StateKind::Draft,
        StateKind::InReview,
        StateKind::Returned,
        StateKind::Withdrawn,
        StateKind::Rejected,
        StateKind::Approved,
        StateKind::Paid,
        StateKind::Cancelled,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            StateKind::Draft => "draft",
            StateKind::InReview => "in_review",
            StateKind::Returned => "returned",
            StateKind::Withdrawn => "withdrawn",
            StateKind::Rejected => "rejected",
            StateKind::Approved => "approved",
            StateKind::Paid => "paid",
            StateKind::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<StateKind> {
        StateKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for StateKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A transition the current state does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot {action} a case that is {from}")]
pub struct TransitionError {
    pub action: &'static str,
    pub from: StateKind,
}

/// Rebuilding a state from its stored parts failed: the row is inconsistent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stored case state {kind:?} with step {step:?} is inconsistent")]
pub struct CorruptState {
    pub kind: String,
    pub step: Option<String>,
}

impl CaseState {
    pub fn kind(&self) -> StateKind {
        match self {
            CaseState::Draft => StateKind::Draft,
            CaseState::InReview { .. } => StateKind::InReview,
            CaseState::Returned { .. } => StateKind::Returned,
            CaseState::Withdrawn => StateKind::Withdrawn,
            CaseState::Rejected => StateKind::Rejected,
            CaseState::Approved => StateKind::Approved,
            CaseState::Paid => StateKind::Paid,
            CaseState::Cancelled => StateKind::Cancelled,
        }
    }

    /// The step stored with the state: where a case in review waits, or where a returned
    /// case resumes.
    pub fn step(&self) -> Option<&StepId> {
        match self {
            CaseState::InReview { step } => Some(step),
            CaseState::Returned { resume_at } => resume_at.as_ref(),
            CaseState::Draft
            | CaseState::Withdrawn
            | CaseState::Rejected
            | CaseState::Approved
            | CaseState::Paid
            | CaseState::Cancelled => None,
        }
    }

    /// Rebuilds a state from the stored kind and step columns.
    pub fn from_parts(kind: &str, step: Option<&str>) -> Result<CaseState, CorruptState> {
        let corrupt = || CorruptState {
            kind: kind.to_owned(),
            step: step.map(str::to_owned),
        };
        let kind = StateKind::parse(kind).ok_or_else(corrupt)?;
        let state = match (kind, step) {
            (StateKind::InReview, Some(s)) => CaseState::InReview {
                step: StepId::parse(s).map_err(|_| corrupt())?,
            },
            (StateKind::InReview, None) => return Err(corrupt()),
            (StateKind::Draft, None) => CaseState::Draft,
            (StateKind::Returned, step) => CaseState::Returned {
                resume_at: step.map(StepId::parse).transpose().map_err(|_| corrupt())?,
            },
            (_, Some(_)) => return Err(corrupt()),
            (StateKind::Withdrawn, None) => CaseState::Withdrawn,
            (StateKind::Rejected, None) => CaseState::Rejected,
            (StateKind::Approved, None) => CaseState::Approved,
            (StateKind::Paid, None) => CaseState::Paid,
            (StateKind::Cancelled, None) => CaseState::Cancelled,
        };
        Ok(state)
    }

    /// The applicant unit may change the application only while it holds the case.
    pub fn check_editable(&self) -> Result<(), TransitionError> {
        match self {
            CaseState::Draft | CaseState::Returned { .. } => Ok(()),
            CaseState::InReview { .. }
            | CaseState::Withdrawn
            | CaseState::Rejected
            | CaseState::Approved
            | CaseState::Paid
            | CaseState::Cancelled => Err(TransitionError {
                action: "edit",
                from: self.kind(),
            }),
        }
    }

    /// Whether the case may be submitted now; checked before the completeness checks so a
    /// client learns about the state first.
    pub fn check_submittable(&self) -> Result<(), TransitionError> {
        match self {
            CaseState::Draft | CaseState::Returned { .. } => Ok(()),
            CaseState::InReview { .. }
            | CaseState::Withdrawn
            | CaseState::Rejected
            | CaseState::Approved
            | CaseState::Paid
            | CaseState::Cancelled => Err(TransitionError {
                action: "submit",
                from: self.kind(),
            }),
        }
    }

    /// Submission (or resubmission after a return) sends the case to `first_step`.
    pub fn submit(&self, first_step: StepId) -> Result<CaseState, TransitionError> {
        self.check_submittable()?;
        Ok(CaseState::InReview { step: first_step })
    }

    /// A paid case whose payment the bank returned is approved again, its reservation back.
    pub fn payment_returned(&self) -> Result<CaseState, TransitionError> {
        match self {
            CaseState::Paid => Ok(CaseState::Approved),
            CaseState::Draft
            | CaseState::InReview { .. }
            | CaseState::Returned { .. }
            | CaseState::Withdrawn
            | CaseState::Rejected
            | CaseState::Approved
            | CaseState::Cancelled => Err(TransitionError {
                action: "return the payment of",
                from: self.kind(),
            }),
        }
    }

    /// The applicant unit may withdraw a case only until its final approval: a draft, a case
    /// in review or a returned case. After final approval the approval is cancelled only by
    /// the bureau ([`cancel_approval`]).
    pub fn withdraw(&self) -> Result<CaseState, TransitionError> {
        match self {
            CaseState::Draft | CaseState::Returned { .. } | CaseState::InReview { .. } => {
                Ok(CaseState::Withdrawn)
            }
            CaseState::Withdrawn
            | CaseState::Rejected
            | CaseState::Approved
            | CaseState::Paid
            | CaseState::Cancelled => Err(TransitionError {
                action: "withdraw",
                from: self.kind(),
            }),
        }
    }
}

/// Where a case in review waits: the role that acts on its step, since when, and until when
/// (the step's deadline). The inbox and the overdue list read these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Waiting {
    pub role: Role,
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
}

/// A case entering `state` at `now`: in review it waits at `step`, for the step's deadline
/// in days; in any other state it waits at no step.
pub fn enter_step(
    state: &CaseState,
    step: Option<&ApprovalStep>,
    now: DateTime<Utc>,
) -> Option<Waiting> {
    match state {
        CaseState::InReview { .. } => step.map(|step| Waiting {
            role: step.role,
            since: now,
            until: now + chrono::Duration::days(i64::from(step.deadline_days)),
        }),
        CaseState::Draft
        | CaseState::Returned { .. }
        | CaseState::Withdrawn
        | CaseState::Rejected
        | CaseState::Approved
        | CaseState::Paid
        | CaseState::Cancelled => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::defaults::seed_rules;
    use crate::resident_id::check_char;

    fn step() -> StepId {
        StepId::parse("case_officer_review").unwrap()
    }

    fn all_states() -> Vec<CaseState> {
        vec![
            CaseState::Draft,
            CaseState::InReview { step: step() },
            CaseState::Returned {
                resume_at: Some(step()),
            },
            CaseState::Returned { resume_at: None },
            CaseState::Withdrawn,
            CaseState::Rejected,
            CaseState::Approved,
            CaseState::Paid,
            CaseState::Cancelled,
        ]
    }

    #[test]
    fn transitions_table() {
        // (state, editable, submittable, withdrawable)
        let table = [
            (StateKind::Draft, true, true, true),
            (StateKind::InReview, false, false, true),
            (StateKind::Returned, true, true, true),
            (StateKind::Returned, true, true, true),
            (StateKind::Withdrawn, false, false, false),
            (StateKind::Rejected, false, false, false),
            (StateKind::Approved, false, false, false),
            (StateKind::Paid, false, false, false),
            (StateKind::Cancelled, false, false, false),
        ];
        for (state, (kind, edit, submit, withdraw)) in all_states().into_iter().zip(table) {
            assert_eq!(state.kind(), kind);
            assert_eq!(state.check_editable().is_ok(), edit, "edit {kind}");
            assert_eq!(state.submit(step()).is_ok(), submit, "submit {kind}");
            assert_eq!(state.withdraw().is_ok(), withdraw, "withdraw {kind}");
        }
        assert_eq!(
            CaseState::Paid.submit(step()),
            Err(TransitionError {
                action: "submit",
                from: StateKind::Paid
            })
        );
    }

    #[test]
    fn parts_round_trip() {
        for state in all_states() {
            let rebuilt =
                CaseState::from_parts(state.kind().as_str(), state.step().map(StepId::as_str));
            assert_eq!(rebuilt, Ok(state));
        }
        assert!(CaseState::from_parts("in_review", None).is_err());
        assert!(CaseState::from_parts("draft", Some("x")).is_err());
        assert!(CaseState::from_parts("lost", None).is_err());
    }

    pub(crate) fn complete_application() -> Application {
        let first17 = "43012219800101123";
        let id = format!("{first17}{}", check_char(first17).unwrap());
        Application {
            recipient: Recipient {
                name: "张三".into(),
                resident_id: Some(ResidentId::parse(&id).unwrap()),
                phone: "13800000000".into(),
                address: "望城区高塘岭街道".into(),
            },
            basic_situation: "家庭困难".into(),
            reason: "于法无据、于情有理".into(),
            category: Some(CategoryCode::parse("other_hardship").unwrap()),
            requested_amount: Money::from_yuan(20_000).unwrap(),
            implementing_unit: "高塘岭街道".into(),
            receiving_unit: ReceivingUnit {
                name: "高塘岭街道办事处".into(),
                bank_name: "望城农商银行".into(),
                bank_account: "6230000000000001".into(),
            },
            petition: PetitionRef {
                number: "WC-2022-001".into(),
                summary: String::new(),
            },
            seal: Seal {
                sealed: true,
                sealed_by: "高塘岭街道".into(),
                sealed_at: None,
            },
            attachments: vec![],
            fiscal_year: Some(2022),
            over_cap_justification: String::new(),
            repeat_relief_justification: String::new(),
        }
    }

    #[test]
    fn submission_checks() {
        let rules = seed_rules(2022);
        let ok = complete_application();
        assert_eq!(
            check_submission(&ok, &rules, &[]),
            Ok(SubmissionFlags::default())
        );

        let fields = |app: &Application, recent: &[CaseId]| -> Vec<String> {
            check_submission(app, &rules, recent)
                .err()
                .unwrap_or_default()
                .into_iter()
                .map(|v| v.field)
                .collect()
        };
        let empty = Application::default();
        assert_eq!(fields(&empty, &[]).len(), 15);

        let mut over = ok.clone();
        over.requested_amount = Money::from_yuan(50_001).unwrap();
        assert_eq!(fields(&over, &[]), ["application.over_cap_justification"]);
        over.over_cap_justification = "重病".into();
        assert_eq!(
            check_submission(&over, &rules, &[]),
            Ok(SubmissionFlags {
                over_cap: true,
                repeat_relief: false
            })
        );
        let mut at_cap = ok.clone();
        at_cap.requested_amount = Money::from_yuan(50_000).unwrap();
        assert_eq!(fields(&at_cap, &[]), Vec::<String>::new());

        let recent = [CaseId::new_v7()];
        assert_eq!(
            fields(&ok, &recent),
            ["application.repeat_relief_justification"]
        );
        let mut repeat = ok.clone();
        repeat.repeat_relief_justification = "新的困难".into();
        assert_eq!(
            check_submission(&repeat, &rules, &recent),
            Ok(SubmissionFlags {
                over_cap: false,
                repeat_relief: true
            })
        );

        let mut other_year = ok.clone();
        other_year.fiscal_year = Some(2023);
        assert_eq!(fields(&other_year, &[]), ["application.fiscal_year"]);
        let mut unknown_category = ok;
        unknown_category.category = Some(CategoryCode::parse("nope").unwrap());
        assert_eq!(
            fields(&unknown_category, &[]),
            ["application.category_code"]
        );
    }
}
