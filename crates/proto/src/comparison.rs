//! The city's row of the district comparison: the districts' figures summed, and the rates
//! and means recomputed from the sums. A backend that serves every district and the gateway
//! that asks each backend for its own both total them here.

use crate::v1;

/// The city's totals over the districts' rows: sums of money and cases, and rates and means
/// recomputed from the sums (not averaged from the districts' rates). The backends and the
/// gateway, which merges the rows of several backends, both total this way.
pub fn city_total(rows: &[v1::DistrictComparison]) -> v1::DistrictComparison {
    let sum = |f: fn(&v1::DistrictComparison) -> i64| {
        rows.iter().fold(0i64, |acc, r| acc.saturating_add(f(r)))
    };
    let allocated = sum(|r| r.allocated_fen);
    let paid = sum(|r| r.paid_fen);
    let paid_cases = sum(|r| r.paid_cases);
    let target = sum(|r| i64::from(r.target_case_count));
    let amount_total = sum(|r| r.amount_total_fen);
    let amount_cases = sum(|r| r.amount_cases);
    let timed = sum(|r| r.timed_payments);
    let re_petitions = sum(|r| r.re_petitions);
    let seconds: i128 = rows
        .iter()
        .map(|r| i128::from(r.mean_seconds_to_payment) * i128::from(r.timed_payments))
        .sum();
    let unsigned = |v: i64| u64::try_from(v).unwrap_or(0);
    let rate = |part: i64, whole: i64| {
        i32::try_from(relief_domain::report::rate_bp(
            unsigned(part),
            unsigned(whole),
        ))
        .unwrap_or(i32::MAX)
    };
    v1::DistrictComparison {
        district_id: String::new(),
        district_name: "全市合计".to_owned(),
        allocated_fen: allocated,
        paid_fen: paid,
        execution_rate_bp: rate(paid, allocated),
        paid_cases,
        target_case_count: i32::try_from(target).unwrap_or(i32::MAX),
        mean_amount_fen: if amount_cases == 0 {
            0
        } else {
            amount_total / amount_cases
        },
        mean_seconds_to_payment: if timed == 0 {
            0
        } else {
            i64::try_from(seconds / i128::from(timed)).unwrap_or(0)
        },
        re_petition_rate_bp: rate(re_petitions, paid_cases),
        grade: String::new(),
        amount_total_fen: amount_total,
        amount_cases,
        timed_payments: timed,
        re_petitions,
    }
}
