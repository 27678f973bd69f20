//! The one place where errors become gRPC statuses. Handlers return [`ApiError`]; the store's
//! and domain's errors convert into it; internal failures are logged here and leave as a
//! bare `INTERNAL` so no database detail reaches a client. Field violations become a status
//! through `relief_wire::invalid_argument`, as the wire check's do, so every refusal lists at
//! most twenty and stays under 1 KiB of message.

use std::time::Duration;

use relief_domain::Violation;
use relief_domain::case::TransitionError;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The reason domain used in `ErrorInfo` details.
const DOMAIN: &str = "relief.v1";

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
    /// machine-readable code (`CASE_NOT_EDITABLE`).
    #[error("{message}")]
    FailedPrecondition {
        reason: &'static str,
        message: String,
    },
    #[error("{0}")]
    AlreadyExists(String),
    /// Optimistic concurrency: the caller's view is stale; re-read and retry.
    #[error("{0}")]
    Aborted(String),
    /// A concurrent call changed what an optimistic write read; running it again is safe.
    #[error("{0}")]
    Conflict(String),
    /// More than one call may carry, or more than the server carries at once; `retry_after`
    /// (sent as `google.rpc.RetryInfo`) when trying again later can succeed.
    #[error("{message}")]
    TooMany {
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
            E::RequestIdReused => ApiError::AlreadyExists(
                "request_id was already used for a different request; use a new request_id"
                    .to_owned(),
            ),
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
        ApiError::FailedPrecondition {
            reason: "CASE_STATE",
            message: e.to_string(),
        }
    }
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
            | ApiError::AlreadyExists(_)
            | ApiError::Aborted(_)
            | ApiError::Conflict(_)
            | ApiError::TooMany { .. }
            | ApiError::Unavailable(_)
            | ApiError::Internal(_) => relief_wire::status::cut_message(&e.to_string()),
        };
        match e {
            ApiError::Unauthenticated(_) => Status::unauthenticated(message),
            ApiError::TooMany {
                retry_after: Some(delay),
                ..
            } => Status::with_error_details(
                Code::ResourceExhausted,
                message,
                ErrorDetails::with_retry_info(Some(delay)),
            ),
            ApiError::TooMany {
                retry_after: None, ..
            } => Status::resource_exhausted(message),
            ApiError::PermissionDenied(_) => Status::with_error_details(
                Code::PermissionDenied,
                message,
                ErrorDetails::with_error_info("PERMISSION_DENIED", DOMAIN, []),
            ),
            ApiError::NotFound(_) => Status::not_found(message),
            ApiError::InvalidArgument(violations) => relief_wire::invalid_argument(violations, 0),
            ApiError::FailedPrecondition {
                reason,
                message: detail,
            } => Status::with_error_details(
                Code::FailedPrecondition,
                message,
                ErrorDetails::with_precondition_failure_violation(reason, "", detail),
            ),
            ApiError::AlreadyExists(_) => Status::already_exists(message),
            ApiError::Aborted(_) | ApiError::Conflict(_) => Status::aborted(message),
            ApiError::Unavailable(detail) => {
                tracing::warn!(error = %detail, "database unavailable");
                unavailable_status(message)
            }
            ApiError::Internal(detail) => {
                tracing::error!(error = %detail, "internal error");
                Status::internal("internal error")
            }
            ApiError::Stream(status) => status,
        }
    }
}

/// UNAVAILABLE with `RetryInfo` and the `DATABASE_UNAVAILABLE` reason: what a caller gets
/// while the database cannot be reached, from a handler or before one runs.
pub fn unavailable_status(message: impl Into<String>) -> Status {
    let mut details = ErrorDetails::with_retry_info(Some(UNAVAILABLE_RETRY));
    details.set_error_info("DATABASE_UNAVAILABLE", DOMAIN, []);
    Status::with_error_details(Code::Unavailable, message, details)
}

pub type ApiResult<T> = Result<T, ApiError>;
