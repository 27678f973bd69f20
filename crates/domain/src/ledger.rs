//! The fund ledger (资金台账): every movement of a district's money for a fiscal year is an
//! entry, and balances are only ever derived from entries. Here: what each kind of entry does
//! to the balances, and the checks that keep the books whole, including [`verify`], which
//! accounts for every entry of a year against its cases and its audit events.

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::approval::BudgetBalance;
use crate::case::StateKind;
use crate::ids::CaseId;
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
    /// A withdrawn or cancelled approval gives its amount back.
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

    /// Whether an entry of this kind moves one case's money (and so must name the case),
    /// rather than the year's allocation (and so must name none).
    pub const fn needs_case(self) -> bool {
        match self {
            EntryKind::Allocate | EntryKind::Deallocate => false,
            EntryKind::Reserve | EntryKind::Release | EntryKind::Pay | EntryKind::Reverse => true,
        }
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

/// The action of the audit event each ledger entry gets, and its resource type.
pub const ENTRY_EVENT_ACTION: &str = "ledger.entry_added";
pub const ENTRY_RESOURCE: &str = "ledger_entry";

/// A ledger entry as its audit event records it (the event's `after` state), written in the
/// transaction that writes the entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedEntry {
    pub entry_id: i64,
    pub fiscal_year: i32,
    pub case_id: Option<CaseId>,
    pub kind: EntryKind,
    pub amount_fen: i64,
}

/// What the audit chain holds about one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryAudit {
    /// The entry was written before entries had audit events of their own.
    Predates,
    /// The states of the entry's audit events (none, one, or more), `None` where a state is
    /// not readable.
    Events(Vec<Option<RecordedEntry>>),
}

/// One entry as verification sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryView {
    pub id: i64,
    pub fiscal_year: i32,
    pub kind: EntryKind,
    pub amount: Money,
    pub case_id: Option<CaseId>,
    /// Written by an import: history recorded here, not money moved here.
    pub imported: bool,
    pub audit: EntryAudit,
}

/// One case of the year as verification sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaseView {
    pub id: CaseId,
    pub state: StateKind,
    pub approved: Option<Money>,
}

/// Something in a year's books that does not add up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LedgerProblem {
    /// Applying the entry, in order, breaks a balance.
    Entry {
        entry: i64,
        error: LedgerError,
    },
    /// The year as a whole breaks the invariant.
    Books(LedgerError),
    AllocationDiffers {
        ledger: Money,
        rules: Money,
    },
    /// A reserve, release, pay or reverse entry that names no case.
    NoCase {
        entry: i64,
        kind: EntryKind,
    },
    /// An entry naming a case that is not one of the year's cases.
    UnknownCase {
        entry: i64,
        case: CaseId,
    },
    /// An allocate or deallocate entry naming a case.
    AllocatesAgainstCase {
        entry: i64,
        case: CaseId,
    },
    /// A case's own sums run out of range.
    CaseOverflow {
        case: CaseId,
    },
    CaseMismatch {
        case: CaseId,
        state: StateKind,
        approved: Money,
        reserved_fen: i64,
        paid_fen: i64,
    },
    /// The entry has no audit event.
    NotAudited {
        entry: i64,
    },
    /// The entry has more than one audit event.
    AuditedTwice {
        entry: i64,
        events: usize,
    },
    /// The entry differs from what its audit event recorded.
    DiffersFromAudit {
        entry: i64,
    },
}

impl fmt::Display for LedgerProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LedgerProblem::Entry { entry, error } => write!(f, "entry {entry}: {error}"),
            LedgerProblem::Books(e) => write!(f, "{e}"),
            LedgerProblem::AllocationDiffers { ledger, rules } => {
                write!(
                    f,
                    "allocated {ledger} in the ledger but {rules} in the rules"
                )
            }
            LedgerProblem::NoCase { entry, kind } => {
                write!(f, "entry {entry} ({}) names no case", kind.as_str())
            }
            LedgerProblem::UnknownCase { entry, case } => write!(
                f,
                "entry {entry} names case {case}, which is not a case of this district and year"
            ),
            LedgerProblem::AllocatesAgainstCase { entry, case } => {
                write!(f, "entry {entry} allocates against case {case}")
            }
            LedgerProblem::CaseOverflow { case } => {
                write!(
                    f,
                    "the entries of case {case} add up to more than can be counted"
                )
            }
            LedgerProblem::CaseMismatch {
                case,
                state,
                approved,
                reserved_fen,
                paid_fen,
            } => write!(
                f,
                "case {case} is {state} with {approved} approved but the ledger holds {reserved_fen} fen reserved and {paid_fen} fen paid"
            ),
            LedgerProblem::NotAudited { entry } => {
                write!(f, "entry {entry} has no audit event")
            }
            LedgerProblem::AuditedTwice { entry, events } => {
                write!(f, "entry {entry} has {events} audit events")
            }
            LedgerProblem::DiffersFromAudit { entry } => {
                write!(f, "entry {entry} differs from its audit event")
            }
        }
    }
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerReport {
    /// The balances from the entries, in order (an entry that breaks a balance is left out).
    pub balance: BudgetBalance,
    /// Of the paid amount, the part imports recorded ([`imported_paid`]).
    pub imported_paid: Money,
    pub problems: Vec<LedgerProblem>,
}

/// Of the paid amount, the part imports recorded: the sum of their pay entries (saturating,
/// as the store's sum of the same rows).
pub fn imported_paid(entries: &[EntryView]) -> Money {
    let fen = entries
        .iter()
        .filter(|e| e.imported && e.kind == EntryKind::Pay)
        .fold(0i64, |sum, e| sum.saturating_add(e.amount.fen()));
    Money::from_fen(fen).unwrap_or(Money::ZERO)
}

/// Accounts for every entry of one fiscal year: the balances never go below zero and stay
/// within the allocation, the allocation is the rules' (`rules_allocated`), every case entry
/// names a case of the year and every allocation names none, each case holds what its state
/// says (approved: its approved amount reserved; paid: paid; otherwise nothing), and every
/// entry is what its audit event recorded. One pass over the entries, grouped by case.
pub fn verify(
    fiscal_year: i32,
    entries: &[EntryView],
    cases: &[CaseView],
    rules_allocated: Money,
) -> LedgerReport {
    let mut problems = Vec::new();
    let mut balance = BudgetBalance::default();
    // (reserved, paid) per case, or None once a sum ran out of range.
    let mut held: HashMap<CaseId, Option<(i64, i64)>> =
        cases.iter().map(|c| (c.id, Some((0, 0)))).collect();
    for e in entries {
        match balance.apply(e.kind, e.amount) {
            Ok(b) => balance = b,
            Err(error) => problems.push(LedgerProblem::Entry { entry: e.id, error }),
        }
        match (e.kind.needs_case(), e.case_id) {
            (true, None) => problems.push(LedgerProblem::NoCase {
                entry: e.id,
                kind: e.kind,
            }),
            (false, Some(case)) => {
                problems.push(LedgerProblem::AllocatesAgainstCase { entry: e.id, case })
            }
            (false, None) => {}
            (true, Some(case)) => match held.get_mut(&case) {
                None => problems.push(LedgerProblem::UnknownCase { entry: e.id, case }),
                Some(slot) => {
                    if let Some(sums) = *slot {
                        *slot = move_case_money(sums, e.kind, e.amount.fen());
                        if slot.is_none() {
                            problems.push(LedgerProblem::CaseOverflow { case });
                        }
                    }
                }
            },
        }
        check_audit(fiscal_year, e, &mut problems);
    }
    if let Err(e) = balance.check() {
        problems.push(LedgerProblem::Books(e));
    }
    if rules_allocated != balance.allocated {
        problems.push(LedgerProblem::AllocationDiffers {
            ledger: balance.allocated,
            rules: rules_allocated,
        });
    }
    for c in cases {
        let Some(Some((reserved_fen, paid_fen))) = held.get(&c.id).copied() else {
            continue;
        };
        let approved = c.approved.unwrap_or_default();
        let want = match c.state {
            StateKind::Approved => (approved.fen(), 0),
            StateKind::Paid => (0, approved.fen()),
            StateKind::Draft
            | StateKind::InReview
            | StateKind::Returned
            | StateKind::Withdrawn
            | StateKind::Rejected
            | StateKind::Cancelled => (0, 0),
        };
        if (reserved_fen, paid_fen) != want {
            problems.push(LedgerProblem::CaseMismatch {
                case: c.id,
                state: c.state,
                approved,
                reserved_fen,
                paid_fen,
            });
        }
    }
    LedgerReport {
        balance,
        imported_paid: imported_paid(entries),
        problems,
    }
}

/// A case's (reserved, paid) after one more entry; `None` when a sum runs out of range.
fn move_case_money((reserved, paid): (i64, i64), kind: EntryKind, fen: i64) -> Option<(i64, i64)> {
    match kind {
        EntryKind::Reserve => Some((reserved.checked_add(fen)?, paid)),
        EntryKind::Release => Some((reserved.checked_sub(fen)?, paid)),
        EntryKind::Pay => Some((reserved.checked_sub(fen)?, paid.checked_add(fen)?)),
        EntryKind::Reverse => Some((reserved.checked_add(fen)?, paid.checked_sub(fen)?)),
        EntryKind::Allocate | EntryKind::Deallocate => Some((reserved, paid)),
    }
}

fn check_audit(fiscal_year: i32, e: &EntryView, problems: &mut Vec<LedgerProblem>) {
    let EntryAudit::Events(events) = &e.audit else {
        return;
    };
    match events.as_slice() {
        [] => problems.push(LedgerProblem::NotAudited { entry: e.id }),
        [recorded] => {
            let matches = recorded.as_ref().is_some_and(|r| {
                *r == RecordedEntry {
                    entry_id: e.id,
                    fiscal_year,
                    case_id: e.case_id,
                    kind: e.kind,
                    amount_fen: e.amount.fen(),
                }
            });
            if !matches || e.fiscal_year != fiscal_year {
                problems.push(LedgerProblem::DiffersFromAudit { entry: e.id });
            }
        }
        many => problems.push(LedgerProblem::AuditedTwice {
            entry: e.id,
            events: many.len(),
        }),
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

    mod verify_tests {
        #![allow(clippy::unwrap_used)]
        use super::super::*;
        use proptest::prelude::*;

        const YEAR: i32 = 2022;

        fn m(fen: i64) -> Money {
            Money::from_fen(fen).unwrap()
        }

        fn case(n: u128) -> CaseId {
            CaseId::parse(&uuid::Uuid::from_u128(n).to_string()).unwrap()
        }

        fn audited(id: i64, kind: EntryKind, fen: i64, c: Option<CaseId>) -> EntryView {
            EntryView {
                id,
                fiscal_year: YEAR,
                kind,
                amount: m(fen),
                case_id: c,
                imported: false,
                audit: EntryAudit::Events(vec![Some(RecordedEntry {
                    entry_id: id,
                    fiscal_year: YEAR,
                    case_id: c,
                    kind,
                    amount_fen: fen,
                })]),
            }
        }

        fn problems(entries: &[EntryView], cases: &[CaseView]) -> Vec<String> {
            verify(YEAR, entries, cases, m(1_000))
                .problems
                .iter()
                .map(ToString::to_string)
                .collect()
        }

        #[test]
        fn every_entry_is_accounted_for() {
            let a = case(1);
            let approved = CaseView {
                id: a,
                state: StateKind::Approved,
                approved: Some(m(300)),
            };
            let paid = CaseView {
                id: case(2),
                state: StateKind::Paid,
                approved: Some(m(200)),
            };
            let books = vec![
                audited(1, EntryKind::Allocate, 1_000, None),
                audited(2, EntryKind::Reserve, 300, Some(a)),
                audited(3, EntryKind::Reserve, 200, Some(case(2))),
                audited(4, EntryKind::Pay, 200, Some(case(2))),
            ];
            let with = |extra: EntryView| {
                let mut v = books.clone();
                v.push(extra);
                v
            };
            let edit = |i: usize, f: &dyn Fn(&mut EntryView)| {
                let mut v = books.clone();
                f(&mut v[i]);
                v
            };
            let cases = [approved, paid];
            let table: Vec<(&str, Vec<EntryView>, Vec<String>)> = vec![
                ("whole books", books.clone(), vec![]),
                (
                    "a reserve naming no case",
                    with(audited(5, EntryKind::Reserve, 100, None)),
                    vec!["entry 5 (reserve) names no case".into()],
                ),
                (
                    "a pay naming an unknown case",
                    with(audited(5, EntryKind::Pay, 0, Some(case(9)))),
                    vec![format!(
                        "entry 5 names case {}, which is not a case of this district and year",
                        case(9)
                    )],
                ),
                (
                    "an allocation naming a case",
                    with(audited(5, EntryKind::Allocate, 0, Some(a))),
                    vec![format!("entry 5 allocates against case {a}")],
                ),
                (
                    "an entry without its event",
                    edit(1, &|e| e.audit = EntryAudit::Events(vec![])),
                    vec!["entry 2 has no audit event".into()],
                ),
                (
                    "an entry written before entries were audited",
                    edit(1, &|e| e.audit = EntryAudit::Predates),
                    vec![],
                ),
                (
                    "an entry edited after its event",
                    edit(1, &|e| e.amount = m(299)),
                    vec![
                        "entry 2 differs from its audit event".into(),
                        format!(
                            "case {a} is approved with 3.00 yuan approved but the ledger holds 299 fen reserved and 0 fen paid"
                        ),
                    ],
                ),
                (
                    "an unreadable event",
                    edit(1, &|e| e.audit = EntryAudit::Events(vec![None])),
                    vec!["entry 2 differs from its audit event".into()],
                ),
                (
                    "two events",
                    edit(1, &|e| {
                        let EntryAudit::Events(v) = &mut e.audit else {
                            unreachable!()
                        };
                        v.push(v[0].clone());
                    }),
                    vec!["entry 2 has 2 audit events".into()],
                ),
                (
                    "a pay beyond what is reserved",
                    with(audited(5, EntryKind::Pay, 301, Some(a))),
                    vec![
                        "entry 5: a pay entry takes a balance below zero".into(),
                        format!(
                            "case {a} is approved with 3.00 yuan approved but the ledger holds -1 fen reserved and 301 fen paid"
                        ),
                    ],
                ),
                (
                    "a missing reservation",
                    books[..2].to_vec(),
                    vec![format!(
                        "case {} is paid with 2.00 yuan approved but the ledger holds 0 fen reserved and 0 fen paid",
                        case(2)
                    )],
                ),
            ];
            for (what, entries, want) in table {
                assert_eq!(problems(&entries, &cases), want, "{what}");
            }
        }

        #[test]
        fn sums_out_of_range_are_problems_not_panics() {
            let a = case(1);
            let cases = [CaseView {
                id: a,
                state: StateKind::Approved,
                approved: Some(m(1)),
            }];
            let entries = vec![
                audited(1, EntryKind::Allocate, i64::MAX, None),
                audited(2, EntryKind::Allocate, i64::MAX, None),
                audited(3, EntryKind::Reserve, i64::MAX, Some(a)),
                audited(4, EntryKind::Reserve, i64::MAX, Some(a)),
            ];
            let got = problems(&entries, &cases);
            assert!(
                got.contains(&"entry 2: a balance is out of range".to_owned()),
                "{got:?}"
            );
            assert!(
                got.contains(&format!(
                    "the entries of case {a} add up to more than can be counted"
                )),
                "{got:?}"
            );
        }

        proptest! {
            /// Books written the way the service writes them (each case reserved, then paid,
            /// released or reversed) verify clean, whatever the mix.
            #[test]
            fn books_the_service_writes_verify_clean(ops in proptest::collection::vec((0u8..4, 1i64..1_000), 0..60)) {
                let mut entries = vec![audited(1, EntryKind::Allocate, 1_000_000, None)];
                let mut cases = Vec::new();
                for (n, (op, fen)) in ops.into_iter().enumerate() {
                    let c = case(n as u128 + 1);
                    let mut add = |k, f| { let id = entries.len() as i64 + 1; entries.push(audited(id, k, f, Some(c))); };
                    add(EntryKind::Reserve, fen);
                    let state = match op {
                        0 => StateKind::Approved,
                        1 => { add(EntryKind::Pay, fen); StateKind::Paid }
                        2 => { add(EntryKind::Release, fen); StateKind::Cancelled }
                        _ => { add(EntryKind::Pay, fen); add(EntryKind::Reverse, fen); StateKind::Approved }
                    };
                    cases.push(CaseView { id: c, state, approved: Some(m(fen)) });
                }
                let r = verify(YEAR, &entries, &cases, m(1_000_000));
                prop_assert!(r.problems.is_empty(), "{:?}", r.problems);
            }

            /// Whatever the entries, verification reports instead of panicking.
            #[test]
            fn any_books_verify_without_panicking(ops in proptest::collection::vec((0usize..6, any::<i64>(), 0u128..4), 0..40)) {
                let entries: Vec<EntryView> = ops.iter().enumerate().map(|(i, (k, fen, c))| {
                    audited(i as i64, EntryKind::ALL[*k], fen.checked_abs().unwrap_or(i64::MAX), (*c > 0).then(|| case(*c)))
                }).collect();
                let cases = [CaseView { id: case(1), state: StateKind::Paid, approved: Some(m(5)) }];
                let _ = verify(YEAR, &entries, &cases, Money::ZERO);
            }
        }
    }
}
