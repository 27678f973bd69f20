//! The store's one error type. Constraint violations and an unreachable database are
//! classified here, in one place, so callers never match on database message strings.

use sea_orm::sqlx;
use sea_orm::{ConnAcquireErr, DbErr, RuntimeErr, SqlErr};

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
    /// The database cannot be reached right now (no connection in time, a connection lost,
    /// the server shutting down or refusing): the call may succeed when retried.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Db(DbErr),
}

impl From<DbErr> for Error {
    fn from(err: DbErr) -> Error {
        if is_unavailable(&err) {
            Error::Unavailable(err.to_string())
        } else {
            Error::Db(err)
        }
    }
}

/// Whether `err` says the database could not be reached, as opposed to a statement it
/// refused: a pool that gave no connection in time, a connection that failed or was lost,
/// and the server-side states PostgreSQL and SQLite report for the same.
fn is_unavailable(err: &DbErr) -> bool {
    match err {
        DbErr::ConnectionAcquire(ConnAcquireErr::Timeout | ConnAcquireErr::ConnectionClosed)
        | DbErr::Conn(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => {
            sqlx_unavailable(e)
        }
        _ => false,
    }
}

fn sqlx_unavailable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| code_unavailable(&code)),
        _ => false,
    }
}

/// PostgreSQL SQLSTATEs (always five characters) of class 08 (connection exception), the
/// server shutting down or starting (57P01–57P03) and too many connections (53300); SQLite's
/// busy and locked (primary result codes 5 and 6, the low byte of the extended code it
/// reports as a decimal number of at most four digits).
fn code_unavailable(code: &str) -> bool {
    if code.len() == 5 {
        return code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "53300");
    }
    code.parse::<i64>()
        .is_ok_and(|extended| matches!(extended & 0xff, 5 | 6))
}

impl Error {
    /// Maps a failed insert: a unique-constraint violation means the thing exists, anything
    /// else is a database failure.
    pub fn on_insert(err: DbErr, what: impl Into<String>) -> Error {
        match err.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(_)) => Error::AlreadyExists(what.into()),
            _ => Error::from(err),
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

/// Maps an error reading a stored value to [`Error::Corrupt`] about `what`.
pub(crate) fn corrupt<E: std::fmt::Display>(what: &'static str) -> impl FnOnce(E) -> Error {
    move |e| Error::corrupt(what, e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_codes_that_mean_unreachable() {
        let check = |code: &str, expected: bool| {
            assert_eq!(code_unavailable(code), expected, "{code}");
        };
        check("08006", true); // connection failure
        check("08001", true); // cannot connect
        check("57P01", true); // admin shutdown
        check("57P03", true); // cannot connect now
        check("53300", true); // too many connections
        check("23505", false); // unique violation
        check("40001", false); // serialization failure
        check("42P01", false); // undefined table
        check("5", true); // SQLITE_BUSY
        check("517", true); // SQLITE_BUSY_SNAPSHOT
        check("6", true); // SQLITE_LOCKED
        check("2067", false); // SQLITE_CONSTRAINT_UNIQUE
        check("19", false); // SQLITE_CONSTRAINT
    }

    #[test]
    fn pool_and_connection_failures_are_unavailable() {
        let e = Error::from(DbErr::ConnectionAcquire(ConnAcquireErr::Timeout));
        assert!(matches!(e, Error::Unavailable(_)), "{e:?}");
        let e = Error::from(DbErr::Conn(RuntimeErr::Internal("refused".to_owned())));
        assert!(matches!(e, Error::Unavailable(_)), "{e:?}");
        let e = Error::from(DbErr::Exec(RuntimeErr::SqlxError(
            sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset)).into(),
        )));
        assert!(matches!(e, Error::Unavailable(_)), "{e:?}");
        let e = Error::from(DbErr::RecordNotFound("x".to_owned()));
        assert!(matches!(e, Error::Db(_)), "{e:?}");
    }
}
