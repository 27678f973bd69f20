//! docs/TOKENS.md stays true: its example payloads, signed, verify into the claims they
//! describe; the mistakes it lists are refused; and its role table spells every role and
//! scope as the verifier decides them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use jsonwebtoken::{EncodingKey, Header};
use relief_domain::{DistrictId, Role, Subject, UnitId};
use serde_json::{Value, json};

use crate::{Algorithm, Error, Scope, Verifier, VerifierConfig};

const DOC: &str = include_str!("../../../docs/TOKENS.md");
const TEST_RS256: &[u8] = include_bytes!("../../../tests/keys/test-rs256.pem");
const TEST_RS256_JWK: &str = include_str!("../../../tests/keys/test-rs256.jwk.json");

/// The contents of every fenced block of `lang`.
fn blocks(lang: &str) -> Vec<String> {
    let fence = format!("```{lang}");
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in DOC.lines() {
        match &mut current {
            None if line.trim() == fence => current = Some(String::new()),
            None => {}
            Some(_) if line.trim() == "```" => out.extend(current.take()),
            Some(text) => {
                text.push_str(line);
                text.push('\n');
            }
        }
    }
    out
}

fn doc_value(key: &str) -> String {
    let toml = blocks("toml").join("\n");
    toml.lines()
        .find_map(|l| l.strip_prefix(&format!("{key} = \"")))
        .and_then(|rest| rest.strip_suffix('"'))
        .unwrap_or_else(|| panic!("docs/TOKENS.md: no {key} in the [auth] example"))
        .to_owned()
}

fn verifier() -> Verifier {
    let jwk: Value = serde_json::from_str(TEST_RS256_JWK).unwrap();
    let mut cfg = VerifierConfig::new(doc_value("issuer"), doc_value("audience"));
    cfg.algorithms = vec![Algorithm::RS256];
    cfg.jwks_json = Some(json!({ "keys": [jwk] }).to_string());
    Verifier::new(cfg).unwrap()
}

/// Signs `payload` as the identity provider would, an hour from expiring.
fn sign(mut payload: Value) -> String {
    payload["exp"] = json!(jsonwebtoken::get_current_timestamp() + 3600);
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("test-rs256".to_owned());
    jsonwebtoken::encode(
        &header,
        &payload,
        &EncodingKey::from_rsa_pem(TEST_RS256).unwrap(),
    )
    .unwrap()
}

fn examples() -> Vec<Value> {
    let examples: Vec<Value> = blocks("json")
        .iter()
        .map(|b| serde_json::from_str(b).expect("docs/TOKENS.md: a JSON example does not parse"))
        .collect();
    assert_eq!(examples.len(), 3, "the three example payloads");
    examples
}

#[test]
fn the_example_payloads_verify_into_their_claims() {
    let v = verifier();
    for example in examples() {
        let claims = v
            .verify(&sign(example.clone()))
            .unwrap_or_else(|e| panic!("{example}: {e}"));
        assert_eq!(claims.subject().as_str(), example["sub"]);
        assert_eq!(claims.name(), example["name"]);
        assert_eq!(claims.scope().as_str(), example["district"]);
        let roles: Vec<&str> = claims.roles().iter().map(|r| r.as_str()).collect();
        assert_eq!(json!(roles), example["roles"]);
        assert_eq!(
            claims.unit().map(|u| u.as_str()),
            example.get("unit").and_then(Value::as_str)
        );
    }
}

#[test]
fn the_listed_mistakes_are_refused() {
    let v = verifier();
    let examples = examples();
    let (officer, unit) = (&examples[0], &examples[1]);
    let with = |base: &Value, key: &str, value: Value| {
        let mut p = base.clone();
        p[key] = value;
        p
    };
    let mistakes = [
        with(officer, "district", json!(430112)),
        with(officer, "roles", json!("case_officer auditor")),
        with(officer, "roles", json!(["CaseOfficer"])),
        with(officer, "roles", json!(["case-officer"])),
        with(officer, "unit", json!("gaotangling")),
        with(officer, "roles", json!(["city_admin"])),
    ];
    for m in mistakes {
        assert!(
            matches!(v.verify(&sign(m.clone())), Err(Error::InvalidClaims(_))),
            "{m}"
        );
    }
    let mut no_kid = Header::new(Algorithm::RS256);
    no_kid.kid = None;
    let mut payload = unit.clone();
    payload["exp"] = json!(jsonwebtoken::get_current_timestamp() + 3600);
    let token = jsonwebtoken::encode(
        &no_kid,
        &payload,
        &EncodingKey::from_rsa_pem(TEST_RS256).unwrap(),
    )
    .unwrap();
    assert_eq!(v.verify(&token), Err(Error::UnknownKey(None)));
}

#[test]
fn the_role_table_is_the_verifiers() {
    let section = DOC
        .split("## Roles and scopes")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("docs/TOKENS.md has a Roles and scopes section");
    let mut documented = Vec::new();
    for row in section.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
        let role: Role = cells[0].trim_matches('`').parse().unwrap();
        let yes = |cell: &str| cell.starts_with("yes");
        for (scope, cell) in [
            (
                Scope::District(DistrictId::parse("430112").unwrap()),
                cells[2],
            ),
            (Scope::City, cells[3]),
        ] {
            let unit = (role == Role::ApplicantUnit).then(|| UnitId::parse("u").unwrap());
            let accepted = crate::Claims::new(
                Subject::parse("s").unwrap(),
                "n",
                scope.clone(),
                vec![role],
                unit,
                0,
            )
            .is_ok();
            assert_eq!(accepted, yes(cell), "{role} in {scope}");
        }
        documented.push(role);
    }
    assert_eq!(documented, Role::ALL);
}
