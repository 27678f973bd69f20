//! ReportService: the year's indicators, the self-evaluation report drafted from them, the
//! bureau's narrative, CSV exports for the finance bureau, and the city's comparison of its
//! districts.

use chrono::NaiveDate;
use relief_domain::Role;
use relief_domain::report::{
    Indicators, NARRATIVE_SECTIONS, Score, render_html, render_markdown, score,
};
use relief_proto::v1 as pb;
use relief_proto::v1::report_service_server::ReportService;
use relief_store::DistrictRecord;
use tonic::{Request, Response, Status};

mod exports;

use exports::CaseExportStream;

use crate::ApiContext;
use crate::access::check_fiscal_year;
use crate::auth::Caller;
use crate::convert::state_to_pb;
use crate::error::{ApiError, ApiResult};
use crate::plumbing::handle;

const MAX_NARRATIVE_CHARS: usize = 10_000;

#[derive(Debug, Clone)]
pub struct ReportApi {
    ctx: ApiContext,
}

pub(super) fn i32_of(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

pub(super) fn i64_of(n: u64) -> i64 {
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
        let district = caller.district_reader("read reports")?;
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
        let year = check_fiscal_year(req.fiscal_year)?;
        let d = self.district_for_read(&caller).await?;
        let _place = self.ctx.heavy_read().await?;
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
        let year = check_fiscal_year(req.fiscal_year)?;
        let d = self.district_for_read(&caller).await?;
        let _place = self.ctx.heavy_read().await?;
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
        let m = self.ctx.mutation(&caller, &req.request_id, &req)?;
        let year = check_fiscal_year(req.fiscal_year)?;
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
        m.run(Some(&district), role, async |tx| {
            tx.set_narrative(&district, year, &req.section, text)
                .await?;
            Ok(pb::UpdateReportNarrativeResponse {
                section: req.section.clone(),
                text: text.to_owned(),
            })
        })
        .await
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
        let year = check_fiscal_year(req.fiscal_year)?;
        let _place = self.ctx.heavy_read().await?;
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
        let city_total = relief_proto::comparison::city_total(&rows);

        Ok(pb::GetCityComparisonResponse {
            districts: rows,
            city_total: Some(city_total),
            missing_district_ids: Vec::new(),
        })
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
    type StreamCaseExportStream = CaseExportStream;

    async fn stream_case_export(
        &self,
        request: Request<pb::StreamCaseExportRequest>,
    ) -> Result<Response<Self::StreamCaseExportStream>, Status> {
        let caller = Caller::from_request(&request)?;
        let stream = self
            .case_export(caller, request.into_inner())
            .await
            .map_err(Status::from)?;
        Ok(Response::new(stream))
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
