//! Districts and their fund rules: who may create a district or change its rules, how rules
//! versions accumulate while filed cases keep theirs, and who may see which district.

use relief_proto::v1 as pb;
use relief_tests::{
    ApplicationBuilder, Backend, Caller, FURONG, Role, TestApp, WANGCHENG, expect_code,
    expect_violations, request_id, spawn_app, valid_application, wangcheng_rules,
};
use tonic::Code;

relief_tests::backend_tests! {
    city_admin_creates_a_district,
    only_the_city_admin_creates_districts,
    invalid_districts_are_refused_with_fields,
    rules_updates_make_versions,
    only_the_district_admin_updates_rules,
    district_visibility,
    list_districts_by_scope,
}

/// 岳麓区, created by tests (the configured districts are 430102 and 430112).
const YUELU: &str = "430104";

fn create_request(district_id: &str, rules: pb::FundRules) -> pb::CreateDistrictRequest {
    pb::CreateDistrictRequest {
        request_id: request_id(),
        district_id: district_id.to_owned(),
        name: "岳麓区".to_owned(),
        rules: Some(rules),
        ..Default::default()
    }
}

fn update_request(
    district_id: &str,
    rules: pb::FundRules,
    expected: i64,
) -> pb::UpdateFundRulesRequest {
    pb::UpdateFundRulesRequest {
        request_id: request_id(),
        district_id: district_id.to_owned(),
        rules: Some(rules),
        expected_rules_version: expected,
        ..Default::default()
    }
}

/// Wangcheng's rules with a higher cap and a 2023 budget.
fn rules_2023() -> pb::FundRules {
    let mut rules = wangcheng_rules();
    rules.case_cap_fen = 6_000_000;
    rules.budgets.push(pb::FiscalYearBudget {
        fiscal_year: 2023,
        allocated_fen: 150_000_000,
        target_case_count: 50,
        ..Default::default()
    });
    rules
}

async fn city_admin_creates_a_district(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.city_admin();
    let request = create_request(YUELU, wangcheng_rules());
    let district = admin.create_district(request.clone()).await.unwrap();
    assert_eq!(district.district_id, YUELU);
    assert_eq!(district.name, "岳麓区");
    assert_eq!(district.rules_version, 1);
    assert_eq!(district.rules.as_ref(), Some(&wangcheng_rules()));
    assert!(district.create_time.is_some());

    assert_eq!(admin.get_district(YUELU).await.unwrap(), district);
    // Its own people see it, and can file cases in it at once.
    let yuelu_admin = app.staff(YUELU, Role::DistrictAdmin);
    assert_eq!(yuelu_admin.get_district(YUELU).await.unwrap(), district);
    let case = app
        .applicant(YUELU, "yuelu-street")
        .draft(valid_application())
        .await;
    assert_eq!(case.district_id, YUELU);
    assert_eq!(case.rules_version, 1);

    // A retry is answered from the record; the id cannot be created twice.
    assert_eq!(admin.create_district(request).await.unwrap(), district);
    for id in [YUELU, WANGCHENG] {
        expect_code(
            admin
                .create_district(create_request(id, wangcheng_rules()))
                .await,
            Code::AlreadyExists,
            &format!("create {id} again"),
        );
    }
    let created: Vec<String> = app
        .actions(YUELU, None)
        .await
        .into_iter()
        .filter(|a| a == "district.created")
        .collect();
    assert_eq!(created.len(), 1, "one district.created event");
}

async fn only_the_city_admin_creates_districts(backend: Backend) {
    let app = spawn_app(backend).await;
    let callers: Vec<(String, Caller)> = vec![
        ("city auditor".to_owned(), app.city(Role::Auditor)),
        ("city sync client".to_owned(), app.city(Role::SyncClient)),
        (
            "wangcheng district admin".to_owned(),
            app.staff(WANGCHENG, Role::DistrictAdmin),
        ),
        (
            "wangcheng case officer".to_owned(),
            app.staff(WANGCHENG, Role::CaseOfficer),
        ),
        (
            "wangcheng applicant".to_owned(),
            app.applicant(WANGCHENG, "gaotangling"),
        ),
    ];
    for (who, caller) in callers {
        expect_code(
            caller
                .create_district(create_request(YUELU, wangcheng_rules()))
                .await,
            Code::PermissionDenied,
            &who,
        );
    }
    expect_code(
        app.city_admin().get_district(YUELU).await,
        Code::NotFound,
        "nothing was created",
    );
}

type RulesEdit = fn(&mut pb::FundRules);

async fn invalid_districts_are_refused_with_fields(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.city_admin();
    let rows: Vec<(&str, RulesEdit, Vec<&str>)> = vec![
        (
            "an applicant unit may not approve",
            |r| r.approval_chain.as_mut().unwrap().steps[0].role = pb::Role::ApplicantUnit as i32,
            vec!["rules.approval_chain.steps[0].role"],
        ),
        (
            "finance may not approve (third step)",
            |r| r.approval_chain.as_mut().unwrap().steps[2].role = pb::Role::Finance as i32,
            vec!["rules.approval_chain.steps[2].role"],
        ),
        (
            "zero cap",
            |r| r.case_cap_fen = 0,
            vec!["rules.case_cap_fen"],
        ),
        (
            "negative cap",
            |r| r.case_cap_fen = -1,
            vec!["rules.case_cap_fen"],
        ),
        (
            "no categories",
            |r| r.categories.clear(),
            vec!["rules.categories"],
        ),
        (
            "a budget year twice",
            |r| {
                let again = r.budgets[0];
                r.budgets.push(again);
            },
            vec!["rules.budgets[1].fiscal_year"],
        ),
        (
            "follow-ups not increasing",
            |r| r.follow_up_after_days = vec![180, 90],
            vec!["rules.follow_up_after_days[1]"],
        ),
        (
            "a category code that is not a code",
            |r| r.categories[0].code = "not a code".to_owned(),
            vec!["rules.categories[0].code"],
        ),
        (
            "a duplicate step id",
            |r| {
                let chain = r.approval_chain.as_mut().unwrap();
                chain.steps[1].step_id = chain.steps[0].step_id.clone();
            },
            vec!["rules.approval_chain.steps[1].step_id"],
        ),
        (
            "no steps",
            |r| r.approval_chain.as_mut().unwrap().steps.clear(),
            vec!["rules.approval_chain.steps"],
        ),
        (
            "several problems at once",
            |r| {
                r.case_cap_fen = 0;
                r.categories.clear();
                r.approval_chain.as_mut().unwrap().steps[0].role = pb::Role::Auditor as i32;
            },
            vec![
                "rules.case_cap_fen",
                "rules.categories",
                "rules.approval_chain.steps[0].role",
            ],
        ),
    ];
    let wangcheng_admin = app.staff(WANGCHENG, Role::DistrictAdmin);
    for (what, edit, fields) in rows {
        let mut rules = wangcheng_rules();
        edit(&mut rules);
        expect_violations(
            admin
                .create_district(create_request(YUELU, rules.clone()))
                .await,
            &fields,
            &format!("create: {what}"),
        );
        expect_violations(
            wangcheng_admin
                .update_fund_rules(update_request(WANGCHENG, rules, 0))
                .await,
            &fields,
            &format!("update: {what}"),
        );
    }

    let mut bad_id = create_request("4301", wangcheng_rules());
    expect_violations(
        admin.create_district(bad_id.clone()).await,
        &["district_id"],
        "a 4-digit district id",
    );
    bad_id.district_id = "43010a".to_owned();
    expect_violations(
        admin.create_district(bad_id).await,
        &["district_id"],
        "a district id with a letter",
    );
    let mut no_name = create_request(YUELU, wangcheng_rules());
    no_name.name = String::new();
    expect_violations(admin.create_district(no_name).await, &["name"], "no name");
    let mut no_request_id = create_request(YUELU, wangcheng_rules());
    no_request_id.request_id = String::new();
    expect_violations(
        admin.create_district(no_request_id).await,
        &["request_id"],
        "no request id",
    );

    expect_code(
        admin.get_district(YUELU).await,
        Code::NotFound,
        "nothing was created",
    );
    assert_eq!(
        wangcheng_admin
            .get_district(WANGCHENG)
            .await
            .unwrap()
            .rules_version,
        1,
        "nothing was updated"
    );
}

async fn rules_updates_make_versions(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.staff(WANGCHENG, Role::DistrictAdmin);
    let unit = app.applicant(WANGCHENG, "gaotangling");
    let before = admin.get_district(WANGCHENG).await.unwrap();
    assert_eq!(before.rules_version, 1);
    assert_eq!(before.rules.as_ref(), Some(&wangcheng_rules()));

    let old_case = unit.draft(valid_application()).await;
    assert_eq!(old_case.rules_version, 1);

    let updated = admin
        .update_fund_rules(update_request(WANGCHENG, rules_2023(), 1))
        .await
        .unwrap();
    assert_eq!(updated.rules_version, 2);
    assert_eq!(updated.rules.as_ref(), Some(&rules_2023()));
    assert_eq!(admin.get_district(WANGCHENG).await.unwrap(), updated);

    // The history keeps every version.
    let v1 = admin.get_fund_rules_version(WANGCHENG, 1).await.unwrap();
    assert_eq!(v1.rules_version, 1);
    assert_eq!(v1.rules.as_ref(), Some(&wangcheng_rules()));
    let v2 = admin.get_fund_rules_version(WANGCHENG, 2).await.unwrap();
    assert_eq!(v2.rules_version, 2);
    assert_eq!(v2.rules.as_ref(), Some(&rules_2023()));
    assert!(!v2.created_by.is_empty());
    assert!(v2.create_time.is_some());
    expect_code(
        admin.get_fund_rules_version(WANGCHENG, 3).await,
        Code::NotFound,
        "a version that does not exist yet",
    );
    expect_code(
        admin.get_fund_rules_version(WANGCHENG, 0).await,
        Code::InvalidArgument,
        "version 0",
    );

    // A stale expectation is refused; none at all is not checked.
    expect_code(
        admin
            .update_fund_rules(update_request(WANGCHENG, wangcheng_rules(), 1))
            .await,
        Code::Aborted,
        "stale expected_rules_version",
    );
    let third = admin
        .update_fund_rules(update_request(WANGCHENG, wangcheng_rules(), 0))
        .await
        .unwrap();
    assert_eq!(third.rules_version, 3);

    // Cases keep the version they were filed under; new ones take the current one, and
    // the 2023 budget is gone again with version 3.
    assert_eq!(
        unit.get_case(&old_case.case_id)
            .await
            .unwrap()
            .rules_version,
        1
    );
    let new_case = unit.draft(valid_application()).await;
    assert_eq!(new_case.rules_version, 3);
    let y2023 = unit
        .draft(ApplicationBuilder::new().fiscal_year(2023).build())
        .await;
    expect_violations(
        unit.submit(&y2023.case_id).await,
        &["application.fiscal_year"],
        "2023 has no budget under version 3",
    );

    // Furong's rules are untouched.
    let furong = app.staff(FURONG, Role::DistrictAdmin);
    assert_eq!(furong.get_district(FURONG).await.unwrap().rules_version, 1);

    let updates = app
        .actions(WANGCHENG, None)
        .await
        .into_iter()
        .filter(|a| a == "district.rules_updated")
        .count();
    assert_eq!(updates, 2);
}

async fn only_the_district_admin_updates_rules(backend: Backend) {
    let app = spawn_app(backend).await;
    let rows: Vec<(String, Caller, Code)> = vec![
        (
            "furong district admin".to_owned(),
            app.staff(FURONG, Role::DistrictAdmin),
            Code::NotFound,
        ),
        (
            "wangcheng case officer".to_owned(),
            app.staff(WANGCHENG, Role::CaseOfficer),
            Code::PermissionDenied,
        ),
        (
            "wangcheng bureau head".to_owned(),
            app.staff(WANGCHENG, Role::BureauHead),
            Code::PermissionDenied,
        ),
        (
            "wangcheng auditor".to_owned(),
            app.staff(WANGCHENG, Role::Auditor),
            Code::PermissionDenied,
        ),
        (
            "wangcheng applicant".to_owned(),
            app.applicant(WANGCHENG, "gaotangling"),
            Code::PermissionDenied,
        ),
        (
            "city admin".to_owned(),
            app.city_admin(),
            Code::PermissionDenied,
        ),
    ];
    for (who, caller, code) in rows {
        expect_code(
            caller
                .update_fund_rules(update_request(WANGCHENG, rules_2023(), 0))
                .await,
            code,
            &who,
        );
    }
    let admin = app.staff(WANGCHENG, Role::DistrictAdmin);
    let district = admin.get_district(WANGCHENG).await.unwrap();
    assert_eq!(district.rules_version, 1);
    assert_eq!(district.rules.as_ref(), Some(&wangcheng_rules()));
    // The control: the right person may.
    let updated = admin
        .update_fund_rules(update_request(WANGCHENG, rules_2023(), 1))
        .await
        .unwrap();
    assert_eq!(updated.rules_version, 2);
}

/// Every role a Wangcheng token may carry.
fn wangcheng_people(app: &TestApp) -> Vec<Caller> {
    let mut people = vec![app.applicant(WANGCHENG, "gaotangling")];
    for role in [
        Role::CaseOfficer,
        Role::DeputyLeader,
        Role::BureauHead,
        Role::BureauOffice,
        Role::DistrictLeader,
        Role::Finance,
        Role::Auditor,
        Role::DistrictAdmin,
        Role::SyncClient,
    ] {
        people.push(app.staff(WANGCHENG, role));
    }
    people
}

async fn district_visibility(backend: Backend) {
    let app = spawn_app(backend).await;
    for caller in wangcheng_people(&app) {
        let who = caller.subject.clone();
        let own = caller
            .get_district(WANGCHENG)
            .await
            .unwrap_or_else(|s| panic!("{who}: own district: {s:?}"));
        assert_eq!(own.district_id, WANGCHENG);
        assert_eq!(own.name, "望城区");
        caller
            .get_fund_rules_version(WANGCHENG, 1)
            .await
            .unwrap_or_else(|s| panic!("{who}: own rules: {s:?}"));
        expect_code(
            caller.get_district(FURONG).await,
            Code::NotFound,
            &format!("{who}: another district"),
        );
        expect_code(
            caller.get_fund_rules_version(FURONG, 1).await,
            Code::NotFound,
            &format!("{who}: another district's rules"),
        );
    }
    let city = app.city_admin();
    for id in [WANGCHENG, FURONG] {
        let d = city
            .get_district(id)
            .await
            .unwrap_or_else(|s| panic!("city admin: {id}: {s:?}"));
        assert_eq!(d.district_id, id);
        city.get_fund_rules_version(id, 1)
            .await
            .unwrap_or_else(|s| panic!("city admin: {id} rules: {s:?}"));
    }
    expect_code(
        city.get_district("430999").await,
        Code::NotFound,
        "city admin: unknown district",
    );
    // City-scoped auditors and sync clients reach the district they name, only.
    for role in [Role::Auditor, Role::SyncClient] {
        let city = app.city(role);
        expect_code(
            city.get_district(WANGCHENG).await,
            Code::PermissionDenied,
            &format!("city {role} naming no district"),
        );
        let named = city.naming(WANGCHENG);
        assert_eq!(
            named.get_district(WANGCHENG).await.unwrap().district_id,
            WANGCHENG
        );
        named.get_fund_rules_version(WANGCHENG, 1).await.unwrap();
        expect_code(
            named.get_district(FURONG).await,
            Code::NotFound,
            &format!("city {role}: a district it does not name"),
        );
        expect_code(
            named.get_fund_rules_version(FURONG, 1).await,
            Code::NotFound,
            &format!("city {role}: rules of a district it does not name"),
        );
    }
    let admin = app.city_admin();
    expect_violations(
        admin.get_district("abc").await,
        &["district_id"],
        "malformed district id",
    );
    assert_eq!(admin.get_district(FURONG).await.unwrap().name, "芙蓉区");
}

fn district_ids(resp: &pb::ListDistrictsResponse) -> Vec<String> {
    resp.districts
        .iter()
        .map(|d| d.district_id.clone())
        .collect()
}

async fn list_districts_by_scope(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.city_admin();
    let all = admin.list_districts(Default::default()).await.unwrap();
    assert_eq!(district_ids(&all), vec![FURONG, WANGCHENG], "ordered by id");
    assert!(all.next_page_token.is_empty());

    admin
        .create_district(create_request(YUELU, wangcheng_rules()))
        .await
        .unwrap();
    let all = admin.list_districts(Default::default()).await.unwrap();
    assert_eq!(district_ids(&all), vec![FURONG, YUELU, WANGCHENG]);

    // Paging through the city.
    let mut seen = Vec::new();
    let mut token = String::new();
    for _ in 0..10 {
        let page = admin
            .list_districts(pb::ListDistrictsRequest {
                page_size: 2,
                page_token: token,
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(page.districts.len() <= 2);
        seen.extend(district_ids(&page));
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    assert!(token.is_empty(), "paging ends");
    assert_eq!(seen, vec![FURONG, YUELU, WANGCHENG]);

    for caller in wangcheng_people(&app) {
        let own = caller.list_districts(Default::default()).await.unwrap();
        assert_eq!(district_ids(&own), vec![WANGCHENG], "{}", caller.subject);
    }
    let furong = app.staff(FURONG, Role::CaseOfficer);
    let own = furong.list_districts(Default::default()).await.unwrap();
    assert_eq!(district_ids(&own), vec![FURONG]);

    expect_code(
        admin
            .list_districts(pb::ListDistrictsRequest {
                page_size: -1,
                page_token: String::new(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "negative page size",
    );
    expect_code(
        admin
            .list_districts(pb::ListDistrictsRequest {
                page_size: 0,
                page_token: "garbage".to_owned(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "malformed page token",
    );
}
