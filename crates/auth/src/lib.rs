//! Authentication for relief: verifies bearer tokens (JWT) into typed [`Claims`] that
//! handlers read, mints tokens, knows the development key by its key material, and makes
//! signing keys for deployments. Knows no gRPC and no database; the API crate's interceptor
//! calls [`Verifier::verify`] and maps [`Error`] to a status.

mod call;
mod claims;
mod error;
mod keys;
mod minter;
mod verifier;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tokens_doc;

pub use call::{CallError, DISTRICT_HEADER, bearer_token, call_district};
pub use claims::{CITY_SCOPE, Claims, MAX_NAME_CHARS, Scope};
pub use error::Error;
/// Re-exported so callers configure algorithms without depending on `jsonwebtoken`.
pub use jsonwebtoken::Algorithm;
pub use keys::{
    DEV_JWKS_JSON, DEV_KID, DEV_SIGNING_KEY_PEM, Ed25519KeyPair, MAX_KID_CHARS, ed25519_default_kid,
};
pub use minter::{Minter, TokenSpec};
pub use verifier::{
    DEFAULT_LEEWAY_SECS, MAX_JWKS_KEYS, MAX_LEEWAY_SECS, MAX_TOKEN_BYTES, MIN_HS256_SECRET_BYTES,
    Verifier, VerifierConfig,
};
