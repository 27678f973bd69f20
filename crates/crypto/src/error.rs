//! Why a key or a sealed value could not be used. Messages never carry key material or
//! plaintext.

/// The crate's error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("unknown crypto suite {0:?} (expected \"standard\" or \"sm\")")]
    UnknownSuite(String),
    #[error("the key-encryption key is not usable: {0}")]
    BadKek(String),
    #[error(
        "the key-encryption key does not open the stored data keys (configured key {configured}, data keys wrapped by {stored})"
    )]
    WrongKek { configured: String, stored: String },
    #[error("no data key {0}")]
    UnknownKey(String),
    #[error("no data key for {0}")]
    NoKeyFor(String),
    #[error("sealed {0} is malformed")]
    Malformed(&'static str),
    #[error("sealed {0} does not authenticate (wrong key or altered)")]
    Authentication(&'static str),
    #[error("the operating system's random source failed")]
    Random,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
