//! The two questions every edge asks of a call before anything else, answered in one place for
//! the backends and the gateway alike: which bearer token does the `authorization` value carry,
//! and which district is the call about, given the verified scope and the district the caller
//! may name in [`DISTRICT_HEADER`].

use relief_domain::DistrictId;

use crate::Scope;

/// Metadata a city-scoped caller uses to name the district a call is about.
pub const DISTRICT_HEADER: &str = "x-relief-district";

/// Why a call's credentials or district could not be read. Every message is safe to show the
/// caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error("missing authorization bearer token")]
    MissingToken,
    #[error("authorization must be a bearer token")]
    NotBearer,
    /// The named district is not a 6-digit code.
    #[error("{DISTRICT_HEADER} must be a 6-digit district code")]
    BadDistrictHeader,
    /// A district-scoped token names another district.
    #[error("the token is for another district")]
    OtherDistrict,
}

/// The token in an `authorization` value (`Bearer <jwt>`, either case of the scheme).
pub fn bearer_token(authorization: Option<&[u8]>) -> Result<&str, CallError> {
    let value = authorization.ok_or(CallError::MissingToken)?;
    let value = std::str::from_utf8(value).map_err(|_| CallError::NotBearer)?;
    value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(CallError::NotBearer)
}

/// The district a call is about: a district-scoped token's own district (naming another one
/// is refused), or the district a city-scoped caller names, if any.
pub fn call_district(scope: &Scope, named: Option<&[u8]>) -> Result<Option<DistrictId>, CallError> {
    let named = named
        .map(|v| {
            std::str::from_utf8(v)
                .ok()
                .and_then(|s| DistrictId::parse(s).ok())
                .ok_or(CallError::BadDistrictHeader)
        })
        .transpose()?;
    match (scope, named) {
        (Scope::District(own), Some(named)) if own != &named => Err(CallError::OtherDistrict),
        (Scope::District(own), _) => Ok(Some(own.clone())),
        (Scope::City, named) => Ok(named),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn bearer_tokens() {
        assert_eq!(bearer_token(Some(b"Bearer abc")), Ok("abc"));
        assert_eq!(bearer_token(Some(b"bearer abc ")), Ok("abc"));
        assert_eq!(bearer_token(None), Err(CallError::MissingToken));
        assert_eq!(bearer_token(Some(b"Basic abc")), Err(CallError::NotBearer));
        assert_eq!(bearer_token(Some(b"Bearer ")), Err(CallError::NotBearer));
    }

    #[test]
    fn districts_of_calls() {
        let own = DistrictId::parse("430112").unwrap();
        let district = Scope::District(own.clone());
        assert_eq!(call_district(&district, None), Ok(Some(own.clone())));
        assert_eq!(
            call_district(&district, Some(b"430112")),
            Ok(Some(own.clone()))
        );
        assert_eq!(
            call_district(&district, Some(b"430102")),
            Err(CallError::OtherDistrict)
        );
        assert_eq!(call_district(&Scope::City, None), Ok(None));
        assert_eq!(call_district(&Scope::City, Some(b"430112")), Ok(Some(own)));
        assert_eq!(
            call_district(&Scope::City, Some(b"43011")),
            Err(CallError::BadDistrictHeader)
        );
    }
}
