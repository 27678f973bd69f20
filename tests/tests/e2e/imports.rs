//! Onboarding a district with its history: 10,000 finished cases streamed in, counted by the
//! ledger and the reports like native ones; the same file again changes nothing; a file with
//! bad records imports the good ones and leaves nothing of the bad.

use std::time::Instant;

use relief_proto::v1 as pb;
use relief_proto::v1::sync_service_client::SyncServiceClient;
use relief_tests::{
    ApplicationBuilder, Backend, Role, TestApp, WANGCHENG, backend_tests, spawn_app, with_bearer,
};

use crate::approvals::{budget, channel};
use crate::payments::finance;
use crate::reports::indicators;

backend_tests!(
    a_district_imports_its_history_once,
    bad_records_leave_nothing_behind,
);

const AMOUNT_FEN: i64 = 10_000;

fn ts(s: &str) -> Option<prost_types::Timestamp> {
    let t = chrono::DateTime::parse_from_rfc3339(s).unwrap();
    Some(prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: 0,
    })
}

fn decision(step: &str, role: pb::Role, decision: pb::Decision, at: &str) -> pb::ImportedDecision {
    pb::ImportedDecision {
        step_id: step.to_owned(),
        step_name: String::new(),
        decision: decision as i32,
        approved_amount_fen: 0,
        opinion: "同意".to_owned(),
        decided_by_subject: format!("{step}-person"),
        decided_by_name: "经办人".to_owned(),
        decided_by_role: role as i32,
        decide_time: ts(at),
    }
}

/// Record `i` of the history: every tenth case rejected, the rest paid.
pub(crate) fn record(i: usize) -> pb::ImportCasesRequest {
    let rejected = i % 10 == 9;
    let mut decisions = vec![decision(
        "case_officer_review",
        pb::Role::CaseOfficer,
        pb::Decision::Approve,
        "2022-03-05T09:00:00+08:00",
    )];
    decisions.push(decision(
        "district_leader_approval",
        pb::Role::DistrictLeader,
        if rejected {
            pb::Decision::Reject
        } else {
            pb::Decision::Approve
        },
        "2022-03-20T09:00:00+08:00",
    ));
    pb::ImportCasesRequest {
        external_id: format!("legacy-{i:05}"),
        applicant_unit_id: format!("street-{}", i % 7),
        application: Some(
            ApplicationBuilder::new()
                .amount_fen(AMOUNT_FEN)
                .fiscal_year(2022)
                .build(),
        ),
        submit_time: ts("2022-03-01T10:00:00+08:00"),
        decisions,
        payment: (!rejected).then(|| pb::ImportedPayment {
            amount_fen: AMOUNT_FEN,
            voucher_number: format!("记-{i}"),
            bank_reference: format!("BR-{i}"),
            paid_date: "2022-04-01".to_owned(),
        }),
    }
}

async fn import(app: &TestApp, records: Vec<pb::ImportCasesRequest>) -> pb::ImportCasesResponse {
    let token = app.token(WANGCHENG, &[Role::DistrictAdmin], None, "admin-430112");
    SyncServiceClient::new(channel(app).await)
        .max_decoding_message_size(64 * 1024 * 1024)
        .import_cases(with_bearer(tokio_stream::iter(records), &token))
        .await
        .unwrap()
        .into_inner()
}

async fn a_district_imports_its_history_once(backend: Backend) {
    let app = spawn_app(backend).await;
    finance(&app, WANGCHENG)
        .await
        .open_import_window(2022)
        .await;
    let n = 10_000;
    let file: Vec<_> = (0..n).map(record).collect();
    let started = Instant::now();
    let first = import(&app, file.clone()).await;
    eprintln!("{backend:?}: imported {n} cases in {:?}", started.elapsed());
    let summary = first.summary.unwrap();
    let paid_cases = (n - n / 10) as i64;
    assert_eq!(
        (
            summary.received,
            summary.imported,
            summary.duplicates,
            summary.invalid
        ),
        (n as i64, n as i64, 0, 0)
    );
    assert_eq!(summary.imported_paid_fen, paid_cases * AMOUNT_FEN);
    assert_eq!(first.results.len(), n);
    assert!(
        first
            .results
            .iter()
            .enumerate()
            .all(|(i, r)| r.index == i as i64
                && r.outcome == pb::ImportOutcome::Imported as i32
                && !r.case_id.is_empty())
    );

    // The ledger and the reports count the imported history.
    let balance = budget(&app, WANGCHENG, 2022).await;
    assert_eq!(
        (balance.paid_fen, balance.reserved_fen),
        (paid_cases * AMOUNT_FEN, 0)
    );
    let fin = finance(&app, WANGCHENG).await;
    let verified = fin.verify(2022).await;
    assert!(verified.consistent, "{:?}", verified.problems);
    let ind = indicators(&app, WANGCHENG, 2022).await;
    assert_eq!(ind.achieved_case_count, paid_cases);
    assert_eq!(ind.paid_fen, paid_cases * AMOUNT_FEN);
    let rejected = ind
        .cases_by_state
        .iter()
        .find(|s| s.state == pb::CaseState::Rejected as i32)
        .map_or(0, |s| s.count);
    assert_eq!(rejected, (n / 10) as i64);
    app.assert_chain_intact(WANGCHENG).await;

    // The same file again: every record a duplicate of the same case, nothing written.
    let events = app.events(WANGCHENG, None).await.len();
    let again = import(&app, file).await;
    let s = again.summary.unwrap();
    assert_eq!((s.imported, s.duplicates, s.invalid), (0, n as i64, 0));
    for (a, b) in first.results.iter().zip(&again.results) {
        assert_eq!(a.case_id, b.case_id);
        assert_eq!(b.outcome, pb::ImportOutcome::Duplicate as i32);
    }
    assert_eq!(app.events(WANGCHENG, None).await.len(), events);
    assert_eq!(
        budget(&app, WANGCHENG, 2022).await.paid_fen,
        paid_cases * AMOUNT_FEN
    );
}

async fn bad_records_leave_nothing_behind(backend: Backend) {
    let app = spawn_app(backend).await;
    finance(&app, WANGCHENG)
        .await
        .open_import_window(2022)
        .await;
    let events = app.events(WANGCHENG, None).await.len();
    let good = record(0);
    let mut unpaid = record(1);
    unpaid.payment = None;
    let mut wrong_amount = record(2);
    if let Some(p) = wrong_amount.payment.as_mut() {
        p.amount_fen = AMOUNT_FEN + 1;
    }
    let mut paid_rejection = record(9);
    paid_rejection.payment = record(3).payment;
    let mut no_id = record(4);
    no_id.external_id = String::new();
    let mut early = record(5);
    early.decisions[0].decide_time = ts("2022-02-01T09:00:00+08:00");
    let mut no_resident = record(6);
    if let Some(r) = no_resident
        .application
        .as_mut()
        .and_then(|a| a.recipient.as_mut())
    {
        r.resident_id_number = String::new();
    }
    // More than the year's budget (1,280,000 yuan): the application asks for more than
    // any case of the year may.
    let mut too_much = record(7);
    if let Some(a) = too_much.application.as_mut() {
        a.requested_amount_fen = 200_000_000;
        a.over_cap_justification = "特殊困难".to_owned();
    }
    too_much.payment.as_mut().unwrap().amount_fen = 200_000_000;
    // The same external id as the good record, with other content.
    let mut reused = record(8);
    reused.external_id = good.external_id.clone();

    let answer = import(
        &app,
        vec![
            good,
            unpaid,
            wrong_amount,
            paid_rejection,
            no_id,
            early,
            no_resident,
            too_much,
            reused,
        ],
    )
    .await;
    let outcome = |i: usize| pb::ImportOutcome::try_from(answer.results[i].outcome).unwrap();
    let fields = |i: usize| -> Vec<String> {
        answer.results[i]
            .violations
            .iter()
            .map(|v| v.field.clone())
            .collect()
    };
    assert_eq!(outcome(0), pb::ImportOutcome::Imported);
    for i in 1..9 {
        assert_eq!(outcome(i), pb::ImportOutcome::Invalid, "record {i}");
        assert!(answer.results[i].case_id.is_empty());
    }
    assert_eq!(fields(1), ["payment"]);
    assert_eq!(fields(2), ["payment.amount_fen"]);
    assert_eq!(fields(3), ["payment"]);
    assert_eq!(fields(4), ["external_id"]);
    assert_eq!(fields(5), ["decisions[0].decide_time"]);
    assert_eq!(fields(6), ["application.recipient.resident_id_number"]);
    assert_eq!(fields(7), ["application.requested_amount_fen"]);
    assert_eq!(fields(8), ["external_id"]);
    let s = answer.summary.unwrap();
    assert_eq!((s.received, s.imported, s.invalid), (9, 1, 8));
    // Only the good record left anything: one case (and its payment) in the log, and its
    // money in the ledger, each entry with its event.
    let new_events = app.events(WANGCHENG, None).await;
    let actions: Vec<&str> = new_events[events..]
        .iter()
        .map(|e| e.action.as_str())
        .collect();
    assert_eq!(
        actions,
        [
            "case.imported",
            "payment.imported",
            "ledger.entry_added",
            "ledger.entry_added"
        ]
    );
    assert_eq!(budget(&app, WANGCHENG, 2022).await.paid_fen, AMOUNT_FEN);
}
