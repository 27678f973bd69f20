//! Identifiers as newtypes with private fields: a value of these types has passed its
//! constructor's checks, so nothing downstream re-validates or mixes one id up with another.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("must not be empty")]
    Empty,
    #[error("must be a 6-digit administrative division code (GB/T 2260), e.g. 430112")]
    NotDivisionCode,
    #[error("must be at most {max} characters of letters, digits, '-', '_' or '.'")]
    BadToken { max: usize },
    #[error("must be a UUID")]
    NotUuid,
}

/// A district (区/县), the tenant: its 6-digit administrative division code, e.g. `430112`
/// for Wangcheng.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DistrictId(String);

impl DistrictId {
    pub fn parse(s: &str) -> Result<Self, Error> {
        if s.is_empty() {
            return Err(Error::Empty);
        }
        if s.len() != 6 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::NotDivisionCode);
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for DistrictId {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        Self::parse(&s)
    }
}

impl From<DistrictId> for String {
    fn from(id: DistrictId) -> String {
        id.0
    }
}

impl fmt::Display for DistrictId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks a short machine token used for unit ids, step ids, category codes and subjects.
fn check_token(s: &str, max: usize) -> Result<(), Error> {
    if s.is_empty() {
        return Err(Error::Empty);
    }
    let ok = s.len() <= max
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Error::BadToken { max })
    }
}

macro_rules! token_id {
    ($(#[$doc:meta])* $name:ident, $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The longest accepted value, in characters.
            pub const MAX_LEN: usize = $max;

            pub fn parse(s: &str) -> Result<Self, Error> {
                check_token(s, $max)?;
                Ok(Self(s.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = Error;
            fn try_from(s: String) -> Result<Self, Error> {
                Self::parse(&s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

token_id!(
    /// An applicant unit (实施救助单位): a street, township or district department.
    UnitId,
    64
);
token_id!(
    /// A person as the identity provider names them (the token's `sub`).
    Subject,
    128
);
token_id!(
    /// A step of an approval chain, unique within the chain.
    StepId,
    64
);
token_id!(
    /// An eligibility category code, unique within a district's rules.
    CategoryCode,
    64
);

/// A relief case. UUIDv7, so ids sort by creation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CaseId(Uuid);

impl CaseId {
    pub fn new_v7() -> Self {
        Self(Uuid::now_v7())
    }

    pub fn parse(s: &str) -> Result<Self, Error> {
        if s.is_empty() {
            return Err(Error::Empty);
        }
        Uuid::try_parse(s).map(Self).map_err(|_| Error::NotUuid)
    }

    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl fmt::Display for CaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn district_ids() {
        let check = |s: &str, ok: bool| assert_eq!(DistrictId::parse(s).is_ok(), ok, "{s}");
        check("430112", true);
        check("", false);
        check("43011", false);
        check("4301120", false);
        check("43011a", false);
        check("４３０１１２", false);
    }

    #[test]
    fn tokens() {
        assert!(UnitId::parse("gaotang-ling.street_1").is_ok());
        assert_eq!(UnitId::parse(""), Err(Error::Empty));
        assert_eq!(UnitId::parse("a b"), Err(Error::BadToken { max: 64 }));
        assert!(UnitId::parse(&"x".repeat(65)).is_err());
        assert!(CaseId::parse("not-a-uuid").is_err());
        let id = CaseId::new_v7();
        assert_eq!(CaseId::parse(&id.to_string()), Ok(id));
    }
}
