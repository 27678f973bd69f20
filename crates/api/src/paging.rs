//! Page sizes and page tokens. Tokens are opaque to clients (base64 of a cursor) so their
//! form can change without breaking anyone.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

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

/// A page token for `cursor` in a list of `kind`; the gateway makes them too when it merges
/// the districts of several backends.
pub fn encode_token(kind: &str, cursor: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{kind}:{cursor}"))
}

/// The cursor in `token`, or `None` for the first page.
pub(crate) fn decode_token(kind: &str, token: &str) -> ApiResult<Option<String>> {
    if token.is_empty() {
        return Ok(None);
    }
    let bad = || ApiError::invalid("page_token", "is not a page token from this list");
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let cursor = text
        .strip_prefix(kind)
        .and_then(|rest| rest.strip_prefix(':'))
        .ok_or_else(bad)?;
    Ok(Some(cursor.to_owned()))
}

/// The row offset in an offset-paged list's token; 0 for the first page.
pub(crate) fn decode_offset(kind: &str, token: &str) -> ApiResult<u64> {
    decode_token(kind, token)?
        .map(|c| {
            c.parse::<u64>()
                .map_err(|_| ApiError::invalid("page_token", "is not a page token from this list"))
        })
        .transpose()
        .map(Option::unwrap_or_default)
}

/// Cuts a page fetched with one extra row and returns the next page's token.
pub(crate) fn next_offset_page<T>(
    rows: &mut Vec<T>,
    kind: &str,
    offset: u64,
    limit: u64,
) -> String {
    if rows.len() as u64 > limit {
        rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        encode_token(kind, &(offset + limit).to_string())
    } else {
        String::new()
    }
}
