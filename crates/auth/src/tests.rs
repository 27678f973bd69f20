//! Table-driven tests: every valid token verifies into the expected claims, and every known
//! attack or broken claim is refused with the right error, through one `check` helper.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{EncodingKey, Header};
use relief_domain::{DistrictId, Role, Subject, UnitId};
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::{Algorithm, Claims, Error, Minter, Scope, TokenSpec, Verifier, VerifierConfig};

const TEST_ED25519: &[u8] = include_bytes!("../../../tests/keys/test-ed25519.pem");
const TEST_ED25519_PUB: &[u8] = include_bytes!("../../../tests/keys/test-ed25519.pub.pem");
const TEST_ES256: &[u8] = include_bytes!("../../../tests/keys/test-es256.pem");
const OTHER_ED25519: &[u8] = include_bytes!("../../../tests/keys/other-ed25519.pem");
const TEST_JWKS: &str = include_str!("../../../tests/keys/jwks.json");
const TEST_RS256: &[u8] = include_bytes!("../../../tests/keys/test-rs256.pem");
const TEST_RS256_JWK: &str = include_str!("../../../tests/keys/test-rs256.jwk.json");
const DEV_SIGNING_KEY: &[u8] = include_bytes!("../../../deploy/config/dev/dev-signing-key.pem");
const DEV_JWKS: &str = include_str!("../../../deploy/config/dev/jwks.json");

const ISS: &str = "https://idp.test.relief";
const AUD: &str = "relief-api";
const HS_SECRET: &str = "an-hs256-test-secret-of-at-least-32-bytes";

fn now() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

fn config() -> VerifierConfig {
    VerifierConfig {
        jwks_json: Some(TEST_JWKS.to_owned()),
        ..VerifierConfig::new(ISS, AUD)
    }
}

fn verifier() -> Verifier {
    Verifier::new(config()).unwrap()
}

fn verifier_with_hs256(secret: &str) -> Verifier {
    let mut cfg = config();
    cfg.algorithms.push(Algorithm::HS256);
    cfg.hs256_secret = Some(SecretString::from(secret));
    Verifier::new(cfg).unwrap()
}

fn ed() -> Minter {
    Minter::from_ed25519_pem(TEST_ED25519, "test-ed25519", ISS, AUD).unwrap()
}

fn es() -> Minter {
    Minter::from_ec_pem(TEST_ES256, "test-es256", ISS, AUD).unwrap()
}

fn subject(s: &str) -> Subject {
    Subject::parse(s).unwrap()
}

fn district(s: &str) -> Scope {
    Scope::District(DistrictId::parse(s).unwrap())
}

fn officer_spec() -> TokenSpec {
    TokenSpec {
        subject: subject("u-1001"),
        name: "李娜".to_owned(),
        scope: district("430112"),
        roles: vec![Role::CaseOfficer],
        unit: None,
        ttl_secs: 600,
        not_before: None,
    }
}

/// Valid claims for `mint_raw`, which tests then break one field at a time.
fn raw_claims() -> Value {
    json!({
        "sub": "u-1001",
        "name": "李娜",
        "district": "430112",
        "roles": ["case_officer"],
        "exp": now() + 600,
        "iat": now(),
        "iss": ISS,
        "aud": AUD,
    })
}

fn raw_with(changes: Value) -> Value {
    let mut claims = raw_claims();
    for (k, v) in changes.as_object().unwrap() {
        if v.is_null() {
            claims.as_object_mut().unwrap().remove(k);
        } else {
            claims[k] = v.clone();
        }
    }
    claims
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Signs with an arbitrary header, for headers the `Minter` will not produce.
fn sign_with_header(header: &Header, claims: &Value, key: &EncodingKey) -> String {
    jsonwebtoken::encode(header, claims, key).unwrap()
}

/// A token with any header and a garbage signature: for cases refused before the signature.
fn unsigned(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes()),
        b64(b"not-a-signature"),
    )
}

/// Replaces the payload of a signed token, keeping header and signature.
fn tamper(token: &str, claims: &Value) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    format!(
        "{}.{}.{}",
        parts[0],
        b64(claims.to_string().as_bytes()),
        parts[2]
    )
}

fn check(cases: Vec<(&str, &Verifier, String, Result<Claims, Error>)>) {
    let mut failures = Vec::new();
    for (name, verifier, token, expected) in cases {
        let got = verifier.verify(&token);
        if got != expected {
            failures.push(format!(
                "{name}:\n  expected {expected:?}\n  got      {got:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn valid_tokens_verify_into_claims() {
    let v = verifier();
    let hs = verifier_with_hs256(HS_SECRET);
    let t = now();

    let officer = officer_spec();
    let city = TokenSpec {
        subject: subject("city-7"),
        name: "王强".to_owned(),
        scope: Scope::City,
        roles: vec![Role::Auditor, Role::CityAdmin, Role::Auditor],
        unit: None,
        ttl_secs: 900,
        not_before: Some(t - 5),
    };
    let applicant = TokenSpec {
        subject: subject("unit-user-3"),
        name: "张伟".to_owned(),
        scope: district("430112"),
        roles: vec![Role::ApplicantUnit],
        unit: Some(UnitId::parse("gaotang-street").unwrap()),
        ttl_secs: 600,
        not_before: None,
    };
    let hs_minter = Minter::hs256(&SecretString::from(HS_SECRET), ISS, AUD).unwrap();

    let officer_claims = Claims::new(
        subject("u-1001"),
        "李娜",
        district("430112"),
        vec![Role::CaseOfficer],
        None,
        t + 600,
    )
    .unwrap();
    let city_claims = Claims::new(
        subject("city-7"),
        "王强",
        Scope::City,
        vec![Role::CityAdmin, Role::Auditor],
        None,
        t + 900,
    )
    .unwrap();
    let applicant_claims = Claims::new(
        subject("unit-user-3"),
        "张伟",
        district("430112"),
        vec![Role::ApplicantUnit],
        Some(UnitId::parse("gaotang-street").unwrap()),
        t + 600,
    )
    .unwrap();

    check(vec![
        (
            "EdDSA district officer",
            &v,
            ed().mint_at(&officer, t).unwrap(),
            Ok(officer_claims.clone()),
        ),
        (
            "ES256 city admin, duplicate role collapsed",
            &v,
            es().mint_at(&city, t).unwrap(),
            Ok(city_claims),
        ),
        (
            "EdDSA applicant with unit",
            &v,
            ed().mint_at(&applicant, t).unwrap(),
            Ok(applicant_claims),
        ),
        (
            "HS256 when configured",
            &hs,
            hs_minter.mint_at(&officer, t).unwrap(),
            Ok(officer_claims.clone()),
        ),
        (
            "aud as an array containing ours",
            &v,
            ed().mint_raw(&raw_with(json!({"aud": ["other", AUD], "exp": t + 600})))
                .unwrap(),
            Ok(officer_claims.clone()),
        ),
        (
            "expired within leeway",
            &v,
            ed().mint_raw(&raw_with(json!({"exp": t - 10}))).unwrap(),
            Ok(Claims::new(
                subject("u-1001"),
                "李娜",
                district("430112"),
                vec![Role::CaseOfficer],
                None,
                t - 10,
            )
            .unwrap()),
        ),
    ]);
}

#[test]
fn rs256_tokens_verify_with_an_rsa_jwk() {
    let mut set: Value = serde_json::from_str(TEST_JWKS).unwrap();
    let rsa_jwk: Value = serde_json::from_str(TEST_RS256_JWK).unwrap();
    set["keys"].as_array_mut().unwrap().push(rsa_jwk);
    let v = Verifier::new(VerifierConfig {
        jwks_json: Some(set.to_string()),
        ..VerifierConfig::new(ISS, AUD)
    })
    .unwrap();
    let rsa = EncodingKey::from_rsa_pem(TEST_RS256).unwrap();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("test-rs256".to_owned());
    let claims = raw_claims();
    let token = sign_with_header(&header, &claims, &rsa);
    let expected = Claims::new(
        subject("u-1001"),
        "李娜",
        district("430112"),
        vec![Role::CaseOfficer],
        None,
        claims["exp"].as_i64().unwrap(),
    )
    .unwrap();

    let mut only_eddsa = config();
    only_eddsa.algorithms = vec![Algorithm::EdDSA];
    let only_eddsa = Verifier::new(only_eddsa).unwrap();
    let mut ps_header = header.clone();
    ps_header.alg = Algorithm::PS256;

    check(vec![
        ("RS256 valid", &v, token.clone(), Ok(expected)),
        (
            "RS256 not accepted",
            &only_eddsa,
            token.clone(),
            Err(Error::UnsupportedAlgorithm("RS256".to_owned())),
        ),
        (
            "RS256 signed by the Ed25519 key's kid",
            &v,
            unsigned(&json!({"alg": "RS256", "kid": "test-ed25519"}), &claims),
            Err(Error::KeyAlgorithmMismatch {
                kid: "test-ed25519".to_owned(),
                alg: "RS256".to_owned(),
            }),
        ),
        (
            "PS256 under the RSA kid (same family, not accepted)",
            &v,
            sign_with_header(&ps_header, &claims, &rsa),
            Err(Error::UnsupportedAlgorithm("PS256".to_owned())),
        ),
    ]);
}

#[test]
fn attacks_are_rejected() {
    let v = verifier();
    let hs_other = verifier_with_hs256(HS_SECRET);
    let t = now();
    let spec = officer_spec();
    let good = ed().mint_at(&spec, t).unwrap();
    let claims = raw_claims();

    let wrong_key = Minter::from_ed25519_pem(OTHER_ED25519, "test-ed25519", ISS, AUD).unwrap();
    let unknown_kid = Minter::from_ed25519_pem(TEST_ED25519, "nope", ISS, AUD).unwrap();
    let wrong_aud = Minter::from_ed25519_pem(TEST_ED25519, "test-ed25519", ISS, "other").unwrap();
    let wrong_iss = Minter::from_ed25519_pem(TEST_ED25519, "test-ed25519", "evil", AUD).unwrap();

    // Algorithm confusion: HS256 "signed" with the public key, as PEM and as raw bytes, and
    // pointing at the real kid so a naive verifier would pick the Ed25519 key as secret.
    let mut hs_header = Header::new(Algorithm::HS256);
    hs_header.kid = Some("test-ed25519".to_owned());
    let raw_x = URL_SAFE_NO_PAD
        .decode("kZSdMu7rb0ZxVo7j4LqoTPdzxbtBRnBzU5K-ofjmoE8")
        .unwrap();
    let hs_pem = sign_with_header(
        &hs_header,
        &claims,
        &EncodingKey::from_secret(TEST_ED25519_PUB),
    );
    let hs_raw = sign_with_header(&hs_header, &claims, &EncodingKey::from_secret(&raw_x));

    let mut no_kid = Header::new(Algorithm::EdDSA);
    no_kid.kid = None;
    let no_kid = sign_with_header(
        &no_kid,
        &claims,
        &EncodingKey::from_ed_pem(TEST_ED25519).unwrap(),
    );

    let mut promoted = raw_claims();
    promoted["roles"] = json!(["case_officer", "district_leader"]);
    let mut moved = raw_claims();
    moved["district"] = json!("430111");

    let payload = b64(claims.to_string().as_bytes());

    check(vec![
        (
            "alg none",
            &v,
            format!("eyJhbGciOiJub25lIn0.{payload}."),
            Err(Error::UnsupportedAlgorithm("none".to_owned())),
        ),
        (
            "alg none with a kid and a signature",
            &v,
            unsigned(&json!({"alg": "none", "kid": "test-ed25519"}), &claims),
            Err(Error::UnsupportedAlgorithm("none".to_owned())),
        ),
        (
            "alg NONE",
            &v,
            unsigned(&json!({"alg": "NONE"}), &claims),
            Err(Error::UnsupportedAlgorithm("NONE".to_owned())),
        ),
        (
            "alg not configured (HS512)",
            &v,
            unsigned(&json!({"alg": "HS512", "kid": "test-ed25519"}), &claims),
            Err(Error::UnsupportedAlgorithm("HS512".to_owned())),
        ),
        (
            "alg not configured (PS256)",
            &v,
            unsigned(&json!({"alg": "PS256", "kid": "test-ed25519"}), &claims),
            Err(Error::UnsupportedAlgorithm("PS256".to_owned())),
        ),
        (
            "wrong key under a trusted kid",
            &v,
            wrong_key.mint_at(&spec, t).unwrap(),
            Err(Error::BadSignature),
        ),
        (
            "expired",
            &v,
            ed().mint_at(
                &TokenSpec {
                    ttl_secs: -3600,
                    ..spec.clone()
                },
                t,
            )
            .unwrap(),
            Err(Error::Expired),
        ),
        (
            "nbf in the future",
            &v,
            ed().mint_at(
                &TokenSpec {
                    not_before: Some(t + 3600),
                    ..spec.clone()
                },
                t,
            )
            .unwrap(),
            Err(Error::NotYetValid),
        ),
        (
            "wrong audience",
            &v,
            wrong_aud.mint_at(&spec, t).unwrap(),
            Err(Error::WrongAudience),
        ),
        (
            "wrong issuer",
            &v,
            wrong_iss.mint_at(&spec, t).unwrap(),
            Err(Error::WrongIssuer),
        ),
        (
            "missing exp",
            &v,
            ed().mint_raw(&raw_with(json!({"exp": null}))).unwrap(),
            Err(Error::MissingClaim("exp".to_owned())),
        ),
        (
            "missing iss",
            &v,
            ed().mint_raw(&raw_with(json!({"iss": null}))).unwrap(),
            Err(Error::MissingClaim("iss".to_owned())),
        ),
        (
            "missing aud",
            &v,
            ed().mint_raw(&raw_with(json!({"aud": null}))).unwrap(),
            Err(Error::MissingClaim("aud".to_owned())),
        ),
        (
            "missing sub",
            &v,
            ed().mint_raw(&raw_with(json!({"sub": null}))).unwrap(),
            Err(Error::MissingClaim("sub".to_owned())),
        ),
        (
            "tampered payload: roles raised",
            &v,
            tamper(&good, &promoted),
            Err(Error::BadSignature),
        ),
        (
            "tampered payload: district moved",
            &v,
            tamper(&good, &moved),
            Err(Error::BadSignature),
        ),
        (
            "HS256 signed with public key PEM, HS256 not configured",
            &v,
            hs_pem.clone(),
            Err(Error::UnsupportedAlgorithm("HS256".to_owned())),
        ),
        (
            "HS256 signed with raw public key, HS256 not configured",
            &v,
            hs_raw.clone(),
            Err(Error::UnsupportedAlgorithm("HS256".to_owned())),
        ),
        (
            "HS256 signed with public key PEM, HS256 configured with another secret",
            &hs_other,
            hs_pem,
            Err(Error::BadSignature),
        ),
        (
            "HS256 signed with raw public key, HS256 configured with another secret",
            &hs_other,
            hs_raw,
            Err(Error::BadSignature),
        ),
        (
            "unknown kid",
            &v,
            unknown_kid.mint_at(&spec, t).unwrap(),
            Err(Error::UnknownKey(Some("nope".to_owned()))),
        ),
        ("missing kid", &v, no_kid, Err(Error::UnknownKey(None))),
        (
            "ES256 header pointing at the Ed25519 key",
            &v,
            unsigned(&json!({"alg": "ES256", "kid": "test-ed25519"}), &claims),
            Err(Error::KeyAlgorithmMismatch {
                kid: "test-ed25519".to_owned(),
                alg: "ES256".to_owned(),
            }),
        ),
        (
            "RS256 header pointing at the P-256 key",
            &v,
            unsigned(&json!({"alg": "RS256", "kid": "test-es256"}), &claims),
            Err(Error::KeyAlgorithmMismatch {
                kid: "test-es256".to_owned(),
                alg: "RS256".to_owned(),
            }),
        ),
        (
            "crit header",
            &v,
            unsigned(
                &json!({"alg": "EdDSA", "kid": "test-ed25519", "crit": ["b64"], "b64": false}),
                &claims,
            ),
            Err(Error::MalformedToken),
        ),
        ("empty token", &v, String::new(), Err(Error::MalformedToken)),
        (
            "two parts",
            &v,
            "abc.def".to_owned(),
            Err(Error::MalformedToken),
        ),
        (
            "four parts",
            &v,
            format!("{good}.extra"),
            Err(Error::MalformedToken),
        ),
        (
            "header not base64",
            &v,
            format!("!!!.{payload}.sig"),
            Err(Error::MalformedToken),
        ),
        (
            "header not JSON",
            &v,
            format!("{}.{payload}.sig", b64(b"alg")),
            Err(Error::MalformedToken),
        ),
        (
            "payload not base64",
            &v,
            {
                let parts: Vec<&str> = good.split('.').collect();
                format!("{}.***.{}", parts[0], parts[2])
            },
            // The signature covers the payload bytes and is checked before they are parsed.
            Err(Error::BadSignature),
        ),
        (
            "oversized token",
            &v,
            format!("{good}{}", "A".repeat(crate::MAX_TOKEN_BYTES)),
            Err(Error::MalformedToken),
        ),
    ]);
}

#[test]
fn claim_rules_are_enforced() {
    let v = verifier();
    let mint = |changes: Value| ed().mint_raw(&raw_with(changes)).unwrap();
    let invalid = |reason: &str| Err(Error::InvalidClaims(reason.to_owned()));

    check(vec![
        (
            "city token with case_officer",
            &v,
            mint(json!({"district": "city"})),
            invalid("role case_officer is not allowed in a city-scoped token"),
        ),
        (
            "district token with city_admin",
            &v,
            mint(json!({"roles": ["city_admin"]})),
            invalid("role city_admin is not allowed in a district-scoped token"),
        ),
        (
            "applicant_unit without unit",
            &v,
            mint(json!({"roles": ["applicant_unit"]})),
            invalid("role applicant_unit requires a unit"),
        ),
        (
            "unit without applicant_unit",
            &v,
            mint(json!({"unit": "gaotang-street"})),
            invalid("unit is only allowed with role applicant_unit"),
        ),
        (
            "empty roles",
            &v,
            mint(json!({"roles": []})),
            invalid("roles must not be empty"),
        ),
        (
            "unknown role",
            &v,
            mint(json!({"roles": ["case_officer", "superuser"]})),
            invalid("roles: unknown role \"superuser\""),
        ),
        (
            "roles not an array",
            &v,
            mint(json!({"roles": "case_officer"})),
            // serde's wording is not ours to pin; the variant and prefix are.
            Err(
                crate::claims::WireClaims::from_json(raw_with(json!({"roles": "case_officer"})))
                    .unwrap_err(),
            ),
        ),
        (
            "missing roles",
            &v,
            mint(json!({"roles": null})),
            Err(Error::MissingClaim("roles".to_owned())),
        ),
        (
            "missing district",
            &v,
            mint(json!({"district": null})),
            Err(Error::MissingClaim("district".to_owned())),
        ),
        (
            "malformed district",
            &v,
            mint(json!({"district": "43011"})),
            // The domain crate owns the wording; the test pins the route and the variant.
            Err(Scope::parse("43011").unwrap_err()),
        ),
        (
            "missing name",
            &v,
            mint(json!({"name": null})),
            Err(Error::MissingClaim("name".to_owned())),
        ),
        (
            "blank name",
            &v,
            mint(json!({"name": "   "})),
            invalid("name must not be empty"),
        ),
        (
            "bad subject",
            &v,
            mint(json!({"sub": "has space"})),
            invalid(&format!(
                "sub: {}",
                Subject::parse("has space").unwrap_err()
            )),
        ),
        (
            "exp not a number",
            &v,
            mint(json!({"exp": "tomorrow"})),
            // jsonwebtoken counts an unparsable exp as absent.
            Err(Error::MissingClaim("exp".to_owned())),
        ),
        (
            "negative exp",
            &v,
            mint(json!({"exp": -5})),
            Err(Error::MissingClaim("exp".to_owned())),
        ),
        (
            "nbf not a number",
            &v,
            mint(json!({"nbf": "now"})),
            invalid("nbf must be a non-negative number of seconds"),
        ),
    ]);
}

#[test]
fn minter_refuses_invalid_specs_and_keys() {
    let city_officer = TokenSpec {
        scope: Scope::City,
        ..officer_spec()
    };
    assert_eq!(
        ed().mint(&city_officer),
        Err(Error::InvalidClaims(
            "role case_officer is not allowed in a city-scoped token".to_owned()
        ))
    );
    assert!(matches!(
        Minter::from_ed25519_pem(b"not a pem", "k", ISS, AUD),
        Err(Error::Config(_))
    ));
    assert!(matches!(
        Minter::from_ed25519_pem(TEST_ES256, "k", ISS, AUD),
        Err(Error::Config(_))
    ));
    assert!(matches!(
        Minter::from_ec_pem(TEST_ED25519, "k", ISS, AUD),
        Err(Error::Config(_))
    ));
    assert!(matches!(
        Minter::hs256(&SecretString::from("short"), ISS, AUD),
        Err(Error::Config(_))
    ));
    let debug = format!("{:?}", ed());
    assert!(debug.contains("test-ed25519") && debug.contains("[redacted]"));
}

#[test]
fn dev_key_matches_dev_jwks() {
    let v = Verifier::new(VerifierConfig {
        jwks_json: Some(DEV_JWKS.to_owned()),
        ..VerifierConfig::new(ISS, AUD)
    })
    .unwrap();
    let dev = Minter::from_ed25519_pem(DEV_SIGNING_KEY, "relief-dev-1", ISS, AUD).unwrap();
    assert!(v.verify(&dev.mint(&officer_spec()).unwrap()).is_ok());
    // The dev key is not trusted by the test JWKS, and the other way round.
    assert_eq!(
        verifier().verify(&dev.mint(&officer_spec()).unwrap()),
        Err(Error::UnknownKey(Some("relief-dev-1".to_owned())))
    );
}

/// The development key is known by its public key, not by its `kid` or where it came from.
#[test]
fn the_development_key_is_recognised_by_its_key_material() {
    let dev_jwk: Value = serde_json::from_str::<Value>(DEV_JWKS).unwrap()["keys"][0].clone();
    let mut renamed = dev_jwk.clone();
    renamed["kid"] = json!("city-2026");
    let test_keys: Value = serde_json::from_str::<Value>(TEST_JWKS).unwrap()["keys"].clone();
    let mut with_copy = test_keys.as_array().unwrap().clone();
    with_copy.push(renamed);
    let mut taken = test_keys.as_array().unwrap().clone();
    let mut impostor = test_keys[0].clone();
    impostor["kid"] = json!("relief-dev-1");
    taken.push(impostor);
    let jwks = |keys: Value| Some(json!({ "keys": keys }).to_string());

    // (name, config, expected dev kid, whether a dev-key token would verify, whether the
    // test keys are in the set)
    let cases: Vec<(&str, VerifierConfig, Option<&str>, bool, bool)> = vec![
        ("the test keys", config(), None, false, true),
        (
            "the development JWKS",
            VerifierConfig {
                jwks_json: Some(DEV_JWKS.to_owned()),
                ..config()
            },
            Some("relief-dev-1"),
            true,
            false,
        ),
        (
            "a copy under another kid, among other keys",
            VerifierConfig {
                jwks_json: jwks(Value::Array(with_copy)),
                ..config()
            },
            Some("city-2026"),
            true,
            true,
        ),
        (
            "trusted besides the test keys",
            VerifierConfig {
                trust_dev_key: true,
                ..config()
            },
            Some("relief-dev-1"),
            true,
            true,
        ),
        (
            "trusted, and already in the JWKS",
            VerifierConfig {
                jwks_json: Some(DEV_JWKS.to_owned()),
                trust_dev_key: true,
                ..config()
            },
            Some("relief-dev-1"),
            true,
            false,
        ),
        (
            "trusted, with no JWKS at all",
            VerifierConfig {
                jwks_json: None,
                trust_dev_key: true,
                ..config()
            },
            Some("relief-dev-1"),
            true,
            false,
        ),
        (
            "held, but EdDSA is not accepted",
            VerifierConfig {
                jwks_json: Some(DEV_JWKS.to_owned()),
                algorithms: vec![Algorithm::ES256],
                ..config()
            },
            Some("relief-dev-1"),
            false,
            false,
        ),
    ];
    for (name, cfg, dev_kid, trusted, test_keys) in cases {
        let v = Verifier::new(cfg).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(v.dev_key_kid(), dev_kid, "{name}");
        assert_eq!(v.trusts_dev_key(), trusted, "{name}");
        let kid = dev_kid.unwrap_or("relief-dev-1");
        let dev = Minter::from_ed25519_pem(DEV_SIGNING_KEY, kid, ISS, AUD).unwrap();
        assert_eq!(
            v.verify(&dev.mint(&officer_spec()).unwrap()).is_ok(),
            trusted,
            "{name}"
        );
        // The configured keys keep working next to it.
        assert_eq!(
            v.verify(&ed().mint(&officer_spec()).unwrap()).is_ok(),
            test_keys,
            "{name}"
        );
    }

    // Trusting it besides a JWKS whose kid `relief-dev-1` is another key is a contradiction.
    let err = Verifier::new(VerifierConfig {
        jwks_json: jwks(Value::Array(taken)),
        trust_dev_key: true,
        ..config()
    })
    .unwrap_err();
    assert!(
        matches!(&err, Error::Config(m) if m.contains("relief-dev-1")),
        "{err:?}"
    );
}

/// A generated key signs tokens its own JWKS verifies, and no other key set does.
#[test]
fn generated_keys_sign_for_their_own_jwks() {
    let pair = crate::Ed25519KeyPair::generate(Some("city-1")).unwrap();
    assert!(!format!("{pair:?}").contains("PRIVATE"));
    let pem = secrecy::ExposeSecret::expose_secret(pair.private_pem()).to_owned();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{pem}");
    let v = Verifier::new(VerifierConfig {
        jwks_json: Some(pair.jwks_json().to_owned()),
        ..config()
    })
    .unwrap();
    assert_eq!(v.dev_key_kid(), None);
    let minter = Minter::from_ed25519_pem(pem.as_bytes(), pair.kid(), ISS, AUD).unwrap();
    let token = minter.mint(&officer_spec()).unwrap();
    assert!(v.verify(&token).is_ok());
    assert!(verifier().verify(&token).is_err());

    // Without a kid, the key's thumbprint names it, and can be read back from the PEM.
    let a = crate::Ed25519KeyPair::generate(None).unwrap();
    let b = crate::Ed25519KeyPair::generate(None).unwrap();
    assert_ne!(a.kid(), b.kid());
    assert_eq!(
        crate::ed25519_default_kid(a.private_pem()).unwrap(),
        a.kid()
    );
    assert!(a.jwks_json().contains(a.kid()));
    assert!(crate::ed25519_default_kid(&SecretString::from("not a key")).is_err());
}

#[test]
fn bad_configurations_are_refused() {
    let jwks = |keys: Value| Some(json!({ "keys": keys }).to_string());
    let ed_key = json!({"kty": "OKP", "crv": "Ed25519", "kid": "a",
        "x": "kZSdMu7rb0ZxVo7j4LqoTPdzxbtBRnBzU5K-ofjmoE8"});
    let with = |base: &Value, changes: Value| {
        let mut key = base.clone();
        for (k, v) in changes.as_object().unwrap() {
            if v.is_null() {
                key.as_object_mut().unwrap().remove(k);
            } else {
                key[k] = v.clone();
            }
        }
        key
    };

    let cases: Vec<(&str, VerifierConfig, &str)> = vec![
        (
            "duplicate kid",
            VerifierConfig {
                jwks_json: jwks(json!([ed_key, ed_key])),
                ..config()
            },
            "more than once",
        ),
        (
            "key without kid",
            VerifierConfig {
                jwks_json: jwks(json!([with(&ed_key, json!({"kid": null}))])),
                ..config()
            },
            "has no kid",
        ),
        (
            "empty kid",
            VerifierConfig {
                jwks_json: jwks(json!([with(&ed_key, json!({"kid": ""}))])),
                ..config()
            },
            "has no kid",
        ),
        (
            "Ed25519 x too short (would panic in the library)",
            VerifierConfig {
                jwks_json: jwks(json!([with(&ed_key, json!({"x": b64(&[1u8; 31])}))])),
                ..config()
            },
            "x must be 32 bytes",
        ),
        (
            "private key material in the JWKS",
            VerifierConfig {
                jwks_json: jwks(json!([with(&ed_key, json!({"d": b64(&[7u8; 32])}))])),
                ..config()
            },
            "private or secret material (\"d\")",
        ),
        (
            "symmetric key in the JWKS",
            VerifierConfig {
                jwks_json: jwks(json!([{"kty": "oct", "kid": "s", "k": b64(&[7u8; 32])}])),
                ..config()
            },
            "private or secret material (\"k\")",
        ),
        (
            "encryption key",
            VerifierConfig {
                jwks_json: jwks(json!([with(&ed_key, json!({"use": "enc"}))])),
                ..config()
            },
            "not a signing key",
        ),
        (
            "alg pinned to another family",
            VerifierConfig {
                jwks_json: jwks(json!([with(&ed_key, json!({"alg": "ES256"}))])),
                ..config()
            },
            "alg does not match",
        ),
        (
            "P-256 point not on the curve",
            VerifierConfig {
                jwks_json: jwks(json!([{"kty": "EC", "crv": "P-256", "kid": "e",
                    "x": b64(&[1u8; 32]), "y": b64(&[2u8; 32])}])),
                ..config()
            },
            "not a valid public key",
        ),
        (
            "P-384 key",
            VerifierConfig {
                jwks_json: jwks(json!([{"kty": "EC", "crv": "P-384", "kid": "e",
                    "x": b64(&[1u8; 48]), "y": b64(&[2u8; 48])}])),
                ..config()
            },
            "must be on curve P-256",
        ),
        (
            "RSA key below 2048 bits",
            VerifierConfig {
                jwks_json: jwks(json!([{"kty": "RSA", "kid": "r",
                    "n": b64(&[0xC5u8; 128]), "e": "AQAB"}])),
                ..config()
            },
            "at least 2048 bits",
        ),
        (
            "JWKS not JSON",
            VerifierConfig {
                jwks_json: Some("{keys".to_owned()),
                ..config()
            },
            "not valid JSON",
        ),
        (
            "JWKS without keys",
            VerifierConfig {
                jwks_json: Some("{}".to_owned()),
                ..config()
            },
            "\"keys\" array",
        ),
        (
            "no JWKS for asymmetric algorithms",
            VerifierConfig {
                jwks_json: None,
                ..config()
            },
            "jwks_json is required",
        ),
        (
            "HS256 without a secret",
            VerifierConfig {
                algorithms: vec![Algorithm::EdDSA, Algorithm::HS256],
                ..config()
            },
            "requires hs256_secret",
        ),
        (
            "secret without HS256",
            VerifierConfig {
                hs256_secret: Some(SecretString::from(HS_SECRET)),
                ..config()
            },
            "HS256 is not among",
        ),
        (
            "HS256 secret too short",
            VerifierConfig {
                algorithms: vec![Algorithm::HS256],
                hs256_secret: Some(SecretString::from("short")),
                jwks_json: None,
                ..config()
            },
            "at least 32 bytes",
        ),
        (
            "unsupported algorithm",
            VerifierConfig {
                algorithms: vec![Algorithm::EdDSA, Algorithm::PS256],
                ..config()
            },
            "PS256 is not supported",
        ),
        (
            "no algorithms",
            VerifierConfig {
                algorithms: vec![],
                ..config()
            },
            "must not be empty",
        ),
        (
            "empty issuer",
            VerifierConfig {
                issuer: String::new(),
                ..config()
            },
            "issuer must not be empty",
        ),
        (
            "empty audience",
            VerifierConfig {
                audience: " ".to_owned(),
                ..config()
            },
            "audience must not be empty",
        ),
        (
            "leeway too large",
            VerifierConfig {
                leeway_secs: crate::MAX_LEEWAY_SECS + 1,
                ..config()
            },
            "at most 300",
        ),
    ];

    let mut failures = Vec::new();
    for (name, cfg, expected) in cases {
        match Verifier::new(cfg) {
            Err(Error::Config(message)) if message.contains(expected) => {}
            other => failures.push(format!(
                "{name}: expected Config(..{expected}..), got {other:?}"
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // HS256 alone needs no JWKS.
    let hs_only = Verifier::new(VerifierConfig {
        algorithms: vec![Algorithm::HS256],
        hs256_secret: Some(SecretString::from(HS_SECRET)),
        jwks_json: None,
        ..config()
    });
    assert!(hs_only.is_ok(), "{hs_only:?}");
}

#[test]
fn debug_and_errors_leak_no_secrets() {
    let v = verifier_with_hs256(HS_SECRET);
    let debug = format!("{v:?}");
    assert!(!debug.contains(HS_SECRET), "{debug}");
    assert!(debug.contains("test-ed25519") && debug.contains("test-es256"));

    let cfg = VerifierConfig {
        algorithms: vec![Algorithm::HS256],
        hs256_secret: Some(SecretString::from(HS_SECRET)),
        ..config()
    };
    assert!(!format!("{cfg:?}").contains(HS_SECRET));

    let private = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "a",
        "x": "kZSdMu7rb0ZxVo7j4LqoTPdzxbtBRnBzU5K-ofjmoE8", "d": "SECRETSECRETSECRET"}]});
    let err = Verifier::new(VerifierConfig {
        jwks_json: Some(private.to_string()),
        ..config()
    })
    .unwrap_err();
    assert!(!err.to_string().contains("SECRETSECRETSECRET"), "{err}");
}

#[test]
fn claims_accessors() {
    let c = Claims::new(
        subject("u-1"),
        " 李娜 ",
        district("430112"),
        vec![Role::Finance, Role::CaseOfficer, Role::Finance],
        None,
        42,
    )
    .unwrap();
    assert_eq!(c.name(), "李娜");
    assert_eq!(c.roles(), &[Role::CaseOfficer, Role::Finance]);
    assert!(c.has_role(Role::Finance) && !c.has_role(Role::BureauHead));
    assert_eq!(c.district().map(DistrictId::as_str), Some("430112"));
    assert_eq!(c.expires_at(), 42);

    let city = Claims::new(
        subject("c-1"),
        "王强",
        Scope::City,
        vec![Role::SyncClient],
        None,
        42,
    )
    .unwrap();
    assert_eq!(city.district(), None);
    assert_eq!(city.scope().to_string(), "city");
}

#[test]
fn verifier_is_shareable_and_errors_read_well() {
    fn assert_send_sync<T: Send + Sync + Clone>() {}
    assert_send_sync::<Verifier>();

    assert_eq!(
        Error::UnknownKey(None).to_string(),
        "token header has no kid"
    );
    assert_eq!(
        Error::UnknownKey(Some("k1".to_owned())).to_string(),
        "unknown signing key \"k1\""
    );
    assert_eq!(
        Error::UnsupportedAlgorithm("none".to_owned()).to_string(),
        "unsupported token algorithm \"none\""
    );
}

#[test]
fn a_remembered_token_does_not_vouch_for_another() {
    let v = verifier();
    let token = ed().mint(&officer_spec()).unwrap();
    let first = v.verify(&token).unwrap();
    // The second check of the same token is answered from memory, with the same claims.
    assert_eq!(v.verify(&token).unwrap(), first);
    assert_eq!(v.clone().verify(&token).unwrap(), first);
    // The same header and payload with another signature is checked afresh and refused.
    let (signed, signature) = token.rsplit_once('.').unwrap();
    let mut forged_sig = signature.as_bytes().to_vec();
    forged_sig[0] = if forged_sig[0] == b'A' { b'B' } else { b'A' };
    let forged = format!("{signed}.{}", String::from_utf8(forged_sig).unwrap());
    assert_eq!(v.verify(&forged), Err(Error::BadSignature));
    // So is a payload changed under the remembered signature.
    let mut claims = raw_claims();
    claims["roles"] = serde_json::json!(["district_admin"]);
    assert_eq!(v.verify(&tamper(&token, &claims)), Err(Error::BadSignature));
}
