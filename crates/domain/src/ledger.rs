//! The fund ledger (资金台账): every movement of a district's money for a fiscal year is an
//! entry, and balances are only ever derived from entries. Here: what each kind of entry does
//! to the balances, and the checks that keep the books whole.

use serde::{Deserialize, Serialize};

use crate::approval::BudgetBalance;
use crate::money::Money;

/// A movement of the fund.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// The budget is raised (区财政投入).
    Allocate,
    /// The budget is lowered.
    Deallocate,
    /// Final approval sets an amount aside for a case.
    Reserve,
    /// A withdrawn approval gives its amount back.
    Release,
    /// A payment moves a case's amount from reserved to paid.
    Pay,
    /// A payment returned by the bank moves it back to reserved.
    Reverse,
}

impl EntryKind {
    pub const ALL: [EntryKind; 6] = [
        EntryKind::Allocate,
        EntryKind::Deallocate,
        EntryKind::Reserve,
        EntryKind::Release,
        EntryKind::Pay,
        EntryKind::Reverse,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            EntryKind::Allocate => "allocate",
            EntryKind::Deallocate => "deallocate",
            EntryKind::Reserve => "reserve",
            EntryKind::Release => "release",
            EntryKind::Pay => "pay",
            EntryKind::Reverse => "reverse",
        }
    }

    pub fn parse(s: &str) -> Option<EntryKind> {
        EntryKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// The books do not add up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    #[error("a {0} entry takes a balance below zero")]
    Negative(&'static str),
    #[error("reserved and paid ({used}) exceed the allocation ({allocated})")]
    OverAllocated { used: Money, allocated: Money },
    #[error("a balance is out of range")]
    Overflow,
}

impl BudgetBalance {
    /// The balances after one more entry.
    pub fn apply(mut self, kind: EntryKind, amount: Money) -> Result<BudgetBalance, LedgerError> {
        let add = |a: Money, b: Money| a.checked_add(b).map_err(|_| LedgerError::Overflow);
        let sub = |a: Money, b: Money| a.checked_sub(b).ok_or(LedgerError::Negative(kind.as_str()));
        match kind {
            EntryKind::Allocate => self.allocated = add(self.allocated, amount)?,
            EntryKind::Deallocate => self.allocated = sub(self.allocated, amount)?,
            EntryKind::Reserve => self.reserved = add(self.reserved, amount)?,
            EntryKind::Release => self.reserved = sub(self.reserved, amount)?,
            EntryKind::Pay => {
                self.reserved = sub(self.reserved, amount)?;
                self.paid = add(self.paid, amount)?;
            }
            EntryKind::Reverse => {
                self.paid = sub(self.paid, amount)?;
                self.reserved = add(self.reserved, amount)?;
            }
        }
        Ok(self)
    }

    /// Folds entries into balances, failing at the first one that breaks the books.
    pub fn from_entries<I: IntoIterator<Item = (EntryKind, Money)>>(
        entries: I,
    ) -> Result<BudgetBalance, LedgerError> {
        entries
            .into_iter()
            .try_fold(BudgetBalance::default(), |b, (k, a)| b.apply(k, a))
    }

    /// Balances from the total of each kind of entry (what the database sums). Unlike
    /// folding entries one by one, the order of the totals does not matter: two payments
    /// with a reversal between them sum to more paid than ever stood at once.
    pub fn from_sums<I: IntoIterator<Item = (EntryKind, Money)>>(
        sums: I,
    ) -> Result<BudgetBalance, LedgerError> {
        let (mut allocated, mut reserved, mut paid) = (0i128, 0i128, 0i128);
        for (kind, amount) in sums {
            let a = i128::from(amount.fen());
            match kind {
                EntryKind::Allocate => allocated += a,
                EntryKind::Deallocate => allocated -= a,
                EntryKind::Reserve => reserved += a,
                EntryKind::Release => reserved -= a,
                EntryKind::Pay => {
                    reserved -= a;
                    paid += a;
                }
                EntryKind::Reverse => {
                    paid -= a;
                    reserved += a;
                }
            }
        }
        let money = |v: i128, what: &'static str| {
            i64::try_from(v)
                .map_err(|_| LedgerError::Overflow)
                .and_then(|f| Money::from_fen(f).map_err(|_| LedgerError::Negative(what)))
        };
        Ok(BudgetBalance {
            allocated: money(allocated, "deallocate")?,
            reserved: money(reserved, "release or pay")?,
            paid: money(paid, "reverse")?,
        })
    }

    /// The invariant: reserved + paid ≤ allocated.
    pub fn check(&self) -> Result<(), LedgerError> {
        let used = self
            .reserved
            .checked_add(self.paid)
            .map_err(|_| LedgerError::Overflow)?;
        if used > self.allocated {
            return Err(LedgerError::OverAllocated {
                used,
                allocated: self.allocated,
            });
        }
        Ok(())
    }

    /// Execution rate (预算执行率) in basis points of the allocation: paid / allocated.
    pub fn execution_rate_bp(&self) -> u32 {
        if self.allocated.is_zero() {
            return 0;
        }
        let bp = i128::from(self.paid.fen()) * 10_000 / i128::from(self.allocated.fen());
        u32::try_from(bp).unwrap_or(u32::MAX)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn m(fen: i64) -> Money {
        Money::from_fen(fen).unwrap()
    }

    #[test]
    fn entries_move_the_right_balances() {
        let b = BudgetBalance::from_entries([
            (EntryKind::Allocate, m(1000)),
            (EntryKind::Reserve, m(300)),
            (EntryKind::Reserve, m(200)),
            (EntryKind::Pay, m(300)),
            (EntryKind::Release, m(200)),
            (EntryKind::Reserve, m(100)),
        ])
        .unwrap();
        assert_eq!((b.allocated, b.reserved, b.paid), (m(1000), m(100), m(300)));
        assert_eq!(b.available(), m(600));
        assert_eq!(b.execution_rate_bp(), 3000);
        // Totals give the same balances whatever order they come in.
        let totals = [
            (EntryKind::Pay, m(600)),
            (EntryKind::Allocate, m(1000)),
            (EntryKind::Reverse, m(300)),
            (EntryKind::Reserve, m(600)),
        ];
        let from_sums = BudgetBalance::from_sums(totals).unwrap();
        assert_eq!(
            (from_sums.allocated, from_sums.reserved, from_sums.paid),
            (m(1000), m(300), m(300))
        );
        assert_eq!(
            BudgetBalance::from_sums([(EntryKind::Pay, m(1))]),
            Err(LedgerError::Negative("release or pay"))
        );
        let back = b.apply(EntryKind::Reverse, m(300)).unwrap();
        assert_eq!((back.reserved, back.paid), (m(400), m(0)));
        assert_eq!(
            b.apply(EntryKind::Pay, m(101)),
            Err(LedgerError::Negative("pay"))
        );
        assert_eq!(
            b.apply(EntryKind::Deallocate, m(1001)),
            Err(LedgerError::Negative("deallocate"))
        );
        let over = b.apply(EntryKind::Deallocate, m(700)).unwrap();
        assert_eq!(
            over.check(),
            Err(LedgerError::OverAllocated {
                used: m(400),
                allocated: m(300)
            })
        );
    }

    proptest! {
        /// Any sequence the service would write (reserve only what fits, pay or release only
        /// what is reserved) keeps reserved + paid within the allocation.
        #[test]
        fn guarded_sequences_keep_the_invariant(ops in proptest::collection::vec((0u8..4, 1i64..500_000), 0..80)) {
            let mut b = BudgetBalance::default().apply(EntryKind::Allocate, m(5_000_000)).unwrap();
            let mut open: Vec<Money> = Vec::new();
            for (op, fen) in ops {
                let a = m(fen);
                match op {
                    0 if b.check_reserve(a).is_ok() => { b = b.apply(EntryKind::Reserve, a).unwrap(); open.push(a); }
                    1 => if let Some(x) = open.pop() { b = b.apply(EntryKind::Pay, x).unwrap(); },
                    2 => if let Some(x) = open.pop() { b = b.apply(EntryKind::Release, x).unwrap(); },
                    _ => {}
                }
                prop_assert!(b.check().is_ok());
                prop_assert_eq!(b.reserved, Money::sum(open.iter().copied()).unwrap());
            }
        }
    }
}
