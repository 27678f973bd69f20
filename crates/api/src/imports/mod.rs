//! `SyncService.ImportCases`: a district's history from another system. Every record is
//! checked on its own before anything of it is written; valid records are written in batches,
//! each batch in one transaction under the district's write lock, with the same rows, ledger
//! entries and audit events a case decided here leaves, so the reports and the ledger count
//! them like native cases. The importing system's id of each record is kept: the same record
//! again is a duplicate, a different record under an old id is refused.
//!
//! An import records history; it must not be a way to spend. So a record is written only into
//! a fiscal year that is closed, or that finance has opened to imports
//! (`LedgerService.OpenImportWindow`); its ledger entries are marked imported. A record for
//! any other year is refused like every other invalid record: its own result, INVALID, with
//! the field `application.fiscal_year`, and nothing written.

//!
//! The work is in three parts: [`record`] checks each record on its own and builds the rows it
//! makes, [`batch`] writes the records that passed in batches against what the district already
//! holds, and this module reads the stream and tallies the results.

mod batch;
mod record;

use relief_domain::{Money, Role, Violation};
use relief_proto::v1 as pb;
use relief_store::ImportedCase;
use tonic::Streaming;

use crate::ApiContext;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};

/// Records written per transaction.
const BATCH: usize = 200;

/// Records one call may carry.
pub const MAX_IMPORT_RECORDS: usize = 100_000;

/// A record that passed its own checks, waiting for the district's (duplicates, budget).
pub(super) struct Checked {
    pub(super) index: usize,
    pub(super) imported: ImportedCase,
    pub(super) paid: Option<Money>,
}

pub(super) enum Verdict {
    Checked(Box<Checked>),
    Invalid(pb::ImportResult),
}

pub(crate) async fn import_cases(
    ctx: &ApiContext,
    caller: Caller,
    mut records: Streaming<pb::ImportCasesRequest>,
) -> ApiResult<pb::ImportCasesResponse> {
    let role = importing_role(&caller)?;
    let district_id = caller.district()?.clone();
    let district = ctx
        .store
        .district(&district_id)
        .await?
        .ok_or(ApiError::NotFound("district"))?;
    let mut results: Vec<pb::ImportResult> = Vec::new();
    let mut summary = pb::ImportSummary::default();
    let mut batch: Vec<Checked> = Vec::new();
    let mut index = 0usize;
    loop {
        let next = records.message().await.map_err(ApiError::Stream)?;
        let done = next.is_none();
        if let Some(record) = next {
            check_record_count(index)?;
            summary.received += 1;
            match record::check(index, &record, &district, &caller, ctx.clock.now()) {
                Verdict::Checked(c) => batch.push(*c),
                Verdict::Invalid(r) => {
                    summary.invalid += 1;
                    results.push(r);
                }
            }
            index += 1;
        }
        if batch.len() >= BATCH || (done && !batch.is_empty()) {
            let written =
                batch::write_batch(ctx, &caller, role, &district, std::mem::take(&mut batch))
                    .await?;
            tally(&mut summary, &mut results, written);
        }
        if done {
            break;
        }
    }
    results.sort_by_key(|r| r.index);
    tracing::info!(
        district = %district_id,
        received = summary.received,
        imported = summary.imported,
        duplicates = summary.duplicates,
        invalid = summary.invalid,
        "cases imported"
    );
    Ok(pb::ImportCasesResponse {
        results,
        summary: Some(summary),
    })
}

/// The role the caller imports in: the district administrator's, else a sync client's.
fn importing_role(caller: &Caller) -> ApiResult<Role> {
    if caller.has_role(Role::DistrictAdmin) {
        Ok(Role::DistrictAdmin)
    } else if caller.has_role(Role::SyncClient) {
        Ok(Role::SyncClient)
    } else {
        Err(ApiError::denied(
            "importing is for the district administrator and sync clients",
        ))
    }
}

/// Refuses the record at `index` (from zero) when a call carries more than it may.
fn check_record_count(index: usize) -> ApiResult<()> {
    if index < MAX_IMPORT_RECORDS {
        return Ok(());
    }
    Err(ApiError::TooMany {
        reason: "TOO_MANY_RECORDS",
        message: format!("at most {MAX_IMPORT_RECORDS} records per call"),
        retry_after: None,
    })
}

/// Counts the results of a written batch into `summary` and keeps them in `results`.
fn tally(
    summary: &mut pb::ImportSummary,
    results: &mut Vec<pb::ImportResult>,
    written: Vec<(pb::ImportResult, Option<Money>)>,
) {
    for (r, paid) in written {
        match pb::ImportOutcome::try_from(r.outcome) {
            Ok(pb::ImportOutcome::Imported) => {
                summary.imported += 1;
                summary.imported_paid_fen += paid.map_or(0, Money::fen);
            }
            Ok(pb::ImportOutcome::Duplicate) => summary.duplicates += 1,
            _ => summary.invalid += 1,
        }
        results.push(r);
    }
}

pub(super) fn invalid(
    index: usize,
    external_id: &str,
    violations: Vec<Violation>,
) -> pb::ImportResult {
    pb::ImportResult {
        index: i64::try_from(index).unwrap_or(i64::MAX),
        external_id: external_id.to_owned(),
        outcome: pb::ImportOutcome::Invalid as i32,
        case_id: String::new(),
        violations: relief_domain::violation::summarize(violations, 0)
            .into_iter()
            .map(|v| pb::ImportViolation {
                field: v.field,
                description: v.description,
            })
            .collect(),
    }
}

/// The result of a record written (or found written before) as case `case_id`.
pub(super) fn written(
    index: usize,
    external_id: String,
    outcome: pb::ImportOutcome,
    case_id: String,
) -> pb::ImportResult {
    pb::ImportResult {
        index: i64::try_from(index).unwrap_or(i64::MAX),
        external_id,
        outcome: outcome as i32,
        case_id,
        violations: Vec::new(),
    }
}
