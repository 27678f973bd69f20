//! The demo rebuilds the seed report's year and must arrive at its figures exactly: budget
//! 1,280,000 yuan, 48 cases, 1,280,000 yuan paid, none above 50,000, all paid in the year,
//! no re-petition, grade 优.

use relief_proto::v1 as pb;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_reproduces_the_reference_year() {
    let dir = tempfile::tempdir().unwrap();
    let html_path = dir.path().join("report.html");
    let outcome = reliefd::demo::run(Some(&html_path)).await.unwrap();
    let i = &outcome.indicators;
    assert_eq!((i.district_id.as_str(), i.fiscal_year), ("430112", 2022));
    assert_eq!(i.allocated_fen, 128_000_000, "budget 1,280,000 yuan");
    assert_eq!(i.paid_fen, 128_000_000, "1,280,000 yuan paid");
    assert_eq!((i.reserved_fen, i.unused_fen), (0, 0));
    assert_eq!(i.execution_rate_bp, 10_000);
    assert_eq!((i.target_case_count, i.achieved_case_count), (48, 48));
    assert_eq!(i.total_amount_fen, 128_000_000);
    assert!(i.over_cap.is_empty(), "no case above 50,000 yuan");
    assert!(i.largest_amount_fen <= 5_000_000);
    assert_eq!(i.paid_in_year_bp, 10_000, "every payment by 31 December");
    assert_eq!(i.re_petitions, 0);
    assert_eq!(i.follow_up_coverage_bp, 10_000);
    assert!(i.follow_ups_done > 0);
    assert_eq!(i.paid_by_month_fen.iter().sum::<i64>(), 128_000_000);
    let paid = i
        .cases_by_state
        .iter()
        .find(|s| s.state == pb::CaseState::Paid as i32)
        .map(|s| s.count);
    assert_eq!(paid, Some(48));
    assert_eq!(i.step_times.len(), 5, "every step of the chain was timed");
    assert_eq!(outcome.grade, "优");

    let md = &outcome.markdown;
    for figure in [
        "预算1,280,000.00元",
        "已拨付1,280,000.00元",
        "数量目标48件，完成48件",
        "再次上访率0.0%",
        "**优**",
    ] {
        assert!(md.contains(figure), "the report states {figure}");
    }
    assert!(
        !md.contains("【待填写"),
        "every narrative section was written"
    );
    let html = std::fs::read_to_string(&html_path).unwrap();
    assert_eq!(html, outcome.html);
    assert_eq!(html.matches("<svg").count(), 2);
}
