//! Lists paged by key: a list worked through page by page, with each row acted on as soon as
//! it is seen (so that it leaves the list before the next page is asked for), shows every row
//! exactly once; a list read page by page shows what one page holding it all shows, in the
//! same order, ties in the sort key included.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{Duration, TimeZone, Utc};
use relief_domain::{Clock, ManualClock};
use relief_proto::v1 as pb;
use relief_proto::v1::follow_up_service_client::FollowUpServiceClient;
use relief_tests::{
    Backend, Role, WANGCHENG, backend_tests, request_id, spawn_app, spawn_app_with_clock,
    valid_application, with_bearer,
};

use crate::approvals::{DEPUTY, OFFICER, bureau, channel, one_step_district};
use crate::payments::{approved_cases, finance};

backend_tests!(
    an_inbox_worked_through_page_by_page_skips_no_task,
    payments_entries_and_follow_ups_page_by_key,
);

/// Every row is seen once: none skipped, none twice.
fn once(seen: &[String], expected: usize, what: &str) {
    let distinct: HashSet<&String> = seen.iter().collect();
    assert_eq!(
        distinct.len(),
        seen.len(),
        "{what}: a row seen twice: {seen:?}"
    );
    assert_eq!(seen.len(), expected, "{what}: rows skipped: {seen:?}");
}

async fn an_inbox_worked_through_page_by_page_skips_no_task(backend: Backend) {
    let start = Utc.with_ymd_and_hms(2022, 3, 1, 9, 0, 0).unwrap();
    let clock = Arc::new(ManualClock::new(start));
    let app = spawn_app_with_clock(backend, clock.clone() as Arc<dyn Clock>).await;
    let applicant = app.applicant(WANGCHENG, "gaotangling");
    let b = bureau(&app, WANGCHENG).await;
    // Seven cases: three arriving a minute apart, then four at the same moment (ordered by
    // id).
    let mut submitted = Vec::new();
    for i in 0..7 {
        if i < 4 {
            clock.set(start + Duration::minutes(i));
        }
        submitted.push(applicant.submitted(valid_application()).await.case_id);
    }

    // Days later all seven are overdue. The bureau head pages the overdue list two at a
    // time while the officer decides each case as soon as the head sees it, which takes it
    // off the list.
    clock.set(start + Duration::days(10));
    let mut seen = Vec::new();
    let mut page_token = String::new();
    loop {
        let req = pb::ListOverdueRequest {
            page_size: 2,
            page_token,
        };
        let page = b
            .head
            .approvals
            .clone()
            .list_overdue(with_bearer(req, &b.head.token))
            .await
            .unwrap()
            .into_inner();
        assert!(page.tasks.len() <= 2);
        for t in &page.tasks {
            let id = t.case.as_ref().unwrap().case_id.clone();
            b.officer.approve(&id, OFFICER).await;
            seen.push(id);
        }
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    once(&seen, 7, "the overdue list");
    let mut expected = submitted.clone();
    expected[3..].sort();
    assert_eq!(seen, expected, "longest overdue first, then by id");

    // The deputy works through the inbox the same way; cases arrive at the step at the same
    // moment, so only their ids order them.
    let mut seen = Vec::new();
    let mut page_token = String::new();
    loop {
        let req = pb::ListMyTasksRequest {
            page_size: 2,
            page_token,
        };
        let page = b
            .deputy
            .approvals
            .clone()
            .list_my_tasks(with_bearer(req, &b.deputy.token))
            .await
            .unwrap()
            .into_inner();
        assert!(page.tasks.len() <= 2);
        for t in &page.tasks {
            let id = t.case.as_ref().unwrap().case_id.clone();
            b.deputy.approve(&id, DEPUTY).await;
            seen.push(id);
            // The clock moves on while the inbox is worked through.
            clock.set(clock.now() + Duration::minutes(1));
        }
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    once(&seen, 7, "the inbox");
    let mut by_id = submitted.clone();
    by_id.sort();
    assert_eq!(seen, by_id, "arrival at the step, then id");
    assert!(b.deputy.tasks().await.is_empty());
}

async fn payments_entries_and_follow_ups_page_by_key(backend: Backend) {
    const TIANXIN: &str = "430103";
    let app = spawn_app(backend).await;
    one_step_district(&app, TIANXIN, 100 * 2_000_000, &[]).await;
    let (_, cases) = approved_cases(&app, TIANXIN, 5).await;
    let fin = finance(&app, TIANXIN).await;
    for id in &cases {
        let p = fin.create(id).await.unwrap();
        fin.confirm(&p.payment_id, &format!("BR-{id}"), "2022-06-30")
            .await
            .unwrap();
    }

    // Payments, newest first: two at a time, as one page shows them.
    let list = |page_size, page_token| {
        let fin = fin.clone();
        async move {
            let req = pb::ListPaymentsRequest {
                page_size,
                page_token,
                ..Default::default()
            };
            fin.pay
                .clone()
                .list_payments(with_bearer(req, &fin.token))
                .await
                .unwrap()
                .into_inner()
        }
    };
    let all: Vec<String> = list(100, String::new())
        .await
        .payments
        .into_iter()
        .map(|p| p.payment_id)
        .collect();
    assert_eq!(all.len(), 5);
    let mut paged = Vec::new();
    let mut token = String::new();
    loop {
        let page = list(2, token).await;
        paged.extend(page.payments.into_iter().map(|p| p.payment_id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(paged, all, "payments paged by key");

    // The year's ledger entries, by id.
    let budget = |page_size, page_token| {
        let fin = fin.clone();
        async move {
            let req = pb::GetBudgetRequest {
                fiscal_year: 2022,
                page_size,
                page_token,
                ..Default::default()
            };
            fin.ledger
                .clone()
                .get_budget(with_bearer(req, &fin.token))
                .await
                .unwrap()
                .into_inner()
        }
    };
    let all: Vec<i64> = budget(100, String::new())
        .await
        .entries
        .into_iter()
        .map(|e| e.entry_id)
        .collect();
    assert!(all.len() >= 10, "{all:?}");
    let mut paged = Vec::new();
    let mut token = String::new();
    loop {
        let page = budget(3, token).await;
        paged.extend(page.entries.into_iter().map(|e| e.entry_id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(paged, all, "ledger entries paged by key");

    // Fifteen follow-ups, three per case, due on the same three dates: an officer records
    // each as soon as the list shows it, two at a time, and none is skipped.
    let officer = app.token(TIANXIN, &[Role::CaseOfficer], None, "officer-tianxin");
    let mut follow = FollowUpServiceClient::new(channel(&app).await);
    let mut seen = Vec::new();
    let mut page_token = String::new();
    loop {
        let req = pb::ListDueFollowUpsRequest {
            due_on_or_before: "2023-12-31".to_owned(),
            page_size: 2,
            page_token,
        };
        let page = follow
            .list_due_follow_ups(with_bearer(req, &officer))
            .await
            .unwrap()
            .into_inner();
        for f in &page.follow_ups {
            let req = pb::RecordFollowUpRequest {
                request_id: request_id(),
                follow_up_id: f.follow_up_id.clone(),
                done_date: f.due_date.clone(),
                method: "电话回访".to_owned(),
                petitioned_again: false,
                notes: "生活已恢复正常".to_owned(),
                ..Default::default()
            };
            follow
                .record_follow_up(with_bearer(req, &officer))
                .await
                .unwrap();
            seen.push(f.follow_up_id.clone());
        }
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    once(&seen, 15, "the due follow-ups");
}
