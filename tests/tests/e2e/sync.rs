//! The change feed: a consumer reading while writers work sees every change once, in commit
//! order; one that stops and comes back with its last cursor continues without a gap or a
//! repeat; the same through the gateway; personal data masked by role; and a district's
//! sync client kept to its district.

use std::time::Duration;

use futures::StreamExt as _;
use relief_proto::v1 as pb;
use relief_proto::v1::sync_service_client::SyncServiceClient;
use relief_tests::gateway::{gateway_settings, spawn_gateway};
use relief_tests::{
    BANK_ACCOUNT, Backend, FURONG, Role, TestApp, WANGCHENG, backend_tests, expect_code,
    resident_id_of, spawn_app, valid_application, with_bearer,
};
use tonic::Code;
use tonic::transport::Channel;

backend_tests!(
    a_consumer_sees_every_change_once_in_order,
    pages_of_the_feed_agree_with_the_event_log,
    personal_data_is_masked_unless_the_token_grants_it,
    only_sync_clients_and_auditors_of_the_district_read_it,
    the_feed_works_through_the_gateway,
);

fn sync_token(app: &TestApp, district: &str) -> String {
    app.token(district, &[Role::SyncClient], None, "finance-system")
}

/// Reads `WatchChanges` from `cursor` until `count` changes have arrived.
async fn watch(channel: Channel, token: &str, cursor: &str, count: usize) -> Vec<pb::Change> {
    let mut stream = SyncServiceClient::new(channel)
        .watch_changes(with_bearer(
            pb::WatchChangesRequest {
                after_cursor: cursor.to_owned(),
            },
            token,
        ))
        .await
        .unwrap()
        .into_inner();
    let mut got = Vec::new();
    while got.len() < count {
        let next = tokio::time::timeout(Duration::from_secs(20), stream.next())
            .await
            .expect("a change arrives")
            .expect("the stream goes on")
            .unwrap();
        got.push(next.change.unwrap());
    }
    got
}

/// Four writers each file and submit `per_writer` cases.
async fn write_cases(app: &TestApp, per_writer: usize) {
    let mut tasks = Vec::new();
    for w in 0..4 {
        let unit = app.applicant(WANGCHENG, &format!("street-{w}"));
        tasks.push(tokio::spawn(async move {
            for _ in 0..per_writer {
                let case = unit.create_case(valid_application()).await.unwrap();
                unit.submit(&case.case_id).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

fn sequences(changes: &[pb::Change]) -> Vec<i64> {
    changes.iter().map(|c| c.sequence).collect()
}

async fn a_consumer_sees_every_change_once_in_order(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = sync_token(&app, WANGCHENG);
    let before = app.events(WANGCHENG, None).await.len();
    let per_writer = 5;
    let written = 4 * per_writer * 2;
    let total = before + written;

    // The first consumer reads a third of the feed while the writers work, then stops
    // (its connection is dropped), as a crashed job would.
    let first = watch(app.channel(), &token, "", total / 3);
    let (first, ()) = tokio::join!(first, write_cases(&app, per_writer));
    // Restarted with its last cursor, it continues where it stopped.
    let last_cursor = first.last().unwrap().cursor.clone();
    let rest = watch(app.channel(), &token, &last_cursor, total - first.len()).await;
    let all: Vec<pb::Change> = first.into_iter().chain(rest).collect();

    let events = app.events(WANGCHENG, None).await;
    assert_eq!(events.len(), total);
    assert_eq!(
        sequences(&all),
        events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        "every change once, in commit order"
    );
    for (c, e) in all.iter().zip(&events) {
        assert_eq!(
            (&c.action, &c.resource_id, &c.actor_subject),
            (&e.action, &e.resource_id, &e.actor_subject)
        );
        assert_eq!(c.district_id, WANGCHENG);
    }
    // Nothing more is pending: a watcher from the end sees only what comes next.
    let end = all.last().unwrap().cursor.clone();
    let next = tokio::spawn({
        let channel = app.channel();
        let token = token.clone();
        async move { watch(channel, &token, &end, 1).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let case = app
        .applicant(WANGCHENG, "street-9")
        .create_case(valid_application())
        .await
        .unwrap();
    let next = next.await.unwrap();
    assert_eq!(
        (next[0].action.as_str(), next[0].resource_id.as_str()),
        ("case.created", case.case_id.as_str())
    );
    assert_eq!(next[0].sequence, total as i64 + 1);
}

async fn pages_of_the_feed_agree_with_the_event_log(backend: Backend) {
    let app = spawn_app(backend).await;
    write_cases(&app, 3).await;
    let token = sync_token(&app, WANGCHENG);
    let mut client = SyncServiceClient::new(app.channel());
    let mut cursor = String::new();
    let mut all = Vec::new();
    loop {
        let page = client
            .list_changes(with_bearer(
                pb::ListChangesRequest {
                    after_cursor: cursor.clone(),
                    page_size: 7,
                },
                &token,
            ))
            .await
            .unwrap()
            .into_inner();
        assert!(page.changes.len() <= 7);
        if page.changes.is_empty() {
            assert_eq!(page.next_cursor, cursor, "an empty page keeps the cursor");
            break;
        }
        cursor = page.next_cursor;
        all.extend(page.changes);
    }
    let events = app.events(WANGCHENG, None).await;
    assert_eq!(
        sequences(&all),
        events.iter().map(|e| e.seq).collect::<Vec<_>>()
    );
    // The state is the resource as recorded.
    let created = all.iter().find(|c| c.action == "case.created").unwrap();
    let state: serde_json::Value = serde_json::from_str(&created.state_json).unwrap();
    assert_eq!(state["id"], created.resource_id.as_str());
    // A cursor that is not one of this district's is refused.
    let bad = expect_code(
        client
            .list_changes(with_bearer(
                pb::ListChangesRequest {
                    after_cursor: "not-a-cursor".to_owned(),
                    page_size: 0,
                },
                &token,
            ))
            .await,
        Code::InvalidArgument,
        "a made-up cursor",
    );
    assert_eq!(relief_tests::violation_fields(&bad), ["after_cursor"]);
}

async fn personal_data_is_masked_unless_the_token_grants_it(backend: Backend) {
    let app = spawn_app(backend).await;
    let application = valid_application();
    let rid = resident_id_of(&application);
    let case = app
        .applicant(WANGCHENG, "street-1")
        .create_case(application)
        .await
        .unwrap();
    let first_state = |token: String| {
        let channel = app.channel();
        let case_id = case.case_id.clone();
        async move {
            let changes = SyncServiceClient::new(channel)
                .list_changes(with_bearer(pb::ListChangesRequest::default(), &token))
                .await
                .unwrap()
                .into_inner()
                .changes;
            changes
                .into_iter()
                .find(|c| c.resource_id == case_id)
                .unwrap()
                .state_json
        }
    };
    let masked = first_state(sync_token(&app, WANGCHENG)).await;
    assert!(!masked.contains(&rid), "resident id masked: {masked}");
    assert!(masked.contains(&rid[rid.len() - 4..]), "{masked}");
    assert!(!masked.contains(BANK_ACCOUNT), "account masked: {masked}");
    let auditor = first_state(app.token(WANGCHENG, &[Role::Auditor], None, "auditor")).await;
    assert!(!auditor.contains(&rid));
    // The finance bureau's system, whose token also carries the finance role, sees the
    // account finance pays, and the resident ID number as finance does: masked.
    let finance = first_state(app.token(
        WANGCHENG,
        &[Role::SyncClient, Role::Finance],
        None,
        "finance-bureau-system",
    ))
    .await;
    assert!(finance.contains(BANK_ACCOUNT), "{finance}");
    assert!(!finance.contains(&rid), "{finance}");
    // A case officer's token in the same system would see the number.
    let full = first_state(app.token(
        WANGCHENG,
        &[Role::SyncClient, Role::CaseOfficer],
        None,
        "case-system",
    ))
    .await;
    assert!(full.contains(&rid), "{full}");
}

async fn only_sync_clients_and_auditors_of_the_district_read_it(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut client = SyncServiceClient::new(app.channel());
    let list = |token: String| with_bearer(pb::ListChangesRequest::default(), &token);
    for role in [Role::CaseOfficer, Role::Finance, Role::DistrictAdmin] {
        let token = app.token(WANGCHENG, &[role], None, "someone");
        expect_code(
            client.list_changes(list(token)).await,
            Code::PermissionDenied,
            "a bureau role",
        );
    }
    // Wangcheng's sync client cannot read Furong's feed, by metadata or by cursor.
    let token = sync_token(&app, WANGCHENG);
    let mut req = list(token.clone());
    req.metadata_mut()
        .insert("x-relief-district", FURONG.parse().unwrap());
    expect_code(
        client.list_changes(req).await,
        Code::PermissionDenied,
        "another district",
    );
    let furong_cursor = client
        .list_changes(list(sync_token(&app, FURONG)))
        .await
        .unwrap()
        .into_inner()
        .next_cursor;
    let mut req = list(token);
    req.get_mut().after_cursor = furong_cursor;
    expect_code(
        client.list_changes(req).await,
        Code::InvalidArgument,
        "another district's cursor",
    );
    // A city-scoped sync client reads any district it names, and must name one.
    let city = app.token("city", &[Role::SyncClient], None, "city-warehouse");
    let mut req = list(city.clone());
    req.metadata_mut()
        .insert("x-relief-district", FURONG.parse().unwrap());
    let furong = client.list_changes(req).await.unwrap().into_inner();
    assert!(furong.changes.iter().all(|c| c.district_id == FURONG));
    assert!(!furong.changes.is_empty());
    expect_code(
        client.list_changes(list(city)).await,
        Code::PermissionDenied,
        "a city token naming no district",
    );
}

async fn the_feed_works_through_the_gateway(backend: Backend) {
    let app = spawn_app(backend).await;
    let gw = spawn_gateway(gateway_settings(&[(&app, &[WANGCHENG, FURONG])])).await;
    let token = sync_token(&app, WANGCHENG);
    let before = app.events(WANGCHENG, None).await.len();
    let total = before + 4 * 2 * 2;
    let watcher = watch(gw.channel(), &token, "", total / 2);
    let (first, ()) = tokio::join!(watcher, write_cases(&app, 2));
    let rest = watch(
        gw.channel(),
        &token,
        &first.last().unwrap().cursor,
        total - first.len(),
    )
    .await;
    let all: Vec<_> = first.into_iter().chain(rest).collect();
    let events = app.events(WANGCHENG, None).await;
    assert_eq!(
        sequences(&all),
        events.iter().map(|e| e.seq).collect::<Vec<_>>()
    );
}
