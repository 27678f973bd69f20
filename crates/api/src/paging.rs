//! Page sizes, and the page-token codec ([`relief_proto::paging`]) as the handlers use it:
//! a token that is not this list's is INVALID_ARGUMENT on `page_token`.
//!
//! Every list pages by key. A token carries the sort key of the last row of its page, written
//! here, and the store reads the rows strictly after it in the list's order. A key that does
//! not parse is refused like a foreign token.

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use relief_domain::CaseId;
use relief_proto::paging::BadPageToken;
pub use relief_proto::paging::{ListKey, Paged, decode_cursor, encode_cursor};

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

/// A key that is not one this service writes.
#[derive(Debug)]
pub(crate) struct BadKey;

/// The key of a row in a list ordered by a time and then the row's id: the time to the
/// nanosecond, so that it reads back as exactly the stored value, and the id.
pub(crate) fn time_key(at: DateTime<Utc>, id: &str) -> String {
    format!("{}/{id}", at.to_rfc3339_opts(SecondsFormat::Nanos, true))
}

/// The time and row id of a [`time_key`]. Row ids are UUIDs.
pub(crate) fn parse_time_key(key: &str) -> Result<(DateTime<Utc>, String), BadKey> {
    let (at, id) = key.split_once('/').ok_or(BadKey)?;
    let at = DateTime::parse_from_rfc3339(at).map_err(|_| BadKey)?;
    Ok((at.with_timezone(&Utc), row_id(id)?))
}

/// The time and case id of a [`time_key`] of a case list.
pub(crate) fn parse_case_time_key(key: &str) -> Result<(DateTime<Utc>, CaseId), BadKey> {
    let (at, id) = parse_time_key(key)?;
    Ok((at, CaseId::parse(&id).map_err(|_| BadKey)?))
}

/// The key of a row in a list ordered by a date and then the row's id.
pub(crate) fn date_key(on: NaiveDate, id: &str) -> String {
    format!("{}/{id}", on.format("%Y-%m-%d"))
}

/// The date and row id of a [`date_key`].
pub(crate) fn parse_date_key(key: &str) -> Result<(NaiveDate, String), BadKey> {
    let (on, id) = key.split_once('/').ok_or(BadKey)?;
    let on = NaiveDate::parse_from_str(on, "%Y-%m-%d").map_err(|_| BadKey)?;
    Ok((on, row_id(id)?))
}

/// A row id as the service makes them (a UUID, `access::new_id`).
fn row_id(id: &str) -> Result<String, BadKey> {
    CaseId::parse(id).map_err(|_| BadKey)?;
    Ok(id.to_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use chrono::TimeZone as _;

    use super::*;

    #[test]
    fn keys_read_back_as_written() {
        let id = CaseId::new_v7();
        let at = Utc.timestamp_opt(1_650_000_000, 123_456_789).unwrap();
        let key = time_key(at, &id.to_string());
        assert_eq!(parse_case_time_key(&key).unwrap(), (at, id));
        let on = NaiveDate::from_ymd_opt(2022, 9, 30).unwrap();
        let key = date_key(on, &id.to_string());
        assert_eq!(parse_date_key(&key).unwrap(), (on, id.to_string()));
        for bad in [
            "",
            "42",
            "2022-09-30",
            "2022-09-30/x",
            "x/0190a0b0-0000-7000-8000-000000000000",
        ] {
            assert!(parse_time_key(bad).is_err(), "{bad}");
            assert!(parse_date_key(bad).is_err(), "{bad}");
        }
    }
}
