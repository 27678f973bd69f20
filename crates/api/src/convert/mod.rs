//! Conversions between wire types and domain types, at the edge and nowhere else. Incoming
//! messages are checked field by field and every problem is reported at once with its path.

use chrono::{DateTime, Utc};
use prost_types::Timestamp;
use relief_domain::case::{
    Attachment, MAX_ATTACHMENT_BYTES, MAX_ATTACHMENTS, MAX_LINE_CHARS, MAX_NAME_CHARS,
    MAX_REQUESTED_FEN, MAX_TEXT_CHARS, PetitionRef, ReceivingUnit, Recipient, Seal,
    requested_amount_problem,
};
use relief_domain::privacy::{Field, View};
use relief_domain::{
    Application, CaseState, CategoryCode, Money, ResidentId, Role, StateKind, Violation, Violations,
};
use relief_proto::v1 as pb;
use relief_store::CaseRecord;

mod rules;

pub use rules::{district_to_pb, rules_from_pb, rules_to_pb};

pub fn timestamp(t: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

pub fn from_timestamp(t: &Timestamp) -> Option<DateTime<Utc>> {
    u32::try_from(t.nanos)
        .ok()
        .and_then(|n| DateTime::from_timestamp(t.seconds, n))
}

pub fn role_to_pb(role: Role) -> pb::Role {
    match role {
        Role::ApplicantUnit => pb::Role::ApplicantUnit,
        Role::CaseOfficer => pb::Role::CaseOfficer,
        Role::DeputyLeader => pb::Role::DeputyLeader,
        Role::BureauHead => pb::Role::BureauHead,
        Role::BureauOffice => pb::Role::BureauOffice,
        Role::DistrictLeader => pb::Role::DistrictLeader,
        Role::Finance => pb::Role::Finance,
        Role::Auditor => pb::Role::Auditor,
        Role::DistrictAdmin => pb::Role::DistrictAdmin,
        Role::CityAdmin => pb::Role::CityAdmin,
        Role::SyncClient => pb::Role::SyncClient,
    }
}

pub fn role_from_pb(value: i32) -> Option<Role> {
    match pb::Role::try_from(value).ok()? {
        pb::Role::Unspecified => None,
        pb::Role::ApplicantUnit => Some(Role::ApplicantUnit),
        pb::Role::CaseOfficer => Some(Role::CaseOfficer),
        pb::Role::DeputyLeader => Some(Role::DeputyLeader),
        pb::Role::BureauHead => Some(Role::BureauHead),
        pb::Role::BureauOffice => Some(Role::BureauOffice),
        pb::Role::DistrictLeader => Some(Role::DistrictLeader),
        pb::Role::Finance => Some(Role::Finance),
        pb::Role::Auditor => Some(Role::Auditor),
        pb::Role::DistrictAdmin => Some(Role::DistrictAdmin),
        pb::Role::CityAdmin => Some(Role::CityAdmin),
        pb::Role::SyncClient => Some(Role::SyncClient),
    }
}

pub fn state_to_pb(kind: StateKind) -> pb::CaseState {
    match kind {
        StateKind::Draft => pb::CaseState::Draft,
        StateKind::InReview => pb::CaseState::InReview,
        StateKind::Returned => pb::CaseState::Returned,
        StateKind::Withdrawn => pb::CaseState::Withdrawn,
        StateKind::Rejected => pb::CaseState::Rejected,
        StateKind::Approved => pb::CaseState::Approved,
        StateKind::Paid => pb::CaseState::Paid,
        StateKind::Cancelled => pb::CaseState::Cancelled,
    }
}

/// The filter value of a state: `Ok(None)` for unspecified, a violation for an unknown number.
pub fn state_from_pb(value: i32, field: &str) -> Result<Option<StateKind>, Violation> {
    let state =
        pb::CaseState::try_from(value).map_err(|_| Violation::new(field, "is not a case state"))?;
    match state {
        pb::CaseState::Unspecified => Ok(None),
        pb::CaseState::Draft => Ok(Some(StateKind::Draft)),
        pb::CaseState::InReview => Ok(Some(StateKind::InReview)),
        pb::CaseState::Returned => Ok(Some(StateKind::Returned)),
        pb::CaseState::Withdrawn => Ok(Some(StateKind::Withdrawn)),
        pb::CaseState::Rejected => Ok(Some(StateKind::Rejected)),
        pb::CaseState::Approved => Ok(Some(StateKind::Approved)),
        pb::CaseState::Paid => Ok(Some(StateKind::Paid)),
        pb::CaseState::Cancelled => Ok(Some(StateKind::Cancelled)),
    }
}

// ---- fund rules ----

// ---- applications and cases ----

fn is_phone(s: &str) -> bool {
    let digits = s.chars().filter(char::is_ascii_digit).count();
    (5..=20).contains(&digits)
        && s.chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '+' | '-' | ' '))
}

fn is_bank_account(s: &str) -> bool {
    (8..=32).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

fn is_media_type(s: &str) -> bool {
    let ok = |p: &str| {
        !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    s.len() <= 127 && s.split_once('/').is_some_and(|(t, sub)| ok(t) && ok(sub))
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Reads an application off the wire. A draft may leave fields empty; whatever is present
/// must be well-formed.
/// One attachment off the wire, its problems added to `v` under `field` (the attachment's
/// own path, such as `document`).
fn attachment_into(v: &mut Violations, field: &str, at: &pb::Attachment) -> Attachment {
    let af = |name: &str| format!("{field}.{name}");
    v.text(&af("name"), &at.name, MAX_LINE_CHARS, true);
    v.text(
        &af("document_type"),
        &at.document_type,
        MAX_NAME_CHARS,
        false,
    );
    if !is_media_type(&at.media_type) {
        v.add(
            af("media_type"),
            "must be a media type such as application/pdf",
        );
    }
    if !is_sha256_hex(&at.sha256_hex) {
        v.add(af("sha256_hex"), "must be 64 lowercase hexadecimal digits");
    }
    let size = u64::try_from(at.size_bytes).unwrap_or(0);
    if size == 0 || size > MAX_ATTACHMENT_BYTES {
        v.add(
            af("size_bytes"),
            format_args!("must be between 1 and {MAX_ATTACHMENT_BYTES}"),
        );
    }
    Attachment {
        document_type: at.document_type.trim().to_owned(),
        name: at.name.clone(),
        media_type: at.media_type.clone(),
        sha256_hex: at.sha256_hex.clone(),
        size_bytes: size,
    }
}

/// A single attachment given as the field `field`, or every problem with it.
pub fn attachment_from_pb(
    field: &str,
    at: Option<&pb::Attachment>,
) -> Result<Attachment, Vec<Violation>> {
    let Some(at) = at else {
        return Err(vec![Violation::new(field, "is required")]);
    };
    let mut v = Violations::new();
    let attachment = attachment_into(&mut v, field, at);
    v.into_result(attachment)
}

pub fn application_from_pb(app: Option<&pb::Application>) -> Result<Application, Vec<Violation>> {
    let Some(a) = app else {
        return Err(vec![Violation::new("application", "is required")]);
    };
    let mut v = Violations::new();
    let f = |name: &str| format!("application.{name}");
    let r = a.recipient.clone().unwrap_or_default();
    v.text(&f("recipient.name"), &r.name, MAX_NAME_CHARS, false);
    let resident_id = match r.resident_id_number.trim() {
        "" => None,
        s => v.check(f("recipient.resident_id_number"), ResidentId::parse(s)),
    };
    if !r.phone.is_empty() && !is_phone(&r.phone) {
        v.add(
            f("recipient.phone"),
            "must be a phone number of 5 to 20 digits",
        );
    }
    v.text(&f("recipient.address"), &r.address, MAX_LINE_CHARS, false);
    v.text(
        &f("basic_situation"),
        &a.basic_situation,
        MAX_TEXT_CHARS,
        false,
    );
    v.text(&f("reason"), &a.reason, MAX_TEXT_CHARS, false);
    let category = match a.category_code.as_str() {
        "" => None,
        s => v.check(f("category_code"), CategoryCode::parse(s)),
    };
    let requested_amount = v
        .check(
            f("requested_amount_fen"),
            Money::from_fen(a.requested_amount_fen),
        )
        .unwrap_or(Money::ZERO);
    if requested_amount.fen() > MAX_REQUESTED_FEN {
        // A draft may still be incomplete (zero), but never above the hard ceiling.
        if let Some(problem) = requested_amount_problem(requested_amount, None) {
            v.add(f("requested_amount_fen"), problem);
        }
    }
    v.text(
        &f("implementing_unit"),
        &a.implementing_unit,
        MAX_LINE_CHARS,
        false,
    );
    let ru = a.receiving_unit.clone().unwrap_or_default();
    v.text(&f("receiving_unit.name"), &ru.name, MAX_LINE_CHARS, false);
    v.text(
        &f("receiving_unit.bank_name"),
        &ru.bank_name,
        MAX_LINE_CHARS,
        false,
    );
    if !ru.bank_account.is_empty() && !is_bank_account(&ru.bank_account) {
        v.add(f("receiving_unit.bank_account"), "must be 8 to 32 digits");
    }
    let p = a.petition.clone().unwrap_or_default();
    v.text(
        &f("petition.petition_number"),
        &p.petition_number,
        MAX_NAME_CHARS,
        false,
    );
    v.text(&f("petition.summary"), &p.summary, MAX_TEXT_CHARS, false);
    let seal = a.seal.clone().unwrap_or_default();
    v.text(&f("seal.sealed_by"), &seal.sealed_by, MAX_LINE_CHARS, false);
    let sealed_at = match &seal.sealed_time {
        None => None,
        Some(t) => v.check(
            f("seal.sealed_time"),
            from_timestamp(t).ok_or("is not a valid time"),
        ),
    };
    // Counted before any element is looked at: too many are refused once, not each.
    let too_many = a.attachments.len() > MAX_ATTACHMENTS;
    if too_many {
        v.add(
            f("attachments"),
            format_args!("at most {MAX_ATTACHMENTS} attachments"),
        );
    }
    let mut attachments = Vec::new();
    let listed = if too_many {
        &[][..]
    } else {
        &a.attachments[..]
    };
    for (i, at) in listed.iter().enumerate() {
        attachments.push(attachment_into(
            &mut v,
            &f(&format!("attachments[{i}]")),
            at,
        ));
    }
    let fiscal_year = match a.fiscal_year {
        0 => None,
        y if (2000..=2100).contains(&y) => Some(y),
        _ => {
            v.add(f("fiscal_year"), "must be between 2000 and 2100");
            None
        }
    };
    v.text(
        &f("over_cap_justification"),
        &a.over_cap_justification,
        MAX_TEXT_CHARS,
        false,
    );
    v.text(
        &f("repeat_relief_justification"),
        &a.repeat_relief_justification,
        MAX_TEXT_CHARS,
        false,
    );
    v.into_result(Application {
        recipient: Recipient {
            name: r.name.trim().to_owned(),
            resident_id,
            phone: r.phone,
            address: r.address,
        },
        basic_situation: a.basic_situation.clone(),
        reason: a.reason.clone(),
        category,
        requested_amount,
        implementing_unit: a.implementing_unit.clone(),
        receiving_unit: ReceivingUnit {
            name: ru.name,
            bank_name: ru.bank_name,
            bank_account: ru.bank_account,
        },
        petition: PetitionRef {
            number: p.petition_number,
            summary: p.summary,
        },
        seal: Seal {
            sealed: seal.sealed,
            sealed_by: seal.sealed_by,
            sealed_at,
        },
        attachments,
        fiscal_year,
        over_cap_justification: a.over_cap_justification.clone(),
        repeat_relief_justification: a.repeat_relief_justification.clone(),
    })
}

/// The application as a reader with `view` sees it ([`relief_domain::privacy`]).
pub fn application_to_pb(a: &Application, view: &View) -> pb::Application {
    let resident_id_number = a
        .recipient
        .resident_id
        .as_ref()
        .map(|r| view.show(Field::ResidentId, r.as_str()))
        .unwrap_or_default();
    pb::Application {
        recipient: Some(pb::Recipient {
            name: a.recipient.name.clone(),
            resident_id_number,
            phone: view.show(Field::Phone, &a.recipient.phone),
            address: view.show(Field::Address, &a.recipient.address),
        }),
        basic_situation: view.show(Field::Situation, &a.basic_situation),
        reason: a.reason.clone(),
        category_code: a
            .category
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        requested_amount_fen: a.requested_amount.fen(),
        implementing_unit: a.implementing_unit.clone(),
        receiving_unit: Some(pb::ReceivingUnit {
            name: a.receiving_unit.name.clone(),
            bank_name: a.receiving_unit.bank_name.clone(),
            bank_account: view.show(Field::BankAccount, &a.receiving_unit.bank_account),
        }),
        petition: Some(pb::PetitionRef {
            petition_number: a.petition.number.clone(),
            summary: a.petition.summary.clone(),
        }),
        seal: Some(pb::SealAttestation {
            sealed: a.seal.sealed,
            sealed_by: a.seal.sealed_by.clone(),
            sealed_time: a.seal.sealed_at.map(timestamp),
        }),
        attachments: a
            .attachments
            .iter()
            .map(|at| pb::Attachment {
                document_type: at.document_type.clone(),
                name: at.name.clone(),
                media_type: at.media_type.clone(),
                sha256_hex: at.sha256_hex.clone(),
                size_bytes: i64::try_from(at.size_bytes).unwrap_or(i64::MAX),
            })
            .collect(),
        fiscal_year: a.fiscal_year.unwrap_or(0),
        over_cap_justification: a.over_cap_justification.clone(),
        repeat_relief_justification: a.repeat_relief_justification.clone(),
    }
}

/// The case as a reader with `view` sees it; a caller's view of a case is
/// [`crate::auth::Caller::case_view`].
pub fn case_to_pb(c: &CaseRecord, view: &View) -> pb::Case {
    pb::Case {
        case_id: c.id.to_string(),
        district_id: c.district_id.to_string(),
        applicant_unit_id: c.applicant_unit_id.to_string(),
        state: state_to_pb(c.state.kind()).into(),
        application: Some(application_to_pb(&c.application, view)),
        rules_version: c.rules_version,
        over_cap: c.over_cap,
        repeat_relief: c.repeat_relief,
        current_step_id: match &c.state {
            CaseState::InReview { step } => step.to_string(),
            CaseState::Draft
            | CaseState::Returned { .. }
            | CaseState::Withdrawn
            | CaseState::Rejected
            | CaseState::Approved
            | CaseState::Paid
            | CaseState::Cancelled => String::new(),
        },
        version: c.version,
        created_by: c.created_by.clone(),
        create_time: Some(timestamp(c.created_at)),
        update_time: Some(timestamp(c.updated_at)),
        submit_time: c.submitted_at.map(timestamp),
        approved_amount_fen: c.approved_amount.map_or(0, Money::fen),
        step_deadline_time: c.step_deadline_at.map(timestamp),
        petitioned_again: c.petitioned_again,
    }
}
