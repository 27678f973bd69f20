//! DisbursementService (核拨): the finance section pays approved cases, once each, for the
//! approved amount ([`relief_domain::payment::check_payable`]), confirms what the bank paid
//! ([`relief_domain::payment::confirm`]), and records what it refused or returned.

use chrono::NaiveDate;
use relief_domain::case::CaseState;
use relief_domain::ledger::EntryKind;
use relief_domain::payment::{
    ConfirmFacts, ConfirmRefusal, PaidPayment, PayRefusal, PayableFacts, PaymentState,
    check_payable, confirm, parse_statement, reconcile,
};
use relief_domain::{CaseId, DistrictId, Role};
use relief_proto::v1 as pb;
use relief_proto::v1::disbursement_service_server::DisbursementService;
use relief_store::{CaseRecord, FollowUpRecord, PaymentRecord, WriteTx};
use tonic::{Request, Response, Status};

mod views;

use views::payment_to_pb;
pub(crate) use views::payment_views;

use crate::ApiContext;
use crate::access::{check_fiscal_year, new_id, parse_case_id, parse_date, required_text, visible};
use crate::auth::{Caller, CaseVisibility};
use crate::convert::{attachment_from_pb, case_to_pb};
use crate::error::{ApiError, ApiResult};
use crate::paging::{ListKey, parse_time_key, time_key};
use crate::plumbing::handle;

const MAX_TEXT: usize = 2000;
/// What the finance section's readers are told they may not read.
const READERS: &str = "see payments and the ledger";

fn pay_refusal(case: CaseId, e: PayRefusal) -> ApiError {
    let message = format!("case {case}: {e}");
    match e {
        PayRefusal::AlreadyPaid => ApiError::precondition("ALREADY_PAID", message),
        PayRefusal::NotApproved(_) => ApiError::precondition("CASE_NOT_APPROVED", message),
        PayRefusal::PaymentExists { .. } => ApiError::precondition("PAYMENT_EXISTS", message),
        PayRefusal::YearClosed(_) => ApiError::precondition("YEAR_CLOSED", e.to_string()),
        PayRefusal::MissingDocuments(_) => {
            ApiError::precondition("MISSING_DOCUMENTS", e.to_string())
        }
        PayRefusal::NoFiscalYear | PayRefusal::NoAmount => ApiError::Internal(message),
        PayRefusal::AmountDiffers { .. } => ApiError::invalid("amount_fen", e),
    }
}

fn confirm_refusal(case: CaseId, e: ConfirmRefusal) -> ApiError {
    match e {
        ConfirmRefusal::NotPending(_) => {
            ApiError::precondition("PAYMENT_NOT_PENDING", e.to_string())
        }
        ConfirmRefusal::OutsideYear(_) | ConfirmRefusal::InFuture => {
            ApiError::invalid("paid_date", e)
        }
        ConfirmRefusal::YearClosed(_) => ApiError::precondition("YEAR_CLOSED", e.to_string()),
        ConfirmRefusal::CaseNotPayable(_) => {
            ApiError::precondition("CASE_NOT_PAYABLE", format!("case {case}: {e}"))
        }
    }
}

/// The district's payment `id`, read in the write.
async fn payment_of(tx: &WriteTx, district: &DistrictId, id: &str) -> ApiResult<PaymentRecord> {
    tx.payment(district, id)
        .await?
        .ok_or(ApiError::NotFound("payment"))
}

/// The follow-up visits (回访) due after a confirmed payment of `case`, numbered from one.
async fn insert_follow_ups(
    tx: &mut WriteTx,
    case: &CaseRecord,
    due: Vec<NaiveDate>,
) -> ApiResult<()> {
    for (i, due) in due.into_iter().enumerate() {
        tx.insert_follow_up(&FollowUpRecord::due(
            new_id(),
            case,
            i32::try_from(i + 1).unwrap_or(i32::MAX),
            due,
        ))
        .await?;
    }
    Ok(())
}

/// What a paid payment becomes when the bank returns it for `reason`; only a paid payment
/// can be returned.
fn reversed_state(state: &PaymentState, reason: &str) -> ApiResult<PaymentState> {
    let PaymentState::Paid {
        bank_reference,
        paid_on,
    } = state.clone()
    else {
        return Err(ApiError::precondition(
            "PAYMENT_NOT_PAID",
            format!("the payment is {}", state.as_str()),
        ));
    };
    Ok(PaymentState::Reversed {
        bank_reference,
        paid_on,
        reason: reason.to_owned(),
    })
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
        let m = self.ctx.mutation(&caller, &req.request_id, &req)?;
        let id = parse_case_id(&req.case_id)?;
        let voucher = required_text("voucher_number", &req.voucher_number, 64)?;
        m.run(Some(&district), Role::Finance, async |tx| {
            let case = visible(tx.case(&district, id).await?, &CaseVisibility::District)?;
            let payments = tx.payments_of_case(&district, id).await?;
            let payments: Vec<_> = payments.iter().map(|p| (p.id.as_str(), &p.state)).collect();
            let year_closed = match case.application.fiscal_year {
                Some(year) => tx.year_closed(&district, year).await?,
                None => false,
            };
            let rules = tx
                .district(&district)
                .await?
                .ok_or(ApiError::NotFound("district"))?
                .rules;
            let payable = check_payable(PayableFacts {
                state: &case.state,
                payments: &payments,
                fiscal_year: case.application.fiscal_year,
                year_closed,
                required_documents: &rules.required_payment_documents,
                attachments: &case.application.attachments,
                approved: case.approved_amount,
                asked_fen: req.amount_fen,
            })
            .map_err(|e| pay_refusal(id, e))?;
            let now = tx.now();
            let ru = &case.application.receiving_unit;
            let record = PaymentRecord {
                id: new_id(),
                district_id: district.clone(),
                case_id: id,
                fiscal_year: payable.fiscal_year,
                amount: payable.amount,
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
            tracing::info!(district = %district, case = %id, payment = %record.id, amount_fen = payable.amount.fen(), "payment created");
            Ok(pb::CreatePaymentResponse {
                payment: Some(payment_to_pb(&record, &caller.case_view(&case))),
            })
        })
        .await
    }

    async fn confirm_payment(
        &self,
        caller: Caller,
        req: pb::ConfirmPaymentRequest,
    ) -> ApiResult<pb::ConfirmPaymentResponse> {
        let district = caller.require_district_role(Role::Finance)?.clone();
        let m = self.ctx.mutation(&caller, &req.request_id, &req)?;
        let bank_reference = required_text("bank_reference", &req.bank_reference, 64)?;
        let paid_on = parse_date("paid_date", &req.paid_date)?;
        m.run(Some(&district), Role::Finance, async |tx| {
            let before = payment_of(tx, &district, &req.payment_id).await?;
            let year_closed = tx.year_closed(&district, before.fiscal_year).await?;
            let case = visible(
                tx.case(&district, before.case_id).await?,
                &CaseVisibility::District,
            )?;
            let rules = tx.case_rules(&case).await?;
            let confirmed = confirm(ConfirmFacts {
                payment: &before.state,
                fiscal_year: before.fiscal_year,
                amount: before.amount,
                bank_reference: &bank_reference,
                paid_on,
                today: tx.now().date_naive(),
                year_closed,
                case_state: &case.state,
                case_approved: case.approved_amount,
                submitted_at: case.submitted_at,
                follow_up_after_days: &rules.follow_up_after_days,
            })
            .map_err(|e| confirm_refusal(case.id, e))?;
            let mut after = PaymentRecord {
                state: confirmed.payment,
                secs_to_payment: confirmed.secs_to_payment,
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
            paid_case.enter(confirmed.case_state, None, tx.now());
            tx.update_case("case.paid", None, &case, &mut paid_case)
                .await?;
            insert_follow_ups(tx, &paid_case, confirmed.follow_ups).await?;
            tracing::info!(district = %district, case = %case.id, payment = %before.id, "payment confirmed");
            let view = caller.case_view(&paid_case);
            Ok(pb::ConfirmPaymentResponse {
                payment: Some(payment_to_pb(&after, &view)),
                case: Some(case_to_pb(&paid_case, &view)),
            })
        })
        .await
    }

    async fn reverse_payment(
        &self,
        caller: Caller,
        req: pb::ReversePaymentRequest,
    ) -> ApiResult<pb::ReversePaymentResponse> {
        let district = caller.require_district_role(Role::Finance)?.clone();
        let m = self.ctx.mutation(&caller, &req.request_id, &req)?;
        let reason = required_text("reason", &req.reason, MAX_TEXT)?;
        m.run(Some(&district), Role::Finance, async |tx| {
            let before = payment_of(tx, &district, &req.payment_id).await?;
            let reversed = reversed_state(&before.state, &reason)?;
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
                state: reversed,
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
            approved.enter(case.state.payment_returned()?, None, tx.now());
            tx.update_case("case.payment_returned", Some(&reason), &case, &mut approved)
                .await?;
            tx.cancel_open_follow_ups(&district, case.id).await?;
            tracing::info!(district = %district, case = %case.id, payment = %before.id, "payment returned by the bank");
            let view = caller.case_view(&approved);
            Ok(pb::ReversePaymentResponse {
                payment: Some(payment_to_pb(&after, &view)),
                case: Some(case_to_pb(&approved, &view)),
            })
        })
        .await
    }

    async fn fail_payment(
        &self,
        caller: Caller,
        req: pb::FailPaymentRequest,
    ) -> ApiResult<pb::FailPaymentResponse> {
        let district = caller.require_district_role(Role::Finance)?.clone();
        let m = self.ctx.mutation(&caller, &req.request_id, &req)?;
        let reason = required_text("reason", &req.reason, MAX_TEXT)?;
        m.run(Some(&district), Role::Finance, async |tx| {
            let before = payment_of(tx, &district, &req.payment_id).await?;
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
            let case = match caller.view_depends_on_unit() {
                true => tx.case(&district, before.case_id).await?,
                false => None,
            };
            let view = case.map_or_else(|| caller.view_without_unit(), |c| caller.case_view(&c));
            Ok(pb::FailPaymentResponse {
                payment: Some(payment_to_pb(&after, &view)),
            })
        })
        .await
    }

    async fn get_payment(
        &self,
        caller: Caller,
        req: pb::GetPaymentRequest,
    ) -> ApiResult<pb::GetPaymentResponse> {
        let district = caller.district_reader(READERS)?;
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
        let district = caller.district_reader(READERS)?;
        let limit = self.ctx.page_size(req.page_size)?;
        let key = ListKey::of(district.as_str(), &req);
        let after = key.cursor_as(&req.page_token, parse_time_key)?;
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
            .payments(&district, case, year, after, limit + 1)
            .await?;
        let next_page_token = key.next_page(&mut rows, limit, |p| time_key(p.created_at, &p.id));
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
        let m = self.ctx.mutation(&caller, &req.request_id, &req)?;
        let id = parse_case_id(&req.case_id)?;
        let document = attachment_from_pb("document", req.document.as_ref())
            .map_err(ApiError::InvalidArgument)?;
        if document.document_type.is_empty() {
            return Err(ApiError::invalid("document.document_type", "is required"));
        }
        let visibility = match role {
            Role::ApplicantUnit => CaseVisibility::Unit(caller.unit()?.clone()),
            _ => CaseVisibility::District,
        };
        m.run(Some(&district), role, async |tx| {
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
            Ok(pb::AddCaseDocumentResponse {
                case: Some(case_to_pb(&after, &caller.case_view(&after))),
            })
        })
        .await
    }

    async fn reconcile_statement(
        &self,
        caller: Caller,
        req: pb::ReconcileStatementRequest,
    ) -> ApiResult<pb::ReconcileStatementResponse> {
        let district = caller.district_reader(READERS)?;
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
