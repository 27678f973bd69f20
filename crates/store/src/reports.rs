//! The figures of a district's year, aggregated by the database where it can (counts and sums
//! per state, category and unit) and from narrow columns where a median or percentile needs
//! every value. No case's application is loaded but those above the cap.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use relief_domain::approval::BudgetBalance;
use relief_domain::report::{
    AmountStats, DurationStats, GroupRow, Indicators, Narrative, OverCapCase, StepDuration,
};
use relief_domain::{Application, DistrictId, Money, StateKind};
use sea_orm::sea_query::{Expr, ExprTrait, Func, Query};
use sea_orm::{ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, QuerySelect};

use crate::entity::approval::{decision, follow_up, payment, report_narrative};
use crate::entity::case;
use crate::error::{Error, Result};
use crate::records::DistrictRecord;
use crate::{Store, WriteTx};

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

        let by_state: Vec<(String, i64)> = in_year()
            .select_only()
            .column(case::Column::State)
            .column_as(Expr::col(case::Column::Id).count(), "n")
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

        let decided = [StateKind::Approved.as_str(), StateKind::Paid.as_str()];
        let amounts: Vec<i64> = in_year()
            .select_only()
            .column(case::Column::ApprovedAmountFen)
            .filter(case::Column::State.is_in(decided))
            .into_tuple::<Option<i64>>()
            .all(db)
            .await?
            .into_iter()
            .flatten()
            .collect();
        let amounts =
            AmountStats::from_amounts(amounts.into_iter().map(money).collect::<Result<_>>()?);

        let sum_amount =
            || Expr::expr(Func::sum(Expr::col(case::Column::ApprovedAmountFen))).cast_as("BIGINT");
        let by_category: Vec<(Option<String>, i64, Option<i64>)> = in_year()
            .select_only()
            .column(case::Column::CategoryCode)
            .column_as(Expr::col(case::Column::Id).count(), "n")
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
            .column_as(Expr::col(case::Column::Id).count(), "n")
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
            let app: Application = serde_json::from_str(&app).map_err(corrupt("application"))?;
            over_cap.push(OverCapCase {
                case_id: id,
                amount: money(amount.unwrap_or(0))?,
                justification: app.over_cap_justification,
            });
        }

        let waits: Vec<(String, String, i64)> = decision::Entity::find()
            .select_only()
            .column(decision::Column::StepId)
            .column(decision::Column::StepName)
            .column(decision::Column::WaitedSecs)
            .filter(decision::Column::DistrictId.eq(d))
            .filter(decision::Column::FiscalYear.eq(fiscal_year))
            .into_tuple()
            .all(db)
            .await?;
        let mut per_step: BTreeMap<String, (String, Vec<i64>)> = BTreeMap::new();
        for (step, name, secs) in waits {
            per_step
                .entry(step)
                .or_insert_with(|| (name, Vec::new()))
                .1
                .push(secs);
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
        let mut step_durations: Vec<StepDuration> = per_step
            .into_iter()
            .map(|(step_id, (name, samples))| StepDuration {
                step_id,
                name,
                stats: DurationStats::from_samples(samples),
            })
            .collect();
        step_durations.sort_by_key(|s| chain_order(&s.step_id));

        let returns = decision::Entity::find()
            .filter(decision::Column::DistrictId.eq(d))
            .filter(decision::Column::FiscalYear.eq(fiscal_year));
        let count_of = |kind: &'static str| {
            returns
                .clone()
                .select_only()
                .column_as(Expr::col(decision::Column::Id).count(), "n")
                .filter(decision::Column::Decision.eq(kind))
                .into_tuple::<i64>()
                .one(db)
        };
        let n_returns = count_of("return").await?.unwrap_or(0);
        let n_rejections = count_of("reject").await?.unwrap_or(0);
        let reasons_of = |kind: &'static str| {
            returns
                .clone()
                .select_only()
                .column(decision::Column::Opinion)
                .filter(decision::Column::Decision.eq(kind))
                .distinct()
                .order_by_asc(decision::Column::Opinion)
                .limit(MAX_REASONS)
                .into_tuple::<String>()
                .all(db)
        };
        let return_reasons = reasons_of("return").await?;
        let rejection_reasons = reasons_of("reject").await?;

        // Payments confirmed for the year, and when their cases were submitted.
        let paid: Vec<(String, i64, Option<String>)> = payment::Entity::find()
            .select_only()
            .column(payment::Column::CaseId)
            .column(payment::Column::AmountFen)
            .column(payment::Column::PaidDate)
            .filter(payment::Column::DistrictId.eq(d))
            .filter(payment::Column::FiscalYear.eq(fiscal_year))
            .filter(payment::Column::State.eq("paid"))
            .into_tuple()
            .all(db)
            .await?;
        let submitted: BTreeMap<String, DateTime<Utc>> = in_year()
            .select_only()
            .column(case::Column::Id)
            .column(case::Column::SubmittedAt)
            .filter(case::Column::State.eq(StateKind::Paid.as_str()))
            .into_tuple::<(String, Option<DateTime<Utc>>)>()
            .all(db)
            .await?
            .into_iter()
            .filter_map(|(id, t)| t.map(|t| (id, t)))
            .collect();
        let mut paid_by_month = [Money::ZERO; 12];
        let mut paid_in_year = 0;
        let mut to_payment = Vec::with_capacity(paid.len());
        for (case_id, amount, date) in &paid {
            let Some(date) = date
                .as_deref()
                .and_then(|s| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
            else {
                return Err(Error::corrupt("payment", "paid without a date"));
            };
            if date.year() == fiscal_year {
                paid_in_year += 1;
                let m = &mut paid_by_month[date.month0() as usize];
                *m = m
                    .checked_add(money(*amount)?)
                    .map_err(corrupt("monthly sum"))?;
            }
            if let (Some(sub), Some(end)) = (submitted.get(case_id), date.and_hms_opt(12, 0, 0)) {
                to_payment.push(Ord::max((end.and_utc() - *sub).num_seconds(), 0));
            }
        }

        let year_cases = Query::select()
            .column(case::Column::Id)
            .from(case::Entity)
            .and_where(case::Column::DistrictId.eq(d))
            .and_where(case::Column::FiscalYear.eq(fiscal_year))
            .to_owned();
        let follow = follow_up::Entity::find()
            .filter(follow_up::Column::DistrictId.eq(d))
            .filter(follow_up::Column::CaseId.in_subquery(year_cases))
            .filter(follow_up::Column::DueDate.lte(as_of.format("%Y-%m-%d").to_string()));
        let counts: Vec<(bool, i64)> = follow
            .select_only()
            .column(follow_up::Column::Done)
            .column_as(Expr::col(follow_up::Column::Id).count(), "n")
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
            .column_as(Expr::col(case::Column::Id).count(), "n")
            .filter(case::Column::State.eq(StateKind::Paid.as_str()))
            .filter(case::Column::PetitionedAgain.eq(true))
            .into_tuple::<i64>()
            .one(db)
            .await?
            .unwrap_or(0);

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
            paid_cases: cases_by_state
                .iter()
                .find(|(k, _)| *k == StateKind::Paid)
                .map_or(0, |(_, n)| *n),
            cases_by_state,
            amounts,
            over_cap,
            by_category,
            by_unit,
            step_durations,
            submission_to_payment: DurationStats::from_samples(to_payment),
            paid_in_year,
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
            .one(self.conn())
            .await?;
        report_narrative::Entity::delete_by_id(key)
            .exec(self.conn())
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
                .exec(self.conn())
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
