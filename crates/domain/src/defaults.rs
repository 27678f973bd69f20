//! The rules a district starts from: the seed district's (Wangcheng, 2022) fund management
//! rules, with the three eligibility categories and the five-step chain of docs/DOMAIN.md.

use crate::ids::{CategoryCode, StepId};
use crate::money::Money;
use crate::role::Role;
use crate::rules::{
    ApprovalChain, ApprovalStep, Category, FiscalYearBudget, FundRules, StepCondition,
};

/// 50,000 yuan, the soft cap per case (原则上不超过5万元).
pub const DEFAULT_CASE_CAP_FEN: i64 = 5_000_000;
/// The seed year's budget: 1,280,000 yuan.
pub const SEED_BUDGET_FEN: i64 = 128_000_000;
/// The seed year's quantity target: 48 cases.
pub const SEED_TARGET_CASES: u32 = 48;

fn code(s: &'static str) -> CategoryCode {
    // The literals below are valid codes; a failure here is a programming error caught by tests.
    CategoryCode::parse(s).unwrap_or_else(|_| unreachable!("invalid built-in category code {s}"))
}

fn step_id(s: &'static str) -> StepId {
    StepId::parse(s).unwrap_or_else(|_| unreachable!("invalid built-in step id {s}"))
}

/// The three eligibility categories of docs/DOMAIN.md.
pub fn default_categories() -> Vec<Category> {
    vec![
        Category {
            code: code("reasonable_without_legal_basis"),
            name: "于法无据、于情有理".to_owned(),
            description: "诉求于法无据但于情有理，通过救助能够息访罢诉".to_owned(),
        },
        Category {
            code: code("no_responsible_party"),
            name: "无责任主体或无力承担".to_owned(),
            description: "确需救助但无责任主体单位或责任主体单位无力承担，且不会引起攀比"
                .to_owned(),
        },
        Category {
            code: code("other_hardship"),
            name: "其他确需救助".to_owned(),
            description: "其他确需救助的情形".to_owned(),
        },
    ]
}

/// The seed's chain: 经办科室审查 → 分管领导复审 → 主要负责人审核 → 局党组研究 → 分管区领导审批.
pub fn default_chain() -> ApprovalChain {
    let s = |id, name: &str, role, deadline_days, batched| ApprovalStep {
        id: step_id(id),
        name: name.to_owned(),
        role,
        deadline_days,
        condition: StepCondition::default(),
        batched,
    };
    ApprovalChain {
        steps: vec![
            s(
                "case_officer_review",
                "经办科室审查",
                Role::CaseOfficer,
                5,
                false,
            ),
            s(
                "deputy_leader_review",
                "分管领导复审",
                Role::DeputyLeader,
                5,
                false,
            ),
            s(
                "bureau_head_review",
                "主要负责人审核",
                Role::BureauHead,
                5,
                false,
            ),
            s(
                "party_group_decision",
                "局党组研究",
                Role::BureauOffice,
                30,
                true,
            ),
            s(
                "district_leader_approval",
                "分管区领导审批",
                Role::DistrictLeader,
                10,
                false,
            ),
        ],
    }
}

/// The seed district's rules with a budget for `fiscal_year`.
pub fn seed_rules(fiscal_year: i32) -> FundRules {
    FundRules {
        case_cap: Money::from_fen(DEFAULT_CASE_CAP_FEN).unwrap_or(Money::ZERO),
        budgets: vec![FiscalYearBudget {
            fiscal_year,
            allocated: Money::from_fen(SEED_BUDGET_FEN).unwrap_or(Money::ZERO),
            target_case_count: SEED_TARGET_CASES,
        }],
        categories: default_categories(),
        repeat_relief_wait_days: 365,
        follow_up_after_days: vec![90, 180, 365],
        approval_chain: default_chain(),
        required_payment_documents: Vec::new(),
        grading: crate::rules::Grading::default(),
    }
}
