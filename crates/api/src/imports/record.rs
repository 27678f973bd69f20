//! Checking one record on its own: its id, application, submission, decisions one by one and
//! payment, and building the rows it makes. Nothing here reads the database.

use chrono::{DateTime, NaiveDate, Utc};
use prost::Message as _;
use relief_domain::approval::DecisionKind;
use relief_domain::case::{Application, CaseState, check_submission};
use relief_domain::payment::{PaymentState, paid_at, secs_to_payment};
use relief_domain::{CaseId, Money, Role, StepId, Subject, UnitId, Violation};
use relief_proto::v1 as pb;
use relief_store::{CaseRecord, DecisionRecord, DistrictRecord, ImportedCase, PaymentRecord};
use sha2::{Digest as _, Sha256};

use super::{Checked, Verdict, invalid};
use crate::auth::Caller;
use crate::convert::{application_from_pb, from_timestamp, role_from_pb};

/// The longest external id.
const MAX_EXTERNAL_ID_CHARS: usize = 64;

/// Checks one record on its own and builds what it will write. Every field it cannot take is
/// reported at once, in the order of the record: its own fields, its application, its
/// decisions, then its payment against how the decisions ended.
pub(super) fn check(
    index: usize,
    r: &pb::ImportCasesRequest,
    district: &DistrictRecord,
    caller: &Caller,
    now: DateTime<Utc>,
) -> Verdict {
    let mut v: Vec<Violation> = Vec::new();
    let ext = read_external_id(&r.external_id, &mut v);
    let unit = UnitId::parse(&r.applicant_unit_id)
        .map_err(|e| v.push(Violation::new("applicant_unit_id", e)))
        .ok();
    let application = read_application(r.application.as_ref(), district, &mut v);
    let submitted = read_submit_time(r.submit_time.as_ref(), now, &mut v);
    let year = application.as_ref().and_then(|a| a.fiscal_year);
    let ctx = RecordContext {
        case_id: CaseId::new_v7(),
        year,
        requested: application.as_ref().map(|a| a.requested_amount),
        submitted,
        district,
        caller,
        now,
    };
    let history = read_decisions(&r.decisions, &ctx, &mut v);
    let paid_on = check_payment(r.payment.as_ref(), &history, now, &mut v);
    let payment = match (r.payment.as_ref(), paid_on, application.as_ref()) {
        (Some(p), Some(paid_on), Some(app)) => payment_record(p, paid_on, app, &history, &ctx),
        _ => None,
    };
    let (Some(unit), Some(application), Some(submitted)) = (unit, application, submitted) else {
        return Verdict::Invalid(invalid(index, ext, v));
    };
    if !v.is_empty() {
        return Verdict::Invalid(invalid(index, ext, v));
    }
    let paid = payment.as_ref().map(|p| p.amount);
    let case = case_record(&ctx, unit, application, submitted, history.amount, paid);
    Verdict::Checked(Box::new(Checked {
        index,
        imported: ImportedCase {
            external_id: ext.to_owned(),
            fingerprint: hex::encode(Sha256::digest(r.encode_to_vec())),
            case,
            decisions: history.records,
            payment,
        },
        paid,
    }))
}

/// What every part of one record is read against: the case it becomes, the year and amount
/// its application asks for, when it was submitted, and who imports it when.
struct RecordContext<'a> {
    case_id: CaseId,
    year: Option<i32>,
    requested: Option<Money>,
    submitted: Option<DateTime<Utc>>,
    district: &'a DistrictRecord,
    caller: &'a Caller,
    now: DateTime<Utc>,
}

/// The record's external id, trimmed; a missing or overlong one is a violation.
fn read_external_id<'r>(raw: &'r str, v: &mut Vec<Violation>) -> &'r str {
    let ext = raw.trim();
    if ext.is_empty() || ext.chars().count() > MAX_EXTERNAL_ID_CHARS {
        v.push(Violation::new(
            "external_id",
            format!("is required, at most {MAX_EXTERNAL_ID_CHARS} characters"),
        ));
    }
    ext
}

/// The record's application, checked against the district's rules like a submission here;
/// an imported application must name its fiscal year. `None` only if it cannot be read at
/// all (a readable one that breaks a rule is returned, its violations reported).
fn read_application(
    app: Option<&pb::Application>,
    district: &DistrictRecord,
    v: &mut Vec<Violation>,
) -> Option<Application> {
    match application_from_pb(app) {
        Ok(a) => {
            if let Err(more) = check_submission(&a, &district.rules, &[]) {
                v.extend(more);
            }
            if a.fiscal_year.is_none() {
                v.push(Violation::new("application.fiscal_year", "is required"));
            }
            Some(a)
        }
        Err(more) => {
            v.extend(more);
            None
        }
    }
}

/// When the case was submitted: required, and not after `now`. A time in the future is
/// reported but still returned, so the decisions are ordered against it.
fn read_submit_time(
    t: Option<&prost_types::Timestamp>,
    now: DateTime<Utc>,
    v: &mut Vec<Violation>,
) -> Option<DateTime<Utc>> {
    let submitted = t.and_then(from_timestamp);
    match submitted {
        None => v.push(Violation::new("submit_time", "is required")),
        Some(t) if t > now => v.push(Violation::new("submit_time", "must not be in the future")),
        Some(_) => {}
    }
    submitted
}

/// A record's decisions as read, in order.
struct History {
    /// The decisions read whole.
    records: Vec<DecisionRecord>,
    /// The amount the decisions left: the requested amount unless one of them changed it.
    amount: Option<Money>,
    /// When the last decision read whole was made; the submission if none was.
    last_time: Option<DateTime<Utc>>,
    /// What the last decision decided, if that could be read.
    outcome: Option<DecisionKind>,
}

/// Reads the record's decisions in order. There must be at least one (the deciding one);
/// each must come no earlier than the submission and the decision before it, and may lower
/// the amount, never above what was requested.
fn read_decisions(
    decisions: &[pb::ImportedDecision],
    ctx: &RecordContext<'_>,
    v: &mut Vec<Violation>,
) -> History {
    if decisions.is_empty() {
        v.push(Violation::new(
            "decisions",
            "at least the deciding one is required",
        ));
    }
    let mut history = History {
        records: Vec::new(),
        amount: ctx.requested,
        last_time: ctx.submitted,
        outcome: None,
    };
    for (i, d) in decisions.iter().enumerate() {
        let parts = read_decision(i, d, history.last_time, ctx.now, v);
        let before = history.amount;
        if let Some(m) = read_approved_amount(i, d, ctx.requested, v) {
            history.amount = Some(m);
        }
        history.outcome = parts.kind;
        if let (Some(b), Some(a)) = (before, history.amount)
            && let Some(record) = decision_record(d, &parts, b, a, history.last_time, ctx)
        {
            history.last_time = Some(record.decided_at);
            history.records.push(record);
        }
    }
    history
}

/// The path of field `name` of decision `i`.
fn decision_field(i: usize, name: &str) -> String {
    format!("decisions[{i}].{name}")
}

/// What could be read of one decision; each part missing was reported.
struct DecisionParts {
    step: Option<StepId>,
    kind: Option<DecisionKind>,
    role: Option<Role>,
    subject: Option<Subject>,
    at: Option<DateTime<Utc>>,
}

/// Reads decision `i`: its step, a final verdict (an imported case is finished), who made
/// it, and when, which must not be in the future nor before `last_time` (the submission or
/// the decision before).
fn read_decision(
    i: usize,
    d: &pb::ImportedDecision,
    last_time: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    v: &mut Vec<Violation>,
) -> DecisionParts {
    let f = |name: &str| decision_field(i, name);
    let step = StepId::parse(&d.step_id)
        .map_err(|e| v.push(Violation::new(f("step_id"), e)))
        .ok();
    let kind = match pb::Decision::try_from(d.decision) {
        Ok(pb::Decision::Approve) => Some(DecisionKind::Approve),
        Ok(pb::Decision::Reject) => Some(DecisionKind::Reject),
        _ => {
            v.push(Violation::new(
                f("decision"),
                "must be APPROVE or REJECT (imported cases are finished)",
            ));
            None
        }
    };
    let role = role_from_pb(d.decided_by_role);
    if role.is_none() {
        v.push(Violation::new(f("decided_by_role"), "is required"));
    }
    let subject = Subject::parse(&d.decided_by_subject)
        .map_err(|e| v.push(Violation::new(f("decided_by_subject"), e)))
        .ok();
    if d.decided_by_name.trim().is_empty() {
        v.push(Violation::new(f("decided_by_name"), "is required"));
    }
    let at = d.decide_time.as_ref().and_then(from_timestamp);
    match (at, last_time) {
        (None, _) => v.push(Violation::new(f("decide_time"), "is required")),
        (Some(t), _) if t > now => {
            v.push(Violation::new(
                f("decide_time"),
                "must not be in the future",
            ));
        }
        (Some(t), Some(prev)) if t < prev => v.push(Violation::new(
            f("decide_time"),
            "must not be before the submission or the previous decision",
        )),
        _ => {}
    }
    DecisionParts {
        step,
        kind,
        role,
        subject,
        at,
    }
}

/// The amount decision `i` approved, if it names one (zero names none): positive and at most
/// the `requested` amount, else a violation and `None`.
fn read_approved_amount(
    i: usize,
    d: &pb::ImportedDecision,
    requested: Option<Money>,
    v: &mut Vec<Violation>,
) -> Option<Money> {
    if d.approved_amount_fen == 0 {
        return None;
    }
    match (Money::from_fen(d.approved_amount_fen), requested) {
        (Ok(m), Some(req)) if m.fen() > 0 && m <= req => Some(m),
        _ => {
            v.push(Violation::new(
                decision_field(i, "approved_amount_fen"),
                "must be positive and at most the requested amount",
            ));
            None
        }
    }
}

/// The decision row of `d`, if all its parts could be read: it took the amount from `before`
/// to `after`, after waiting since `last_time`.
fn decision_record(
    d: &pb::ImportedDecision,
    parts: &DecisionParts,
    before: Money,
    after: Money,
    last_time: Option<DateTime<Utc>>,
    ctx: &RecordContext<'_>,
) -> Option<DecisionRecord> {
    let (Some(step), Some(kind), Some(role), Some(subject), Some(at)) = (
        parts.step.clone(),
        parts.kind,
        parts.role,
        parts.subject.as_ref(),
        parts.at,
    ) else {
        return None;
    };
    let waited = last_time.map_or(0, |prev| (at - prev).num_seconds().max(0));
    let step_name = match d.step_name.trim() {
        "" => step.to_string(),
        name => name.to_owned(),
    };
    Some(DecisionRecord {
        id: CaseId::new_v7().to_string(),
        case_id: ctx.case_id,
        step_name,
        step_id: step,
        decision: kind,
        actor_subject: subject.to_string(),
        actor_name: d.decided_by_name.trim().to_owned(),
        actor_role: role,
        on_behalf_of: None,
        opinion: d.opinion.clone(),
        amount_before: before,
        amount_after: after,
        over_cap: after > ctx.district.rules.case_cap,
        over_cap_justification: String::new(),
        meeting_id: None,
        return_to_step_id: None,
        decided_at: at,
        fiscal_year: ctx.year,
        waited_secs: waited,
    })
}

/// Checks the payment against how the decisions ended: an approved case was paid, the
/// amount they approved, on a day not in the future nor before the last decision, with a
/// voucher and a bank reference; a rejected case was not paid. Returns the day it was paid
/// if that could be read.
fn check_payment(
    payment: Option<&pb::ImportedPayment>,
    history: &History,
    now: DateTime<Utc>,
    v: &mut Vec<Violation>,
) -> Option<NaiveDate> {
    let p = match (history.outcome, payment) {
        (Some(DecisionKind::Approve), Some(p)) => p,
        (Some(DecisionKind::Approve), None) => {
            v.push(Violation::new(
                "payment",
                "is required: imported approved cases are paid",
            ));
            return None;
        }
        (Some(DecisionKind::Reject), Some(_)) => {
            v.push(Violation::new(
                "payment",
                "must be absent for a rejected case",
            ));
            return None;
        }
        _ => return None,
    };
    let paid_on = NaiveDate::parse_from_str(&p.paid_date, "%Y-%m-%d").ok();
    match paid_on {
        None => v.push(Violation::new(
            "payment.paid_date",
            "must be a date YYYY-MM-DD",
        )),
        Some(d) if d > now.date_naive() => {
            v.push(Violation::new(
                "payment.paid_date",
                "must not be in the future",
            ));
        }
        Some(d) if history.last_time.is_some_and(|t| d < t.date_naive()) => v.push(Violation::new(
            "payment.paid_date",
            "must not be before the decisions",
        )),
        Some(_) => {}
    }
    if Some(p.amount_fen) != history.amount.map(Money::fen) {
        v.push(Violation::new(
            "payment.amount_fen",
            "must equal the approved amount",
        ));
    }
    for (field, value) in [
        ("payment.voucher_number", &p.voucher_number),
        ("payment.bank_reference", &p.bank_reference),
    ] {
        if value.trim().is_empty() {
            v.push(Violation::new(field, "is required"));
        }
    }
    paid_on
}

/// The payment row of an approved case paid on `paid_on`, to the unit its application
/// names, of the amount its decisions left; `None` if that amount or the year is unknown.
fn payment_record(
    p: &pb::ImportedPayment,
    paid_on: NaiveDate,
    app: &Application,
    history: &History,
    ctx: &RecordContext<'_>,
) -> Option<PaymentRecord> {
    let (Some(amount), Some(year)) = (history.amount, ctx.year) else {
        return None;
    };
    Some(PaymentRecord {
        id: CaseId::new_v7().to_string(),
        district_id: ctx.district.id.clone(),
        case_id: ctx.case_id,
        fiscal_year: year,
        amount,
        receiving_unit_name: app.receiving_unit.name.clone(),
        bank_name: app.receiving_unit.bank_name.clone(),
        bank_account: app.receiving_unit.bank_account.clone(),
        voucher_number: p.voucher_number.trim().to_owned(),
        state: PaymentState::Paid {
            bank_reference: p.bank_reference.trim().to_owned(),
            paid_on,
        },
        secs_to_payment: secs_to_payment(ctx.submitted, paid_on),
        created_by: ctx.caller.claims().subject().to_string(),
        created_at: paid_at(paid_on).unwrap_or(ctx.now),
        updated_at: ctx.now,
    })
}

/// The case row of a valid record: paid if it was, else rejected, at the amount its
/// decisions left.
fn case_record(
    ctx: &RecordContext<'_>,
    unit: UnitId,
    application: Application,
    submitted: DateTime<Utc>,
    amount: Option<Money>,
    paid: Option<Money>,
) -> CaseRecord {
    let district = ctx.district;
    CaseRecord {
        id: ctx.case_id,
        district_id: district.id.clone(),
        applicant_unit_id: unit,
        state: if paid.is_some() {
            CaseState::Paid
        } else {
            CaseState::Rejected
        },
        application,
        rules_version: district.rules_version,
        over_cap: amount.is_some_and(|a| a > district.rules.case_cap),
        repeat_relief: false,
        approved_amount: paid,
        step_role: None,
        step_entered_at: None,
        step_deadline_at: None,
        petitioned_again: false,
        version: 1,
        created_by: ctx.caller.claims().subject().to_string(),
        created_at: submitted,
        updated_at: ctx.now,
        submitted_at: Some(submitted),
    }
}
