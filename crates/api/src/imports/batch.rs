//! Writing checked records: each batch in one transaction under the district's write lock,
//! each record weighed against what the district already holds (an earlier import of its id,
//! whether its year takes imports, the year's budget).

use std::collections::HashMap;

use relief_domain::approval::BudgetBalance;
use relief_domain::{Money, Role, Violation};
use relief_proto::v1 as pb;
use relief_store::{DistrictRecord, ImportedCase, PriorImport, WriteTx};

use super::{Checked, invalid, written};
use crate::ApiContext;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};

/// Writes one batch in one transaction: each record is checked against what the district
/// already holds (an earlier import of its id, whether its year takes imports, the year's
/// budget) and written or refused.
pub(super) async fn write_batch(
    ctx: &ApiContext,
    caller: &Caller,
    role: Role,
    district: &DistrictRecord,
    batch: Vec<Checked>,
) -> ApiResult<Vec<(pb::ImportResult, Option<Money>)>> {
    let mut tx = ctx
        .store
        .begin_write(
            Some(&district.id),
            caller.actor(role),
            None,
            ctx.clock.now(),
        )
        .await?;
    let mut out = Vec::with_capacity(batch.len());
    let mut years: HashMap<i32, (bool, BudgetBalance)> = HashMap::new();
    for c in batch {
        let external_id = c.imported.external_id.clone();
        if let Some(prior) = tx.prior_import(&district.id, &external_id).await? {
            out.push((seen_before(c.index, external_id, prior, &c.imported), None));
            continue;
        }
        if let Some(year) = c.imported.case.application.fiscal_year
            && let Some(refusal) = admit_to_year(&tx, &mut years, district, year, c.paid).await?
        {
            out.push((invalid(c.index, &external_id, vec![refusal]), None));
            continue;
        }
        tx.import_case(&c.imported, c.paid).await?;
        let case_id = c.imported.case.id.to_string();
        let result = written(c.index, external_id, pb::ImportOutcome::Imported, case_id);
        out.push((result, c.paid));
    }
    tx.commit(None).await?;
    Ok(out)
}

/// The result of a record whose external id was imported before: a duplicate if its content
/// is the same, else refused.
fn seen_before(
    index: usize,
    external_id: String,
    prior: PriorImport,
    imported: &ImportedCase,
) -> pb::ImportResult {
    if prior.fingerprint == imported.fingerprint {
        return written(
            index,
            external_id,
            pb::ImportOutcome::Duplicate,
            prior.case_id,
        );
    }
    invalid(
        index,
        &external_id,
        vec![Violation::new(
            "external_id",
            format!(
                "was imported before as case {} with other content",
                prior.case_id
            ),
        )],
    )
}

/// Whether fiscal `year` takes a record that paid `paid`: the year must be closed or open to
/// imports, and its budget must hold the payment. Each year's state is read once per batch
/// (in `years`) and kept up to date here, so a batch costs one balance query per year, not
/// one per record. It is read under the district's write lock, so a window finance closes
/// meanwhile is respected. The refusal, if any, is the record's violation.
async fn admit_to_year(
    tx: &WriteTx,
    years: &mut HashMap<i32, (bool, BudgetBalance)>,
    district: &DistrictRecord,
    year: i32,
    paid: Option<Money>,
) -> ApiResult<Option<Violation>> {
    let (writable, balance) = match years.entry(year) {
        std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
        std::collections::hash_map::Entry::Vacant(e) => {
            let writable = tx.year_closed(&district.id, year).await?
                || tx
                    .import_window(&district.id, year)
                    .await?
                    .is_some_and(|w| w.open);
            let balance = tx.budget_balance(&district.id, year).await?;
            e.insert((writable, balance))
        }
    };
    let refusal = if *writable {
        paid.and_then(|amount| {
            balance
                .check_reserve(amount)
                .err()
                .map(|e| ("payment.amount_fen", format!("fiscal year {year}: {e}")))
        })
    } else {
        Some((
            "application.fiscal_year",
            format!(
                "fiscal year {year} is not closed and not open to imports: \
                 finance opens it with LedgerService.OpenImportWindow"
            ),
        ))
    };
    if let Some((field, reason)) = refusal {
        return Ok(Some(Violation::new(field, reason)));
    }
    if let Some(amount) = paid {
        balance.paid = balance
            .paid
            .checked_add(amount)
            .map_err(|e| ApiError::Internal(format!("paid total: {e}")))?;
    }
    Ok(None)
}
