//! The contract documents itself: every error the server and the gateway answer carries a
//! `google.rpc.ErrorInfo` whose reason is a value of the contract's `ErrorReason`, in the
//! domain `relief.v1`, besides its other details; every RPC's comment names its callers and
//! its errors; and every `ErrorReason` says when it is given.

use std::collections::{BTreeSet, HashMap};

use prost_reflect::DescriptorPool;
use relief_proto::v1 as pb;
use relief_proto::v1::ErrorReason;
use relief_proto::v1::approval_service_client::ApprovalServiceClient;
use relief_tests::gateway::{gateway_settings, spawn_gateway};
use relief_tests::{
    ApplicationBuilder, Backend, Role, TestApp, WANGCHENG, backend_tests, expect_code, request_id,
    spawn_app, valid_application, wangcheng_rules, with_bearer,
};
use tonic::{Code, Status};
use tonic_types::StatusExt as _;

use crate::hostile_input::send_raw;

backend_tests!(every_error_carries_its_reason);

/// Asserts `status` has `code` and an `ErrorInfo` of `reason` in relief's domain, with
/// `metadata` among its metadata; returns the status for further checks.
pub(crate) fn expect_reason<T: std::fmt::Debug>(
    result: Result<T, Status>,
    code: Code,
    reason: ErrorReason,
    metadata: &[(&str, &str)],
) -> Status {
    let status = expect_code(result, code, reason.reason());
    let info = status
        .get_error_details()
        .error_info()
        .cloned()
        .unwrap_or_else(|| panic!("{reason:?}: no ErrorInfo in {status:?}"));
    assert_eq!(info.reason, reason.reason(), "{status:?}");
    assert_eq!(info.domain, relief_proto::ERROR_DOMAIN, "{status:?}");
    assert_eq!(info.domain, "relief.v1");
    for (key, value) in metadata {
        assert_eq!(
            info.metadata.get(*key).map(String::as_str),
            Some(*value),
            "{reason:?}: metadata {key} in {:?}",
            info.metadata
        );
    }
    status
}

fn approvals(app: &TestApp) -> ApprovalServiceClient<tonic::transport::Channel> {
    ApprovalServiceClient::new(app.channel())
}

async fn every_error_carries_its_reason(backend: Backend) {
    let app = spawn_app(backend).await;
    let clerk = app.applicant(WANGCHENG, "gaotangling");
    let officer = app.staff(WANGCHENG, Role::CaseOfficer);

    // Authentication, before any handler runs.
    let case_client = app.case_client();
    expect_reason(
        case_client
            .clone()
            .get_case(tonic::Request::new(pb::GetCaseRequest::default()))
            .await,
        Code::Unauthenticated,
        ErrorReason::TokenMissing,
        &[],
    );
    expect_reason(
        case_client
            .clone()
            .get_case(with_bearer(pb::GetCaseRequest::default(), "not.a.token"))
            .await,
        Code::Unauthenticated,
        ErrorReason::TokenInvalid,
        &[],
    );

    // Who may act.
    expect_reason(
        officer.create_case(valid_application()).await,
        Code::PermissionDenied,
        ErrorReason::PermissionDenied,
        &[],
    );

    // A request the rules refuse, from a handler and from the wire check.
    let status = expect_reason(
        clerk
            .create_case(
                ApplicationBuilder::new()
                    .with(|a| {
                        a.requested_amount_fen = -1;
                    })
                    .build(),
            )
            .await,
        Code::InvalidArgument,
        ErrorReason::InvalidArgument,
        &[
            ("violations", "1"),
            ("field", "application.requested_amount_fen"),
        ],
    );
    assert!(
        status.get_details_bad_request().is_some(),
        "BadRequest as before: {status:?}"
    );
    expect_reason(
        clerk
            .create_case(ApplicationBuilder::new().name("张\u{0}三").build())
            .await,
        Code::InvalidArgument,
        ErrorReason::InvalidArgument,
        &[("field", "application.recipient.name")],
    );
    // Bytes that are no CreateCaseRequest: `application` with wire type 0.
    expect_reason(
        send_raw(
            app.channel(),
            "/relief.v1.CaseService/CreateCase",
            &clerk.token,
            vec![2 << 3, 1],
        )
        .await,
        Code::Internal,
        ErrorReason::MalformedMessage,
        &[],
    );
    let huge = "困".repeat(2 * 1024 * 1024);
    expect_reason(
        clerk
            .create_case(
                ApplicationBuilder::new()
                    .with(|a| a.basic_situation = huge)
                    .build(),
            )
            .await,
        Code::ResourceExhausted,
        ErrorReason::MessageTooLarge,
        &[],
    );

    // Objects that are not there, or already are.
    expect_reason(
        clerk.get_case("0190f5c2-0000-7000-8000-000000000000").await,
        Code::NotFound,
        ErrorReason::NotFound,
        &[("resource", "case")],
    );
    expect_reason(
        app.city_admin()
            .create_district(pb::CreateDistrictRequest {
                request_id: request_id(),
                district_id: WANGCHENG.to_owned(),
                name: "望城区".to_owned(),
                rules: Some(wangcheng_rules()),
            })
            .await,
        Code::AlreadyExists,
        ErrorReason::AlreadyExists,
        &[],
    );
    let reused = request_id();
    clerk
        .create_case_with(&reused, valid_application())
        .await
        .expect("created");
    expect_reason(
        clerk
            .create_case_with(&reused, ApplicationBuilder::new().name("李四").build())
            .await,
        Code::AlreadyExists,
        ErrorReason::RequestIdReused,
        &[],
    );

    // States that do not allow the call.
    let submitted = clerk.submitted(valid_application()).await;
    expect_reason(
        clerk
            .update_case_raw(pb::UpdateCaseRequest {
                request_id: request_id(),
                case_id: submitted.case_id.clone(),
                expected_version: submitted.version + 7,
                application: Some(valid_application()),
            })
            .await,
        Code::Aborted,
        ErrorReason::VersionStale,
        &[],
    );
    let status = expect_reason(
        clerk.submit(&submitted.case_id).await,
        Code::FailedPrecondition,
        ErrorReason::CaseState,
        &[("state", "in_review"), ("action", "submit")],
    );
    let failure = status
        .get_details_precondition_failure()
        .expect("PreconditionFailure as before");
    assert_eq!(failure.violations[0].r#type, "CASE_STATE");
    let draft = clerk.draft(valid_application()).await;
    let status = expect_reason(
        approvals(&app)
            .decide_case(with_bearer(
                pb::DecideCaseRequest {
                    request_id: request_id(),
                    case_id: draft.case_id.clone(),
                    step_id: relief_tests::FIRST_STEP.to_owned(),
                    decision: pb::Decision::Approve.into(),
                    ..Default::default()
                },
                &officer.token,
            ))
            .await,
        Code::FailedPrecondition,
        ErrorReason::CaseNotInReview,
        &[],
    );
    assert_eq!(
        status
            .get_details_precondition_failure()
            .expect("PreconditionFailure as before")
            .violations[0]
            .r#type,
        "CASE_NOT_IN_REVIEW"
    );

    // The gateway's own refusals carry theirs; what a backend answers passes unchanged.
    let gw = spawn_gateway(gateway_settings(&[(&app, &[WANGCHENG])])).await;
    let auditor = app.city(Role::Auditor);
    expect_reason(
        auditor
            .naming("430199")
            .on(gw.channel())
            .get_district("430199")
            .await,
        Code::NotFound,
        ErrorReason::DistrictNotRouted,
        &[("district", "430199")],
    );
    expect_reason(
        relief_proto::v1::case_service_client::CaseServiceClient::new(gw.channel())
            .get_case(tonic::Request::new(pb::GetCaseRequest::default()))
            .await,
        Code::Unauthenticated,
        ErrorReason::TokenMissing,
        &[],
    );
    expect_reason(
        officer
            .on(gw.channel())
            .create_case(valid_application())
            .await,
        Code::PermissionDenied,
        ErrorReason::PermissionDenied,
        &[],
    );
}

/// Every method of every relief service, with the comment above it.
fn rpc_comments() -> Vec<(String, String)> {
    let pool = DescriptorPool::decode(relief_proto::FILE_DESCRIPTOR_SET).expect("descriptors");
    let mut out = Vec::new();
    for service in pool.services() {
        if !service.full_name().starts_with("relief.v1.") {
            continue;
        }
        for method in service.methods() {
            let leading = leading_comment(&pool, method.full_name()).unwrap_or_default();
            out.push((method.full_name().to_owned(), leading));
        }
    }
    out
}

/// The leading comment of the element named `full_name` (a method), from the files' source
/// code info.
fn leading_comment(pool: &DescriptorPool, full_name: &str) -> Option<String> {
    // service index 6 in FileDescriptorProto, method index 2 in ServiceDescriptorProto.
    for file in pool.files() {
        let proto = file.file_descriptor_proto();
        let Some(info) = proto.source_code_info.as_ref() else {
            continue;
        };
        for (si, service) in proto.service.iter().enumerate() {
            for (mi, method) in service.method.iter().enumerate() {
                let name = format!("{}.{}.{}", proto.package(), service.name(), method.name());
                if name != full_name {
                    continue;
                }
                let path = [6, si as i32, 2, mi as i32];
                return info
                    .location
                    .iter()
                    .find(|l| l.path == path)
                    .map(|l| l.leading_comments().to_owned());
            }
        }
    }
    None
}

#[test]
fn every_rpc_names_its_callers_and_errors() {
    let rpcs = rpc_comments();
    assert!(rpcs.len() >= 48, "{} methods", rpcs.len());
    let reasons: BTreeSet<String> = ErrorReason::iter_reasons().collect();
    let mut missing = Vec::new();
    for (name, comment) in &rpcs {
        let has = |label: &str| comment.lines().any(|l| l.trim_start().starts_with(label));
        if !has("Callers:") || !has("Errors:") {
            missing.push(name.clone());
        }
        // Every UPPER_CASE word in parentheses after a code is a reason of the contract.
        for word in comment
            .split(|c: char| !(c.is_ascii_uppercase() || c == '_'))
            .filter(|w| w.len() > 3 && w.contains('_'))
        {
            assert!(
                reasons.contains(word) || is_code(word) || word == "ERROR_REASON",
                "{name}: {word} is neither a status code nor an ErrorReason"
            );
        }
    }
    assert!(
        missing.is_empty(),
        "RPCs without a Callers: and an Errors: line: {missing:?}"
    );
}

/// Whether `word` is a gRPC status code's name.
fn is_code(word: &str) -> bool {
    (0..=16).any(|c| {
        format!("{:?}", Code::from_i32(c))
            .chars()
            .flat_map(|ch| {
                if ch.is_ascii_uppercase() {
                    vec!['_', ch]
                } else {
                    vec![ch.to_ascii_uppercase()]
                }
            })
            .collect::<String>()
            .trim_start_matches('_')
            == word
    })
}

#[test]
fn every_error_reason_is_documented() {
    let pool = DescriptorPool::decode(relief_proto::FILE_DESCRIPTOR_SET).expect("descriptors");
    let reason = pool
        .get_enum_by_name("relief.v1.ErrorReason")
        .expect("ErrorReason in the contract");
    let file = reason.parent_file();
    let proto = file.file_descriptor_proto();
    let index = proto
        .enum_type
        .iter()
        .position(|e| e.name() == "ErrorReason")
        .expect("a top-level enum") as i32;
    let info = proto.source_code_info.as_ref().expect("source info");
    let comments: HashMap<Vec<i32>, &str> = info
        .location
        .iter()
        .map(|l| (l.path.clone(), l.leading_comments()))
        .collect();
    let mut undocumented = Vec::new();
    for (vi, value) in reason.values().enumerate() {
        // enum_type is field 5 of FileDescriptorProto, value field 2 of EnumDescriptorProto.
        let comment = comments
            .get(&vec![5, index, 2, vi as i32])
            .copied()
            .unwrap_or_default();
        let code_named = comment
            .split(|c: char| !(c.is_ascii_uppercase() || c == '_'))
            .any(is_code);
        if value.number() != 0 && !code_named {
            undocumented.push(value.name().to_owned());
        }
    }
    assert!(
        undocumented.is_empty(),
        "ErrorReason values whose comment names no status code: {undocumented:?}"
    );
}

/// Every reason string the server's code gives is a value of the contract.
#[test]
fn every_reason_in_the_code_is_in_the_contract() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates");
    let mut found = BTreeSet::new();
    let mut stack = vec![root];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("readable") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("text");
                for marker in ["precondition(", "reason: \"", "with_reason("] {
                    for (at, _) in text.match_indices(marker) {
                        let rest = &text[at + marker.len()..];
                        let Some(open) = rest.find('"') else { continue };
                        if open > 120 {
                            continue;
                        }
                        let after = &rest[open + 1..];
                        let end = after.find('"').unwrap_or(0);
                        let word = &after[..end];
                        if !word.is_empty()
                            && word.chars().all(|c| c.is_ascii_uppercase() || c == '_')
                        {
                            found.insert(word.to_owned());
                        }
                    }
                }
            }
        }
    }
    assert!(found.len() > 20, "found {found:?}");
    let unknown: Vec<&String> = found
        .iter()
        .filter(|r| ErrorReason::from_reason(r).is_none())
        .collect();
    assert!(
        unknown.is_empty(),
        "reasons given in the code but missing from ErrorReason: {unknown:?}"
    );
}

trait Reasons {
    fn iter_reasons() -> Box<dyn Iterator<Item = String>>;
}

impl Reasons for ErrorReason {
    fn iter_reasons() -> Box<dyn Iterator<Item = String>> {
        Box::new(
            (1..200)
                .filter_map(|n| ErrorReason::try_from(n).ok())
                .map(|r| r.reason().to_owned()),
        )
    }
}
