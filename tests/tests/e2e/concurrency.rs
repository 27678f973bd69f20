//! Concurrent callers: many writers at once must all succeed (SQLite must queue, never
//! answer "database is locked"), counts of cases and events must come out exact, retries
//! racing each other must make one case, optimistic versions must let one writer win, and
//! decisions on different cases overlap (most commit on DecideCase's optimistic path).

use std::collections::HashSet;

use futures::future::join_all;
use relief_proto::v1 as pb;
use relief_tests::{
    ApplicationBuilder, Backend, Caller, FURONG, Role, SpawnOptions, WANGCHENG, request_id,
    resident_id_of, spawn_app, spawn_app_with, state, valid_application,
};
use tokio::task::JoinHandle;
use tonic::{Code, Status};

relief_tests::backend_tests! {
    concurrent_creates_and_updates_all_succeed,
    concurrent_retries_make_one_case,
    concurrent_updates_of_one_version_let_one_win,
    concurrent_submissions_for_one_recipient_flag_repeat_relief,
    concurrent_decisions_on_different_cases_mostly_commit_optimistically,
}

const WRITERS: usize = 64;

/// Fails with the full status so a "database is locked" surfaces in the message.
fn ok<T>(result: Result<T, Status>, what: &str) -> T {
    match result {
        Ok(v) => v,
        Err(s) => panic!("{what}: {:?}: {}", s.code(), s.message()),
    }
}

async fn join<T>(handles: Vec<JoinHandle<T>>) -> Vec<T> {
    join_all(handles)
        .await
        .into_iter()
        .map(|r| r.expect("task did not panic"))
        .collect()
}

async fn concurrent_creates_and_updates_all_succeed(backend: Backend) {
    let app = spawn_app(backend).await;
    // Four units in Wangcheng and a unit in Furong write at the same time.
    let callers: Vec<(&str, Caller)> = vec![
        (WANGCHENG, app.applicant(WANGCHENG, "unit-0")),
        (WANGCHENG, app.applicant(WANGCHENG, "unit-1")),
        (WANGCHENG, app.applicant(WANGCHENG, "unit-2")),
        (FURONG, app.applicant(FURONG, "unit-3")),
    ];
    let wangcheng_start = app.events(WANGCHENG, None).await.len();
    let furong_start = app.events(FURONG, None).await.len();

    let mut handles = Vec::new();
    for i in 0..WRITERS {
        let (district, caller) = callers[i % callers.len()].clone();
        handles.push(tokio::spawn(async move {
            let created = ok(caller.create_case(valid_application()).await, "create");
            let updated = ok(
                caller
                    .update_case_raw(pb::UpdateCaseRequest {
                        request_id: request_id(),
                        case_id: created.case_id.clone(),
                        application: Some(ApplicationBuilder::new().name("王小二").build()),
                        expected_version: 1,
                        ..Default::default()
                    })
                    .await,
                "update",
            );
            assert_eq!(updated.version, 2);
            (district, created.case_id)
        }));
    }
    let results = join(handles).await;
    let ids: HashSet<&String> = results.iter().map(|(_, id)| id).collect();
    assert_eq!(ids.len(), WRITERS, "every case is distinct");

    let expected_furong = WRITERS / callers.len();
    let expected_wangcheng = WRITERS - expected_furong;
    for (district, expected) in [(WANGCHENG, expected_wangcheng), (FURONG, expected_furong)] {
        let officer = app.staff(district, Role::CaseOfficer);
        let cases = officer.list_all(Default::default()).await;
        assert_eq!(cases.len(), expected, "cases in {district}");
        assert!(
            cases
                .iter()
                .all(|c| c.version == 2 && c.district_id == district)
        );
        assert!(cases.iter().all(|c| {
            c.application
                .as_ref()
                .unwrap()
                .recipient
                .as_ref()
                .unwrap()
                .name
                == "王小二"
        }));
    }

    let wangcheng = app.actions(WANGCHENG, None).await[wangcheng_start..].to_vec();
    let furong = app.actions(FURONG, None).await[furong_start..].to_vec();
    for (district, actions, expected) in [
        (WANGCHENG, wangcheng, expected_wangcheng),
        (FURONG, furong, expected_furong),
    ] {
        assert_eq!(actions.len(), 2 * expected, "events in {district}");
        let created = actions.iter().filter(|a| *a == "case.created").count();
        let updated = actions.iter().filter(|a| *a == "case.updated").count();
        assert_eq!((created, updated), (expected, expected), "{district}");
    }
    app.assert_chain_intact(WANGCHENG).await;
    app.assert_chain_intact(FURONG).await;
}

async fn concurrent_retries_make_one_case(backend: Backend) {
    let app = spawn_app(backend).await;
    let unit = app.applicant(WANGCHENG, "gaotangling");
    let start = app.events(WANGCHENG, None).await.len();
    let request = pb::CreateCaseRequest {
        request_id: request_id(),
        application: Some(valid_application()),
        ..Default::default()
    };
    let handles = (0..10)
        .map(|_| {
            let unit = unit.clone();
            let request = request.clone();
            tokio::spawn(async move { unit.create_case_raw(request).await })
        })
        .collect();
    let results = join(handles).await;
    let ids: HashSet<String> = results
        .into_iter()
        .map(|r| ok(r, "identical create").case_id)
        .collect();
    assert_eq!(ids.len(), 1, "one case for one request id");

    let listed = app
        .staff(WANGCHENG, Role::CaseOfficer)
        .list_all(Default::default())
        .await;
    assert_eq!(listed.len(), 1);
    assert_eq!(
        app.actions(WANGCHENG, None).await[start..],
        ["case.created"]
    );
    app.assert_chain_intact(WANGCHENG).await;
}

async fn concurrent_updates_of_one_version_let_one_win(backend: Backend) {
    let app = spawn_app(backend).await;
    let unit = app.applicant(WANGCHENG, "gaotangling");
    let draft = unit.draft(valid_application()).await;
    let handles = (0..8)
        .map(|i| {
            let unit = unit.clone();
            let case_id = draft.case_id.clone();
            tokio::spawn(async move {
                unit.update_case_raw(pb::UpdateCaseRequest {
                    request_id: request_id(),
                    case_id,
                    application: Some(ApplicationBuilder::new().name(&format!("写者{i}")).build()),
                    expected_version: 1,
                    ..Default::default()
                })
                .await
            })
        })
        .collect();
    let results = join(handles).await;
    let winners: Vec<&pb::Case> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(winners.len(), 1, "exactly one writer wins");
    for r in &results {
        if let Err(s) = r {
            assert_eq!(s.code(), Code::Aborted, "losers are told to retry: {s:?}");
        }
    }
    let current = unit.get_case(&draft.case_id).await.unwrap();
    assert_eq!(current.version, 2);
    assert_eq!(&current, winners[0]);
    assert_eq!(
        app.actions(WANGCHENG, Some(&draft.case_id)).await,
        ["case.created", "case.updated"]
    );
}

async fn concurrent_submissions_for_one_recipient_flag_repeat_relief(backend: Backend) {
    let app = spawn_app(backend).await;
    let units = [
        app.applicant(WANGCHENG, "unit-a"),
        app.applicant(WANGCHENG, "unit-b"),
    ];
    let person = valid_application();
    let id = resident_id_of(&person);
    let mut drafts = Vec::new();
    for unit in &units {
        let application = ApplicationBuilder::new().resident_id(&id).build();
        drafts.push(unit.draft(application).await);
    }
    // Both submit at once without a justification: writers are serialized per district, so
    // the second sees the first and must be refused.
    let handles = units
        .iter()
        .zip(&drafts)
        .map(|(unit, draft)| {
            let unit = unit.clone();
            let case_id = draft.case_id.clone();
            tokio::spawn(async move { unit.submit(&case_id).await })
        })
        .collect();
    let results = join(handles).await;
    let submitted: Vec<&pb::Case> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(
        submitted.len(),
        1,
        "one of the two goes through: {results:?}"
    );
    assert_eq!(state(submitted[0]), pb::CaseState::InReview);
    assert!(!submitted[0].repeat_relief);
    let refused = results
        .iter()
        .find_map(|r| r.as_ref().err())
        .expect("one is refused");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(
        relief_tests::violation_fields(refused),
        ["application.repeat_relief_justification"]
    );
}

/// `relief_decisions_total{district, path}` as a metrics port shows it (0 when absent).
async fn decisions_counted(metrics: std::net::SocketAddr, district: &str, path: &str) -> u64 {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut tcp = tokio::net::TcpStream::connect(metrics).await.unwrap();
    tcp.write_all(
        format!("GET /metrics HTTP/1.1\r\nHost: {metrics}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut raw = Vec::new();
    tcp.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    text.lines()
        .filter(|l| l.starts_with(relief_observe::names::DECISIONS))
        .filter(|l| l.contains(&format!("district=\"{district}\"")))
        .filter(|l| l.contains(&format!("path=\"{path}\"")))
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

async fn concurrent_decisions_on_different_cases_mostly_commit_optimistically(backend: Backend) {
    let app = spawn_app_with(
        backend,
        SpawnOptions {
            metrics: true,
            ..Default::default()
        },
    )
    .await;
    // The process's metrics are shared by every test in it: this test's district is its own.
    let district = match backend {
        Backend::Sqlite => "430161",
        Backend::Postgres => "430162",
    };
    crate::approvals::one_step_district(&app, district, 100 * 2_000_000, &[]).await;
    let applicant = app.applicant(district, "street");
    let mut ids = Vec::new();
    for _ in 0..WRITERS / 2 {
        ids.push(applicant.submitted(valid_application()).await.case_id);
    }
    let leader = crate::approvals::person(&app, district, &[Role::DistrictLeader], "leader").await;
    let handles = ids
        .iter()
        .map(|id| {
            let leader = leader.clone();
            let id = id.clone();
            tokio::spawn(async move {
                leader
                    .decide(&id, "approve", pb::Decision::Approve, 0, "", "同意")
                    .await
            })
        })
        .collect();
    for r in join(handles).await {
        ok(r, "decide");
    }
    let metrics = app.metrics_addr.expect("the metrics port is served");
    let optimistic = decisions_counted(metrics, district, "optimistic").await;
    let queued = decisions_counted(metrics, district, "queued").await;
    assert_eq!(
        optimistic + queued,
        ids.len() as u64,
        "every decision is counted once"
    );
    assert!(
        optimistic * 4 >= ids.len() as u64 * 3,
        "decisions on different cases overlap: {optimistic} optimistic, {queued} queued"
    );
    app.assert_chain_intact(district).await;
}
