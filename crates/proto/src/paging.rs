//! Page tokens. Tokens are opaque to clients (base64 of a cursor) so their form can change
//! without breaking anyone. Each token names the list it came from and a digest of that
//! request's filters and scope: a token is honoured only by the same list asked the same
//! way. Every list pages by key: a token carries the sort key of the last row it returned,
//! and the next page is the rows strictly after that key in the list's order, so rows that
//! leave the list between pages (a task decided while its inbox is worked through) never
//! make the next page skip one. The backends make and read them; the gateway makes the
//! city-wide lists' tokens the same way.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest as _, Sha256};

use crate::v1 as pb;

/// A list request: the list it reads and the request with its paging fields cleared, which
/// is what a page token is tied to.
pub trait Paged: prost::Message + Clone {
    /// The list's name inside its tokens.
    const KIND: &'static str;
    /// The request as it would be asked for its first page at the default size.
    fn filters(&self) -> Self;
}

macro_rules! paged {
    ($($request:ty => $kind:literal),* $(,)?) => {$(
        impl Paged for $request {
            const KIND: &'static str = $kind;
            fn filters(&self) -> Self {
                let mut filters = self.clone();
                filters.page_token.clear();
                filters.page_size = 0;
                filters
            }
        }
    )*};
}

paged! {
    pb::ListCasesRequest => "case",
    pb::ListMyTasksRequest => "task",
    pb::ListOverdueRequest => "overdue",
    pb::ListDelegationsRequest => "delegation",
    pb::ListPaymentsRequest => "payment",
    pb::GetBudgetRequest => "ledger",
    pb::ListDueFollowUpsRequest => "follow_up",
    pb::ListDistrictsRequest => "district",
}

/// The identity of one list asked one way: which list, in which scope (the district it
/// reads, or empty for the city), with which filters.
#[derive(Debug, Clone)]
pub struct ListKey {
    kind: &'static str,
    digest: String,
}

/// A page token that is not one of this list asked this way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadPageToken;

impl BadPageToken {
    /// The request field at fault.
    pub const FIELD: &'static str = "page_token";
}

impl std::fmt::Display for BadPageToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("is not a page token of this list with these filters")
    }
}

impl std::error::Error for BadPageToken {}

fn bad_token() -> BadPageToken {
    BadPageToken
}

impl ListKey {
    /// The key of `request` asked within `scope`.
    pub fn of<R: Paged>(scope: &str, request: &R) -> Self {
        let mut hash = Sha256::new();
        hash.update(R::KIND.as_bytes());
        hash.update([0]);
        hash.update(scope.as_bytes());
        hash.update([0]);
        hash.update(request.filters().encode_to_vec());
        let digest = URL_SAFE_NO_PAD.encode(&hash.finalize()[..9]);
        Self {
            kind: R::KIND,
            digest,
        }
    }

    /// The token for the page that starts after `cursor`.
    pub fn token(&self, cursor: &str) -> String {
        URL_SAFE_NO_PAD.encode(format!("{}:{}:{cursor}", self.kind, self.digest))
    }

    /// The cursor in `token`, or `None` for the first page. A token made by another list, by
    /// this list with other filters or in another scope, or by no one, is refused.
    pub fn cursor(&self, token: &str) -> Result<Option<String>, BadPageToken> {
        if token.is_empty() {
            return Ok(None);
        }
        let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad_token())?;
        let text = String::from_utf8(bytes).map_err(|_| bad_token())?;
        let cursor = text
            .strip_prefix(self.kind)
            .and_then(|rest| rest.strip_prefix(':'))
            .and_then(|rest| rest.strip_prefix(self.digest.as_str()))
            .and_then(|rest| rest.strip_prefix(':'))
            .ok_or_else(bad_token)?;
        Ok(Some(cursor.to_owned()))
    }

    /// The cursor in `token` read by `parse`, which refuses what this list never makes.
    pub fn cursor_as<T, E>(
        &self,
        token: &str,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Result<Option<T>, BadPageToken> {
        self.cursor(token)?
            .map(|c| parse(&c).map_err(|_| bad_token()))
            .transpose()
    }

    /// Cuts a page fetched with one extra row and returns the next page's token, which
    /// carries `key` of the page's last row: empty when this was the last page.
    pub fn next_page<T>(
        &self,
        rows: &mut Vec<T>,
        limit: u64,
        key: impl FnOnce(&T) -> String,
    ) -> String {
        if rows.len() as u64 <= limit {
            return String::new();
        }
        rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        rows.last()
            .map(|last| self.token(&key(last)))
            .unwrap_or_default()
    }
}

/// A token carrying `cursor` that no list honours as a page token; the change feed's cursors
/// are made this way.
pub fn encode_cursor(kind: &str, cursor: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{kind}:{cursor}"))
}

/// The cursor in a token made by [`encode_cursor`] for `kind`, or `None` when empty.
pub fn decode_cursor(kind: &str, token: &str) -> Option<Option<String>> {
    if token.is_empty() {
        return Some(None);
    }
    let bytes = URL_SAFE_NO_PAD.decode(token).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let cursor = text.strip_prefix(kind)?.strip_prefix(':')?;
    Some(Some(cursor.to_owned()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn cases(state: i32) -> pb::ListCasesRequest {
        pb::ListCasesRequest {
            state,
            ..Default::default()
        }
    }

    #[test]
    fn a_token_is_honoured_only_by_the_request_that_made_it() {
        let key = ListKey::of("D1", &cases(1));
        let token = key.token("42");
        assert_eq!(key.cursor(&token).ok().flatten().as_deref(), Some("42"));
        // The page size and the token itself are not filters.
        let mut next = cases(1);
        next.page_size = 7;
        next.page_token = token.clone();
        assert!(ListKey::of("D1", &next).cursor(&token).is_ok());
        // Other filters, another scope or another list refuse it.
        assert!(ListKey::of("D1", &cases(2)).cursor(&token).is_err());
        assert!(ListKey::of("D2", &cases(1)).cursor(&token).is_err());
        let payments = ListKey::of("D1", &pb::ListPaymentsRequest::default());
        assert!(payments.cursor(&token).is_err());
    }

    #[test]
    fn the_next_token_carries_the_last_rows_key() {
        let key = ListKey::of("D1", &pb::ListPaymentsRequest::default());
        let mut rows = vec![1, 2, 3];
        assert!(key.next_page(&mut rows, 3, u32::to_string).is_empty());
        assert_eq!(rows, [1, 2, 3]);
        let token = key.next_page(&mut rows, 2, u32::to_string);
        assert_eq!(rows, [1, 2]);
        assert_eq!(key.cursor(&token).ok().flatten().as_deref(), Some("2"));
        assert_eq!(
            key.cursor_as(&token, str::parse::<u32>).ok().flatten(),
            Some(2)
        );
        assert!(key.cursor_as(&key.token("x"), str::parse::<u32>).is_err());
    }
}
