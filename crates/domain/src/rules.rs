//! A district's fund rules (救助资金管理办法 as configuration): the cap, budgets, categories,
//! waiting period, follow-up schedule and approval chain. Rules are versioned by the store;
//! this module owns what makes a set of rules valid and what a chain means for one case.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::ids::{CategoryCode, StepId};
use crate::money::Money;
use crate::role::Role;
use crate::violation::{Violation, Violations};

/// The longest a step may be given, and the longest waiting period or follow-up offset.
pub const MAX_DEADLINE_DAYS: u32 = 365;
pub const MAX_PERIOD_DAYS: u32 = 3650;
pub const MAX_CHAIN_STEPS: usize = 16;
pub const MAX_CATEGORIES: usize = 32;
pub const MAX_BUDGET_YEARS: usize = 50;
pub const MAX_FOLLOW_UPS: usize = 12;

/// How long each list of a rule set is. Checked on its own before any element is, so rules
/// with a thousand steps are refused for their length instead of a thousand times over.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListSizes {
    pub budgets: usize,
    pub categories: usize,
    pub follow_ups: usize,
    pub payment_documents: usize,
    pub steps: usize,
}

impl ListSizes {
    /// Every list longer than its limit; paths are relative to `prefix` (e.g. `rules`).
    pub fn check(&self, prefix: &str) -> Vec<Violation> {
        let mut v = Violations::new();
        let f = |name: &str| format!("{prefix}.{name}");
        if self.budgets > MAX_BUDGET_YEARS {
            v.add(
                f("budgets"),
                format_args!("at most {MAX_BUDGET_YEARS} fiscal years"),
            );
        }
        if self.categories > MAX_CATEGORIES {
            v.add(
                f("categories"),
                format_args!("at most {MAX_CATEGORIES} categories"),
            );
        }
        if self.follow_ups > MAX_FOLLOW_UPS {
            v.add(
                f("follow_up_after_days"),
                format_args!("at most {MAX_FOLLOW_UPS} follow-ups"),
            );
        }
        if self.payment_documents > MAX_CATEGORIES {
            v.add(
                f("required_payment_documents"),
                format_args!("at most {MAX_CATEGORIES} document types"),
            );
        }
        if self.steps > MAX_CHAIN_STEPS {
            v.add(
                f("approval_chain.steps"),
                format_args!("at most {MAX_CHAIN_STEPS} steps"),
            );
        }
        v.into_vec()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FundRules {
    /// Soft cap per case (原则上不超过5万元): above it a justification is required.
    pub case_cap: Money,
    pub budgets: Vec<FiscalYearBudget>,
    pub categories: Vec<Category>,
    pub repeat_relief_wait_days: u32,
    pub follow_up_after_days: Vec<u32>,
    pub approval_chain: ApprovalChain,
    /// Document types a case must carry before payment (e.g. 息诉罢访承诺书).
    #[serde(default)]
    pub required_payment_documents: Vec<String>,
    /// How the yearly self-evaluation scores the fund.
    #[serde(default)]
    pub grading: Grading,
}

/// The scoring rubric of the performance self-evaluation (绩效评价): points per indicator
/// group and the grade thresholds. The default is the usual fiscal scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grading {
    pub decision_points: u32,
    pub process_points: u32,
    pub output_points: u32,
    pub effect_points: u32,
    /// 优 at or above this total.
    pub excellent_min: u32,
    /// 良 at or above this total.
    pub good_min: u32,
    /// 中 at or above this total; below it 差.
    pub fair_min: u32,
}

impl Default for Grading {
    fn default() -> Self {
        Self {
            decision_points: 20,
            process_points: 20,
            output_points: 30,
            effect_points: 30,
            excellent_min: 90,
            good_min: 80,
            fair_min: 60,
        }
    }
}

impl Grading {
    pub fn total_points(&self) -> u32 {
        self.decision_points + self.process_points + self.output_points + self.effect_points
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FiscalYearBudget {
    pub fiscal_year: i32,
    pub allocated: Money,
    pub target_case_count: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Category {
    pub code: CategoryCode,
    pub name: String,
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalChain {
    pub steps: Vec<ApprovalStep>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalStep {
    pub id: StepId,
    pub name: String,
    pub role: Role,
    pub deadline_days: u32,
    pub condition: StepCondition,
    /// Decided in batches at a party-group meeting (党组会) and recorded by the bureau office.
    pub batched: bool,
}

/// When a step applies to a case. The default applies always.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StepCondition {
    /// Applies only when the amount is strictly above this.
    pub min_amount: Option<Money>,
    /// Applies only to cases above the district's cap.
    pub only_over_cap: bool,
}

impl StepCondition {
    pub fn is_unconditional(&self) -> bool {
        self.min_amount.is_none() && !self.only_over_cap
    }

    pub fn applies(&self, amount: Money, over_cap: bool) -> bool {
        let amount_ok = self.min_amount.is_none_or(|min| amount > min);
        let cap_ok = !self.only_over_cap || over_cap;
        amount_ok && cap_ok
    }
}

/// The roles that may act on an approval step. Applicant units, finance, auditors,
/// administrators and sync clients never approve.
pub const fn may_hold_step(role: Role) -> bool {
    match role {
        Role::CaseOfficer
        | Role::DeputyLeader
        | Role::BureauHead
        | Role::BureauOffice
        | Role::DistrictLeader => true,
        Role::ApplicantUnit
        | Role::Finance
        | Role::Auditor
        | Role::DistrictAdmin
        | Role::CityAdmin
        | Role::SyncClient => false,
    }
}

impl ApprovalChain {
    /// The steps that apply to a case of this amount, in order.
    pub fn applicable_steps(
        &self,
        amount: Money,
        over_cap: bool,
    ) -> impl Iterator<Item = &ApprovalStep> {
        self.steps
            .iter()
            .filter(move |s| s.condition.applies(amount, over_cap))
    }

    /// The first step a newly submitted case waits at.
    pub fn first_step(&self, amount: Money, over_cap: bool) -> Option<&ApprovalStep> {
        self.applicable_steps(amount, over_cap).next()
    }

    /// The step after `current` for this case, or `None` when `current` is the last.
    pub fn next_step(
        &self,
        current: &StepId,
        amount: Money,
        over_cap: bool,
    ) -> Option<&ApprovalStep> {
        self.applicable_steps(amount, over_cap)
            .skip_while(|s| &s.id != current)
            .nth(1)
    }

    pub fn step(&self, id: &StepId) -> Option<&ApprovalStep> {
        self.steps.iter().find(|s| &s.id == id)
    }
}

impl FundRules {
    pub fn budget_for(&self, fiscal_year: i32) -> Option<&FiscalYearBudget> {
        self.budgets.iter().find(|b| b.fiscal_year == fiscal_year)
    }

    pub fn category(&self, code: &CategoryCode) -> Option<&Category> {
        self.categories.iter().find(|c| &c.code == code)
    }

    /// Whether an amount is above the soft cap.
    pub fn is_over_cap(&self, amount: Money) -> bool {
        amount > self.case_cap
    }

    /// Checks the rules as a whole; field paths are relative to `prefix` (e.g. `rules`).
    pub fn validate(&self, prefix: &str) -> Result<(), Vec<Violation>> {
        let mut v = Violations::new();
        let f = |name: &str| format!("{prefix}.{name}");
        if self.case_cap.is_zero() {
            v.add(f("case_cap_fen"), "must be positive");
        }
        let sizes = ListSizes {
            budgets: self.budgets.len(),
            categories: self.categories.len(),
            follow_ups: self.follow_up_after_days.len(),
            payment_documents: self.required_payment_documents.len(),
            steps: self.approval_chain.steps.len(),
        }
        .check(prefix);
        if !sizes.is_empty() {
            return Err(sizes);
        }
        let mut years = HashSet::new();
        for (i, b) in self.budgets.iter().enumerate() {
            if !(2000..=2100).contains(&b.fiscal_year) {
                v.add(
                    f(&format!("budgets[{i}].fiscal_year")),
                    "must be between 2000 and 2100",
                );
            }
            if !years.insert(b.fiscal_year) {
                v.add(f(&format!("budgets[{i}].fiscal_year")), "appears twice");
            }
        }
        if self.categories.is_empty() {
            v.add(
                f("categories"),
                "at least one eligibility category is required",
            );
        }
        let mut codes = HashSet::new();
        for (i, c) in self.categories.iter().enumerate() {
            if !codes.insert(&c.code) {
                v.add(f(&format!("categories[{i}].code")), "appears twice");
            }
            v.text(&f(&format!("categories[{i}].name")), &c.name, 64, true);
            v.text(
                &f(&format!("categories[{i}].description")),
                &c.description,
                500,
                false,
            );
        }
        if self.repeat_relief_wait_days > MAX_PERIOD_DAYS {
            v.add(
                f("repeat_relief_wait_days"),
                format_args!("must be at most {MAX_PERIOD_DAYS}"),
            );
        }
        let mut last = 0;
        for (i, d) in self.follow_up_after_days.iter().enumerate() {
            if *d == 0 || *d > MAX_PERIOD_DAYS || *d <= last {
                v.add(
                    f(&format!("follow_up_after_days[{i}]")),
                    format_args!("must be increasing, between 1 and {MAX_PERIOD_DAYS} days"),
                );
            }
            last = *d;
        }
        for (i, d) in self.required_payment_documents.iter().enumerate() {
            v.text(&f(&format!("required_payment_documents[{i}]")), d, 64, true);
        }
        self.approval_chain.validate(&f("approval_chain"), &mut v);
        let g = &self.grading;
        if g.total_points() != 100 {
            v.add(f("grading"), "the four groups' points must add up to 100");
        }
        if !(g.fair_min <= g.good_min && g.good_min <= g.excellent_min && g.excellent_min <= 100) {
            v.add(
                f("grading"),
                "thresholds must rise from fair to good to excellent, at most 100",
            );
        }
        v.into_result(())
    }
}

impl ApprovalChain {
    fn validate(&self, prefix: &str, v: &mut Violations) {
        if self.steps.is_empty() {
            v.add(format!("{prefix}.steps"), "at least one step is required");
            return;
        }
        let mut ids = HashSet::new();
        for (i, s) in self.steps.iter().enumerate() {
            let f = |name: &str| format!("{prefix}.steps[{i}].{name}");
            if !ids.insert(&s.id) {
                v.add(f("step_id"), "appears twice");
            }
            v.text(&f("name"), &s.name, 64, true);
            if !may_hold_step(s.role) {
                v.add(
                    f("role"),
                    format_args!("role {} may not act on an approval step", s.role),
                );
            }
            if s.deadline_days == 0 || s.deadline_days > MAX_DEADLINE_DAYS {
                v.add(
                    f("deadline_days"),
                    format_args!("must be between 1 and {MAX_DEADLINE_DAYS}"),
                );
            }
            if s.batched && s.role != Role::BureauOffice {
                v.add(
                    f("batched"),
                    "a batched (party-group) step is recorded by the bureau office",
                );
            }
        }
        // Every case must end with a final approval, whatever its amount.
        if let Some(last) = self.steps.last()
            && !last.condition.is_unconditional()
        {
            v.add(
                format!("{prefix}.steps[{}].condition", self.steps.len() - 1),
                "the last step is the final approval and must apply to every case",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::defaults::seed_rules;

    fn step(id: &str, role: Role, condition: StepCondition) -> ApprovalStep {
        ApprovalStep {
            id: StepId::parse(id).unwrap(),
            name: id.to_owned(),
            role,
            deadline_days: 5,
            condition,
            batched: false,
        }
    }

    #[test]
    fn seed_rules_are_valid() {
        assert_eq!(seed_rules(2022).validate("rules"), Ok(()));
    }

    #[test]
    fn invalid_rules_name_every_field() {
        let mut r = seed_rules(2022);
        r.case_cap = Money::ZERO;
        r.categories.push(r.categories[0].clone());
        r.follow_up_after_days = vec![90, 90];
        r.approval_chain.steps[0].role = Role::Finance;
        r.approval_chain.steps[1].deadline_days = 0;
        r.approval_chain.steps[2].batched = true;
        r.budgets.push(r.budgets[0].clone());
        let fields: Vec<String> = r
            .validate("rules")
            .unwrap_err()
            .into_iter()
            .map(|v| v.field)
            .collect();
        assert_eq!(
            fields,
            [
                "rules.case_cap_fen",
                "rules.budgets[1].fiscal_year",
                "rules.categories[3].code",
                "rules.follow_up_after_days[1]",
                "rules.approval_chain.steps[0].role",
                "rules.approval_chain.steps[1].deadline_days",
                "rules.approval_chain.steps[2].batched",
            ]
        );
    }

    #[test]
    fn last_step_must_be_unconditional() {
        let mut r = seed_rules(2022);
        r.approval_chain
            .steps
            .last_mut()
            .unwrap()
            .condition
            .only_over_cap = true;
        let err = r.validate("rules").unwrap_err();
        assert_eq!(err[0].field, "rules.approval_chain.steps[4].condition");
        r.approval_chain.steps.clear();
        assert_eq!(
            r.validate("rules").unwrap_err()[0].field,
            "rules.approval_chain.steps"
        );
    }

    #[test]
    fn conditional_steps() {
        let yuan = |y| Money::from_yuan(y).unwrap();
        let chain = ApprovalChain {
            steps: vec![
                step("officer", Role::CaseOfficer, StepCondition::default()),
                step(
                    "head",
                    Role::BureauHead,
                    StepCondition {
                        min_amount: Some(yuan(20_000)),
                        only_over_cap: false,
                    },
                ),
                step(
                    "extra",
                    Role::DeputyLeader,
                    StepCondition {
                        min_amount: None,
                        only_over_cap: true,
                    },
                ),
                step("leader", Role::DistrictLeader, StepCondition::default()),
            ],
        };
        let path = |amount: i64, over: bool| -> Vec<String> {
            chain
                .applicable_steps(yuan(amount), over)
                .map(|s| s.id.to_string())
                .collect()
        };
        assert_eq!(path(10_000, false), ["officer", "leader"]);
        assert_eq!(path(20_000, false), ["officer", "leader"]);
        assert_eq!(path(20_001, false), ["officer", "head", "leader"]);
        assert_eq!(path(60_000, true), ["officer", "head", "extra", "leader"]);
        let officer = StepId::parse("officer").unwrap();
        assert_eq!(
            chain
                .next_step(&officer, yuan(10), false)
                .map(|s| s.id.as_str()),
            Some("leader")
        );
        let leader = StepId::parse("leader").unwrap();
        assert!(chain.next_step(&leader, yuan(10), false).is_none());
        assert_eq!(
            chain.first_step(yuan(10), false).map(|s| s.id.as_str()),
            Some("officer")
        );
    }
}
