//! Intake (申请) from the applicant unit's side, end to end: a case is drafted, amended,
//! submitted into review, read back, found through list filters and pages, and withdrawn,
//! with the cap, repeat-relief and idempotency rules along the way.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{TimeZone as _, Utc};
use futures::StreamExt as _;
use relief_domain::ManualClock;
use relief_proto::v1 as pb;
use relief_tests::{
    ApplicationBuilder, Backend, CASE_CAP_FEN, Caller, DEFAULT_PAGE_SIZE, FIRST_STEP,
    MAX_PAGE_SIZE, Role, WANGCHENG, expect_code, expect_violations, request_id, resident_id_of,
    spawn_app, spawn_app_with_clock, state, valid_application,
};
use tonic::Code;

relief_tests::backend_tests! {
    draft_amend_submit_withdraw,
    a_draft_may_be_incomplete_but_not_submitted,
    a_draft_can_be_withdrawn,
    stale_expected_version_is_aborted,
    over_cap_needs_a_justification,
    repeat_relief_needs_a_justification,
    drafts_and_withdrawn_cases_are_not_repeat_relief,
    repeat_relief_waiting_period_follows_the_clock,
    list_filters,
    list_pages_newest_first,
    default_and_maximum_page_size,
    idempotent_create,
    idempotent_update_submit_withdraw,
}

async fn draft_amend_submit_withdraw(backend: Backend) {
    let app = spawn_app(backend).await;
    let unit = app.applicant(WANGCHENG, "gaotangling");
    let officer = app.staff(WANGCHENG, Role::CaseOfficer);

    let application = valid_application();
    let draft = unit.draft(application.clone()).await;
    assert_eq!(state(&draft), pb::CaseState::Draft);
    assert_eq!(draft.version, 1);
    assert_eq!(draft.rules_version, 1);
    assert_eq!(draft.district_id, WANGCHENG);
    assert_eq!(draft.applicant_unit_id, "gaotangling");
    assert_eq!(draft.current_step_id, "");
    assert!(!draft.over_cap && !draft.repeat_relief);
    assert!(draft.submit_time.is_none(), "a draft was never submitted");
    assert!(draft.create_time.is_some() && draft.update_time.is_some());
    assert!(!draft.created_by.is_empty());
    assert!(
        uuid::Uuid::try_parse(&draft.case_id).is_ok(),
        "case ids are UUIDs"
    );
    assert_eq!(draft.application.as_ref(), Some(&application));

    // Amend: the whole application is replaced.
    let amended_app = ApplicationBuilder::new()
        .name("李四")
        .amount_fen(3_000_000)
        .category("no_responsible_party")
        .build();
    let amended = unit
        .update_case_raw(pb::UpdateCaseRequest {
            request_id: request_id(),
            case_id: draft.case_id.clone(),
            application: Some(amended_app.clone()),
            expected_version: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(amended.case_id, draft.case_id);
    assert_eq!(state(&amended), pb::CaseState::Draft);
    assert_eq!(amended.version, 2);
    assert_eq!(amended.application.as_ref(), Some(&amended_app));
    assert_eq!(unit.get_case(&draft.case_id).await.unwrap(), amended);

    let submitted = unit
        .submit_case_raw(pb::SubmitCaseRequest {
            request_id: request_id(),
            case_id: draft.case_id.clone(),
            expected_version: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(state(&submitted), pb::CaseState::InReview);
    assert_eq!(submitted.current_step_id, FIRST_STEP);
    assert_eq!(submitted.version, 3);
    assert!(submitted.submit_time.is_some());
    assert!(!submitted.over_cap && !submitted.repeat_relief);
    assert_eq!(submitted.application.as_ref(), Some(&amended_app));

    // The bureau sees the case where it waits.
    let seen = officer.get_case(&draft.case_id).await.unwrap();
    assert_eq!(seen, submitted);

    // In review, the applicant unit no longer holds the case.
    expect_code(
        unit.update(&draft.case_id, valid_application()).await,
        Code::FailedPrecondition,
        "update in review",
    );
    expect_code(
        unit.submit(&draft.case_id).await,
        Code::FailedPrecondition,
        "submit in review",
    );

    let withdrawn = unit.withdraw(&draft.case_id).await.unwrap();
    assert_eq!(state(&withdrawn), pb::CaseState::Withdrawn);
    assert_eq!(withdrawn.current_step_id, "");
    assert_eq!(withdrawn.version, 4);

    // Withdrawal is final.
    expect_code(
        unit.withdraw(&draft.case_id).await,
        Code::FailedPrecondition,
        "withdraw twice",
    );
    expect_code(
        unit.update(&draft.case_id, valid_application()).await,
        Code::FailedPrecondition,
        "update withdrawn",
    );
    expect_code(
        unit.submit(&draft.case_id).await,
        Code::FailedPrecondition,
        "submit withdrawn",
    );
    assert_eq!(unit.get_case(&draft.case_id).await.unwrap(), withdrawn);
}

async fn a_draft_may_be_incomplete_but_not_submitted(backend: Backend) {
    let app = spawn_app(backend).await;
    let unit = app.applicant(WANGCHENG, "gaotangling");

    let draft = unit.draft(pb::Application::default()).await;
    assert_eq!(state(&draft), pb::CaseState::Draft);
    assert_eq!(draft.version, 1);

    expect_violations(
        unit.submit(&draft.case_id).await,
        &[
            "application.recipient.name",
            "application.recipient.resident_id_number",
            "application.recipient.phone",
            "application.recipient.address",
            "application.basic_situation",
            "application.reason",
            "application.category_code",
            "application.requested_amount_fen",
            "application.implementing_unit",
            "application.receiving_unit.name",
            "application.receiving_unit.bank_name",
            "application.receiving_unit.bank_account",
            "application.petition.petition_number",
            "application.seal.sealed",
            "application.fiscal_year",
        ],
        "submit an empty draft",
    );
    // The refused submission changed nothing.
    let after = unit.get_case(&draft.case_id).await.unwrap();
    assert_eq!(after, draft);

    // Completed, the same case goes through.
    unit.update(&draft.case_id, valid_application())
        .await
        .unwrap();
    let submitted = unit.submit(&draft.case_id).await.unwrap();
    assert_eq!(state(&submitted), pb::CaseState::InReview);
    assert_eq!(submitted.version, 3);
}

async fn a_draft_can_be_withdrawn(backend: Backend) {
    let app = spawn_app(backend).await;
    let unit = app.applicant(WANGCHENG, "gaotangling");
    let draft = unit.draft(valid_application()).await;
    let withdrawn = unit.withdraw(&draft.case_id).await.unwrap();
    assert_eq!(state(&withdrawn), pb::CaseState::Withdrawn);
    assert_eq!(withdrawn.version, 2);
    assert!(withdrawn.submit_time.is_none());
    expect_code(
        unit.withdraw(&draft.case_id).await,
        Code::FailedPrecondition,
        "withdraw a withdrawn draft",
    );
}

async fn stale_expected_version_is_aborted(backend: Backend) {
    let app = spawn_app(backend).await;
    let unit = app.applicant(WANGCHENG, "gaotangling");
    let draft = unit.draft(valid_application()).await;
    unit.update(&draft.case_id, valid_application())
        .await
        .unwrap(); // now version 2

    let stale_update = pb::UpdateCaseRequest {
        request_id: request_id(),
        case_id: draft.case_id.clone(),
        application: Some(valid_application()),
        expected_version: 1,
        ..Default::default()
    };
    expect_code(
        unit.update_case_raw(stale_update).await,
        Code::Aborted,
        "update with a stale version",
    );
    let stale_submit = pb::SubmitCaseRequest {
        request_id: request_id(),
        case_id: draft.case_id.clone(),
        expected_version: 1,
        ..Default::default()
    };
    expect_code(
        unit.submit_case_raw(stale_submit).await,
        Code::Aborted,
        "submit with a stale version",
    );
    let stale_withdraw = pb::WithdrawCaseRequest {
        request_id: request_id(),
        case_id: draft.case_id.clone(),
        reason: "不再需要".to_owned(),
        expected_version: 1,
        ..Default::default()
    };
    expect_code(
        unit.withdraw_case_raw(stale_withdraw).await,
        Code::Aborted,
        "withdraw with a stale version",
    );
    let current = unit.get_case(&draft.case_id).await.unwrap();
    assert_eq!(current.version, 2);
    assert_eq!(state(&current), pb::CaseState::Draft);

    // The current version passes.
    let updated = unit
        .update_case_raw(pb::UpdateCaseRequest {
            request_id: request_id(),
            case_id: draft.case_id.clone(),
            application: Some(valid_application()),
            expected_version: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(updated.version, 3);
}

async fn over_cap_needs_a_justification(backend: Backend) {
    let app = spawn_app(backend).await;
    let unit = app.applicant(WANGCHENG, "gaotangling");

    // Exactly at the cap is not over it.
    let at_cap = unit
        .submitted(ApplicationBuilder::new().amount_fen(CASE_CAP_FEN).build())
        .await;
    assert!(!at_cap.over_cap);

    let over = unit
        .draft(
            ApplicationBuilder::new()
                .amount_fen(CASE_CAP_FEN + 1)
                .build(),
        )
        .await;
    assert!(!over.over_cap, "a draft is not flagged yet");
    expect_violations(
        unit.submit(&over.case_id).await,
        &["application.over_cap_justification"],
        "submit over the cap without a justification",
    );

    let justified = ApplicationBuilder::new()
        .amount_fen(CASE_CAP_FEN + 1)
        .over_cap_justification("重大疾病，医疗费用远超一般救助额度")
        .build();
    unit.update(&over.case_id, justified).await.unwrap();
    let submitted = unit.submit(&over.case_id).await.unwrap();
    assert_eq!(state(&submitted), pb::CaseState::InReview);
    assert!(submitted.over_cap);
    assert!(!submitted.repeat_relief);
    assert_eq!(submitted.current_step_id, FIRST_STEP);
}

async fn repeat_relief_needs_a_justification(backend: Backend) {
    let app = spawn_app(backend).await;
    let unit = app.applicant(WANGCHENG, "gaotangling");
    let other_unit = app.applicant(WANGCHENG, "wushan");

    let first_app = valid_application();
    let id = resident_id_of(&first_app);
    let first = unit.submitted(first_app).await;
    assert!(!first.repeat_relief);

    // Another unit filing for the same person is still repeat relief: the district pays.
    let second = other_unit
        .draft(ApplicationBuilder::new().resident_id(&id).build())
        .await;
    expect_violations(
        other_unit.submit(&second.case_id).await,
        &["application.repeat_relief_justification"],
        "second case for the same recipient",
    );
    other_unit
        .update(
            &second.case_id,
            ApplicationBuilder::new()
                .resident_id(&id)
                .repeat_relief_justification("家中突发火灾，出现新的困难")
                .build(),
        )
        .await
        .unwrap();
    let second = other_unit.submit(&second.case_id).await.unwrap();
    assert_eq!(state(&second), pb::CaseState::InReview);
    assert!(second.repeat_relief);
    assert!(!second.over_cap);

    // The first case is not re-flagged by the second.
    assert!(!unit.get_case(&first.case_id).await.unwrap().repeat_relief);

    // A different recipient is unaffected.
    let unrelated = unit.submitted(valid_application()).await;
    assert!(!unrelated.repeat_relief);
}

async fn drafts_and_withdrawn_cases_are_not_repeat_relief(backend: Backend) {
    let app = spawn_app(backend).await;
    let unit = app.applicant(WANGCHENG, "gaotangling");

    // A draft for the same person is not relief given or pending.
    let person = valid_application();
    let id = resident_id_of(&person);
    unit.draft(person).await;
    let submitted = unit
        .submitted(ApplicationBuilder::new().resident_id(&id).build())
        .await;
    assert!(!submitted.repeat_relief);

    // A withdrawn case does not count either.
    let person = valid_application();
    let id = resident_id_of(&person);
    let first = unit.submitted(person).await;
    unit.withdraw(&first.case_id).await.unwrap();
    let again = unit
        .submitted(ApplicationBuilder::new().resident_id(&id).build())
        .await;
    assert!(!again.repeat_relief);
}

async fn repeat_relief_waiting_period_follows_the_clock(backend: Backend) {
    let clock = Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(2022, 1, 10, 9, 0, 0).unwrap(),
    ));
    let app = spawn_app_with_clock(backend, clock.clone()).await;
    let unit = app.applicant(WANGCHENG, "gaotangling");

    let person = valid_application();
    let id = resident_id_of(&person);
    unit.submitted(person).await;

    // 142 days later: inside the 365-day waiting period.
    clock.set(Utc.with_ymd_and_hms(2022, 6, 1, 9, 0, 0).unwrap());
    let second = unit
        .draft(ApplicationBuilder::new().resident_id(&id).build())
        .await;
    expect_violations(
        unit.submit(&second.case_id).await,
        &["application.repeat_relief_justification"],
        "inside the waiting period",
    );

    // 387 days after the first submission: outside it.
    clock.set(Utc.with_ymd_and_hms(2023, 2, 1, 9, 0, 0).unwrap());
    let submitted = unit.submit(&second.case_id).await.unwrap();
    assert_eq!(state(&submitted), pb::CaseState::InReview);
    assert!(!submitted.repeat_relief);
}

/// Case ids of a list, in order.
fn ids(cases: &[pb::Case]) -> Vec<String> {
    cases.iter().map(|c| c.case_id.clone()).collect()
}

/// Lists with `filter` as `caller` and expects exactly `expected`, in order.
async fn check_filter(
    caller: &Caller,
    filter: pb::ListCasesRequest,
    expected: &[&pb::Case],
    what: &str,
) {
    let got = caller.list_all(filter).await;
    let expected: Vec<String> = expected.iter().map(|c| c.case_id.clone()).collect();
    assert_eq!(ids(&got), expected, "filter {what}");
}

async fn list_filters(backend: Backend) {
    let app = spawn_app(backend).await;
    let a = app.applicant(WANGCHENG, "unit-a");
    let b = app.applicant(WANGCHENG, "unit-b");
    let officer = app.staff(WANGCHENG, Role::CaseOfficer);

    let li_si = a
        .draft(
            ApplicationBuilder::new()
                .name("李四")
                .category("other_hardship")
                .build(),
        )
        .await;
    let wang_wu = a
        .submitted(ApplicationBuilder::new().name("王五").build())
        .await;
    let li_xiao_si = a
        .draft(
            ApplicationBuilder::new()
                .name("李小四")
                .fiscal_year(2023)
                .build(),
        )
        .await;
    let zhao_liu = b
        .draft(
            ApplicationBuilder::new()
                .name("赵六")
                .category("other_hardship")
                .build(),
        )
        .await;
    let sun_qi = b
        .draft(ApplicationBuilder::new().name("孙七").build())
        .await;

    let all = vec![
        sun_qi.case_id.clone(),
        zhao_liu.case_id.clone(),
        li_xiao_si.case_id.clone(),
        wang_wu.case_id.clone(),
        li_si.case_id.clone(),
    ];
    assert_eq!(ids(&officer.list_all(Default::default()).await), all);
    check_filter(
        &officer,
        pb::ListCasesRequest {
            state: pb::CaseState::InReview as i32,
            ..Default::default()
        },
        &[&wang_wu],
        "state in review",
    )
    .await;
    check_filter(
        &officer,
        pb::ListCasesRequest {
            state: pb::CaseState::Draft as i32,
            ..Default::default()
        },
        &[&sun_qi, &zhao_liu, &li_xiao_si, &li_si],
        "state draft",
    )
    .await;
    check_filter(
        &officer,
        pb::ListCasesRequest {
            state: pb::CaseState::Withdrawn as i32,
            ..Default::default()
        },
        &[],
        "state withdrawn",
    )
    .await;
    check_filter(
        &officer,
        pb::ListCasesRequest {
            fiscal_year: 2023,
            ..Default::default()
        },
        &[&li_xiao_si],
        "fiscal year 2023",
    )
    .await;
    check_filter(
        &officer,
        pb::ListCasesRequest {
            fiscal_year: 2022,
            ..Default::default()
        },
        &[&sun_qi, &zhao_liu, &wang_wu, &li_si],
        "fiscal year 2022",
    )
    .await;
    check_filter(
        &officer,
        pb::ListCasesRequest {
            applicant_unit_id: "unit-b".to_owned(),
            ..Default::default()
        },
        &[&sun_qi, &zhao_liu],
        "applicant unit b",
    )
    .await;
    check_filter(
        &officer,
        pb::ListCasesRequest {
            category_code: "other_hardship".to_owned(),
            ..Default::default()
        },
        &[&zhao_liu, &li_si],
        "category other_hardship",
    )
    .await;
    check_filter(
        &officer,
        pb::ListCasesRequest {
            recipient_name_contains: "李".to_owned(),
            ..Default::default()
        },
        &[&li_xiao_si, &li_si],
        "name contains 李",
    )
    .await;
    check_filter(
        &officer,
        pb::ListCasesRequest {
            recipient_name_contains: "小四".to_owned(),
            ..Default::default()
        },
        &[&li_xiao_si],
        "name contains 小四",
    )
    .await;
    check_filter(
        &officer,
        pb::ListCasesRequest {
            recipient_name_contains: "%".to_owned(),
            ..Default::default()
        },
        &[],
        "name contains a LIKE wildcard",
    )
    .await;
    check_filter(
        &officer,
        pb::ListCasesRequest {
            state: pb::CaseState::Draft as i32,
            applicant_unit_id: "unit-a".to_owned(),
            fiscal_year: 2022,
            ..Default::default()
        },
        &[&li_si],
        "draft, unit a, 2022",
    )
    .await;

    // The applicant unit's own list applies the same filters to its own cases only.
    let mine = a
        .list_all(pb::ListCasesRequest {
            recipient_name_contains: "李".to_owned(),
            ..Default::default()
        })
        .await;
    assert_eq!(
        ids(&mine),
        vec![li_xiao_si.case_id.clone(), li_si.case_id.clone()]
    );
}

async fn list_pages_newest_first(backend: Backend) {
    let app = spawn_app(backend).await;
    let unit = app.applicant(WANGCHENG, "gaotangling");
    let officer = app.staff(WANGCHENG, Role::CaseOfficer);

    let mut created = Vec::new();
    for _ in 0..5 {
        created.push(unit.draft(valid_application()).await.case_id);
    }
    created.reverse();

    let mut pages = Vec::new();
    let mut token = String::new();
    loop {
        let page = officer
            .list_cases(pb::ListCasesRequest {
                page_size: 2,
                page_token: token,
                ..Default::default()
            })
            .await
            .unwrap();
        pages.push(ids(&page.cases));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
        assert!(pages.len() < 10, "paging does not end");
    }
    assert_eq!(
        pages.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![2, 2, 1],
        "pages of 2"
    );
    assert_eq!(pages.concat(), created, "newest first, each case once");

    // A page that happens to hold exactly the rest may still carry a token (the server
    // cannot know without looking further); then the next page is empty and final.
    let whole = officer
        .list_cases(pb::ListCasesRequest {
            page_size: 5,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(&whole.cases), created);
    if !whole.next_page_token.is_empty() {
        let rest = officer
            .list_cases(pb::ListCasesRequest {
                page_size: 5,
                page_token: whole.next_page_token,
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(rest.cases.is_empty());
        assert!(rest.next_page_token.is_empty());
    }

    // A case created while paging does not disturb the pages after the cursor.
    let first = officer
        .list_cases(pb::ListCasesRequest {
            page_size: 3,
            ..Default::default()
        })
        .await
        .unwrap();
    let newest = unit.draft(valid_application()).await.case_id;
    let second = officer
        .list_cases(pb::ListCasesRequest {
            page_size: 3,
            page_token: first.next_page_token,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut seen = ids(&first.cases);
    seen.extend(ids(&second.cases));
    assert_eq!(seen, created);
    assert!(!seen.contains(&newest));
}

/// Creates `n` drafts, 16 at a time.
async fn create_many(unit: &Caller, n: usize) -> HashSet<String> {
    futures::stream::iter(0..n)
        .map(|_| {
            let unit = unit.clone();
            async move { unit.draft(valid_application()).await.case_id }
        })
        .buffer_unordered(16)
        .collect()
        .await
}

async fn default_and_maximum_page_size(backend: Backend) {
    let app = spawn_app(backend).await;
    let unit = app.applicant(WANGCHENG, "gaotangling");
    let officer = app.staff(WANGCHENG, Role::CaseOfficer);
    let created = create_many(&unit, MAX_PAGE_SIZE + 1).await;
    assert_eq!(created.len(), MAX_PAGE_SIZE + 1);

    let default_page = officer.list_cases(Default::default()).await.unwrap();
    assert_eq!(default_page.cases.len(), DEFAULT_PAGE_SIZE);
    assert!(!default_page.next_page_token.is_empty());

    let capped = officer
        .list_cases(pb::ListCasesRequest {
            page_size: 100_000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        capped.cases.len(),
        MAX_PAGE_SIZE,
        "page size is coerced to 500"
    );
    assert!(!capped.next_page_token.is_empty());
    let rest = officer
        .list_cases(pb::ListCasesRequest {
            page_size: 100_000,
            page_token: capped.next_page_token.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(rest.cases.len(), 1);
    assert!(rest.next_page_token.is_empty(), "last page has no token");

    let mut listed: HashSet<String> = ids(&capped.cases).into_iter().collect();
    listed.extend(ids(&rest.cases));
    assert_eq!(listed, created);

    expect_violations(
        officer
            .list_cases(pb::ListCasesRequest {
                page_size: -1,
                ..Default::default()
            })
            .await,
        &["page_size"],
        "negative page size",
    );
}

async fn idempotent_create(backend: Backend) {
    let app = spawn_app(backend).await;
    let unit = app.applicant(WANGCHENG, "gaotangling");
    let officer = app.staff(WANGCHENG, Role::CaseOfficer);

    let rid = request_id();
    let application = valid_application();
    let first = unit
        .create_case_with(&rid, application.clone())
        .await
        .unwrap();
    let events_after_first = app.events(WANGCHENG, None).await.len();
    let again = unit
        .create_case_with(&rid, application.clone())
        .await
        .unwrap();
    assert_eq!(
        again, first,
        "a retried create returns the original response"
    );
    assert_eq!(app.events(WANGCHENG, None).await.len(), events_after_first);

    let different = ApplicationBuilder::new().name("另一个人").build();
    expect_code(
        unit.create_case_with(&rid, different).await,
        Code::AlreadyExists,
        "same request id, different request",
    );
    assert_eq!(app.events(WANGCHENG, None).await.len(), events_after_first);

    let listed = officer.list_all(Default::default()).await;
    assert_eq!(ids(&listed), vec![first.case_id.clone()]);

    // A fresh request id with the same application is a new case.
    let second = unit.create_case(application).await.unwrap();
    assert_ne!(second.case_id, first.case_id);
    assert_eq!(officer.list_all(Default::default()).await.len(), 2);
}

async fn idempotent_update_submit_withdraw(backend: Backend) {
    let app = spawn_app(backend).await;
    let unit = app.applicant(WANGCHENG, "gaotangling");
    let draft = unit.draft(valid_application()).await;
    let case_id = draft.case_id.clone();

    let update = pb::UpdateCaseRequest {
        request_id: request_id(),
        case_id: case_id.clone(),
        application: Some(valid_application()),
        expected_version: 1,
        ..Default::default()
    };
    let updated = unit.update_case_raw(update.clone()).await.unwrap();
    assert_eq!(updated.version, 2);
    // The retry would be stale if it were executed again; it is answered from the record.
    assert_eq!(unit.update_case_raw(update.clone()).await.unwrap(), updated);
    expect_code(
        unit.update_case_raw(pb::UpdateCaseRequest {
            application: Some(valid_application()),
            ..update
        })
        .await,
        Code::AlreadyExists,
        "update: same request id, different request",
    );

    let submit = pb::SubmitCaseRequest {
        request_id: request_id(),
        case_id: case_id.clone(),
        expected_version: 0,
        ..Default::default()
    };
    let submitted = unit.submit_case_raw(submit.clone()).await.unwrap();
    assert_eq!(
        unit.submit_case_raw(submit.clone()).await.unwrap(),
        submitted
    );
    expect_code(
        unit.submit_case_raw(pb::SubmitCaseRequest {
            expected_version: 2,
            ..submit
        })
        .await,
        Code::AlreadyExists,
        "submit: same request id, different request",
    );

    let withdraw = pb::WithdrawCaseRequest {
        request_id: request_id(),
        case_id: case_id.clone(),
        reason: "诉求已解决".to_owned(),
        expected_version: 0,
        ..Default::default()
    };
    let withdrawn = unit.withdraw_case_raw(withdraw.clone()).await.unwrap();
    assert_eq!(
        unit.withdraw_case_raw(withdraw.clone()).await.unwrap(),
        withdrawn
    );
    expect_code(
        unit.withdraw_case_raw(pb::WithdrawCaseRequest {
            reason: "另一个理由".to_owned(),
            ..withdraw
        })
        .await,
        Code::AlreadyExists,
        "withdraw: same request id, different request",
    );

    assert_eq!(
        app.actions(WANGCHENG, Some(&case_id)).await,
        vec![
            "case.created",
            "case.updated",
            "case.submitted",
            "case.withdrawn"
        ],
        "replays and refused reuses write nothing"
    );
    assert_eq!(unit.get_case(&case_id).await.unwrap().version, 4);
}
