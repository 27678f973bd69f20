//! Money as an exact integer count of fen (分). One yuan is [`FEN_PER_YUAN`] fen; nothing in
//! relief uses floating point for money, and every sum is checked so an overflow is an error,
//! never a wrap.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The scale, written down once: 1 yuan (元) = 100 fen (分).
pub const FEN_PER_YUAN: i64 = 100;

/// A non-negative amount of money in fen.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(try_from = "i64", into = "i64")]
pub struct Money(i64);

/// Why an amount is not acceptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("amount must not be negative")]
    Negative,
    #[error("amount is out of range")]
    Overflow,
}

impl Money {
    pub const ZERO: Money = Money(0);

    pub fn from_fen(fen: i64) -> Result<Self, Error> {
        if fen < 0 {
            Err(Error::Negative)
        } else {
            Ok(Self(fen))
        }
    }

    pub fn from_yuan(yuan: i64) -> Result<Self, Error> {
        yuan.checked_mul(FEN_PER_YUAN)
            .ok_or(Error::Overflow)
            .and_then(Self::from_fen)
    }

    pub const fn fen(self) -> i64 {
        self.0
    }

    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }

    pub fn checked_add(self, other: Money) -> Result<Money, Error> {
        self.0
            .checked_add(other.0)
            .map(Money)
            .ok_or(Error::Overflow)
    }

    /// `self - other`, or `None` when `other` is larger: money never goes negative.
    pub fn checked_sub(self, other: Money) -> Option<Money> {
        self.0.checked_sub(other.0).filter(|v| *v >= 0).map(Money)
    }

    /// Sums amounts, failing on overflow.
    pub fn sum<I: IntoIterator<Item = Money>>(items: I) -> Result<Money, Error> {
        items
            .into_iter()
            .try_fold(Money::ZERO, |acc, m| acc.checked_add(m))
    }

    /// The amount in yuan as the bureau writes it: `1,280,000.00`.
    pub fn to_yuan_string(self) -> String {
        let yuan = self.0 / FEN_PER_YUAN;
        let fen = self.0 % FEN_PER_YUAN;
        let digits = yuan.to_string();
        let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
        for (i, ch) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                grouped.push(',');
            }
            grouped.push(ch);
        }
        format!("{grouped}.{fen:02}")
    }
}

impl TryFrom<i64> for Money {
    type Error = Error;
    fn try_from(fen: i64) -> Result<Self, Error> {
        Self::from_fen(fen)
    }
}

impl From<Money> for i64 {
    fn from(m: Money) -> i64 {
        m.0
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} yuan", self.to_yuan_string())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn constructors() {
        assert_eq!(Money::from_fen(-1), Err(Error::Negative));
        assert_eq!(Money::from_yuan(50_000).unwrap().fen(), 5_000_000);
        assert_eq!(Money::from_yuan(i64::MAX), Err(Error::Overflow));
        assert_eq!(
            Money::from_fen(i64::MAX)
                .unwrap()
                .checked_add(Money::from_fen(1).unwrap()),
            Err(Error::Overflow)
        );
    }

    #[test]
    fn yuan_strings() {
        let check =
            |fen: i64, s: &str| assert_eq!(Money::from_fen(fen).unwrap().to_yuan_string(), s);
        check(0, "0.00");
        check(5, "0.05");
        check(100, "1.00");
        check(123_456, "1,234.56");
        check(128_000_000, "1,280,000.00");
        check(100_000_000, "1,000,000.00");
    }

    proptest! {
        #[test]
        fn add_then_sub_round_trips(a in 0i64..i64::MAX / 2, b in 0i64..i64::MAX / 2) {
            let a = Money::from_fen(a).unwrap();
            let b = Money::from_fen(b).unwrap();
            let s = a.checked_add(b).unwrap();
            prop_assert_eq!(s.checked_sub(b), Some(a));
            prop_assert!(s >= a && s >= b);
        }

        #[test]
        fn sub_never_negative(a in 0i64..1_000_000_000, b in 0i64..1_000_000_000) {
            let r = Money::from_fen(a).unwrap().checked_sub(Money::from_fen(b).unwrap());
            prop_assert_eq!(r.is_some(), a >= b);
        }

        #[test]
        fn sum_matches_integer_sum(v in proptest::collection::vec(0i64..10_000_000_000, 0..50)) {
            let total = Money::sum(v.iter().map(|f| Money::from_fen(*f).unwrap())).unwrap();
            prop_assert_eq!(total.fen(), v.iter().sum::<i64>());
        }
    }
}
