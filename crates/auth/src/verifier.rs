//! Turns a bearer token into [`Claims`], or says exactly why not. Keys are chosen by the
//! header's `kid` from a configured JWKS and must belong to the header's algorithm family, so
//! the classic JWT attacks (`alg: none`, HS256 signed with a public key, unknown or swapped
//! keys) fail before any claim is read.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Validation};
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use crate::Error;
use crate::claims::{Claims, WireClaims};
use crate::keys::{DEV_JWKS_JSON, is_dev_ed25519};

/// How far `exp` and `nbf` may be off to absorb clock skew between issuer and us.
pub const DEFAULT_LEEWAY_SECS: u64 = 30;
/// The most clock skew we accept to configure: beyond this, expiry stops meaning much.
pub const MAX_LEEWAY_SECS: u64 = 300;
/// The longest token we look at, in bytes. Real tokens here are well under 2 KiB; the limit
/// keeps a hostile header from costing base64 and JSON work.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// The most keys a JWKS may hold; identity providers publish a handful during rotation.
pub const MAX_JWKS_KEYS: usize = 64;
/// The shortest HS256 secret, in bytes: RFC 7518 §3.2 asks for at least the hash size.
pub const MIN_HS256_SECRET_BYTES: usize = 32;
/// The smallest RSA modulus accepted, in bytes (2048 bits).
const MIN_RSA_MODULUS_BYTES: usize = 256;
/// How much of a token-supplied `alg` or `kid` is echoed back in an error.
const MAX_ECHO_CHARS: usize = 64;

/// What the verifier trusts. The caller reads files (a JWKS path, a secret file) and passes
/// their contents; this crate does no I/O.
#[derive(Debug, Clone)]
pub struct VerifierConfig {
    /// The only accepted `iss`.
    pub issuer: String,
    /// The audience this service answers to; `aud` must contain it.
    pub audience: String,
    /// Accepted header algorithms, among `EdDSA`, `ES256`, `RS256`, and `HS256` only together
    /// with [`VerifierConfig::hs256_secret`].
    pub algorithms: Vec<Algorithm>,
    /// A JWKS document (`{"keys": [...]}`) with the public keys, each with a unique `kid`.
    /// Required when any asymmetric algorithm is accepted.
    pub jwks_json: Option<String>,
    /// The shared secret for HS256 tokens (at least [`MIN_HS256_SECRET_BYTES`] bytes).
    pub hs256_secret: Option<SecretString>,
    /// Clock skew allowed on `exp` and `nbf`, at most [`MAX_LEEWAY_SECS`].
    pub leeway_secs: u64,
    /// Also trust the development key ([`crate::DEV_JWKS_JSON`]), besides the keys of
    /// `jwks_json`. Whether or not this is set, [`Verifier::trusts_dev_key`] tells if the
    /// resulting key set holds the development key.
    pub trust_dev_key: bool,
}

impl VerifierConfig {
    /// Accepts the asymmetric algorithms (`EdDSA`, `ES256`, `RS256`) with the default leeway;
    /// the caller still has to provide the JWKS.
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audience: audience.into(),
            algorithms: vec![Algorithm::EdDSA, Algorithm::ES256, Algorithm::RS256],
            jwks_json: None,
            hs256_secret: None,
            leeway_secs: DEFAULT_LEEWAY_SECS,
            trust_dev_key: false,
        }
    }
}

/// A public key from the JWKS, with the algorithm its JWK pins, if any.
#[derive(Clone)]
struct VerifyingKey {
    key: DecodingKey,
    alg: Option<Algorithm>,
    /// The development key's public key, whatever its `kid` and wherever it came from.
    dev: bool,
}

/// Verifies tokens against a fixed configuration. Build once at start-up and share it (it is
/// `Clone + Send + Sync`).
#[derive(Clone)]
pub struct Verifier {
    issuer: String,
    audience: String,
    algorithms: Vec<Algorithm>,
    keys: HashMap<String, VerifyingKey>,
    hs256: Option<DecodingKey>,
    /// The `kid` holding the development key's public key, if the key set has it.
    dev_kid: Option<String>,
    /// Everything but `algorithms`, which is set per token to the header's one algorithm.
    validation: Validation,
    /// Tokens already verified, by SHA-256, shared by every clone.
    verified: Arc<Mutex<HashMap<[u8; 32], Claims>>>,
}

/// How many verified tokens are remembered; when full, the memory starts afresh.
pub const VERIFIED_CACHE_ENTRIES: usize = 10_000;

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut kids: Vec<&str> = self.keys.keys().map(String::as_str).collect();
        kids.sort_unstable();
        f.debug_struct("Verifier")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("algorithms", &self.algorithms)
            .field("kids", &kids)
            .field("hs256", &self.hs256.as_ref().map(|_| "[redacted]"))
            .field("dev_kid", &self.dev_kid)
            .field("leeway_secs", &self.validation.leeway)
            .finish()
    }
}

/// The part of a JOSE header we look at before trusting anything: `alg` as a plain string so
/// that `none` and other unknown names are reported as such.
#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<serde_json::Value>,
}

impl Verifier {
    /// Checks the configuration and loads every key; all problems surface here as
    /// [`Error::Config`], not on the first request.
    pub fn new(cfg: VerifierConfig) -> Result<Self, Error> {
        if cfg.issuer.trim().is_empty() {
            return Err(config("issuer must not be empty"));
        }
        if cfg.audience.trim().is_empty() {
            return Err(config("audience must not be empty"));
        }
        if cfg.leeway_secs > MAX_LEEWAY_SECS {
            return Err(config(format!(
                "leeway_secs must be at most {MAX_LEEWAY_SECS}"
            )));
        }

        let mut algorithms: Vec<Algorithm> = Vec::new();
        for alg in cfg.algorithms {
            if !algorithms.contains(&alg) {
                algorithms.push(alg);
            }
        }
        if algorithms.is_empty() {
            return Err(config("algorithms must not be empty"));
        }
        let mut wants_jwks = false;
        for &alg in &algorithms {
            match alg {
                Algorithm::EdDSA | Algorithm::ES256 | Algorithm::RS256 => wants_jwks = true,
                Algorithm::HS256 => {
                    if cfg.hs256_secret.is_none() {
                        return Err(config("algorithm HS256 requires hs256_secret"));
                    }
                }
                // `Algorithm` is non-exhaustive; anything not named above is refused.
                other => {
                    return Err(config(format!(
                        "algorithm {other:?} is not supported; use EdDSA, ES256, RS256 or HS256"
                    )));
                }
            }
        }

        let hs256 = match &cfg.hs256_secret {
            None => None,
            Some(secret) => {
                if !algorithms.contains(&Algorithm::HS256) {
                    return Err(config(
                        "hs256_secret is set but HS256 is not among the algorithms",
                    ));
                }
                let bytes = secret.expose_secret().as_bytes();
                if bytes.len() < MIN_HS256_SECRET_BYTES {
                    return Err(config(format!(
                        "hs256_secret must be at least {MIN_HS256_SECRET_BYTES} bytes"
                    )));
                }
                Some(DecodingKey::from_secret(bytes))
            }
        };

        let mut keys = match &cfg.jwks_json {
            Some(json) => load_jwks(json)?,
            None if wants_jwks && !cfg.trust_dev_key => {
                return Err(config(
                    "jwks_json is required when EdDSA, ES256 or RS256 is accepted",
                ));
            }
            None => HashMap::new(),
        };
        if cfg.trust_dev_key && !keys.values().any(|k| k.dev) {
            for (kid, key) in load_jwks(DEV_JWKS_JSON)? {
                if keys.contains_key(&kid) {
                    return Err(config(format!(
                        "JWKS kid {kid:?} names another key than the development key, which is to be trusted as well"
                    )));
                }
                keys.insert(kid, key);
            }
        }
        // Several kids may carry the same key; the smallest names it in messages.
        let dev_kid = keys
            .iter()
            .filter(|(_, k)| k.dev)
            .map(|(kid, _)| kid)
            .min()
            .cloned();

        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = true;
        validation.leeway = cfg.leeway_secs;
        validation.set_issuer(&[cfg.issuer.as_str()]);
        validation.set_audience(&[cfg.audience.as_str()]);

        Ok(Self {
            issuer: cfg.issuer,
            audience: cfg.audience,
            algorithms,
            keys,
            hs256,
            dev_kid,
            validation,
            verified: Arc::default(),
        })
    }

    /// The `kid` under which the key set holds the development key (whose private half is
    /// public in the repository), recognised by its public key whatever its `kid` and
    /// wherever the JWKS came from; `None` when the set does not hold it.
    pub fn dev_key_kid(&self) -> Option<&str> {
        self.dev_kid.as_deref()
    }

    /// Whether a token signed with the development key would verify: the key set holds it
    /// and EdDSA is accepted.
    pub fn trusts_dev_key(&self) -> bool {
        self.dev_kid.is_some() && self.algorithms.contains(&Algorithm::EdDSA)
    }

    /// Verifies the signature, `exp`, `nbf`, `iss` and `aud`, then checks the claim rules.
    /// `token` is the bare compact JWS, without a `Bearer ` prefix.
    ///
    /// A token that passed is remembered (by its SHA-256) until it expires, so a client
    /// calling many times with one token pays for the signature check once. The
    /// configuration cannot change under a `Verifier`, so the outcome of a check cannot
    /// either, except through time, which is checked again on every call.
    pub fn verify(&self, token: &str) -> Result<Claims, Error> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(Error::MalformedToken);
        }
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = jsonwebtoken::get_current_timestamp();
        let leeway = self.validation.leeway;
        let expired = |c: &Claims| {
            u64::try_from(c.expires_at()).map_or(true, |exp| exp.saturating_add(leeway) < now)
        };
        if let Ok(mut cache) = self.verified.lock()
            && let Some(claims) = cache.get(&key)
        {
            if !expired(claims) {
                return Ok(claims.clone());
            }
            cache.remove(&key);
            return Err(Error::Expired);
        }
        let claims = self.verify_uncached(token)?;
        if !expired(&claims)
            && let Ok(mut cache) = self.verified.lock()
        {
            if cache.len() >= VERIFIED_CACHE_ENTRIES {
                cache.clear();
            }
            cache.insert(key, claims.clone());
        }
        Ok(claims)
    }

    fn verify_uncached(&self, token: &str) -> Result<Claims, Error> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(Error::MalformedToken);
        }
        let header = parse_header(token)?;
        let alg = Algorithm::from_str(&header.alg)
            .map_err(|_| Error::UnsupportedAlgorithm(echo(&header.alg)))?;
        if !self.algorithms.contains(&alg) {
            return Err(Error::UnsupportedAlgorithm(echo(&header.alg)));
        }
        // We implement no JWS extensions, and RFC 7515 §4.1.11 says to refuse what we do not
        // understand.
        if header.crit.is_some() {
            return Err(Error::MalformedToken);
        }

        let key = if alg == Algorithm::HS256 {
            // The shared secret, never a JWKS entry: a public key used as an HMAC secret is
            // the textbook algorithm-confusion forgery.
            self.hs256
                .as_ref()
                .ok_or_else(|| Error::UnsupportedAlgorithm(echo(&header.alg)))?
        } else {
            let kid = header.kid.as_deref().ok_or(Error::UnknownKey(None))?;
            let entry = self
                .keys
                .get(kid)
                .ok_or_else(|| Error::UnknownKey(Some(echo(kid))))?;
            let pinned_ok = entry.alg.is_none_or(|pinned| pinned == alg);
            if entry.key.family() != alg.family() || !pinned_ok {
                return Err(Error::KeyAlgorithmMismatch {
                    kid: echo(kid),
                    alg: echo(&header.alg),
                });
            }
            &entry.key
        };

        let mut validation = self.validation.clone();
        validation.algorithms = vec![alg];
        let data = jsonwebtoken::decode::<serde_json::Value>(token, key, &validation)
            .map_err(|e| map_jwt_error(e, &header.alg))?;
        WireClaims::from_json(data.claims)?.into_claims()
    }
}

fn config(msg: impl Into<String>) -> Error {
    Error::Config(msg.into())
}

/// A token-supplied string, shortened before it goes into an error message.
fn echo(s: &str) -> String {
    s.chars().take(MAX_ECHO_CHARS).collect()
}

fn parse_header(token: &str) -> Result<RawHeader, Error> {
    let mut parts = token.split('.');
    let (Some(header), Some(_payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Error::MalformedToken);
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| Error::MalformedToken)?;
    serde_json::from_slice(&bytes).map_err(|_| Error::MalformedToken)
}

/// Maps the library's error after our own header checks passed. `ErrorKind` is
/// non-exhaustive, hence the final arm; anything unexpected is treated as a bad token.
fn map_jwt_error(e: jsonwebtoken::errors::Error, alg: &str) -> Error {
    match e.into_kind() {
        ErrorKind::InvalidSignature => Error::BadSignature,
        ErrorKind::ExpiredSignature => Error::Expired,
        ErrorKind::ImmatureSignature => Error::NotYetValid,
        ErrorKind::InvalidIssuer => Error::WrongIssuer,
        ErrorKind::InvalidAudience => Error::WrongAudience,
        ErrorKind::MissingRequiredClaim(claim) => Error::MissingClaim(claim),
        ErrorKind::InvalidClaimFormat(claim) => {
            Error::InvalidClaims(format!("{claim} must be a non-negative number of seconds"))
        }
        ErrorKind::InvalidAlgorithm
        | ErrorKind::MissingAlgorithm
        | ErrorKind::UnsupportedAlgorithm
        | ErrorKind::InvalidAlgorithmName => Error::UnsupportedAlgorithm(echo(alg)),
        // A key that loaded at start-up but fails now: refuse the token rather than guess.
        ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidEddsaKey
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidKeyFormat => Error::BadSignature,
        ErrorKind::InvalidToken
        | ErrorKind::InvalidSubject
        | ErrorKind::Base64(_)
        | ErrorKind::Json(_)
        | ErrorKind::Utf8(_)
        | ErrorKind::RsaFailedSigning
        | ErrorKind::Signing(_)
        | ErrorKind::Provider(_) => Error::MalformedToken,
        _ => Error::MalformedToken,
    }
}

/// Loads a JWKS into verifying keys by `kid`, refusing anything we would not verify with.
fn load_jwks(json: &str) -> Result<HashMap<String, VerifyingKey>, Error> {
    // Parsed once loosely to catch private parameters that the typed `Jwk` silently drops.
    // Errors name the position only: a serde message could quote key material.
    let raw: serde_json::Value = serde_json::from_str(json).map_err(|e| {
        config(format!(
            "JWKS is not valid JSON (line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    let raw_keys = raw
        .get("keys")
        .and_then(serde_json::Value::as_array)
        .ok_or_else(|| config("JWKS must be an object with a \"keys\" array"))?;
    if raw_keys.len() > MAX_JWKS_KEYS {
        return Err(config(format!("JWKS has more than {MAX_JWKS_KEYS} keys")));
    }
    for (i, raw_key) in raw_keys.iter().enumerate() {
        for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
            if raw_key.get(private).is_some() {
                return Err(config(format!(
                    "JWKS key #{i} contains private or secret material ({private:?}); publish only public keys"
                )));
            }
        }
    }
    let set: JwkSet = serde_json::from_value(raw).map_err(|_| {
        config("JWKS keys must be JSON Web Keys with kty, crv/x/y (OKP, EC) or n/e (RSA)")
    })?;

    let mut keys = HashMap::with_capacity(set.keys.len());
    for (i, jwk) in set.keys.iter().enumerate() {
        let kid = match jwk.common.key_id.as_deref() {
            Some(kid) if !kid.trim().is_empty() => kid.to_owned(),
            Some(_) | None => return Err(config(format!("JWKS key #{i} has no kid"))),
        };
        let key = load_jwk(&kid, jwk)?;
        if keys.insert(kid.clone(), key).is_some() {
            return Err(config(format!("JWKS has kid {kid:?} more than once")));
        }
    }
    Ok(keys)
}

fn load_jwk(kid: &str, jwk: &Jwk) -> Result<VerifyingKey, Error> {
    match &jwk.common.public_key_use {
        None | Some(PublicKeyUse::Signature) => {}
        Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_)) => {
            return Err(config(format!(
                "JWKS key {kid:?} is not a signing key (use)"
            )));
        }
    }
    let pinned = jwk
        .common
        .key_algorithm
        .map(Algorithm::try_from)
        .transpose()
        .map_err(|_| config(format!("JWKS key {kid:?} names an unsupported alg")))?;

    let bad = |what: &str| config(format!("JWKS key {kid:?}: {what}"));
    let mut dev = false;
    let (key, probe_alg) = match &jwk.algorithm {
        AlgorithmParameters::OctetKeyPair(p) => {
            if p.curve != EllipticCurve::Ed25519 {
                return Err(bad("OKP keys must be on curve Ed25519"));
            }
            // The verifier slices the first 32 bytes; anything else must never reach it.
            let x = URL_SAFE_NO_PAD.decode(&p.x).ok().filter(|x| x.len() == 32);
            let Some(x) = x else {
                return Err(bad("Ed25519 x must be 32 bytes of base64url"));
            };
            dev = is_dev_ed25519(&x);
            let key = DecodingKey::from_ed_components(&p.x)
                .map_err(|_| bad("invalid Ed25519 public key"))?;
            (key, Algorithm::EdDSA)
        }
        AlgorithmParameters::EllipticCurve(p) => {
            if p.curve != EllipticCurve::P256 {
                return Err(bad("EC keys must be on curve P-256"));
            }
            if decoded_len(&p.x) != Some(32) || decoded_len(&p.y) != Some(32) {
                return Err(bad("P-256 x and y must be 32 bytes of base64url each"));
            }
            let key = DecodingKey::from_ec_components(&p.x, &p.y)
                .map_err(|_| bad("invalid P-256 public key"))?;
            (key, Algorithm::ES256)
        }
        AlgorithmParameters::RSA(p) => {
            if decoded_len(&p.n).is_none_or(|n| n < MIN_RSA_MODULUS_BYTES) {
                return Err(bad("RSA modulus must be at least 2048 bits"));
            }
            if decoded_len(&p.e).is_none_or(|e| e == 0 || e > 8) {
                return Err(bad("RSA exponent is invalid"));
            }
            let key = DecodingKey::from_rsa_components(&p.n, &p.e)
                .map_err(|_| bad("invalid RSA public key"))?;
            (key, Algorithm::RS256)
        }
        AlgorithmParameters::OctetKey(_) => {
            return Err(bad(
                "symmetric (oct) keys do not belong in a JWKS; configure hs256_secret",
            ));
        }
        AlgorithmParameters::Other(_) => return Err(bad("unsupported key type")),
        // `AlgorithmParameters` is non-exhaustive.
        _ => return Err(bad("unsupported key type")),
    };

    if let Some(pinned) = pinned
        && pinned.family() != key.family()
    {
        return Err(bad("alg does not match the key type"));
    }
    if key.family() != AlgorithmFamily::Rsa {
        // Loads the point now, so an invalid curve point fails start-up, not a request. The
        // dummy signature cannot verify; only a key error makes this an `Err`.
        jsonwebtoken::crypto::verify("AA", b"", &key, probe_alg)
            .map_err(|_| bad("not a valid public key"))?;
    }
    Ok(VerifyingKey {
        key,
        alg: pinned,
        dev,
    })
}

fn decoded_len(b64url: &str) -> Option<usize> {
    URL_SAFE_NO_PAD.decode(b64url).ok().map(|v| v.len())
}
