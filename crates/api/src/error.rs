//! The one place where errors become gRPC statuses. Handlers return [`ApiError`]; the store's
//! and domain's errors convert into it; internal failures are logged here and leave as a
//! bare `INTERNAL` so no database detail reaches a client. Field violations become a status
//! through `relief_wire::invalid_argument`, as the wire check's do, so every refusal lists at
//! most twenty and stays under 1 KiB of message.
//!
//! Every status made here carries `google.rpc.ErrorInfo` with a reason of the contract's
//! `ErrorReason` ([`ApiError::reason`]; proto/relief/v1/errors.proto says when each is given)
//! in `relief_proto::ERROR_DOMAIN`, besides the details the variant has always carried.

use std::time::Duration;

use relief_domain::Violation;
use relief_domain::case::TransitionError;
use relief_proto::v1::ErrorReason;
use relief_wire::status::with_reason;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// How long a caller told the database is unavailable is asked to wait before retrying:
/// about the interval at which the server looks at the database again.
pub const UNAVAILABLE_RETRY: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    PermissionDenied(String),
    /// Also what a caller gets for another district's or another unit's object, so that its
    /// existence does not leak.
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("invalid request: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    InvalidArgument(Vec<Violation>),
    /// The object is in a state that does not allow the call; `reason` is a stable
    /// machine-readable code, the name of an `ErrorReason` without its prefix
    /// (`MEETING_CLOSED`).
    #[error("{message}")]
    FailedPrecondition {
        reason: &'static str,
        message: String,
    },
    /// The case's state does not allow the action (reason `CASE_STATE`).
    #[error("{0}")]
    CaseState(TransitionError),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("request_id was already used for a different request; use a new request_id")]
    RequestIdReused,
    /// Optimistic concurrency: the caller's view is stale; re-read and retry.
    #[error("{0}")]
    Aborted(String),
    /// A concurrent call changed what an optimistic write read; running it again is safe.
    #[error("{0}")]
    Conflict(String),
    /// More than one call may carry, or more than the server carries at once; `retry_after`
    /// (sent as `google.rpc.RetryInfo`) when trying again later can succeed. `reason` as for
    /// `FailedPrecondition` (`STREAM_LIMIT`).
    #[error("{message}")]
    TooMany {
        reason: &'static str,
        message: String,
        retry_after: Option<Duration>,
    },
    /// The database cannot be reached; the detail is logged, the caller is told to retry.
    #[error("the database is unavailable; retry shortly")]
    Unavailable(String),
    #[error("internal error")]
    Internal(String),
    /// A streamed request message that the wire check (or tonic's size check) refused: its
    /// status is answered as it is.
    #[error("{}", .0.message())]
    Stream(Status),
}

impl ApiError {
    pub fn invalid(field: impl Into<String>, description: impl std::fmt::Display) -> ApiError {
        ApiError::InvalidArgument(vec![Violation::new(field, description)])
    }

    /// A state that does not allow the call, with its stable reason code.
    pub fn precondition(reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::FailedPrecondition {
            reason,
            message: message.into(),
        }
    }

    pub fn denied(message: impl Into<String>) -> ApiError {
        ApiError::PermissionDenied(message.into())
    }
}

impl From<relief_store::Error> for ApiError {
    fn from(e: relief_store::Error) -> Self {
        use relief_store::Error as E;
        match e {
            E::NotFound(what) => ApiError::NotFound(what),
            E::AlreadyExists(what) => ApiError::AlreadyExists(format!("{what} already exists")),
            E::Stale { .. } => ApiError::Aborted(e.to_string()),
            E::Conflict(_) => ApiError::Conflict(e.to_string()),
            E::RequestIdReused => ApiError::RequestIdReused,
            E::Precondition(message) => ApiError::FailedPrecondition {
                reason: "LEDGER_RULE",
                message,
            },
            E::Unavailable(detail) => ApiError::Unavailable(detail),
            E::Corrupt { .. } | E::Db(_) => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<TransitionError> for ApiError {
    fn from(e: TransitionError) -> Self {
        ApiError::CaseState(e)
    }
}

impl ApiError {
    /// The `ErrorInfo` reason and metadata this error is answered with.
    pub fn reason(&self) -> (ErrorReason, Vec<(String, String)>) {
        let none = Vec::new();
        match self {
            ApiError::Unauthenticated(_) => (ErrorReason::TokenMissing, none),
            ApiError::PermissionDenied(_) => (ErrorReason::PermissionDenied, none),
            ApiError::NotFound(what) => (
                ErrorReason::NotFound,
                vec![("resource".to_owned(), (*what).to_owned())],
            ),
            ApiError::InvalidArgument(_) => (ErrorReason::InvalidArgument, none),
            ApiError::FailedPrecondition { reason, .. } | ApiError::TooMany { reason, .. } => {
                (named(reason), none)
            }
            ApiError::CaseState(e) => (
                ErrorReason::CaseState,
                vec![
                    ("state".to_owned(), e.from.as_str().to_owned()),
                    ("action".to_owned(), e.action.to_owned()),
                ],
            ),
            ApiError::AlreadyExists(_) => (ErrorReason::AlreadyExists, none),
            ApiError::RequestIdReused => (ErrorReason::RequestIdReused, none),
            ApiError::Aborted(_) => (ErrorReason::VersionStale, none),
            ApiError::Conflict(_) => (ErrorReason::ConcurrentChange, none),
            ApiError::Unavailable(_) => (ErrorReason::DatabaseUnavailable, none),
            ApiError::Internal(_) => (ErrorReason::Internal, none),
            ApiError::Stream(status) => (by_code(status.code()), none),
        }
    }
}

/// The `ErrorReason` named `reason`; a name the contract does not have is a server bug,
/// logged and answered as `INTERNAL`'s reason rather than sent unlisted.
fn named(reason: &str) -> ErrorReason {
    ErrorReason::from_reason(reason).unwrap_or_else(|| {
        tracing::error!(
            reason,
            "error reason missing from the contract's ErrorReason"
        );
        ErrorReason::Internal
    })
}

/// The reason of a status that came without one (tonic's own refusal of a streamed message).
fn by_code(code: Code) -> ErrorReason {
    match code {
        Code::InvalidArgument => ErrorReason::InvalidArgument,
        Code::ResourceExhausted | Code::OutOfRange => ErrorReason::MessageTooLarge,
        Code::Unauthenticated => ErrorReason::TokenInvalid,
        Code::PermissionDenied => ErrorReason::PermissionDenied,
        Code::Unavailable => ErrorReason::DatabaseUnavailable,
        _ => ErrorReason::Internal,
    }
}

/// `status` as it is if it carries `ErrorInfo`, else with one of `reason`.
fn with_info(status: Status, reason: ErrorReason) -> Status {
    let details = status.get_error_details();
    if details.error_info().is_some() {
        return status;
    }
    with_reason(
        status.code(),
        status.message(),
        reason.reason(),
        [],
        details,
    )
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Status {
        let message = match &e {
            // These build their own message: a list of violations is not joined in full.
            ApiError::InvalidArgument(_) | ApiError::Stream(_) => String::new(),
            ApiError::Unauthenticated(_)
            | ApiError::PermissionDenied(_)
            | ApiError::NotFound(_)
            | ApiError::FailedPrecondition { .. }
            | ApiError::CaseState(_)
            | ApiError::AlreadyExists(_)
            | ApiError::RequestIdReused
            | ApiError::Aborted(_)
            | ApiError::Conflict(_)
            | ApiError::TooMany { .. }
            | ApiError::Unavailable(_)
            | ApiError::Internal(_) => relief_wire::status::cut_message(&e.to_string()),
        };
        let (reason, metadata) = e.reason();
        let plain = |code: Code, message: String, details: ErrorDetails| {
            with_reason(code, message, reason.reason(), metadata.clone(), details)
        };
        match e {
            ApiError::Unauthenticated(_) => {
                plain(Code::Unauthenticated, message, ErrorDetails::new())
            }
            ApiError::TooMany { retry_after, .. } => plain(
                Code::ResourceExhausted,
                message,
                retry_after.map_or_else(ErrorDetails::new, |delay| {
                    ErrorDetails::with_retry_info(Some(delay))
                }),
            ),
            ApiError::PermissionDenied(_) => {
                plain(Code::PermissionDenied, message, ErrorDetails::new())
            }
            ApiError::NotFound(_) => plain(Code::NotFound, message, ErrorDetails::new()),
            ApiError::InvalidArgument(violations) => relief_wire::invalid_argument(violations, 0),
            ApiError::FailedPrecondition {
                reason: name,
                message: detail,
            } => plain(
                Code::FailedPrecondition,
                message,
                ErrorDetails::with_precondition_failure_violation(name, "", detail),
            ),
            ApiError::CaseState(_) => plain(
                Code::FailedPrecondition,
                message.clone(),
                ErrorDetails::with_precondition_failure_violation(reason.reason(), "", message),
            ),
            ApiError::AlreadyExists(_) | ApiError::RequestIdReused => {
                plain(Code::AlreadyExists, message, ErrorDetails::new())
            }
            ApiError::Aborted(_) | ApiError::Conflict(_) => {
                plain(Code::Aborted, message, ErrorDetails::new())
            }
            ApiError::Unavailable(detail) => {
                tracing::warn!(error = %detail, "database unavailable");
                unavailable_status(message)
            }
            ApiError::Internal(detail) => {
                tracing::error!(error = %detail, "internal error");
                plain(
                    Code::Internal,
                    "internal error".to_owned(),
                    ErrorDetails::new(),
                )
            }
            ApiError::Stream(status) => with_info(status, reason),
        }
    }
}

/// UNAVAILABLE with `RetryInfo` and the `DATABASE_UNAVAILABLE` reason: what a caller gets
/// while the database cannot be reached, from a handler or before one runs.
pub fn unavailable_status(message: impl Into<String>) -> Status {
    with_reason(
        Code::Unavailable,
        message,
        ErrorReason::DatabaseUnavailable.reason(),
        [],
        ErrorDetails::with_retry_info(Some(UNAVAILABLE_RETRY)),
    )
}

/// UNAUTHENTICATED with `reason` (`TOKEN_MISSING` or `TOKEN_INVALID`): what the
/// authentication interceptor answers before a handler runs.
pub fn unauthenticated_status(reason: ErrorReason, message: impl Into<String>) -> Status {
    with_reason(
        Code::Unauthenticated,
        message,
        reason.reason(),
        [],
        ErrorDetails::new(),
    )
}

pub type ApiResult<T> = Result<T, ApiError>;
