//! Disbursement, the fund ledger and follow-up over gRPC: the whole path from submission to
//! payment to follow-up, idempotent payment creation, every refusal, failed payments retried,
//! reconciliation, closing a year, and the ledger's invariants under concurrent load.

use relief_proto::v1 as pb;
use relief_proto::v1::disbursement_service_client::DisbursementServiceClient;
use relief_proto::v1::follow_up_service_client::FollowUpServiceClient;
use relief_proto::v1::ledger_service_client::LedgerServiceClient;
use relief_tests::{
    ApplicationBuilder, Backend, Role, SHA256_EMPTY, TestApp, WANGCHENG, backend_tests,
    expect_code, request_id, spawn_app, valid_application, violation_fields, with_bearer,
};
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::approvals::{
    Person, budget, bureau, channel, one_step_district, person, rules_update, state,
};

/// The finance section (财务科) of a district.
#[derive(Clone)]
pub(crate) struct Finance {
    pub(crate) token: String,
    pub(crate) pay: DisbursementServiceClient<Channel>,
    pub(crate) ledger: LedgerServiceClient<Channel>,
}

pub(crate) async fn finance(app: &TestApp, district: &str) -> Finance {
    let ch = channel(app).await;
    Finance {
        token: app.token(
            district,
            &[Role::Finance],
            None,
            &format!("finance-{district}"),
        ),
        pay: DisbursementServiceClient::new(ch.clone()),
        ledger: LedgerServiceClient::new(ch),
    }
}

impl Finance {
    async fn create_with(
        &self,
        request_id: &str,
        case_id: &str,
        voucher: &str,
        amount_fen: i64,
    ) -> Result<pb::Payment, Status> {
        let req = pb::CreatePaymentRequest {
            request_id: request_id.to_owned(),
            case_id: case_id.to_owned(),
            voucher_number: voucher.to_owned(),
            amount_fen,
            ..Default::default()
        };
        Ok(self
            .pay
            .clone()
            .create_payment(with_bearer(req, &self.token))
            .await?
            .into_inner()
            .payment
            .unwrap())
    }

    pub(crate) async fn create(&self, case_id: &str) -> Result<pb::Payment, Status> {
        self.create_with(&request_id(), case_id, "记账凭证-001", 0)
            .await
    }

    pub(crate) async fn confirm(
        &self,
        payment_id: &str,
        bank_reference: &str,
        paid_date: &str,
    ) -> Result<pb::ConfirmPaymentResponse, Status> {
        let req = pb::ConfirmPaymentRequest {
            request_id: request_id(),
            payment_id: payment_id.to_owned(),
            bank_reference: bank_reference.to_owned(),
            paid_date: paid_date.to_owned(),
            ..Default::default()
        };
        Ok(self
            .pay
            .clone()
            .confirm_payment(with_bearer(req, &self.token))
            .await?
            .into_inner())
    }

    pub(crate) async fn fail(&self, payment_id: &str, reason: &str) -> Result<pb::Payment, Status> {
        let req = pb::FailPaymentRequest {
            request_id: request_id(),
            payment_id: payment_id.to_owned(),
            reason: reason.to_owned(),
            ..Default::default()
        };
        Ok(self
            .pay
            .clone()
            .fail_payment(with_bearer(req, &self.token))
            .await?
            .into_inner()
            .payment
            .unwrap())
    }

    async fn payments_of(&self, case_id: &str) -> Vec<pb::Payment> {
        let req = pb::ListPaymentsRequest {
            case_id: case_id.to_owned(),
            ..Default::default()
        };
        self.pay
            .clone()
            .list_payments(with_bearer(req, &self.token))
            .await
            .unwrap()
            .into_inner()
            .payments
    }

    pub(crate) async fn verify(&self, year: i32) -> pb::VerifyLedgerResponse {
        let req = pb::VerifyLedgerRequest {
            fiscal_year: year,
            ..Default::default()
        };
        self.ledger
            .clone()
            .verify_ledger(with_bearer(req, &self.token))
            .await
            .unwrap()
            .into_inner()
    }

    pub(crate) async fn close_year(
        &self,
        year: i32,
    ) -> Result<pb::CloseFiscalYearResponse, Status> {
        let req = pb::CloseFiscalYearRequest {
            request_id: request_id(),
            fiscal_year: year,
            ..Default::default()
        };
        Ok(self
            .ledger
            .clone()
            .close_fiscal_year(with_bearer(req, &self.token))
            .await?
            .into_inner())
    }

    pub(crate) async fn open_import_window_with(
        &self,
        request_id: &str,
        year: i32,
        reason: &str,
    ) -> Result<pb::ImportWindow, Status> {
        let req = pb::OpenImportWindowRequest {
            request_id: request_id.to_owned(),
            fiscal_year: year,
            reason: reason.to_owned(),
            ..Default::default()
        };
        Ok(self
            .ledger
            .clone()
            .open_import_window(with_bearer(req, &self.token))
            .await?
            .into_inner()
            .window
            .unwrap())
    }

    /// Opens `year` to imported history.
    pub(crate) async fn open_import_window(&self, year: i32) -> pb::ImportWindow {
        self.open_import_window_with(&request_id(), year, "录入启用本系统前已办结的案件")
            .await
            .unwrap()
    }

    pub(crate) async fn close_import_window(
        &self,
        year: i32,
        reason: &str,
    ) -> Result<pb::ImportWindow, Status> {
        let req = pb::CloseImportWindowRequest {
            request_id: request_id(),
            fiscal_year: year,
            reason: reason.to_owned(),
            ..Default::default()
        };
        Ok(self
            .ledger
            .clone()
            .close_import_window(with_bearer(req, &self.token))
            .await?
            .into_inner()
            .window
            .unwrap())
    }
}

pub(crate) fn assert_consistent(v: &pb::VerifyLedgerResponse) {
    assert!(v.consistent, "ledger problems: {:?}", v.problems);
    assert!(v.problems.is_empty());
}

/// A one-step district with the leader who approves there and its applicant.
pub(crate) async fn approved_cases(
    app: &TestApp,
    district: &str,
    n: usize,
) -> (Person, Vec<String>) {
    let applicant = app.applicant(district, "street");
    let leader = person(
        app,
        district,
        &[Role::DistrictLeader],
        &format!("leader-{district}"),
    )
    .await;
    let mut ids = Vec::new();
    for _ in 0..n {
        let id = applicant.submitted(valid_application()).await.case_id;
        leader.approve(&id, "approve").await;
        ids.push(id);
    }
    (leader, ids)
}

async fn full_path_from_submission_to_follow_up(backend: Backend) {
    let app = spawn_app(backend).await;
    let applicant = app.applicant(WANGCHENG, "gaotangling");
    let b = bureau(&app, WANGCHENG).await;
    let fin = finance(&app, WANGCHENG).await;
    let id = applicant
        .submitted(ApplicationBuilder::new().amount_fen(2_600_000).build())
        .await
        .case_id;
    b.to_meeting(&id).await;
    b.meeting_approves(&[&id]).await;
    b.leader.approve(&id, "district_leader_approval").await;

    let payment = fin.create(&id).await.unwrap();
    assert_eq!(
        pb::PaymentState::try_from(payment.state).unwrap(),
        pb::PaymentState::Pending
    );
    assert_eq!(payment.amount_fen, 2_600_000);
    assert_eq!(payment.receiving_unit_name, "高塘岭街道财政所");
    let confirmed = fin
        .confirm(&payment.payment_id, "BR-2022-0001", "2022-06-30")
        .await
        .unwrap();
    assert_eq!(state(confirmed.case.as_ref().unwrap()), pb::CaseState::Paid);
    assert_eq!(confirmed.payment.unwrap().paid_date, "2022-06-30");

    let balance = budget(&app, WANGCHENG, 2022).await;
    assert_eq!((balance.reserved_fen, balance.paid_fen), (0, 2_600_000));
    assert_consistent(&fin.verify(2022).await);

    // Follow-ups at 90, 180 and 365 days.
    let officer_token = app.token(WANGCHENG, &[Role::CaseOfficer], None, "officer-430112");
    let mut follow = FollowUpServiceClient::new(channel(&app).await);
    let req = pb::ListCaseFollowUpsRequest {
        case_id: id.clone(),
        ..Default::default()
    };
    let all = follow
        .list_case_follow_ups(with_bearer(req, &officer_token))
        .await
        .unwrap()
        .into_inner()
        .follow_ups;
    let due: Vec<&str> = all.iter().map(|f| f.due_date.as_str()).collect();
    assert_eq!(due, ["2022-09-28", "2022-12-27", "2023-06-30"]);
    let req = pb::ListDueFollowUpsRequest {
        due_on_or_before: "2022-12-31".to_owned(),
        ..Default::default()
    };
    let todo = follow
        .list_due_follow_ups(with_bearer(req, &officer_token))
        .await
        .unwrap()
        .into_inner()
        .follow_ups;
    assert_eq!(todo.len(), 2);
    let record = |f: &pb::FollowUp, again: bool| pb::RecordFollowUpRequest {
        request_id: request_id(),
        follow_up_id: f.follow_up_id.clone(),
        done_date: f.due_date.clone(),
        method: "电话回访".to_owned(),
        petitioned_again: again,
        notes: "生活已恢复正常".to_owned(),
        ..Default::default()
    };
    follow
        .record_follow_up(with_bearer(record(&all[0], false), &officer_token))
        .await
        .unwrap();
    assert!(!applicant.get_case(&id).await.unwrap().petitioned_again);
    // Recording it twice is refused.
    expect_code(
        follow
            .record_follow_up(with_bearer(record(&all[0], false), &officer_token))
            .await,
        Code::FailedPrecondition,
        "recording twice",
    );
    // A finance person does not record follow-ups.
    expect_code(
        follow
            .record_follow_up(with_bearer(record(&all[1], false), &fin.token))
            .await,
        Code::PermissionDenied,
        "finance recording",
    );
    follow
        .record_follow_up(with_bearer(record(&all[1], true), &officer_token))
        .await
        .unwrap();
    assert!(
        applicant.get_case(&id).await.unwrap().petitioned_again,
        "a re-petition shows on the case"
    );
    let req = pb::ListDueFollowUpsRequest {
        due_on_or_before: "2022-12-31".to_owned(),
        ..Default::default()
    };
    assert!(
        follow
            .list_due_follow_ups(with_bearer(req, &officer_token))
            .await
            .unwrap()
            .into_inner()
            .follow_ups
            .is_empty()
    );
    app.assert_chain_intact(WANGCHENG).await;
}

async fn payment_creation_is_idempotent(backend: Backend) {
    let app = spawn_app(backend).await;
    one_step_district(&app, "430104", 100_000_000, &[]).await;
    let (_, ids) = approved_cases(&app, "430104", 1).await;
    let fin = finance(&app, "430104").await;
    let rid = request_id();
    let results = futures::future::join_all((0..10).map(|_| {
        let fin = fin.clone();
        let rid = rid.clone();
        let id = ids[0].clone();
        tokio::spawn(async move { fin.create_with(&rid, &id, "凭证-7", 0).await })
    }))
    .await;
    let payment_ids: Vec<String> = results
        .into_iter()
        .map(|r| r.unwrap().unwrap().payment_id)
        .collect();
    assert!(
        payment_ids.iter().all(|p| p == &payment_ids[0]),
        "every retry returns the same payment"
    );
    assert_eq!(fin.payments_of(&ids[0]).await.len(), 1);
    let other = fin.create_with(&rid, &ids[0], "凭证-8", 0).await;
    expect_code(
        other,
        Code::AlreadyExists,
        "the same request id with another payload",
    );
    assert_eq!(
        app.actions("430104", Some(&payment_ids[0])).await,
        ["payment.created"]
    );
}

async fn every_payment_refusal(backend: Backend) {
    let app = spawn_app(backend).await;
    one_step_district(&app, "430104", 100_000_000, &["息诉罢访承诺书"]).await;
    let applicant = app.applicant("430104", "street");
    let (_, ids) = approved_cases(&app, "430104", 2).await;
    let fin = finance(&app, "430104").await;

    // An unapproved case.
    let pending = applicant.submitted(valid_application()).await.case_id;
    expect_code(
        fin.create(&pending).await,
        Code::FailedPrecondition,
        "paying an unapproved case",
    );
    // A non-finance role.
    let leader_pay = pb::CreatePaymentRequest {
        request_id: request_id(),
        case_id: ids[0].clone(),
        voucher_number: "v".to_owned(),
        ..Default::default()
    };
    let leader_token = app.token("430104", &[Role::DistrictLeader], None, "leader-x");
    expect_code(
        fin.pay
            .clone()
            .create_payment(with_bearer(leader_pay, &leader_token))
            .await,
        Code::PermissionDenied,
        "a leader paying",
    );
    // Without the required document.
    let missing = expect_code(
        fin.create(&ids[0]).await,
        Code::FailedPrecondition,
        "paying without the pledge",
    );
    assert!(
        missing.message().contains("息诉罢访承诺书"),
        "{}",
        missing.message()
    );
    for id in &ids {
        let req = pb::AddCaseDocumentRequest {
            request_id: request_id(),
            case_id: id.clone(),
            document: Some(pb::Attachment {
                document_type: "息诉罢访承诺书".to_owned(),
                name: "承诺书.pdf".to_owned(),
                media_type: "application/pdf".to_owned(),
                sha256_hex: SHA256_EMPTY.to_owned(),
                size_bytes: 2048,
                ..Default::default()
            }),
            ..Default::default()
        };
        fin.pay
            .clone()
            .add_case_document(with_bearer(req, &applicant.token))
            .await
            .unwrap();
    }
    // More than approved, or less.
    let more = expect_code(
        fin.create_with(&request_id(), &ids[0], "v", 2_000_001)
            .await,
        Code::InvalidArgument,
        "paying more",
    );
    assert_eq!(violation_fields(&more), ["amount_fen"]);
    expect_code(
        fin.create_with(&request_id(), &ids[0], "v", 1_999_999)
            .await,
        Code::InvalidArgument,
        "paying less",
    );
    // Twice: while pending, and once paid.
    let p = fin
        .create_with(&request_id(), &ids[0], "v", 2_000_000)
        .await
        .unwrap();
    expect_code(
        fin.create(&ids[0]).await,
        Code::FailedPrecondition,
        "a second payment while one is pending",
    );
    expect_code(
        fin.confirm(&p.payment_id, "BR-1", "2023-01-05").await,
        Code::InvalidArgument,
        "paid outside the fiscal year",
    );
    fin.confirm(&p.payment_id, "BR-1", "2022-12-30")
        .await
        .unwrap();
    expect_code(
        fin.create(&ids[0]).await,
        Code::FailedPrecondition,
        "paying twice",
    );
    expect_code(
        fin.confirm(&p.payment_id, "BR-1", "2022-12-30").await,
        Code::FailedPrecondition,
        "confirming twice",
    );
    // A closed year takes no more payments.
    let closed = fin.close_year(2022).await.unwrap();
    assert_eq!(closed.unused_fen, 100_000_000 - 4_000_000);
    expect_code(
        fin.create(&ids[1]).await,
        Code::FailedPrecondition,
        "paying in a closed year",
    );
    expect_code(
        fin.close_year(2022).await,
        Code::FailedPrecondition,
        "closing twice",
    );
    assert_consistent(&fin.verify(2022).await);
}

async fn failed_payments_are_retried(backend: Backend) {
    let app = spawn_app(backend).await;
    one_step_district(&app, "430104", 100_000_000, &[]).await;
    let (_, ids) = approved_cases(&app, "430104", 1).await;
    let fin = finance(&app, "430104").await;
    let first = fin.create(&ids[0]).await.unwrap();
    let failed = fin.fail(&first.payment_id, "账户已销户").await.unwrap();
    assert_eq!(
        pb::PaymentState::try_from(failed.state).unwrap(),
        pb::PaymentState::Failed
    );
    expect_code(
        fin.confirm(&first.payment_id, "BR-9", "2022-12-01").await,
        Code::FailedPrecondition,
        "confirming a failed payment",
    );
    let balance = budget(&app, "430104", 2022).await;
    assert_eq!(
        (balance.reserved_fen, balance.paid_fen),
        (2_000_000, 0),
        "a failed payment keeps the reservation"
    );
    let second = fin.create(&ids[0]).await.unwrap();
    assert_ne!(second.payment_id, first.payment_id);
    fin.confirm(&second.payment_id, "BR-10", "2022-12-02")
        .await
        .unwrap();
    let payments = fin.payments_of(&ids[0]).await;
    let paid = payments
        .iter()
        .filter(|p| p.state == pb::PaymentState::Paid as i32)
        .count();
    assert_eq!((payments.len(), paid), (2, 1));
    let balance = budget(&app, "430104", 2022).await;
    assert_eq!((balance.reserved_fen, balance.paid_fen), (0, 2_000_000));
    assert_consistent(&fin.verify(2022).await);
}

async fn reconciliation_lists_what_does_not_match(backend: Backend) {
    let app = spawn_app(backend).await;
    one_step_district(&app, "430104", 100_000_000, &[]).await;
    let (_, ids) = approved_cases(&app, "430104", 3).await;
    let fin = finance(&app, "430104").await;
    let mut pids = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let p = fin.create(id).await.unwrap();
        fin.confirm(&p.payment_id, &format!("BR-{i}"), "2022-11-11")
            .await
            .unwrap();
        pids.push(p.payment_id);
    }
    let csv = "date,amount,reference,account\n2022-11-11,20000.00,BR-0,6230901234561234\n2022-11-11,19000.00,BR-1,6230901234561234\n2022-11-12,50.00,BR-404,1\n";
    let req = pb::ReconcileStatementRequest {
        statement_csv: csv.to_owned(),
        ..Default::default()
    };
    let r = fin
        .pay
        .clone()
        .reconcile_statement(with_bearer(req, &fin.token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.matched_count, 1);
    assert_eq!(r.unmatched_lines, [4]);
    assert_eq!(r.mismatches.len(), 1);
    assert_eq!(
        (
            r.mismatches[0].line,
            r.mismatches[0].statement_amount_fen,
            r.mismatches[0].payment_amount_fen
        ),
        (3, 1_900_000, 2_000_000)
    );
    assert_eq!(r.unmatched_payment_ids, [pids[2].clone()]);
    let bad = pb::ReconcileStatementRequest {
        statement_csv: "2022-02-30,1.00,R,A\n".to_owned(),
        ..Default::default()
    };
    let status = expect_code(
        fin.pay
            .clone()
            .reconcile_statement(with_bearer(bad, &fin.token))
            .await,
        Code::InvalidArgument,
        "a bad statement",
    );
    assert_eq!(violation_fields(&status), ["statement_csv.line[1]"]);
}

async fn the_budget_cannot_drop_below_what_is_committed(backend: Backend) {
    let app = spawn_app(backend).await;
    one_step_district(&app, "430104", 10_000_000, &[]).await;
    let (_, _ids) = approved_cases(&app, "430104", 3).await;
    let admin = app.staff("430104", Role::DistrictAdmin);
    let district = admin.get_district("430104").await.unwrap();
    let mut rules = district.rules.unwrap();
    rules.budgets[0].allocated_fen = 5_000_000;
    expect_code(
        admin
            .update_fund_rules(rules_update("430104", rules.clone()))
            .await,
        Code::FailedPrecondition,
        "budget below reservations",
    );
    rules.budgets[0].allocated_fen = 20_000_000;
    admin
        .update_fund_rules(rules_update("430104", rules))
        .await
        .unwrap();
    let balance = budget(&app, "430104", 2022).await;
    assert_eq!(
        (balance.allocated_fen, balance.reserved_fen),
        (20_000_000, 6_000_000)
    );
    assert_consistent(&finance(&app, "430104").await.verify(2022).await);
}

async fn concurrent_payments_and_approvals_keep_the_books(backend: Backend) {
    let app = spawn_app(backend).await;
    // The budget covers 30 of the 40 cases.
    one_step_district(&app, "430104", 30 * 2_000_000, &[]).await;
    let applicant = app.applicant("430104", "street");
    let leader = person(&app, "430104", &[Role::DistrictLeader], "leader").await;
    let fin = finance(&app, "430104").await;
    let mut ids = Vec::new();
    for _ in 0..40 {
        ids.push(applicant.submitted(valid_application()).await.case_id);
    }
    let tasks = ids.iter().cloned().map(|id| {
        let leader = leader.clone();
        let fin = fin.clone();
        tokio::spawn(async move {
            if leader
                .decide(&id, "approve", pb::Decision::Approve, 0, "", "同意")
                .await
                .is_err()
            {
                return (false, false);
            }
            // Two racing payment attempts per case: at most one may be live.
            let (a, b) = tokio::join!(fin.create(&id), fin.create(&id));
            let created: Vec<pb::Payment> = [a, b].into_iter().filter_map(Result::ok).collect();
            assert_eq!(created.len(), 1, "exactly one live payment per case");
            let ok = fin
                .confirm(&created[0].payment_id, &format!("BR-{id}"), "2022-12-15")
                .await
                .is_ok();
            (true, ok)
        })
    });
    let outcomes: Vec<(bool, bool)> = futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let approved = outcomes.iter().filter(|o| o.0).count();
    let paid = outcomes.iter().filter(|o| o.1).count();
    assert_eq!((approved, paid), (30, 30));
    let v = fin.verify(2022).await;
    assert_consistent(&v);
    let b = v.balance.unwrap();
    assert_eq!(
        (b.allocated_fen, b.reserved_fen, b.paid_fen, b.available_fen),
        (60_000_000, 0, 60_000_000, 0)
    );
    app.assert_chain_intact("430104").await;
}

async fn a_returned_payment_goes_back_to_reserved(backend: Backend) {
    let app = spawn_app(backend).await;
    one_step_district(&app, "430104", 100_000_000, &[]).await;
    let (_, ids) = approved_cases(&app, "430104", 1).await;
    let fin = finance(&app, "430104").await;
    let p = fin.create(&ids[0]).await.unwrap();
    fin.confirm(&p.payment_id, "BR-77", "2022-07-01")
        .await
        .unwrap();
    let reverse = |payment_id: String| {
        let fin = fin.clone();
        async move {
            let req = pb::ReversePaymentRequest {
                request_id: request_id(),
                payment_id,
                reason: "收款账户已销户，银行退汇".to_owned(),
                ..Default::default()
            };
            fin.pay
                .clone()
                .reverse_payment(with_bearer(req, &fin.token))
                .await
        }
    };
    let pending = fin.create(&ids[0]).await;
    expect_code(pending, Code::FailedPrecondition, "paying a paid case");
    let back = reverse(p.payment_id.clone()).await.unwrap().into_inner();
    assert_eq!(state(back.case.as_ref().unwrap()), pb::CaseState::Approved);
    assert_eq!(
        back.payment.unwrap().state,
        pb::PaymentState::Reversed as i32
    );
    let balance = budget(&app, "430104", 2022).await;
    assert_eq!((balance.reserved_fen, balance.paid_fen), (2_000_000, 0));
    expect_code(
        reverse(p.payment_id.clone()).await,
        Code::FailedPrecondition,
        "reversing twice",
    );
    let officer = app.token("430104", &[Role::CaseOfficer], None, "officer");
    let follow = FollowUpServiceClient::new(channel(&app).await)
        .list_case_follow_ups(with_bearer(
            pb::ListCaseFollowUpsRequest {
                case_id: ids[0].clone(),
                ..Default::default()
            },
            &officer,
        ))
        .await
        .unwrap()
        .into_inner()
        .follow_ups;
    assert!(
        follow.is_empty(),
        "the returned payment's follow-ups are cancelled"
    );
    assert_consistent(&fin.verify(2022).await);
    // Paid again to a corrected account.
    let again = fin.create(&ids[0]).await.unwrap();
    fin.confirm(&again.payment_id, "BR-78", "2022-07-15")
        .await
        .unwrap();
    let balance = budget(&app, "430104", 2022).await;
    assert_eq!((balance.reserved_fen, balance.paid_fen), (0, 2_000_000));
    assert_consistent(&fin.verify(2022).await);
    let kinds: Vec<i32> = fin
        .ledger
        .clone()
        .get_budget(with_bearer(
            pb::GetBudgetRequest {
                fiscal_year: 2022,
                ..Default::default()
            },
            &fin.token,
        ))
        .await
        .unwrap()
        .into_inner()
        .entries
        .iter()
        .map(|e| e.kind)
        .collect();
    use pb::LedgerEntryKind as K;
    assert_eq!(
        kinds,
        [
            K::Allocate as i32,
            K::Reserve as i32,
            K::Pay as i32,
            K::Reverse as i32,
            K::Pay as i32
        ]
    );
}

backend_tests!(
    full_path_from_submission_to_follow_up,
    payment_creation_is_idempotent,
    every_payment_refusal,
    failed_payments_are_retried,
    reconciliation_lists_what_does_not_match,
    the_budget_cannot_drop_below_what_is_committed,
    concurrent_payments_and_approvals_keep_the_books,
    a_returned_payment_goes_back_to_reserved,
);
