//! Key material relief knows by itself. The development key pair ships in the repository so a
//! laptop needs no identity provider; because its private half is public, the verifier
//! recognises its public key wherever a key set carries it (any file, any `kid`), so the
//! server can refuse to expose it. A deployment that signs its own tokens gets a fresh
//! Ed25519 pair from [`Ed25519KeyPair::generate`] (`reliefd keygen`).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _, KeypairBytes};
use rand_core::{OsRng, RngCore as _};
use secrecy::zeroize::Zeroizing;
use secrecy::{ExposeSecret as _, SecretString};
use sha2::{Digest as _, Sha256};

use crate::Error;

/// The `kid` of the development key in `deploy/config/dev/jwks.json`.
pub const DEV_KID: &str = "relief-dev-1";
/// The development JWKS (`deploy/config/dev/jwks.json`): one Ed25519 public key.
pub const DEV_JWKS_JSON: &str = include_str!("../../../deploy/config/dev/jwks.json");
/// The development signing key (`deploy/config/dev/dev-signing-key.pem`). It is public: anyone
/// can sign tokens with it.
pub const DEV_SIGNING_KEY_PEM: &str =
    include_str!("../../../deploy/config/dev/dev-signing-key.pem");

/// The development key's Ed25519 public key (the JWK's `x`, decoded): what recognises it
/// under any `kid` and from any source.
const DEV_ED25519_PUBLIC_KEY: [u8; 32] = [
    0x6f, 0x96, 0x31, 0x57, 0xd6, 0x41, 0xed, 0x4b, 0xf6, 0x6d, 0x72, 0xb6, 0x2a, 0x25, 0x23, 0x17,
    0xf7, 0x9d, 0x6b, 0xde, 0x78, 0x22, 0x47, 0xf1, 0x8f, 0x47, 0xc7, 0x19, 0xb1, 0xbc, 0x24, 0x96,
];

/// Whether `public_key` (raw Ed25519 bytes) is the development key's.
pub(crate) fn is_dev_ed25519(public_key: &[u8]) -> bool {
    public_key == DEV_ED25519_PUBLIC_KEY
}

/// The longest `kid` [`Ed25519KeyPair::generate`] accepts.
pub const MAX_KID_CHARS: usize = 64;

/// A fresh Ed25519 signing key with its public JWKS, for a deployment that signs its own
/// tokens (a first administrator's, a service's). The private half never leaves the
/// operator's files; the JWKS is what servers are configured with.
pub struct Ed25519KeyPair {
    kid: String,
    private_pem: SecretString,
    jwks_json: String,
}

impl fmt::Debug for Ed25519KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ed25519KeyPair")
            .field("kid", &self.kid)
            .field("private_pem", &"[redacted]")
            .finish_non_exhaustive()
    }
}

impl Ed25519KeyPair {
    /// A new key from the operating system's random source. `kid` defaults to the key's
    /// RFC 7638 thumbprint, so two generated keys never share one.
    pub fn generate(kid: Option<&str>) -> Result<Self, Error> {
        if let Some(kid) = kid {
            check_kid(kid)?;
        }
        let mut seed = Zeroizing::new([0u8; 32]);
        OsRng
            .try_fill_bytes(seed.as_mut())
            .map_err(|e| Error::Config(format!("the system random source failed: {e}")))?;
        let key = SigningKey::from_bytes(&seed);
        // PKCS#8 v1 (no public key inside), the form `openssl genpkey -algorithm ed25519`
        // writes and every JWT library reads.
        let pem = KeypairBytes {
            secret_key: key.to_bytes(),
            public_key: None,
        }
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|_| Error::Config("cannot encode the private key as PKCS#8".to_owned()))?;
        let public = key.verifying_key().to_bytes();
        let kid = kid.map_or_else(|| thumbprint(&public), str::to_owned);
        let jwks_json = jwks_json(&kid, &public);
        Ok(Self {
            kid,
            private_pem: SecretString::from(pem.as_str()),
            jwks_json,
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The private key, PKCS#8 PEM: what `Minter::from_ed25519_pem` and `reliefd token
    /// --key` read.
    pub fn private_pem(&self) -> &SecretString {
        &self.private_pem
    }

    /// The public key as a JWKS document with one key (`alg` EdDSA, `use` sig).
    pub fn jwks_json(&self) -> &str {
        &self.jwks_json
    }
}

/// The `kid` [`Ed25519KeyPair::generate`] gives a key by default (its RFC 7638 thumbprint),
/// read from its PKCS#8 PEM private key.
pub fn ed25519_default_kid(private_pem: &SecretString) -> Result<String, Error> {
    let key = SigningKey::from_pkcs8_pem(private_pem.expose_secret())
        .map_err(|_| Error::Config("not an Ed25519 PKCS#8 PEM private key".to_owned()))?;
    Ok(thumbprint(&key.verifying_key().to_bytes()))
}

fn check_kid(kid: &str) -> Result<(), Error> {
    let ok = !kid.is_empty()
        && kid.chars().count() <= MAX_KID_CHARS
        && kid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "kid must be 1 to {MAX_KID_CHARS} characters of A-Z, a-z, 0-9, '-', '_' or '.'"
        )))
    }
}

/// RFC 7638 thumbprint of an Ed25519 public key: SHA-256 over the JWK's required members in
/// lexicographic order, base64url.
fn thumbprint(public_key: &[u8; 32]) -> String {
    let canonical = format!(
        r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
        URL_SAFE_NO_PAD.encode(public_key)
    );
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

fn jwks_json(kid: &str, public_key: &[u8; 32]) -> String {
    let doc = serde_json::json!({
        "keys": [{
            "kty": "OKP",
            "crv": "Ed25519",
            "x": URL_SAFE_NO_PAD.encode(public_key),
            "kid": kid,
            "alg": "EdDSA",
            "use": "sig",
        }]
    });
    // Pretty, so an operator can read and merge it by hand during a key rotation.
    format!("{doc:#}\n")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn the_recognised_key_is_the_shipped_development_key() {
        let dev = SigningKey::from_pkcs8_pem(DEV_SIGNING_KEY_PEM).unwrap();
        assert_eq!(dev.verifying_key().to_bytes(), DEV_ED25519_PUBLIC_KEY);
        let jwks: serde_json::Value = serde_json::from_str(DEV_JWKS_JSON).unwrap();
        let x = jwks["keys"][0]["x"].as_str().unwrap();
        assert_eq!(URL_SAFE_NO_PAD.decode(x).unwrap(), DEV_ED25519_PUBLIC_KEY);
        assert_eq!(jwks["keys"][0]["kid"], DEV_KID);
    }

    #[test]
    fn kids_are_checked() {
        for (kid, ok) in [
            ("city-2026-01", true),
            ("a", true),
            ("A.b_c-9", true),
            ("", false),
            ("with space", false),
            ("quote\"", false),
            ("长沙", false),
            (&"k".repeat(MAX_KID_CHARS), true),
            (&"k".repeat(MAX_KID_CHARS + 1), false),
        ] {
            assert_eq!(Ed25519KeyPair::generate(Some(kid)).is_ok(), ok, "{kid:?}");
        }
    }

    #[test]
    fn thumbprint_matches_rfc_8037_example() {
        // RFC 8037 appendix A.3: the thumbprint of the A.2 public key.
        let x = URL_SAFE_NO_PAD
            .decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
            .unwrap();
        let x: [u8; 32] = x.try_into().unwrap();
        assert_eq!(
            thumbprint(&x),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }
}
