//! The event log is the bureau's accountability record (谁承办、谁审核、谁负责): exactly one
//! event per change, naming who acted in which role, none for refused or replayed calls, and
//! a hash chain that still verifies afterwards.

use relief_proto::v1 as pb;
use relief_tests::{
    ApplicationBuilder, Backend, FURONG, Role, TestApp, WANGCHENG, expect_code, request_id,
    spawn_app, valid_application, wangcheng_rules,
};
use tonic::Code;

relief_tests::backend_tests! {
    one_event_per_case_change,
    refused_calls_write_no_events,
    replays_write_no_events,
    district_changes_are_logged,
}

/// Everything logged in `district` since `from` (an earlier length of its log).
async fn actions_since(app: &TestApp, district: &str, from: usize) -> Vec<String> {
    app.actions(district, None).await[from..].to_vec()
}

async fn one_event_per_case_change(backend: Backend) {
    let app = spawn_app(backend).await;
    let unit = app.applicant(WANGCHENG, "gaotangling");
    let start = app.events(WANGCHENG, None).await.len();

    let rids: Vec<String> = (0..4).map(|_| request_id()).collect();
    let case = unit
        .create_case_with(&rids[0], valid_application())
        .await
        .unwrap();
    let id = case.case_id.clone();
    assert_eq!(app.actions(WANGCHENG, Some(&id)).await, ["case.created"]);

    unit.update_case_raw(pb::UpdateCaseRequest {
        request_id: rids[1].clone(),
        case_id: id.clone(),
        application: Some(valid_application()),
        expected_version: 1,
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(
        app.actions(WANGCHENG, Some(&id)).await,
        ["case.created", "case.updated"]
    );

    unit.submit_case_raw(pb::SubmitCaseRequest {
        request_id: rids[2].clone(),
        case_id: id.clone(),
        expected_version: 2,
        ..Default::default()
    })
    .await
    .unwrap();
    unit.withdraw_case_raw(pb::WithdrawCaseRequest {
        request_id: rids[3].clone(),
        case_id: id.clone(),
        reason: "诉求已解决".to_owned(),
        expected_version: 3,
        ..Default::default()
    })
    .await
    .unwrap();

    let events = app.events(WANGCHENG, Some(&id)).await;
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "case.created",
            "case.updated",
            "case.submitted",
            "case.withdrawn"
        ]
    );
    for (event, rid) in events.iter().zip(&rids) {
        assert_eq!(event.actor_subject, unit.subject, "{}", event.action);
        assert_eq!(event.actor_role, "applicant_unit", "{}", event.action);
        assert_eq!(event.resource_id, id, "{}", event.action);
        assert_eq!(
            event.request_id.as_deref(),
            Some(rid.as_str()),
            "{}",
            event.action
        );
    }
    assert!(
        events.windows(2).all(|w| w[0].seq < w[1].seq),
        "events are in sequence"
    );
    // Nothing else was logged, here or in the other district.
    assert_eq!(actions_since(&app, WANGCHENG, start).await.len(), 4);
    assert!(
        app.actions(FURONG, None)
            .await
            .iter()
            .all(|a| !a.starts_with("case.")),
        "no case events in Furong"
    );
    app.assert_chain_intact(WANGCHENG).await;
    app.assert_chain_intact(FURONG).await;
}

async fn refused_calls_write_no_events(backend: Backend) {
    let app = spawn_app(backend).await;
    let unit = app.applicant(WANGCHENG, "gaotangling");
    let other_unit = app.applicant(WANGCHENG, "wushan");
    let officer = app.staff(WANGCHENG, Role::CaseOfficer);
    let furong_unit = app.applicant(FURONG, "gaotangling");
    let admin = app.staff(WANGCHENG, Role::DistrictAdmin);

    let draft = unit.draft(valid_application()).await;
    let incomplete = unit.draft(pb::Application::default()).await;
    let withdrawn = unit.draft(valid_application()).await;
    unit.withdraw(&withdrawn.case_id).await.unwrap();
    let wangcheng_start = app.events(WANGCHENG, None).await.len();
    let furong_start = app.events(FURONG, None).await.len();

    expect_code(
        officer.create_case(valid_application()).await,
        Code::PermissionDenied,
        "officer creates",
    );
    expect_code(
        app.city_admin().create_case(valid_application()).await,
        Code::PermissionDenied,
        "city admin creates",
    );
    expect_code(
        unit.create_case(
            ApplicationBuilder::new()
                .amount_fen(-1)
                .resident_id("430122198013011234")
                .build(),
        )
        .await,
        Code::InvalidArgument,
        "invalid draft",
    );
    expect_code(
        unit.update_case_raw(pb::UpdateCaseRequest {
            request_id: request_id(),
            case_id: draft.case_id.clone(),
            application: Some(valid_application()),
            expected_version: 7,
            ..Default::default()
        })
        .await,
        Code::Aborted,
        "stale update",
    );
    expect_code(
        unit.submit(&incomplete.case_id).await,
        Code::InvalidArgument,
        "incomplete submission",
    );
    expect_code(
        other_unit.submit(&draft.case_id).await,
        Code::NotFound,
        "another unit submits",
    );
    expect_code(
        furong_unit.withdraw(&draft.case_id).await,
        Code::NotFound,
        "another district withdraws",
    );
    expect_code(
        unit.withdraw(&withdrawn.case_id).await,
        Code::FailedPrecondition,
        "withdraw twice",
    );
    expect_code(
        unit.update(&withdrawn.case_id, valid_application()).await,
        Code::FailedPrecondition,
        "update a withdrawn case",
    );
    expect_code(
        unit.create_case_with("", valid_application()).await,
        Code::InvalidArgument,
        "no request id",
    );
    expect_code(
        officer
            .update_fund_rules(pb::UpdateFundRulesRequest {
                request_id: request_id(),
                district_id: WANGCHENG.to_owned(),
                rules: Some(wangcheng_rules()),
                expected_rules_version: 0,
                ..Default::default()
            })
            .await,
        Code::PermissionDenied,
        "officer updates rules",
    );
    expect_code(
        admin
            .update_fund_rules(pb::UpdateFundRulesRequest {
                request_id: request_id(),
                district_id: WANGCHENG.to_owned(),
                rules: Some(wangcheng_rules()),
                expected_rules_version: 5,
                ..Default::default()
            })
            .await,
        Code::Aborted,
        "stale rules update",
    );
    expect_code(
        admin
            .update_fund_rules(pb::UpdateFundRulesRequest {
                request_id: request_id(),
                district_id: WANGCHENG.to_owned(),
                rules: Some(pb::FundRules {
                    case_cap_fen: 0,
                    ..wangcheng_rules()
                }),
                expected_rules_version: 0,
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "invalid rules",
    );
    expect_code(
        app.city_admin()
            .create_district(pb::CreateDistrictRequest {
                request_id: request_id(),
                district_id: WANGCHENG.to_owned(),
                name: "望城区".to_owned(),
                rules: Some(wangcheng_rules()),
                ..Default::default()
            })
            .await,
        Code::AlreadyExists,
        "create an existing district",
    );

    assert_eq!(
        actions_since(&app, WANGCHENG, wangcheng_start).await,
        Vec::<String>::new(),
        "refused calls wrote to Wangcheng's log"
    );
    assert_eq!(
        actions_since(&app, FURONG, furong_start).await,
        Vec::<String>::new(),
        "refused calls wrote to Furong's log"
    );

    // The control: one allowed change writes exactly one event.
    unit.update(&draft.case_id, valid_application())
        .await
        .unwrap();
    assert_eq!(
        actions_since(&app, WANGCHENG, wangcheng_start).await,
        ["case.updated"]
    );
    app.assert_chain_intact(WANGCHENG).await;
}

async fn replays_write_no_events(backend: Backend) {
    let app = spawn_app(backend).await;
    let unit = app.applicant(WANGCHENG, "gaotangling");
    let admin = app.staff(WANGCHENG, Role::DistrictAdmin);
    let city = app.city_admin();
    let start = app.events(WANGCHENG, None).await.len();

    let create = pb::CreateCaseRequest {
        request_id: request_id(),
        application: Some(valid_application()),
        ..Default::default()
    };
    let first = unit.create_case_raw(create.clone()).await.unwrap();
    for _ in 0..3 {
        assert_eq!(unit.create_case_raw(create.clone()).await.unwrap(), first);
    }
    let submit = pb::SubmitCaseRequest {
        request_id: request_id(),
        case_id: first.case_id.clone(),
        expected_version: 1,
        ..Default::default()
    };
    let submitted = unit.submit_case_raw(submit.clone()).await.unwrap();
    assert_eq!(unit.submit_case_raw(submit).await.unwrap(), submitted);

    let rules = pb::UpdateFundRulesRequest {
        request_id: request_id(),
        district_id: WANGCHENG.to_owned(),
        rules: Some(wangcheng_rules()),
        expected_rules_version: 1,
        ..Default::default()
    };
    let updated = admin.update_fund_rules(rules.clone()).await.unwrap();
    assert_eq!(updated.rules_version, 2);
    assert_eq!(admin.update_fund_rules(rules).await.unwrap(), updated);

    assert_eq!(
        actions_since(&app, WANGCHENG, start).await,
        ["case.created", "case.submitted", "district.rules_updated"]
    );

    let create_district = pb::CreateDistrictRequest {
        request_id: request_id(),
        district_id: "430104".to_owned(),
        name: "岳麓区".to_owned(),
        rules: Some(wangcheng_rules()),
        ..Default::default()
    };
    let district = city.create_district(create_district.clone()).await.unwrap();
    assert_eq!(
        city.create_district(create_district).await.unwrap(),
        district
    );
    assert_eq!(
        app.actions("430104", None).await,
        ["district.created", "ledger.entry_added"]
    );

    app.assert_chain_intact(WANGCHENG).await;
    app.assert_chain_intact("430104").await;
}

async fn district_changes_are_logged(backend: Backend) {
    let app = spawn_app(backend).await;
    let city = app.city_admin();
    city.create_district(pb::CreateDistrictRequest {
        request_id: request_id(),
        district_id: "430104".to_owned(),
        name: "岳麓区".to_owned(),
        rules: Some(wangcheng_rules()),
        ..Default::default()
    })
    .await
    .unwrap();
    let events = app.events("430104", None).await;
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].action, "district.created");
    // The year's budget is a ledger entry, with an event of its own.
    assert_eq!(events[1].action, "ledger.entry_added");
    assert_eq!(events[0].actor_subject, city.subject);
    assert_eq!(events[0].actor_role, "city_admin");

    let admin = app.staff("430104", Role::DistrictAdmin);
    admin
        .update_fund_rules(pb::UpdateFundRulesRequest {
            request_id: request_id(),
            district_id: "430104".to_owned(),
            rules: Some(pb::FundRules {
                case_cap_fen: 3_000_000,
                ..wangcheng_rules()
            }),
            expected_rules_version: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    let events = app.events("430104", None).await;
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "district.created",
            "ledger.entry_added",
            "district.rules_updated"
        ]
    );
    assert_eq!(events[2].actor_subject, admin.subject);
    assert_eq!(events[2].actor_role, "district_admin");

    app.assert_chain_intact("430104").await;
    app.assert_chain_intact(WANGCHENG).await;
    app.assert_chain_intact(FURONG).await;
}
