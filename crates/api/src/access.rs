//! Checks every service shares: which case a caller may see, who reads a district's money
//! and reviews, and the request fields many calls carry (case ids, dates, years, texts).

use chrono::{DateTime, NaiveDate, Utc};
use relief_domain::{CaseId, DistrictId, Violation};
use relief_store::CaseRecord;

use crate::auth::{Caller, CaseVisibility};
use crate::error::{ApiError, ApiResult};

/// The date format of every date field.
pub(crate) const DATE: &str = "%Y-%m-%d";

pub(crate) fn parse_case_id(s: &str) -> ApiResult<CaseId> {
    CaseId::parse(s).map_err(|e| ApiError::invalid("case_id", e))
}

/// The case if the caller may see it; another unit's case is "not found".
pub(crate) fn visible(
    case: Option<CaseRecord>,
    visibility: &CaseVisibility,
) -> ApiResult<CaseRecord> {
    match (case, visibility) {
        (Some(c), CaseVisibility::District) => Ok(c),
        (Some(c), CaseVisibility::Unit(u)) if &c.applicant_unit_id == u => Ok(c),
        (Some(_), CaseVisibility::Unit(_)) | (None, _) => Err(ApiError::NotFound("case")),
    }
}

/// `expected_version` 0 means "do not check".
pub(crate) fn check_version(expected: i64, case: &CaseRecord) -> ApiResult<()> {
    if expected != 0 && expected != case.version {
        return Err(ApiError::Aborted(format!(
            "the case is at version {}, not {expected}: re-read it and retry",
            case.version
        )));
    }
    Ok(())
}

impl Caller {
    /// A reader of the whole district (the bureau, its auditors, sync clients): the district
    /// it reads. Anyone else is refused: "only the bureau and auditors {what}".
    pub(crate) fn district_reader(&self, what: &str) -> ApiResult<DistrictId> {
        let district = self.district()?.clone();
        if self.case_visibility()? != CaseVisibility::District {
            return Err(ApiError::denied(format!(
                "only the bureau and auditors {what}"
            )));
        }
        Ok(district)
    }
}

/// A required text field, trimmed, of at most `max` characters.
pub(crate) fn required_text(field: &str, value: &str, max: usize) -> ApiResult<String> {
    let v = value.trim();
    if v.is_empty() {
        return Err(ApiError::invalid(field, "is required"));
    }
    check_length(field, v, max)?;
    Ok(v.to_owned())
}

/// A text field of at most `max` characters.
pub(crate) fn check_length(field: &str, value: &str, max: usize) -> ApiResult<()> {
    if value.chars().count() > max {
        return Err(ApiError::invalid(
            field,
            format_args!("must be at most {max} characters"),
        ));
    }
    Ok(())
}

pub(crate) fn parse_date(field: &str, value: &str) -> ApiResult<NaiveDate> {
    NaiveDate::parse_from_str(value, DATE)
        .map_err(|_| ApiError::invalid(field, "must be a date YYYY-MM-DD"))
}

pub(crate) fn check_fiscal_year(year: i32) -> ApiResult<i32> {
    if (2000..=2100).contains(&year) {
        Ok(year)
    } else {
        Err(ApiError::invalid(
            "fiscal_year",
            "must be between 2000 and 2100",
        ))
    }
}

/// A required time field.
pub(crate) fn from_pb_time(
    field: &str,
    t: Option<&prost_types::Timestamp>,
) -> ApiResult<DateTime<Utc>> {
    let t = t.ok_or_else(|| ApiError::invalid(field, "is required"))?;
    u32::try_from(t.nanos)
        .ok()
        .and_then(|n| DateTime::from_timestamp(t.seconds, n))
        .ok_or_else(|| ApiError::invalid(field, "is not a valid time"))
}

/// Moves the field violations of `r` into `violations`, so that every unreadable field of a
/// request is reported at once; any other error stays an error.
pub(crate) fn gather<T>(r: ApiResult<T>, violations: &mut Vec<Violation>) -> ApiResult<Option<T>> {
    match r {
        Ok(t) => Ok(Some(t)),
        Err(ApiError::InvalidArgument(v)) => {
            violations.extend(v);
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// A new row id: a UUIDv7, ordered by creation.
pub(crate) fn new_id() -> String {
    CaseId::new_v7().to_string()
}
