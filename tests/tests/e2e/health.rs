//! Health follows the database: with PostgreSQL out of reach the server says NOT_SERVING,
//! callers get UNAVAILABLE with RetryInfo (never INTERNAL), the gateway stops routing to it
//! and says why, and everything comes back when the database does. The database is cut off
//! for one server alone by a relay the test controls.

use std::sync::Arc;
use std::time::{Duration, Instant};

use relief_tests::gateway::{gateway_settings, spawn_gateway};
use relief_tests::{Backend, Role, SpawnOptions, WANGCHENG, spawn_app_with};
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_types::StatusExt as _;

/// Long enough for a slow, shared test machine; the server promises 2 s.
const PATIENCE: Duration = Duration::from_secs(20);

async fn status_of(app: &relief_tests::TestApp, service: &str) -> ServingStatus {
    let answer = app
        .health_client()
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
        .expect("the health service answers whatever the database does")
        .into_inner();
    ServingStatus::try_from(answer.status).unwrap_or(ServingStatus::Unknown)
}

async fn wait_for_status(app: &relief_tests::TestApp, want: ServingStatus) {
    let start = Instant::now();
    loop {
        let now = status_of(app, "").await;
        if now == want {
            return;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "health stayed {now:?}, expected {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Asserts an UNAVAILABLE that tells the caller to retry and names no server internals.
fn assert_retryable(status: &tonic::Status, reason: &str) {
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    let details = status.get_error_details();
    assert!(details.retry_info().is_some(), "RetryInfo in {status:?}");
    let info = details.error_info().expect("ErrorInfo");
    assert_eq!(info.reason, reason, "{status:?}");
    assert!(!status.message().contains("127.0.0.1"), "{status:?}");
}

fn record(name: &str) -> bool {
    relief_tests::postgres_enabled(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_health_follows_the_database() {
    let test = "health::postgres_health_follows_the_database";
    if !record(test) {
        return;
    }
    let app = spawn_app_with(
        Backend::Postgres,
        SpawnOptions {
            database_proxy: true,
            ..SpawnOptions::default()
        },
    )
    .await;
    let gw = spawn_gateway(gateway_settings(&[(&app, &[WANGCHENG])])).await;
    let officer = app.staff(WANGCHENG, Role::CaseOfficer);
    let via_gateway = officer.on(gw.channel());
    assert_eq!(status_of(&app, "").await, ServingStatus::Serving);
    officer.get_district(WANGCHENG).await.expect("served");
    let start = Instant::now();
    while via_gateway.get_district(WANGCHENG).await.is_err() {
        assert!(start.elapsed() < PATIENCE, "the gateway never routed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let proxy = app.db_proxy.as_ref().expect("a relay to the database");
    proxy.cut();
    wait_for_status(&app, ServingStatus::NotServing).await;
    assert_eq!(
        status_of(&app, "relief.v1.CaseService").await,
        ServingStatus::NotServing,
        "each relief service follows the database"
    );
    let refused = officer
        .get_district(WANGCHENG)
        .await
        .expect_err("no database, no answer");
    assert_retryable(&refused, "DATABASE_UNAVAILABLE");
    // The gateway stops routing to the backend and says why.
    let start = Instant::now();
    let refused = loop {
        let answer = via_gateway.get_district(WANGCHENG).await;
        if let Err(status) = answer
            && status.message().contains("not serving")
        {
            break status;
        }
        assert!(start.elapsed() < PATIENCE, "the gateway kept routing");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_retryable(&refused, "UPSTREAM_UNAVAILABLE");

    proxy.restore();
    wait_for_status(&app, ServingStatus::Serving).await;
    officer.get_district(WANGCHENG).await.expect("served again");
    let start = Instant::now();
    while via_gateway.get_district(WANGCHENG).await.is_err() {
        assert!(start.elapsed() < PATIENCE, "the gateway never routed again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    relief_tests::record_postgres_run(test);
}

/// A call that reaches the database as it goes away (before the probe notices) gets
/// UNAVAILABLE, not INTERNAL: here the probe is slowed so that every call meets the pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_a_lost_database_is_unavailable_not_internal() {
    let test = "health::postgres_a_lost_database_is_unavailable_not_internal";
    if !record(test) {
        return;
    }
    let app = spawn_app_with(
        Backend::Postgres,
        SpawnOptions {
            database_proxy: true,
            tweak: Some(Arc::new(|s: &mut reliefd::Settings| {
                s.server.health_check_interval_ms = 60_000;
                s.database.acquire_timeout_ms = 1_000;
            })),
            ..SpawnOptions::default()
        },
    )
    .await;
    let officer = app.staff(WANGCHENG, Role::CaseOfficer);
    let applicant = app.applicant(WANGCHENG, "gaotangling");
    officer.get_district(WANGCHENG).await.expect("served");
    app.db_proxy.as_ref().expect("relay").cut();
    let read = officer.get_district(WANGCHENG).await.expect_err("cut off");
    assert_retryable(&read, "DATABASE_UNAVAILABLE");
    let write = applicant
        .create_case(relief_tests::valid_application())
        .await
        .expect_err("cut off");
    assert_retryable(&write, "DATABASE_UNAVAILABLE");
    relief_tests::record_postgres_run(test);
}
