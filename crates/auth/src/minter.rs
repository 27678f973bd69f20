//! Signs tokens, so a developer can call a local server and tests can exercise every claim
//! and attack without an identity provider, and so a deployment without one can issue tokens
//! with its own key (`reliefd token --key`, e.g. a first administrator's).

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use relief_domain::{Role, Subject, UnitId};
use secrecy::{ExposeSecret as _, SecretString};

use crate::Error;
use crate::claims::{Claims, Scope, WireClaims};
use crate::verifier::MIN_HS256_SECRET_BYTES;

/// What a minted token says. Checked by the same rules as a verified token; a spec that
/// breaks them is refused with [`Error::InvalidClaims`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSpec {
    pub subject: Subject,
    pub name: String,
    pub scope: Scope,
    pub roles: Vec<Role>,
    pub unit: Option<UnitId>,
    /// Lifetime from the moment of minting, in seconds. Negative values mint an already
    /// expired token, which tests use.
    pub ttl_secs: i64,
    /// `nbf`, in unix seconds, when the token must not be used before a given moment.
    pub not_before: Option<i64>,
}

/// Signs tokens with one private key (or HS256 secret) for one issuer and audience.
pub struct Minter {
    key: EncodingKey,
    header: Header,
    issuer: String,
    audience: String,
}

impl fmt::Debug for Minter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Minter")
            .field("alg", &self.header.alg)
            .field("kid", &self.header.kid)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("key", &"[redacted]")
            .finish()
    }
}

impl Minter {
    /// An EdDSA minter from a PKCS#8 PEM Ed25519 private key (`openssl genpkey -algorithm
    /// ed25519`).
    pub fn from_ed25519_pem(
        private_pem: &[u8],
        kid: &str,
        issuer: impl Into<String>,
        audience: impl Into<String>,
    ) -> Result<Self, Error> {
        let key = EncodingKey::from_ed_pem(private_pem)
            .map_err(|_| Error::Config("not an Ed25519 PKCS#8 PEM private key".to_owned()))?;
        Self::build(key, Algorithm::EdDSA, Some(kid), issuer, audience)
    }

    /// An ES256 minter from a PKCS#8 PEM P-256 private key (`openssl genpkey -algorithm EC
    /// -pkeyopt ec_paramgen_curve:P-256`).
    pub fn from_ec_pem(
        private_pem: &[u8],
        kid: &str,
        issuer: impl Into<String>,
        audience: impl Into<String>,
    ) -> Result<Self, Error> {
        let key = EncodingKey::from_ec_pem(private_pem)
            .map_err(|_| Error::Config("not a P-256 PKCS#8 PEM private key".to_owned()))?;
        Self::build(key, Algorithm::ES256, Some(kid), issuer, audience)
    }

    /// An HS256 minter with a shared secret of at least 32 bytes. Its tokens carry no `kid`.
    pub fn hs256(
        secret: &SecretString,
        issuer: impl Into<String>,
        audience: impl Into<String>,
    ) -> Result<Self, Error> {
        let bytes = secret.expose_secret().as_bytes();
        if bytes.len() < MIN_HS256_SECRET_BYTES {
            return Err(Error::Config(format!(
                "HS256 secret must be at least {MIN_HS256_SECRET_BYTES} bytes"
            )));
        }
        Self::build(
            EncodingKey::from_secret(bytes),
            Algorithm::HS256,
            None,
            issuer,
            audience,
        )
    }

    fn build(
        key: EncodingKey,
        alg: Algorithm,
        kid: Option<&str>,
        issuer: impl Into<String>,
        audience: impl Into<String>,
    ) -> Result<Self, Error> {
        if kid.is_some_and(|kid| kid.trim().is_empty()) {
            return Err(Error::Config("kid must not be empty".to_owned()));
        }
        // PEM parsing only unwraps the ASN.1; signing once proves the key really is one.
        jsonwebtoken::crypto::sign(b"probe", &key, alg)
            .map_err(|_| Error::Config(format!("the private key cannot sign {alg:?}")))?;
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_owned);
        Ok(Self {
            key,
            header,
            issuer: issuer.into(),
            audience: audience.into(),
        })
    }

    pub fn algorithm(&self) -> Algorithm {
        self.header.alg
    }

    pub fn kid(&self) -> Option<&str> {
        self.header.kid.as_deref()
    }

    /// Mints a token issued now (system clock).
    pub fn mint(&self, spec: &TokenSpec) -> Result<String, Error> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .ok()
            .and_then(|d| i64::try_from(d.as_secs()).ok())
            .ok_or_else(|| Error::Mint("system clock is before 1970".to_owned()))?;
        self.mint_at(spec, now)
    }

    /// Mints a token issued at `issued_at` (unix seconds): `iat = issued_at`,
    /// `exp = issued_at + ttl_secs`.
    pub fn mint_at(&self, spec: &TokenSpec, issued_at: i64) -> Result<String, Error> {
        let expires_at = issued_at
            .checked_add(spec.ttl_secs)
            .ok_or_else(|| Error::Mint("ttl_secs overflows".to_owned()))?;
        let claims = Claims::new(
            spec.subject.clone(),
            &spec.name,
            spec.scope.clone(),
            spec.roles.clone(),
            spec.unit.clone(),
            expires_at,
        )?;
        let wire = WireClaims::from_claims(
            &claims,
            issued_at,
            spec.not_before,
            &self.issuer,
            &self.audience,
        );
        self.sign(&wire)
    }

    /// Signs `claims` exactly as given, with this minter's header and no checks and no added
    /// `iss`, `aud` or `exp`: for tests that must craft tokens the verifier should refuse.
    pub fn mint_raw(&self, claims: &serde_json::Value) -> Result<String, Error> {
        self.sign(claims)
    }

    fn sign<T: serde::Serialize>(&self, claims: &T) -> Result<String, Error> {
        jsonwebtoken::encode(&self.header, claims, &self.key)
            .map_err(|_| Error::Mint("signing failed".to_owned()))
    }
}
