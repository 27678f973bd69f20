//! Authentication over real gRPC: every RPC refuses a missing or forged token with
//! UNAUTHENTICATED, whatever the forgery (the classic JWT attacks), while health checks need
//! none. Control rows with good tokens prove the probes can succeed.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use relief_auth::Minter;
use relief_proto::v1 as pb;
use relief_tests::{
    AUDIENCE, Backend, ED25519_KID, ES256_KID, ISSUER, OTHER_ED25519_PEM, RS256_KID, Role,
    TEST_ED25519_PEM, TEST_ED25519_PUB_PEM, TEST_ES256_PEM, TEST_RS256_PEM, TestApp, WANGCHENG,
    request_id, spawn_app, valid_application, wangcheng_rules,
};
use serde_json::{Value, json};
use tonic::Code;
use tonic::metadata::{Ascii, MetadataValue};

relief_tests::backend_tests! {
    every_rpc_needs_a_token,
    forged_tokens_are_unauthenticated,
    malformed_authorization_is_unauthenticated,
    health_needs_no_token,
    reflection_needs_no_token,
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The payload of a valid Wangcheng case officer token.
fn claims() -> Value {
    json!({
        "sub": "officer-1",
        "name": "officer-1",
        "district": WANGCHENG,
        "roles": ["case_officer"],
        "iat": now(),
        "exp": now() + 3600,
        "iss": ISSUER,
        "aud": AUDIENCE,
    })
}

fn claims_with(changes: Value) -> Value {
    let mut c = claims();
    for (k, v) in changes.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

fn b64_json(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

fn minter(pem: &[u8], kid: &str, issuer: &str, audience: &str) -> Minter {
    Minter::from_ed25519_pem(pem, kid, issuer, audience).unwrap()
}

fn sign(header: Header, claims: &Value, key: &EncodingKey) -> String {
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

fn header(alg: Algorithm, kid: Option<&str>) -> Header {
    let mut h = Header::new(alg);
    h.kid = kid.map(str::to_owned);
    h
}

/// Replaces the payload of a signed token, keeping its header and signature.
fn with_payload(token: &str, claims: &Value) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    format!("{}.{}.{}", parts[0], b64_json(claims), parts[2])
}

/// Every forged or broken token, by name.
fn attacks(app: &TestApp) -> Vec<(&'static str, String)> {
    let good = minter(TEST_ED25519_PEM, ED25519_KID, ISSUER, AUDIENCE);
    let officer_spec = app.token_spec(WANGCHENG, &[Role::CaseOfficer], None, "officer-1");
    let valid = good.mint(&officer_spec).unwrap();
    let ed_key = EncodingKey::from_ed_pem(TEST_ED25519_PEM).unwrap();

    vec![
        (
            "alg none, no signature",
            format!(
                "{}.{}.",
                b64_json(&json!({"alg": "none", "typ": "JWT"})),
                b64_json(&claims())
            ),
        ),
        (
            "alg none with a known kid",
            format!(
                "{}.{}.",
                b64_json(&json!({"alg": "none", "typ": "JWT", "kid": ED25519_KID})),
                b64_json(&claims())
            ),
        ),
        (
            "signed with another Ed25519 key under the test kid",
            minter(OTHER_ED25519_PEM, ED25519_KID, ISSUER, AUDIENCE)
                .mint(&officer_spec)
                .unwrap(),
        ),
        (
            "expired an hour ago",
            good.mint(&relief_auth::TokenSpec {
                ttl_secs: -3600,
                ..officer_spec.clone()
            })
            .unwrap(),
        ),
        (
            "not valid for another hour (nbf)",
            good.mint(&relief_auth::TokenSpec {
                not_before: Some(now() + 3600),
                ..officer_spec.clone()
            })
            .unwrap(),
        ),
        (
            "wrong audience",
            minter(TEST_ED25519_PEM, ED25519_KID, ISSUER, "someone-else")
                .mint(&officer_spec)
                .unwrap(),
        ),
        (
            "wrong issuer",
            minter(TEST_ED25519_PEM, ED25519_KID, "relief-dev", AUDIENCE)
                .mint(&officer_spec)
                .unwrap(),
        ),
        (
            "no exp",
            good.mint_raw(&claims_with(json!({"exp": null}))).unwrap(),
        ),
        (
            "no iss",
            good.mint_raw(&claims_with(json!({"iss": null}))).unwrap(),
        ),
        (
            "no aud",
            good.mint_raw(&claims_with(json!({"aud": null}))).unwrap(),
        ),
        (
            "no sub",
            good.mint_raw(&claims_with(json!({"sub": null}))).unwrap(),
        ),
        (
            "payload tampered to district_admin after signing",
            with_payload(&valid, &claims_with(json!({"roles": ["district_admin"]}))),
        ),
        (
            "payload tampered to another district after signing",
            with_payload(&valid, &claims_with(json!({"district": "430102"}))),
        ),
        ("signature stripped", {
            let parts: Vec<&str> = valid.split('.').collect();
            format!("{}.{}.", parts[0], parts[1])
        }),
        (
            "HS256 signed with the public key PEM as secret, test kid",
            sign(
                header(Algorithm::HS256, Some(ED25519_KID)),
                &claims(),
                &EncodingKey::from_secret(TEST_ED25519_PUB_PEM),
            ),
        ),
        (
            "HS256 signed with the public key PEM as secret, no kid",
            sign(
                header(Algorithm::HS256, None),
                &claims(),
                &EncodingKey::from_secret(TEST_ED25519_PUB_PEM),
            ),
        ),
        (
            "unknown kid",
            minter(TEST_ED25519_PEM, "no-such-key", ISSUER, AUDIENCE)
                .mint(&officer_spec)
                .unwrap(),
        ),
        (
            "no kid",
            sign(header(Algorithm::EdDSA, None), &claims(), &ed_key),
        ),
        (
            "ES256 signature under the Ed25519 kid",
            Minter::from_ec_pem(TEST_ES256_PEM, ED25519_KID, ISSUER, AUDIENCE)
                .unwrap()
                .mint(&officer_spec)
                .unwrap(),
        ),
        (
            "RS256, an algorithm and key the server does not accept",
            sign(
                header(Algorithm::RS256, Some(RS256_KID)),
                &claims(),
                &EncodingKey::from_rsa_pem(TEST_RS256_PEM).unwrap(),
            ),
        ),
        (
            "claims that break the rules: a city-scoped applicant unit",
            good.mint_raw(&claims_with(json!({
                "district": "city",
                "roles": ["applicant_unit"],
                "unit": "gaotangling",
            })))
            .unwrap(),
        ),
        (
            "an unknown role",
            good.mint_raw(&claims_with(json!({"roles": ["superuser"]})))
                .unwrap(),
        ),
        ("not a JWT", "not-a-jwt".to_owned()),
        ("three empty parts", "..".to_owned()),
    ]
}

/// Probes with one token: a case read and a district read, both of which a case officer of
/// Wangcheng may make. Returns the two status codes (`Code::Ok` on success).
async fn probe(app: &TestApp, token: &str) -> (Code, Code) {
    let caller = app.caller(token.to_owned(), "probe");
    let cases = caller
        .list_cases(Default::default())
        .await
        .map_or_else(|s| s.code(), |_| Code::Ok);
    let district = caller
        .get_district(WANGCHENG)
        .await
        .map_or_else(|s| s.code(), |_| Code::Ok);
    (cases, district)
}

async fn forged_tokens_are_unauthenticated(backend: Backend) {
    let app = spawn_app(backend).await;

    // Controls: good EdDSA and ES256 tokens pass the same probes.
    let ed = app.token(WANGCHENG, &[Role::CaseOfficer], None, "officer-1");
    assert_eq!(probe(&app, &ed).await, (Code::Ok, Code::Ok), "valid EdDSA");
    let es = Minter::from_ec_pem(TEST_ES256_PEM, ES256_KID, ISSUER, AUDIENCE)
        .unwrap()
        .mint(&app.token_spec(WANGCHENG, &[Role::CaseOfficer], None, "officer-1"))
        .unwrap();
    assert_eq!(probe(&app, &es).await, (Code::Ok, Code::Ok), "valid ES256");

    let mut failures = Vec::new();
    for (name, token) in attacks(&app) {
        let got = probe(&app, &token).await;
        if got != (Code::Unauthenticated, Code::Unauthenticated) {
            failures.push(format!("{name}: got {got:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "attacks not refused with UNAUTHENTICATED:\n{}",
        failures.join("\n")
    );
}

/// A request with `authorization` set to `value` verbatim (or absent).
fn raw_request<T>(message: T, value: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(v) = value {
        let v: MetadataValue<Ascii> = v.parse().unwrap();
        request.metadata_mut().insert("authorization", v);
    }
    request
}

/// Calls every RPC of both services with `authorization` = `value` and returns the codes of
/// those that did not answer `expected`.
async fn call_every_rpc(app: &TestApp, value: Option<&str>) -> Vec<(&'static str, Code)> {
    let mut cases = app.case_client();
    let mut districts = app.district_client();
    let case_id = uuid::Uuid::now_v7().to_string();
    let code =
        |r: Result<_, tonic::Status>| r.map_or_else(|s: tonic::Status| s.code(), |_| Code::Ok);
    vec![
        (
            "CreateCase",
            code(
                cases
                    .create_case(raw_request(
                        pb::CreateCaseRequest {
                            request_id: request_id(),
                            application: Some(valid_application()),
                            ..Default::default()
                        },
                        value,
                    ))
                    .await
                    .map(|_| ()),
            ),
        ),
        (
            "GetCase",
            code(
                cases
                    .get_case(raw_request(
                        pb::GetCaseRequest {
                            case_id: case_id.clone(),
                            ..Default::default()
                        },
                        value,
                    ))
                    .await
                    .map(|_| ()),
            ),
        ),
        (
            "ListCases",
            code(
                cases
                    .list_cases(raw_request(pb::ListCasesRequest::default(), value))
                    .await
                    .map(|_| ()),
            ),
        ),
        (
            "UpdateCase",
            code(
                cases
                    .update_case(raw_request(
                        pb::UpdateCaseRequest {
                            request_id: request_id(),
                            case_id: case_id.clone(),
                            application: Some(valid_application()),
                            expected_version: 0,
                            ..Default::default()
                        },
                        value,
                    ))
                    .await
                    .map(|_| ()),
            ),
        ),
        (
            "SubmitCase",
            code(
                cases
                    .submit_case(raw_request(
                        pb::SubmitCaseRequest {
                            request_id: request_id(),
                            case_id: case_id.clone(),
                            expected_version: 0,
                            ..Default::default()
                        },
                        value,
                    ))
                    .await
                    .map(|_| ()),
            ),
        ),
        (
            "WithdrawCase",
            code(
                cases
                    .withdraw_case(raw_request(
                        pb::WithdrawCaseRequest {
                            request_id: request_id(),
                            case_id: case_id.clone(),
                            reason: "撤回".to_owned(),
                            expected_version: 0,
                            ..Default::default()
                        },
                        value,
                    ))
                    .await
                    .map(|_| ()),
            ),
        ),
        (
            "GetDistrict",
            code(
                districts
                    .get_district(raw_request(
                        pb::GetDistrictRequest {
                            district_id: WANGCHENG.to_owned(),
                            ..Default::default()
                        },
                        value,
                    ))
                    .await
                    .map(|_| ()),
            ),
        ),
        (
            "ListDistricts",
            code(
                districts
                    .list_districts(raw_request(pb::ListDistrictsRequest::default(), value))
                    .await
                    .map(|_| ()),
            ),
        ),
        (
            "CreateDistrict",
            code(
                districts
                    .create_district(raw_request(
                        pb::CreateDistrictRequest {
                            request_id: request_id(),
                            district_id: "430104".to_owned(),
                            name: "岳麓区".to_owned(),
                            rules: Some(wangcheng_rules()),
                            ..Default::default()
                        },
                        value,
                    ))
                    .await
                    .map(|_| ()),
            ),
        ),
        (
            "UpdateFundRules",
            code(
                districts
                    .update_fund_rules(raw_request(
                        pb::UpdateFundRulesRequest {
                            request_id: request_id(),
                            district_id: WANGCHENG.to_owned(),
                            rules: Some(wangcheng_rules()),
                            expected_rules_version: 0,
                            ..Default::default()
                        },
                        value,
                    ))
                    .await
                    .map(|_| ()),
            ),
        ),
        (
            "GetFundRulesVersion",
            code(
                districts
                    .get_fund_rules_version(raw_request(
                        pb::GetFundRulesVersionRequest {
                            district_id: WANGCHENG.to_owned(),
                            rules_version: 1,
                            ..Default::default()
                        },
                        value,
                    ))
                    .await
                    .map(|_| ()),
            ),
        ),
    ]
}

fn not_unauthenticated(codes: Vec<(&'static str, Code)>) -> Vec<(&'static str, Code)> {
    codes
        .into_iter()
        .filter(|(_, c)| *c != Code::Unauthenticated)
        .collect()
}

async fn every_rpc_needs_a_token(backend: Backend) {
    let app = spawn_app(backend).await;
    let events_before = app.events(WANGCHENG, None).await.len();
    assert_eq!(
        not_unauthenticated(call_every_rpc(&app, None).await),
        vec![],
        "RPCs answering without a token"
    );
    let expired = app.mint(&relief_auth::TokenSpec {
        ttl_secs: -3600,
        ..app.token_spec("city", &[Role::CityAdmin], None, "city-admin")
    });
    assert_eq!(
        not_unauthenticated(call_every_rpc(&app, Some(&format!("Bearer {expired}"))).await),
        vec![],
        "RPCs answering an expired token"
    );
    // The control: with a valid token no RPC answers UNAUTHENTICATED.
    let admin = app.token(WANGCHENG, &[Role::DistrictAdmin], None, "admin-1");
    let with_token = call_every_rpc(&app, Some(&format!("Bearer {admin}"))).await;
    assert!(
        with_token.iter().all(|(_, c)| *c != Code::Unauthenticated),
        "{with_token:?}"
    );
    // The district admin may update the rules, so the control wrote exactly that; the
    // refused calls before it wrote nothing.
    assert!(
        with_token.contains(&("UpdateFundRules", Code::Ok)),
        "{with_token:?}"
    );
    let actions = app.actions(WANGCHENG, None).await;
    assert_eq!(actions[events_before..], ["district.rules_updated"]);
}

/// ListCases with `authorization` set to `value` verbatim (or absent).
async fn list_with(app: &TestApp, value: Option<&str>) -> Code {
    app.case_client()
        .list_cases(raw_request(pb::ListCasesRequest::default(), value))
        .await
        .map_or_else(|s| s.code(), |_| Code::Ok)
}

async fn malformed_authorization_is_unauthenticated(backend: Backend) {
    let app = spawn_app(backend).await;
    let valid = app.token(WANGCHENG, &[Role::CaseOfficer], None, "officer-1");
    assert_eq!(
        list_with(&app, Some(&format!("Bearer {valid}"))).await,
        Code::Ok,
        "control"
    );
    let rows = [
        ("no header", None),
        ("empty header", Some(String::new())),
        ("scheme only", Some("Bearer".to_owned())),
        ("scheme and a space", Some("Bearer ".to_owned())),
        ("token without the scheme", Some(valid.clone())),
        ("Basic scheme", Some("Basic dXNlcjpwYXNz".to_owned())),
        ("Basic scheme with a JWT", Some(format!("Basic {valid}"))),
        ("garbage bearer", Some("Bearer garbage".to_owned())),
        ("two tokens", Some(format!("Bearer {valid} {valid}"))),
    ];
    for (name, value) in rows {
        assert_eq!(
            list_with(&app, value.as_deref()).await,
            Code::Unauthenticated,
            "{name}"
        );
    }
}

async fn health_needs_no_token(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = app
        .health_client()
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
            ..Default::default()
        })
        .await
        .expect("health check without a token");
    assert_eq!(
        response.into_inner().status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
}

async fn reflection_needs_no_token(backend: Backend) {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let app = spawn_app(backend).await;
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = ServerReflectionClient::new(app.channel())
        .server_reflection_info(futures::stream::iter(vec![request]))
        .await
        .expect("reflection without a token")
        .into_inner();
    let response = responses
        .message()
        .await
        .expect("a reflection response")
        .expect("one message");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("expected a service list, got {response:?}");
    };
    let names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
    for service in ["relief.v1.CaseService", "relief.v1.DistrictService"] {
        assert!(names.contains(&service), "{service} in {names:?}");
    }
}
