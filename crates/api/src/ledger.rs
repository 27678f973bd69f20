//! LedgerService: the fund's books for a fiscal year. The balance and its entries, their
//! verification against the cases and the audit chain ([`relief_domain::ledger::verify`]),
//! closing a year, and the windows in which imports may write a closed year.

use relief_domain::DistrictId;
use relief_domain::approval::BudgetBalance;
use relief_domain::ledger::{self, EntryKind};
use relief_domain::{Money, Role};
use relief_proto::v1 as pb;
use relief_proto::v1::ledger_service_server::LedgerService;
use relief_store::{ImportWindowRecord, Store};
use tonic::{Request, Response, Status};

use crate::ApiContext;
use crate::access::{check_fiscal_year, required_text};
use crate::auth::Caller;
use crate::convert::timestamp;
use crate::error::{ApiError, ApiResult};
use crate::paging::ListKey;
use crate::plumbing::handle;

const MAX_TEXT: usize = 2000;
const READERS: &str = "see payments and the ledger";

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

/// The year's ledger entries as verification sees them, each with what the audit chain
/// holds about it, read 5,000 at a time.
async fn entry_views(
    store: &Store,
    district: &DistrictId,
    year: i32,
) -> ApiResult<Vec<ledger::EntryView>> {
    // Entries up to this id were written before each entry had an audit event.
    let audited_after = store.ledger_audited_after(district).await?;
    let mut entries = Vec::new();
    let mut after = None;
    loop {
        let batch = store.ledger_entries(district, year, after, 5_000).await?;
        let n = batch.len() as u64;
        after = batch.last().map(|e| e.id);
        let ids: Vec<i64> = batch
            .iter()
            .map(|e| e.id)
            .filter(|id| *id > audited_after)
            .collect();
        let mut recorded = store.ledger_entry_events(district, &ids).await?;
        entries.extend(batch.into_iter().map(|e| ledger::EntryView {
            id: e.id,
            fiscal_year: year,
            kind: e.kind,
            amount: e.amount,
            case_id: e.case_id,
            imported: e.imported,
            audit: if e.id > audited_after {
                ledger::EntryAudit::Events(recorded.remove(&e.id).unwrap_or_default())
            } else {
                ledger::EntryAudit::Predates
            },
        }));
        if n < 5_000 {
            break;
        }
    }
    Ok(entries)
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
        let district = caller.district_reader(READERS)?;
        let year = check_fiscal_year(req.fiscal_year)?;
        let limit = self.ctx.page_size(req.page_size)?;
        let key = ListKey::of(district.as_str(), &req);
        let after = key.cursor_as(&req.page_token, str::parse::<i64>)?;
        let balance = self.ctx.store.budget_balance(&district, year).await?;
        let closed = self.ctx.store.year_closed(&district, year).await?;
        let mut balance = balance_to_pb(year, &balance, closed);
        balance.imported_paid_fen = self.ctx.store.imported_paid(&district, year).await?.fen();
        balance.import_window_open = self.ctx.store.import_window_open(&district, year).await?;
        let mut rows = self
            .ctx
            .store
            .ledger_entries(&district, year, after, limit + 1)
            .await?;
        let next_page_token = key.next_page(&mut rows, limit, |e| e.id.to_string());
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
        let district = caller.district_reader(READERS)?;
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
        let entries = entry_views(store, &district, year).await?;
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
        balance.imported_paid_fen = report.imported_paid.fen();
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
        let m = self.ctx.mutation(&caller, &req.request_id, &req)?;
        let year = check_fiscal_year(req.fiscal_year)?;
        m.run(Some(&district), Role::Finance, async |tx| {
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
            tracing::info!(district = %district, year, unused_fen = unused.fen(), "fiscal year closed");
            Ok(pb::CloseFiscalYearResponse {
            balance: Some(shown),
            unused_fen: unused.fen(),
        })
        })
        .await
    }

    async fn open_import_window(
        &self,
        caller: Caller,
        req: pb::OpenImportWindowRequest,
    ) -> ApiResult<pb::OpenImportWindowResponse> {
        let district = caller.require_district_role(Role::Finance)?.clone();
        let m = self.ctx.mutation(&caller, &req.request_id, &req)?;
        let year = check_fiscal_year(req.fiscal_year)?;
        let reason = required_text("reason", &req.reason, MAX_TEXT)?;
        m.run(Some(&district), Role::Finance, async |tx| {
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
            tracing::info!(district = %district, year, "import window opened");
            Ok(pb::OpenImportWindowResponse {
                window: Some(import_window_to_pb(&window)),
            })
        })
        .await
    }

    async fn close_import_window(
        &self,
        caller: Caller,
        req: pb::CloseImportWindowRequest,
    ) -> ApiResult<pb::CloseImportWindowResponse> {
        let district = caller.require_district_role(Role::Finance)?.clone();
        let m = self.ctx.mutation(&caller, &req.request_id, &req)?;
        let year = check_fiscal_year(req.fiscal_year)?;
        let reason = required_text("reason", &req.reason, MAX_TEXT)?;
        m.run(Some(&district), Role::Finance, async |tx| {
            let Some(before) = tx.import_window(&district, year).await?.filter(|w| w.open) else {
                return Err(ApiError::precondition(
                    "IMPORT_WINDOW_NOT_OPEN",
                    format!("fiscal year {year} has no open import window"),
                ));
            };
            let window = tx.close_import_window(&before, &reason).await?;
            tracing::info!(district = %district, year, "import window closed");
            Ok(pb::CloseImportWindowResponse {
                window: Some(import_window_to_pb(&window)),
            })
        })
        .await
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
