//! The gateway's own refusals, and the one place they become gRPC statuses. Whatever a
//! backend answers passes through untouched; these are only the calls the gateway stops.

use std::time::Duration;

use relief_auth::{CallError, DISTRICT_HEADER};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The reason domain used in `ErrorInfo` details.
const DOMAIN: &str = "relief.v1";

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Call(CallError),
    #[error("a city-scoped token must name a district in {DISTRICT_HEADER}")]
    NoDistrict,
    #[error("district {0} is not served by this gateway")]
    UnknownDistrict(String),
    #[error("the backend serving district {district} ({upstream}) is unavailable: {reason}")]
    Unavailable {
        district: String,
        upstream: String,
        reason: String,
    },
    #[error("district {district} has {limit} calls in flight; retry shortly")]
    Busy { district: String, limit: usize },
    #[error("no backend is available for this city-wide call")]
    NoneAvailable,
    /// The caller's deadline passed while the call was with the backend; answered as a
    /// backend answers its own expired deadline.
    #[error("Timeout expired")]
    DeadlineExpired,
}

/// How long a caller refused for a busy district is asked to wait.
const BUSY_RETRY: Duration = Duration::from_millis(100);
/// How long a caller refused for a backend that is down is asked to wait: about the
/// interval of the gateway's health checks, after which it may be back.
const UNAVAILABLE_RETRY: Duration = Duration::from_secs(1);

impl From<GatewayError> for Status {
    fn from(e: GatewayError) -> Status {
        let message = e.to_string();
        match e {
            GatewayError::Unauthenticated(_) => Status::unauthenticated(message),
            GatewayError::Call(CallError::MissingToken | CallError::NotBearer) => {
                Status::unauthenticated(message)
            }
            GatewayError::Call(CallError::BadDistrictHeader) => Status::with_error_details(
                Code::InvalidArgument,
                message,
                ErrorDetails::with_bad_request_violation(
                    DISTRICT_HEADER,
                    "must be a 6-digit district code",
                ),
            ),
            GatewayError::Call(CallError::OtherDistrict) | GatewayError::NoDistrict => {
                Status::with_error_details(
                    Code::PermissionDenied,
                    message,
                    ErrorDetails::with_error_info("PERMISSION_DENIED", DOMAIN, []),
                )
            }
            GatewayError::UnknownDistrict(district) => Status::with_error_details(
                Code::NotFound,
                message,
                ErrorDetails::with_resource_info("district", district, "", "not routed"),
            ),
            GatewayError::Unavailable { upstream, .. } => {
                let mut details = ErrorDetails::with_retry_info(Some(UNAVAILABLE_RETRY));
                details.set_error_info(
                    "UPSTREAM_UNAVAILABLE",
                    DOMAIN,
                    [("upstream".to_owned(), upstream)],
                );
                Status::with_error_details(Code::Unavailable, message, details)
            }
            GatewayError::Busy { .. } => Status::with_error_details(
                Code::ResourceExhausted,
                message,
                ErrorDetails::with_retry_info(Some(BUSY_RETRY)),
            ),
            GatewayError::NoneAvailable => Status::unavailable(message),
            GatewayError::DeadlineExpired => Status::cancelled(message),
        }
    }
}
