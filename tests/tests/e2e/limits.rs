//! What a client can make a server hold is bounded, on the backends and the gateway alike: a
//! stream whose reader reads nothing is reset and its slot freed; streams are capped per
//! caller and per district (RESOURCE_EXHAUSTED with RetryInfo) while a district's watchers
//! all see each new change; silent, idle and surplus connections are closed while other
//! clients' calls go on; the metrics name known districts and methods only; and the case
//! export is read a batch at a time and bounded by the largest message.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use relief_proto::v1 as pb;
use relief_proto::v1::district_service_client::DistrictServiceClient;
use relief_proto::v1::report_service_client::ReportServiceClient;
use relief_proto::v1::sync_service_client::SyncServiceClient;
use relief_tests::gateway::{gateway_settings, spawn_gateway};
use relief_tests::raw::{GrpcReader, RawConn};
use relief_tests::{
    Backend, Role, SpawnOptions, TestApp, WANGCHENG, backend_tests, expect_code, spawn_app_with,
    valid_application, with_bearer,
};
use tokio::io::AsyncReadExt as _;
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status, Streaming};
use tonic_types::StatusExt as _;

backend_tests!(
    a_watcher_whose_reader_reads_nothing_is_reset_and_its_slot_freed,
    a_reader_with_a_shut_window_loses_its_connection_and_its_slot,
    a_district_full_of_watchers_all_see_a_new_change,
    silent_and_surplus_connections_are_closed_while_calls_go_on,
    an_idle_connection_is_closed_but_one_with_an_open_stream_is_not,
    the_case_export_is_read_in_batches_and_bounded_by_the_message_limit,
);

/// How long anything the server is to do "eventually" may take before the test fails; far
/// above the timeouts the tests set, so that only a server that never does it fails.
const EVENTUALLY: Duration = Duration::from_secs(30);

async fn spawn(backend: Backend, server: &[&str]) -> TestApp {
    spawn_app_with(
        backend,
        SpawnOptions {
            server: server.iter().map(|l| (*l).to_owned()).collect(),
            ..SpawnOptions::default()
        },
    )
    .await
}

fn sync_token(app: &TestApp, subject: &str) -> String {
    app.token(WANGCHENG, &[Role::SyncClient], None, subject)
}

/// Files and submits `cases` cases, so that the feed has changes of some size.
async fn some_changes(app: &TestApp, cases: usize) {
    let unit = app.applicant(WANGCHENG, "street-limits");
    for _ in 0..cases {
        let case = unit.create_case(valid_application()).await.unwrap();
        unit.submit(&case.case_id).await.unwrap();
    }
}

async fn watch(
    channel: Channel,
    token: &str,
) -> Result<Streaming<pb::WatchChangesResponse>, Status> {
    SyncServiceClient::new(channel)
        .watch_changes(with_bearer(pb::WatchChangesRequest::default(), token))
        .await
        .map(tonic::Response::into_inner)
}

/// Asserts RESOURCE_EXHAUSTED with a RetryInfo saying when to try again.
fn assert_busy<T: std::fmt::Debug>(result: Result<T, Status>, what: &str) -> Status {
    let status = expect_code(result, Code::ResourceExhausted, what);
    let retry = status.get_error_details().retry_info().cloned();
    assert!(
        retry.is_some_and(|r| r.retry_delay.is_some()),
        "{what}: RetryInfo with a delay"
    );
    status
}

/// Opens a watcher as soon as the server accepts one: it refuses with RESOURCE_EXHAUSTED
/// while the caller's or district's slots are taken.
async fn watch_when_free(channel: &Channel, token: &str) -> Streaming<pb::WatchChangesResponse> {
    let deadline = Instant::now() + EVENTUALLY;
    loop {
        match watch(channel.clone(), token).await {
            Ok(stream) => return stream,
            Err(s) if s.code() == Code::ResourceExhausted && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(s) => panic!("no slot was freed: {s:?}"),
        }
    }
}

/// Waits until `done` holds, failing after [`EVENTUALLY`].
async fn eventually(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + EVENTUALLY;
    while !done().await {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn next_change(stream: &mut Streaming<pb::WatchChangesResponse>) -> pb::Change {
    tokio::time::timeout(EVENTUALLY, stream.message())
        .await
        .expect("a change arrives")
        .expect("the stream goes on")
        .expect("the stream is open")
        .change
        .expect("a change")
}

async fn a_watcher_whose_reader_reads_nothing_is_reset_and_its_slot_freed(backend: Backend) {
    let app = spawn(
        backend,
        &[
            "stream_stall_timeout_ms = 300",
            "max_streams_per_caller = 1",
        ],
    )
    .await;
    some_changes(&app, 6).await;
    let token = sync_token(&app, "finance-system");
    // A client that takes 1 KiB of the stream and then reads nothing: it never polls.
    let narrow = Endpoint::from_shared(format!("http://{}", app.addr))
        .unwrap()
        .initial_stream_window_size(Some(1024))
        .connect()
        .await
        .unwrap();
    let mut stalled = watch(narrow, &token).await.unwrap();

    // It holds the caller's one stream: another is refused, with when to try again.
    assert_busy(watch(app.channel(), &token).await, "a second watcher");

    // Once it has read nothing for the stall timeout, its stream is reset and the slot freed.
    let mut fresh = watch_when_free(&app.channel(), &token).await;
    assert!(next_change(&mut fresh).await.sequence > 0);

    // What the stalled client finds when it reads at last: RESOURCE_EXHAUSTED.
    let end = loop {
        match tokio::time::timeout(EVENTUALLY, stalled.message())
            .await
            .expect("the stalled stream ends")
        {
            Ok(Some(_)) => {}
            Ok(None) => panic!("the stalled stream ended without a status"),
            Err(status) => break status,
        }
    };
    assert_eq!(end.code(), Code::ResourceExhausted, "{end:?}");
}

async fn a_reader_with_a_shut_window_loses_its_connection_and_its_slot(backend: Backend) {
    let app = spawn(
        backend,
        &[
            "stream_stall_timeout_ms = 300",
            "max_streams_per_caller = 1",
        ],
    )
    .await;
    some_changes(&app, 2).await;
    let token = sync_token(&app, "finance-system");
    // A window of 0: the server may not send a single byte of data on the stream.
    let mut shut = RawConn::connect(app.addr, Some(0)).await;
    let response = shut
        .call(
            "/relief.v1.SyncService/WatchChanges",
            Some(&token),
            None,
            &pb::WatchChangesRequest::default(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_busy(watch(app.channel(), &token).await, "a second watcher");

    let mut fresh = watch_when_free(&app.channel(), &token).await;
    assert!(next_change(&mut fresh).await.sequence > 0);
    eventually("the shut connection is closed", async || shut.is_closed()).await;
    // Other clients were not disturbed.
    app.health_client()
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .unwrap();
}

async fn a_district_full_of_watchers_all_see_a_new_change(backend: Backend) {
    let app = spawn(
        backend,
        &[
            "max_streams_per_caller = 4",
            "max_streams_per_district = 12",
        ],
    )
    .await;
    some_changes(&app, 2).await;
    let existing = app.events(WANGCHENG, None).await.len();
    let tokens: Vec<String> = (0..3)
        .map(|i| {
            app.token(
                WANGCHENG,
                &[Role::SyncClient, Role::Auditor],
                None,
                &format!("system-{i}"),
            )
        })
        .collect();
    let mut watchers = Vec::new();
    for token in &tokens {
        for _ in 0..4 {
            let mut stream = watch(app.channel(), token).await.unwrap();
            for _ in 0..existing {
                next_change(&mut stream).await;
            }
            watchers.push(stream);
        }
    }

    // A fifth stream of the same caller, a watcher or an export, is refused for the caller;
    // a watcher of a fourth caller for the district.
    let by_caller = assert_busy(watch(app.channel(), &tokens[0]).await, "a fifth watcher");
    assert!(by_caller.message().contains("caller"), "{by_caller:?}");
    let export = ReportServiceClient::new(app.channel())
        .stream_case_export(with_bearer(
            pb::StreamCaseExportRequest {
                fiscal_year: 2022,
                ..Default::default()
            },
            &tokens[0],
        ))
        .await;
    assert_busy(export, "a fifth stream, an export");
    let fourth = sync_token(&app, "system-3");
    let by_district = assert_busy(watch(app.channel(), &fourth).await, "a 13th watcher");
    assert!(
        by_district.message().contains("district"),
        "{by_district:?}"
    );

    // One commit, and every watcher sees it.
    let unit = app.applicant(WANGCHENG, "street-new");
    let case = unit.create_case(valid_application()).await.unwrap();
    let seen = futures::future::join_all(watchers.iter_mut().map(next_change)).await;
    assert_eq!(seen.len(), 12);
    for change in &seen {
        assert_eq!(
            (change.resource_id.as_str(), change.action.as_str()),
            (case.case_id.as_str(), "case.created")
        );
    }

    // A watcher that goes frees its place in the district.
    watchers.pop();
    let mut late = watch_when_free(&app.channel(), &fourth).await;
    assert!(next_change(&mut late).await.sequence > 0);
}

/// A raw TCP connection that sends nothing; true once the server has closed it.
async fn closed_by_server(tcp: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    loop {
        match tokio::time::timeout(EVENTUALLY, tcp.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            // Whatever the server says before closing (an HTTP/2 SETTINGS frame).
            Ok(Ok(_)) => {}
        }
    }
}

/// A server's connection bounds, checked the same way on a backend and on a gateway:
/// `addr` with `handshake_timeout_ms` 300, `connection_limit` 4 and `max_concurrent_streams`
/// 7, and a client already connected through `channel`.
async fn connections_are_bounded(addr: SocketAddr, channel: Channel) {
    let health = || {
        let mut client = tonic_health::pb::health_client::HealthClient::new(channel.clone());
        async move {
            client
                .check(tonic_health::pb::HealthCheckRequest::default())
                .await
                .expect("the connected client's call works")
        }
    };
    health().await;
    // A connection that never sends its preface is closed after the handshake timeout.
    let mut silent = TcpStream::connect(addr).await.unwrap();
    assert!(
        closed_by_server(&mut silent).await,
        "a silent connection is closed"
    );

    // Each connection may carry the configured number of calls at once.
    let mut raw = RawConn::connect(addr, None).await;
    assert!(raw.health().await.unwrap());
    assert_eq!(raw.send.current_max_send_streams(), 7);

    // Four are open (the client's, the raw one and two that complete their handshake); a
    // fifth is closed at once while the others work on.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut conn = RawConn::connect(addr, None).await;
        assert!(conn.health().await.unwrap());
        held.push(conn);
    }
    let mut surplus = TcpStream::connect(addr).await.unwrap();
    assert!(
        closed_by_server(&mut surplus).await,
        "a connection beyond the cap is closed"
    );
    health().await;
    assert!(raw.health().await.unwrap());

    // Once one goes, a new one is taken again.
    drop(held.pop());
    eventually(
        "a new connection is accepted",
        async || match RawConn::try_connect(addr, None).await {
            Ok(mut conn) => conn.health().await.unwrap_or(false),
            Err(_) => false,
        },
    )
    .await;
}

const CONNECTION_BOUNDS: [&str; 3] = [
    "handshake_timeout_ms = 300",
    "connection_limit = 4",
    "max_concurrent_streams = 7",
];

async fn silent_and_surplus_connections_are_closed_while_calls_go_on(backend: Backend) {
    let app = spawn(backend, &CONNECTION_BOUNDS).await;
    connections_are_bounded(app.addr, app.channel()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_gateway_closes_silent_and_surplus_connections_while_calls_go_on() {
    let app = spawn(Backend::Sqlite, &[]).await;
    let mut settings = gateway_settings(&[(&app, &[WANGCHENG])]);
    settings.handshake_timeout_ms = 300;
    settings.connection_limit = 4;
    settings.max_concurrent_streams = 7;
    let gw = spawn_gateway(settings).await;
    connections_are_bounded(gw.addr, gw.channel()).await;
}

/// `addr` closes a connection idle for `idle_timeout_ms` 500 but keeps one carrying a
/// WatchChanges stream, which goes on receiving changes.
async fn idle_connections_are_closed(addr: SocketAddr, app: &TestApp) {
    let token = sync_token(app, "finance-system");
    let existing = app.events(WANGCHENG, None).await.len();
    let mut idle = RawConn::connect(addr, None).await;
    assert!(idle.health().await.unwrap());
    let mut busy = RawConn::connect(addr, None).await;
    let response = busy
        .call(
            "/relief.v1.SyncService/WatchChanges",
            Some(&token),
            None,
            &pb::WatchChangesRequest::default(),
        )
        .await
        .unwrap();
    let mut changes = GrpcReader::new(response.into_body());
    for _ in 0..existing {
        let _: pb::WatchChangesResponse = changes.next().await.unwrap().unwrap();
    }

    eventually("the idle connection is closed", async || idle.is_closed()).await;
    // Well past the idle timeout, the one with a stream is still there and still fed.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!busy.is_closed(), "a connection with a stream is not idle");
    let unit = app.applicant(WANGCHENG, "street-late");
    let case = unit.create_case(valid_application()).await.unwrap();
    let next: pb::WatchChangesResponse = tokio::time::timeout(EVENTUALLY, changes.next())
        .await
        .expect("the change arrives")
        .unwrap()
        .unwrap();
    assert_eq!(next.change.unwrap().resource_id, case.case_id);
}

async fn an_idle_connection_is_closed_but_one_with_an_open_stream_is_not(backend: Backend) {
    let app = spawn(backend, &["idle_timeout_ms = 500"]).await;
    some_changes(&app, 1).await;
    idle_connections_are_closed(app.addr, &app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_gateway_closes_idle_connections_but_not_one_with_an_open_stream() {
    let app = spawn(Backend::Sqlite, &[]).await;
    some_changes(&app, 1).await;
    let mut settings = gateway_settings(&[(&app, &[WANGCHENG])]);
    settings.idle_timeout_ms = 500;
    let gw = spawn_gateway(settings).await;
    idle_connections_are_closed(gw.addr, &app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_metrics_name_only_known_districts_and_methods() {
    let app = spawn_app_with(
        Backend::Sqlite,
        SpawnOptions {
            metrics: true,
            ..SpawnOptions::default()
        },
    )
    .await;
    let gw = spawn_gateway(gateway_settings(&[(&app, &[WANGCHENG])])).await;
    let city = app.token("city", &[Role::Auditor], None, "city-auditor");
    // District codes no test uses elsewhere: the metrics registry is the process's.
    let base =
        900_000 + u32::try_from(uuid::Uuid::now_v7().as_u128() % 90_000).unwrap_or(0) + 1_000;
    let unrouted: Vec<String> = (0..40).map(|i| format!("{}", base + i)).collect();
    for (channel, code) in unrouted
        .iter()
        .flat_map(|code| [(gw.channel(), code), (app.channel(), code)])
    {
        let mut request = with_bearer(
            pb::GetDistrictRequest {
                district_id: code.clone(),
                ..Default::default()
            },
            &city,
        );
        request
            .metadata_mut()
            .insert("x-relief-district", code.parse().unwrap());
        let answer = DistrictServiceClient::new(channel)
            .get_district(request)
            .await;
        assert!(answer.is_err(), "{code} is not a district");
    }
    // Paths no service has, to a routed district and an unrouted one.
    let mut raw = RawConn::connect(gw.addr, None).await;
    for (i, district) in [WANGCHENG, unrouted[0].as_str()].into_iter().enumerate() {
        let response = raw
            .call(
                &format!("/relief.v1.NoSuchService{base}/Call{i}"),
                Some(&city),
                Some(district),
                &pb::GetDistrictRequest::default(),
            )
            .await
            .unwrap();
        let mut reader = GrpcReader::new(response.into_body());
        let _: Option<pb::GetDistrictResponse> = reader.next().await.unwrap_or(None);
    }

    let metrics_addr = gw.metrics_addr.unwrap();
    let text = scrape(metrics_addr).await;
    for code in &unrouted {
        assert!(
            !text.contains(&format!("\"{code}\"")),
            "{code} is not a label:\n{text}"
        );
    }
    assert!(
        !text.contains(&format!("NoSuchService{base}")),
        "unknown paths are not labels"
    );
    let has = |needles: &[&str]| text.lines().any(|l| needles.iter().all(|n| l.contains(n)));
    for service in ["gateway", "backend"] {
        assert!(
            has(&[
                "relief_grpc_requests_total{",
                &format!("service=\"{service}\""),
                "district=\"other\"",
            ]),
            "{service}: unknown districts are counted as other:\n{text}"
        );
    }
    assert!(
        has(&[
            "relief_grpc_requests_total{",
            "service=\"gateway\"",
            "method=\"other\"",
        ]),
        "unknown methods are counted as other:\n{text}"
    );
}

/// The Prometheus text of a metrics port.
async fn scrape(addr: SocketAddr) -> String {
    use tokio::io::AsyncWriteExt as _;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(
        format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut raw = Vec::new();
    tcp.read_to_end(&mut raw).await.unwrap();
    String::from_utf8_lossy(&raw).into_owned()
}

async fn the_case_export_is_read_in_batches_and_bounded_by_the_message_limit(backend: Backend) {
    let app = spawn(
        backend,
        &["max_message_bytes = 16384", "stream_buffer_bytes = 4096"],
    )
    .await;
    let auditor = app.token(WANGCHENG, &[Role::Auditor], None, "auditor-export");
    let create = async |cases: usize| {
        let tasks: Vec<_> = (0..5)
            .map(|w| {
                let unit = app.applicant(WANGCHENG, &format!("street-{w}"));
                async move {
                    for _ in 0..cases / 5 {
                        unit.create_case(valid_application()).await.unwrap();
                    }
                }
            })
            .collect();
        futures::future::join_all(tasks).await;
    };
    let export = async || {
        ReportServiceClient::new(app.channel())
            .export_cases(with_bearer(
                pb::ExportCasesRequest {
                    fiscal_year: 2022,
                    ..Default::default()
                },
                &auditor,
            ))
            .await
            .map(tonic::Response::into_inner)
    };
    let stream = async || {
        let mut chunks = ReportServiceClient::new(app.channel())
            .stream_case_export(with_bearer(
                pb::StreamCaseExportRequest {
                    fiscal_year: 2022,
                    ..Default::default()
                },
                &auditor,
            ))
            .await
            .unwrap()
            .into_inner();
        let mut all = Vec::new();
        while let Some(chunk) = chunks.next().await {
            all.push(chunk.unwrap());
        }
        all
    };

    create(50).await;
    let whole = export().await.unwrap();
    assert_eq!(whole.rows, 50);
    let chunks = stream().await;
    assert!(chunks.len() > 1, "the rows come in chunks of about 4 KiB");
    for chunk in &chunks {
        assert!(
            chunk.csv.len() <= 4096 + 512,
            "a chunk of {} bytes",
            chunk.csv.len()
        );
    }
    let joined: String = chunks.iter().map(|c| c.csv.as_str()).collect();
    assert_eq!(joined, whole.csv, "the chunks join into the unary export");

    // More than one batch of cases, and more than one message of CSV.
    create(200).await;
    let too_large = expect_code(export().await, Code::ResourceExhausted, "a 250-case export");
    assert!(
        too_large.message().contains("StreamCaseExport"),
        "{too_large:?}"
    );
    let chunks = stream().await;
    let rows: i64 = chunks.iter().map(|c| c.rows).sum();
    assert_eq!(rows, 250);
    let joined: String = chunks.iter().map(|c| c.csv.as_str()).collect();
    let mut lines = joined.lines();
    assert!(lines.next().unwrap().starts_with("case_id,"));
    let ids: Vec<&str> = lines.map(|l| l.split(',').next().unwrap()).collect();
    assert_eq!(ids.len(), 250);
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "in case id order, once each"
    );
}
