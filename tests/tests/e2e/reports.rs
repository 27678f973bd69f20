//! Reports over gRPC: indicators checked against hand-computed values on a small fixed year
//! (with a rejection, a return, an over-cap case, a re-petition and unspent budget), an empty
//! year, narrative and grade, CSV exports, and the city comparison.

use relief_proto::v1 as pb;
use relief_proto::v1::follow_up_service_client::FollowUpServiceClient;
use relief_proto::v1::report_service_client::ReportServiceClient;
use relief_tests::{
    ApplicationBuilder, Backend, Role, TestApp, backend_tests, expect_code, request_id, spawn_app,
    valid_application, wangcheng_rules, with_bearer,
};
use tonic::Code;

use crate::approvals::{channel, one_step_district, person};

async fn reports(app: &TestApp) -> ReportServiceClient<tonic::transport::Channel> {
    ReportServiceClient::new(channel(app).await)
}

pub(crate) async fn indicators(app: &TestApp, district: &str, year: i32) -> pb::Indicators {
    let token = app.token(district, &[Role::Auditor], None, "auditor");
    reports(app)
        .await
        .get_indicators(with_bearer(
            pb::GetIndicatorsRequest {
                fiscal_year: year,
                ..Default::default()
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner()
        .indicators
        .unwrap()
}

/// A small year in a one-step district with a 200,000-yuan budget and a target of 5:
/// paid 20,000 and 30,000 and 60,000 (over the cap, justified); one approved but unpaid
/// 10,000; one rejected; one returned; one draft. The 30,000 recipient petitions again.
async fn small_year(app: &TestApp, district: &str) -> (Vec<String>, String) {
    one_step_district(app, district, 20_000_000, &[]).await;
    let admin = app.staff(district, Role::DistrictAdmin);
    let mut rules = admin.get_district(district).await.unwrap().rules.unwrap();
    rules.budgets[0].target_case_count = 5;
    admin
        .update_fund_rules(pb::UpdateFundRulesRequest {
            request_id: request_id(),
            district_id: district.to_owned(),
            rules: Some(rules),
            ..Default::default()
        })
        .await
        .unwrap();
    let applicant = app.applicant(district, "street-a");
    let other_unit = app.applicant(district, "street-b");
    let leader = person(app, district, &[Role::DistrictLeader], "leader").await;
    let fin_token = app.token(district, &[Role::Finance], None, "finance");
    let mut pay = relief_proto::v1::disbursement_service_client::DisbursementServiceClient::new(
        channel(app).await,
    );
    let mut paid_ids = Vec::new();
    for (who, amount, category, justification) in [
        (&applicant, 2_000_000, "reasonable_without_legal_basis", ""),
        (&applicant, 3_000_000, "no_responsible_party", ""),
        (&other_unit, 6_000_000, "other_hardship", "重大疾病"),
    ] {
        let app_ = ApplicationBuilder::new()
            .amount_fen(amount)
            .category(category)
            .over_cap_justification(justification)
            .build();
        let id = who.submitted(app_).await.case_id;
        leader.approve(&id, "approve").await;
        let p = pay
            .create_payment(with_bearer(
                pb::CreatePaymentRequest {
                    request_id: request_id(),
                    case_id: id.clone(),
                    voucher_number: "v".to_owned(),
                    ..Default::default()
                },
                &fin_token,
            ))
            .await
            .unwrap()
            .into_inner()
            .payment
            .unwrap();
        pay.confirm_payment(with_bearer(
            pb::ConfirmPaymentRequest {
                request_id: request_id(),
                payment_id: p.payment_id,
                bank_reference: format!("BR-{id}"),
                paid_date: "2022-08-15".to_owned(),
                ..Default::default()
            },
            &fin_token,
        ))
        .await
        .unwrap();
        paid_ids.push(id);
    }
    let unpaid = applicant
        .submitted(ApplicationBuilder::new().amount_fen(1_000_000).build())
        .await
        .case_id;
    leader.approve(&unpaid, "approve").await;
    let rejected = applicant.submitted(valid_application()).await.case_id;
    leader
        .decide(
            &rejected,
            "approve",
            pb::Decision::Reject,
            0,
            "",
            "不符合救助条件",
        )
        .await
        .unwrap();
    let returned = applicant.submitted(valid_application()).await.case_id;
    leader
        .decide(
            &returned,
            "approve",
            pb::Decision::Return,
            0,
            "",
            "缺少低保证明",
        )
        .await
        .unwrap();
    applicant.draft(valid_application()).await;
    // The 30,000 recipient petitions again at the first follow-up.
    let officer = app.token(district, &[Role::CaseOfficer], None, "officer");
    let mut follow = FollowUpServiceClient::new(channel(app).await);
    let fus = follow
        .list_case_follow_ups(with_bearer(
            pb::ListCaseFollowUpsRequest {
                case_id: paid_ids[1].clone(),
                ..Default::default()
            },
            &officer,
        ))
        .await
        .unwrap()
        .into_inner()
        .follow_ups;
    follow
        .record_follow_up(with_bearer(
            pb::RecordFollowUpRequest {
                request_id: request_id(),
                follow_up_id: fus[0].follow_up_id.clone(),
                done_date: fus[0].due_date.clone(),
                method: "电话".to_owned(),
                petitioned_again: true,
                ..Default::default()
            },
            &officer,
        ))
        .await
        .unwrap();
    (paid_ids, unpaid)
}

async fn indicators_match_hand_computed_values(backend: Backend) {
    let app = spawn_app(backend).await;
    let district = "430105";
    let (paid_ids, _) = small_year(&app, district).await;
    let i = indicators(&app, district, 2022).await;
    assert_eq!(
        (i.allocated_fen, i.reserved_fen, i.paid_fen, i.unused_fen),
        (20_000_000, 1_000_000, 11_000_000, 8_000_000)
    );
    assert_eq!(i.execution_rate_bp, 5_500);
    let count = |s: pb::CaseState| {
        i.cases_by_state
            .iter()
            .find(|c| c.state == s as i32)
            .map_or(0, |c| c.count)
    };
    assert_eq!(
        [
            count(pb::CaseState::Paid),
            count(pb::CaseState::Approved),
            count(pb::CaseState::Rejected),
            count(pb::CaseState::Returned),
            count(pb::CaseState::Draft)
        ],
        [3, 1, 1, 1, 1]
    );
    assert_eq!(
        (
            i.target_case_count,
            i.achieved_case_count,
            i.approved_case_count
        ),
        (5, 3, 4)
    );
    // Approved or paid: 20,000 + 30,000 + 60,000 + 10,000 = 120,000; mean 30,000; median 25,000.
    assert_eq!(
        (
            i.total_amount_fen,
            i.mean_amount_fen,
            i.median_amount_fen,
            i.largest_amount_fen
        ),
        (12_000_000, 3_000_000, 2_500_000, 6_000_000)
    );
    assert_eq!(i.over_cap.len(), 1);
    assert_eq!(
        (
            i.over_cap[0].case_id.as_str(),
            i.over_cap[0].justification.as_str()
        ),
        (paid_ids[2].as_str(), "重大疾病")
    );
    let cat = |code: &str| {
        i.by_category
            .iter()
            .find(|g| g.key == code)
            .map(|g| (g.cases, g.amount_fen))
    };
    assert_eq!(cat("reasonable_without_legal_basis"), Some((2, 3_000_000)));
    assert_eq!(cat("no_responsible_party"), Some((1, 3_000_000)));
    assert_eq!(cat("other_hardship"), Some((1, 6_000_000)));
    let unit = |u: &str| {
        i.by_applicant_unit
            .iter()
            .find(|g| g.key == u)
            .map(|g| (g.cases, g.amount_fen))
    };
    assert_eq!(
        (unit("street-a"), unit("street-b")),
        (Some((3, 6_000_000)), Some((1, 6_000_000)))
    );
    assert_eq!(i.paid_in_year_bp, 10_000);
    assert_eq!((i.re_petitions, i.re_petition_rate_bp), (1, 3_333));
    assert_eq!((i.returns, i.rejections), (1, 1));
    assert_eq!(
        (i.return_reasons.clone(), i.rejection_reasons.clone()),
        (
            vec!["缺少低保证明".to_owned()],
            vec!["不符合救助条件".to_owned()]
        )
    );
    assert_eq!(i.paid_by_month_fen[7], 11_000_000);
    assert_eq!(i.step_times.len(), 1);
    assert_eq!(i.step_times[0].count, 6, "six decisions at the one step");
    assert_eq!(i.submission_to_payment.as_ref().unwrap().count, 3);

    // The grade follows the rubric and the narrative's gaps are marked.
    let head = app.token(district, &[Role::BureauHead], None, "head");
    let mut r = reports(&app).await;
    r.update_report_narrative(with_bearer(
        pb::UpdateReportNarrativeRequest {
            request_id: request_id(),
            fiscal_year: 2022,
            section: "experience".to_owned(),
            text: "一是领导重视。".to_owned(),
            ..Default::default()
        },
        &head,
    ))
    .await
    .unwrap();
    let bad = pb::UpdateReportNarrativeRequest {
        request_id: request_id(),
        fiscal_year: 2022,
        section: "gossip".to_owned(),
        text: "x".to_owned(),
        ..Default::default()
    };
    expect_code(
        r.update_report_narrative(with_bearer(bad, &head)).await,
        Code::InvalidArgument,
        "an unknown section",
    );
    let officer = app.token(district, &[Role::CaseOfficer], None, "officer");
    let by_officer = pb::UpdateReportNarrativeRequest {
        request_id: request_id(),
        fiscal_year: 2022,
        section: "problems".to_owned(),
        text: "x".to_owned(),
        ..Default::default()
    };
    expect_code(
        r.update_report_narrative(with_bearer(by_officer, &officer))
            .await,
        Code::PermissionDenied,
        "a case officer writing the report",
    );
    let report = r
        .render_self_evaluation(with_bearer(
            pb::RenderSelfEvaluationRequest {
                fiscal_year: 2022,
                ..Default::default()
            },
            &head,
        ))
        .await
        .unwrap()
        .into_inner();
    // decision 20; process 10*55% + 10*100% = 15.5; output 15*60% + 15*100% = 24; effect:
    // three follow-ups were due by 31 December (90 days after 15 August), one was done, so
    // 30 * (2*(1-1/3) + 1/3) / 3 = 16.7: 76.2 → 中.
    let points: Vec<i32> = report.score_lines.iter().map(|l| l.points_tenths).collect();
    assert_eq!(points, [200, 155, 240, 167]);
    assert_eq!((report.score_tenths, report.grade.as_str()), (762, "中"));
    assert!(report.markdown.contains("一是领导重视。"));
    assert!(report.markdown.contains("【待填写：存在的问题及原因分析】"));
    assert!(report.markdown.contains("重大疾病"));
    assert_eq!(report.html.matches("<svg").count(), 2);

    // CSV exports, with personal data masked for an auditor.
    let auditor = app.token(district, &[Role::Auditor], None, "auditor");
    let cases_csv = r
        .export_cases(with_bearer(
            pb::ExportCasesRequest {
                fiscal_year: 2022,
                ..Default::default()
            },
            &auditor,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cases_csv.rows, 7);
    assert_eq!(cases_csv.csv.lines().count(), 8);
    assert!(cases_csv.csv.contains("********"));
    let payments_csv = r
        .export_payments(with_bearer(
            pb::ExportPaymentsRequest {
                fiscal_year: 2022,
                ..Default::default()
            },
            &head,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(payments_csv.rows, 3);
    assert!(
        payments_csv
            .csv
            .lines()
            .skip(1)
            .all(|l| l.contains(",paid,") && l.contains("2022-08-15"))
    );
}

async fn an_empty_year_reports_zeroes(backend: Backend) {
    let app = spawn_app(backend).await;
    let i = indicators(&app, relief_tests::WANGCHENG, 2021).await;
    assert_eq!(
        (
            i.allocated_fen,
            i.paid_fen,
            i.achieved_case_count,
            i.execution_rate_bp
        ),
        (0, 0, 0, 0)
    );
    assert!(i.cases_by_state.is_empty() && i.by_category.is_empty() && i.step_times.is_empty());
    let head = app.token(relief_tests::WANGCHENG, &[Role::BureauHead], None, "head");
    let report = reports(&app)
        .await
        .render_self_evaluation(with_bearer(
            pb::RenderSelfEvaluationRequest {
                fiscal_year: 2021,
                ..Default::default()
            },
            &head,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(report.grade, "差");
    assert!(
        report.markdown.contains(
            "全年受理救助申请0件，其中已拨付0件、审批通过待拨付0件、审核中0件、退回补正0件、不予救助0件、撤回0件。每一案件均经经办科室审查、分管领导复审、主要负责人审核、局党组研究、分管区领导审批，逐级留痕。"
        ),
        "{}",
        report.markdown
    );
    // A year with budget and nothing spent: all of it unused.
    let i = indicators(&app, relief_tests::WANGCHENG, 2022).await;
    assert_eq!(
        (i.allocated_fen, i.unused_fen, i.execution_rate_bp),
        (128_000_000, 128_000_000, 0)
    );
}

async fn the_city_compares_its_districts(backend: Backend) {
    let app = spawn_app(backend).await;
    small_year(&app, "430105").await;
    let city = app.token("city", &[Role::CityAdmin], None, "city-admin");
    let mut r = reports(&app).await;
    let cmp = r
        .get_city_comparison(with_bearer(
            pb::GetCityComparisonRequest {
                fiscal_year: 2022,
                ..Default::default()
            },
            &city,
        ))
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<&str> = cmp
        .districts
        .iter()
        .map(|d| d.district_id.as_str())
        .collect();
    assert_eq!(ids, ["430102", "430105", "430112"]);
    let small = &cmp.districts[1];
    assert_eq!(
        (
            small.allocated_fen,
            small.paid_fen,
            small.paid_cases,
            small.target_case_count,
            small.grade.as_str()
        ),
        (20_000_000, 11_000_000, 3, 5, "中")
    );
    assert_eq!(small.re_petition_rate_bp, 3_333);
    let wc = &cmp.districts[2];
    assert_eq!(
        (wc.allocated_fen, wc.paid_fen, wc.target_case_count),
        (128_000_000, 0, 48)
    );
    let total = cmp.city_total.unwrap();
    assert_eq!(
        (total.allocated_fen, total.paid_fen, total.paid_cases),
        (128_000_000 * 2 + 20_000_000, 11_000_000, 3)
    );
    assert!(cmp.missing_district_ids.is_empty());
    let district_token = app.token("430105", &[Role::Auditor], None, "auditor");
    expect_code(
        r.get_city_comparison(with_bearer(
            pb::GetCityComparisonRequest {
                fiscal_year: 2022,
                ..Default::default()
            },
            &district_token,
        ))
        .await,
        Code::PermissionDenied,
        "a district-scoped token",
    );
}

/// A district whose bureau head reviews only cases above 20,000 yuan: the report's process
/// sentence names its own chain with that condition, and counts as received applications
/// only the cases that were submitted, not the drafts.
async fn the_report_names_the_districts_chain_and_counts_submitted_cases(backend: Backend) {
    let app = spawn_app(backend).await;
    let district = "430104";
    let step = |id: &str, name: &str, role: pb::Role, min_amount_fen: i64| pb::ApprovalStep {
        step_id: id.to_owned(),
        name: name.to_owned(),
        role: role as i32,
        deadline_days: 5,
        condition: Some(pb::StepCondition {
            min_amount_fen,
            only_over_cap: false,
        }),
        batched: false,
    };
    let mut rules = wangcheng_rules();
    rules.approval_chain = Some(pb::ApprovalChain {
        steps: vec![
            step("officer_review", "经办科室审查", pb::Role::CaseOfficer, 0),
            step("head_review", "局长审核", pb::Role::BureauHead, 2_000_000),
            step(
                "leader_approval",
                "分管区领导审批",
                pb::Role::DistrictLeader,
                0,
            ),
        ],
    });
    app.city_admin()
        .create_district(pb::CreateDistrictRequest {
            request_id: request_id(),
            district_id: district.to_owned(),
            name: "岳麓区".to_owned(),
            rules: Some(rules),
            ..Default::default()
        })
        .await
        .unwrap();

    let applicant = app.applicant(district, "street-a");
    // Received: one in review, one submitted and then withdrawn.
    let small = applicant
        .submitted(ApplicationBuilder::new().amount_fen(1_000_000).build())
        .await;
    assert_eq!(small.current_step_id, "officer_review");
    let withdrawn = applicant.submitted(valid_application()).await;
    applicant.withdraw(&withdrawn.case_id).await.unwrap();
    // Not received: a draft, and a draft withdrawn before it was ever submitted.
    applicant.draft(valid_application()).await;
    let dropped = applicant.draft(valid_application()).await;
    applicant.withdraw(&dropped.case_id).await.unwrap();

    let i = indicators(&app, district, 2022).await;
    let count = |s: pb::CaseState| {
        i.cases_by_state
            .iter()
            .find(|c| c.state == s as i32)
            .map_or(0, |c| c.count)
    };
    // The indicators still count every case by state, drafts included.
    assert_eq!(
        [
            count(pb::CaseState::Draft),
            count(pb::CaseState::InReview),
            count(pb::CaseState::Withdrawn)
        ],
        [1, 1, 2]
    );

    let head = app.token(district, &[Role::BureauHead], None, "head");
    let report = reports(&app)
        .await
        .render_self_evaluation(with_bearer(
            pb::RenderSelfEvaluationRequest {
                fiscal_year: 2022,
                ..Default::default()
            },
            &head,
        ))
        .await
        .unwrap()
        .into_inner();
    let md = &report.markdown;
    assert!(
        md.contains(
            "全年受理救助申请2件，其中已拨付0件、审批通过待拨付0件、审核中1件、退回补正0件、不予救助0件、撤回1件。"
        ),
        "{md}"
    );
    assert!(
        md.contains("每一案件均经经办科室审查、局长审核（2万元以上）、分管区领导审批，逐级留痕。"),
        "{md}"
    );
    assert!(
        !md.contains("主要负责人审核") && !md.contains("局党组"),
        "{md}"
    );
    assert!(report.html.contains("局长审核（2万元以上）"));
}

backend_tests!(
    indicators_match_hand_computed_values,
    an_empty_year_reports_zeroes,
    the_city_compares_its_districts,
    the_report_names_the_districts_chain_and_counts_submitted_cases
);
