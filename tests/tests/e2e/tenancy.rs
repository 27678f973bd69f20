//! Tenancy and need-to-know: a district never sees or touches another district's cases, an
//! applicant unit only its own unit's, and personal data is masked for roles that only
//! audit or administer. Each refusal must look like absence (NOT_FOUND), never leak.

use relief_proto::v1 as pb;
use relief_tests::{
    ApplicationBuilder, BANK_ACCOUNT, Backend, Caller, FURONG, Role, WANGCHENG, expect_code,
    masked_account, masked_resident_id, next_resident_id, spawn_app, state, valid_application,
};
use tonic::Code;

relief_tests::backend_tests! {
    another_districts_cases_are_not_found,
    applicant_units_see_only_their_own_cases,
    bureau_roles_see_the_whole_district,
    only_applicant_units_mutate_cases,
    personal_data_is_masked_by_role,
}

/// The bureau roles that read every case of their district.
const BUREAU_ROLES: [Role; 8] = [
    Role::CaseOfficer,
    Role::DeputyLeader,
    Role::BureauHead,
    Role::BureauOffice,
    Role::DistrictLeader,
    Role::Finance,
    Role::Auditor,
    Role::DistrictAdmin,
];

/// Tries every case method of `caller` on `case_id` and expects NOT_FOUND from each.
async fn assert_invisible(caller: &Caller, case_id: &str, who: &str) {
    expect_code(
        caller.get_case(case_id).await,
        Code::NotFound,
        &format!("{who}: get"),
    );
    let listed = caller.list_all(Default::default()).await;
    assert!(
        listed.iter().all(|c| c.case_id != case_id),
        "{who}: the case is listed"
    );
    expect_code(
        caller.update(case_id, valid_application()).await,
        Code::NotFound,
        &format!("{who}: update"),
    );
    expect_code(
        caller.submit(case_id).await,
        Code::NotFound,
        &format!("{who}: submit"),
    );
    expect_code(
        caller.withdraw(case_id).await,
        Code::NotFound,
        &format!("{who}: withdraw"),
    );
}

/// Mutations only: the caller may read but never change the case.
async fn assert_cannot_mutate(caller: &Caller, case_id: &str, code: Code, who: &str) {
    expect_code(
        caller.create_case(valid_application()).await,
        code,
        &format!("{who}: create"),
    );
    expect_code(
        caller.update(case_id, valid_application()).await,
        code,
        &format!("{who}: update"),
    );
    expect_code(
        caller.submit(case_id).await,
        code,
        &format!("{who}: submit"),
    );
    expect_code(
        caller.withdraw(case_id).await,
        code,
        &format!("{who}: withdraw"),
    );
}

async fn another_districts_cases_are_not_found(backend: Backend) {
    let app = spawn_app(backend).await;
    let wangcheng_unit = app.applicant(WANGCHENG, "gaotangling");
    let draft = wangcheng_unit.draft(valid_application()).await;
    let in_review = wangcheng_unit.submitted(valid_application()).await;
    let events_before = app.events(WANGCHENG, None).await.len();

    // A Furong applicant unit that happens to share the unit id may act on cases, so every
    // method must answer NOT_FOUND. Furong bureau roles may only read: reads answer
    // NOT_FOUND, and their mutations are refused either way without saying more.
    let furong_unit = app.applicant(FURONG, "gaotangling");
    for case in [&draft, &in_review] {
        assert_invisible(&furong_unit, &case.case_id, "furong applicant").await;
        for role in BUREAU_ROLES {
            let staff = app.staff(FURONG, role);
            let who = format!("furong {role}");
            expect_code(
                staff.get_case(&case.case_id).await,
                Code::NotFound,
                &format!("{who}: get"),
            );
            let listed = staff.list_all(Default::default()).await;
            assert!(listed.is_empty(), "{who}: lists another district's cases");
            for (method, result) in [
                (
                    "update",
                    staff.update(&case.case_id, valid_application()).await,
                ),
                ("submit", staff.submit(&case.case_id).await),
                ("withdraw", staff.withdraw(&case.case_id).await),
            ] {
                let status = result.expect_err("refused");
                assert!(
                    matches!(status.code(), Code::NotFound | Code::PermissionDenied),
                    "{who}: {method}: {status:?}"
                );
            }
        }
    }

    // Nothing changed in Wangcheng, and nothing was logged anywhere.
    assert_eq!(
        wangcheng_unit.get_case(&draft.case_id).await.unwrap(),
        draft
    );
    assert_eq!(
        wangcheng_unit.get_case(&in_review.case_id).await.unwrap(),
        in_review
    );
    assert_eq!(app.events(WANGCHENG, None).await.len(), events_before);
    let furong_case_events = app
        .actions(FURONG, None)
        .await
        .into_iter()
        .filter(|a| a.starts_with("case."))
        .count();
    assert_eq!(furong_case_events, 0);

    // Furong's own cases stay Furong's: the Wangcheng officer cannot see them either.
    let furong_case = app
        .applicant(FURONG, "furong-street")
        .draft(valid_application())
        .await;
    assert_eq!(furong_case.district_id, FURONG);
    let wangcheng_officer = app.staff(WANGCHENG, Role::CaseOfficer);
    expect_code(
        wangcheng_officer.get_case(&furong_case.case_id).await,
        Code::NotFound,
        "wangcheng officer reads a furong case",
    );
    let listed = wangcheng_officer.list_all(Default::default()).await;
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|c| c.district_id == WANGCHENG));
}

async fn applicant_units_see_only_their_own_cases(backend: Backend) {
    let app = spawn_app(backend).await;
    let a = app.applicant(WANGCHENG, "unit-a");
    let b = app.applicant(WANGCHENG, "unit-b");
    let a_draft = a.draft(valid_application()).await;
    let a_submitted = a.submitted(valid_application()).await;
    let b_draft = b.draft(valid_application()).await;

    for case in [&a_draft, &a_submitted] {
        assert_invisible(&b, &case.case_id, "unit b on unit a's case").await;
    }
    assert_invisible(&a, &b_draft.case_id, "unit a on unit b's case").await;

    let b_list = b.list_all(Default::default()).await;
    assert_eq!(
        b_list.iter().map(|c| c.case_id.clone()).collect::<Vec<_>>(),
        vec![b_draft.case_id.clone()]
    );
    let a_list = a.list_all(Default::default()).await;
    assert_eq!(a_list.len(), 2);
    assert!(a_list.iter().all(|c| c.applicant_unit_id == "unit-a"));

    // Naming another unit in the filter does not widen the view.
    match b
        .list_cases(pb::ListCasesRequest {
            applicant_unit_id: "unit-a".to_owned(),
            ..Default::default()
        })
        .await
    {
        Ok(page) => assert!(page.cases.is_empty(), "unit b listed unit a's cases"),
        Err(status) => assert_eq!(status.code(), Code::PermissionDenied, "{status:?}"),
    }

    // Nothing of unit a's changed.
    assert_eq!(a.get_case(&a_draft.case_id).await.unwrap(), a_draft);
    assert_eq!(a.get_case(&a_submitted.case_id).await.unwrap(), a_submitted);
}

async fn bureau_roles_see_the_whole_district(backend: Backend) {
    let app = spawn_app(backend).await;
    let a = app.applicant(WANGCHENG, "unit-a");
    let b = app.applicant(WANGCHENG, "unit-b");
    let a_case = a.submitted(valid_application()).await;
    let b_case = b.draft(valid_application()).await;
    for role in BUREAU_ROLES {
        let staff = app.staff(WANGCHENG, role);
        for case in [&a_case, &b_case] {
            let seen = staff
                .get_case(&case.case_id)
                .await
                .unwrap_or_else(|s| panic!("{role} reads a case: {s:?}"));
            assert_eq!(seen.case_id, case.case_id);
            assert_eq!(seen.version, case.version);
            assert_eq!(state(&seen), state(case));
        }
        let listed = staff.list_all(Default::default()).await;
        assert_eq!(
            listed.iter().map(|c| c.case_id.clone()).collect::<Vec<_>>(),
            vec![b_case.case_id.clone(), a_case.case_id.clone()],
            "{role} lists the district"
        );
    }
}

async fn only_applicant_units_mutate_cases(backend: Backend) {
    let app = spawn_app(backend).await;
    let unit = app.applicant(WANGCHENG, "gaotangling");
    let draft = unit.draft(valid_application()).await;
    let events_before = app.events(WANGCHENG, None).await.len();

    for role in BUREAU_ROLES.into_iter().chain([Role::SyncClient]) {
        let staff = app.staff(WANGCHENG, role);
        assert_cannot_mutate(
            &staff,
            &draft.case_id,
            Code::PermissionDenied,
            role.as_str(),
        )
        .await;
    }
    for role in [Role::CityAdmin, Role::Auditor, Role::SyncClient] {
        let city = app.city(role);
        assert_cannot_mutate(
            &city,
            &draft.case_id,
            Code::PermissionDenied,
            &format!("city {role}"),
        )
        .await;
    }
    assert_eq!(unit.get_case(&draft.case_id).await.unwrap(), draft);
    assert_eq!(app.events(WANGCHENG, None).await.len(), events_before);
}

/// A case whose personal data is known, filed by `unit`.
async fn case_with_known_data(unit: &Caller) -> (pb::Case, String) {
    let id = next_resident_id();
    let case = unit
        .submitted(ApplicationBuilder::new().resident_id(&id).build())
        .await;
    (case, id)
}

fn personal_data(case: &pb::Case) -> (String, String) {
    let app = case.application.as_ref().expect("case has an application");
    (
        app.recipient.as_ref().unwrap().resident_id_number.clone(),
        app.receiving_unit.as_ref().unwrap().bank_account.clone(),
    )
}

async fn check_view(caller: &Caller, case_id: &str, expected: &(String, String)) {
    let got = caller.get_case(case_id).await.unwrap();
    assert_eq!(
        &personal_data(&got),
        expected,
        "{}: GetCase",
        caller.subject
    );
    assert_eq!(
        got.application
            .as_ref()
            .unwrap()
            .recipient
            .as_ref()
            .unwrap()
            .name,
        "张三",
        "the name is not masked"
    );
    let listed = caller.list_all(Default::default()).await;
    let in_list = listed
        .iter()
        .find(|c| c.case_id == case_id)
        .expect("listed");
    assert_eq!(
        &personal_data(in_list),
        expected,
        "{}: ListCases",
        caller.subject
    );
}

async fn personal_data_is_masked_by_role(backend: Backend) {
    let app = spawn_app(backend).await;
    let unit = app.applicant(WANGCHENG, "gaotangling");
    let (case, id) = case_with_known_data(&unit).await;
    assert_eq!(masked_resident_id(&id).len(), 18);
    assert!(masked_resident_id(&id).starts_with("430122********"));

    let full = (id.clone(), BANK_ACCOUNT.to_owned());
    let masked = (masked_resident_id(&id), masked_account(BANK_ACCOUNT));
    assert_eq!(masked.1, "************1234");
    assert_eq!(
        personal_data(&case),
        full,
        "the submitting unit sees its data"
    );

    // The whole table, every field and role, is walked by the privacy module; here the
    // two identifiers in both reads.
    check_view(&unit, &case.case_id, &full).await;
    check_view(
        &app.staff(WANGCHENG, Role::CaseOfficer),
        &case.case_id,
        &full,
    )
    .await;
    for role in [
        Role::DeputyLeader,
        Role::BureauHead,
        Role::BureauOffice,
        Role::DistrictLeader,
        Role::Auditor,
    ] {
        check_view(&app.staff(WANGCHENG, role), &case.case_id, &masked).await;
    }
    let finance = (masked.0.clone(), full.1.clone());
    check_view(
        &app.staff(WANGCHENG, Role::Finance),
        &case.case_id,
        &finance,
    )
    .await;
    let admin = (masked.0.clone(), String::new());
    check_view(
        &app.staff(WANGCHENG, Role::DistrictAdmin),
        &case.case_id,
        &admin,
    )
    .await;
}
