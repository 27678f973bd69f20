//! The gateway's own refusals, and the one place they become gRPC statuses. Whatever a
//! backend answers passes through untouched; these are only the calls the gateway stops.
//! Each carries `google.rpc.ErrorInfo` with a reason of the contract's `ErrorReason`
//! ([`GatewayError::reason`]) besides its other details.

use std::time::Duration;

use relief_auth::{CallError, DISTRICT_HEADER};
use relief_proto::v1::ErrorReason;
use relief_wire::status::with_reason;
use tonic::{Code, Status};
use tonic_types::ErrorDetails;

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

impl GatewayError {
    /// The `ErrorInfo` reason and metadata this refusal is answered with.
    pub fn reason(&self) -> (ErrorReason, Vec<(String, String)>) {
        let district = |d: &str| vec![("district".to_owned(), d.to_owned())];
        match self {
            GatewayError::Unauthenticated(_) => (ErrorReason::TokenInvalid, Vec::new()),
            GatewayError::Call(CallError::MissingToken | CallError::NotBearer) => {
                (ErrorReason::TokenMissing, Vec::new())
            }
            GatewayError::Call(CallError::BadDistrictHeader) => (
                ErrorReason::InvalidArgument,
                vec![
                    ("violations".to_owned(), "1".to_owned()),
                    ("field".to_owned(), DISTRICT_HEADER.to_owned()),
                ],
            ),
            GatewayError::Call(CallError::OtherDistrict) | GatewayError::NoDistrict => {
                (ErrorReason::PermissionDenied, Vec::new())
            }
            GatewayError::UnknownDistrict(d) => (ErrorReason::DistrictNotRouted, district(d)),
            GatewayError::Unavailable {
                district: d,
                upstream,
                ..
            } => {
                let mut metadata = district(d);
                metadata.push(("upstream".to_owned(), upstream.clone()));
                (ErrorReason::UpstreamUnavailable, metadata)
            }
            GatewayError::Busy { district: d, .. } => (ErrorReason::DistrictBusy, district(d)),
            GatewayError::NoneAvailable => (ErrorReason::NoUpstreamAvailable, Vec::new()),
            GatewayError::DeadlineExpired => (ErrorReason::DeadlineExpired, Vec::new()),
        }
    }
}

impl From<GatewayError> for Status {
    fn from(e: GatewayError) -> Status {
        let message = e.to_string();
        let (reason, metadata) = e.reason();
        let (code, details) = match e {
            GatewayError::Unauthenticated(_)
            | GatewayError::Call(CallError::MissingToken | CallError::NotBearer) => {
                (Code::Unauthenticated, ErrorDetails::new())
            }
            GatewayError::Call(CallError::BadDistrictHeader) => (
                Code::InvalidArgument,
                ErrorDetails::with_bad_request_violation(
                    DISTRICT_HEADER,
                    "must be a 6-digit district code",
                ),
            ),
            GatewayError::Call(CallError::OtherDistrict) | GatewayError::NoDistrict => {
                (Code::PermissionDenied, ErrorDetails::new())
            }
            GatewayError::UnknownDistrict(district) => (
                Code::NotFound,
                ErrorDetails::with_resource_info("district", district, "", "not routed"),
            ),
            GatewayError::Unavailable { .. } => (
                Code::Unavailable,
                ErrorDetails::with_retry_info(Some(UNAVAILABLE_RETRY)),
            ),
            GatewayError::Busy { .. } => (
                Code::ResourceExhausted,
                ErrorDetails::with_retry_info(Some(BUSY_RETRY)),
            ),
            GatewayError::NoneAvailable => (Code::Unavailable, ErrorDetails::new()),
            GatewayError::DeadlineExpired => (Code::Cancelled, ErrorDetails::new()),
        };
        with_reason(code, message, reason.reason(), metadata, details)
    }
}
