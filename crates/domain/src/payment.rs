//! Paying approved relief (核拨) and checking it against the bank: the payment's states, the
//! follow-up schedule that starts with payment, and the reconciliation of a bank statement.

use chrono::{DateTime, Datelike, Days, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::case::{Attachment, CaseState, StateKind};
use crate::money::{FEN_PER_YUAN, Money};
use crate::violation::Violation;

/// Where a payment stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentState {
    /// Sent to the bank, not yet confirmed.
    Pending,
    /// Confirmed by the bank.
    Paid {
        bank_reference: String,
        paid_on: NaiveDate,
    },
    /// The bank refused it; a new attempt may follow.
    Failed { reason: String },
    /// Paid, then returned by the bank (退汇); a new attempt may follow.
    Reversed {
        bank_reference: String,
        paid_on: NaiveDate,
        reason: String,
    },
}

impl PaymentState {
    pub fn as_str(&self) -> &'static str {
        match self {
            PaymentState::Pending => "pending",
            PaymentState::Paid { .. } => "paid",
            PaymentState::Failed { .. } => "failed",
            PaymentState::Reversed { .. } => "reversed",
        }
    }

    /// Whether this attempt still counts against the case: a case has at most one.
    pub fn is_live(&self) -> bool {
        match self {
            PaymentState::Pending | PaymentState::Paid { .. } => true,
            PaymentState::Failed { .. } | PaymentState::Reversed { .. } => false,
        }
    }
}

/// The days after payment on which the bureau follows up (跟踪), as dates.
pub fn follow_up_dates(paid_on: NaiveDate, after_days: &[u32]) -> Vec<NaiveDate> {
    after_days
        .iter()
        .filter_map(|d| paid_on.checked_add_days(Days::new(u64::from(*d))))
        .collect()
}

/// The moment a payment counts as made: noon UTC of the day the bank paid it, since a bank
/// statement gives only the day.
pub fn paid_at(paid_on: NaiveDate) -> Option<DateTime<Utc>> {
    paid_on.and_hms_opt(12, 0, 0).map(|t| t.and_utc())
}

/// Seconds from submission to payment ([`paid_at`]), never negative.
pub fn secs_to_payment(submitted_at: Option<DateTime<Utc>>, paid_on: NaiveDate) -> Option<i64> {
    submitted_at
        .zip(paid_at(paid_on))
        .map(|(sub, paid)| (paid - sub).num_seconds().max(0))
}

/// Everything whether a case can be paid depends on.
#[derive(Debug, Clone, Copy)]
pub struct PayableFacts<'a> {
    pub state: &'a CaseState,
    /// The case's payments so far: id and state.
    pub payments: &'a [(&'a str, &'a PaymentState)],
    pub fiscal_year: Option<i32>,
    /// Whether `fiscal_year` is closed.
    pub year_closed: bool,
    /// The district's rules: the document types a case needs before it is paid.
    pub required_documents: &'a [String],
    pub attachments: &'a [Attachment],
    pub approved: Option<Money>,
    /// The amount the finance section means to pay, in fen; 0 for the approved amount.
    pub asked_fen: i64,
}

/// A case that can be paid: from this fiscal year, this much.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Payable {
    pub fiscal_year: i32,
    pub amount: Money,
}

/// Why a case cannot be paid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayRefusal {
    #[error("the case is already paid")]
    AlreadyPaid,
    #[error("the case is {0}, not approved")]
    NotApproved(StateKind),
    #[error("payment {id} of the case is {state}; a case is paid once")]
    PaymentExists { id: String, state: &'static str },
    #[error("the approved case has no fiscal year")]
    NoFiscalYear,
    #[error("fiscal year {0} is closed")]
    YearClosed(i32),
    #[error("the case lacks required documents: {}", .0.join(", "))]
    MissingDocuments(Vec<String>),
    #[error("the approved case has no approved amount")]
    NoAmount,
    #[error("{asked_fen} fen is {} the approved {approved}; relief is paid in full, once", if *asked_fen > approved.fen() { "more than" } else { "less than" })]
    AmountDiffers { asked_fen: i64, approved: Money },
}

/// Whether a case can be paid (核拨): approved, with no live payment, in an open year, with
/// every document the rules require, for exactly its approved amount.
pub fn check_payable(f: PayableFacts<'_>) -> Result<Payable, PayRefusal> {
    match f.state.kind() {
        StateKind::Approved => {}
        StateKind::Paid => return Err(PayRefusal::AlreadyPaid),
        other => return Err(PayRefusal::NotApproved(other)),
    }
    if let Some((id, state)) = f.payments.iter().find(|(_, s)| s.is_live()) {
        return Err(PayRefusal::PaymentExists {
            id: (*id).to_owned(),
            state: state.as_str(),
        });
    }
    let fiscal_year = f.fiscal_year.ok_or(PayRefusal::NoFiscalYear)?;
    if f.year_closed {
        return Err(PayRefusal::YearClosed(fiscal_year));
    }
    let missing: Vec<String> = f
        .required_documents
        .iter()
        .filter(|d| !f.attachments.iter().any(|a| &a.document_type == *d))
        .cloned()
        .collect();
    if !missing.is_empty() {
        return Err(PayRefusal::MissingDocuments(missing));
    }
    let amount = f.approved.ok_or(PayRefusal::NoAmount)?;
    if f.asked_fen != 0 && f.asked_fen != amount.fen() {
        return Err(PayRefusal::AmountDiffers {
            asked_fen: f.asked_fen,
            approved: amount,
        });
    }
    Ok(Payable {
        fiscal_year,
        amount,
    })
}

/// Everything confirming a payment depends on.
#[derive(Debug, Clone, Copy)]
pub struct ConfirmFacts<'a> {
    pub payment: &'a PaymentState,
    pub fiscal_year: i32,
    pub amount: Money,
    pub bank_reference: &'a str,
    pub paid_on: NaiveDate,
    pub today: NaiveDate,
    /// Whether the payment's fiscal year is closed.
    pub year_closed: bool,
    pub case_state: &'a CaseState,
    pub case_approved: Option<Money>,
    pub submitted_at: Option<DateTime<Utc>>,
    /// The rules the case was filed under: follow up this many days after payment.
    pub follow_up_after_days: &'a [u32],
}

/// A confirmed payment: its new state, the case's, how long the case waited for its
/// money, and the follow-ups the payment starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confirmed {
    pub payment: PaymentState,
    pub case_state: CaseState,
    pub secs_to_payment: Option<i64>,
    pub follow_ups: Vec<NaiveDate>,
}

/// Why a payment cannot be confirmed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfirmRefusal {
    #[error("the payment is {0}")]
    NotPending(&'static str),
    #[error("must fall in fiscal year {0}")]
    OutsideYear(i32),
    #[error("must not be in the future")]
    InFuture,
    #[error("fiscal year {0} is closed")]
    YearClosed(i32),
    #[error("the case is {0} with another amount; it cannot take this payment")]
    CaseNotPayable(StateKind),
}

/// Confirms a pending payment as paid on `paid_on`: a day of its fiscal year, not in the
/// future, in an open year, for a case still approved for the payment's amount.
pub fn confirm(f: ConfirmFacts<'_>) -> Result<Confirmed, ConfirmRefusal> {
    if *f.payment != PaymentState::Pending {
        return Err(ConfirmRefusal::NotPending(f.payment.as_str()));
    }
    if f.paid_on.year() != f.fiscal_year {
        return Err(ConfirmRefusal::OutsideYear(f.fiscal_year));
    }
    if f.paid_on > f.today {
        return Err(ConfirmRefusal::InFuture);
    }
    if f.year_closed {
        return Err(ConfirmRefusal::YearClosed(f.fiscal_year));
    }
    if *f.case_state != CaseState::Approved || f.case_approved != Some(f.amount) {
        return Err(ConfirmRefusal::CaseNotPayable(f.case_state.kind()));
    }
    Ok(Confirmed {
        payment: PaymentState::Paid {
            bank_reference: f.bank_reference.to_owned(),
            paid_on: f.paid_on,
        },
        case_state: CaseState::Paid,
        secs_to_payment: secs_to_payment(f.submitted_at, f.paid_on),
        follow_ups: follow_up_dates(f.paid_on, f.follow_up_after_days),
    })
}

/// Parses an amount in yuan as banks print it (`12345.67`, `12,345.6`, `500`) into fen,
/// exactly: no floating point on the way.
pub fn parse_yuan(text: &str) -> Option<Money> {
    let t: String = text.trim().chars().filter(|c| *c != ',').collect();
    let (whole, frac) = match t.split_once('.') {
        Some((w, f)) => (w, f),
        None => (t.as_str(), ""),
    };
    if whole.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || frac.len() > 2
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let yuan: i64 = whole.parse().ok()?;
    let fen: i64 = match frac.len() {
        0 => 0,
        1 => frac.parse::<i64>().ok()? * 10,
        _ => frac.parse().ok()?,
    };
    Money::from_fen(yuan.checked_mul(FEN_PER_YUAN)?.checked_add(fen)?).ok()
}

/// One line of a bank statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementLine {
    /// 1-based line number in the file, for messages.
    pub line: usize,
    pub date: NaiveDate,
    pub amount: Money,
    pub reference: String,
    pub account: String,
}

/// The most lines one statement may have.
pub const MAX_STATEMENT_LINES: usize = 10_000;

/// Reads a statement in CSV (`date,amount,reference,account`, an optional header line).
/// Every bad line is reported with its number.
pub fn parse_statement(csv_text: &str) -> Result<Vec<StatementLine>, Vec<Violation>> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .trim(csv::Trim::All)
        .flexible(true)
        .from_reader(csv_text.as_bytes());
    let mut lines = Vec::new();
    let mut bad = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let n = i + 1;
        if n > MAX_STATEMENT_LINES {
            bad.push(Violation::new(
                "statement_csv",
                format_args!("at most {MAX_STATEMENT_LINES} lines"),
            ));
            break;
        }
        let field = format!("statement_csv.line[{n}]");
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                bad.push(Violation::new(field, e));
                continue;
            }
        };
        if n == 1
            && record
                .get(0)
                .is_some_and(|c| c.eq_ignore_ascii_case("date"))
        {
            continue;
        }
        if record.len() != 4 {
            bad.push(Violation::new(
                field,
                "must have 4 fields: date,amount,reference,account",
            ));
            continue;
        }
        let date = NaiveDate::parse_from_str(&record[0], "%Y-%m-%d");
        let amount = parse_yuan(&record[1]);
        match (date, amount) {
            (Ok(date), Some(amount)) if !record[2].is_empty() => lines.push(StatementLine {
                line: n,
                date,
                amount,
                reference: record[2].to_owned(),
                account: record[3].to_owned(),
            }),
            (Err(_), _) => bad.push(Violation::new(field, "date must be YYYY-MM-DD")),
            (_, None) => bad.push(Violation::new(
                field,
                "amount must be yuan with at most 2 decimals",
            )),
            (Ok(_), Some(_)) => bad.push(Violation::new(field, "reference is required")),
        }
    }
    if bad.is_empty() { Ok(lines) } else { Err(bad) }
}

/// A paid payment as reconciliation sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaidPayment {
    pub id: String,
    pub bank_reference: String,
    pub amount: Money,
    pub account: String,
}

/// The outcome of matching a statement to payments.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reconciliation {
    /// (statement line, payment id) pairs that agree.
    pub matched: Vec<(usize, String)>,
    /// Lines no payment has the reference of.
    pub unmatched_lines: Vec<usize>,
    /// (line, payment id, line amount, payment amount) where the reference matches and the
    /// amount or account does not.
    pub mismatched: Vec<(usize, String, Money, Money)>,
    /// Paid payments no line mentions.
    pub unmatched_payments: Vec<String>,
}

/// Matches statement lines to paid payments by bank reference.
pub fn reconcile(lines: &[StatementLine], payments: &[PaidPayment]) -> Reconciliation {
    let mut r = Reconciliation::default();
    let mut seen = vec![false; payments.len()];
    for l in lines {
        match payments
            .iter()
            .position(|p| p.bank_reference == l.reference)
        {
            None => r.unmatched_lines.push(l.line),
            Some(i) => {
                seen[i] = true;
                let p = &payments[i];
                if p.amount == l.amount && (l.account.is_empty() || p.account == l.account) {
                    r.matched.push((l.line, p.id.clone()));
                } else {
                    r.mismatched
                        .push((l.line, p.id.clone(), l.amount, p.amount));
                }
            }
        }
    }
    r.unmatched_payments = payments
        .iter()
        .zip(seen)
        .filter(|(_, s)| !s)
        .map(|(p, _)| p.id.clone())
        .collect();
    r
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn yuan_parsing() {
        let check =
            |s: &str, fen: Option<i64>| assert_eq!(parse_yuan(s).map(Money::fen), fen, "{s}");
        check("12345.67", Some(1_234_567));
        check("12,345.6", Some(1_234_560));
        check("500", Some(50_000));
        check("0.05", Some(5));
        check("1.234", None);
        check("-5", None);
        check("", None);
        check("1e3", None);
        check(".5", None);
    }

    #[test]
    fn follow_up_schedule() {
        let d = NaiveDate::from_ymd_opt(2022, 6, 30).unwrap();
        let got = follow_up_dates(d, &[90, 180, 365]);
        let want: Vec<NaiveDate> = ["2022-09-28", "2022-12-27", "2023-06-30"]
            .iter()
            .map(|s| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap())
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn statements_and_reconciliation() {
        let csv = "date,amount,reference,account\n2022-07-01,20000.00,BR-1,6230000000000001\n2022-07-02,15000,BR-2,6230000000000002\n2022-07-03,100.00,BR-9,1\n";
        let lines = parse_statement(csv).unwrap();
        assert_eq!(lines.len(), 3);
        let payments = vec![
            PaidPayment {
                id: "p1".into(),
                bank_reference: "BR-1".into(),
                amount: Money::from_yuan(20_000).unwrap(),
                account: "6230000000000001".into(),
            },
            PaidPayment {
                id: "p2".into(),
                bank_reference: "BR-2".into(),
                amount: Money::from_yuan(14_000).unwrap(),
                account: "6230000000000002".into(),
            },
            PaidPayment {
                id: "p3".into(),
                bank_reference: "BR-3".into(),
                amount: Money::from_yuan(1).unwrap(),
                account: "x".into(),
            },
        ];
        let r = reconcile(&lines, &payments);
        assert_eq!(r.matched, vec![(2, "p1".to_owned())]);
        assert_eq!(
            r.mismatched,
            vec![(
                3,
                "p2".to_owned(),
                Money::from_yuan(15_000).unwrap(),
                Money::from_yuan(14_000).unwrap()
            )]
        );
        assert_eq!(r.unmatched_lines, vec![4]);
        assert_eq!(r.unmatched_payments, vec!["p3".to_owned()]);

        let bad = parse_statement("2022-13-01,1.00,R,A\n2022-01-01,abc,R,A\n2022-01-01,1.00\n")
            .unwrap_err();
        let fields: Vec<_> = bad.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "statement_csv.line[1]",
                "statement_csv.line[2]",
                "statement_csv.line[3]"
            ]
        );
    }
}
