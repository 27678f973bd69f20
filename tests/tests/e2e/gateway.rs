//! The city gateway in front of two backends, one on SQLite and one on PostgreSQL (a second
//! SQLite backend when PostgreSQL is not configured): routing by district, tenant isolation,
//! streaming, deadlines and error details passing through, a backend going down, the
//! city-wide answers, per-district lines, gRPC-Web with CORS, and the metrics port.

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use prost::Message as _;
use relief_domain::{Role, Subject};
use relief_proto::v1 as pb;
use relief_proto::v1::district_service_client::DistrictServiceClient;
use relief_proto::v1::report_service_client::ReportServiceClient;
use relief_store::Actor;
use relief_tests::gateway::{WEB_ORIGIN, gateway_settings, spawn_gateway};
use relief_tests::{
    Backend, FURONG, SpawnOptions, TestApp, WANGCHENG, expect_code, postgres_url,
    record_postgres_run, spawn_app, spawn_app_with, valid_application, violation_fields,
    with_bearer,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt as _;

/// Wangcheng on a SQLite backend, Furong on a PostgreSQL one when configured.
async fn two_backends(test: &str) -> (TestApp, TestApp) {
    let a = spawn_app(Backend::Sqlite).await;
    let b = if postgres_url().is_some() {
        record_postgres_run(test);
        spawn_app(Backend::Postgres).await
    } else {
        spawn_app(Backend::Sqlite).await
    };
    (a, b)
}

/// Opens a write transaction on `app`'s store and keeps it: every write to that backend
/// waits behind it until it is dropped.
async fn hold_writer(app: &TestApp) -> relief_store::WriteTx {
    app.store
        .begin_write(
            None,
            Actor {
                subject: Subject::parse("test-blocker").unwrap(),
                name: "blocker".to_owned(),
                role: Role::CityAdmin,
                on_behalf_of: None,
            },
            None,
            chrono::Utc::now(),
        )
        .await
        .unwrap()
}

fn reports(channel: Channel) -> ReportServiceClient<Channel> {
    ReportServiceClient::new(channel)
}

fn comparison_request(token: &str) -> tonic::Request<pb::GetCityComparisonRequest> {
    with_bearer(
        pb::GetCityComparisonRequest {
            fiscal_year: 2022,
            ..Default::default()
        },
        token,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_district_lands_on_its_own_backend_and_stays_isolated() {
    let (a, b) = two_backends("gateway::each_district_lands_on_its_own_backend").await;
    let gw = spawn_gateway(gateway_settings(&[(&a, &[WANGCHENG]), (&b, &[FURONG])])).await;

    let w = a.applicant(WANGCHENG, "street-1").on(gw.channel());
    let f = b.applicant(FURONG, "street-2").on(gw.channel());
    let wc = w.create_case(valid_application()).await.unwrap();
    let fc = f.create_case(valid_application()).await.unwrap();
    // Each case is in its own backend's event log, and only there.
    assert_eq!(a.events(WANGCHENG, Some(&wc.case_id)).await.len(), 1);
    assert!(b.events(WANGCHENG, Some(&wc.case_id)).await.is_empty());
    assert_eq!(b.events(FURONG, Some(&fc.case_id)).await.len(), 1);
    assert!(a.events(FURONG, Some(&fc.case_id)).await.is_empty());

    // Wangcheng cannot read Furong's case: its token routes to its own backend.
    let w_officer = a.staff(WANGCHENG, Role::CaseOfficer).on(gw.channel());
    expect_code(
        w_officer.get_case(&fc.case_id).await,
        Code::NotFound,
        "another district's case through the gateway",
    );
    // Naming another district in the metadata is refused by the gateway itself.
    let mut client = DistrictServiceClient::new(gw.channel());
    let mut req = w_officer.request(pb::GetDistrictRequest {
        district_id: FURONG.to_owned(),
        ..Default::default()
    });
    req.metadata_mut()
        .insert("x-relief-district", FURONG.parse().unwrap());
    let denied = expect_code(
        client.get_district(req).await,
        Code::PermissionDenied,
        "a district token naming another district",
    );
    assert!(denied.message().contains("another district"), "{denied:?}");
    // A city-scoped caller reaches either district by naming it; an unknown one is not found.
    let city = a.city(Role::Auditor);
    for (district, case) in [(WANGCHENG, &wc), (FURONG, &fc)] {
        let mut req = city.request(pb::GetCaseRequest {
            case_id: case.case_id.clone(),
            ..Default::default()
        });
        req.metadata_mut()
            .insert("x-relief-district", district.parse().unwrap());
        let got = relief_proto::v1::case_service_client::CaseServiceClient::new(gw.channel())
            .get_case(req)
            .await
            .unwrap()
            .into_inner();
        assert_eq!(got.case.unwrap().case_id, case.case_id);
    }
    let mut req = city.request(pb::GetDistrictRequest {
        district_id: "430199".to_owned(),
        ..Default::default()
    });
    req.metadata_mut()
        .insert("x-relief-district", "430199".parse().unwrap());
    let unknown = expect_code(
        client.get_district(req).await,
        Code::NotFound,
        "a district no backend serves",
    );
    let info = unknown.get_error_details();
    assert_eq!(
        info.resource_info().map(|r| r.resource_name.as_str()),
        Some("430199")
    );
    // A city-scoped token naming no district cannot be routed.
    expect_code(
        relief_proto::v1::case_service_client::CaseServiceClient::new(gw.channel())
            .get_case(city.request(pb::GetCaseRequest {
                case_id: wc.case_id.clone(),
                ..Default::default()
            }))
            .await,
        Code::PermissionDenied,
        "a city token naming no district",
    );
    // No token at all: refused before any backend is asked.
    expect_code(
        client
            .get_district(pb::GetDistrictRequest {
                district_id: WANGCHENG.to_owned(),
                ..Default::default()
            })
            .await,
        Code::Unauthenticated,
        "no token",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn streams_deadlines_and_error_details_pass_through() {
    let (a, b) = two_backends("gateway::streams_deadlines_and_error_details_pass_through").await;
    let gw = spawn_gateway(gateway_settings(&[(&a, &[WANGCHENG]), (&b, &[FURONG])])).await;
    let applicant = a.applicant(WANGCHENG, "street-1");
    for _ in 0..3 {
        applicant.submitted(valid_application()).await;
    }
    let auditor = a.staff(WANGCHENG, Role::Auditor);

    // A server-streaming call through the gateway gives what the backend gives directly.
    // The test applications are for fiscal year 2022.
    let year = 2022;
    let direct = reports(a.channel())
        .export_cases(auditor.request(pb::ExportCasesRequest {
            fiscal_year: year,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(direct.rows, 3);
    let mut stream = reports(gw.channel())
        .stream_case_export(auditor.request(pb::StreamCaseExportRequest {
            fiscal_year: year,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    let mut csv = String::new();
    let mut rows = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        csv.push_str(&chunk.csv);
        rows += chunk.rows;
    }
    assert_eq!((rows, csv), (direct.rows, direct.csv));

    // Error details come back byte for byte as the backend wrote them.
    let bad = pb::CreateCaseRequest {
        request_id: relief_tests::request_id(),
        application: Some(pb::Application {
            requested_amount_fen: -5,
            ..valid_application()
        }),
        ..Default::default()
    };
    let direct = applicant.create_case_raw(bad.clone()).await.unwrap_err();
    let via = applicant
        .on(gw.channel())
        .create_case_raw(bad)
        .await
        .unwrap_err();
    assert_eq!(via.code(), Code::InvalidArgument);
    assert_eq!(
        (via.code(), via.message(), via.details()),
        (direct.code(), direct.message(), direct.details())
    );
    assert_eq!(violation_fields(&via), violation_fields(&direct));

    // The caller's deadline holds through the gateway: a write stuck behind another writer
    // ends at the deadline, as it does directly.
    let blocker = hold_writer(&a).await;
    let deadline = Duration::from_millis(300);
    let mut codes = Vec::new();
    for channel in [a.channel(), gw.channel()] {
        let mut req = applicant.request(pb::CreateCaseRequest {
            request_id: relief_tests::request_id(),
            application: Some(valid_application()),
            ..Default::default()
        });
        req.set_timeout(deadline);
        let started = Instant::now();
        let result = relief_proto::v1::case_service_client::CaseServiceClient::new(channel)
            .create_case(req)
            .await;
        let took = started.elapsed();
        assert!(took < Duration::from_secs(3), "the deadline held: {took:?}");
        assert!(took >= deadline, "not before the deadline: {took:?}");
        codes.push(result.unwrap_err().code());
    }
    drop(blocker);
    assert_eq!(
        codes[0], codes[1],
        "same code direct and through the gateway"
    );
    assert!(
        matches!(codes[0], Code::DeadlineExceeded | Code::Cancelled),
        "{codes:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn city_wide_answers_merge_backends_and_name_the_missing() {
    let (a, b) = two_backends("gateway::city_wide_answers_merge_backends").await;
    let gw = spawn_gateway(gateway_settings(&[(&a, &[WANGCHENG]), (&b, &[FURONG])])).await;
    let city = a.token("city", &[Role::CityAdmin], None, "city-admin");

    let merged = reports(gw.channel())
        .get_city_comparison(comparison_request(&city))
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<&str> = merged
        .districts
        .iter()
        .map(|d| d.district_id.as_str())
        .collect();
    assert_eq!(ids, [FURONG, WANGCHENG]);
    assert!(merged.missing_district_ids.is_empty());
    // Each row is what the district's own backend says of it.
    for (app, district) in [(&a, WANGCHENG), (&b, FURONG)] {
        let direct = reports(app.channel())
            .get_city_comparison(comparison_request(&city))
            .await
            .unwrap()
            .into_inner();
        let own = direct
            .districts
            .iter()
            .find(|d| d.district_id == district)
            .unwrap();
        let via = merged
            .districts
            .iter()
            .find(|d| d.district_id == district)
            .unwrap();
        assert_eq!(own, via);
    }
    let total = merged.city_total.unwrap();
    assert_eq!(
        total.allocated_fen,
        merged
            .districts
            .iter()
            .map(|d| d.allocated_fen)
            .sum::<i64>()
    );
    assert!(total.allocated_fen > 0);

    // The district list: both, from their own backends.
    let list = a
        .city_admin()
        .on(gw.channel())
        .list_districts(pb::ListDistrictsRequest::default())
        .await
        .unwrap();
    let ids: Vec<&str> = list
        .districts
        .iter()
        .map(|d| d.district_id.as_str())
        .collect();
    assert_eq!(ids, [FURONG, WANGCHENG]);
    // Paged one at a time, the gateway's page tokens walk across backends.
    let first = a
        .city_admin()
        .on(gw.channel())
        .list_districts(pb::ListDistrictsRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    let second = a
        .city_admin()
        .on(gw.channel())
        .list_districts(pb::ListDistrictsRequest {
            page_size: 1,
            page_token: first.next_page_token.clone(),
        })
        .await
        .unwrap();
    assert_eq!(first.districts[0].district_id, FURONG);
    assert_eq!(second.districts[0].district_id, WANGCHENG);
    assert!(second.next_page_token.is_empty());

    // Furong's backend stops: only Furong becomes unavailable, quickly.
    drop(b);
    let f = a.staff(FURONG, Role::CaseOfficer).on(gw.channel());
    let started = Instant::now();
    let down = loop {
        match f.get_district(FURONG).await {
            Err(s) if s.code() == Code::Unavailable => break s,
            _ if started.elapsed() > Duration::from_secs(10) => panic!("Furong never went down"),
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    assert!(down.message().contains(FURONG), "{down:?}");
    let started = Instant::now();
    expect_code(f.get_district(FURONG).await, Code::Unavailable, "down");
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "refused at once"
    );
    let w = a.staff(WANGCHENG, Role::CaseOfficer).on(gw.channel());
    assert_eq!(
        w.get_district(WANGCHENG).await.unwrap().district_id,
        WANGCHENG
    );

    // The city-wide answers are partial and say so.
    let partial = reports(gw.channel())
        .get_city_comparison(comparison_request(&city))
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<&str> = partial
        .districts
        .iter()
        .map(|d| d.district_id.as_str())
        .collect();
    assert_eq!(ids, [WANGCHENG]);
    assert_eq!(partial.missing_district_ids, [FURONG]);
    assert_eq!(
        partial.city_total.unwrap().allocated_fen,
        partial.districts[0].allocated_fen
    );
    let list = a
        .city_admin()
        .on(gw.channel())
        .list_districts(pb::ListDistrictsRequest::default())
        .await
        .unwrap();
    assert_eq!(list.districts.len(), 1);
    assert_eq!(list.missing_district_ids, [FURONG]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_busy_district_does_not_starve_its_neighbour() {
    // One backend serves both districts; Wangcheng's line holds two calls.
    let a = spawn_app(Backend::Sqlite).await;
    let mut settings = gateway_settings(&[(&a, &[WANGCHENG, FURONG])]);
    settings.district_concurrency = 2;
    settings.queue_timeout_ms = 200;
    let gw = spawn_gateway(settings).await;
    let blocker = hold_writer(&a).await;
    let w = a.applicant(WANGCHENG, "street-1").on(gw.channel());
    let stuck: Vec<_> = (0..2)
        .map(|_| {
            let w = w.clone();
            tokio::spawn(async move { w.create_case(valid_application()).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let busy = expect_code(
        w.create_case(valid_application()).await,
        Code::ResourceExhausted,
        "a third call while two wait",
    );
    assert!(busy.get_error_details().retry_info().is_some(), "{busy:?}");
    // Furong, on the same backend, is answered at once.
    let f = a.staff(FURONG, Role::CaseOfficer).on(gw.channel());
    let started = Instant::now();
    assert_eq!(f.get_district(FURONG).await.unwrap().district_id, FURONG);
    assert!(started.elapsed() < Duration::from_secs(1));
    drop(blocker);
    for call in stuck {
        call.await.unwrap().unwrap();
    }
}

/// One HTTP/1.1 exchange on a fresh connection; returns the status line, the headers
/// (lower-cased names) and the body, de-chunked.
async fn http1(
    addr: std::net::SocketAddr,
    request_head: &str,
    body: &[u8],
) -> (String, Vec<(String, String)>, Vec<u8>) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request_head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8(raw[..split].to_vec()).unwrap();
    let mut rest = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().to_owned();
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k.trim().to_ascii_lowercase(), v.trim().to_owned())
        })
        .collect();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
    {
        let mut body = Vec::new();
        loop {
            let eol = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let size = usize::from_str_radix(std::str::from_utf8(&rest[..eol]).unwrap().trim(), 16)
                .unwrap();
            if size == 0 {
                break;
            }
            body.extend_from_slice(&rest[eol + 2..eol + 2 + size]);
            rest = rest[eol + 2 + size + 2..].to_vec();
        }
        rest = body;
    }
    (status, headers, rest)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_browser_speaks_grpc_web_with_cors() {
    let a = spawn_app(Backend::Sqlite).await;
    let gw = spawn_gateway(gateway_settings(&[(&a, &[WANGCHENG, FURONG])])).await;
    let token = a.token(WANGCHENG, &[Role::CaseOfficer], None, "officer-web");
    let host = gw.addr;

    // The browser's preflight.
    let (status, headers, _) = http1(
        gw.addr,
        &format!(
            "OPTIONS /relief.v1.DistrictService/GetDistrict HTTP/1.1\r\nHost: {host}\r\n\
             Origin: {WEB_ORIGIN}\r\nAccess-Control-Request-Method: POST\r\n\
             Access-Control-Request-Headers: authorization,content-type,x-grpc-web\r\n\
             Connection: close\r\n\r\n"
        ),
        b"",
    )
    .await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert_eq!(
        header(&headers, "access-control-allow-origin"),
        Some(WEB_ORIGIN)
    );
    let allowed = header(&headers, "access-control-allow-headers").unwrap_or_default();
    assert!(allowed.contains("authorization"), "{allowed}");

    // The call itself, framed as gRPC-Web over HTTP/1.1.
    let message = pb::GetDistrictRequest {
        district_id: WANGCHENG.to_owned(),
        ..Default::default()
    }
    .encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
    frame.extend_from_slice(&message);
    let (status, headers, body) = http1(
        gw.addr,
        &format!(
            "POST /relief.v1.DistrictService/GetDistrict HTTP/1.1\r\nHost: {host}\r\n\
             Origin: {WEB_ORIGIN}\r\nContent-Type: application/grpc-web+proto\r\n\
             X-Grpc-Web: 1\r\nAuthorization: Bearer {token}\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            frame.len()
        ),
        &frame,
    )
    .await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert_eq!(
        header(&headers, "content-type"),
        Some("application/grpc-web+proto")
    );
    assert_eq!(
        header(&headers, "access-control-allow-origin"),
        Some(WEB_ORIGIN)
    );
    // A data frame with the answer, then the trailers frame with grpc-status 0.
    assert_eq!(body[0], 0, "data frame first");
    let len = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
    let answer = pb::GetDistrictResponse::decode(&body[5..5 + len]).unwrap();
    assert_eq!(answer.district.unwrap().district_id, WANGCHENG);
    let trailers = &body[5 + len..];
    assert_eq!(trailers[0], 0x80, "trailers frame last");
    let text = String::from_utf8_lossy(&trailers[5..]).to_ascii_lowercase();
    assert!(text.contains("grpc-status:0"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn operators_scrape_metrics_from_gateway_and_backend() {
    let a = spawn_app_with(
        Backend::Sqlite,
        SpawnOptions {
            metrics: true,
            ..SpawnOptions::default()
        },
    )
    .await;
    let gw = spawn_gateway(gateway_settings(&[(&a, &[WANGCHENG, FURONG])])).await;
    let w = a.staff(WANGCHENG, Role::CaseOfficer).on(gw.channel());
    w.get_district(WANGCHENG).await.unwrap();
    expect_code(
        w.get_case(&uuid::Uuid::now_v7().to_string()).await,
        Code::NotFound,
        "unknown case",
    );

    for (addr, service) in [
        (gw.metrics_addr.unwrap(), "gateway"),
        (a.metrics_addr.unwrap(), "backend"),
    ] {
        let (status, headers, body) = http1(
            addr,
            &format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
            b"",
        )
        .await;
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        assert!(
            header(&headers, "content-type")
                .unwrap()
                .starts_with("text/plain")
        );
        let text = String::from_utf8(body).unwrap();
        let has = |needles: &[&str]| text.lines().any(|l| needles.iter().all(|n| l.contains(n)));
        assert!(
            has(&[
                "relief_grpc_requests_total{",
                &format!("service=\"{service}\""),
                "method=\"/relief.v1.DistrictService/GetDistrict\"",
                "code=\"Ok\"",
                "district=\"430112\"",
            ]),
            "{service}: requests by method, code and district:\n{text}"
        );
        assert!(
            has(&[
                "relief_grpc_requests_total{",
                &format!("service=\"{service}\""),
                "code=\"NotFound\""
            ]),
            "{service}: errors by code"
        );
        assert!(
            has(&[
                "relief_grpc_request_duration_seconds_bucket{",
                &format!("service=\"{service}\"")
            ]),
            "{service}: latency histogram"
        );
        assert!(has(&[
            "relief_grpc_requests_in_flight{",
            &format!("service=\"{service}\"")
        ]));
    }
    let (_, _, body) = http1(
        gw.metrics_addr.unwrap(),
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"",
    )
    .await;
    let text = String::from_utf8(body).unwrap();
    assert!(
        text.contains("relief_gateway_upstream_up{"),
        "upstream health"
    );
    assert!(
        text.contains("relief_db_pool_connections{"),
        "database pool use"
    );
}
