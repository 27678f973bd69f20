//! Resident identity numbers (公民身份号码, GB 11643-1999): 17 digits and a check character.
//! A recipient is identified by this number, so it is checked on the way in and masked on the
//! way out for roles that do not need it.

use std::fmt;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

/// Why a string is not a resident ID number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("must be 18 characters: 17 digits and a check digit or X")]
    Format,
    #[error("birth date in the number is not a real date")]
    BirthDate,
    #[error("check digit does not match (GB 11643)")]
    CheckDigit,
}

/// A resident ID number that passed the GB 11643 check. Upper-case `X` is normalised.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ResidentId(String);

const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const CHECK_CHARS: [u8; 11] = *b"10X98765432";

impl ResidentId {
    pub fn parse(s: &str) -> Result<Self, Error> {
        let s = s.trim().to_ascii_uppercase();
        let bytes = s.as_bytes();
        if bytes.len() != 18
            || !bytes[..17].iter().all(u8::is_ascii_digit)
            || !(bytes[17].is_ascii_digit() || bytes[17] == b'X')
        {
            return Err(Error::Format);
        }
        let birth = &s[6..14];
        if NaiveDate::parse_from_str(birth, "%Y%m%d").is_err() {
            return Err(Error::BirthDate);
        }
        let sum: u32 = bytes[..17]
            .iter()
            .zip(WEIGHTS)
            .map(|(b, w)| u32::from(b - b'0') * w)
            .sum();
        let expected = CHECK_CHARS[(sum % 11) as usize];
        if bytes[17] != expected {
            return Err(Error::CheckDigit);
        }
        Ok(Self(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The masked form ([`crate::privacy::mask`]): region code and last four kept, e.g.
    /// `430122********1234`.
    pub fn masked(&self) -> String {
        crate::privacy::mask(crate::privacy::Field::ResidentId, &self.0)
    }
}

impl TryFrom<String> for ResidentId {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        Self::parse(&s)
    }
}

impl From<ResidentId> for String {
    fn from(id: ResidentId) -> String {
        id.0
    }
}

/// Debug output never prints the full number: logs are read by more people than the data.
impl fmt::Debug for ResidentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ResidentId({})", self.masked())
    }
}

/// Computes the check character for 17 leading digits; used to build valid numbers for
/// demos and tests.
pub fn check_char(first17: &str) -> Option<char> {
    let bytes = first17.as_bytes();
    if bytes.len() != 17 || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let sum: u32 = bytes
        .iter()
        .zip(WEIGHTS)
        .map(|(b, w)| u32::from(b - b'0') * w)
        .sum();
    Some(char::from(CHECK_CHARS[(sum % 11) as usize]))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn table() {
        let check = |s: &str, expected: Result<(), Error>| {
            assert_eq!(ResidentId::parse(s).map(|_| ()), expected, "{s}");
        };
        // The standard's own worked example.
        check("11010519491231002X", Ok(()));
        check("11010519491231002x", Ok(()));
        check("110105194912310021", Err(Error::CheckDigit));
        check("11010519491331002X", Err(Error::BirthDate));
        check("1101051949123100", Err(Error::Format));
        check("11010519491231002Y", Err(Error::Format));
        check("", Err(Error::Format));
        let n = format!(
            "43012219800101123{}",
            check_char("43012219800101123").unwrap()
        );
        check(&n, Ok(()));
    }

    #[test]
    fn masking() {
        let id = ResidentId::parse("11010519491231002X").unwrap();
        assert_eq!(id.masked(), "110105********002X");
        assert!(!format!("{id:?}").contains("19491231"));
    }
}
