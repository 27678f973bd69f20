//! Every RPC of the contract, fed by proptest: messages built from the contract's own
//! descriptors with arbitrary field values (empty, huge, negative, control characters,
//! enum numbers nobody defined, nested messages or none) and arbitrary bytes that are no
//! message at all, sent by callers of every kind. Whatever arrives, the server answers with
//! a status of the contract (never a panic, a dropped connection or an INTERNAL for a
//! well-formed message), stays healthy, and its audit chain stays whole.

use std::time::Duration;

use proptest::prelude::*;
use proptest::strategy::{BoxedStrategy, ValueTree as _};
use proptest::test_runner::TestRunner;
use prost::Message as _;
use prost_reflect::{
    DescriptorPool, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, MethodDescriptor,
    Value,
};
use relief_tests::{
    Backend, FURONG, Role, TestApp, WANGCHENG, backend_tests, spawn_app, with_bearer,
};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::approvals::channel;
use crate::hostile_input::RawCodec;

backend_tests!(every_rpc_answers_arbitrary_input_with_a_status_of_the_contract);

/// Generated messages per RPC, and byte strings per RPC.
const MESSAGES_PER_RPC: usize = 48;
const BYTES_PER_RPC: usize = 16;
/// How deep generated messages nest.
const DEPTH: u32 = 3;

fn text() -> BoxedStrategy<String> {
    prop_oneof![
        4 => Just(String::new()),
        4 => "\\PC{0,24}",
        2 => any::<String>(),
        1 => "[0-9]{6}",
        1 => "20[0-9]{2}-[01][0-9]-[0-3][0-9]",
        1 => Just("430112".to_owned()),
        1 => Just("0190a0b0-0000-7000-8000-000000000000".to_owned()),
        1 => Just("\u{0}".to_owned()),
        1 => Just("张三\u{202e}".to_owned()),
        1 => Just("=HYPERLINK(\"x\")".to_owned()),
        1 => (1usize..20_000).prop_map(|n| "字".repeat(n)),
    ]
    .boxed()
}

fn int64() -> BoxedStrategy<i64> {
    prop_oneof![
        3 => Just(0i64),
        3 => 0i64..1_000_000,
        2 => any::<i64>(),
        1 => Just(i64::MAX),
        1 => Just(i64::MIN),
        1 => Just(-1i64),
        1 => 2000i64..2100,
    ]
    .boxed()
}

fn scalar(field: &FieldDescriptor, depth: u32) -> Option<BoxedStrategy<Value>> {
    Some(match field.kind() {
        Kind::String => text().prop_map(Value::String).boxed(),
        Kind::Bytes => proptest::collection::vec(any::<u8>(), 0..48)
            .prop_map(|b| Value::Bytes(b.into()))
            .boxed(),
        Kind::Bool => any::<bool>().prop_map(Value::Bool).boxed(),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            int64().prop_map(|v| Value::I32(v as i32)).boxed()
        }
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => int64().prop_map(Value::I64).boxed(),
        Kind::Uint32 | Kind::Fixed32 => int64().prop_map(|v| Value::U32(v as u32)).boxed(),
        Kind::Uint64 | Kind::Fixed64 => int64().prop_map(|v| Value::U64(v as u64)).boxed(),
        Kind::Double => any::<f64>().prop_map(Value::F64).boxed(),
        Kind::Float => any::<f32>().prop_map(Value::F32).boxed(),
        Kind::Enum(e) => {
            let known: Vec<i32> = e.values().map(|v| v.number()).collect();
            prop_oneof![
                4 => proptest::sample::select(known),
                1 => any::<i32>(),
            ]
            .prop_map(Value::EnumNumber)
            .boxed()
        }
        Kind::Message(m) => {
            if depth == 0 {
                return None;
            }
            message(&m, depth - 1).prop_map(Value::Message).boxed()
        }
    })
}

fn field_value(field: &FieldDescriptor, depth: u32) -> Option<BoxedStrategy<Option<Value>>> {
    if field.is_map() {
        return None;
    }
    let one = scalar(field, depth)?;
    let value = if field.is_list() {
        proptest::collection::vec(one, 0..4)
            .prop_map(Value::List)
            .boxed()
    } else {
        one
    };
    Some(proptest::option::weighted(0.7, value).boxed())
}

fn message(descriptor: &MessageDescriptor, depth: u32) -> BoxedStrategy<DynamicMessage> {
    let fields: Vec<FieldDescriptor> = descriptor.fields().collect();
    let strategies: Vec<BoxedStrategy<Option<Value>>> = fields
        .iter()
        .filter_map(|f| field_value(f, depth))
        .collect();
    let kept: Vec<FieldDescriptor> = fields
        .into_iter()
        .filter(|f| !f.is_map() && (depth > 0 || !matches!(f.kind(), Kind::Message(_))))
        .collect();
    let descriptor = descriptor.clone();
    strategies
        .prop_map(move |values| {
            let mut message = DynamicMessage::new(descriptor.clone());
            for (field, value) in kept.iter().zip(values) {
                if let Some(value) = value {
                    message.set_field(field, value);
                }
            }
            message
        })
        .boxed()
}

/// What a call came back with, reduced to what the test judges.
fn judge(method: &MethodDescriptor, well_formed: bool, result: Result<(), Status>) -> Code {
    let Err(status) = result else {
        return Code::Ok;
    };
    let name = method.full_name();
    let code = status.code();
    assert!(
        !matches!(
            code,
            Code::Unknown | Code::Cancelled | Code::Unavailable | Code::DataLoss
        ),
        "{name}: {code:?} {} (a panic or a dropped connection)",
        status.message()
    );
    if well_formed {
        assert_ne!(
            code,
            Code::Internal,
            "{name}: INTERNAL for a well-formed message: {}",
            status.message()
        );
    }
    assert!(
        status.message().len() < 1024,
        "{name}: a message of {} bytes",
        status.message().len()
    );
    let lower = status.message().to_lowercase();
    assert!(
        !lower.contains("panick") && !lower.contains("sqlx") && !lower.contains("sea_orm"),
        "{name}: the message shows the server's insides: {}",
        status.message()
    );
    code
}

async fn call(
    channel: &Channel,
    method: &MethodDescriptor,
    token: &str,
    body: Vec<u8>,
) -> Result<(), Status> {
    let path = format!("/{}/{}", method.parent_service().full_name(), method.name());
    let path = PathAndQuery::try_from(path).expect("a path");
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let mut request = with_bearer(body, token);
    request.set_timeout(Duration::from_secs(10));
    if method.is_client_streaming() {
        let mut request = request.map(|b| futures::stream::iter([b.clone(), b]));
        request.set_timeout(Duration::from_secs(10));
        grpc.client_streaming(request, path, RawCodec).await?;
    } else if method.is_server_streaming() {
        let mut stream = grpc
            .server_streaming(request, path, RawCodec)
            .await?
            .into_inner();
        // A stream that waits for news is a fine answer; its first message or its end is
        // what is judged.
        if let Ok(first) = tokio::time::timeout(Duration::from_secs(2), stream.message()).await {
            first?;
        }
    } else {
        grpc.unary(request, path, RawCodec).await?;
    }
    Ok(())
}

async fn every_rpc_answers_arbitrary_input_with_a_status_of_the_contract(backend: Backend) {
    let app = spawn_app(backend).await;
    let tokens = callers(&app);
    let pool = DescriptorPool::decode(relief_proto::FILE_DESCRIPTOR_SET).expect("descriptors");
    let channel = channel(&app).await;
    let mut runner = TestRunner::deterministic();
    let mut methods = 0;
    let mut calls = 0;
    let mut answers = std::collections::BTreeMap::<String, usize>::new();
    for service in pool.services() {
        if service.package_name() != "relief.v1" {
            continue;
        }
        for method in service.methods() {
            methods += 1;
            let strategy = message(&method.input(), DEPTH);
            for i in 0..MESSAGES_PER_RPC {
                let generated = strategy.new_tree(&mut runner).expect("a message").current();
                let token = &tokens[i % tokens.len()];
                let result = call(&channel, &method, token, generated.encode_to_vec()).await;
                *answers
                    .entry(format!("{:?}", judge(&method, true, result)))
                    .or_insert(0) += 1;
                calls += 1;
            }
            let bytes = proptest::collection::vec(any::<u8>(), 0..256);
            for i in 0..BYTES_PER_RPC {
                let body = bytes.new_tree(&mut runner).expect("bytes").current();
                let token = &tokens[i % tokens.len()];
                let result = call(&channel, &method, token, body).await;
                *answers
                    .entry(format!("{:?}", judge(&method, false, result)))
                    .or_insert(0) += 1;
                calls += 1;
            }
        }
    }
    assert!(methods >= 50, "every RPC of the contract: {methods}");
    eprintln!("fuzzed {methods} RPCs with {calls} calls: {answers:?}");
    // The generated messages get past authentication and decoding to the checks behind.
    for reached in ["Ok", "InvalidArgument", "NotFound"] {
        assert!(
            answers.get(reached).copied().unwrap_or(0) > 0,
            "some calls answered {reached}: {answers:?}"
        );
    }
    // Still serving, and nothing written outside the chain.
    let mut health = app.health_client();
    let answer = health
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .expect("health answers")
        .into_inner();
    assert_eq!(answer.status, 1, "SERVING after the fuzz");
    app.assert_chain_intact(WANGCHENG).await;
    app.assert_chain_intact(FURONG).await;
}

/// Tokens of every kind of caller: an applicant unit, the whole bureau in one token, an
/// auditor, a sync client, and the city.
fn callers(app: &TestApp) -> Vec<String> {
    vec![
        app.token(
            WANGCHENG,
            &[Role::ApplicantUnit],
            Some("gaotangling"),
            "clerk",
        ),
        app.token(
            WANGCHENG,
            &[
                Role::CaseOfficer,
                Role::DeputyLeader,
                Role::BureauHead,
                Role::BureauOffice,
                Role::DistrictLeader,
                Role::Finance,
                Role::DistrictAdmin,
            ],
            None,
            "bureau",
        ),
        app.token(WANGCHENG, &[Role::Auditor], None, "auditor"),
        app.token(WANGCHENG, &[Role::SyncClient], None, "sync"),
        app.token("city", &[Role::CityAdmin], None, "city"),
    ]
}
