//! Every validation error the case API promises, with its exact field path, table-driven
//! through one `check`: a client fixes a form from these paths, so each one is contract.

use relief_proto::v1 as pb;
use relief_tests::{
    Backend, CASE_CAP_FEN, Caller, WANGCHENG, expect_code, expect_violations, request_id,
    spawn_app, state, valid_application,
};
use tonic::{Code, Status};

relief_tests::backend_tests! {
    malformed_fields_are_refused_on_create,
    malformed_fields_are_refused_on_update,
    incomplete_applications_are_refused_on_submit,
    request_fields_are_checked,
    a_withdrawal_needs_a_reason,
    request_and_application_problems_are_reported_together,
}

/// One row's expectation: INVALID_ARGUMENT with exactly `fields`, in any order.
fn check<T: std::fmt::Debug>(what: &str, result: Result<T, Status>, fields: &[&str]) {
    expect_violations(result, fields, what);
}

type Edit = fn(&mut pb::Application);

fn recipient(app: &mut pb::Application) -> &mut pb::Recipient {
    app.recipient
        .as_mut()
        .expect("built applications have a recipient")
}

/// Replaces the valid check character with a wrong one.
fn break_check_digit(app: &mut pb::Application) {
    let id = &mut recipient(app).resident_id_number;
    let wrong = if id.ends_with('0') { '1' } else { '0' };
    id.pop();
    id.push(wrong);
}

/// Drafts with one malformed field each (or several), and the violations they must raise.
/// Every other field is valid, so a draft with these fixed would be accepted.
fn malformed_drafts() -> Vec<(&'static str, Edit, Vec<&'static str>)> {
    const RESIDENT_ID: &str = "application.recipient.resident_id_number";
    const SHA: &str = "application.attachments[0].sha256_hex";
    vec![
        (
            "resident id with a wrong check digit",
            break_check_digit,
            vec![RESIDENT_ID],
        ),
        (
            "resident id of 17 digits",
            |a| recipient(a).resident_id_number = "43012219800101123".to_owned(),
            vec![RESIDENT_ID],
        ),
        (
            "resident id with month 13",
            |a| recipient(a).resident_id_number = "430122198013011234".to_owned(),
            vec![RESIDENT_ID],
        ),
        (
            "resident id with a letter inside",
            |a| recipient(a).resident_id_number = "4301221980A1011234".to_owned(),
            vec![RESIDENT_ID],
        ),
        (
            "negative amount",
            |a| a.requested_amount_fen = -1,
            vec!["application.requested_amount_fen"],
        ),
        (
            "sha256 that is not hex",
            |a| a.attachments[0].sha256_hex = "zz".repeat(32),
            vec![SHA],
        ),
        (
            "sha256 of 63 digits",
            |a| a.attachments[0].sha256_hex = "a".repeat(63),
            vec![SHA],
        ),
        (
            "sha256 bad on the second attachment",
            |a| {
                let mut second = a.attachments[0].clone();
                second.sha256_hex = "not-a-digest".to_owned();
                a.attachments.push(second);
            },
            vec!["application.attachments[1].sha256_hex"],
        ),
        (
            "negative attachment size",
            |a| a.attachments[0].size_bytes = -1,
            vec!["application.attachments[0].size_bytes"],
        ),
        (
            "category code that is not a code",
            |a| a.category_code = "not a code!".to_owned(),
            vec!["application.category_code"],
        ),
        (
            "every bad field at once",
            |a| {
                break_check_digit(a);
                a.requested_amount_fen = -500;
                a.attachments[0].sha256_hex = "xyz".to_owned();
                a.category_code = "类别".to_owned();
            },
            vec![
                RESIDENT_ID,
                "application.requested_amount_fen",
                SHA,
                "application.category_code",
            ],
        ),
    ]
}

fn edited(edit: Edit) -> pb::Application {
    let mut app = valid_application();
    edit(&mut app);
    app
}

async fn case_count(caller: &Caller) -> usize {
    caller.list_all(Default::default()).await.len()
}

async fn malformed_fields_are_refused_on_create(backend: Backend) {
    let app = spawn_app(backend).await;
    let unit = app.applicant(WANGCHENG, "gaotangling");
    for (what, edit, fields) in malformed_drafts() {
        check(what, unit.create_case(edited(edit)).await, &fields);
    }
    assert_eq!(case_count(&unit).await, 0, "no refused draft was stored");

    // A draft may omit fields, but an empty request_id is still refused, together with the
    // application's own problems.
    check(
        "create without a request id",
        unit.create_case_with("", valid_application()).await,
        &["request_id"],
    );
    check(
        "create with a 65-character request id",
        unit.create_case_with(&"r".repeat(65), valid_application())
            .await,
        &["request_id"],
    );
    assert_eq!(case_count(&unit).await, 0);

    // The control: the same builder without edits is accepted.
    unit.create_case(valid_application()).await.unwrap();
    assert_eq!(case_count(&unit).await, 1);
}

async fn malformed_fields_are_refused_on_update(backend: Backend) {
    let app = spawn_app(backend).await;
    let unit = app.applicant(WANGCHENG, "gaotangling");
    let draft = unit.draft(valid_application()).await;
    for (what, edit, fields) in malformed_drafts() {
        check(
            what,
            unit.update(&draft.case_id, edited(edit)).await,
            &fields,
        );
    }
    let unchanged = unit.get_case(&draft.case_id).await.unwrap();
    assert_eq!(unchanged, draft, "refused updates change nothing");
}

/// Applications a draft accepts but submission refuses, and the violations they raise.
fn incomplete_applications() -> Vec<(&'static str, Edit, Vec<&'static str>)> {
    vec![
        (
            "no recipient name",
            |a| recipient(a).name = String::new(),
            vec!["application.recipient.name"],
        ),
        (
            "blank recipient name",
            |a| recipient(a).name = "   ".to_owned(),
            vec!["application.recipient.name"],
        ),
        (
            "no resident id",
            |a| recipient(a).resident_id_number = String::new(),
            vec!["application.recipient.resident_id_number"],
        ),
        (
            "no phone",
            |a| recipient(a).phone = String::new(),
            vec!["application.recipient.phone"],
        ),
        (
            "no address",
            |a| recipient(a).address = String::new(),
            vec!["application.recipient.address"],
        ),
        (
            "no basic situation",
            |a| a.basic_situation = String::new(),
            vec!["application.basic_situation"],
        ),
        (
            "no reason",
            |a| a.reason = String::new(),
            vec!["application.reason"],
        ),
        (
            "no category",
            |a| a.category_code = String::new(),
            vec!["application.category_code"],
        ),
        (
            "a category the district does not have",
            |a| a.category_code = "nope".to_owned(),
            vec!["application.category_code"],
        ),
        (
            "no amount",
            |a| a.requested_amount_fen = 0,
            vec!["application.requested_amount_fen"],
        ),
        (
            "no implementing unit",
            |a| a.implementing_unit = String::new(),
            vec!["application.implementing_unit"],
        ),
        (
            "no receiving unit name",
            |a| a.receiving_unit.as_mut().unwrap().name = String::new(),
            vec!["application.receiving_unit.name"],
        ),
        (
            "no bank name",
            |a| a.receiving_unit.as_mut().unwrap().bank_name = String::new(),
            vec!["application.receiving_unit.bank_name"],
        ),
        (
            "no bank account",
            |a| a.receiving_unit.as_mut().unwrap().bank_account = String::new(),
            vec!["application.receiving_unit.bank_account"],
        ),
        (
            "no petition number",
            |a| a.petition.as_mut().unwrap().petition_number = String::new(),
            vec!["application.petition.petition_number"],
        ),
        (
            "not sealed",
            |a| a.seal.as_mut().unwrap().sealed = false,
            vec!["application.seal.sealed"],
        ),
        (
            "no seal at all",
            |a| a.seal = None,
            vec!["application.seal.sealed"],
        ),
        (
            "no fiscal year",
            |a| a.fiscal_year = 0,
            vec!["application.fiscal_year"],
        ),
        (
            "a fiscal year without a budget (Wangcheng has only 2022)",
            |a| a.fiscal_year = 2023,
            vec!["application.fiscal_year"],
        ),
        (
            "over the cap without a justification",
            |a| a.requested_amount_fen = CASE_CAP_FEN + 1,
            vec!["application.over_cap_justification"],
        ),
        (
            "over the cap with a blank justification",
            |a| {
                a.requested_amount_fen = CASE_CAP_FEN * 2;
                a.over_cap_justification = "   ".to_owned();
            },
            vec!["application.over_cap_justification"],
        ),
        (
            "several gaps at once",
            |a| {
                recipient(a).name = String::new();
                a.seal.as_mut().unwrap().sealed = false;
                a.fiscal_year = 2023;
                a.requested_amount_fen = CASE_CAP_FEN + 100;
            },
            vec![
                "application.recipient.name",
                "application.seal.sealed",
                "application.fiscal_year",
                "application.over_cap_justification",
            ],
        ),
    ]
}

async fn incomplete_applications_are_refused_on_submit(backend: Backend) {
    let app = spawn_app(backend).await;
    let unit = app.applicant(WANGCHENG, "gaotangling");
    for (what, edit, fields) in incomplete_applications() {
        let draft = unit
            .create_case(edited(edit))
            .await
            .unwrap_or_else(|s| panic!("{what}: a draft accepts it, got {s:?}"));
        check(what, unit.submit(&draft.case_id).await, &fields);
        let after = unit.get_case(&draft.case_id).await.unwrap();
        assert_eq!(state(&after), pb::CaseState::Draft, "{what}: still a draft");
        assert_eq!(after.version, 1, "{what}: unchanged");
    }
}

async fn request_fields_are_checked(backend: Backend) {
    let app = spawn_app(backend).await;
    let unit = app.applicant(WANGCHENG, "gaotangling");
    let draft = unit.draft(valid_application()).await;
    let id = draft.case_id.clone();

    check(
        "update without a request id",
        unit.update_case_raw(pb::UpdateCaseRequest {
            request_id: String::new(),
            case_id: id.clone(),
            application: Some(valid_application()),
            expected_version: 0,
            ..Default::default()
        })
        .await,
        &["request_id"],
    );
    check(
        "submit without a request id",
        unit.submit_case_raw(pb::SubmitCaseRequest {
            request_id: String::new(),
            case_id: id.clone(),
            expected_version: 0,
            ..Default::default()
        })
        .await,
        &["request_id"],
    );
    check(
        "withdraw without a request id",
        unit.withdraw_case_raw(pb::WithdrawCaseRequest {
            request_id: String::new(),
            case_id: id.clone(),
            reason: "不再需要".to_owned(),
            expected_version: 0,
            ..Default::default()
        })
        .await,
        &["request_id"],
    );

    // Malformed case ids are the caller's mistake; well-formed unknown ones are not found.
    const MALFORMED: &str = "not-a-uuid";
    check(
        "get a malformed id",
        unit.get_case(MALFORMED).await,
        &["case_id"],
    );
    check(
        "update a malformed id",
        unit.update(MALFORMED, valid_application()).await,
        &["case_id"],
    );
    check(
        "submit a malformed id",
        unit.submit(MALFORMED).await,
        &["case_id"],
    );
    check(
        "withdraw a malformed id",
        unit.withdraw(MALFORMED).await,
        &["case_id"],
    );
    let unknown = uuid::Uuid::now_v7().to_string();
    expect_code(unit.get_case(&unknown).await, Code::NotFound, "get unknown");
    expect_code(
        unit.update(&unknown, valid_application()).await,
        Code::NotFound,
        "update unknown",
    );
    expect_code(
        unit.submit(&unknown).await,
        Code::NotFound,
        "submit unknown",
    );
    expect_code(
        unit.withdraw(&unknown).await,
        Code::NotFound,
        "withdraw unknown",
    );

    check(
        "negative page size",
        unit.list_cases(pb::ListCasesRequest {
            page_size: -1,
            ..Default::default()
        })
        .await,
        &["page_size"],
    );
    check(
        "malformed page token",
        unit.list_cases(pb::ListCasesRequest {
            page_token: "garbage".to_owned(),
            ..Default::default()
        })
        .await,
        &["page_token"],
    );
    check(
        "malformed category filter",
        unit.list_cases(pb::ListCasesRequest {
            category_code: "not a code!".to_owned(),
            ..Default::default()
        })
        .await,
        &["category_code"],
    );

    let after = unit.get_case(&id).await.unwrap();
    assert_eq!(after, draft, "refused requests change nothing");
}

async fn a_withdrawal_needs_a_reason(backend: Backend) {
    let app = spawn_app(backend).await;
    let unit = app.applicant(WANGCHENG, "gaotangling");
    let draft = unit.draft(valid_application()).await;
    for reason in ["", "   "] {
        check(
            &format!("withdraw with reason {reason:?}"),
            unit.withdraw_case_raw(pb::WithdrawCaseRequest {
                request_id: request_id(),
                case_id: draft.case_id.clone(),
                reason: reason.to_owned(),
                expected_version: 0,
                ..Default::default()
            })
            .await,
            &["reason"],
        );
    }
    assert_eq!(unit.get_case(&draft.case_id).await.unwrap(), draft);
}

async fn request_and_application_problems_are_reported_together(backend: Backend) {
    let app = spawn_app(backend).await;
    let unit = app.applicant(WANGCHENG, "gaotangling");
    check(
        "create without a request id and with a negative amount",
        unit.create_case_with("", edited(|a| a.requested_amount_fen = -1))
            .await,
        &["request_id", "application.requested_amount_fen"],
    );
}
