//! ReportService: the year's indicators, the self-evaluation report drafted from them, the
//! bureau's narrative, CSV exports for the finance bureau, and the city's comparison of its
//! districts.

use std::collections::VecDeque;
use std::pin::Pin;

use chrono::NaiveDate;
use futures::Stream;
use relief_domain::privacy::{Field, View};
use relief_domain::report::{
    Indicators, NARRATIVE_SECTIONS, Score, render_html, render_markdown, score,
};
use relief_domain::{CaseId, DistrictId, Money, Role};
use relief_proto::v1 as pb;
use relief_proto::v1::report_service_server::ReportService;
use relief_store::{CaseRecord, DistrictRecord, PaymentRecord, Store};
use tonic::{Request, Response, Status};

use crate::ApiContext;
use crate::access::check_fiscal_year;
use crate::auth::{Caller, CaseVisibility};
use crate::convert::state_to_pb;
use crate::error::{ApiError, ApiResult};
use crate::payments::payment_views;
use crate::plumbing::handle;
use crate::streams::StreamSlot;

const MAX_NARRATIVE_CHARS: usize = 10_000;

#[derive(Debug, Clone)]
pub struct ReportApi {
    ctx: ApiContext,
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

/// Rows read from the database at once by an export: what an export holds besides its CSV.
const EXPORT_BATCH: u64 = 200;

/// Room left in a message for its other fields and framing, next to the CSV text.
const MESSAGE_OVERHEAD_BYTES: usize = 64;

/// The columns of the payment export.
const PAYMENT_COLUMNS: [&str; 11] = [
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
];

fn csv_error(e: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(format!("csv: {e}"))
}

/// A cell as a spreadsheet may safely open it (OWASP's rule against CSV injection): text
/// that starts with `=`, `+`, `-`, `@`, a tab or a carriage return gets a leading `'`, so
/// a spreadsheet shows it as text instead of running it as a formula. Whole numbers
/// (a negative amount) are left as they are.
fn neutralised(cell: &str) -> std::borrow::Cow<'_, str> {
    let risky = cell
        .chars()
        .next()
        .is_some_and(|c| matches!(c, '=' | '+' | '-' | '@' | '\t' | '\r'));
    if risky && cell.parse::<i64>().is_err() {
        std::borrow::Cow::Owned(format!("'{cell}"))
    } else {
        std::borrow::Cow::Borrowed(cell)
    }
}

/// CSV text written a row at a time, its size known as it grows.
struct CsvText {
    writer: csv::Writer<Vec<u8>>,
    rows: u64,
}

impl CsvText {
    fn new(header: Option<&[&str]>) -> ApiResult<Self> {
        let mut writer = csv::Writer::from_writer(Vec::new());
        if let Some(header) = header {
            writer.write_record(header).map_err(csv_error)?;
        }
        Ok(Self { writer, rows: 0 })
    }

    fn push(&mut self, row: &[String]) -> ApiResult<()> {
        for cell in row {
            self.writer
                .write_field(neutralised(cell).as_bytes())
                .map_err(csv_error)?;
        }
        self.writer.write_record(None::<&[u8]>).map_err(csv_error)?;
        self.rows += 1;
        Ok(())
    }

    /// The bytes written so far.
    fn len(&mut self) -> ApiResult<usize> {
        self.writer.flush().map_err(csv_error)?;
        Ok(self.writer.get_ref().len())
    }

    fn finish(self) -> ApiResult<(String, i64)> {
        let bytes = self.writer.into_inner().map_err(csv_error)?;
        let text = String::from_utf8(bytes).map_err(csv_error)?;
        Ok((text, i64_of(self.rows)))
    }
}

/// The error of a unary export whose text outgrows one message.
fn too_large(what: &str, max_message_bytes: usize, instead: &str) -> ApiError {
    ApiError::TooMany {
        message: format!(
            "the {what} is larger than the largest answer ({max_message_bytes} bytes){instead}"
        ),
        retry_after: None,
    }
}

/// One case as a row of [`CASE_COLUMNS`], its personal data shown as `view` allows.
fn case_row(c: &CaseRecord, view: &View) -> Vec<String> {
    let a = &c.application;
    let rid = a
        .recipient
        .resident_id
        .as_ref()
        .map(|r| view.show(Field::ResidentId, r.as_str()))
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
}

/// One payment as a row of [`PAYMENT_COLUMNS`], its account shown as `view` allows.
fn payment_row(p: &PaymentRecord, view: &View) -> Vec<String> {
    use relief_domain::payment::PaymentState;
    let (reference, date, reason) = match &p.state {
        PaymentState::Pending => (String::new(), String::new(), String::new()),
        PaymentState::Paid {
            bank_reference,
            paid_on,
        }
        | PaymentState::Reversed {
            bank_reference,
            paid_on,
            ..
        } => (
            bank_reference.clone(),
            paid_on.format("%Y-%m-%d").to_string(),
            String::new(),
        ),
        PaymentState::Failed { reason } => (String::new(), String::new(), reason.clone()),
    };
    let account = view.show(Field::BankAccount, &p.bank_account);
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
}

type CaseExportStream =
    Pin<Box<dyn Stream<Item = Result<pb::StreamCaseExportResponse, Status>> + Send>>;

/// StreamCaseExport under way: the year's cases read a batch at a time, only as fast as the
/// reader takes the chunks.
struct CaseExport {
    store: Store,
    district: DistrictId,
    year: i32,
    /// Whose export it is: what they see of each case's personal data.
    caller: Caller,
    /// The last case read from the database.
    after: Option<CaseId>,
    /// Cases read and not yet written into a chunk.
    batch: VecDeque<CaseRecord>,
    /// Every case has been read from the database.
    read_all: bool,
    /// No chunk has been sent yet (the first carries the header, even with no row).
    first: bool,
    /// A chunk's CSV stops growing at this size.
    chunk_bytes: usize,
    failed: bool,
    _slot: StreamSlot,
}

impl CaseExport {
    async fn next(mut self) -> Option<(Result<pb::StreamCaseExportResponse, Status>, Self)> {
        if self.failed {
            return None;
        }
        match self.chunk().await {
            Ok(None) => None,
            Ok(Some(chunk)) => Some((Ok(chunk), self)),
            Err(e) => {
                // The error is the stream's last item: tonic ends the call with it.
                self.failed = true;
                Some((Err(Status::from(e)), self))
            }
        }
    }

    async fn chunk(&mut self) -> ApiResult<Option<pb::StreamCaseExportResponse>> {
        let header = if self.first {
            Some(&CASE_COLUMNS[..])
        } else {
            None
        };
        let mut text = CsvText::new(header)?;
        loop {
            if self.batch.is_empty() && !self.read_all {
                let page = self
                    .store
                    .cases_of_year_after(&self.district, self.year, self.after, EXPORT_BATCH)
                    .await?;
                self.read_all = (page.len() as u64) < EXPORT_BATCH;
                if let Some(last) = page.last() {
                    self.after = Some(last.id);
                }
                self.batch.extend(page);
            }
            let Some(case) = self.batch.pop_front() else {
                break;
            };
            text.push(&case_row(&case, &self.caller.case_view(&case)))?;
            if text.rows >= STREAM_CHUNK_ROWS as u64 || text.len()? >= self.chunk_bytes {
                break;
            }
        }
        if text.rows == 0 && !self.first {
            return Ok(None);
        }
        self.first = false;
        let (csv, rows) = text.finish()?;
        Ok(Some(pb::StreamCaseExportResponse { csv, rows }))
    }
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

    async fn export_cases(
        &self,
        caller: Caller,
        req: pb::ExportCasesRequest,
    ) -> ApiResult<pb::ExportCasesResponse> {
        let year = check_fiscal_year(req.fiscal_year)?;
        let d = self.district_for_read(&caller).await?;
        let _place = self.ctx.heavy_read().await?;
        let max = self.ctx.max_message_bytes;
        let mut text = CsvText::new(Some(&CASE_COLUMNS))?;
        let mut after = None;
        loop {
            let page = self
                .ctx
                .store
                .cases_of_year_after(&d.id, year, after, EXPORT_BATCH)
                .await?;
            for case in &page {
                text.push(&case_row(case, &caller.case_view(case)))?;
            }
            if text.len()?.saturating_add(MESSAGE_OVERHEAD_BYTES) > max {
                return Err(too_large(
                    "case export",
                    max,
                    "; StreamCaseExport sends it in chunks",
                ));
            }
            match page.last() {
                Some(last) if page.len() as u64 == EXPORT_BATCH => after = Some(last.id),
                _ => break,
            }
        }
        let (csv, rows) = text.finish()?;
        Ok(pb::ExportCasesResponse { csv, rows })
    }

    /// StreamCaseExport, once the caller may read the year and holds a stream slot.
    async fn case_export(
        &self,
        caller: Caller,
        req: pb::StreamCaseExportRequest,
    ) -> ApiResult<CaseExportStream> {
        let year = check_fiscal_year(req.fiscal_year)?;
        let d = self.district_for_read(&caller).await?;
        let slot = self
            .ctx
            .streams
            .acquire(caller.claims().subject().as_str(), &d.id)?;
        let export = CaseExport {
            store: self.ctx.store.clone(),
            district: d.id,
            year,
            caller: caller.clone(),
            after: None,
            batch: VecDeque::new(),
            read_all: false,
            first: true,
            chunk_bytes: self.ctx.streams.limits().buffer_bytes,
            failed: false,
            _slot: slot,
        };
        Ok(Box::pin(futures::stream::unfold(export, CaseExport::next)))
    }

    async fn export_payments(
        &self,
        caller: Caller,
        req: pb::ExportPaymentsRequest,
    ) -> ApiResult<pb::ExportPaymentsResponse> {
        let year = check_fiscal_year(req.fiscal_year)?;
        let d = self.district_for_read(&caller).await?;
        let _place = self.ctx.heavy_read().await?;
        let max = self.ctx.max_message_bytes;
        let mut text = CsvText::new(Some(&PAYMENT_COLUMNS))?;
        let mut after = None;
        loop {
            let page = self
                .ctx
                .store
                .payments_of_year_after(&d.id, year, after, EXPORT_BATCH)
                .await?;
            let views = payment_views(&self.ctx, &caller, &d.id, &page).await?;
            for payment in &page {
                text.push(&payment_row(payment, &views.of(payment)))?;
            }
            if text.len()?.saturating_add(MESSAGE_OVERHEAD_BYTES) > max {
                return Err(too_large("payment export", max, ""));
            }
            match page.last() {
                Some(last) if page.len() as u64 == EXPORT_BATCH => {
                    after = Some((last.created_at, last.id.clone()));
                }
                _ => break,
            }
        }
        let (csv, rows) = text.finish()?;
        Ok(pb::ExportPaymentsResponse { csv, rows })
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
