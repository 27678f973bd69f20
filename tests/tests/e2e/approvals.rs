//! The approval chain over gRPC: the seed's five-step chain walked by five people, a custom
//! chain, every refusal, returns, party-group meetings, delegation, deadlines, the audit
//! trail, and budget reservation under concurrent final approvals.

use std::sync::Arc;

use chrono::{Duration, TimeZone, Utc};
use relief_domain::{Clock, ManualClock};
use relief_proto::v1 as pb;
use relief_proto::v1::approval_service_client::ApprovalServiceClient;
use relief_proto::v1::audit_service_client::AuditServiceClient;
use relief_proto::v1::ledger_service_client::LedgerServiceClient;
use relief_tests::{
    ApplicationBuilder, Backend, FURONG, Role, TestApp, WANGCHENG, backend_tests, expect_code,
    expect_violations, request_id, spawn_app, spawn_app_with_clock, valid_application,
    violation_fields, wangcheng_rules, with_bearer,
};
use sea_orm::ConnectionTrait as _;
use tonic::transport::Channel;
use tonic::{Code, Status};

pub(crate) const OFFICER: &str = "case_officer_review";
pub(crate) const DEPUTY: &str = "deputy_leader_review";
const HEAD: &str = "bureau_head_review";
const PARTY: &str = "party_group_decision";
const LEADER: &str = "district_leader_approval";

/// One person of the bureau, with their own token.
#[derive(Clone)]
pub(crate) struct Person {
    pub(crate) token: String,
    pub(crate) subject: String,
    pub(crate) approvals: ApprovalServiceClient<Channel>,
}

pub(crate) async fn channel(app: &TestApp) -> Channel {
    Channel::from_shared(format!("http://{}", app.addr))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

pub(crate) async fn person(app: &TestApp, district: &str, roles: &[Role], subject: &str) -> Person {
    Person {
        token: app.token(district, roles, None, subject),
        subject: subject.to_owned(),
        approvals: ApprovalServiceClient::new(channel(app).await),
    }
}

impl Person {
    pub(crate) async fn decide_raw(
        &self,
        req: pb::DecideCaseRequest,
    ) -> Result<pb::DecideCaseResponse, Status> {
        self.approvals
            .clone()
            .decide_case(with_bearer(req, &self.token))
            .await
            .map(|r| r.into_inner())
    }

    pub(crate) async fn decide(
        &self,
        case_id: &str,
        step: &str,
        decision: pb::Decision,
        amount_fen: i64,
        return_to: &str,
        opinion: &str,
    ) -> Result<pb::DecideCaseResponse, Status> {
        self.decide_raw(pb::DecideCaseRequest {
            request_id: request_id(),
            case_id: case_id.to_owned(),
            step_id: step.to_owned(),
            decision: decision as i32,
            approved_amount_fen: amount_fen,
            return_to_step_id: return_to.to_owned(),
            opinion: opinion.to_owned(),
            ..Default::default()
        })
        .await
    }

    pub(crate) async fn approve(&self, case_id: &str, step: &str) -> pb::Case {
        self.decide(case_id, step, pb::Decision::Approve, 0, "", "同意")
            .await
            .unwrap_or_else(|s| panic!("{} approving {step}: {s:?}", self.subject))
            .case
            .unwrap()
    }

    async fn open_meeting(&self) -> pb::Meeting {
        let req = pb::OpenMeetingRequest {
            request_id: request_id(),
            meeting_date: "2022-06-15".to_owned(),
            attendees: vec!["局长".to_owned(), "副局长".to_owned()],
            minutes_reference: "党组会纪要〔2022〕6号".to_owned(),
            ..Default::default()
        };
        self.approvals
            .clone()
            .open_meeting(with_bearer(req, &self.token))
            .await
            .unwrap()
            .into_inner()
            .meeting
            .unwrap()
    }

    async fn add_cases(&self, meeting: &str, cases: &[&str]) -> Result<pb::Meeting, Status> {
        let req = pb::AddMeetingCasesRequest {
            request_id: request_id(),
            meeting_id: meeting.to_owned(),
            case_ids: cases.iter().map(|c| (*c).to_owned()).collect(),
            ..Default::default()
        };
        Ok(self
            .approvals
            .clone()
            .add_meeting_cases(with_bearer(req, &self.token))
            .await?
            .into_inner()
            .meeting
            .unwrap())
    }

    async fn record(
        &self,
        meeting: &str,
        case: &str,
        decision: pb::Decision,
        amount_fen: i64,
        opinion: &str,
    ) -> Result<pb::Meeting, Status> {
        let req = pb::RecordMeetingDecisionRequest {
            request_id: request_id(),
            meeting_id: meeting.to_owned(),
            case_id: case.to_owned(),
            decision: decision as i32,
            approved_amount_fen: amount_fen,
            opinion: opinion.to_owned(),
            ..Default::default()
        };
        Ok(self
            .approvals
            .clone()
            .record_meeting_decision(with_bearer(req, &self.token))
            .await?
            .into_inner()
            .meeting
            .unwrap())
    }

    async fn close(&self, meeting: &str) -> Result<pb::CloseMeetingResponse, Status> {
        let req = pb::CloseMeetingRequest {
            request_id: request_id(),
            meeting_id: meeting.to_owned(),
            ..Default::default()
        };
        Ok(self
            .approvals
            .clone()
            .close_meeting(with_bearer(req, &self.token))
            .await?
            .into_inner())
    }

    pub(crate) async fn tasks(&self) -> Vec<pb::Task> {
        let req = pb::ListMyTasksRequest::default();
        self.approvals
            .clone()
            .list_my_tasks(with_bearer(req, &self.token))
            .await
            .unwrap()
            .into_inner()
            .tasks
    }
}

/// The five people of the seed's chain in one district.
pub(crate) struct Bureau {
    pub(crate) officer: Person,
    pub(crate) deputy: Person,
    pub(crate) head: Person,
    pub(crate) office: Person,
    pub(crate) leader: Person,
}

pub(crate) async fn bureau(app: &TestApp, district: &str) -> Bureau {
    Bureau {
        officer: person(
            app,
            district,
            &[Role::CaseOfficer],
            &format!("officer-{district}"),
        )
        .await,
        deputy: person(
            app,
            district,
            &[Role::DeputyLeader],
            &format!("deputy-{district}"),
        )
        .await,
        head: person(
            app,
            district,
            &[Role::BureauHead],
            &format!("head-{district}"),
        )
        .await,
        office: person(
            app,
            district,
            &[Role::BureauOffice],
            &format!("office-{district}"),
        )
        .await,
        leader: person(
            app,
            district,
            &[Role::DistrictLeader],
            &format!("leader-{district}"),
        )
        .await,
    }
}

impl Bureau {
    /// Takes a submitted case through the three reviews to the party-group step.
    pub(crate) async fn to_meeting(&self, case_id: &str) {
        self.officer.approve(case_id, OFFICER).await;
        self.deputy.approve(case_id, DEPUTY).await;
        self.head.approve(case_id, HEAD).await;
    }

    /// Takes cases waiting at the party-group step through one meeting that approves them.
    pub(crate) async fn meeting_approves(&self, cases: &[&str]) {
        let m = self.office.open_meeting().await;
        self.office.add_cases(&m.meeting_id, cases).await.unwrap();
        for c in cases {
            self.office
                .record(&m.meeting_id, c, pb::Decision::Approve, 0, "党组研究同意")
                .await
                .unwrap();
        }
        self.office.close(&m.meeting_id).await.unwrap();
    }
}

pub(crate) async fn budget(app: &TestApp, district: &str, year: i32) -> pb::BudgetBalance {
    let token = app.token(district, &[Role::Auditor], None, "auditor");
    let req = pb::GetBudgetRequest {
        fiscal_year: year,
        ..Default::default()
    };
    LedgerServiceClient::new(channel(app).await)
        .get_budget(with_bearer(req, &token))
        .await
        .unwrap()
        .into_inner()
        .balance
        .unwrap()
}

pub(crate) async fn history(app: &TestApp, district: &str, case_id: &str) -> Vec<pb::AuditEvent> {
    let token = app.token(district, &[Role::Auditor], None, "auditor");
    let req = pb::GetCaseHistoryRequest {
        case_id: case_id.to_owned(),
        ..Default::default()
    };
    AuditServiceClient::new(channel(app).await)
        .get_case_history(with_bearer(req, &token))
        .await
        .unwrap()
        .into_inner()
        .events
}

pub(crate) fn rules_update(district: &str, rules: pb::FundRules) -> pb::UpdateFundRulesRequest {
    pb::UpdateFundRulesRequest {
        request_id: request_id(),
        district_id: district.to_owned(),
        rules: Some(rules),
        ..Default::default()
    }
}

pub(crate) fn state(case: &pb::Case) -> pb::CaseState {
    pb::CaseState::try_from(case.state).unwrap()
}

async fn seed_chain_walked_by_five_people(backend: Backend) {
    let app = spawn_app(backend).await;
    let applicant = app.applicant(WANGCHENG, "gaotangling");
    let b = bureau(&app, WANGCHENG).await;
    let case = applicant
        .submitted(ApplicationBuilder::new().amount_fen(3_000_000).build())
        .await;
    let id = case.case_id.clone();
    assert_eq!(case.current_step_id, OFFICER);

    // The officer's inbox holds it, the deputy's does not yet.
    assert!(
        b.officer
            .tasks()
            .await
            .iter()
            .any(|t| t.case.as_ref().unwrap().case_id == id)
    );
    assert!(
        !b.deputy
            .tasks()
            .await
            .iter()
            .any(|t| t.case.as_ref().unwrap().case_id == id)
    );

    let after = b.officer.approve(&id, OFFICER).await;
    assert_eq!(after.current_step_id, DEPUTY);
    b.deputy.approve(&id, DEPUTY).await;
    let lowered = b
        .head
        .decide(
            &id,
            HEAD,
            pb::Decision::Approve,
            2_500_000,
            "",
            "核减至2.5万元",
        )
        .await
        .unwrap();
    assert_eq!(
        lowered.case.as_ref().unwrap().approved_amount_fen,
        2_500_000
    );
    assert_eq!(
        lowered.decision.as_ref().unwrap().amount_before_fen,
        3_000_000
    );
    assert_eq!(lowered.case.as_ref().unwrap().current_step_id, PARTY);
    b.meeting_approves(&[&id]).await;
    let before_final = budget(&app, WANGCHENG, 2022).await;
    assert_eq!(before_final.reserved_fen, 0);
    let done = b
        .leader
        .decide(&id, LEADER, pb::Decision::Approve, 0, "", "同意拨付")
        .await
        .unwrap();
    let done_case = done.case.unwrap();
    assert_eq!(state(&done_case), pb::CaseState::Approved);
    assert_eq!(done_case.approved_amount_fen, 2_500_000);

    let balance = budget(&app, WANGCHENG, 2022).await;
    assert_eq!(balance.allocated_fen, 128_000_000);
    assert_eq!(balance.reserved_fen, 2_500_000);
    assert_eq!(balance.available_fen, 128_000_000 - 2_500_000);

    let events = history(&app, WANGCHENG, &id).await;
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "case.created",
            "case.submitted",
            "case.step_approved",
            "case.step_approved",
            "case.step_approved",
            "case.step_approved",
            "case.approved"
        ]
    );
    let actors: Vec<&str> = events.iter().map(|e| e.actor_subject.as_str()).collect();
    assert_eq!(
        actors[2..],
        [
            "officer-430112",
            "deputy-430112",
            "head-430112",
            "office-430112",
            "leader-430112"
        ]
    );
    assert_eq!(events[4].opinion, "核减至2.5万元");
    assert_eq!(
        (events[4].amount_before_fen, events[4].amount_after_fen),
        (3_000_000, 2_500_000)
    );
    assert_eq!(events[6].state_after, "approved");
    app.assert_chain_intact(WANGCHENG).await;
}

async fn custom_chain_of_another_district(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut rules = wangcheng_rules();
    let step = |id: &str, role: pb::Role, min_amount_fen: i64| pb::ApprovalStep {
        step_id: id.to_owned(),
        name: id.to_owned(),
        role: role as i32,
        deadline_days: 3,
        condition: (min_amount_fen > 0).then_some(pb::StepCondition {
            min_amount_fen,
            ..Default::default()
        }),
        ..Default::default()
    };
    // 芙蓉区: officer, then the head only above 30,000 yuan, then the district leader.
    rules.approval_chain = Some(pb::ApprovalChain {
        steps: vec![
            step("review", pb::Role::CaseOfficer, 0),
            step("head_if_large", pb::Role::BureauHead, 3_000_000),
            step("approve", pb::Role::DistrictLeader, 0),
        ],
    });
    let admin = app.staff(FURONG, Role::DistrictAdmin);
    admin
        .update_fund_rules(rules_update(FURONG, rules))
        .await
        .unwrap();
    let applicant = app.applicant(FURONG, "furong-street");
    let b = bureau(&app, FURONG).await;

    let small = applicant
        .submitted(ApplicationBuilder::new().amount_fen(2_000_000).build())
        .await;
    assert_eq!(small.rules_version, 2);
    assert_eq!(small.current_step_id, "review");
    assert_eq!(
        b.officer
            .approve(&small.case_id, "review")
            .await
            .current_step_id,
        "approve"
    );
    assert_eq!(
        state(&b.leader.approve(&small.case_id, "approve").await),
        pb::CaseState::Approved
    );

    let large = applicant
        .submitted(ApplicationBuilder::new().amount_fen(4_000_000).build())
        .await;
    assert_eq!(
        b.officer
            .approve(&large.case_id, "review")
            .await
            .current_step_id,
        "head_if_large"
    );
    // The leader cannot skip the head's step.
    let skipped = b
        .leader
        .decide(&large.case_id, "approve", pb::Decision::Approve, 0, "", "")
        .await;
    expect_code(
        skipped,
        Code::FailedPrecondition,
        "deciding a step the case has not reached",
    );
    assert_eq!(
        b.head
            .approve(&large.case_id, "head_if_large")
            .await
            .current_step_id,
        "approve"
    );
    assert_eq!(
        state(&b.leader.approve(&large.case_id, "approve").await),
        pb::CaseState::Approved
    );

    // Wangcheng's cases still follow Wangcheng's chain.
    let wc = app
        .applicant(WANGCHENG, "gaotangling")
        .submitted(valid_application())
        .await;
    assert_eq!(wc.current_step_id, OFFICER);
}

async fn every_refusal(backend: Backend) {
    let app = spawn_app(backend).await;
    let applicant = app.applicant(WANGCHENG, "gaotangling");
    let b = bureau(&app, WANGCHENG).await;
    let id = applicant.submitted(valid_application()).await.case_id;

    // (who, step, decision, amount, opinion, expected code)
    let furong_officer = person(&app, FURONG, &[Role::CaseOfficer], "officer-furong").await;
    let finance_officer = person(
        &app,
        WANGCHENG,
        &[Role::Finance, Role::CaseOfficer],
        "finance-and-officer",
    )
    .await;
    let self_filer = Person {
        token: app.token(WANGCHENG, &[Role::CaseOfficer], None, "gaotangling-clerk"),
        subject: "gaotangling-clerk".to_owned(),
        approvals: b.officer.approvals.clone(),
    };
    let cases: Vec<(&Person, &str, pb::Decision, i64, &str, Code, &str)> = vec![
        (
            &b.deputy,
            OFFICER,
            pb::Decision::Approve,
            0,
            "",
            Code::PermissionDenied,
            "wrong role",
        ),
        (
            &furong_officer,
            OFFICER,
            pb::Decision::Approve,
            0,
            "",
            Code::NotFound,
            "wrong district",
        ),
        (
            &self_filer,
            OFFICER,
            pb::Decision::Approve,
            0,
            "",
            Code::PermissionDenied,
            "approving one's own case",
        ),
        (
            &finance_officer,
            OFFICER,
            pb::Decision::Approve,
            0,
            "",
            Code::PermissionDenied,
            "finance approving",
        ),
        (
            &b.deputy,
            DEPUTY,
            pb::Decision::Approve,
            0,
            "",
            Code::FailedPrecondition,
            "a step the case is not at",
        ),
        (
            &b.officer,
            OFFICER,
            pb::Decision::Approve,
            2_000_001,
            "",
            Code::InvalidArgument,
            "raising the amount",
        ),
        (
            &b.officer,
            OFFICER,
            pb::Decision::Reject,
            0,
            "",
            Code::InvalidArgument,
            "rejecting without an opinion",
        ),
        (
            &b.officer,
            OFFICER,
            pb::Decision::Return,
            0,
            "",
            Code::InvalidArgument,
            "returning without an opinion",
        ),
        (
            &b.officer,
            OFFICER,
            pb::Decision::Unspecified,
            0,
            "x",
            Code::InvalidArgument,
            "no decision",
        ),
    ];
    for (who, step, decision, amount, opinion, code, what) in cases {
        let got = who.decide(&id, step, decision, amount, "", opinion).await;
        expect_code(got, code, what);
    }
    let raised = b
        .officer
        .decide(&id, OFFICER, pb::Decision::Approve, 2_000_001, "", "")
        .await
        .unwrap_err();
    assert_eq!(violation_fields(&raised), ["approved_amount_fen"]);

    // The same person at two steps.
    let dual = person(
        &app,
        WANGCHENG,
        &[Role::CaseOfficer, Role::DeputyLeader],
        "dual-role",
    )
    .await;
    dual.approve(&id, OFFICER).await;
    expect_code(
        dual.decide(&id, DEPUTY, pb::Decision::Approve, 0, "", "")
            .await,
        Code::PermissionDenied,
        "one person at two steps",
    );
    b.deputy.approve(&id, DEPUTY).await;
    b.head.approve(&id, HEAD).await;
    // The party-group step is decided at a meeting, not one by one.
    expect_code(
        b.office
            .decide(&id, PARTY, pb::Decision::Approve, 0, "", "")
            .await,
        Code::FailedPrecondition,
        "batched step",
    );

    // A withdrawn case cannot be decided.
    let other = applicant.submitted(valid_application()).await.case_id;
    applicant.withdraw(&other).await.unwrap();
    expect_code(
        b.officer
            .decide(&other, OFFICER, pb::Decision::Approve, 0, "", "")
            .await,
        Code::FailedPrecondition,
        "deciding a withdrawn case",
    );

    // No refusal left a trace: the first case has exactly its five successful changes.
    assert_eq!(app.actions(WANGCHENG, Some(&id)).await.len(), 5);
}

async fn over_cap_case_takes_the_extra_step(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut rules = wangcheng_rules();
    let chain = rules.approval_chain.as_mut().unwrap();
    chain.steps.insert(
        4,
        pb::ApprovalStep {
            step_id: "over_cap_review".to_owned(),
            name: "超限额复核".to_owned(),
            role: pb::Role::DeputyLeader as i32,
            deadline_days: 5,
            condition: Some(pb::StepCondition {
                only_over_cap: true,
                ..Default::default()
            }),
            ..Default::default()
        },
    );
    app.staff(WANGCHENG, Role::DistrictAdmin)
        .update_fund_rules(rules_update(WANGCHENG, rules))
        .await
        .unwrap();
    let applicant = app.applicant(WANGCHENG, "gaotangling");
    let b = bureau(&app, WANGCHENG).await;
    let over = applicant
        .submitted(
            ApplicationBuilder::new()
                .amount_fen(6_000_000)
                .over_cap_justification("重大疾病，确需超额救助")
                .build(),
        )
        .await;
    assert!(over.over_cap);
    b.to_meeting(&over.case_id).await;
    b.meeting_approves(&[&over.case_id]).await;
    let second_deputy = person(&app, WANGCHENG, &[Role::DeputyLeader], "deputy-2").await;
    let extra = second_deputy
        .decide(
            &over.case_id,
            "over_cap_review",
            pb::Decision::Approve,
            0,
            "",
            "同意超额",
        )
        .await
        .unwrap();
    let record = extra.decision.unwrap();
    assert!(record.over_cap);
    assert_eq!(record.over_cap_justification, "重大疾病，确需超额救助");
    assert_eq!(extra.case.unwrap().current_step_id, LEADER);
    assert_eq!(
        state(&b.leader.approve(&over.case_id, LEADER).await),
        pb::CaseState::Approved
    );

    // A case within the cap never meets that step.
    let normal = applicant.submitted(valid_application()).await;
    b.to_meeting(&normal.case_id).await;
    b.meeting_approves(&[&normal.case_id]).await;
    assert_eq!(
        applicant
            .get_case(&normal.case_id)
            .await
            .unwrap()
            .current_step_id,
        LEADER
    );
}

async fn returns_and_resubmission(backend: Backend) {
    let app = spawn_app(backend).await;
    let applicant = app.applicant(WANGCHENG, "gaotangling");
    let b = bureau(&app, WANGCHENG).await;
    let id = applicant.submitted(valid_application()).await.case_id;
    b.officer.approve(&id, OFFICER).await;
    b.deputy.approve(&id, DEPUTY).await;

    // The head returns it to the applicant; the amendment resumes at the head's step.
    let returned = b
        .head
        .decide(&id, HEAD, pb::Decision::Return, 0, "", "补充低保证明")
        .await
        .unwrap()
        .case
        .unwrap();
    assert_eq!(state(&returned), pb::CaseState::Returned);
    let amended = applicant
        .update(
            &id,
            ApplicationBuilder::new()
                .with(|a| a.basic_situation = "已补充低保证明".to_owned())
                .build(),
        )
        .await
        .unwrap();
    assert_eq!(state(&amended), pb::CaseState::Returned);
    let resubmitted = applicant.submit(&id).await.unwrap();
    assert_eq!(resubmitted.current_step_id, HEAD);

    // The head returns it to the officer's step; the same officer decides it again.
    let back = b
        .head
        .decide(
            &id,
            HEAD,
            pb::Decision::Return,
            0,
            OFFICER,
            "请经办科室重新核实",
        )
        .await
        .unwrap();
    assert_eq!(back.case.as_ref().unwrap().current_step_id, OFFICER);
    assert_eq!(back.decision.unwrap().return_to_step_id, OFFICER);
    b.officer.approve(&id, OFFICER).await;
    b.deputy.approve(&id, DEPUTY).await;
    assert_eq!(b.head.approve(&id, HEAD).await.current_step_id, PARTY);

    // Returning forward is refused.
    let other = applicant.submitted(valid_application()).await.case_id;
    let forward = b
        .officer
        .decide(&other, OFFICER, pb::Decision::Return, 0, HEAD, "x")
        .await
        .unwrap_err();
    assert_eq!(violation_fields(&forward), ["return_to_step_id"]);
}

async fn meetings_apply_all_or_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let applicant = app.applicant(WANGCHENG, "gaotangling");
    let b = bureau(&app, WANGCHENG).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let id = applicant.submitted(valid_application()).await.case_id;
        b.to_meeting(&id).await;
        ids.push(id);
    }
    let m = b.office.open_meeting().await;
    b.office
        .add_cases(&m.meeting_id, &[&ids[0], &ids[1], &ids[2]])
        .await
        .unwrap();
    // A case is on at most one open meeting.
    let other = b.office.open_meeting().await;
    expect_code(
        b.office.add_cases(&other.meeting_id, &[&ids[0]]).await,
        Code::FailedPrecondition,
        "a case on two meetings",
    );
    // Closing needs a decision for every case.
    b.office
        .record(
            &m.meeting_id,
            &ids[0],
            pb::Decision::Approve,
            1_500_000,
            "党组研究同意，核定1.5万元",
        )
        .await
        .unwrap();
    expect_code(
        b.office.close(&m.meeting_id).await,
        Code::FailedPrecondition,
        "closing with undecided cases",
    );
    b.office
        .record(
            &m.meeting_id,
            &ids[1],
            pb::Decision::Return,
            0,
            "材料不全，退回补正",
        )
        .await
        .unwrap();
    b.office
        .record(
            &m.meeting_id,
            &ids[2],
            pb::Decision::Reject,
            0,
            "不符合救助条件",
        )
        .await
        .unwrap();
    let closed = b.office.close(&m.meeting_id).await.unwrap();
    assert_eq!(
        pb::MeetingState::try_from(closed.meeting.unwrap().state).unwrap(),
        pb::MeetingState::Closed
    );
    let states: Vec<pb::CaseState> = closed.cases.iter().map(state).collect();
    assert_eq!(
        states,
        [
            pb::CaseState::InReview,
            pb::CaseState::Returned,
            pb::CaseState::Rejected
        ]
    );
    assert_eq!(closed.cases[0].current_step_id, LEADER);
    assert_eq!(closed.cases[0].approved_amount_fen, 1_500_000);

    // A meeting that fails halfway applies nothing.
    let a = applicant.submitted(valid_application()).await.case_id;
    let c = applicant.submitted(valid_application()).await.case_id;
    b.to_meeting(&a).await;
    b.to_meeting(&c).await;
    let m2 = b.office.open_meeting().await;
    b.office.add_cases(&m2.meeting_id, &[&a, &c]).await.unwrap();
    b.office
        .record(&m2.meeting_id, &a, pb::Decision::Approve, 0, "同意")
        .await
        .unwrap();
    b.office
        .record(&m2.meeting_id, &c, pb::Decision::Approve, 0, "同意")
        .await
        .unwrap();
    applicant.withdraw(&c).await.unwrap();
    let events_before = app.events(WANGCHENG, None).await.len();
    expect_code(
        b.office.close(&m2.meeting_id).await,
        Code::FailedPrecondition,
        "closing over a withdrawn case",
    );
    assert_eq!(
        applicant.get_case(&a).await.unwrap().current_step_id,
        PARTY,
        "nothing was applied"
    );
    assert_eq!(
        app.events(WANGCHENG, None).await.len(),
        events_before,
        "no event was written"
    );
    let meeting = b
        .office
        .approvals
        .clone()
        .get_meeting(with_bearer(
            pb::GetMeetingRequest {
                meeting_id: m2.meeting_id.clone(),
                ..Default::default()
            },
            &b.office.token,
        ))
        .await
        .unwrap()
        .into_inner()
        .meeting
        .unwrap();
    assert_eq!(
        pb::MeetingState::try_from(meeting.state).unwrap(),
        pb::MeetingState::Open
    );
    app.assert_chain_intact(WANGCHENG).await;
}

async fn delegation_acts_on_behalf(backend: Backend) {
    let app = spawn_app(backend).await;
    let applicant = app.applicant(WANGCHENG, "gaotangling");
    let b = bureau(&app, WANGCHENG).await;
    let acting = person(&app, WANGCHENG, &[Role::CaseOfficer], "acting-deputy").await;
    let id = applicant.submitted(valid_application()).await.case_id;
    b.officer.approve(&id, OFFICER).await;

    // Without a delegation the acting person may not decide the deputy's step.
    expect_code(
        acting
            .decide(&id, DEPUTY, pb::Decision::Approve, 0, "", "")
            .await,
        Code::PermissionDenied,
        "no delegation",
    );
    let now = Utc::now();
    let req = pb::CreateDelegationRequest {
        request_id: request_id(),
        delegate_subject: "acting-deputy".to_owned(),
        role: pb::Role::DeputyLeader as i32,
        start_time: Some(prost_types::Timestamp {
            seconds: (now - Duration::hours(1)).timestamp(),
            nanos: 0,
        }),
        end_time: Some(prost_types::Timestamp {
            seconds: (now + Duration::days(7)).timestamp(),
            nanos: 0,
        }),
        ..Default::default()
    };
    // Every unreadable term is named at once: a delegation to oneself that ends before it
    // starts names both fields, and writes nothing.
    let to_self_backwards = pb::CreateDelegationRequest {
        request_id: request_id(),
        delegate_subject: b.deputy.subject.clone(),
        end_time: req.start_time,
        start_time: req.end_time,
        ..req.clone()
    };
    expect_violations(
        b.deputy
            .approvals
            .clone()
            .create_delegation(with_bearer(to_self_backwards, &b.deputy.token))
            .await,
        &["delegate_subject", "end_time"],
        "a backwards delegation to oneself",
    );
    let delegation = b
        .deputy
        .approvals
        .clone()
        .create_delegation(with_bearer(req.clone(), &b.deputy.token))
        .await
        .unwrap()
        .into_inner()
        .delegation
        .unwrap();
    // Someone who does not hold the role cannot delegate it.
    let not_mine = pb::CreateDelegationRequest {
        request_id: request_id(),
        ..req
    };
    expect_code(
        b.head
            .approvals
            .clone()
            .create_delegation(with_bearer(not_mine, &b.head.token))
            .await,
        Code::PermissionDenied,
        "delegating a role one lacks",
    );

    let inbox = acting.tasks().await;
    let task = inbox
        .iter()
        .find(|t| t.case.as_ref().unwrap().case_id == id)
        .expect("the delegated case is in the inbox");
    assert_eq!(task.on_behalf_of_subject, "deputy-430112");
    let decided = acting
        .decide(&id, DEPUTY, pb::Decision::Approve, 0, "", "代为审核")
        .await
        .unwrap();
    let record = decided.decision.unwrap();
    assert_eq!(
        (
            record.actor_subject.as_str(),
            record.on_behalf_of_subject.as_str()
        ),
        ("acting-deputy", "deputy-430112")
    );
    let events = history(&app, WANGCHENG, &id).await;
    assert_eq!(events.last().unwrap().on_behalf_of_subject, "deputy-430112");
    // The deputy, having acted through the delegate, may not act at the next step either.
    let deputy_as_head = person(&app, WANGCHENG, &[Role::BureauHead], "deputy-430112").await;
    expect_code(
        deputy_as_head
            .decide(&id, HEAD, pb::Decision::Approve, 0, "", "")
            .await,
        Code::PermissionDenied,
        "delegator at another step",
    );
    let actions = app
        .actions(WANGCHENG, Some(&delegation.delegation_id))
        .await;
    assert_eq!(actions, ["delegation.created"]);
}

async fn deadlines_mark_overdue_cases(backend: Backend) {
    let clock = Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(2022, 3, 1, 9, 0, 0).unwrap(),
    ));
    let app = spawn_app_with_clock(backend, clock.clone() as Arc<dyn Clock>).await;
    let applicant = app.applicant(WANGCHENG, "gaotangling");
    let b = bureau(&app, WANGCHENG).await;
    let id = applicant.submitted(valid_application()).await.case_id;
    let task = b
        .officer
        .tasks()
        .await
        .into_iter()
        .find(|t| t.case.as_ref().unwrap().case_id == id)
        .unwrap();
    assert!(!task.overdue);
    assert_eq!(
        task.deadline_time.unwrap().seconds,
        Utc.with_ymd_and_hms(2022, 3, 6, 9, 0, 0)
            .unwrap()
            .timestamp()
    );
    let overdue = |p: Person| async move {
        let req = pb::ListOverdueRequest::default();
        p.approvals
            .clone()
            .list_overdue(with_bearer(req, &p.token))
            .await
            .unwrap()
            .into_inner()
            .tasks
    };
    assert!(overdue(b.head.clone()).await.is_empty());
    clock.set(Utc.with_ymd_and_hms(2022, 3, 7, 9, 0, 0).unwrap());
    let late = overdue(b.head.clone()).await;
    assert_eq!(late.len(), 1);
    assert_eq!(late[0].case.as_ref().unwrap().case_id, id);
    assert!(b.officer.tasks().await.iter().any(|t| t.overdue));
    // Deciding moves the case to a new step with a fresh deadline.
    b.officer.approve(&id, OFFICER).await;
    assert!(overdue(b.head.clone()).await.is_empty());
}

async fn audit_chain_catches_an_edited_event(backend: Backend) {
    let app = spawn_app(backend).await;
    let applicant = app.applicant(WANGCHENG, "gaotangling");
    let b = bureau(&app, WANGCHENG).await;
    let id = applicant.submitted(valid_application()).await.case_id;
    b.officer
        .decide(&id, OFFICER, pb::Decision::Reject, 0, "", "不符合条件")
        .await
        .unwrap();
    let token = app.token(WANGCHENG, &[Role::Auditor], None, "auditor");
    let verify = || async {
        let req = pb::VerifyAuditChainRequest {
            district_id: WANGCHENG.to_owned(),
            ..Default::default()
        };
        AuditServiceClient::new(channel(&app).await)
            .verify_audit_chain(with_bearer(req, &token))
            .await
            .unwrap()
            .into_inner()
    };
    let ok = verify().await;
    assert!(ok.intact);
    let total = app.events(WANGCHENG, None).await.len() as i64;
    assert_eq!(ok.events_checked, total);
    // Somebody edits the rejection's opinion directly in the database.
    let rejected_seq = app.events(WANGCHENG, Some(&id)).await.last().unwrap().seq;
    app.store
        .connection()
        .execute_unprepared(&format!("UPDATE events SET note = '同意' WHERE district_id = '{WANGCHENG}' AND seq = {rejected_seq}"))
        .await
        .unwrap();
    let broken = verify().await;
    assert!(!broken.intact);
    assert_eq!(broken.first_broken_seq, rejected_seq);
    assert_eq!(broken.events_checked, rejected_seq - 1);
    // Another district's chain is untouched and not visible to this auditor.
    let req = pb::VerifyAuditChainRequest {
        district_id: FURONG.to_owned(),
        ..Default::default()
    };
    expect_code(
        AuditServiceClient::new(channel(&app).await)
            .verify_audit_chain(with_bearer(req, &token))
            .await,
        Code::NotFound,
        "another district's chain",
    );
}

/// A district whose chain is one final approval (by the district leader, step `approve`),
/// with a 2022 budget of `allocated_fen` and the given documents required before payment.
pub(crate) async fn one_step_district(
    app: &TestApp,
    id: &str,
    allocated_fen: i64,
    required_documents: &[&str],
) {
    let mut rules = wangcheng_rules();
    rules.budgets[0].allocated_fen = allocated_fen;
    rules.required_payment_documents = required_documents.iter().map(|d| (*d).to_owned()).collect();
    rules.approval_chain = Some(pb::ApprovalChain {
        steps: vec![pb::ApprovalStep {
            step_id: "approve".to_owned(),
            name: "分管区领导审批".to_owned(),
            role: pb::Role::DistrictLeader as i32,
            deadline_days: 10,
            ..Default::default()
        }],
    });
    app.city_admin()
        .create_district(pb::CreateDistrictRequest {
            request_id: request_id(),
            district_id: id.to_owned(),
            name: format!("区{id}"),
            rules: Some(rules),
            ..Default::default()
        })
        .await
        .unwrap();
}

/// A one-step district whose 2022 budget covers ten cases of 20,000 yuan.
pub(crate) async fn small_budget_district(app: &TestApp) -> &'static str {
    const TIANXIN: &str = "430103";
    one_step_district(app, TIANXIN, 10 * 2_000_000, &[]).await;
    TIANXIN
}

async fn concurrent_final_approvals_never_overspend(backend: Backend) {
    let app = spawn_app(backend).await;
    let district = small_budget_district(&app).await;
    let applicant = app.applicant(district, "tianxin-street");
    let mut ids = Vec::new();
    for _ in 0..50 {
        ids.push(applicant.submitted(valid_application()).await.case_id);
    }
    let leader = person(&app, district, &[Role::DistrictLeader], "leader").await;
    let results = futures::future::join_all(ids.iter().map(|id| {
        let leader = leader.clone();
        let id = id.clone();
        tokio::spawn(async move {
            leader
                .decide(&id, "approve", pb::Decision::Approve, 0, "", "同意")
                .await
        })
    }))
    .await;
    let mut approved = 0;
    for r in results {
        match r.unwrap() {
            Ok(_) => approved += 1,
            Err(s) => {
                assert_eq!(s.code(), Code::FailedPrecondition, "{s:?}");
                assert!(
                    s.message().contains("left"),
                    "the refusal says how much is left: {}",
                    s.message()
                );
            }
        }
    }
    assert_eq!(approved, 10);
    let balance = budget(&app, district, 2022).await;
    assert_eq!(balance.reserved_fen, 20_000_000);
    assert_eq!(balance.available_fen, 0);
    app.assert_chain_intact(district).await;
}

async fn concurrent_decisions_on_one_step(backend: Backend) {
    let app = spawn_app(backend).await;
    let applicant = app.applicant(WANGCHENG, "gaotangling");
    let id = applicant.submitted(valid_application()).await.case_id;
    let a = person(&app, WANGCHENG, &[Role::CaseOfficer], "officer-a").await;
    let c = person(&app, WANGCHENG, &[Role::CaseOfficer], "officer-b").await;
    let (ra, rc) = tokio::join!(
        a.decide(&id, OFFICER, pb::Decision::Approve, 0, "", "同意"),
        c.decide(&id, OFFICER, pb::Decision::Reject, 0, "", "不同意")
    );
    let outcomes = [ra.is_ok(), rc.is_ok()];
    assert_eq!(
        outcomes.iter().filter(|o| **o).count(),
        1,
        "exactly one decision applies"
    );
    let loser = match (ra, rc) {
        (Ok(_), Err(s)) | (Err(s), Ok(_)) => s,
        (a, b) => panic!("exactly one decision applies: {a:?} {b:?}"),
    };
    assert_eq!(loser.code(), Code::FailedPrecondition, "{loser:?}");
    // A decision against a stale version is refused too.
    let stale = a
        .decide_raw(pb::DecideCaseRequest {
            request_id: request_id(),
            case_id: id.clone(),
            step_id: DEPUTY.to_owned(),
            expected_version: 2,
            decision: pb::Decision::Approve as i32,
            ..Default::default()
        })
        .await;
    expect_code(stale, Code::Aborted, "stale expected_version");
    assert_eq!(app.actions(WANGCHENG, Some(&id)).await.len(), 3);
}

/// Sixteen officers decide sixteen cases of one district at once, then sixteen deputies the
/// next step: every step applies once, in one unbroken chain.
async fn concurrent_decisions_on_many_cases(backend: Backend) {
    let app = spawn_app(backend).await;
    let applicant = app.applicant(WANGCHENG, "gaotangling");
    let mut ids = Vec::new();
    for _ in 0..16 {
        ids.push(applicant.submitted(valid_application()).await.case_id);
    }
    for (step, role) in [(OFFICER, Role::CaseOfficer), (DEPUTY, Role::DeputyLeader)] {
        let mut people = Vec::new();
        for k in 0..ids.len() {
            people.push(person(&app, WANGCHENG, &[role], &format!("{step}-{k}")).await);
        }
        let results = futures::future::join_all(ids.iter().zip(people).map(|(id, p)| {
            let id = id.clone();
            tokio::spawn(async move {
                p.decide(&id, step, pb::Decision::Approve, 0, "", "同意")
                    .await
            })
        }))
        .await;
        for r in results {
            let resp = r.unwrap().unwrap();
            assert_eq!(resp.decision.unwrap().step_id, step);
        }
    }
    for id in &ids {
        let actions = app.actions(WANGCHENG, Some(id)).await;
        let steps = actions
            .iter()
            .filter(|a| *a == "case.step_approved")
            .count();
        assert_eq!(steps, 2, "{id}: {actions:?}");
    }
    app.assert_chain_intact(WANGCHENG).await;
}

/// One decision sent eight times at once under one request id (a client retrying while its
/// first call is still in flight), on five cases: every call gets the one decision, applied
/// once.
async fn concurrent_retries_of_one_decision(backend: Backend) {
    let app = spawn_app(backend).await;
    let applicant = app.applicant(WANGCHENG, "gaotangling");
    let officer = person(&app, WANGCHENG, &[Role::CaseOfficer], "officer").await;
    for _ in 0..5 {
        let id = applicant.submitted(valid_application()).await.case_id;
        let req = pb::DecideCaseRequest {
            request_id: request_id(),
            case_id: id.clone(),
            step_id: OFFICER.to_owned(),
            decision: pb::Decision::Approve as i32,
            opinion: "同意".to_owned(),
            ..Default::default()
        };
        let results = futures::future::join_all((0..8).map(|_| {
            let officer = officer.clone();
            let req = req.clone();
            tokio::spawn(async move { officer.decide_raw(req).await })
        }))
        .await;
        let answers: Vec<pb::DecideCaseResponse> =
            results.into_iter().map(|r| r.unwrap().unwrap()).collect();
        for a in &answers {
            assert_eq!(a, &answers[0], "every retry gets the first answer");
        }
        let actions = app.actions(WANGCHENG, Some(&id)).await;
        assert_eq!(
            actions
                .iter()
                .filter(|a| *a == "case.step_approved")
                .count(),
            1,
            "{actions:?}"
        );
    }
    app.assert_chain_intact(WANGCHENG).await;
}

backend_tests!(
    seed_chain_walked_by_five_people,
    custom_chain_of_another_district,
    every_refusal,
    over_cap_case_takes_the_extra_step,
    returns_and_resubmission,
    meetings_apply_all_or_nothing,
    delegation_acts_on_behalf,
    deadlines_mark_overdue_cases,
    audit_chain_catches_an_edited_event,
    concurrent_final_approvals_never_overspend,
    concurrent_decisions_on_one_step,
    concurrent_decisions_on_many_cases,
    concurrent_retries_of_one_decision,
);
