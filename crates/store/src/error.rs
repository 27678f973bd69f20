//! The store's one error type. Constraint violations are classified here, in one place, so
//! callers never match on database message strings.

use sea_orm::{DbErr, SqlErr};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0} already exists")]
    AlreadyExists(String),
    #[error("{what} changed since it was read: expected version {expected}, found {actual}")]
    Stale {
        what: &'static str,
        expected: i64,
        actual: i64,
    },
    /// The change would break a rule of the books; the message says which.
    #[error("{0}")]
    Precondition(String),
    /// A concurrent write changed `what` after this one read it; the whole call is safe
    /// to run again.
    #[error("{0} was changed by a concurrent call")]
    Conflict(&'static str),
    #[error("request_id was already used for a different request")]
    RequestIdReused,
    #[error("stored {what} is unreadable: {detail}")]
    Corrupt { what: &'static str, detail: String },
    #[error("database error: {0}")]
    Db(#[from] DbErr),
}

impl Error {
    /// Maps a failed insert: a unique-constraint violation means the thing exists, anything
    /// else is a database failure.
    pub fn on_insert(err: DbErr, what: impl Into<String>) -> Error {
        match err.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(_)) => Error::AlreadyExists(what.into()),
            _ => Error::Db(err),
        }
    }

    pub fn corrupt(what: &'static str, detail: impl std::fmt::Display) -> Error {
        Error::Corrupt {
            what,
            detail: detail.to_string(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
