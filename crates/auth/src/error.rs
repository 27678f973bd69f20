//! One error type for everything that can go wrong while verifying or minting a token, so the
//! gRPC edge maps auth failures in one exhaustive `match`.
//!
//! Every message is safe to show a client: it may repeat what the token itself said (a `kid`,
//! an `alg`, a role name) but never contains key material or configuration secrets.

/// Why a token was refused, a configuration was rejected, or a token could not be minted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Not a compact JWS of three base64url parts with a JSON header and payload.
    #[error("malformed token")]
    MalformedToken,
    /// The header names an algorithm this verifier does not accept (including `none`).
    #[error("unsupported token algorithm {0:?}")]
    UnsupportedAlgorithm(String),
    /// The header's `kid` is missing (`None`) or names no configured key.
    #[error("{}", unknown_key_message(.0.as_deref()))]
    UnknownKey(Option<String>),
    /// The key named by `kid` belongs to another algorithm family than the header's `alg`,
    /// e.g. an `ES256` header pointing at an Ed25519 key.
    #[error("signing key {kid:?} is not for algorithm {alg}")]
    KeyAlgorithmMismatch { kid: String, alg: String },
    /// The signature does not match the header and payload under the selected key.
    #[error("bad token signature")]
    BadSignature,
    /// `exp` is in the past (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    #[error("token not yet valid")]
    NotYetValid,
    /// `iss` is not the configured issuer.
    #[error("token issuer is not accepted")]
    WrongIssuer,
    /// `aud` does not contain the configured audience.
    #[error("token audience is not accepted")]
    WrongAudience,
    /// A required claim is absent.
    #[error("token has no {0:?} claim")]
    MissingClaim(String),
    /// The claims are present but break a rule (scope against roles, unit against role, ...).
    #[error("invalid token claims: {0}")]
    InvalidClaims(String),
    /// The verifier or minter was configured wrongly; found at start-up, not per request.
    #[error("auth configuration: {0}")]
    Config(String),
    /// A token could not be signed (development and test minting only).
    #[error("cannot mint token: {0}")]
    Mint(String),
}

fn unknown_key_message(kid: Option<&str>) -> String {
    match kid {
        Some(kid) => format!("unknown signing key {kid:?}"),
        None => "token header has no kid".to_owned(),
    }
}
