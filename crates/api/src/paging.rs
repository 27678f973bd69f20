//! Page sizes, and the page-token codec ([`relief_proto::paging`]) as the handlers use it:
//! a token that is not this list's is INVALID_ARGUMENT on `page_token`.

use relief_proto::paging::BadPageToken;
pub use relief_proto::paging::{ListKey, MAX_OFFSET, Paged, decode_cursor, encode_cursor};

use crate::ApiContext;
use crate::error::{ApiError, ApiResult};

impl ApiContext {
    /// The page size to use: the default for 0, the maximum for anything larger.
    pub(crate) fn page_size(&self, requested: i32) -> ApiResult<u64> {
        match u32::try_from(requested) {
            Err(_) => Err(ApiError::invalid("page_size", "must not be negative")),
            Ok(0) => Ok(u64::from(self.default_page_size)),
            Ok(n) => Ok(u64::from(n.min(self.max_page_size))),
        }
    }
}

impl From<BadPageToken> for ApiError {
    fn from(e: BadPageToken) -> ApiError {
        ApiError::invalid(BadPageToken::FIELD, e)
    }
}
