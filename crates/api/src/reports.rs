//! ReportService: the year's indicators, the self-evaluation report drafted from them, the
//! bureau's narrative, CSV exports for the finance bureau, and the city's comparison of its
//! districts.

use chrono::NaiveDate;
use relief_domain::privacy::Field;
use relief_domain::report::{
    Indicators, NARRATIVE_SECTIONS, Score, render_html, render_markdown, score,
};
use relief_domain::{Money, Role};
use relief_proto::v1 as pb;
use relief_proto::v1::report_service_server::ReportService;
use relief_store::DistrictRecord;
use tonic::{Request, Response, Status};

use crate::auth::{Caller, CaseVisibility};
use crate::cases::handle;
use crate::convert::state_to_pb;
use crate::disbursements::payment_views;
use crate::error::{ApiError, ApiResult};
use crate::{ApiContext, Begun, commit};

const MAX_NARRATIVE_CHARS: usize = 10_000;

#[derive(Debug, Clone)]
pub struct ReportApi {
    ctx: ApiContext,
}

fn check_year(year: i32) -> ApiResult<i32> {
    if (2000..=2100).contains(&year) {
        Ok(year)
    } else {
        Err(ApiError::invalid(
            "fiscal_year",
            "must be between 2000 and 2100",
        ))
    }
}

fn i32_of(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn i64_of(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn indicators_to_pb(ind: &Indicators) -> pb::Indicators {
    let group = |g: &relief_domain::report::GroupRow| pb::GroupFigure {
        key: g.key.clone(),
        name: g.name.clone(),
        cases: i64_of(g.cases),
        amount_fen: g.amount.fen(),
    };
    let time = |id: &str, name: &str, s: &relief_domain::report::DurationStats| pb::StepTime {
        step_id: id.to_owned(),
        name: name.to_owned(),
        count: i64_of(s.count),
        mean_seconds: s.mean_secs,
        p90_seconds: s.p90_secs,
    };
    pb::Indicators {
        district_id: ind.district_id.clone(),
        district_name: ind.district_name.clone(),
        fiscal_year: ind.fiscal_year,
        as_of_date: ind.as_of.format("%Y-%m-%d").to_string(),
        allocated_fen: ind.budget.allocated.fen(),
        reserved_fen: ind.budget.reserved.fen(),
        paid_fen: ind.budget.paid.fen(),
        unused_fen: ind.budget.available().fen(),
        execution_rate_bp: i32_of(ind.execution_rate_bp()),
        cases_by_state: ind
            .cases_by_state
            .iter()
            .map(|(k, n)| pb::StateCount {
                state: state_to_pb(*k).into(),
                count: i64_of(*n),
            })
            .collect(),
        target_case_count: i32_of(ind.target_case_count),
        achieved_case_count: i64_of(ind.paid_cases),
        approved_case_count: i64_of(ind.amounts.cases),
        total_amount_fen: ind.amounts.total.fen(),
        mean_amount_fen: ind.amounts.mean.fen(),
        median_amount_fen: ind.amounts.median.fen(),
        largest_amount_fen: ind.amounts.largest.fen(),
        over_cap: ind
            .over_cap
            .iter()
            .map(|c| pb::OverCapFigure {
                case_id: c.case_id.clone(),
                amount_fen: c.amount.fen(),
                justification: c.justification.clone(),
            })
            .collect(),
        by_category: ind.by_category.iter().map(group).collect(),
        by_applicant_unit: ind.by_unit.iter().map(group).collect(),
        step_times: ind
            .step_durations
            .iter()
            .map(|d| time(&d.step_id, &d.name, &d.stats))
            .collect(),
        submission_to_payment: Some(time(
            "submission_to_payment",
            "申报至拨付",
            &ind.submission_to_payment,
        )),
        paid_in_year_bp: i32_of(ind.paid_in_year_bp()),
        follow_ups_due: i64_of(ind.follow_ups_due),
        follow_ups_done: i64_of(ind.follow_ups_done),
        follow_up_coverage_bp: i32_of(ind.follow_up_coverage_bp()),
        re_petitions: i64_of(ind.re_petitions),
        re_petition_rate_bp: i32_of(ind.re_petition_rate_bp()),
        returns: i64_of(ind.returns),
        rejections: i64_of(ind.rejections),
        return_reasons: ind.return_reasons.clone(),
        rejection_reasons: ind.rejection_reasons.clone(),
        paid_by_month_fen: ind.paid_by_month.iter().map(|m| m.fen()).collect(),
    }
}

fn score_lines(s: &Score) -> Vec<pb::ScoreLine> {
    s.lines
        .iter()
        .map(|l| pb::ScoreLine {
            group: l.group.to_owned(),
            max_points_tenths: i32_of(l.max_tenths),
            points_tenths: i32_of(l.tenths),
            basis: l.basis.clone(),
        })
        .collect()
}

/// The columns of the case export.
const CASE_COLUMNS: [&str; 11] = [
    "case_id",
    "applicant_unit",
    "recipient_name",
    "resident_id_number",
    "category",
    "requested_yuan",
    "approved_yuan",
    "state",
    "over_cap",
    "submitted_date",
    "petitioned_again",
];

/// Rows per message of a streamed export.
const STREAM_CHUNK_ROWS: usize = 500;

fn csv_of<const N: usize>(header: Option<&[&str; N]>, rows: Vec<Vec<String>>) -> ApiResult<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let internal = |e: csv::Error| ApiError::Internal(format!("csv: {e}"));
    if let Some(header) = header {
        w.write_record(header).map_err(internal)?;
    }
    for r in rows {
        w.write_record(&r).map_err(internal)?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| ApiError::Internal(format!("csv: {e}")))?;
    String::from_utf8(bytes).map_err(|e| ApiError::Internal(format!("csv: {e}")))
}

impl ReportApi {
    pub fn new(ctx: ApiContext) -> Self {
        Self { ctx }
    }

    /// The date a year's figures describe: today, or the year's last day once it is over.
    fn as_of(&self, year: i32) -> NaiveDate {
        let today = self.ctx.clock.now().date_naive();
        NaiveDate::from_ymd_opt(year, 12, 31).map_or(today, |end| today.min(end))
    }

    async fn district_for_read(&self, caller: &Caller) -> ApiResult<DistrictRecord> {
        let district = caller.district()?.clone();
        if caller.case_visibility()? != CaseVisibility::District {
            return Err(ApiError::denied(
                "only the bureau and auditors read reports",
            ));
        }
        self.ctx
            .store
            .district(&district)
            .await?
            .ok_or(ApiError::NotFound("district"))
    }

    async fn figures(&self, d: &DistrictRecord, year: i32) -> ApiResult<(Indicators, Score)> {
        let ind = self.ctx.store.indicators(d, year, self.as_of(year)).await?;
        let s = score(&ind, &d.rules.grading);
        Ok((ind, s))
    }

    async fn get_indicators(
        &self,
        caller: Caller,
        req: pb::GetIndicatorsRequest,
    ) -> ApiResult<pb::GetIndicatorsResponse> {
        let year = check_year(req.fiscal_year)?;
        let d = self.district_for_read(&caller).await?;
        let (ind, _) = self.figures(&d, year).await?;
        Ok(pb::GetIndicatorsResponse {
            indicators: Some(indicators_to_pb(&ind)),
        })
    }

    async fn render(
        &self,
        caller: Caller,
        req: pb::RenderSelfEvaluationRequest,
    ) -> ApiResult<pb::RenderSelfEvaluationResponse> {
        let year = check_year(req.fiscal_year)?;
        let d = self.district_for_read(&caller).await?;
        let (ind, s) = self.figures(&d, year).await?;
        let narrative = self.ctx.store.narrative(&d.id, year).await?;
        Ok(pb::RenderSelfEvaluationResponse {
            markdown: render_markdown(&ind, &s, &narrative),
            html: render_html(&ind, &s, &narrative),
            grade: s.grade.to_owned(),
            score_tenths: i32_of(s.total_tenths),
            score_lines: score_lines(&s),
            indicators: Some(indicators_to_pb(&ind)),
        })
    }

    async fn update_narrative(
        &self,
        caller: Caller,
        req: pb::UpdateReportNarrativeRequest,
    ) -> ApiResult<pb::UpdateReportNarrativeResponse> {
        if caller.is_city() {
            return Err(ApiError::denied(
                "the narrative is written with a district-scoped token",
            ));
        }
        let district = caller.district()?.clone();
        let role = [Role::BureauHead, Role::BureauOffice]
            .into_iter()
            .find(|r| caller.has_role(*r))
            .ok_or_else(|| {
                ApiError::denied("the narrative is written by the bureau head or the bureau office")
            })?;
        let key =
            self.ctx
                .idempotency_key(&caller, "UpdateReportNarrative", &req.request_id, &req)?;
        let year = check_year(req.fiscal_year)?;
        let known =
            NARRATIVE_SECTIONS.iter().any(|(k, _)| *k == req.section) || req.section == "other";
        if !known {
            return Err(ApiError::invalid(
                "section",
                "must be overview, evaluation_work, output, effect, experience, problems, suggestions or other",
            ));
        }
        let text = req.text.trim();
        if text.chars().count() > MAX_NARRATIVE_CHARS {
            return Err(ApiError::invalid(
                "text",
                format_args!("must be at most {MAX_NARRATIVE_CHARS} characters"),
            ));
        }
        let mut tx = match self.ctx.begin(Some(&district), &caller, role, &key).await? {
            Begun::Replayed(resp) => return Ok(resp),
            Begun::Fresh(tx) => *tx,
        };
        tx.set_narrative(&district, year, &req.section, text)
            .await?;
        let resp = pb::UpdateReportNarrativeResponse {
            section: req.section.clone(),
            text: text.to_owned(),
        };
        commit(tx, &key, &resp).await?;
        Ok(resp)
    }

    async fn export_cases(
        &self,
        caller: Caller,
        req: pb::ExportCasesRequest,
    ) -> ApiResult<pb::ExportCasesResponse> {
        let rows = self.case_rows(&caller, req.fiscal_year).await?;
        let n = rows.len();
        let csv = csv_of(Some(&CASE_COLUMNS), rows)?;
        Ok(pb::ExportCasesResponse {
            csv,
            rows: i64_of(n as u64),
        })
    }

    /// The chunks of StreamCaseExport: the header with the first rows, then the rest in
    /// chunks of [`STREAM_CHUNK_ROWS`].
    async fn case_export_chunks(
        &self,
        caller: Caller,
        req: pb::StreamCaseExportRequest,
    ) -> ApiResult<Vec<pb::StreamCaseExportResponse>> {
        let mut rows = self.case_rows(&caller, req.fiscal_year).await?;
        let mut chunks = Vec::new();
        let mut first = true;
        loop {
            let rest = rows.split_off(rows.len().min(STREAM_CHUNK_ROWS));
            let n = rows.len();
            let header = if first { Some(&CASE_COLUMNS) } else { None };
            chunks.push(pb::StreamCaseExportResponse {
                csv: csv_of(header, std::mem::replace(&mut rows, rest))?,
                rows: i64_of(n as u64),
            });
            first = false;
            if rows.is_empty() {
                return Ok(chunks);
            }
        }
    }

    /// The year's cases as CSV rows in [`CASE_COLUMNS`] order, masked for the caller.
    async fn case_rows(&self, caller: &Caller, fiscal_year: i32) -> ApiResult<Vec<Vec<String>>> {
        let year = check_year(fiscal_year)?;
        let d = self.district_for_read(caller).await?;
        let mut cases = self.ctx.store.cases_of_year(&d.id, year).await?;
        cases.sort_by_key(|c| c.id);
        let rows: Vec<Vec<String>> = cases
            .iter()
            .map(|c| {
                let a = &c.application;
                let rid = a
                    .recipient
                    .resident_id
                    .as_ref()
                    .map(|r| caller.case_view(c).show(Field::ResidentId, r.as_str()))
                    .unwrap_or_default();
                let yuan = |m: Option<Money>| {
                    m.map(|m| m.to_yuan_string().replace(',', ""))
                        .unwrap_or_default()
                };
                vec![
                    c.id.to_string(),
                    c.applicant_unit_id.to_string(),
                    a.recipient.name.clone(),
                    rid,
                    a.category
                        .as_ref()
                        .map(ToString::to_string)
                        .unwrap_or_default(),
                    yuan(Some(a.requested_amount)),
                    yuan(c.approved_amount),
                    c.state.kind().as_str().to_owned(),
                    c.over_cap.to_string(),
                    c.submitted_at
                        .map(|t| t.format("%Y-%m-%d").to_string())
                        .unwrap_or_default(),
                    c.petitioned_again.to_string(),
                ]
            })
            .collect();
        Ok(rows)
    }

    async fn export_payments(
        &self,
        caller: Caller,
        req: pb::ExportPaymentsRequest,
    ) -> ApiResult<pb::ExportPaymentsResponse> {
        let year = check_year(req.fiscal_year)?;
        let d = self.district_for_read(&caller).await?;
        let mut all = Vec::new();
        let mut offset = 0;
        loop {
            let batch = self
                .ctx
                .store
                .payments(&d.id, None, Some(year), offset, 1000)
                .await?;
            let n = batch.len() as u64;
            all.extend(batch);
            if n < 1000 {
                break;
            }
            offset += n;
        }
        all.sort_by(|a, b| {
            a.created_at
                .cmp(&b.created_at)
                .then_with(|| a.id.cmp(&b.id))
        });
        let views = payment_views(&self.ctx, &caller, &d.id, &all).await?;
        let rows: Vec<Vec<String>> = all
            .iter()
            .map(|p| {
                let (reference, date, reason) = match &p.state {
                    relief_domain::payment::PaymentState::Pending => {
                        (String::new(), String::new(), String::new())
                    }
                    relief_domain::payment::PaymentState::Paid {
                        bank_reference,
                        paid_on,
                    }
                    | relief_domain::payment::PaymentState::Reversed {
                        bank_reference,
                        paid_on,
                        ..
                    } => (
                        bank_reference.clone(),
                        paid_on.format("%Y-%m-%d").to_string(),
                        String::new(),
                    ),
                    relief_domain::payment::PaymentState::Failed { reason } => {
                        (String::new(), String::new(), reason.clone())
                    }
                };
                let account = views.of(p).show(Field::BankAccount, &p.bank_account);
                vec![
                    p.id.clone(),
                    p.case_id.to_string(),
                    p.amount.to_yuan_string().replace(',', ""),
                    p.voucher_number.clone(),
                    p.state.as_str().to_owned(),
                    reference,
                    date,
                    reason,
                    p.receiving_unit_name.clone(),
                    p.bank_name.clone(),
                    account,
                ]
            })
            .collect();
        let n = rows.len();
        let csv = csv_of(
            Some(&[
                "payment_id",
                "case_id",
                "amount_yuan",
                "voucher_number",
                "state",
                "bank_reference",
                "paid_date",
                "failure_reason",
                "receiving_unit",
                "bank_name",
                "bank_account",
            ]),
            rows,
        )?;
        Ok(pb::ExportPaymentsResponse {
            csv,
            rows: i64_of(n as u64),
        })
    }

    async fn city_comparison(
        &self,
        caller: Caller,
        req: pb::GetCityComparisonRequest,
    ) -> ApiResult<pb::GetCityComparisonResponse> {
        if !caller.is_city() {
            return Err(ApiError::denied(
                "the city comparison is for city-scoped roles",
            ));
        }
        let year = check_year(req.fiscal_year)?;
        let mut districts = Vec::new();
        let mut after = None;
        loop {
            let batch = self.ctx.store.list_districts(after.as_ref(), 500).await?;
            let last = batch.last().map(|d| d.id.clone());
            let n = batch.len();
            districts.extend(batch);
            match (last, n) {
                (Some(l), 500) => after = Some(l),
                _ => break,
            }
        }
        let mut rows = Vec::new();
        for d in &districts {
            let (ind, s) = self.figures(d, year).await?;
            rows.push(pb::DistrictComparison {
                district_id: ind.district_id.clone(),
                district_name: ind.district_name.clone(),
                allocated_fen: ind.budget.allocated.fen(),
                paid_fen: ind.budget.paid.fen(),
                execution_rate_bp: i32_of(ind.execution_rate_bp()),
                paid_cases: i64_of(ind.paid_cases),
                target_case_count: i32_of(ind.target_case_count),
                mean_amount_fen: ind.amounts.mean.fen(),
                mean_seconds_to_payment: ind.submission_to_payment.mean_secs,
                re_petition_rate_bp: i32_of(ind.re_petition_rate_bp()),
                grade: s.grade.to_owned(),
                amount_total_fen: ind.amounts.total.fen(),
                amount_cases: i64_of(ind.amounts.cases),
                timed_payments: i64_of(ind.submission_to_payment.count),
                re_petitions: i64_of(ind.re_petitions),
            });
        }
        let city_total = city_total(&rows);

        Ok(pb::GetCityComparisonResponse {
            districts: rows,
            city_total: Some(city_total),
            missing_district_ids: Vec::new(),
        })
    }
}

/// The city's totals over the districts' rows: sums of money and cases, and rates and means
/// recomputed from the sums (not averaged from the districts' rates). The backends and the
/// gateway, which merges the rows of several backends, both total this way.
pub fn city_total(rows: &[pb::DistrictComparison]) -> pb::DistrictComparison {
    let sum = |f: fn(&pb::DistrictComparison) -> i64| {
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
        i32_of(relief_domain::report::rate_bp(
            unsigned(part),
            unsigned(whole),
        ))
    };
    pb::DistrictComparison {
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

#[tonic::async_trait]
impl ReportService for ReportApi {
    async fn get_indicators(
        &self,
        request: Request<pb::GetIndicatorsRequest>,
    ) -> Result<Response<pb::GetIndicatorsResponse>, Status> {
        handle!(self, request, get_indicators)
    }
    async fn render_self_evaluation(
        &self,
        request: Request<pb::RenderSelfEvaluationRequest>,
    ) -> Result<Response<pb::RenderSelfEvaluationResponse>, Status> {
        handle!(self, request, render)
    }
    async fn update_report_narrative(
        &self,
        request: Request<pb::UpdateReportNarrativeRequest>,
    ) -> Result<Response<pb::UpdateReportNarrativeResponse>, Status> {
        handle!(self, request, update_narrative)
    }
    async fn export_cases(
        &self,
        request: Request<pb::ExportCasesRequest>,
    ) -> Result<Response<pb::ExportCasesResponse>, Status> {
        handle!(self, request, export_cases)
    }
    type StreamCaseExportStream = futures::stream::Iter<
        std::iter::Map<
            std::vec::IntoIter<pb::StreamCaseExportResponse>,
            fn(pb::StreamCaseExportResponse) -> Result<pb::StreamCaseExportResponse, Status>,
        >,
    >;

    async fn stream_case_export(
        &self,
        request: Request<pb::StreamCaseExportRequest>,
    ) -> Result<Response<Self::StreamCaseExportStream>, Status> {
        let caller = Caller::from_request(&request)?;
        let chunks = self
            .case_export_chunks(caller, request.into_inner())
            .await
            .map_err(Status::from)?;
        let ok: fn(pb::StreamCaseExportResponse) -> Result<pb::StreamCaseExportResponse, Status> =
            Ok;
        Ok(Response::new(futures::stream::iter(
            chunks.into_iter().map(ok),
        )))
    }

    async fn export_payments(
        &self,
        request: Request<pb::ExportPaymentsRequest>,
    ) -> Result<Response<pb::ExportPaymentsResponse>, Status> {
        handle!(self, request, export_payments)
    }
    async fn get_city_comparison(
        &self,
        request: Request<pb::GetCityComparisonRequest>,
    ) -> Result<Response<pb::GetCityComparisonResponse>, Status> {
        handle!(self, request, city_comparison)
    }
}
