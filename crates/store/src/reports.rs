//! The figures of a district's year, aggregated by the database where it can (counts and sums
//! per state, category and unit) and from narrow columns where a median or percentile needs
//! every value. No case's application is loaded but those above the cap. Counts are
//! `COUNT(*)`, never `COUNT(id)`: a column the index does not hold would make the database
//! visit every row; the indexes of migration m0004 cover each query.

use chrono::NaiveDate;
use relief_domain::approval::BudgetBalance;
use relief_domain::report::{
    AmountStats, DurationStats, GroupRow, Indicators, Narrative, OverCapCase, StepDuration,
};
use relief_domain::{Application, DistrictId, Money, StateKind};
use sea_orm::sea_query::{Expr, ExprTrait, Func};
use sea_orm::{ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, QuerySelect};

use crate::entity::case;
use crate::entity::{decision, follow_up, payment, report_narrative};
use crate::error::{Error, Result};
use crate::records::DistrictRecord;
use crate::{Store, WriteTx};

/// The 0-based offset of the nearest-rank 90th percentile among `n` sorted values.
fn nearest_rank_90(n: i64) -> u64 {
    u64::try_from((n * 9 + 9) / 10 - 1).unwrap_or(0)
}

/// The largest number of distinct reasons listed per kind.
const MAX_REASONS: u64 = 20;

fn corrupt<E: std::fmt::Display>(what: &'static str) -> impl FnOnce(E) -> Error {
    move |e| Error::corrupt(what, e)
}

fn money(fen: i64) -> Result<Money> {
    Money::from_fen(fen).map_err(corrupt("amount"))
}

impl Store {
    /// Every figure of `district`'s `fiscal_year` as of `as_of`.
    ///
    /// The queries come in four groups by table (cases; decisions; payments; follow-ups
    /// with re-petitions), run together with `tokio::try_join!`, each group on a pooled
    /// connection of its own and its queries one after another. Counts, sums and maxima are
    /// `GROUP BY` aggregates; a median or a 90th percentile is one indexed `ORDER BY …
    /// OFFSET … LIMIT` lookup, never a scan that brings every value here. Step and category
    /// names come from the district's current rules. Decisions and follow-ups written
    /// before migration m0004 have no fiscal year and are not counted, and payments
    /// confirmed before it have no time to payment.
    pub async fn indicators(
        &self,
        district: &DistrictRecord,
        fiscal_year: i32,
        as_of: NaiveDate,
    ) -> Result<Indicators> {
        let d = district.id.as_str();
        let db = &self.db;
        let in_year = || {
            case::Entity::find()
                .filter(case::Column::DistrictId.eq(d))
                .filter(case::Column::FiscalYear.eq(fiscal_year))
        };

        let cases_part = async {
            let by_state: Vec<(String, i64)> = in_year()
                .select_only()
                .column(case::Column::State)
                .column_as(Expr::cust("COUNT(*)"), "n")
                .group_by(case::Column::State)
                .into_tuple()
                .all(db)
                .await?;
            let mut cases_by_state = Vec::new();
            for (s, n) in by_state {
                let kind =
                    StateKind::parse(&s).ok_or_else(|| Error::corrupt("case state", s.clone()))?;
                cases_by_state.push((kind, u64::try_from(n).unwrap_or(0)));
            }
            cases_by_state.sort_by_key(|(k, _)| StateKind::ALL.iter().position(|x| x == k));
            // Received applications are the cases submitted at least once: every state but a
            // draft, less the cases withdrawn while still drafts (never submitted). The index
            // narrows this count to the year's withdrawn cases; only their rows are read.
            let withdrawn_unsubmitted: i64 = in_year()
                .select_only()
                .column_as(Expr::cust("COUNT(*)"), "n")
                .filter(case::Column::State.eq(StateKind::Withdrawn.as_str()))
                .filter(case::Column::SubmittedAt.is_null())
                .into_tuple()
                .one(db)
                .await?
                .unwrap_or(0);
            let submitted_by_state: Vec<(StateKind, u64)> = cases_by_state
                .iter()
                .filter(|(k, _)| *k != StateKind::Draft)
                .map(|(k, n)| {
                    let never_submitted = if *k == StateKind::Withdrawn {
                        u64::try_from(withdrawn_unsubmitted).unwrap_or(0)
                    } else {
                        0
                    };
                    (*k, n.saturating_sub(never_submitted))
                })
                .filter(|(_, n)| *n > 0)
                .collect();

            let decided = [StateKind::Approved.as_str(), StateKind::Paid.as_str()];
            // Count, total and largest by the database; the median by one or two indexed OFFSET
            // lookups.
            let (n_decided, total, largest): (i64, Option<i64>, Option<i64>) = in_year()
                .select_only()
                .column_as(Expr::cust("COUNT(*)"), "n")
                .column_as(
                    Expr::expr(Func::sum(Expr::col(case::Column::ApprovedAmountFen)))
                        .cast_as("BIGINT"),
                    "total",
                )
                .column_as(
                    Expr::expr(Func::max(Expr::col(case::Column::ApprovedAmountFen))),
                    "largest",
                )
                .filter(case::Column::State.is_in(decided))
                .into_tuple()
                .one(db)
                .await?
                .unwrap_or((0, None, None));
            let middle: Vec<Option<i64>> = if n_decided == 0 {
                Vec::new()
            } else {
                in_year()
                    .select_only()
                    .column(case::Column::ApprovedAmountFen)
                    .filter(case::Column::State.is_in(decided))
                    .order_by_asc(case::Column::ApprovedAmountFen)
                    .offset(u64::try_from((n_decided - 1) / 2).unwrap_or(0))
                    .limit(if n_decided % 2 == 0 { 2 } else { 1 })
                    .into_tuple()
                    .all(db)
                    .await?
            };
            let middle: Vec<i64> = middle.into_iter().flatten().collect();
            let amounts = AmountStats {
                cases: u64::try_from(n_decided).unwrap_or(0),
                total: money(total.unwrap_or(0))?,
                mean: money(if n_decided == 0 {
                    0
                } else {
                    total.unwrap_or(0) / n_decided
                })?,
                median: money(if middle.is_empty() {
                    0
                } else {
                    middle.iter().sum::<i64>() / middle.len() as i64
                })?,
                largest: money(largest.unwrap_or(0))?,
            };

            let sum_amount = || {
                Expr::expr(Func::sum(Expr::col(case::Column::ApprovedAmountFen))).cast_as("BIGINT")
            };
            let by_category: Vec<(Option<String>, i64, Option<i64>)> = in_year()
                .select_only()
                .column(case::Column::CategoryCode)
                .column_as(Expr::cust("COUNT(*)"), "n")
                .column_as(sum_amount(), "total")
                .filter(case::Column::State.is_in(decided))
                .group_by(case::Column::CategoryCode)
                .into_tuple()
                .all(db)
                .await?;
            let by_category = by_category
                .into_iter()
                .map(|(code, n, total)| {
                    let code = code.unwrap_or_default();
                    let name = district
                        .rules
                        .categories
                        .iter()
                        .find(|c| c.code.as_str() == code)
                        .map_or_else(|| code.clone(), |c| c.name.clone());
                    Ok(GroupRow {
                        key: code,
                        name,
                        cases: u64::try_from(n).unwrap_or(0),
                        amount: money(total.unwrap_or(0))?,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let by_unit: Vec<(String, i64, Option<i64>)> = in_year()
                .select_only()
                .column(case::Column::ApplicantUnitId)
                .column_as(Expr::cust("COUNT(*)"), "n")
                .column_as(sum_amount(), "total")
                .filter(case::Column::State.is_in(decided))
                .group_by(case::Column::ApplicantUnitId)
                .order_by_asc(case::Column::ApplicantUnitId)
                .into_tuple()
                .all(db)
                .await?;
            let by_unit = by_unit
                .into_iter()
                .map(|(unit, n, total)| {
                    Ok(GroupRow {
                        name: unit.clone(),
                        key: unit,
                        cases: u64::try_from(n).unwrap_or(0),
                        amount: money(total.unwrap_or(0))?,
                    })
                })
                .collect::<Result<Vec<_>>>()?;

            let over: Vec<(String, Option<i64>, String)> = in_year()
                .select_only()
                .column(case::Column::Id)
                .column(case::Column::ApprovedAmountFen)
                .column(case::Column::Application)
                .filter(case::Column::State.is_in(decided))
                .filter(case::Column::OverCap.eq(true))
                .order_by_asc(case::Column::Id)
                .into_tuple()
                .all(db)
                .await?;
            let mut over_cap = Vec::new();
            for (id, amount, app) in over {
                let app: Application =
                    serde_json::from_str(&app).map_err(corrupt("application"))?;
                over_cap.push(OverCapCase {
                    case_id: id,
                    amount: money(amount.unwrap_or(0))?,
                    justification: app.over_cap_justification,
                });
            }

            Ok::<_, Error>((
                cases_by_state,
                submitted_by_state,
                amounts,
                by_category,
                by_unit,
                over_cap,
            ))
        };
        let decisions_part = async {
            // Waits per step: count and mean by the database, the 90th percentile by one indexed
            // OFFSET lookup per step.
            let decisions_of_year = || {
                decision::Entity::find()
                    .filter(decision::Column::DistrictId.eq(d))
                    .filter(decision::Column::FiscalYear.eq(fiscal_year))
            };
            let per_step: Vec<(String, i64, i64)> = decisions_of_year()
                .select_only()
                .column(decision::Column::StepId)
                .column_as(Expr::cust("COUNT(*)"), "n")
                // Sums, not averages: both databases then divide the same way (in Rust).
                .column_as(
                    Expr::expr(Func::sum(Expr::col(decision::Column::WaitedSecs)))
                        .cast_as("BIGINT"),
                    "total",
                )
                .group_by(decision::Column::StepId)
                .into_tuple()
                .all(db)
                .await?;
            let mut step_durations = Vec::new();
            for (step_id, n, total) in per_step {
                // Names come from the rules: grouping by the stored name would read every row.
                let name = district
                    .rules
                    .approval_chain
                    .steps
                    .iter()
                    .find(|s| s.id.as_str() == step_id)
                    .map_or_else(|| step_id.clone(), |s| s.name.clone());
                let mean = if n == 0 { 0 } else { total / n };
                let p90 = nearest_rank_90(n);
                let p90_secs: i64 = decisions_of_year()
                    .select_only()
                    .column(decision::Column::WaitedSecs)
                    .filter(decision::Column::StepId.eq(step_id.as_str()))
                    .order_by_asc(decision::Column::WaitedSecs)
                    .offset(p90)
                    .limit(1)
                    .into_tuple()
                    .one(db)
                    .await?
                    .unwrap_or(0);
                step_durations.push(StepDuration {
                    step_id,
                    name,
                    stats: DurationStats {
                        count: u64::try_from(n).unwrap_or(0),
                        mean_secs: mean,
                        p90_secs,
                    },
                });
            }
            let chain_order = |id: &str| {
                district
                    .rules
                    .approval_chain
                    .steps
                    .iter()
                    .position(|s| s.id.as_str() == id)
                    .unwrap_or(usize::MAX)
            };
            step_durations.sort_by_key(|s| chain_order(&s.step_id));

            let by_kind: Vec<(decision::Kind, i64)> = decisions_of_year()
                .select_only()
                .column(decision::Column::Decision)
                .column_as(Expr::cust("COUNT(*)"), "n")
                .group_by(decision::Column::Decision)
                .into_tuple()
                .all(db)
                .await?;
            let count_of = |kind: decision::Kind| {
                by_kind
                    .iter()
                    .find(|(k, _)| *k == kind)
                    .map_or(0, |(_, n)| *n)
            };
            let (n_returns, n_rejections) = (
                count_of(decision::Kind::Return),
                count_of(decision::Kind::Reject),
            );
            let reasons_of = |kind: decision::Kind| {
                decisions_of_year()
                    .select_only()
                    .column(decision::Column::Opinion)
                    .filter(decision::Column::Decision.eq(kind))
                    .distinct()
                    .order_by_asc(decision::Column::Opinion)
                    .limit(MAX_REASONS)
                    .into_tuple::<String>()
                    .all(db)
            };
            let return_reasons = reasons_of(decision::Kind::Return).await?;
            let rejection_reasons = reasons_of(decision::Kind::Reject).await?;

            Ok::<_, Error>((
                step_durations,
                n_returns,
                n_rejections,
                return_reasons,
                rejection_reasons,
            ))
        };
        let payments_part = async {
            // Confirmed payments: per month, within the year, and how long from submission.
            let paid_of_year = || {
                payment::Entity::find()
                    .filter(payment::Column::DistrictId.eq(d))
                    .filter(payment::Column::FiscalYear.eq(fiscal_year))
                    .filter(payment::Column::State.eq("paid"))
            };
            let month = Expr::cust("SUBSTR(paid_date, 1, 7)");
            let by_month: Vec<(String, i64)> = paid_of_year()
                .select_only()
                .column_as(month.clone(), "month")
                .column_as(
                    Expr::expr(Func::sum(Expr::col(payment::Column::AmountFen))).cast_as("BIGINT"),
                    "total",
                )
                .group_by(month)
                .into_tuple()
                .all(db)
                .await?;
            let mut paid_by_month = [Money::ZERO; 12];
            for (ym, total) in by_month {
                let (y, m) = ym
                    .split_once('-')
                    .ok_or_else(|| Error::corrupt("payment", "paid date"))?;
                if y.parse::<i32>().ok() == Some(fiscal_year)
                    && let Some(slot) = m
                        .parse::<usize>()
                        .ok()
                        .and_then(|m| paid_by_month.get_mut(m.wrapping_sub(1)))
                {
                    *slot = money(total)?;
                }
            }
            let paid_in_year: i64 = paid_of_year()
                .select_only()
                .column_as(Expr::cust("COUNT(*)"), "n")
                .filter(payment::Column::PaidDate.like(format!("{fiscal_year}-%")))
                .into_tuple()
                .one(db)
                .await?
                .unwrap_or(0);
            let (n_paid, total_to_payment): (i64, Option<i64>) = paid_of_year()
                .select_only()
                .column_as(Expr::cust("COUNT(*)"), "n")
                .column_as(
                    Expr::expr(Func::sum(Expr::col(payment::Column::SecsToPayment)))
                        .cast_as("BIGINT"),
                    "total",
                )
                .filter(payment::Column::SecsToPayment.is_not_null())
                .into_tuple()
                .one(db)
                .await?
                .unwrap_or((0, None));
            let p90_to_payment: i64 = paid_of_year()
                .select_only()
                .column(payment::Column::SecsToPayment)
                .filter(payment::Column::SecsToPayment.is_not_null())
                .order_by_asc(payment::Column::SecsToPayment)
                .offset(nearest_rank_90(n_paid))
                .limit(1)
                .into_tuple::<Option<i64>>()
                .one(db)
                .await?
                .flatten()
                .unwrap_or(0);
            let submission_to_payment = DurationStats {
                count: u64::try_from(n_paid).unwrap_or(0),
                mean_secs: if n_paid == 0 {
                    0
                } else {
                    total_to_payment.unwrap_or(0) / n_paid
                },
                p90_secs: p90_to_payment,
            };

            Ok::<_, Error>((paid_by_month, paid_in_year, submission_to_payment))
        };
        let follow_part = async {
            let counts: Vec<(bool, i64)> = follow_up::Entity::find()
                .filter(follow_up::Column::DistrictId.eq(d))
                .filter(follow_up::Column::FiscalYear.eq(fiscal_year))
                .filter(follow_up::Column::DueDate.lte(as_of.format("%Y-%m-%d").to_string()))
                .select_only()
                .column(follow_up::Column::Done)
                .column_as(Expr::cust("COUNT(*)"), "n")
                .group_by(follow_up::Column::Done)
                .into_tuple()
                .all(db)
                .await?;
            let follow_ups_due: i64 = counts.iter().map(|(_, n)| n).sum();
            let follow_ups_done: i64 = counts
                .iter()
                .filter(|(done, _)| *done)
                .map(|(_, n)| n)
                .sum();
            let re_petitions = in_year()
                .select_only()
                .column_as(Expr::cust("COUNT(*)"), "n")
                .filter(case::Column::State.eq(StateKind::Paid.as_str()))
                .filter(case::Column::PetitionedAgain.eq(true))
                .into_tuple::<i64>()
                .one(db)
                .await?
                .unwrap_or(0);

            Ok::<_, Error>((follow_ups_due, follow_ups_done, re_petitions))
        };
        // The four groups read different tables; on SQLite (WAL) and PostgreSQL alike they
        // run at once on separate connections of the pool.
        let (
            (cases_by_state, submitted_by_state, amounts, by_category, by_unit, over_cap),
            (step_durations, n_returns, n_rejections, return_reasons, rejection_reasons),
            (paid_by_month, paid_in_year, submission_to_payment),
            (follow_ups_due, follow_ups_done, re_petitions),
        ) = tokio::try_join!(cases_part, decisions_part, payments_part, follow_part)?;
        let budget: BudgetBalance = self.budget_balance(&district.id, fiscal_year).await?;
        let as_u64 = |n: i64| u64::try_from(n).unwrap_or(0);
        Ok(Indicators {
            district_id: district.id.to_string(),
            district_name: district.name.clone(),
            fiscal_year,
            as_of,
            budget,
            target_case_count: district
                .rules
                .budget_for(fiscal_year)
                .map_or(0, |b| b.target_case_count),
            case_cap: district.rules.case_cap,
            chain: district.rules.approval_chain.clone(),
            paid_cases: cases_by_state
                .iter()
                .find(|(k, _)| *k == StateKind::Paid)
                .map_or(0, |(_, n)| *n),
            cases_by_state,
            submitted_by_state,
            amounts,
            over_cap,
            by_category,
            by_unit,
            step_durations,
            submission_to_payment,
            paid_in_year: u64::try_from(paid_in_year).unwrap_or(0),
            paid_by_month,
            follow_ups_due: as_u64(follow_ups_due),
            follow_ups_done: as_u64(follow_ups_done),
            re_petitions: as_u64(re_petitions),
            returns: as_u64(n_returns),
            rejections: as_u64(n_rejections),
            return_reasons,
            rejection_reasons,
        })
    }

    /// The bureau's narrative for a year's report, by section.
    pub async fn narrative(&self, district: &DistrictId, fiscal_year: i32) -> Result<Narrative> {
        Ok(report_narrative::Entity::find()
            .filter(report_narrative::Column::DistrictId.eq(district.as_str()))
            .filter(report_narrative::Column::FiscalYear.eq(fiscal_year))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|r| (r.section, r.text))
            .collect())
    }
}

impl WriteTx {
    /// Stores (or clears, with empty text) one section of a year's narrative.
    pub async fn set_narrative(
        &mut self,
        district: &DistrictId,
        fiscal_year: i32,
        section: &str,
        text: &str,
    ) -> Result<()> {
        let key = (district.to_string(), fiscal_year, section.to_owned());
        let before = report_narrative::Entity::find_by_id(key.clone())
            .one(self.conn().await?)
            .await?;
        report_narrative::Entity::delete_by_id(key)
            .exec(self.conn().await?)
            .await?;
        if !text.is_empty() {
            let row = report_narrative::Model {
                district_id: district.to_string(),
                fiscal_year,
                section: section.to_owned(),
                text: text.to_owned(),
                updated_by: self.actor().subject.to_string(),
                updated_at: self.now(),
            };
            report_narrative::Entity::insert(row.into_active_model())
                .exec(self.conn().await?)
                .await?;
        }
        #[derive(serde::Serialize)]
        struct Section<'a> {
            fiscal_year: i32,
            section: &'a str,
            text: &'a str,
        }
        let old = before.map(|b| b.text);
        self.record(
            district,
            "report.narrative_updated",
            "report",
            &format!("{fiscal_year}/{section}"),
            old.as_deref()
                .map(|t| Section {
                    fiscal_year,
                    section,
                    text: t,
                })
                .as_ref(),
            Some(&Section {
                fiscal_year,
                section,
                text,
            }),
        )
    }
}
