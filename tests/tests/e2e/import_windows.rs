//! Imports cannot create spending: a sync client's paid history for a year still being spent
//! is refused and moves no money until finance opens the year to imports; what an import
//! writes is marked imported in the ledger, where GetBudget and VerifyLedger show it apart
//! and agree; closed years take history without a window; and the window is finance's own
//! audited, idempotent mutation.

use relief_proto::v1 as pb;
use relief_proto::v1::ledger_service_client::LedgerServiceClient;
use relief_proto::v1::sync_service_client::SyncServiceClient;
use relief_tests::{
    Backend, Role, TestApp, WANGCHENG, backend_tests, expect_code, expect_violations, request_id,
    spawn_app, with_bearer,
};
use tonic::Code;

use crate::imports::record;
use crate::payments::finance;

backend_tests!(
    an_open_year_takes_imports_only_through_a_window_finance_opens,
    import_windows_are_finance_s_audited_and_idempotent,
);

/// 50,000 yuan, the district's per-case cap.
const BIG_FEN: i64 = 5_000_000;

/// A paid case of 2022 for 50,000 yuan, decided by people relief has never heard of.
fn big_paid_record(i: usize) -> pb::ImportCasesRequest {
    let mut r = record(i);
    r.external_id = format!("other-system-{i}");
    if let Some(a) = r.application.as_mut() {
        a.requested_amount_fen = BIG_FEN;
    }
    if let Some(p) = r.payment.as_mut() {
        p.amount_fen = BIG_FEN;
    }
    for d in &mut r.decisions {
        d.decided_by_subject = format!("made-up-{}", d.step_id);
        d.decided_by_name = "无此人".to_owned();
    }
    r
}

/// Imports `records` as the city's sync client naming Wangcheng.
async fn import_as_city_sync(
    app: &TestApp,
    records: Vec<pb::ImportCasesRequest>,
) -> pb::ImportCasesResponse {
    let token = app.token("city", &[Role::SyncClient], None, "city-warehouse");
    let mut req = with_bearer(tokio_stream::iter(records), &token);
    req.metadata_mut()
        .insert("x-relief-district", WANGCHENG.parse().unwrap());
    SyncServiceClient::new(app.channel())
        .import_cases(req)
        .await
        .unwrap()
        .into_inner()
}

fn outcome(answer: &pb::ImportCasesResponse) -> (pb::ImportOutcome, Vec<String>) {
    let r = &answer.results[0];
    (
        pb::ImportOutcome::try_from(r.outcome).unwrap(),
        r.violations.iter().map(|v| v.field.clone()).collect(),
    )
}

/// The year's balance and every ledger entry, as an auditor reads them.
async fn ledger(app: &TestApp, year: i32) -> (pb::BudgetBalance, Vec<pb::LedgerEntry>) {
    let token = app.token(WANGCHENG, &[Role::Auditor], None, "auditor");
    let resp = LedgerServiceClient::new(app.channel())
        .get_budget(with_bearer(
            pb::GetBudgetRequest {
                fiscal_year: year,
                page_size: 500,
                ..Default::default()
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(resp.next_page_token.is_empty());
    (resp.balance.unwrap(), resp.entries)
}

/// VerifyLedger finds the books whole and recomputes the balance GetBudget shows.
async fn assert_books_agree(app: &TestApp, year: i32) -> pb::BudgetBalance {
    let verified = finance(app, WANGCHENG).await.verify(year).await;
    assert!(verified.consistent, "{:?}", verified.problems);
    let (balance, _) = ledger(app, year).await;
    assert_eq!(
        verified.balance.as_ref(),
        Some(&balance),
        "VerifyLedger = GetBudget"
    );
    balance
}

async fn an_open_year_takes_imports_only_through_a_window_finance_opens(backend: Backend) {
    let app = spawn_app(backend).await;
    let (balance_before, entries_before) = ledger(&app, 2022).await;
    let events_before = app.events(WANGCHENG, None).await.len();
    assert!(!balance_before.closed && !balance_before.import_window_open);

    // 2022 is open and nobody opened it to imports: refused, nothing written.
    let refused = import_as_city_sync(&app, vec![big_paid_record(0)]).await;
    assert_eq!(
        outcome(&refused),
        (
            pb::ImportOutcome::Invalid,
            vec!["application.fiscal_year".to_owned()]
        )
    );
    let s = refused.summary.unwrap();
    assert_eq!((s.imported, s.invalid, s.imported_paid_fen), (0, 1, 0));
    assert_eq!(
        ledger(&app, 2022).await,
        (balance_before, entries_before.clone())
    );
    assert_eq!(app.events(WANGCHENG, None).await.len(), events_before);
    assert_books_agree(&app, 2022).await;

    // Finance opens the year: the same record is written, its money marked imported.
    let fin = finance(&app, WANGCHENG).await;
    let window = fin.open_import_window(2022).await;
    assert!(window.open);
    assert_eq!(window.fiscal_year, 2022);
    assert_eq!(window.opened_by, "finance-430112");
    let accepted = import_as_city_sync(&app, vec![big_paid_record(0)]).await;
    assert_eq!(
        outcome(&accepted),
        (pb::ImportOutcome::Imported, Vec::new())
    );
    let case_id = accepted.results[0].case_id.clone();
    let (balance, entries) = ledger(&app, 2022).await;
    assert!(balance.import_window_open);
    assert_eq!(balance.paid_fen, balance_before.paid_fen + BIG_FEN);
    assert_eq!(balance.imported_paid_fen, BIG_FEN);
    assert_eq!(
        balance.available_fen,
        balance_before.available_fen - BIG_FEN
    );
    let new: Vec<(i32, i64, &str, bool)> = entries[entries_before.len()..]
        .iter()
        .map(|e| (e.kind, e.amount_fen, e.case_id.as_str(), e.imported))
        .collect();
    assert_eq!(
        new,
        [
            (
                pb::LedgerEntryKind::Reserve as i32,
                BIG_FEN,
                case_id.as_str(),
                true
            ),
            (
                pb::LedgerEntryKind::Pay as i32,
                BIG_FEN,
                case_id.as_str(),
                true
            ),
        ]
    );
    assert!(
        entries_before.iter().all(|e| !e.imported),
        "the allocation is the year's own"
    );
    assert_eq!(assert_books_agree(&app, 2022).await, balance);

    // Closed again, the window refuses the next record.
    let closed = fin
        .close_import_window(2022, "历史数据已录入完毕")
        .await
        .unwrap();
    assert!(!closed.open);
    assert_eq!(closed.closed_by, "finance-430112");
    let refused = import_as_city_sync(&app, vec![big_paid_record(1)]).await;
    assert_eq!(outcome(&refused).0, pb::ImportOutcome::Invalid);
    assert_eq!(ledger(&app, 2022).await.0, {
        let mut b = balance;
        b.import_window_open = false;
        b
    });

    // A closed year takes history without a window, kept apart the same way.
    fin.close_year(2022).await.unwrap();
    let history = import_as_city_sync(&app, vec![big_paid_record(1)]).await;
    assert_eq!(outcome(&history), (pb::ImportOutcome::Imported, Vec::new()));
    let after = assert_books_agree(&app, 2022).await;
    assert!(after.closed);
    assert_eq!(after.imported_paid_fen, 2 * BIG_FEN);
    assert_eq!(after.paid_fen, balance_before.paid_fen + 2 * BIG_FEN);

    let actions = app.actions(WANGCHENG, Some("2022")).await;
    for action in [
        "import_window.opened",
        "import_window.closed",
        "fiscal_year.closed",
    ] {
        assert!(
            actions.iter().any(|a| a == action),
            "{action} in {actions:?}"
        );
    }
    app.assert_chain_intact(WANGCHENG).await;
}

async fn import_windows_are_finance_s_audited_and_idempotent(backend: Backend) {
    let app = spawn_app(backend).await;
    let fin = finance(&app, WANGCHENG).await;
    let reason = "录入2022年上半年线下办结案件";

    // Only the district's finance section opens a window.
    for (who, token) in [
        (
            "sync client",
            app.token(WANGCHENG, &[Role::SyncClient], None, "sync"),
        ),
        (
            "district admin",
            app.token(WANGCHENG, &[Role::DistrictAdmin], None, "admin"),
        ),
        (
            "auditor",
            app.token(WANGCHENG, &[Role::Auditor], None, "audit"),
        ),
        (
            "city sync client",
            app.token("city", &[Role::SyncClient], None, "city-sync"),
        ),
    ] {
        let mut req = with_bearer(
            pb::OpenImportWindowRequest {
                request_id: request_id(),
                fiscal_year: 2022,
                reason: reason.to_owned(),
                ..Default::default()
            },
            &token,
        );
        req.metadata_mut()
            .insert("x-relief-district", WANGCHENG.parse().unwrap());
        expect_code(
            LedgerServiceClient::new(app.channel())
                .open_import_window(req)
                .await,
            Code::PermissionDenied,
            who,
        );
    }
    expect_violations(
        fin.open_import_window_with(&request_id(), 2022, "  ").await,
        &["reason"],
        "no reason",
    );
    expect_violations(
        fin.open_import_window_with(&request_id(), 1999, reason)
            .await,
        &["fiscal_year"],
        "a year out of range",
    );

    // A retry answers the first call; a new request for an open window is refused.
    let id = request_id();
    let first = fin
        .open_import_window_with(&id, 2022, reason)
        .await
        .unwrap();
    assert_eq!(first.reason, reason);
    let again = fin
        .open_import_window_with(&id, 2022, reason)
        .await
        .unwrap();
    assert_eq!(first, again);
    expect_code(
        fin.open_import_window_with(&id, 2022, "另一个理由").await,
        Code::AlreadyExists,
        "the same id, another request",
    );
    expect_code(
        fin.open_import_window_with(&request_id(), 2022, reason)
            .await,
        Code::FailedPrecondition,
        "already open",
    );
    let opened: Vec<_> = app
        .events(WANGCHENG, Some("2022"))
        .await
        .into_iter()
        .filter(|e| e.action == "import_window.opened")
        .collect();
    assert_eq!(opened.len(), 1, "one event for the call and its retry");
    assert_eq!(opened[0].note.as_deref(), Some(reason));
    assert_eq!(opened[0].actor_role, "finance");

    // Closing needs an open window; a closed year needs none and gets none.
    expect_code(
        fin.close_import_window(2023, "无").await,
        Code::FailedPrecondition,
        "no window to close",
    );
    fin.close_year(2021).await.unwrap();
    expect_code(
        fin.open_import_window_with(&request_id(), 2021, reason)
            .await,
        Code::FailedPrecondition,
        "a closed year",
    );
    // Closed and opened again.
    fin.close_import_window(2022, "暂停").await.unwrap();
    let reopened = fin.open_import_window(2022).await;
    assert!(reopened.open && reopened.closed_by.is_empty() && reopened.close_time.is_none());
    app.assert_chain_intact(WANGCHENG).await;
}
