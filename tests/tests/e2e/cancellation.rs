//! Undoing a final approval: the applicant unit can withdraw a case only until the final
//! approval; after it only the bureau (a district leader or the bureau head) cancels the
//! approval, with a written reason, which releases the reservation and is audited. Wrong
//! roles, unapproved, paid and in-flight cases are refused, and racing cancellations and
//! payments leave exactly one outcome per case.

use relief_proto::v1 as pb;
use relief_proto::v1::ErrorReason;
use relief_proto::v1::approval_service_client::ApprovalServiceClient;
use relief_tests::{
    Backend, Role, TestApp, backend_tests, expect_code, expect_violations, request_id, spawn_app,
    valid_application, with_bearer,
};
use tonic::{Code, Status};

use crate::approvals::{Person, budget, channel, history, one_step_district, person, state};
use crate::contract::expect_reason;
use crate::payments::{approved_cases, assert_consistent, finance};

backend_tests!(
    the_unit_cannot_withdraw_an_approved_case,
    the_bureau_cancels_an_approval_and_releases_its_money,
    only_a_district_leader_or_the_bureau_head_cancels,
    only_an_approved_case_without_a_payment_under_way_is_cancelled,
    racing_cancellations_and_payments_leave_one_outcome,
);

const DISTRICT: &str = "430104";
const CASE_FEN: i64 = 2_000_000;
const ALLOCATED_FEN: i64 = 100_000_000;

fn cancel_request(case_id: &str, reason: &str) -> pb::CancelApprovalRequest {
    pb::CancelApprovalRequest {
        request_id: request_id(),
        case_id: case_id.to_owned(),
        reason: reason.to_owned(),
        ..Default::default()
    }
}

async fn cancel_raw(who: &Person, req: pb::CancelApprovalRequest) -> Result<pb::Case, Status> {
    who.approvals
        .clone()
        .cancel_approval(with_bearer(req, &who.token))
        .await
        .map(|r| r.into_inner().case.expect("the response carries the case"))
}

async fn cancel(who: &Person, case_id: &str) -> Result<pb::Case, Status> {
    cancel_raw(who, cancel_request(case_id, "受助人已另获救助，撤销审批")).await
}

/// A caller of the approval service with a token of `roles` (an applicant unit's names its
/// unit).
async fn caller(app: &TestApp, roles: &[Role], unit: Option<&str>, subject: &str) -> Person {
    Person {
        token: app.token(DISTRICT, roles, unit, subject),
        subject: subject.to_owned(),
        approvals: ApprovalServiceClient::new(channel(app).await),
    }
}

async fn the_unit_cannot_withdraw_an_approved_case(backend: Backend) {
    let app = spawn_app(backend).await;
    one_step_district(&app, DISTRICT, ALLOCATED_FEN, &[]).await;
    let (_, ids) = approved_cases(&app, DISTRICT, 1).await;
    let applicant = app.applicant(DISTRICT, "street");
    expect_reason(
        applicant.withdraw(&ids[0]).await,
        Code::FailedPrecondition,
        ErrorReason::CaseState,
        &[("state", "approved"), ("action", "withdraw")],
    );
    let case = applicant.get_case(&ids[0]).await.unwrap();
    assert_eq!(state(&case), pb::CaseState::Approved);
    assert_eq!(budget(&app, DISTRICT, 2022).await.reserved_fen, CASE_FEN);
    assert_consistent(&finance(&app, DISTRICT).await.verify(2022).await);
}

async fn the_bureau_cancels_an_approval_and_releases_its_money(backend: Backend) {
    let app = spawn_app(backend).await;
    one_step_district(&app, DISTRICT, ALLOCATED_FEN, &[]).await;
    let (_, ids) = approved_cases(&app, DISTRICT, 2).await;
    assert_eq!(
        budget(&app, DISTRICT, 2022).await.reserved_fen,
        2 * CASE_FEN
    );
    let head = person(&app, DISTRICT, &[Role::BureauHead], "head").await;

    // A reason is required, and a refused request writes nothing.
    for reason in ["", " \n "] {
        expect_violations(
            cancel_raw(&head, cancel_request(&ids[0], reason)).await,
            &["reason"],
            &format!("cancel with reason {reason:?}"),
        );
    }
    let before = history(&app, DISTRICT, &ids[0]).await.len();

    let req = pb::CancelApprovalRequest {
        expected_version: app
            .applicant(DISTRICT, "street")
            .get_case(&ids[0])
            .await
            .unwrap()
            .version,
        ..cancel_request(&ids[0], "受助人已另获救助，\n撤销审批")
    };
    let cancelled = cancel_raw(&head, req.clone()).await.unwrap();
    assert_eq!(state(&cancelled), pb::CaseState::Cancelled);
    assert_eq!(cancelled.version, req.expected_version + 1);
    // Retried with its request id, the call answers as before and changes nothing more.
    assert_eq!(cancel_raw(&head, req.clone()).await.unwrap(), cancelled);
    expect_reason(
        cancel_raw(
            &head,
            pb::CancelApprovalRequest {
                case_id: ids[1].clone(),
                ..req.clone()
            },
        )
        .await,
        Code::AlreadyExists,
        ErrorReason::RequestIdReused,
        &[],
    );

    // The reservation is gone; the other case's stays; the books verify.
    let balance = budget(&app, DISTRICT, 2022).await;
    assert_eq!(
        (
            balance.reserved_fen,
            balance.paid_fen,
            balance.available_fen
        ),
        (CASE_FEN, 0, ALLOCATED_FEN - CASE_FEN)
    );
    let fin = finance(&app, DISTRICT).await;
    assert_consistent(&fin.verify(2022).await);

    // The audit log says who cancelled it, in which role, and why.
    let events = history(&app, DISTRICT, &ids[0]).await;
    assert_eq!(events.len(), before + 1);
    let last = events.last().unwrap();
    assert_eq!(
        (
            last.action.as_str(),
            last.actor_subject.as_str(),
            last.actor_role.as_str(),
            last.opinion.as_str(),
            last.state_before.as_str(),
            last.state_after.as_str(),
        ),
        (
            "case.approval_cancelled",
            "head",
            "bureau_head",
            "受助人已另获救助，\n撤销审批",
            "approved",
            "cancelled"
        )
    );
    assert_eq!(last.request_id, req.request_id);

    // Cancelled is final: it is not paid, withdrawn or cancelled again.
    expect_reason(
        fin.create(&ids[0]).await,
        Code::FailedPrecondition,
        ErrorReason::CaseNotApproved,
        &[],
    );
    expect_reason(
        app.applicant(DISTRICT, "street").withdraw(&ids[0]).await,
        Code::FailedPrecondition,
        ErrorReason::CaseState,
        &[("state", "cancelled")],
    );
    expect_reason(
        cancel(&head, &ids[0]).await,
        Code::FailedPrecondition,
        ErrorReason::CaseState,
        &[("state", "cancelled"), ("action", "cancel the approval of")],
    );

    // A district leader may cancel too; a stale version is refused first.
    let leader = person(&app, DISTRICT, &[Role::DistrictLeader], "leader-2").await;
    expect_reason(
        cancel_raw(
            &leader,
            pb::CancelApprovalRequest {
                expected_version: 1,
                ..cancel_request(&ids[1], "重复申请")
            },
        )
        .await,
        Code::Aborted,
        ErrorReason::VersionStale,
        &[],
    );
    assert_eq!(
        state(&cancel(&leader, &ids[1]).await.unwrap()),
        pb::CaseState::Cancelled
    );
    let balance = budget(&app, DISTRICT, 2022).await;
    assert_eq!(
        (balance.reserved_fen, balance.available_fen),
        (0, ALLOCATED_FEN)
    );
    assert_consistent(&fin.verify(2022).await);
    app.assert_chain_intact(DISTRICT).await;
}

async fn only_a_district_leader_or_the_bureau_head_cancels(backend: Backend) {
    let app = spawn_app(backend).await;
    one_step_district(&app, DISTRICT, ALLOCATED_FEN, &[]).await;
    let (_, ids) = approved_cases(&app, DISTRICT, 1).await;
    let refused = [
        caller(&app, &[Role::ApplicantUnit], Some("street"), "clerk").await,
        caller(&app, &[Role::CaseOfficer], None, "officer").await,
        caller(&app, &[Role::Finance], None, "finance").await,
        caller(&app, &[Role::DeputyLeader], None, "deputy").await,
        caller(&app, &[Role::BureauOffice], None, "office").await,
        caller(&app, &[Role::Auditor], None, "auditor").await,
    ];
    for who in &refused {
        expect_reason(
            cancel(who, &ids[0]).await,
            Code::PermissionDenied,
            ErrorReason::PermissionDenied,
            &[],
        );
    }
    // A city-scoped token naming the district is refused as well.
    let city = app.city(Role::CityAdmin);
    let req = cancel_request(&ids[0], "越权");
    let mut call = with_bearer(req, &city.token);
    call.metadata_mut()
        .insert(relief_auth::DISTRICT_HEADER, DISTRICT.parse().unwrap());
    expect_code(
        ApprovalServiceClient::new(channel(&app).await)
            .cancel_approval(call)
            .await,
        Code::PermissionDenied,
        "a city-scoped cancellation",
    );
    // Another district's bureau head does not see the case.
    one_step_district(&app, "430105", ALLOCATED_FEN, &[]).await;
    let other = person(&app, "430105", &[Role::BureauHead], "other-head").await;
    expect_reason(
        cancel(&other, &ids[0]).await,
        Code::NotFound,
        ErrorReason::NotFound,
        &[("resource", "case")],
    );
    let case = app.applicant(DISTRICT, "street").get_case(&ids[0]).await;
    assert_eq!(state(&case.unwrap()), pb::CaseState::Approved);
    assert_eq!(budget(&app, DISTRICT, 2022).await.reserved_fen, CASE_FEN);
}

async fn only_an_approved_case_without_a_payment_under_way_is_cancelled(backend: Backend) {
    let app = spawn_app(backend).await;
    one_step_district(&app, DISTRICT, ALLOCATED_FEN, &[]).await;
    let head = person(&app, DISTRICT, &[Role::BureauHead], "head").await;
    let fin = finance(&app, DISTRICT).await;

    let in_review = app
        .applicant(DISTRICT, "street")
        .submitted(valid_application())
        .await;
    expect_reason(
        cancel(&head, &in_review.case_id).await,
        Code::FailedPrecondition,
        ErrorReason::CaseState,
        &[("state", "in_review"), ("action", "cancel the approval of")],
    );

    let (_, ids) = approved_cases(&app, DISTRICT, 2).await;
    // A payment with the bank stands in the way.
    let pending = fin.create(&ids[0]).await.unwrap();
    let status = expect_reason(
        cancel(&head, &ids[0]).await,
        Code::FailedPrecondition,
        ErrorReason::PaymentExists,
        &[],
    );
    assert!(
        status.message().contains(&pending.payment_id),
        "{}",
        status.message()
    );
    // Paid, the case stays paid.
    fin.confirm(&pending.payment_id, "BR-1", "2022-06-30")
        .await
        .unwrap();
    expect_reason(
        cancel(&head, &ids[0]).await,
        Code::FailedPrecondition,
        ErrorReason::CaseState,
        &[("state", "paid")],
    );
    // A payment the bank refused no longer stands in the way.
    let failed = fin.create(&ids[1]).await.unwrap();
    fin.fail(&failed.payment_id, "账户冻结").await.unwrap();
    assert_eq!(
        state(&cancel(&head, &ids[1]).await.unwrap()),
        pb::CaseState::Cancelled
    );

    let balance = budget(&app, DISTRICT, 2022).await;
    assert_eq!((balance.reserved_fen, balance.paid_fen), (0, CASE_FEN));
    assert_consistent(&fin.verify(2022).await);
}

/// Per approved case, two cancellations by different people and a payment race: exactly one
/// of the three succeeds, and the books agree with whichever it was.
async fn racing_cancellations_and_payments_leave_one_outcome(backend: Backend) {
    const CASES: usize = 12;
    let app = spawn_app(backend).await;
    one_step_district(&app, DISTRICT, ALLOCATED_FEN, &[]).await;
    let (_, ids) = approved_cases(&app, DISTRICT, CASES).await;
    let head = person(&app, DISTRICT, &[Role::BureauHead], "head").await;
    let leader = person(&app, DISTRICT, &[Role::DistrictLeader], "leader-2").await;
    let fin = finance(&app, DISTRICT).await;

    let mut handles = Vec::new();
    for id in &ids {
        let (head, leader, fin) = (head.clone(), leader.clone(), fin.clone());
        let id = id.clone();
        handles.push(tokio::spawn(async move {
            let (a, b, paid) =
                tokio::join!(cancel(&head, &id), cancel(&leader, &id), fin.create(&id));
            (id, a.map(|_| ()), b.map(|_| ()), paid.map(|_| ()))
        }));
    }
    let mut payments_won = 0;
    for handle in handles {
        let (id, a, b, paid) = handle.await.unwrap();
        let outcomes = [&a, &b, &paid];
        assert_eq!(
            outcomes.iter().filter(|r| r.is_ok()).count(),
            1,
            "{id}: {outcomes:?}"
        );
        for refused in outcomes.iter().filter_map(|r| r.as_ref().err()) {
            assert_eq!(
                refused.code(),
                Code::FailedPrecondition,
                "{id}: {refused:?}"
            );
        }
        let case = app
            .applicant(DISTRICT, "street")
            .get_case(&id)
            .await
            .unwrap();
        if paid.is_ok() {
            payments_won += 1;
            assert_eq!(state(&case), pb::CaseState::Approved, "{id}");
        } else {
            assert_eq!(state(&case), pb::CaseState::Cancelled, "{id}");
        }
    }
    let balance = budget(&app, DISTRICT, 2022).await;
    assert_eq!(balance.reserved_fen, payments_won * CASE_FEN);
    assert_consistent(&fin.verify(2022).await);
    app.assert_chain_intact(DISTRICT).await;
}
