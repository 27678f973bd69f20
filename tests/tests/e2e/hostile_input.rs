//! Requests built to cost the server: lists of hundreds of thousands of empty elements,
//! hundreds of problems at once, text that hides what it says, messages over the size limit
//! and bytes that are no protobuf at all. Each is refused precisely and cheaply, with an answer
//! of a few kilobytes, and writes nothing.

use prost::Message as _;
use relief_proto::v1 as pb;
use relief_proto::v1::approval_service_client::ApprovalServiceClient;
use relief_proto::v1::sync_service_client::SyncServiceClient;
use relief_tests::gateway::{gateway_settings, spawn_gateway};
use relief_tests::{
    ApplicationBuilder, Backend, Role, TestApp, WANGCHENG, backend_tests, expect_code,
    expect_violations, request_id, spawn_app, valid_application, with_bearer,
};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_types::StatusExt as _;

use crate::approvals::channel;

backend_tests!(
    half_a_million_empty_attachments_are_counted_not_decoded,
    two_hundred_thousand_attendees_are_counted_not_decoded,
    a_hundred_problems_come_back_as_twenty_and_a_count,
    text_that_hides_what_it_says_is_refused_and_writes_nothing,
    long_texts_keep_their_lines_and_names_are_stored_in_nfc,
    a_streamed_record_goes_through_the_same_check,
    a_message_over_the_size_limit_is_resource_exhausted,
    bytes_that_are_no_protobuf_are_internal_and_say_so,
);

/// The answer to a refused request: a message under 1 KiB and at most twenty violations
/// plus one that counts the rest.
fn assert_small(status: &Status, what: &str) {
    assert!(
        status.message().len() < 1024,
        "{what}: a message of {} bytes",
        status.message().len()
    );
    let listed = status
        .get_details_bad_request()
        .map_or(0, |b| b.field_violations.len());
    assert!(listed <= 21, "{what}: {listed} violations");
}

async fn nothing_written(app: &TestApp) {
    let actions = app.actions(WANGCHENG, None).await;
    assert!(
        actions
            .iter()
            .all(|a| a.starts_with("district.") || a == "ledger.entry_added"),
        "nothing but the district and its budget was written: {actions:?}"
    );
}

async fn half_a_million_empty_attachments_are_counted_not_decoded(backend: Backend) {
    let app = spawn_app(backend).await;
    let clerk = app.applicant(WANGCHENG, "gaotangling");
    let mut application = valid_application();
    application.attachments = vec![pb::Attachment::default(); 500_000];
    let request = pb::CreateCaseRequest {
        request_id: request_id(),
        application: Some(application),
        ..Default::default()
    };
    assert!(
        request.encoded_len() < 4 * 1024 * 1024,
        "fits the size limit"
    );
    let status = expect_code(
        clerk.create_case_raw(request).await,
        Code::InvalidArgument,
        "500,000 attachments",
    );
    assert_small(&status, "500,000 attachments");
    let fields = relief_tests::violation_fields(&status);
    assert_eq!(fields, ["application.attachments"], "{}", status.message());
    nothing_written(&app).await;
}

async fn two_hundred_thousand_attendees_are_counted_not_decoded(backend: Backend) {
    let app = spawn_app(backend).await;
    let office = app.token(WANGCHENG, &[Role::BureauOffice], None, "office-chen");
    let request = pb::OpenMeetingRequest {
        request_id: request_id(),
        meeting_date: "2022-06-15".to_owned(),
        attendees: vec![String::new(); 200_000],
        ..Default::default()
    };
    let status = expect_code(
        ApprovalServiceClient::new(channel(&app).await)
            .open_meeting(with_bearer(request, &office))
            .await,
        Code::InvalidArgument,
        "200,000 attendees",
    );
    assert_small(&status, "200,000 attendees");
    assert_eq!(relief_tests::violation_fields(&status), ["attendees"]);
    // Over the meeting's own cap of 50 but within the wire's limit: refused once, for the
    // count, not once per name.
    let request = pb::OpenMeetingRequest {
        request_id: request_id(),
        meeting_date: "2022-06-15".to_owned(),
        attendees: vec![String::new(); 900],
        ..Default::default()
    };
    expect_violations(
        ApprovalServiceClient::new(channel(&app).await)
            .open_meeting(with_bearer(request, &office))
            .await,
        &["attendees"],
        "900 empty attendees",
    );
    nothing_written(&app).await;
}

async fn a_hundred_problems_come_back_as_twenty_and_a_count(backend: Backend) {
    let app = spawn_app(backend).await;
    let clerk = app.applicant(WANGCHENG, "gaotangling");
    // Fifty attachments, the most allowed, each with two problems of its own.
    let application = ApplicationBuilder::new()
        .with(|a| {
            a.attachments = (0..50)
                .map(|i| pb::Attachment {
                    name: format!("材料{i}.pdf"),
                    media_type: "pdf".to_owned(),
                    sha256_hex: "zz".to_owned(),
                    size_bytes: 1,
                    ..Default::default()
                })
                .collect();
        })
        .build();
    let status = expect_code(
        clerk.create_case(application).await,
        Code::InvalidArgument,
        "100 problems",
    );
    assert_small(&status, "100 problems");
    let listed = status.get_details_bad_request().unwrap().field_violations;
    assert_eq!(listed.len(), 21, "{}", status.message());
    assert!(
        listed[..20]
            .iter()
            .all(|v| v.field.starts_with("application.attachments[")),
        "{listed:?}"
    );
    assert_eq!(listed[20].field, "");
    assert!(listed[20].description.contains("80 more"), "{listed:?}");
    assert!(
        status.message().contains("100 problems"),
        "{}",
        status.message()
    );
    nothing_written(&app).await;
}

async fn text_that_hides_what_it_says_is_refused_and_writes_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let clerk = app.applicant(WANGCHENG, "gaotangling");
    let names = [
        ("NUL", "张\0三"),
        ("a C0 control", "张\u{1}三"),
        ("a C1 control", "张\u{85}三"),
        ("DEL", "张\u{7f}三"),
        ("a right-to-left override", "张\u{202E}三"),
        ("a left-to-right isolate", "张\u{2066}三"),
        ("a non-character", "张\u{FFFF}三"),
        ("another non-character", "张\u{FDD0}三"),
        ("a tab in a name", "张\t三"),
        ("a line break in a name", "张\n三"),
    ];
    for (what, name) in names {
        let status = expect_code(
            clerk
                .create_case(ApplicationBuilder::new().name(name).build())
                .await,
            Code::InvalidArgument,
            what,
        );
        assert_eq!(
            relief_tests::violation_fields(&status),
            ["application.recipient.name"],
            "{what}: {}",
            status.message()
        );
    }
    // Every string of every request, not only the application's.
    let office = app.token(WANGCHENG, &[Role::BureauOffice], None, "office-chen");
    let meeting = pb::OpenMeetingRequest {
        request_id: request_id(),
        meeting_date: "2022-06-15".to_owned(),
        attendees: vec!["局长".to_owned(), "副\u{202E}局长".to_owned()],
        minutes_reference: "纪要\u{0}".to_owned(),
        ..Default::default()
    };
    expect_violations(
        ApprovalServiceClient::new(channel(&app).await)
            .open_meeting(with_bearer(meeting, &office))
            .await,
        &["attendees[1]", "minutes_reference"],
        "a meeting",
    );
    let status = expect_code(
        clerk
            .create_case(
                ApplicationBuilder::new()
                    .with(|a| a.basic_situation = "困难\u{0}".to_owned())
                    .build(),
            )
            .await,
        Code::InvalidArgument,
        "NUL in a long text",
    );
    assert_eq!(
        relief_tests::violation_fields(&status),
        ["application.basic_situation"]
    );
    nothing_written(&app).await;
}

async fn long_texts_keep_their_lines_and_names_are_stored_in_nfc(backend: Backend) {
    let app = spawn_app(backend).await;
    let clerk = app.applicant(WANGCHENG, "gaotangling");
    let case = clerk
        .create_case(
            ApplicationBuilder::new()
                .name("Zoe\u{301} 张")
                .with(|a| {
                    a.basic_situation = "家庭困难\n\t长期患病".to_owned();
                    a.reason = "第一条\r\n第二条\r\n".to_owned();
                })
                .build(),
        )
        .await
        .expect("tabs and line breaks are fine in long texts");
    let stored = clerk.get_case(&case.case_id).await.unwrap();
    let application = stored.application.unwrap();
    assert_eq!(application.recipient.unwrap().name, "Zo\u{e9} 张");
    assert_eq!(application.basic_situation, "家庭困难\n\t长期患病");
    assert_eq!(application.reason, "第一条\n第二条\n");
    // A search typed the other way finds it: both sides are NFC.
    let staff = app.staff(WANGCHENG, Role::CaseOfficer);
    let found = staff
        .list_all(pb::ListCasesRequest {
            recipient_name_contains: "Zoe\u{301}".to_owned(),
            ..Default::default()
        })
        .await;
    assert_eq!(found.len(), 1);
}

async fn import(app: &TestApp, records: Vec<pb::ImportCasesRequest>) -> Result<(), Status> {
    let token = app.token(WANGCHENG, &[Role::DistrictAdmin], None, "admin-430112");
    SyncServiceClient::new(channel(app).await)
        .import_cases(with_bearer(tokio_stream::iter(records), &token))
        .await
        .map(|_| ())
}

fn record(external_id: &str, application: pb::Application) -> pb::ImportCasesRequest {
    let at = Some(prost_types::Timestamp {
        seconds: 1_646_100_000,
        nanos: 0,
    });
    pb::ImportCasesRequest {
        external_id: external_id.to_owned(),
        applicant_unit_id: "street-1".to_owned(),
        application: Some(application),
        submit_time: at,
        decisions: vec![pb::ImportedDecision {
            step_id: "district_leader_approval".to_owned(),
            decision: pb::Decision::Reject as i32,
            opinion: "不予救助".to_owned(),
            decided_by_subject: "leader".to_owned(),
            decided_by_name: "领导".to_owned(),
            decided_by_role: pb::Role::DistrictLeader as i32,
            decide_time: Some(prost_types::Timestamp {
                seconds: 1_646_200_000,
                nanos: 0,
            }),
            ..Default::default()
        }],
        ..Default::default()
    }
}

async fn a_streamed_record_goes_through_the_same_check(backend: Backend) {
    let app = spawn_app(backend).await;
    let good = record(
        "legacy-1",
        ApplicationBuilder::new().fiscal_year(2022).build(),
    );
    let bad = record(
        "legacy-2",
        ApplicationBuilder::new()
            .fiscal_year(2022)
            .name("张\0三")
            .build(),
    );
    let status = expect_code(
        import(&app, vec![good, bad]).await,
        Code::InvalidArgument,
        "a NUL in a streamed record",
    );
    assert_eq!(
        relief_tests::violation_fields(&status),
        ["application.recipient.name"],
        "{}",
        status.message()
    );
    // The call failed before its first batch was written.
    nothing_written(&app).await;
}

async fn a_message_over_the_size_limit_is_resource_exhausted(backend: Backend) {
    let app = spawn_app(backend).await;
    let clerk = app.applicant(WANGCHENG, "gaotangling");
    let huge = "困".repeat(2 * 1024 * 1024); // 6 MiB of UTF-8, over the 4 MiB default
    let status = expect_code(
        clerk
            .create_case(
                ApplicationBuilder::new()
                    .with(|a| a.basic_situation = huge.clone())
                    .build(),
            )
            .await,
        Code::ResourceExhausted,
        "a 6 MiB CreateCase",
    );
    assert!(
        status.message().contains("too large"),
        "{}",
        status.message()
    );
    let status = expect_code(
        import(
            &app,
            vec![record(
                "legacy-1",
                ApplicationBuilder::new()
                    .fiscal_year(2022)
                    .with(|a| a.basic_situation = huge.clone())
                    .build(),
            )],
        )
        .await,
        Code::ResourceExhausted,
        "a 6 MiB streamed record",
    );
    assert!(
        status.message().contains("too large"),
        "{}",
        status.message()
    );
    nothing_written(&app).await;
}

/// Sends bytes as they are, as a client with no notion of protobuf would.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }

    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let n = bytes::Buf::remaining(src);
        Ok(Some(bytes::Buf::copy_to_bytes(src, n).to_vec()))
    }
}

pub(crate) async fn send_raw(
    channel: Channel,
    path: &'static str,
    token: &str,
    body: Vec<u8>,
) -> Result<Vec<u8>, Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    grpc.unary(
        with_bearer(body, token),
        PathAndQuery::from_static(path),
        RawCodec,
    )
    .await
    .map(tonic::Response::into_inner)
}

const CREATE_CASE: &str = "/relief.v1.CaseService/CreateCase";

/// Protobuf's key of field `number` with wire type `wire`, for fields under 16.
fn key(number: u8, wire: u8) -> u8 {
    (number << 3) | wire
}

async fn bytes_that_are_no_protobuf_are_internal_and_say_so(backend: Backend) {
    let app = spawn_app(backend).await;
    let clerk = app.applicant(WANGCHENG, "gaotangling");
    let name_not_utf8 = {
        // CreateCaseRequest { application { recipient { name: FF FE } } }
        let name = [key(1, 2), 2, 0xFF, 0xFE];
        let recipient = [&[key(1, 2), name.len() as u8][..], &name].concat();
        let application = [&[key(2, 2), recipient.len() as u8][..], &recipient].concat();
        [&[key(1, 2), 1, b'r'][..], &application].concat()
    };
    let cases: [(&str, Vec<u8>, &str); 4] = [
        ("garbage", vec![0xFF; 32], "a field key is cut short"),
        (
            "a length past the end",
            vec![key(1, 2), 100, b'r'],
            "request_id: runs past the end",
        ),
        (
            "a wrong wire type",
            vec![key(2, 0), 1],
            "application: has wire type 0",
        ),
        (
            "text that is not UTF-8",
            name_not_utf8,
            "application.recipient.name: is not valid UTF-8",
        ),
    ];
    for (what, body, problem) in cases {
        let status = expect_code(
            send_raw(channel(&app).await, CREATE_CASE, &clerk.token, body).await,
            Code::Internal,
            what,
        );
        let message = status.message();
        assert!(
            message.starts_with("relief.v1.CreateCaseRequest could not be decoded: "),
            "{what}: {message}"
        );
        assert!(message.contains(problem), "{what}: {message}");
        assert!(
            !message.contains(".rs"),
            "{what}: no server internals: {message}"
        );
    }
    // Well-formed bytes of a valid request go through the same path and succeed.
    let good = pb::CreateCaseRequest {
        request_id: request_id(),
        application: Some(valid_application()),
        ..Default::default()
    };
    let answer = send_raw(
        channel(&app).await,
        CREATE_CASE,
        &clerk.token,
        good.encode_to_vec(),
    )
    .await
    .expect("a valid request sent as raw bytes");
    let case = pb::CreateCaseResponse::decode(answer.as_slice())
        .unwrap()
        .case
        .unwrap();
    assert_eq!(case.state, pb::CaseState::Draft as i32);
}

/// The gateway decodes city-wide calls itself: an oversized one is RESOURCE_EXHAUSTED there
/// too, and a call it forwards is answered so by the backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_gateway_answers_oversized_calls_resource_exhausted() {
    let app = spawn_app(Backend::Sqlite).await;
    let gw = spawn_gateway(gateway_settings(&[(&app, &[WANGCHENG])])).await;
    let city = app.token("city", &[Role::Auditor], None, "auditor-city");
    // GetCityComparisonRequest { fiscal_year: 2022 } and an unknown field of 5 MiB.
    let mut body = pb::GetCityComparisonRequest {
        fiscal_year: 2022,
        ..Default::default()
    }
    .encode_to_vec();
    let filler = vec![b'x'; 5 * 1024 * 1024];
    body.push(key(15, 2));
    prost::encoding::encode_varint(filler.len() as u64, &mut body);
    body.extend_from_slice(&filler);
    let status = expect_code(
        send_raw(
            gw.channel(),
            "/relief.v1.ReportService/GetCityComparison",
            &city,
            body,
        )
        .await,
        Code::ResourceExhausted,
        "an oversized city-wide call",
    );
    assert!(
        status.message().contains("too large"),
        "{}",
        status.message()
    );
    let clerk = app.applicant(WANGCHENG, "gaotangling");
    let forwarded = pb::CreateCaseRequest {
        request_id: request_id(),
        application: Some(
            ApplicationBuilder::new()
                .with(|a| a.basic_situation = "困".repeat(2 * 1024 * 1024))
                .build(),
        ),
        ..Default::default()
    };
    expect_code(
        clerk.on(gw.channel()).create_case_raw(forwarded).await,
        Code::ResourceExhausted,
        "an oversized call through the gateway",
    );
}
