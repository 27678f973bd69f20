//! Storage of the fund's ledger: its entries, the balances folded from them, and the
//! closure of fiscal years.

use chrono::{DateTime, Utc};
use relief_domain::approval::BudgetBalance;
use relief_domain::ledger::{ENTRY_EVENT_ACTION, ENTRY_RESOURCE, EntryKind, RecordedEntry};
use relief_domain::{CaseId, DistrictId, Money};
use sea_orm::sea_query::{Expr, ExprTrait, Func};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use serde::Serialize;

use crate::entity::{fiscal_year_closure, ledger_entry};
use crate::error::{Error, Result, corrupt};
use crate::{Store, WriteTx};

/// One ledger entry as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntryRecord {
    pub id: i64,
    pub kind: EntryKind,
    pub amount: Money,
    pub case_id: Option<CaseId>,
    pub actor_subject: String,
    pub created_at: DateTime<Utc>,
    /// Written by an import, recording history rather than moving money here.
    pub imported: bool,
}

/// The year's balances, folded from the ledger's sums per kind.
pub(crate) async fn ledger_balance<C: ConnectionTrait>(
    conn: &C,
    district: &DistrictId,
    fiscal_year: i32,
) -> Result<BudgetBalance> {
    let rows: Vec<(String, i64)> = ledger_entry::Entity::find()
        .select_only()
        .column(ledger_entry::Column::Kind)
        // PostgreSQL sums bigints into numeric; cast back so both backends return a 64-bit int.
        .column_as(
            Expr::expr(Func::sum(Expr::col(ledger_entry::Column::AmountFen))).cast_as("BIGINT"),
            "total",
        )
        .filter(ledger_entry::Column::DistrictId.eq(district.as_str()))
        .filter(ledger_entry::Column::FiscalYear.eq(fiscal_year))
        .group_by(ledger_entry::Column::Kind)
        .into_tuple()
        .all(conn)
        .await?;
    let sums = rows
        .into_iter()
        .map(|(k, total)| {
            let kind = EntryKind::parse(&k)
                .ok_or_else(|| Error::corrupt("ledger entry", format!("unknown kind {k}")))?;
            Ok((kind, Money::from_fen(total).map_err(corrupt("ledger sum"))?))
        })
        .collect::<Result<Vec<_>>>()?;
    BudgetBalance::from_sums(sums).map_err(|e| Error::corrupt("ledger", e))
}

async fn year_closed<C: ConnectionTrait>(
    conn: &C,
    district: &DistrictId,
    year: i32,
) -> Result<bool> {
    Ok(
        fiscal_year_closure::Entity::find_by_id((district.to_string(), year))
            .count(conn)
            .await?
            > 0,
    )
}

impl WriteTx {
    /// The year's balances, read inside this write so a reservation checks what is true now.
    pub async fn budget_balance(
        &self,
        district: &DistrictId,
        fiscal_year: i32,
    ) -> Result<BudgetBalance> {
        ledger_balance(self.conn().await?, district, fiscal_year).await
    }

    pub async fn add_ledger_entry(
        &mut self,
        district: &DistrictId,
        fiscal_year: i32,
        case: Option<CaseId>,
        kind: EntryKind,
        amount: Money,
    ) -> Result<()> {
        self.insert_ledger_entry(district, fiscal_year, case, kind, amount, false)
            .await
    }

    /// Writes a ledger entry; `imported` marks one that records history from another system.
    pub(crate) async fn insert_ledger_entry(
        &mut self,
        district: &DistrictId,
        fiscal_year: i32,
        case: Option<CaseId>,
        kind: EntryKind,
        amount: Money,
        imported: bool,
    ) -> Result<()> {
        let row = ledger_entry::ActiveModel {
            id: sea_orm::NotSet,
            district_id: sea_orm::Set(district.to_string()),
            fiscal_year: sea_orm::Set(fiscal_year),
            case_id: sea_orm::Set(case.map(|c| c.to_string())),
            kind: sea_orm::Set(kind.as_str().to_owned()),
            amount_fen: sea_orm::Set(amount.fen()),
            actor_subject: sea_orm::Set(self.actor().subject.to_string()),
            created_at: sea_orm::Set(self.now()),
            imported: sea_orm::Set(imported),
        };
        let id = ledger_entry::Entity::insert(row)
            .exec(self.conn().await?)
            .await?
            .last_insert_id;
        // Each entry is a link of the chain of its own, so that an entry edited, removed or
        // added behind the write path no longer matches the chain.
        let recorded = RecordedEntry {
            entry_id: id,
            fiscal_year,
            case_id: case,
            kind,
            amount_fen: amount.fen(),
        };
        self.record(
            district,
            ENTRY_EVENT_ACTION,
            ENTRY_RESOURCE,
            &id.to_string(),
            None::<&()>,
            Some(&recorded),
        )?;
        Ok(())
    }

    pub async fn year_closed(&self, district: &DistrictId, year: i32) -> Result<bool> {
        year_closed(self.conn().await?, district, year).await
    }

    pub async fn close_year(
        &mut self,
        district: &DistrictId,
        year: i32,
        unused: Money,
    ) -> Result<()> {
        let row = fiscal_year_closure::Model {
            district_id: district.to_string(),
            fiscal_year: year,
            unused_fen: unused.fen(),
            closed_by: self.actor().subject.to_string(),
            closed_at: self.now(),
        };
        fiscal_year_closure::Entity::insert(row.into_active_model())
            .exec(self.conn().await?)
            .await
            .map_err(|e| Error::on_insert(e, format!("closure of fiscal year {year}")))?;
        #[derive(Serialize)]
        struct Closed {
            fiscal_year: i32,
            unused_fen: i64,
        }
        self.record(
            district,
            "fiscal_year.closed",
            "fiscal_year",
            &year.to_string(),
            None::<&()>,
            Some(&Closed {
                fiscal_year: year,
                unused_fen: unused.fen(),
            }),
        )
    }
}

impl Store {
    /// The year's balances as of now.
    pub async fn budget_balance(
        &self,
        district: &DistrictId,
        fiscal_year: i32,
    ) -> Result<BudgetBalance> {
        ledger_balance(&self.db, district, fiscal_year).await
    }

    pub async fn year_closed(&self, district: &DistrictId, year: i32) -> Result<bool> {
        year_closed(&self.db, district, year).await
    }

    /// The year's ledger entries in order (by id), those after entry `after` when given.
    pub async fn ledger_entries(
        &self,
        district: &DistrictId,
        fiscal_year: i32,
        after: Option<i64>,
        limit: u64,
    ) -> Result<Vec<LedgerEntryRecord>> {
        let mut q = ledger_entry::Entity::find()
            .filter(ledger_entry::Column::DistrictId.eq(district.as_str()))
            .filter(ledger_entry::Column::FiscalYear.eq(fiscal_year))
            .order_by_asc(ledger_entry::Column::Id)
            .limit(limit);
        if let Some(id) = after {
            q = q.filter(ledger_entry::Column::Id.gt(id));
        }
        q.all(&self.db)
            .await?
            .into_iter()
            .map(|r| {
                Ok(LedgerEntryRecord {
                    id: r.id,
                    kind: EntryKind::parse(&r.kind)
                        .ok_or_else(|| Error::corrupt("ledger entry", r.kind.clone()))?,
                    amount: Money::from_fen(r.amount_fen).map_err(corrupt("ledger amount"))?,
                    case_id: r
                        .case_id
                        .as_deref()
                        .map(CaseId::parse)
                        .transpose()
                        .map_err(corrupt("case id"))?,
                    actor_subject: r.actor_subject,
                    created_at: r.created_at,
                    imported: r.imported,
                })
            })
            .collect()
    }
}
