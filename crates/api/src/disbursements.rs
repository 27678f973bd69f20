//! DisbursementService (核拨): the finance section pays approved cases, once each, for the
//! approved amount; LedgerService shows and verifies the books; FollowUpService tracks
//! whether relief ended the petition.

use std::collections::HashMap;

use chrono::{Datelike, NaiveDate};
use relief_domain::approval::BudgetBalance;
use relief_domain::case::{Attachment, CaseState};
use relief_domain::ledger::{self, EntryKind};
use relief_domain::payment::{
    PaidPayment, PaymentState, follow_up_dates, parse_statement, reconcile,
};
use relief_domain::privacy::{Field, View};
use relief_domain::{CaseId, DistrictId, Money, Role, StateKind, UnitId};
use relief_proto::v1 as pb;
use relief_proto::v1::disbursement_service_server::DisbursementService;
use relief_proto::v1::follow_up_service_server::FollowUpService;
use relief_proto::v1::ledger_service_server::LedgerService;
use relief_store::{
    CaseRecord, FollowUpRecord, ImportWindowRecord, LedgerEntryRecord, PaymentRecord,
};
use tonic::{Request, Response, Status};

use crate::auth::{Caller, CaseVisibility};
use crate::cases::{handle, move_to, parse_case_id, visible};
use crate::convert::{application_from_pb, case_to_pb, timestamp};
use crate::error::{ApiError, ApiResult};
use crate::paging::ListKey;
use crate::{ApiContext, Begun, commit};

const DATE: &str = "%Y-%m-%d";
const MAX_TEXT: usize = 2000;

fn required_text(field: &str, value: &str, max: usize) -> ApiResult<String> {
    let v = value.trim();
    if v.is_empty() {
        return Err(ApiError::invalid(field, "is required"));
    }
    if v.chars().count() > max {
        return Err(ApiError::invalid(
            field,
            format_args!("must be at most {max} characters"),
        ));
    }
    Ok(v.to_owned())
}

fn parse_date(field: &str, value: &str) -> ApiResult<NaiveDate> {
    NaiveDate::parse_from_str(value, DATE)
        .map_err(|_| ApiError::invalid(field, "must be a date YYYY-MM-DD"))
}

fn new_id() -> String {
    CaseId::new_v7().to_string()
}

/// The payment as a reader with `view` sees it; its bank account is the case's receiving
/// unit's, so the view is the caller's view of the payment's case.
fn payment_to_pb(p: &PaymentRecord, view: &View) -> pb::Payment {
    let (state, bank_reference, paid_date, failure_reason) = match &p.state {
        PaymentState::Pending => (
            pb::PaymentState::Pending,
            String::new(),
            String::new(),
            String::new(),
        ),
        PaymentState::Paid {
            bank_reference,
            paid_on,
        } => (
            pb::PaymentState::Paid,
            bank_reference.clone(),
            paid_on.format(DATE).to_string(),
            String::new(),
        ),
        PaymentState::Reversed {
            bank_reference,
            paid_on,
            reason,
        } => (
            pb::PaymentState::Reversed,
            bank_reference.clone(),
            paid_on.format(DATE).to_string(),
            reason.clone(),
        ),
        PaymentState::Failed { reason } => (
            pb::PaymentState::Failed,
            String::new(),
            String::new(),
            reason.clone(),
        ),
    };
    pb::Payment {
        payment_id: p.id.clone(),
        case_id: p.case_id.to_string(),
        amount_fen: p.amount.fen(),
        receiving_unit_name: p.receiving_unit_name.clone(),
        bank_name: p.bank_name.clone(),
        bank_account: view.show(Field::BankAccount, &p.bank_account),
        voucher_number: p.voucher_number.clone(),
        state: state.into(),
        bank_reference,
        paid_date,
        failure_reason,
        fiscal_year: p.fiscal_year,
        created_by: p.created_by.clone(),
        create_time: Some(timestamp(p.created_at)),
        update_time: Some(timestamp(p.updated_at)),
    }
}

fn follow_up_to_pb(f: &FollowUpRecord) -> pb::FollowUp {
    pb::FollowUp {
        follow_up_id: f.id.clone(),
        case_id: f.case_id.to_string(),
        sequence: f.sequence,
        due_date: f.due_date.format(DATE).to_string(),
        done: f.done,
        done_date: f
            .done_date
            .map(|d| d.format(DATE).to_string())
            .unwrap_or_default(),
        method: f.method.clone().unwrap_or_default(),
        petitioned_again: f.petitioned_again,
        notes: f.notes.clone().unwrap_or_default(),
        recorded_by: f.recorded_by.clone().unwrap_or_default(),
        record_time: f.recorded_at.map(timestamp),
    }
}

fn balance_to_pb(year: i32, b: &BudgetBalance, closed: bool) -> pb::BudgetBalance {
    pb::BudgetBalance {
        fiscal_year: year,
        allocated_fen: b.allocated.fen(),
        reserved_fen: b.reserved.fen(),
        paid_fen: b.paid.fen(),
        available_fen: b.available().fen(),
        closed,
        // Read apart from the balance, by the calls that show them.
        imported_paid_fen: 0,
        import_window_open: false,
    }
}

/// Of the paid amount, the part imports recorded: their pay entries, summed the way
/// `Store::imported_paid` sums them.
fn imported_paid_fen(entries: &[LedgerEntryRecord]) -> i64 {
    entries
        .iter()
        .filter(|e| e.imported && e.kind == EntryKind::Pay)
        .fold(0i64, |sum, e| sum.saturating_add(e.amount.fen()))
}

fn import_window_to_pb(w: &ImportWindowRecord) -> pb::ImportWindow {
    pb::ImportWindow {
        fiscal_year: w.fiscal_year,
        open: w.open,
        reason: w.reason.clone(),
        opened_by: w.opened_by.clone(),
        open_time: Some(timestamp(w.opened_at)),
        closed_by: w.closed_by.clone().unwrap_or_default(),
        close_time: w.closed_at.map(timestamp),
    }
}

fn entry_kind_to_pb(k: EntryKind) -> pb::LedgerEntryKind {
    match k {
        EntryKind::Allocate => pb::LedgerEntryKind::Allocate,
        EntryKind::Deallocate => pb::LedgerEntryKind::Deallocate,
        EntryKind::Reserve => pb::LedgerEntryKind::Reserve,
        EntryKind::Release => pb::LedgerEntryKind::Release,
        EntryKind::Pay => pb::LedgerEntryKind::Pay,
        EntryKind::Reverse => pb::LedgerEntryKind::Reverse,
    }
}

/// Readers of money matters: the bureau and auditors of the district.
fn require_reader(caller: &Caller) -> ApiResult<DistrictId> {
    let district = caller.district()?.clone();
    if caller.case_visibility()? != CaseVisibility::District {
        return Err(ApiError::denied(
            "only the bureau and auditors see payments and the ledger",
        ));
    }
    Ok(district)
}

/// The caller's view of each payment's case. The cases' units are looked up only for a token
/// whose view depends on them (one that holds `applicant_unit` besides a reading role).
pub(crate) struct PaymentViews {
    /// The view of a case that is not the caller's unit's.
    others: View,
    /// The caller's unit, its view of that unit's cases, and the unit of each payment's case.
    own: Option<(UnitId, View, HashMap<CaseId, UnitId>)>,
}

impl PaymentViews {
    pub(crate) fn of(&self, p: &PaymentRecord) -> View {
        match &self.own {
            Some((unit, view, units)) if units.get(&p.case_id) == Some(unit) => *view,
            _ => self.others,
        }
    }
}

pub(crate) async fn payment_views(
    ctx: &ApiContext,
    caller: &Caller,
    district: &DistrictId,
    payments: &[PaymentRecord],
) -> ApiResult<PaymentViews> {
    let others = caller.view_without_unit();
    let own = match caller.claims().unit() {
        Some(unit) if caller.view_depends_on_unit() => {
            let mut ids: Vec<CaseId> = payments.iter().map(|p| p.case_id).collect();
            ids.sort_unstable();
            ids.dedup();
            let units = ctx.store.case_units(district, &ids).await?;
            Some((unit.clone(), caller.view_for_unit(unit), units))
        }
        _ => None,
    };
    Ok(PaymentViews { others, own })
}

fn check_fiscal_year(year: i32) -> ApiResult<i32> {
    if (2000..=2100).contains(&year) {
        Ok(year)
    } else {
        Err(ApiError::invalid(
            "fiscal_year",
            "must be between 2000 and 2100",
        ))
    }
}

#[derive(Debug, Clone)]
pub struct DisbursementApi {
    ctx: ApiContext,
}

impl DisbursementApi {
    pub fn new(ctx: ApiContext) -> Self {
        Self { ctx }
    }

    async fn create_payment(
        &self,
        caller: Caller,
        req: pb::CreatePaymentRequest,
    ) -> ApiResult<pb::CreatePaymentResponse> {
        let district = caller.require_district_role(Role::Finance)?.clone();
        let key = self
            .ctx
            .idempotency_key(&caller, "CreatePayment", &req.request_id, &req)?;
        let id = parse_case_id(&req.case_id)?;
        let voucher = required_text("voucher_number", &req.voucher_number, 64)?;
        let mut tx = match self
            .ctx
            .begin(Some(&district), &caller, Role::Finance, &key)
            .await?
        {
            Begun::Replayed(resp) => return Ok(resp),
            Begun::Fresh(tx) => *tx,
        };
        let case = visible(tx.case(&district, id).await?, &CaseVisibility::District)?;
        match case.state.kind() {
            StateKind::Approved => {}
            StateKind::Paid => {
                return Err(ApiError::precondition(
                    "ALREADY_PAID",
                    format!("case {id} is already paid"),
                ));
            }
            other => {
                return Err(ApiError::precondition(
                    "CASE_NOT_APPROVED",
                    format!("case {id} is {other}, not approved"),
                ));
            }
        }
        let payments = tx.payments_of_case(&district, id).await?;
        if let Some(live) = payments.iter().find(|p| p.state.is_live()) {
            return Err(ApiError::precondition(
                "PAYMENT_EXISTS",
                format!(
                    "payment {} of case {id} is {}; a case is paid once",
                    live.id,
                    live.state.as_str()
                ),
            ));
        }
        let year = case
            .application
            .fiscal_year
            .ok_or_else(|| ApiError::Internal(format!("approved case {id} has no fiscal year")))?;
        if tx.year_closed(&district, year).await? {
            return Err(ApiError::precondition(
                "YEAR_CLOSED",
                format!("fiscal year {year} is closed"),
            ));
        }
        let rules = tx
            .district(&district)
            .await?
            .ok_or(ApiError::NotFound("district"))?
            .rules;
        let missing: Vec<&str> = rules
            .required_payment_documents
            .iter()
            .filter(|d| {
                !case
                    .application
                    .attachments
                    .iter()
                    .any(|a| &a.document_type == *d)
            })
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            return Err(ApiError::precondition(
                "MISSING_DOCUMENTS",
                format!("the case lacks required documents: {}", missing.join(", ")),
            ));
        }
        let amount = case.approved_amount.ok_or_else(|| {
            ApiError::Internal(format!("approved case {id} has no approved amount"))
        })?;
        if req.amount_fen != 0 && req.amount_fen != amount.fen() {
            let how = if req.amount_fen > amount.fen() {
                "more than"
            } else {
                "less than"
            };
            return Err(ApiError::invalid(
                "amount_fen",
                format_args!(
                    "{} fen is {how} the approved {amount}; relief is paid in full, once",
                    req.amount_fen
                ),
            ));
        }
        let now = tx.now();
        let ru = &case.application.receiving_unit;
        let record = PaymentRecord {
            id: new_id(),
            district_id: district.clone(),
            case_id: id,
            fiscal_year: year,
            amount,
            receiving_unit_name: ru.name.clone(),
            bank_name: ru.bank_name.clone(),
            bank_account: ru.bank_account.clone(),
            voucher_number: voucher,
            state: PaymentState::Pending,
            secs_to_payment: None,
            created_by: caller.claims().subject().to_string(),
            created_at: now,
            updated_at: now,
        };
        tx.insert_payment(&record).await?;
        let resp = pb::CreatePaymentResponse {
            payment: Some(payment_to_pb(&record, &caller.case_view(&case))),
        };
        commit(tx, &key, &resp).await?;
        tracing::info!(district = %district, case = %id, payment = %record.id, amount_fen = amount.fen(), "payment created");
        Ok(resp)
    }

    async fn confirm_payment(
        &self,
        caller: Caller,
        req: pb::ConfirmPaymentRequest,
    ) -> ApiResult<pb::ConfirmPaymentResponse> {
        let district = caller.require_district_role(Role::Finance)?.clone();
        let key = self
            .ctx
            .idempotency_key(&caller, "ConfirmPayment", &req.request_id, &req)?;
        let bank_reference = required_text("bank_reference", &req.bank_reference, 64)?;
        let paid_on = parse_date("paid_date", &req.paid_date)?;
        let mut tx = match self
            .ctx
            .begin(Some(&district), &caller, Role::Finance, &key)
            .await?
        {
            Begun::Replayed(resp) => return Ok(resp),
            Begun::Fresh(tx) => *tx,
        };
        let before = tx
            .payment(&district, &req.payment_id)
            .await?
            .ok_or(ApiError::NotFound("payment"))?;
        if before.state != PaymentState::Pending {
            return Err(ApiError::precondition(
                "PAYMENT_NOT_PENDING",
                format!("the payment is {}", before.state.as_str()),
            ));
        }
        if paid_on.year() != before.fiscal_year {
            return Err(ApiError::invalid(
                "paid_date",
                format_args!("must fall in fiscal year {}", before.fiscal_year),
            ));
        }
        if paid_on > tx.now().date_naive() {
            return Err(ApiError::invalid("paid_date", "must not be in the future"));
        }
        if tx.year_closed(&district, before.fiscal_year).await? {
            return Err(ApiError::precondition(
                "YEAR_CLOSED",
                format!("fiscal year {} is closed", before.fiscal_year),
            ));
        }
        let case = visible(
            tx.case(&district, before.case_id).await?,
            &CaseVisibility::District,
        )?;
        if case.state != CaseState::Approved || case.approved_amount != Some(before.amount) {
            return Err(ApiError::precondition(
                "CASE_NOT_PAYABLE",
                format!(
                    "case {} is {} with another amount; it cannot take this payment",
                    case.id,
                    case.state.kind()
                ),
            ));
        }
        let mut after = PaymentRecord {
            state: PaymentState::Paid {
                bank_reference,
                paid_on,
            },
            secs_to_payment: case
                .submitted_at
                .zip(paid_on.and_hms_opt(12, 0, 0))
                .map(|(sub, noon)| (noon.and_utc() - sub).num_seconds().max(0)),
            ..before.clone()
        };
        tx.update_payment("payment.confirmed", None, &before, &mut after)
            .await?;
        tx.add_ledger_entry(
            &district,
            before.fiscal_year,
            Some(case.id),
            EntryKind::Pay,
            before.amount,
        )
        .await?;
        let mut paid_case = case.clone();
        move_to(&mut paid_case, CaseState::Paid, None, tx.now());
        tx.update_case("case.paid", None, &case, &mut paid_case)
            .await?;
        let rules = tx
            .rules_version(&district, case.rules_version)
            .await?
            .ok_or_else(|| ApiError::Internal("rules version missing".to_owned()))?;
        for (i, due) in follow_up_dates(paid_on, &rules.follow_up_after_days)
            .into_iter()
            .enumerate()
        {
            tx.insert_follow_up(&FollowUpRecord {
                id: new_id(),
                district_id: district.clone(),
                case_id: case.id,
                sequence: i32::try_from(i + 1).unwrap_or(i32::MAX),
                due_date: due,
                done: false,
                done_date: None,
                method: None,
                petitioned_again: false,
                notes: None,
                recorded_by: None,
                recorded_at: None,
                fiscal_year: case.application.fiscal_year,
            })
            .await?;
        }
        let view = caller.case_view(&paid_case);
        let resp = pb::ConfirmPaymentResponse {
            payment: Some(payment_to_pb(&after, &view)),
            case: Some(case_to_pb(&paid_case, &view)),
        };
        commit(tx, &key, &resp).await?;
        tracing::info!(district = %district, case = %case.id, payment = %before.id, "payment confirmed");
        Ok(resp)
    }

    async fn reverse_payment(
        &self,
        caller: Caller,
        req: pb::ReversePaymentRequest,
    ) -> ApiResult<pb::ReversePaymentResponse> {
        let district = caller.require_district_role(Role::Finance)?.clone();
        let key = self
            .ctx
            .idempotency_key(&caller, "ReversePayment", &req.request_id, &req)?;
        let reason = required_text("reason", &req.reason, MAX_TEXT)?;
        let mut tx = match self
            .ctx
            .begin(Some(&district), &caller, Role::Finance, &key)
            .await?
        {
            Begun::Replayed(resp) => return Ok(resp),
            Begun::Fresh(tx) => *tx,
        };
        let before = tx
            .payment(&district, &req.payment_id)
            .await?
            .ok_or(ApiError::NotFound("payment"))?;
        let PaymentState::Paid {
            bank_reference,
            paid_on,
        } = before.state.clone()
        else {
            return Err(ApiError::precondition(
                "PAYMENT_NOT_PAID",
                format!("the payment is {}", before.state.as_str()),
            ));
        };
        if tx.year_closed(&district, before.fiscal_year).await? {
            return Err(ApiError::precondition(
                "YEAR_CLOSED",
                format!("fiscal year {} is closed", before.fiscal_year),
            ));
        }
        let case = visible(
            tx.case(&district, before.case_id).await?,
            &CaseVisibility::District,
        )?;
        let mut after = PaymentRecord {
            state: PaymentState::Reversed {
                bank_reference,
                paid_on,
                reason: reason.clone(),
            },
            ..before.clone()
        };
        tx.update_payment("payment.reversed", Some(&reason), &before, &mut after)
            .await?;
        // The money goes back from paid to reserved for the case, in this same transaction.
        tx.add_ledger_entry(
            &district,
            before.fiscal_year,
            Some(case.id),
            EntryKind::Reverse,
            before.amount,
        )
        .await?;
        let mut approved = case.clone();
        move_to(
            &mut approved,
            case.state.payment_returned()?,
            None,
            tx.now(),
        );
        tx.update_case("case.payment_returned", Some(&reason), &case, &mut approved)
            .await?;
        tx.cancel_open_follow_ups(&district, case.id).await?;
        let view = caller.case_view(&approved);
        let resp = pb::ReversePaymentResponse {
            payment: Some(payment_to_pb(&after, &view)),
            case: Some(case_to_pb(&approved, &view)),
        };
        commit(tx, &key, &resp).await?;
        tracing::info!(district = %district, case = %case.id, payment = %before.id, "payment returned by the bank");
        Ok(resp)
    }

    async fn fail_payment(
        &self,
        caller: Caller,
        req: pb::FailPaymentRequest,
    ) -> ApiResult<pb::FailPaymentResponse> {
        let district = caller.require_district_role(Role::Finance)?.clone();
        let key = self
            .ctx
            .idempotency_key(&caller, "FailPayment", &req.request_id, &req)?;
        let reason = required_text("reason", &req.reason, MAX_TEXT)?;
        let mut tx = match self
            .ctx
            .begin(Some(&district), &caller, Role::Finance, &key)
            .await?
        {
            Begun::Replayed(resp) => return Ok(resp),
            Begun::Fresh(tx) => *tx,
        };
        let before = tx
            .payment(&district, &req.payment_id)
            .await?
            .ok_or(ApiError::NotFound("payment"))?;
        if before.state != PaymentState::Pending {
            return Err(ApiError::precondition(
                "PAYMENT_NOT_PENDING",
                format!("the payment is {}", before.state.as_str()),
            ));
        }
        let mut after = PaymentRecord {
            state: PaymentState::Failed {
                reason: reason.clone(),
            },
            ..before.clone()
        };
        tx.update_payment("payment.failed", Some(&reason), &before, &mut after)
            .await?;
        let view = if caller.view_depends_on_unit() {
            match tx.case(&district, before.case_id).await? {
                Some(case) => caller.case_view(&case),
                None => caller.view_without_unit(),
            }
        } else {
            caller.view_without_unit()
        };
        let resp = pb::FailPaymentResponse {
            payment: Some(payment_to_pb(&after, &view)),
        };
        commit(tx, &key, &resp).await?;
        Ok(resp)
    }

    async fn get_payment(
        &self,
        caller: Caller,
        req: pb::GetPaymentRequest,
    ) -> ApiResult<pb::GetPaymentResponse> {
        let district = require_reader(&caller)?;
        let p = self
            .ctx
            .store
            .payment(&district, &req.payment_id)
            .await?
            .ok_or(ApiError::NotFound("payment"))?;
        let views = payment_views(&self.ctx, &caller, &district, std::slice::from_ref(&p)).await?;
        Ok(pb::GetPaymentResponse {
            payment: Some(payment_to_pb(&p, &views.of(&p))),
        })
    }

    async fn list_payments(
        &self,
        caller: Caller,
        req: pb::ListPaymentsRequest,
    ) -> ApiResult<pb::ListPaymentsResponse> {
        let district = require_reader(&caller)?;
        let limit = self.ctx.page_size(req.page_size)?;
        let key = ListKey::of(district.as_str(), &req);
        let offset = key.offset(&req.page_token)?;
        let case = match req.case_id.as_str() {
            "" => None,
            s => Some(parse_case_id(s)?),
        };
        let year = match req.fiscal_year {
            0 => None,
            y => Some(check_fiscal_year(y)?),
        };
        let mut rows = self
            .ctx
            .store
            .payments(&district, case, year, offset, limit + 1)
            .await?;
        let next_page_token = key.next_offset_page(&mut rows, offset, limit);
        let views = payment_views(&self.ctx, &caller, &district, &rows).await?;
        Ok(pb::ListPaymentsResponse {
            payments: rows
                .iter()
                .map(|p| payment_to_pb(p, &views.of(p)))
                .collect(),
            next_page_token,
        })
    }

    async fn add_case_document(
        &self,
        caller: Caller,
        req: pb::AddCaseDocumentRequest,
    ) -> ApiResult<pb::AddCaseDocumentResponse> {
        if caller.is_city() {
            return Err(ApiError::denied(
                "documents are added with a district-scoped token",
            ));
        }
        let district = caller.district()?.clone();
        let role = if caller.has_role(Role::Finance) {
            Role::Finance
        } else if caller.has_role(Role::ApplicantUnit) {
            Role::ApplicantUnit
        } else {
            return Err(ApiError::denied(
                "documents are added by finance or the applicant unit",
            ));
        };
        let key = self
            .ctx
            .idempotency_key(&caller, "AddCaseDocument", &req.request_id, &req)?;
        let id = parse_case_id(&req.case_id)?;
        let document = req
            .document
            .clone()
            .ok_or_else(|| ApiError::invalid("document", "is required"))?;
        let document: Attachment = {
            let wrapped = pb::Application {
                attachments: vec![document],
                ..Default::default()
            };
            let app = application_from_pb(Some(&wrapped)).map_err(|v| {
                ApiError::InvalidArgument(
                    v.into_iter()
                        .map(|x| {
                            relief_domain::Violation::new(
                                x.field.replace("application.attachments[0]", "document"),
                                x.description,
                            )
                        })
                        .collect(),
                )
            })?;
            app.attachments
                .into_iter()
                .next()
                .ok_or_else(|| ApiError::invalid("document", "is required"))?
        };
        if document.document_type.is_empty() {
            return Err(ApiError::invalid("document.document_type", "is required"));
        }
        let mut tx = match self.ctx.begin(Some(&district), &caller, role, &key).await? {
            Begun::Replayed(resp) => return Ok(resp),
            Begun::Fresh(tx) => *tx,
        };
        let visibility = match role {
            Role::ApplicantUnit => CaseVisibility::Unit(caller.unit()?.clone()),
            _ => CaseVisibility::District,
        };
        let before = visible(tx.case(&district, id).await?, &visibility)?;
        if before.state != CaseState::Approved {
            return Err(ApiError::precondition(
                "CASE_NOT_APPROVED",
                format!(
                    "documents are added to approved cases before payment; case {id} is {}",
                    before.state.kind()
                ),
            ));
        }
        if before.application.attachments.len() >= relief_domain::case::MAX_ATTACHMENTS {
            return Err(ApiError::precondition(
                "TOO_MANY_ATTACHMENTS",
                "the case has the most attachments it may have",
            ));
        }
        let mut after: CaseRecord = before.clone();
        after.application.attachments.push(document);
        tx.update_case("case.document_added", None, &before, &mut after)
            .await?;
        let resp = pb::AddCaseDocumentResponse {
            case: Some(case_to_pb(&after, &caller.case_view(&after))),
        };
        commit(tx, &key, &resp).await?;
        Ok(resp)
    }

    async fn reconcile_statement(
        &self,
        caller: Caller,
        req: pb::ReconcileStatementRequest,
    ) -> ApiResult<pb::ReconcileStatementResponse> {
        let district = require_reader(&caller)?;
        let lines = parse_statement(&req.statement_csv).map_err(ApiError::InvalidArgument)?;
        let paid: Vec<PaidPayment> = self
            .ctx
            .store
            .paid_payments(&district)
            .await?
            .into_iter()
            .filter_map(|p| match p.state {
                PaymentState::Paid { bank_reference, .. } => Some(PaidPayment {
                    id: p.id,
                    bank_reference,
                    amount: p.amount,
                    account: p.bank_account,
                }),
                PaymentState::Pending
                | PaymentState::Failed { .. }
                | PaymentState::Reversed { .. } => None,
            })
            .collect();
        let r = reconcile(&lines, &paid);
        let line = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
        Ok(pb::ReconcileStatementResponse {
            matched_count: line(r.matched.len()),
            unmatched_lines: r.unmatched_lines.iter().map(|n| line(*n)).collect(),
            mismatches: r
                .mismatched
                .iter()
                .map(|(n, id, s, p)| pb::StatementMismatch {
                    line: line(*n),
                    payment_id: id.clone(),
                    statement_amount_fen: s.fen(),
                    payment_amount_fen: p.fen(),
                })
                .collect(),
            unmatched_payment_ids: r.unmatched_payments,
        })
    }
}

#[tonic::async_trait]
impl DisbursementService for DisbursementApi {
    async fn create_payment(
        &self,
        request: Request<pb::CreatePaymentRequest>,
    ) -> Result<Response<pb::CreatePaymentResponse>, Status> {
        handle!(self, request, create_payment)
    }
    async fn confirm_payment(
        &self,
        request: Request<pb::ConfirmPaymentRequest>,
    ) -> Result<Response<pb::ConfirmPaymentResponse>, Status> {
        handle!(self, request, confirm_payment)
    }
    async fn fail_payment(
        &self,
        request: Request<pb::FailPaymentRequest>,
    ) -> Result<Response<pb::FailPaymentResponse>, Status> {
        handle!(self, request, fail_payment)
    }
    async fn reverse_payment(
        &self,
        request: Request<pb::ReversePaymentRequest>,
    ) -> Result<Response<pb::ReversePaymentResponse>, Status> {
        handle!(self, request, reverse_payment)
    }
    async fn get_payment(
        &self,
        request: Request<pb::GetPaymentRequest>,
    ) -> Result<Response<pb::GetPaymentResponse>, Status> {
        handle!(self, request, get_payment)
    }
    async fn list_payments(
        &self,
        request: Request<pb::ListPaymentsRequest>,
    ) -> Result<Response<pb::ListPaymentsResponse>, Status> {
        handle!(self, request, list_payments)
    }
    async fn add_case_document(
        &self,
        request: Request<pb::AddCaseDocumentRequest>,
    ) -> Result<Response<pb::AddCaseDocumentResponse>, Status> {
        handle!(self, request, add_case_document)
    }
    async fn reconcile_statement(
        &self,
        request: Request<pb::ReconcileStatementRequest>,
    ) -> Result<Response<pb::ReconcileStatementResponse>, Status> {
        handle!(self, request, reconcile_statement)
    }
}

#[derive(Debug, Clone)]
pub struct LedgerApi {
    ctx: ApiContext,
}

impl LedgerApi {
    pub fn new(ctx: ApiContext) -> Self {
        Self { ctx }
    }

    async fn get_budget(
        &self,
        caller: Caller,
        req: pb::GetBudgetRequest,
    ) -> ApiResult<pb::GetBudgetResponse> {
        let district = require_reader(&caller)?;
        let year = check_fiscal_year(req.fiscal_year)?;
        let limit = self.ctx.page_size(req.page_size)?;
        let key = ListKey::of(district.as_str(), &req);
        let offset = key.offset(&req.page_token)?;
        let balance = self.ctx.store.budget_balance(&district, year).await?;
        let closed = self.ctx.store.year_closed(&district, year).await?;
        let mut balance = balance_to_pb(year, &balance, closed);
        balance.imported_paid_fen = self.ctx.store.imported_paid(&district, year).await?.fen();
        balance.import_window_open = self.ctx.store.import_window_open(&district, year).await?;
        let mut rows = self
            .ctx
            .store
            .ledger_entries(&district, year, offset, limit + 1)
            .await?;
        let next_page_token = key.next_offset_page(&mut rows, offset, limit);
        Ok(pb::GetBudgetResponse {
            balance: Some(balance),
            entries: rows
                .iter()
                .map(|e| pb::LedgerEntry {
                    entry_id: e.id,
                    kind: entry_kind_to_pb(e.kind).into(),
                    amount_fen: e.amount.fen(),
                    case_id: e.case_id.map(|c| c.to_string()).unwrap_or_default(),
                    actor_subject: e.actor_subject.clone(),
                    create_time: Some(timestamp(e.created_at)),
                    imported: e.imported,
                })
                .collect(),
            next_page_token,
        })
    }

    async fn verify_ledger(
        &self,
        caller: Caller,
        req: pb::VerifyLedgerRequest,
    ) -> ApiResult<pb::VerifyLedgerResponse> {
        let district = require_reader(&caller)?;
        let year = check_fiscal_year(req.fiscal_year)?;
        let _place = self.ctx.heavy_read().await?;
        let store = &self.ctx.store;
        let rules_allocated = store
            .district(&district)
            .await?
            .ok_or(ApiError::NotFound("district"))?
            .rules
            .budget_for(year)
            .map_or(Money::ZERO, |b| b.allocated);
        // Entries up to this id were written before each entry had an audit event.
        let audited_after = store.ledger_audited_after(&district).await?;
        let mut entries = Vec::new();
        let mut imported_paid = 0i64;
        let mut offset = 0;
        loop {
            let batch = store.ledger_entries(&district, year, offset, 5_000).await?;
            let n = batch.len() as u64;
            imported_paid = imported_paid.saturating_add(imported_paid_fen(&batch));
            let ids: Vec<i64> = batch
                .iter()
                .map(|e| e.id)
                .filter(|id| *id > audited_after)
                .collect();
            let mut recorded = store.ledger_entry_events(&district, &ids).await?;
            entries.extend(batch.into_iter().map(|e| ledger::EntryView {
                id: e.id,
                fiscal_year: year,
                kind: e.kind,
                amount: e.amount,
                case_id: e.case_id,
                audit: if e.id > audited_after {
                    ledger::EntryAudit::Events(recorded.remove(&e.id).unwrap_or_default())
                } else {
                    ledger::EntryAudit::Predates
                },
            }));
            if n < 5_000 {
                break;
            }
            offset += n;
        }
        let cases = store.cases_of_year(&district, year).await?;
        let views: Vec<ledger::CaseView> = cases
            .iter()
            .map(|c| ledger::CaseView {
                id: c.id,
                state: c.state.kind(),
                approved: c.approved_amount,
            })
            .collect();
        let report = ledger::verify(year, &entries, &views, rules_allocated);
        let balance = report.balance;
        let problems: Vec<String> = report.problems.iter().map(ToString::to_string).collect();
        let closed = store.year_closed(&district, year).await?;
        if !problems.is_empty() {
            tracing::warn!(district = %district, year, problems = problems.len(), "ledger verification found problems");
        }
        let mut balance = balance_to_pb(year, &balance, closed);
        balance.imported_paid_fen = imported_paid;
        balance.import_window_open = store.import_window_open(&district, year).await?;
        Ok(pb::VerifyLedgerResponse {
            consistent: problems.is_empty(),
            balance: Some(balance),
            problems,
            cases_checked: i32::try_from(cases.len()).unwrap_or(i32::MAX),
        })
    }

    async fn close_fiscal_year(
        &self,
        caller: Caller,
        req: pb::CloseFiscalYearRequest,
    ) -> ApiResult<pb::CloseFiscalYearResponse> {
        let district = caller.require_district_role(Role::Finance)?.clone();
        let key = self
            .ctx
            .idempotency_key(&caller, "CloseFiscalYear", &req.request_id, &req)?;
        let year = check_fiscal_year(req.fiscal_year)?;
        let mut tx = match self
            .ctx
            .begin(Some(&district), &caller, Role::Finance, &key)
            .await?
        {
            Begun::Replayed(resp) => return Ok(resp),
            Begun::Fresh(tx) => *tx,
        };
        if tx.year_closed(&district, year).await? {
            return Err(ApiError::precondition(
                "YEAR_CLOSED",
                format!("fiscal year {year} is already closed"),
            ));
        }
        let balance = tx.budget_balance(&district, year).await?;
        let unused = balance.available();
        tx.close_year(&district, year, unused).await?;
        let mut shown = balance_to_pb(year, &balance, true);
        shown.imported_paid_fen = tx.imported_paid(&district, year).await?.fen();
        let resp = pb::CloseFiscalYearResponse {
            balance: Some(shown),
            unused_fen: unused.fen(),
        };
        commit(tx, &key, &resp).await?;
        tracing::info!(district = %district, year, unused_fen = unused.fen(), "fiscal year closed");
        Ok(resp)
    }

    async fn open_import_window(
        &self,
        caller: Caller,
        req: pb::OpenImportWindowRequest,
    ) -> ApiResult<pb::OpenImportWindowResponse> {
        let district = caller.require_district_role(Role::Finance)?.clone();
        let key = self
            .ctx
            .idempotency_key(&caller, "OpenImportWindow", &req.request_id, &req)?;
        let year = check_fiscal_year(req.fiscal_year)?;
        let reason = required_text("reason", &req.reason, MAX_TEXT)?;
        let mut tx = match self
            .ctx
            .begin(Some(&district), &caller, Role::Finance, &key)
            .await?
        {
            Begun::Replayed(resp) => return Ok(resp),
            Begun::Fresh(tx) => *tx,
        };
        if tx.year_closed(&district, year).await? {
            return Err(ApiError::precondition(
                "YEAR_CLOSED",
                format!(
                    "fiscal year {year} is closed: imports write closed years without a window"
                ),
            ));
        }
        if tx
            .import_window(&district, year)
            .await?
            .is_some_and(|w| w.open)
        {
            return Err(ApiError::precondition(
                "IMPORT_WINDOW_OPEN",
                format!("fiscal year {year} is already open to imports"),
            ));
        }
        let window = tx.open_import_window(&district, year, &reason).await?;
        let resp = pb::OpenImportWindowResponse {
            window: Some(import_window_to_pb(&window)),
        };
        commit(tx, &key, &resp).await?;
        tracing::info!(district = %district, year, "import window opened");
        Ok(resp)
    }

    async fn close_import_window(
        &self,
        caller: Caller,
        req: pb::CloseImportWindowRequest,
    ) -> ApiResult<pb::CloseImportWindowResponse> {
        let district = caller.require_district_role(Role::Finance)?.clone();
        let key = self
            .ctx
            .idempotency_key(&caller, "CloseImportWindow", &req.request_id, &req)?;
        let year = check_fiscal_year(req.fiscal_year)?;
        let reason = required_text("reason", &req.reason, MAX_TEXT)?;
        let mut tx = match self
            .ctx
            .begin(Some(&district), &caller, Role::Finance, &key)
            .await?
        {
            Begun::Replayed(resp) => return Ok(resp),
            Begun::Fresh(tx) => *tx,
        };
        let Some(before) = tx.import_window(&district, year).await?.filter(|w| w.open) else {
            return Err(ApiError::precondition(
                "IMPORT_WINDOW_NOT_OPEN",
                format!("fiscal year {year} has no open import window"),
            ));
        };
        let window = tx.close_import_window(&before, &reason).await?;
        let resp = pb::CloseImportWindowResponse {
            window: Some(import_window_to_pb(&window)),
        };
        commit(tx, &key, &resp).await?;
        tracing::info!(district = %district, year, "import window closed");
        Ok(resp)
    }
}

#[tonic::async_trait]
impl LedgerService for LedgerApi {
    async fn get_budget(
        &self,
        request: Request<pb::GetBudgetRequest>,
    ) -> Result<Response<pb::GetBudgetResponse>, Status> {
        handle!(self, request, get_budget)
    }
    async fn verify_ledger(
        &self,
        request: Request<pb::VerifyLedgerRequest>,
    ) -> Result<Response<pb::VerifyLedgerResponse>, Status> {
        handle!(self, request, verify_ledger)
    }
    async fn close_fiscal_year(
        &self,
        request: Request<pb::CloseFiscalYearRequest>,
    ) -> Result<Response<pb::CloseFiscalYearResponse>, Status> {
        handle!(self, request, close_fiscal_year)
    }
    async fn open_import_window(
        &self,
        request: Request<pb::OpenImportWindowRequest>,
    ) -> Result<Response<pb::OpenImportWindowResponse>, Status> {
        handle!(self, request, open_import_window)
    }
    async fn close_import_window(
        &self,
        request: Request<pb::CloseImportWindowRequest>,
    ) -> Result<Response<pb::CloseImportWindowResponse>, Status> {
        handle!(self, request, close_import_window)
    }
}

/// Roles that record follow-ups: the bureau's reviewing staff.
const FOLLOW_UP_ROLES: [Role; 4] = [
    Role::CaseOfficer,
    Role::DeputyLeader,
    Role::BureauHead,
    Role::BureauOffice,
];

#[derive(Debug, Clone)]
pub struct FollowUpApi {
    ctx: ApiContext,
}

impl FollowUpApi {
    pub fn new(ctx: ApiContext) -> Self {
        Self { ctx }
    }

    async fn list_due(
        &self,
        caller: Caller,
        req: pb::ListDueFollowUpsRequest,
    ) -> ApiResult<pb::ListDueFollowUpsResponse> {
        let district = require_reader(&caller)?;
        let due_by = match req.due_on_or_before.as_str() {
            "" => self.ctx.clock.now().date_naive(),
            s => parse_date("due_on_or_before", s)?,
        };
        let limit = self.ctx.page_size(req.page_size)?;
        let key = ListKey::of(district.as_str(), &req);
        let offset = key.offset(&req.page_token)?;
        let mut rows = self
            .ctx
            .store
            .due_follow_ups(&district, due_by, offset, limit + 1)
            .await?;
        let next_page_token = key.next_offset_page(&mut rows, offset, limit);
        Ok(pb::ListDueFollowUpsResponse {
            follow_ups: rows.iter().map(follow_up_to_pb).collect(),
            next_page_token,
        })
    }

    async fn list_case(
        &self,
        caller: Caller,
        req: pb::ListCaseFollowUpsRequest,
    ) -> ApiResult<pb::ListCaseFollowUpsResponse> {
        let district = require_reader(&caller)?;
        let id = parse_case_id(&req.case_id)?;
        visible(
            self.ctx.store.case(&district, id).await?,
            &CaseVisibility::District,
        )?;
        let rows = self.ctx.store.case_follow_ups(&district, id).await?;
        Ok(pb::ListCaseFollowUpsResponse {
            follow_ups: rows.iter().map(follow_up_to_pb).collect(),
        })
    }

    async fn record(
        &self,
        caller: Caller,
        req: pb::RecordFollowUpRequest,
    ) -> ApiResult<pb::RecordFollowUpResponse> {
        if caller.is_city() {
            return Err(ApiError::denied(
                "follow-ups are recorded with a district-scoped token",
            ));
        }
        let district = caller.district()?.clone();
        let role = FOLLOW_UP_ROLES
            .into_iter()
            .find(|r| caller.has_role(*r))
            .ok_or_else(|| {
                ApiError::denied("follow-ups are recorded by the bureau's reviewing staff")
            })?;
        let key = self
            .ctx
            .idempotency_key(&caller, "RecordFollowUp", &req.request_id, &req)?;
        let done_on = parse_date("done_date", &req.done_date)?;
        let method = required_text("method", &req.method, 64)?;
        if req.notes.chars().count() > MAX_TEXT {
            return Err(ApiError::invalid(
                "notes",
                format_args!("must be at most {MAX_TEXT} characters"),
            ));
        }
        let mut tx = match self.ctx.begin(Some(&district), &caller, role, &key).await? {
            Begun::Replayed(resp) => return Ok(resp),
            Begun::Fresh(tx) => *tx,
        };
        if done_on > tx.now().date_naive() {
            return Err(ApiError::invalid("done_date", "must not be in the future"));
        }
        let before = tx
            .follow_up(&district, &req.follow_up_id)
            .await?
            .ok_or(ApiError::NotFound("follow-up"))?;
        if before.done {
            return Err(ApiError::precondition(
                "FOLLOW_UP_RECORDED",
                "this follow-up is already recorded",
            ));
        }
        let after = FollowUpRecord {
            done: true,
            done_date: Some(done_on),
            method: Some(method),
            petitioned_again: req.petitioned_again,
            notes: Some(req.notes.trim().to_owned()).filter(|n| !n.is_empty()),
            recorded_by: Some(caller.claims().subject().to_string()),
            recorded_at: Some(tx.now()),
            ..before.clone()
        };
        tx.record_follow_up(&before, &after).await?;
        if req.petitioned_again {
            let case = visible(
                tx.case(&district, before.case_id).await?,
                &CaseVisibility::District,
            )?;
            if !case.petitioned_again {
                let mut flagged = CaseRecord {
                    petitioned_again: true,
                    ..case.clone()
                };
                tx.update_case(
                    "case.petitioned_again",
                    Some("follow-up found a new petition"),
                    &case,
                    &mut flagged,
                )
                .await?;
            }
        }
        let resp = pb::RecordFollowUpResponse {
            follow_up: Some(follow_up_to_pb(&after)),
        };
        commit(tx, &key, &resp).await?;
        Ok(resp)
    }
}

#[tonic::async_trait]
impl FollowUpService for FollowUpApi {
    async fn list_due_follow_ups(
        &self,
        request: Request<pb::ListDueFollowUpsRequest>,
    ) -> Result<Response<pb::ListDueFollowUpsResponse>, Status> {
        handle!(self, request, list_due)
    }
    async fn list_case_follow_ups(
        &self,
        request: Request<pb::ListCaseFollowUpsRequest>,
    ) -> Result<Response<pb::ListCaseFollowUpsResponse>, Status> {
        handle!(self, request, list_case)
    }
    async fn record_follow_up(
        &self,
        request: Request<pb::RecordFollowUpRequest>,
    ) -> Result<Response<pb::RecordFollowUpResponse>, Status> {
        handle!(self, request, record)
    }
}
