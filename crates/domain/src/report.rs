//! The yearly performance self-evaluation (绩效自评报告): the indicators as plain numbers,
//! the suggested grade from the district's rubric, and the report itself in the seed's
//! outline as Markdown and as standalone HTML with inline SVG charts. Everything here is
//! computed from the figures the store aggregates; nothing is typed in but the narrative.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::NaiveDate;

use crate::approval::BudgetBalance;
use crate::case::StateKind;
use crate::money::{FEN_PER_YUAN, Money};
use crate::rules::{ApprovalChain, ApprovalStep, Grading};

/// Basis points: 10,000 is 100%.
pub const BP: u64 = 10_000;
const SECS_PER_DAY: i64 = 86_400;

/// A share in basis points, 0 when there is nothing to share.
pub fn rate_bp(part: u64, whole: u64) -> u32 {
    if whole == 0 {
        return 0;
    }
    u32::try_from(u128::from(part) * u128::from(BP) / u128::from(whole)).unwrap_or(u32::MAX)
}

/// `123.4%` from basis points.
pub fn percent(bp: u32) -> String {
    format!("{}.{}%", bp / 100, (bp % 100) / 10)
}

/// Days with one decimal from seconds: `3.5`.
pub fn days(secs: i64) -> String {
    let tenths = (secs.max(0) * 10 + SECS_PER_DAY / 2) / SECS_PER_DAY;
    format!("{}.{}", tenths / 10, tenths % 10)
}

/// Mean and 90th percentile of durations in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DurationStats {
    pub count: u64,
    pub mean_secs: i64,
    pub p90_secs: i64,
}

impl DurationStats {
    /// From unsorted samples; the 90th percentile is the nearest-rank one.
    pub fn from_samples(mut samples: Vec<i64>) -> DurationStats {
        if samples.is_empty() {
            return DurationStats::default();
        }
        samples.sort_unstable();
        let n = samples.len();
        let sum: i128 = samples.iter().map(|s| i128::from(*s)).sum();
        let rank = (n * 9).div_ceil(10).max(1);
        DurationStats {
            count: n as u64,
            mean_secs: i64::try_from(sum / n as i128).unwrap_or(i64::MAX),
            p90_secs: samples[rank - 1],
        }
    }
}

/// Amount statistics over the cases approved or paid in the year.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AmountStats {
    pub cases: u64,
    pub total: Money,
    pub mean: Money,
    pub median: Money,
    pub largest: Money,
}

impl AmountStats {
    pub fn from_amounts(mut amounts: Vec<Money>) -> AmountStats {
        if amounts.is_empty() {
            return AmountStats::default();
        }
        amounts.sort_unstable();
        let n = amounts.len();
        let total = Money::sum(amounts.iter().copied()).unwrap_or(Money::ZERO);
        let mean = Money::from_fen(total.fen() / n as i64).unwrap_or(Money::ZERO);
        let median = if n % 2 == 1 {
            amounts[n / 2]
        } else {
            Money::from_fen((amounts[n / 2 - 1].fen() + amounts[n / 2].fen()) / 2)
                .unwrap_or(Money::ZERO)
        };
        AmountStats {
            cases: n as u64,
            total,
            mean,
            median,
            largest: amounts[n - 1],
        }
    }
}

/// Cases and money of one category or applicant unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRow {
    pub key: String,
    pub name: String,
    pub cases: u64,
    pub amount: Money,
}

/// Time spent at one step of the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepDuration {
    pub step_id: String,
    pub name: String,
    pub stats: DurationStats,
}

/// A case above the cap, with the justification it was approved on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverCapCase {
    pub case_id: String,
    pub amount: Money,
    pub justification: String,
}

/// Every figure of one district's fiscal year.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Indicators {
    pub district_id: String,
    pub district_name: String,
    pub fiscal_year: i32,
    /// The date the figures describe (today, or the year's end once it has passed).
    pub as_of: NaiveDate,
    pub budget: BudgetBalance,
    pub target_case_count: u32,
    pub case_cap: Money,
    /// The district's approval chain, which the report's process sentence describes.
    pub chain: ApprovalChain,
    /// Every case of the year by state, drafts included.
    pub cases_by_state: Vec<(StateKind, u64)>,
    /// The received applications (受理) by state: the cases submitted at least once. A draft
    /// never submitted, or withdrawn before it was, is not an application.
    pub submitted_by_state: Vec<(StateKind, u64)>,
    /// Cases paid (the quantity achieved).
    pub paid_cases: u64,
    /// Approved or paid cases: their amounts.
    pub amounts: AmountStats,
    pub over_cap: Vec<OverCapCase>,
    pub by_category: Vec<GroupRow>,
    pub by_unit: Vec<GroupRow>,
    pub step_durations: Vec<StepDuration>,
    pub submission_to_payment: DurationStats,
    /// Paid cases whose payment is dated within the fiscal year.
    pub paid_in_year: u64,
    /// Money paid per month of the fiscal year (index 0 is January).
    pub paid_by_month: [Money; 12],
    pub follow_ups_due: u64,
    pub follow_ups_done: u64,
    /// Paid cases whose recipient petitioned again.
    pub re_petitions: u64,
    pub returns: u64,
    pub rejections: u64,
    pub return_reasons: Vec<String>,
    pub rejection_reasons: Vec<String>,
}

impl Indicators {
    pub fn execution_rate_bp(&self) -> u32 {
        self.budget.execution_rate_bp()
    }

    pub fn quantity_rate_bp(&self) -> u32 {
        rate_bp(self.paid_cases, u64::from(self.target_case_count))
    }

    /// Share of paid cases paid within the year (时效).
    pub fn paid_in_year_bp(&self) -> u32 {
        if self.paid_cases == 0 {
            0
        } else {
            rate_bp(self.paid_in_year, self.paid_cases)
        }
    }

    /// Share of due follow-ups done; full when none was due yet.
    pub fn follow_up_coverage_bp(&self) -> u32 {
        if self.follow_ups_due == 0 {
            BP as u32
        } else {
            rate_bp(self.follow_ups_done, self.follow_ups_due)
        }
    }

    pub fn re_petition_rate_bp(&self) -> u32 {
        rate_bp(self.re_petitions, self.paid_cases)
    }

    pub fn state_count(&self, kind: StateKind) -> u64 {
        self.cases_by_state
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or(0, |(_, n)| *n)
    }

    /// Received applications (受理) in `kind`.
    pub fn received_count(&self, kind: StateKind) -> u64 {
        self.submitted_by_state
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or(0, |(_, n)| *n)
    }

    /// Every received application (受理) of the year.
    pub fn received(&self) -> u64 {
        self.submitted_by_state.iter().map(|(_, n)| n).sum()
    }
}

/// An amount as the report's prose writes it: whole 万元 as such (`2万元`), otherwise in
/// yuan (`12,345.50元`).
fn amount_phrase(m: Money) -> String {
    const FEN_PER_WAN: i64 = 10_000 * FEN_PER_YUAN;
    if m.fen() > 0 && m.fen() % FEN_PER_WAN == 0 {
        format!("{}万元", m.fen() / FEN_PER_WAN)
    } else {
        format!("{}元", m.to_yuan_string())
    }
}

/// One step as the process sentence names it: its name, and the cases it applies to when
/// not all (`局长审核（2万元以上）`, `分管领导复审（超过单案限额）`).
pub fn step_phrase(step: &ApprovalStep) -> String {
    let mut conditions = Vec::new();
    if let Some(min) = step.condition.min_amount {
        conditions.push(format!("{}以上", amount_phrase(min)));
    }
    if step.condition.only_over_cap {
        conditions.push("超过单案限额".to_owned());
    }
    if conditions.is_empty() {
        step.name.clone()
    } else {
        format!("{}（{}）", step.name, conditions.join("且"))
    }
}

/// The district's chain as the report's process sentence names it, step by step in order:
/// `经办科室审查、分管领导复审、…`.
pub fn process_phrase(chain: &ApprovalChain) -> String {
    chain
        .steps
        .iter()
        .map(step_phrase)
        .collect::<Vec<_>>()
        .join("、")
}

/// One scored group of indicators, in tenths of a point, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScoreLine {
    pub group: &'static str,
    pub max_tenths: u32,
    pub tenths: u32,
    pub basis: String,
}

/// The suggested grade (等级) and how it was reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Score {
    pub lines: Vec<ScoreLine>,
    pub total_tenths: u32,
    pub grade: &'static str,
}

fn part(points: u32, bp: u32) -> u32 {
    // Rounded to the nearest tenth of a point.
    u32::try_from((u64::from(points) * 10 * u64::from(bp.min(BP as u32)) + BP / 2) / BP)
        .unwrap_or(0)
}

/// Scores a year with `grading`: decision (the fund is set up: budget, target, cap), process
/// (execution rate and timeliness), output (quantity and compliance with the cap), effect
/// (no re-petition and follow-up coverage).
pub fn score(ind: &Indicators, grading: &Grading) -> Score {
    let set_up = [
        !ind.budget.allocated.is_zero(),
        ind.target_case_count > 0,
        !ind.case_cap.is_zero(),
    ];
    let decision_bp = rate_bp(set_up.iter().filter(|x| **x).count() as u64, 3);
    let process_bp = (ind.execution_rate_bp().min(BP as u32) / 2) + (ind.paid_in_year_bp() / 2);
    let approved = ind.amounts.cases;
    let justified = ind
        .over_cap
        .iter()
        .filter(|c| !c.justification.trim().is_empty())
        .count() as u64;
    let unjustified = ind.over_cap.len() as u64 - justified;
    let compliance_bp = if approved == 0 {
        BP as u32
    } else {
        rate_bp(approved - unjustified.min(approved), approved)
    };
    let output_bp = ind.quantity_rate_bp().min(BP as u32) / 2 + compliance_bp / 2;
    let effect_bp = if ind.paid_cases == 0 {
        0
    } else {
        let calm = BP as u32 - ind.re_petition_rate_bp().min(BP as u32);
        ((u64::from(calm) * 2 + u64::from(ind.follow_up_coverage_bp())) / 3) as u32
    };
    let lines = vec![
        ScoreLine {
            group: "决策",
            max_tenths: grading.decision_points * 10,
            tenths: part(grading.decision_points, decision_bp),
            basis: format!(
                "预算{}、数量目标{}件、单案限额{}元",
                if ind.budget.allocated.is_zero() {
                    "未设"
                } else {
                    "已设"
                },
                ind.target_case_count,
                ind.case_cap.to_yuan_string()
            ),
        },
        ScoreLine {
            group: "过程",
            max_tenths: grading.process_points * 10,
            tenths: part(grading.process_points, process_bp),
            basis: format!(
                "预算执行率{}，年内拨付占比{}",
                percent(ind.execution_rate_bp()),
                percent(ind.paid_in_year_bp())
            ),
        },
        ScoreLine {
            group: "产出",
            max_tenths: grading.output_points * 10,
            tenths: part(grading.output_points, output_bp),
            basis: format!(
                "数量目标完成率{}，超限额案件{}件（均有说明{}件）",
                percent(ind.quantity_rate_bp()),
                ind.over_cap.len(),
                justified
            ),
        },
        ScoreLine {
            group: "效益",
            max_tenths: grading.effect_points * 10,
            tenths: part(grading.effect_points, effect_bp),
            basis: format!(
                "再次上访率{}，跟踪回访覆盖率{}",
                percent(ind.re_petition_rate_bp()),
                percent(ind.follow_up_coverage_bp())
            ),
        },
    ];

    let total_tenths: u32 = lines.iter().map(|l| l.tenths).sum();
    let total = total_tenths / 10;
    let grade = if total >= grading.excellent_min {
        "优"
    } else if total >= grading.good_min {
        "良"
    } else if total >= grading.fair_min {
        "中"
    } else {
        "差"
    };
    Score {
        lines,
        total_tenths,
        grade,
    }
}

/// The narrative sections the bureau writes; each has a placeholder until written.
pub const NARRATIVE_SECTIONS: [(&str, &str); 7] = [
    ("overview", "预算支出概况"),
    ("evaluation_work", "绩效评价工作情况"),
    ("output", "预算支出产出情况"),
    ("effect", "预算支出效益情况"),
    ("experience", "主要经验做法"),
    ("problems", "存在的问题及原因分析"),
    ("suggestions", "有关工作建议"),
];

/// The bureau's own words for the report, by section key.
pub type Narrative = BTreeMap<String, String>;

fn narrative(n: &Narrative, key: &str) -> String {
    match n.get(key).map(|s| s.trim()).filter(|s| !s.is_empty()) {
        Some(text) => text.to_owned(),
        None => {
            let title = NARRATIVE_SECTIONS
                .iter()
                .find(|(k, _)| *k == key)
                .map_or(key, |(_, t)| t);
            format!("【待填写：{title}】")
        }
    }
}

fn yuan(m: Money) -> String {
    format!("{}元", m.to_yuan_string())
}

/// The report in Markdown, in the seed's outline.
pub fn render_markdown(ind: &Indicators, s: &Score, n: &Narrative) -> String {
    let mut o = String::new();
    let y = ind.fiscal_year;
    let b = &ind.budget;
    let _ = writeln!(
        o,
        "# {}{}年度信访救助资金绩效自评报告\n",
        ind.district_name, y
    );
    let _ = writeln!(
        o,
        "> 数据截至{}，由系统根据业务数据生成；叙述部分由局机关填写。\n",
        ind.as_of.format("%Y年%m月%d日")
    );
    let _ = writeln!(
        o,
        "## 一、预算支出基本情况\n\n### （一）预算支出概况\n\n{}\n",
        narrative(n, "overview")
    );
    let _ = writeln!(
        o,
        "{y}年区财政安排信访救助资金预算{}，已审批预留{}，已拨付{}，结余{}，预算执行率{}。\n",
        yuan(b.allocated),
        yuan(b.reserved),
        yuan(b.paid),
        yuan(b.available()),
        percent(ind.execution_rate_bp())
    );
    let _ = writeln!(o, "### （二）预算资金使用管理情况\n");
    let _ = write!(
        o,
        "全年受理救助申请{}件，其中已拨付{}件、审批通过待拨付{}件、审核中{}件、退回补正{}件、不予救助{}件、撤回{}件",
        ind.received(),
        ind.received_count(StateKind::Paid),
        ind.received_count(StateKind::Approved),
        ind.received_count(StateKind::InReview),
        ind.received_count(StateKind::Returned),
        ind.received_count(StateKind::Rejected),
        ind.received_count(StateKind::Withdrawn),
    );
    // A cancelled approval is rare; the sentence names it only when the year has one.
    let cancelled = ind.received_count(StateKind::Cancelled);
    if cancelled > 0 {
        let _ = write!(o, "、审批撤销{cancelled}件");
    }
    o.push('。');
    if !ind.chain.steps.is_empty() {
        let _ = write!(o, "每一案件均经{}，逐级留痕。", process_phrase(&ind.chain));
    }
    o.push_str("\n\n");
    let _ = writeln!(o, "### （三）预算支出绩效目标完成程度\n");
    let _ = writeln!(
        o,
        "数量目标{}件，完成{}件，完成率{}；预算{}，完成拨付{}；年内（截至{}年12月31日）拨付{}件，占已拨付案件的{}。\n",
        ind.target_case_count,
        ind.paid_cases,
        percent(ind.quantity_rate_bp()),
        yuan(b.allocated),
        yuan(b.paid),
        y,
        ind.paid_in_year,
        percent(ind.paid_in_year_bp())
    );
    let _ = writeln!(
        o,
        "## 二、绩效评价工作情况\n\n{}\n",
        narrative(n, "evaluation_work")
    );
    let _ = writeln!(o, "## 三、主要绩效及评价结论\n");
    let _ = writeln!(
        o,
        "按决策、过程、产出、效益四类指标评分，合计{}.{}分，建议评价等级为：**{}**。\n",
        s.total_tenths / 10,
        s.total_tenths % 10,
        s.grade
    );
    let _ = writeln!(
        o,
        "| 指标类别 | 分值 | 得分 | 评分依据 |\n| --- | ---: | ---: | --- |"
    );
    for l in &s.lines {
        let _ = writeln!(
            o,
            "| {} | {} | {}.{} | {} |",
            l.group,
            l.max_tenths / 10,
            l.tenths / 10,
            l.tenths % 10,
            l.basis
        );
    }
    let _ = writeln!(
        o,
        "\n## 四、绩效评价指标分析\n\n### （一）预算支出决策情况\n"
    );
    let _ = writeln!(
        o,
        "以小额救助为主、以基层申报为主、以属地救助为主，单案原则上不超过{}。全年审批救助金额合计{}，平均每件{}，中位数{}，最高一件{}；超过限额的案件{}件。\n",
        yuan(ind.case_cap),
        yuan(ind.amounts.total),
        yuan(ind.amounts.mean),
        yuan(ind.amounts.median),
        yuan(ind.amounts.largest),
        ind.over_cap.len()
    );
    for c in &ind.over_cap {
        let _ = writeln!(
            o,
            "- 案件{}：{}，超限额说明：{}",
            c.case_id,
            yuan(c.amount),
            c.justification
        );
    }
    if !ind.over_cap.is_empty() {
        o.push('\n');
    }
    let _ = writeln!(
        o,
        "### （二）预算执行过程情况\n\n各审核环节用时（天）：\n\n| 环节 | 件次 | 平均 | 90%分位 |\n| --- | ---: | ---: | ---: |"
    );
    for d in &ind.step_durations {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} |",
            d.name,
            d.stats.count,
            days(d.stats.mean_secs),
            days(d.stats.p90_secs)
        );
    }
    let _ = writeln!(
        o,
        "| 申报至拨付 | {} | {} | {} |\n",
        ind.submission_to_payment.count,
        days(ind.submission_to_payment.mean_secs),
        days(ind.submission_to_payment.p90_secs)
    );
    let _ = writeln!(
        o,
        "审核中退回补正{}次、不予救助{}件。",
        ind.returns, ind.rejections
    );
    for r in &ind.return_reasons {
        let _ = writeln!(o, "- 退回原因：{r}");
    }
    for r in &ind.rejection_reasons {
        let _ = writeln!(o, "- 不予救助原因：{r}");
    }
    let _ = writeln!(
        o,
        "\n### （三）预算支出产出情况\n\n{}\n",
        narrative(n, "output")
    );
    let _ = writeln!(o, "| 救助类别 | 件数 | 金额 |\n| --- | ---: | ---: |");
    for g in &ind.by_category {
        let _ = writeln!(o, "| {} | {} | {} |", g.name, g.cases, yuan(g.amount));
    }
    let _ = writeln!(o, "\n| 实施救助单位 | 件数 | 金额 |\n| --- | ---: | ---: |");
    for g in &ind.by_unit {
        let _ = writeln!(o, "| {} | {} | {} |", g.name, g.cases, yuan(g.amount));
    }
    let _ = writeln!(
        o,
        "\n### （四）预算支出效益情况\n\n{}\n",
        narrative(n, "effect")
    );
    let _ = writeln!(
        o,
        "已到期跟踪回访{}次，完成{}次，覆盖率{}；被救助对象再次上访{}人，再次上访率{}。\n",
        ind.follow_ups_due,
        ind.follow_ups_done,
        percent(ind.follow_up_coverage_bp()),
        ind.re_petitions,
        percent(ind.re_petition_rate_bp())
    );
    let _ = writeln!(
        o,
        "## 五、主要经验做法、存在的问题及原因分析\n\n### （一）主要经验做法\n\n{}\n",
        narrative(n, "experience")
    );
    let _ = writeln!(
        o,
        "### （二）存在的问题及原因分析\n\n{}\n",
        narrative(n, "problems")
    );
    let _ = writeln!(
        o,
        "## 六、有关工作建议\n\n{}\n",
        narrative(n, "suggestions")
    );
    let other = n
        .get("other")
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .unwrap_or("无。");
    let _ = writeln!(o, "## 七、其他需要说明的问题\n\n{other}");
    o
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Money paid per month, cumulative, against the budget line.
pub fn svg_monthly(ind: &Indicators) -> String {
    let (w, h, left, bottom) = (640i64, 260i64, 70i64, 30i64);
    let top = 20i64;
    let plot_h = h - top - bottom;
    let max = ind.budget.allocated.fen().max(ind.budget.paid.fen()).max(1);
    let y_of =
        |fen: i64| top + plot_h - (i128::from(fen) * i128::from(plot_h) / i128::from(max)) as i64;
    let step = (w - left - 10) / 12;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" role=\"img\" aria-label=\"按月累计拨付与预算\">"
    );
    let _ = write!(
        s,
        "<line x1=\"{left}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#999\"/>",
        top + plot_h,
        w - 10,
        top + plot_h
    );
    let by = y_of(ind.budget.allocated.fen());
    let _ = write!(
        s,
        "<line x1=\"{left}\" y1=\"{by}\" x2=\"{}\" y2=\"{by}\" stroke=\"#c0392b\" stroke-dasharray=\"6 4\"/><text x=\"{}\" y=\"{}\" font-size=\"12\" text-anchor=\"end\" fill=\"#c0392b\">预算 {}</text>",
        w - 10,
        w - 12,
        by - 4,
        esc(&yuan(ind.budget.allocated))
    );
    let mut cum: i64 = 0;
    for (i, m) in ind.paid_by_month.iter().enumerate() {
        cum += m.fen();
        let x = left + step * i as i64 + 4;
        let y = y_of(cum);
        let _ = write!(
            s,
            "<rect x=\"{x}\" y=\"{y}\" width=\"{}\" height=\"{}\" fill=\"#2e86c1\"><title>{}月累计 {}</title></rect><text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\">{}月</text>",
            step - 8,
            top + plot_h - y,
            i + 1,
            esc(&yuan(Money::from_fen(cum).unwrap_or_default())),
            x + (step - 8) / 2,
            h - 10,
            i + 1
        );
    }
    s.push_str("</svg>");
    s
}

/// Cases by category as horizontal bars.
pub fn svg_categories(ind: &Indicators) -> String {
    let rows = ind.by_category.len().max(1) as i64;
    let (w, row_h, label_w) = (640i64, 34i64, 200i64);
    let h = rows * row_h + 20;
    let max = ind
        .by_category
        .iter()
        .map(|g| g.cases)
        .max()
        .unwrap_or(1)
        .max(1) as i64;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" role=\"img\" aria-label=\"按救助类别统计件数\">"
    );
    for (i, g) in ind.by_category.iter().enumerate() {
        let y = 10 + i as i64 * row_h;
        let bar = (g.cases as i64) * (w - label_w - 80) / max;
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\" font-size=\"12\" text-anchor=\"end\">{}</text><rect x=\"{label_w}\" y=\"{y}\" width=\"{bar}\" height=\"{}\" fill=\"#27ae60\"/><text x=\"{}\" y=\"{}\" font-size=\"12\">{}件 / {}</text>",
            label_w - 8,
            y + row_h / 2 + 2,
            esc(&g.name),
            row_h - 10,
            label_w + bar + 6,
            y + row_h / 2 + 2,
            g.cases,
            esc(&yuan(g.amount))
        );
    }
    s.push_str("</svg>");
    s
}

/// Turns the report's Markdown (headings, paragraphs, tables, lists, bold) into HTML. The
/// Markdown is our own, so this handles exactly the forms `render_markdown` writes.
fn markdown_to_html(md: &str) -> String {
    let mut out = String::new();
    let mut in_table = false;
    let mut in_list = false;
    let inline = |t: &str| {
        let e = esc(t);
        let mut r = String::new();
        for (i, part) in e.split("**").enumerate() {
            if i % 2 == 1 {
                let _ = write!(r, "<strong>{part}</strong>");
            } else {
                r.push_str(part);
            }
        }
        r
    };
    for line in md.lines() {
        let t = line.trim();
        if in_table && !t.starts_with('|') {
            out.push_str("</tbody></table>\n");
            in_table = false;
        }
        if in_list && !t.starts_with("- ") {
            out.push_str("</ul>\n");
            in_list = false;
        }
        if let Some(h) = t.strip_prefix("### ") {
            let _ = writeln!(out, "<h3>{}</h3>", inline(h));
        } else if let Some(h) = t.strip_prefix("## ") {
            let _ = writeln!(out, "<h2>{}</h2>", inline(h));
        } else if let Some(h) = t.strip_prefix("# ") {
            let _ = writeln!(out, "<h1>{}</h1>", inline(h));
        } else if let Some(q) = t.strip_prefix("> ") {
            let _ = writeln!(out, "<p class=\"note\">{}</p>", inline(q));
        } else if let Some(item) = t.strip_prefix("- ") {
            if !in_list {
                out.push_str("<ul>\n");
                in_list = true;
            }
            let _ = writeln!(out, "<li>{}</li>", inline(item));
        } else if t.starts_with('|') {
            let cells: Vec<&str> = t.trim_matches('|').split('|').map(str::trim).collect();
            if cells
                .iter()
                .all(|c| c.chars().all(|ch| ch == '-' || ch == ':'))
            {
                continue;
            }
            if !in_table {
                out.push_str("<table><thead><tr>");
                for c in &cells {
                    let _ = write!(out, "<th>{}</th>", inline(c));
                }
                out.push_str("</tr></thead><tbody>\n");
                in_table = true;
            } else {
                out.push_str("<tr>");
                for c in &cells {
                    let _ = write!(out, "<td>{}</td>", inline(c));
                }
                out.push_str("</tr>\n");
            }
        } else if !t.is_empty() {
            let _ = writeln!(out, "<p>{}</p>", inline(t));
        }
    }
    if in_table {
        out.push_str("</tbody></table>\n");
    }
    if in_list {
        out.push_str("</ul>\n");
    }
    out
}

/// The report as one standalone HTML file: styles inline, two SVG charts, no external links.
pub fn render_html(ind: &Indicators, s: &Score, n: &Narrative) -> String {
    let body = markdown_to_html(&render_markdown(ind, s, n));
    let charts = format!(
        "<section class=\"charts\"><h2>图表</h2><figure>{}<figcaption>图1 {}年按月累计拨付金额与预算</figcaption></figure><figure>{}<figcaption>图2 按救助类别统计的件数与金额</figcaption></figure></section>",
        svg_monthly(ind),
        ind.fiscal_year,
        svg_categories(ind)
    );
    format!(
        "<!DOCTYPE html>\n<html lang=\"zh-CN\"><head><meta charset=\"utf-8\"><title>{}{}年度信访救助资金绩效自评报告</title><style>body{{font-family:\"Noto Serif CJK SC\",\"Songti SC\",serif;max-width:860px;margin:2em auto;line-height:1.7;color:#222}}table{{border-collapse:collapse;margin:1em 0}}th,td{{border:1px solid #999;padding:4px 10px}}td:nth-child(n+2){{text-align:right}}.note{{color:#666;font-size:.9em}}figure{{margin:1.5em 0}}figcaption{{text-align:center;font-size:.9em;color:#444}}</style></head><body>\n{}{}\n</body></html>\n",
        esc(&ind.district_name),
        ind.fiscal_year,
        body,
        charts
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn m(yuan: i64) -> Money {
        Money::from_yuan(yuan).unwrap()
    }

    pub(crate) fn seed_like() -> Indicators {
        let mut by_month = [Money::ZERO; 12];
        by_month[5] = m(640_000);
        by_month[11] = m(640_000);
        Indicators {
            district_id: "430112".into(),
            district_name: "望城区".into(),
            fiscal_year: 2022,
            as_of: NaiveDate::from_ymd_opt(2022, 12, 31).unwrap(),
            budget: BudgetBalance {
                allocated: m(1_280_000),
                reserved: Money::ZERO,
                paid: m(1_280_000),
            },
            target_case_count: 48,
            case_cap: m(50_000),
            chain: crate::defaults::default_chain(),
            cases_by_state: vec![(StateKind::Paid, 48)],
            submitted_by_state: vec![(StateKind::Paid, 48)],
            paid_cases: 48,
            amounts: AmountStats::from_amounts(
                vec![m(26_000); 32]
                    .into_iter()
                    .chain(vec![m(28_000); 16])
                    .collect(),
            ),
            over_cap: vec![],
            by_category: vec![GroupRow {
                key: "a".into(),
                name: "于法无据、于情有理".into(),
                cases: 48,
                amount: m(1_280_000),
            }],
            by_unit: vec![],
            step_durations: vec![],
            submission_to_payment: DurationStats::from_samples(vec![86_400 * 10, 86_400 * 20]),
            paid_in_year: 48,
            paid_by_month: by_month,
            follow_ups_due: 48,
            follow_ups_done: 48,
            re_petitions: 0,
            returns: 0,
            rejections: 0,
            return_reasons: vec![],
            rejection_reasons: vec![],
        }
    }

    #[test]
    fn stats() {
        assert_eq!(rate_bp(1, 3), 3333);
        assert_eq!(rate_bp(5, 0), 0);
        assert_eq!(percent(10_000), "100.0%");
        assert_eq!(percent(3333), "33.3%");
        assert_eq!(days(86_400 * 3 / 2), "1.5");
        let d = DurationStats::from_samples((1..=10).collect());
        assert_eq!((d.count, d.mean_secs, d.p90_secs), (10, 5, 9));
        let a = AmountStats::from_amounts(vec![m(3), m(1), m(2), m(10)]);
        assert_eq!(
            (a.total, a.mean, a.median, a.largest),
            (m(16), m(4), Money::from_fen(250).unwrap(), m(10))
        );
        assert_eq!(AmountStats::from_amounts(vec![]), AmountStats::default());
    }

    #[test]
    fn the_seed_year_scores_excellent() {
        let ind = seed_like();
        let s = score(&ind, &Grading::default());
        assert_eq!(s.total_tenths, 1000);
        assert_eq!(s.grade, "优");
    }

    #[test]
    fn a_weak_year_scores_lower_and_thresholds_move() {
        let mut ind = seed_like();
        ind.paid_cases = 24;
        ind.paid_in_year = 24;
        ind.budget.paid = m(640_000);
        ind.re_petitions = 6;
        let s = score(&ind, &Grading::default());
        // process 10+10=20→ execution 50% gives 5 + 10; output 7.5 + 15; effect 30*(2/3*0.75+1/3)
        assert_eq!(
            s.lines.iter().map(|l| l.tenths).collect::<Vec<_>>(),
            [200, 150, 225, 250]
        );
        assert_eq!(s.grade, "良");
        let strict = Grading {
            excellent_min: 95,
            good_min: 90,
            fair_min: 85,
            ..Grading::default()
        };
        assert_eq!(score(&ind, &strict).grade, "差");
        let empty = Indicators {
            paid_cases: 0,
            paid_in_year: 0,
            amounts: AmountStats::default(),
            budget: BudgetBalance {
                allocated: m(1),
                ..Default::default()
            },
            ..seed_like()
        };
        assert_eq!(score(&empty, &Grading::default()).lines[3].tenths, 0);
    }

    #[test]
    fn markdown_follows_the_outline_and_marks_missing_narrative() {
        let ind = seed_like();
        let s = score(&ind, &Grading::default());
        let mut n = Narrative::new();
        n.insert("experience".into(), "一是领导重视。".into());
        let md = render_markdown(&ind, &s, &n);
        let order = [
            "一、预算支出基本情况",
            "二、绩效评价工作情况",
            "三、主要绩效及评价结论",
            "四、绩效评价指标分析",
            "五、主要经验做法、存在的问题及原因分析",
            "六、有关工作建议",
            "七、其他需要说明的问题",
        ];
        let mut at = 0;
        for h in order {
            let i = md[at..]
                .find(h)
                .map(|i| i + at)
                .unwrap_or_else(|| panic!("{h} missing or out of order"));
            at = i;
        }
        assert!(md.contains("一是领导重视。"));
        assert!(md.contains("【待填写：存在的问题及原因分析】"));
        assert!(md.contains("1,280,000.00元"));
        assert!(md.contains("**优**"));
        let html = render_html(&ind, &s, &n);
        assert_eq!(html.matches("<svg").count(), 2);
        assert!(
            !html.contains("http://")
                || html.matches("http://").count()
                    == html.matches("xmlns=\"http://www.w3.org/2000/svg\"").count()
        );
        assert!(html.contains("<table>"));
    }

    #[test]
    fn the_process_sentence_is_the_districts_chain() {
        use crate::ids::StepId;
        use crate::role::Role;
        use crate::rules::StepCondition;

        let ind = seed_like();
        let md = render_markdown(&ind, &score(&ind, &Grading::default()), &Narrative::new());
        assert!(
            md.contains(
                "每一案件均经经办科室审查、分管领导复审、主要负责人审核、局党组研究、分管区领导审批，逐级留痕。"
            ),
            "{md}"
        );

        let step = |id: &str, name: &str, role, condition| ApprovalStep {
            id: StepId::parse(id).unwrap(),
            name: name.to_owned(),
            role,
            deadline_days: 5,
            condition,
            batched: false,
        };
        let chain = ApprovalChain {
            steps: vec![
                step(
                    "officer",
                    "经办科室审查",
                    Role::CaseOfficer,
                    StepCondition::default(),
                ),
                step(
                    "head",
                    "局长审核",
                    Role::BureauHead,
                    StepCondition {
                        min_amount: Some(m(20_000)),
                        only_over_cap: false,
                    },
                ),
                step(
                    "deputy",
                    "分管领导复审",
                    Role::DeputyLeader,
                    StepCondition {
                        min_amount: None,
                        only_over_cap: true,
                    },
                ),
                step(
                    "both",
                    "集体研究",
                    Role::BureauOffice,
                    StepCondition {
                        min_amount: Some(Money::from_fen(1_234_550).unwrap()),
                        only_over_cap: true,
                    },
                ),
                step(
                    "leader",
                    "分管区领导审批",
                    Role::DistrictLeader,
                    StepCondition::default(),
                ),
            ],
        };
        assert_eq!(
            process_phrase(&chain),
            "经办科室审查、局长审核（2万元以上）、分管领导复审（超过单案限额）、集体研究（12,345.50元以上且超过单案限额）、分管区领导审批"
        );
        let ind = Indicators {
            chain,
            ..seed_like()
        };
        let md = render_markdown(&ind, &score(&ind, &Grading::default()), &Narrative::new());
        assert!(md.contains("每一案件均经经办科室审查、局长审核（2万元以上）、分管领导复审（超过单案限额）、集体研究（12,345.50元以上且超过单案限额）、分管区领导审批，逐级留痕。"));
        assert!(!md.contains("主要负责人审核"));
    }

    #[test]
    fn received_applications_are_the_submitted_cases() {
        let ind = Indicators {
            cases_by_state: vec![
                (StateKind::Draft, 5),
                (StateKind::InReview, 2),
                (StateKind::Withdrawn, 3),
                (StateKind::Paid, 48),
            ],
            submitted_by_state: vec![
                (StateKind::InReview, 2),
                (StateKind::Withdrawn, 1),
                (StateKind::Paid, 48),
            ],
            ..seed_like()
        };
        assert_eq!(ind.received(), 51);
        let md = render_markdown(&ind, &score(&ind, &Grading::default()), &Narrative::new());
        assert!(
            md.contains("全年受理救助申请51件，其中已拨付48件、审批通过待拨付0件、审核中2件、退回补正0件、不予救助0件、撤回1件。"),
            "{md}"
        );
    }

    #[test]
    fn cancelled_approvals_are_named_when_there_are_some() {
        let ind = Indicators {
            cases_by_state: vec![(StateKind::Paid, 48), (StateKind::Cancelled, 2)],
            submitted_by_state: vec![(StateKind::Paid, 48), (StateKind::Cancelled, 2)],
            ..seed_like()
        };
        assert_eq!(ind.received(), 50);
        let md = render_markdown(&ind, &score(&ind, &Grading::default()), &Narrative::new());
        assert!(
            md.contains("其中已拨付48件、审批通过待拨付0件、审核中0件、退回补正0件、不予救助0件、撤回0件、审批撤销2件。"),
            "{md}"
        );
    }
}
