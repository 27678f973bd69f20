//! Every mutating call honours its request id: sent again with the same id, it answers as
//! the first time did and changes nothing (no event, no money moved). This module retries the
//! calls of the approval, disbursement, follow-up, ledger and report services along one
//! case's life; the intake, district and payment-creation calls are retried in their own
//! modules, and the crash test retries decisions and payments across a killed server. Request
//! ids are kept for the configured retention, and forgotten after it.

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;

use chrono::{Duration, TimeZone as _, Utc};
use relief_domain::{Clock, ManualClock};
use relief_proto::v1 as pb;
use relief_proto::v1::follow_up_service_client::FollowUpServiceClient;
use relief_proto::v1::report_service_client::ReportServiceClient;
use relief_tests::{
    Backend, Role, SHA256_EMPTY, TestApp, WANGCHENG, backend_tests, request_id, spawn_app,
    spawn_app_with_clock, valid_application, with_bearer,
};
use tonic::Status;

use crate::approvals::{budget, bureau, channel};
use crate::payments::finance;

backend_tests!(
    every_mutation_retried_answers_the_same_and_changes_nothing,
    request_ids_are_forgotten_after_the_retention,
);

/// Sends `req` twice with the same request id; both answers must be equal, and the second
/// must add no event to the district's log.
async fn twice<Req, Resp, F, Fut>(app: &TestApp, token: &str, req: Req, call: F) -> Resp
where
    Req: Clone,
    Resp: PartialEq + Debug,
    F: Fn(tonic::Request<Req>) -> Fut,
    Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
{
    let first = call(with_bearer(req.clone(), token))
        .await
        .unwrap()
        .into_inner();
    let events = app.events(WANGCHENG, None).await.len();
    let again = call(with_bearer(req, token)).await.unwrap().into_inner();
    assert_eq!(again, first, "a retry answers as the first call did");
    assert_eq!(
        app.events(WANGCHENG, None).await.len(),
        events,
        "a retry changes nothing"
    );
    first
}

fn ts(t: chrono::DateTime<Utc>) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: 0,
    })
}

async fn every_mutation_retried_answers_the_same_and_changes_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let b = bureau(&app, WANGCHENG).await;
    let fin = finance(&app, WANGCHENG).await;
    let applicant = app.applicant(WANGCHENG, "gaotangling");
    let one = applicant.submitted(valid_application()).await.case_id;
    let two = applicant.submitted(valid_application()).await.case_id;
    b.to_meeting(&one).await;
    b.to_meeting(&two).await;

    // Delegations.
    let approvals = b.deputy.approvals.clone();
    let now = Utc::now();
    let delegation = twice(
        &app,
        &b.deputy.token,
        pb::CreateDelegationRequest {
            request_id: request_id(),
            delegate_subject: "acting-deputy".to_owned(),
            role: pb::Role::DeputyLeader as i32,
            start_time: ts(now),
            end_time: ts(now + Duration::days(7)),
        },
        |r| {
            let mut c = approvals.clone();
            async move { c.create_delegation(r).await }
        },
    )
    .await
    .delegation
    .unwrap();
    twice(
        &app,
        &b.deputy.token,
        pb::RevokeDelegationRequest {
            request_id: request_id(),
            delegation_id: delegation.delegation_id,
        },
        |r| {
            let mut c = approvals.clone();
            async move { c.revoke_delegation(r).await }
        },
    )
    .await;

    // The party-group meeting.
    let office = &b.office.token;
    let meeting = twice(
        &app,
        office,
        pb::OpenMeetingRequest {
            request_id: request_id(),
            meeting_date: "2022-06-15".to_owned(),
            attendees: vec!["局长".to_owned(), "副局长".to_owned()],
            minutes_reference: "党组会纪要〔2022〕6号".to_owned(),
        },
        |r| {
            let mut c = approvals.clone();
            async move { c.open_meeting(r).await }
        },
    )
    .await
    .meeting
    .unwrap();
    twice(
        &app,
        office,
        pb::AddMeetingCasesRequest {
            request_id: request_id(),
            meeting_id: meeting.meeting_id.clone(),
            case_ids: vec![one.clone(), two.clone()],
        },
        |r| {
            let mut c = approvals.clone();
            async move { c.add_meeting_cases(r).await }
        },
    )
    .await;
    for case in [&one, &two] {
        twice(
            &app,
            office,
            pb::RecordMeetingDecisionRequest {
                request_id: request_id(),
                meeting_id: meeting.meeting_id.clone(),
                case_id: case.clone(),
                decision: pb::Decision::Approve as i32,
                approved_amount_fen: 0,
                opinion: "党组研究同意".to_owned(),
                ..Default::default()
            },
            |r| {
                let mut c = approvals.clone();
                async move { c.record_meeting_decision(r).await }
            },
        )
        .await;
    }
    twice(
        &app,
        office,
        pb::CloseMeetingRequest {
            request_id: request_id(),
            meeting_id: meeting.meeting_id.clone(),
        },
        |r| {
            let mut c = approvals.clone();
            async move { c.close_meeting(r).await }
        },
    )
    .await;
    // The final decision reserves the money once.
    for case in [&one, &two] {
        let reserved = budget(&app, WANGCHENG, 2022).await.reserved_fen;
        twice(
            &app,
            &b.leader.token,
            pb::DecideCaseRequest {
                request_id: request_id(),
                case_id: case.clone(),
                step_id: "district_leader_approval".to_owned(),
                decision: pb::Decision::Approve as i32,
                opinion: "同意".to_owned(),
                ..Default::default()
            },
            |r| {
                let mut c = approvals.clone();
                async move { c.decide_case(r).await }
            },
        )
        .await;
        assert_eq!(
            budget(&app, WANGCHENG, 2022).await.reserved_fen,
            reserved + 2_000_000,
            "reserved once"
        );
    }

    // Documents and payments.
    let pay = fin.pay.clone();
    twice(
        &app,
        &applicant.token,
        pb::AddCaseDocumentRequest {
            request_id: request_id(),
            case_id: one.clone(),
            document: Some(pb::Attachment {
                document_type: "息诉罢访承诺书".to_owned(),
                name: "承诺书.pdf".to_owned(),
                media_type: "application/pdf".to_owned(),
                sha256_hex: SHA256_EMPTY.to_owned(),
                size_bytes: 2048,
                ..Default::default()
            }),
        },
        |r| {
            let mut c = pay.clone();
            async move { c.add_case_document(r).await }
        },
    )
    .await;
    let failed = fin.create(&one).await.unwrap();
    twice(
        &app,
        &fin.token,
        pb::FailPaymentRequest {
            request_id: request_id(),
            payment_id: failed.payment_id,
            reason: "账号有误".to_owned(),
        },
        |r| {
            let mut c = pay.clone();
            async move { c.fail_payment(r).await }
        },
    )
    .await;
    let mut paid = Vec::new();
    for case in [&one, &two] {
        let p = fin.create(case).await.unwrap();
        twice(
            &app,
            &fin.token,
            pb::ConfirmPaymentRequest {
                request_id: request_id(),
                payment_id: p.payment_id.clone(),
                bank_reference: format!("BR-{}", p.payment_id),
                paid_date: "2022-06-30".to_owned(),
            },
            |r| {
                let mut c = pay.clone();
                async move { c.confirm_payment(r).await }
            },
        )
        .await;
        paid.push(p.payment_id);
    }
    assert_eq!(budget(&app, WANGCHENG, 2022).await.paid_fen, 4_000_000);
    // The bank returns the second payment; it is paid again.
    twice(
        &app,
        &fin.token,
        pb::ReversePaymentRequest {
            request_id: request_id(),
            payment_id: paid[1].clone(),
            reason: "银行退票".to_owned(),
        },
        |r| {
            let mut c = pay.clone();
            async move { c.reverse_payment(r).await }
        },
    )
    .await;
    assert_eq!(budget(&app, WANGCHENG, 2022).await.paid_fen, 2_000_000);
    let again = fin.create(&two).await.unwrap();
    let mut c = pay.clone();
    c.confirm_payment(with_bearer(
        pb::ConfirmPaymentRequest {
            request_id: request_id(),
            payment_id: again.payment_id.clone(),
            bank_reference: "BR-again".to_owned(),
            paid_date: "2022-07-30".to_owned(),
        },
        &fin.token,
    ))
    .await
    .unwrap();

    // Follow-up.
    let officer = app.token(WANGCHENG, &[Role::CaseOfficer], None, "officer-430112");
    let follow = FollowUpServiceClient::new(channel(&app).await);
    let first_follow_up = follow
        .clone()
        .list_case_follow_ups(with_bearer(
            pb::ListCaseFollowUpsRequest {
                case_id: one.clone(),
                ..Default::default()
            },
            &officer,
        ))
        .await
        .unwrap()
        .into_inner()
        .follow_ups
        .remove(0);
    twice(
        &app,
        &officer,
        pb::RecordFollowUpRequest {
            request_id: request_id(),
            follow_up_id: first_follow_up.follow_up_id,
            done_date: first_follow_up.due_date,
            method: "电话回访".to_owned(),
            petitioned_again: false,
            notes: "生活已恢复正常".to_owned(),
        },
        |r| {
            let mut c = follow.clone();
            async move { c.record_follow_up(r).await }
        },
    )
    .await;

    // The report's narrative, and closing the year.
    let head = app.token(WANGCHENG, &[Role::BureauHead], None, "head");
    let reports = ReportServiceClient::new(channel(&app).await);
    twice(
        &app,
        &head,
        pb::UpdateReportNarrativeRequest {
            request_id: request_id(),
            fiscal_year: 2022,
            section: "experience".to_owned(),
            text: "一是领导重视。".to_owned(),
        },
        |r| {
            let mut c = reports.clone();
            async move { c.update_report_narrative(r).await }
        },
    )
    .await;
    let ledger = fin.ledger.clone();
    twice(
        &app,
        &fin.token,
        pb::CloseFiscalYearRequest {
            request_id: request_id(),
            fiscal_year: 2022,
        },
        |r| {
            let mut c = ledger.clone();
            async move { c.close_fiscal_year(r).await }
        },
    )
    .await;
    app.assert_chain_intact(WANGCHENG).await;
}

async fn request_ids_are_forgotten_after_the_retention(backend: Backend) {
    let clock = Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(2022, 3, 1, 9, 0, 0).unwrap(),
    ));
    let app = spawn_app_with_clock(backend, clock.clone() as Arc<dyn Clock>).await;
    let unit = app.applicant(WANGCHENG, "gaotangling");
    let create = pb::CreateCaseRequest {
        request_id: request_id(),
        application: Some(valid_application()),
        ..Default::default()
    };
    let first = unit.create_case_raw(create.clone()).await.unwrap();
    // Six days on (the retention is seven), the retry is still answered from memory.
    clock.set(Utc.with_ymd_and_hms(2022, 3, 7, 9, 0, 0).unwrap());
    assert_eq!(unit.create_case_raw(create.clone()).await.unwrap(), first);
    assert_eq!(app.store.purge_request_ids(clock.now()).await.unwrap(), 0);
    // Past the retention the id is forgotten: the same request is a new case.
    clock.set(Utc.with_ymd_and_hms(2022, 3, 9, 9, 0, 0).unwrap());
    let second = unit.create_case_raw(create.clone()).await.unwrap();
    assert_ne!(second.case_id, first.case_id);
    // And the hourly purge removes what is past the retention.
    clock.set(Utc.with_ymd_and_hms(2022, 3, 20, 9, 0, 0).unwrap());
    assert!(app.store.purge_request_ids(clock.now()).await.unwrap() >= 1);
}
