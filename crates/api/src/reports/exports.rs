//! ExportCases, StreamCaseExport and ExportPayments: the year's cases and payments as CSV,
//! read in batches in key order and written as they are read, personal data shown through
//! the caller's view of each case.

use std::collections::VecDeque;
use std::pin::Pin;

use futures::Stream;
use relief_domain::privacy::{Field, View};
use relief_domain::{CaseId, DistrictId, Money};
use relief_proto::v1 as pb;
use relief_store::{CaseRecord, PaymentRecord, Store};
use tonic::Status;

use super::{ReportApi, i64_of};
use crate::access::check_fiscal_year;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::payments::payment_views;
use crate::streams::StreamSlot;

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
        reason: "EXPORT_TOO_LARGE",
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

pub(super) type CaseExportStream =
    Pin<Box<dyn Stream<Item = Result<pb::StreamCaseExportResponse, Status>> + Send>>;

/// StreamCaseExport under way: the year's cases read a batch at a time, only as fast as the
/// reader takes the chunks.
struct CaseExport {
    store: Store,
    reads: crate::StreamReads,
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
                let place = self.reads.place().await?;
                let page = self
                    .store
                    .cases_of_year_after(&self.district, self.year, self.after, EXPORT_BATCH)
                    .await?;
                drop(place);
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
    pub(super) async fn export_cases(
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
    pub(super) async fn case_export(
        &self,
        caller: Caller,
        req: pb::StreamCaseExportRequest,
    ) -> ApiResult<CaseExportStream> {
        let year = check_fiscal_year(req.fiscal_year)?;
        // The slot is taken before the database is asked anything, so streams turned away
        // cost no connection.
        let slot = self
            .ctx
            .streams
            .acquire(caller.claims().subject().as_str(), caller.district()?)?;
        let d = self.district_for_read(&caller).await?;
        let export = CaseExport {
            store: self.ctx.store.clone(),
            reads: self.ctx.stream_reads.clone(),
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

    pub(super) async fn export_payments(
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
}
