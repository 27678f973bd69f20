//! Fund rules and districts, wire ↔ domain.

use relief_domain::rules::{
    ApprovalChain, ApprovalStep, Category, FiscalYearBudget, Grading, ListSizes, StepCondition,
};
use relief_domain::{CategoryCode, FundRules, Money, StepId, Violation, Violations};
use relief_proto::v1 as pb;
use relief_store::DistrictRecord;

use super::{role_from_pb, role_to_pb, timestamp};

fn non_negative_u32(v: &mut Violations, field: String, value: i32) -> u32 {
    v.check(
        field,
        u32::try_from(value).map_err(|_| "must not be negative"),
    )
    .unwrap_or(0)
}

/// Reads fund rules off the wire and validates them as a whole; paths start at `prefix`.
pub fn rules_from_pb(
    rules: Option<&pb::FundRules>,
    prefix: &str,
) -> Result<FundRules, Vec<Violation>> {
    let Some(r) = rules else {
        return Err(vec![Violation::new(prefix, "is required")]);
    };
    // Counted before any element is looked at: too many are refused once, not each.
    let sizes = ListSizes {
        budgets: r.budgets.len(),
        categories: r.categories.len(),
        follow_ups: r.follow_up_after_days.len(),
        payment_documents: r.required_payment_documents.len(),
        steps: r.approval_chain.as_ref().map_or(0, |c| c.steps.len()),
    }
    .check(prefix);
    if !sizes.is_empty() {
        return Err(sizes);
    }
    let mut v = Violations::new();
    let f = |name: &str| format!("{prefix}.{name}");
    let case_cap = v
        .check(f("case_cap_fen"), Money::from_fen(r.case_cap_fen))
        .unwrap_or(Money::ZERO);
    let mut budgets = Vec::new();
    for (i, b) in r.budgets.iter().enumerate() {
        let allocated = v
            .check(
                f(&format!("budgets[{i}].allocated_fen")),
                Money::from_fen(b.allocated_fen),
            )
            .unwrap_or(Money::ZERO);
        let target_case_count = non_negative_u32(
            &mut v,
            f(&format!("budgets[{i}].target_case_count")),
            b.target_case_count,
        );
        budgets.push(FiscalYearBudget {
            fiscal_year: b.fiscal_year,
            allocated,
            target_case_count,
        });
    }
    let mut categories = Vec::new();
    for (i, c) in r.categories.iter().enumerate() {
        if let Some(code) = v.check(
            f(&format!("categories[{i}].code")),
            CategoryCode::parse(&c.code),
        ) {
            categories.push(Category {
                code,
                name: c.name.clone(),
                description: c.description.clone(),
            });
        }
    }
    let repeat_relief_wait_days = non_negative_u32(
        &mut v,
        f("repeat_relief_wait_days"),
        r.repeat_relief_wait_days,
    );
    let follow_up_after_days = r
        .follow_up_after_days
        .iter()
        .enumerate()
        .map(|(i, d)| non_negative_u32(&mut v, f(&format!("follow_up_after_days[{i}]")), *d))
        .collect();
    let mut steps = Vec::new();
    let chain = r.approval_chain.clone().unwrap_or_default();
    for (i, s) in chain.steps.iter().enumerate() {
        let sf = |name: &str| f(&format!("approval_chain.steps[{i}].{name}"));
        let id = v.check(sf("step_id"), StepId::parse(&s.step_id));
        let role = role_from_pb(s.role);
        if role.is_none() {
            v.add(sf("role"), "is required");
        }
        let deadline_days = non_negative_u32(&mut v, sf("deadline_days"), s.deadline_days);
        let cond = s.condition.unwrap_or_default();
        let min_amount = match cond.min_amount_fen {
            0 => None,
            m => v.check(sf("condition.min_amount_fen"), Money::from_fen(m)),
        };
        if let (Some(id), Some(role)) = (id, role) {
            steps.push(ApprovalStep {
                id,
                name: s.name.clone(),
                role,
                deadline_days,
                condition: StepCondition {
                    min_amount,
                    only_over_cap: cond.only_over_cap,
                },
                batched: s.batched,
            });
        }
    }
    let grading = match &r.grading {
        None => Grading::default(),
        Some(g) => Grading {
            decision_points: non_negative_u32(
                &mut v,
                f("grading.decision_points"),
                g.decision_points,
            ),
            process_points: non_negative_u32(&mut v, f("grading.process_points"), g.process_points),
            output_points: non_negative_u32(&mut v, f("grading.output_points"), g.output_points),
            effect_points: non_negative_u32(&mut v, f("grading.effect_points"), g.effect_points),
            excellent_min: non_negative_u32(&mut v, f("grading.excellent_min"), g.excellent_min),
            good_min: non_negative_u32(&mut v, f("grading.good_min"), g.good_min),
            fair_min: non_negative_u32(&mut v, f("grading.fair_min"), g.fair_min),
        },
    };
    let rules = FundRules {
        grading,
        case_cap,
        budgets,
        categories,
        repeat_relief_wait_days,
        follow_up_after_days,
        approval_chain: ApprovalChain { steps },
        required_payment_documents: r
            .required_payment_documents
            .iter()
            .map(|d| d.trim().to_owned())
            .collect(),
    };
    if !v.is_empty() {
        return Err(v.into_vec());
    }
    rules.validate(prefix)?;
    Ok(rules)
}

pub fn rules_to_pb(r: &FundRules) -> pb::FundRules {
    let clamp = |d: u32| i32::try_from(d).unwrap_or(i32::MAX);
    let g = &r.grading;
    pb::FundRules {
        grading: Some(pb::Grading {
            decision_points: clamp(g.decision_points),
            process_points: clamp(g.process_points),
            output_points: clamp(g.output_points),
            effect_points: clamp(g.effect_points),
            excellent_min: clamp(g.excellent_min),
            good_min: clamp(g.good_min),
            fair_min: clamp(g.fair_min),
        }),
        case_cap_fen: r.case_cap.fen(),
        budgets: r
            .budgets
            .iter()
            .map(|b| pb::FiscalYearBudget {
                fiscal_year: b.fiscal_year,
                allocated_fen: b.allocated.fen(),
                target_case_count: clamp(b.target_case_count),
            })
            .collect(),
        categories: r
            .categories
            .iter()
            .map(|c| pb::EligibilityCategory {
                code: c.code.to_string(),
                name: c.name.clone(),
                description: c.description.clone(),
            })
            .collect(),
        repeat_relief_wait_days: clamp(r.repeat_relief_wait_days),
        follow_up_after_days: r.follow_up_after_days.iter().map(|d| clamp(*d)).collect(),
        approval_chain: Some(pb::ApprovalChain {
            steps: r
                .approval_chain
                .steps
                .iter()
                .map(|s| pb::ApprovalStep {
                    step_id: s.id.to_string(),
                    name: s.name.clone(),
                    role: role_to_pb(s.role).into(),
                    deadline_days: clamp(s.deadline_days),
                    condition: (!s.condition.is_unconditional()).then(|| pb::StepCondition {
                        min_amount_fen: s.condition.min_amount.map_or(0, Money::fen),
                        only_over_cap: s.condition.only_over_cap,
                    }),
                    batched: s.batched,
                })
                .collect(),
        }),
        required_payment_documents: r.required_payment_documents.clone(),
    }
}

pub fn district_to_pb(d: &DistrictRecord) -> pb::District {
    pb::District {
        district_id: d.id.to_string(),
        name: d.name.clone(),
        rules: Some(rules_to_pb(&d.rules)),
        rules_version: d.rules_version,
        create_time: Some(timestamp(d.created_at)),
        update_time: Some(timestamp(d.updated_at)),
    }
}
