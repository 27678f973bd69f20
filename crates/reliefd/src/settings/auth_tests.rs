//! The three states of `auth.allow_dev_keys` against every key source, through the same
//! layering `reliefd` uses (built-in defaults, then the file's `[auth]`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::{DEV_JWKS_JSON, Error, Settings};

const TEST_JWKS: &str = include_str!("../../../../tests/keys/jwks.json");
const HS256_SECRET: &str = "a-shared-secret-of-at-least-thirty-two-bytes";

/// What loading `[auth]` gives: the kid under which the development key is trusted (if it
/// is), or the refusal's setting and reason.
type Outcome = Result<Option<String>, (String, String)>;

fn outcome(auth: &str) -> Outcome {
    match Settings::from_toml(&format!("[auth]\n{auth}\n")) {
        Ok(s) => {
            let verifier = relief_auth::Verifier::new(s.auth.verifier_config().unwrap()).unwrap();
            // Every case here accepts EdDSA, so holding the key is trusting it.
            assert_eq!(verifier.trusts_dev_key(), verifier.dev_key_kid().is_some());
            Ok(verifier.dev_key_kid().map(str::to_owned))
        }
        Err(Error::Invalid { field, reason }) => Err((field, reason)),
        Err(e) => panic!("{e}"),
    }
}

/// Loads, with the development key trusted under `kid`.
fn trusted(kid: &str) -> Outcome {
    Ok(Some(kid.to_owned()))
}

/// Loads, without the development key.
fn untrusted() -> Outcome {
    Ok(None)
}

/// Refused, naming `field`, with `reason` in the message.
fn refused(field: &str, reason: &str) -> Outcome {
    Err((field.to_owned(), reason.to_owned()))
}

#[test]
fn allow_dev_keys_has_three_states() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let test_jwks = write("test.json", TEST_JWKS);
    let dev_jwks = write("dev.json", DEV_JWKS_JSON);
    // The development key's public half under another kid, next to the test keys.
    let mut copy: serde_json::Value = serde_json::from_str(TEST_JWKS).unwrap();
    let mut dev_jwk: serde_json::Value = serde_json::from_str(DEV_JWKS_JSON).unwrap();
    dev_jwk["keys"][0]["kid"] = "city-copy".into();
    copy["keys"]
        .as_array_mut()
        .unwrap()
        .push(dev_jwk["keys"][0].clone());
    let dev_copy = write("copy.json", &copy.to_string());

    let hs256 = format!("algorithms = [\"HS256\"]\nhs256_secret = \"{HS256_SECRET}\"");
    let hs256_and_eddsa =
        format!("algorithms = [\"EdDSA\", \"HS256\"]\nhs256_secret = \"{HS256_SECRET}\"");
    let cases: Vec<(&str, String, Outcome)> = vec![
        // Absent: trusted only when nothing else is configured.
        (
            "the built-in configuration",
            String::new(),
            trusted("relief-dev-1"),
        ),
        (
            "absent, jwks_path",
            format!("jwks_path = \"{test_jwks}\""),
            untrusted(),
        ),
        (
            "absent, jwks_json",
            format!("jwks_json = '''{TEST_JWKS}'''"),
            untrusted(),
        ),
        ("absent, HS256 only", hs256.clone(), untrusted()),
        (
            "absent, HS256 with EdDSA but no JWKS",
            hs256_and_eddsa.clone(),
            refused("auth.jwks_path", "need public keys"),
        ),
        (
            "absent, a copy of the development key under another kid",
            format!("jwks_path = \"{dev_copy}\""),
            trusted("city-copy"),
        ),
        // True: trusted besides the others.
        (
            "true alone",
            "allow_dev_keys = true".to_owned(),
            trusted("relief-dev-1"),
        ),
        (
            "true, jwks_path",
            format!("allow_dev_keys = true\njwks_path = \"{test_jwks}\""),
            trusted("relief-dev-1"),
        ),
        (
            "true, HS256 with EdDSA",
            format!("allow_dev_keys = true\n{hs256_and_eddsa}"),
            trusted("relief-dev-1"),
        ),
        (
            "true, the development JWKS itself",
            format!("allow_dev_keys = true\njwks_path = \"{dev_jwks}\""),
            trusted("relief-dev-1"),
        ),
        // False: never, and a key set holding it is an error.
        (
            "false alone",
            "allow_dev_keys = false".to_owned(),
            refused("auth.jwks_path", "no keys configured"),
        ),
        (
            "false, jwks_path",
            format!("allow_dev_keys = false\njwks_path = \"{test_jwks}\""),
            untrusted(),
        ),
        (
            "false, HS256 only",
            format!("allow_dev_keys = false\n{hs256}"),
            untrusted(),
        ),
        (
            "false, the development JWKS",
            format!("allow_dev_keys = false\njwks_path = \"{dev_jwks}\""),
            refused("auth.allow_dev_keys", "kid \"relief-dev-1\""),
        ),
        (
            "false, a copy of the development key under another kid",
            format!("allow_dev_keys = false\njwks_json = '''{}'''", copy),
            refused("auth.allow_dev_keys", "kid \"city-copy\""),
        ),
    ];
    let mut failures = Vec::new();
    for (name, auth, expected) in cases {
        let got = outcome(&auth);
        let ok = match (&got, &expected) {
            (Err((field, reason)), Err((want_field, want_reason))) => {
                field == want_field && reason.contains(want_reason.as_str())
            }
            _ => got == expected,
        };
        if !ok {
            failures.push(format!("{name}: expected {expected:?}, got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
