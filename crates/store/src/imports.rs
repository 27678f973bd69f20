//! Imported history: a case decided (and paid) in another system, written with its decisions,
//! its payment and its ledger entries as a case decided here leaves them (the entries marked
//! imported), and remembered under the importing system's id so that the same record
//! imported again changes nothing. Also the import windows: the fiscal years not yet closed
//! that finance has opened to imports.

use chrono::{DateTime, Utc};
use relief_domain::ledger::EntryKind;
use relief_domain::{DistrictId, Money};
use sea_orm::sea_query::{Expr, ExprTrait as _, Func};
use sea_orm::{
    ActiveModelTrait as _, ColumnTrait as _, ConnectionTrait, EntityTrait, IntoActiveModel as _,
    QueryFilter as _, QuerySelect as _,
};
use serde::Serialize;

use crate::Store;
use crate::approvals::DecisionRecord;
use crate::entity::{case, case_import, import_window};
use crate::entity::{ledger_entry, payment};
use crate::error::{Error, Result};
use crate::payments::PaymentRecord;
use crate::records::CaseRecord;
use crate::write::WriteTx;

/// A fiscal year's import window as last opened or closed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImportWindowRecord {
    pub district_id: DistrictId,
    pub fiscal_year: i32,
    pub open: bool,
    /// Why it was last opened or closed.
    pub reason: String,
    pub opened_by: String,
    pub opened_at: DateTime<Utc>,
    pub closed_by: Option<String>,
    pub closed_at: Option<DateTime<Utc>>,
}

impl ImportWindowRecord {
    fn from_row(r: import_window::Model) -> Result<Self> {
        Ok(Self {
            district_id: DistrictId::parse(&r.district_id)
                .map_err(|e| Error::corrupt("district id", e))?,
            fiscal_year: r.fiscal_year,
            open: r.open,
            reason: r.reason,
            opened_by: r.opened_by,
            opened_at: r.opened_at,
            closed_by: r.closed_by,
            closed_at: r.closed_at,
        })
    }

    fn to_row(&self) -> import_window::Model {
        import_window::Model {
            district_id: self.district_id.to_string(),
            fiscal_year: self.fiscal_year,
            open: self.open,
            reason: self.reason.clone(),
            opened_by: self.opened_by.clone(),
            opened_at: self.opened_at,
            closed_by: self.closed_by.clone(),
            closed_at: self.closed_at,
        }
    }
}

async fn import_window<C: ConnectionTrait>(
    conn: &C,
    district: &DistrictId,
    year: i32,
) -> Result<Option<ImportWindowRecord>> {
    import_window::Entity::find_by_id((district.to_string(), year))
        .one(conn)
        .await?
        .map(ImportWindowRecord::from_row)
        .transpose()
}

/// One case of imported history, checked and ready to write.
#[derive(Debug, Clone)]
pub struct ImportedCase {
    /// The importing system's id of the record.
    pub external_id: String,
    /// SHA-256 (hex) of the record as received.
    pub fingerprint: String,
    pub case: CaseRecord,
    pub decisions: Vec<DecisionRecord>,
    /// The payment, for a paid case.
    pub payment: Option<PaymentRecord>,
}

/// What an earlier import made of an external id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriorImport {
    pub case_id: String,
    pub fingerprint: String,
}

/// The sum of the year's imported pay entries.
async fn imported_paid<C: ConnectionTrait>(
    conn: &C,
    district: &DistrictId,
    year: i32,
) -> Result<Money> {
    let total: Option<i64> = ledger_entry::Entity::find()
        .select_only()
        // PostgreSQL sums bigints into numeric; cast back so both backends return a 64-bit int.
        .column_as(
            Expr::expr(Func::sum(Expr::col(ledger_entry::Column::AmountFen))).cast_as("BIGINT"),
            "total",
        )
        .filter(ledger_entry::Column::DistrictId.eq(district.as_str()))
        .filter(ledger_entry::Column::FiscalYear.eq(year))
        .filter(ledger_entry::Column::Kind.eq(EntryKind::Pay.as_str()))
        .filter(ledger_entry::Column::Imported.eq(true))
        .into_tuple::<Option<i64>>()
        .one(conn)
        .await?
        .flatten();
    Money::from_fen(total.unwrap_or(0)).map_err(|e| Error::corrupt("imported paid", e))
}

impl WriteTx {
    /// Of the year's paid amount, the part that imports recorded, as this write sees it.
    pub async fn imported_paid(&self, district: &DistrictId, year: i32) -> Result<Money> {
        imported_paid(self.conn().await?, district, year).await
    }

    /// The year's import window, open or closed, if one was ever opened.
    pub async fn import_window(
        &self,
        district: &DistrictId,
        year: i32,
    ) -> Result<Option<ImportWindowRecord>> {
        import_window(self.conn().await?, district, year).await
    }

    /// Opens the year to imports (again, if it was opened and closed before), with the
    /// reason, and records it in the audit log.
    pub async fn open_import_window(
        &mut self,
        district: &DistrictId,
        year: i32,
        reason: &str,
    ) -> Result<ImportWindowRecord> {
        let before = self.import_window(district, year).await?;
        let after = ImportWindowRecord {
            district_id: district.clone(),
            fiscal_year: year,
            open: true,
            reason: reason.to_owned(),
            opened_by: self.actor().subject.to_string(),
            opened_at: self.now(),
            closed_by: None,
            closed_at: None,
        };
        let row = after.to_row().into_active_model();
        if before.is_some() {
            import_window::Entity::update(row.reset_all())
                .exec(self.conn().await?)
                .await?;
        } else {
            import_window::Entity::insert(row)
                .exec(self.conn().await?)
                .await
                .map_err(|e| Error::on_insert(e, format!("import window of {year}")))?;
        }
        self.record_with_note(
            district,
            "import_window.opened",
            "import_window",
            &year.to_string(),
            Some(reason),
            before.as_ref(),
            Some(&after),
        )?;
        Ok(after)
    }

    /// Closes an open import window, with the reason, and records it in the audit log.
    pub async fn close_import_window(
        &mut self,
        before: &ImportWindowRecord,
        reason: &str,
    ) -> Result<ImportWindowRecord> {
        let after = ImportWindowRecord {
            open: false,
            reason: reason.to_owned(),
            closed_by: Some(self.actor().subject.to_string()),
            closed_at: Some(self.now()),
            ..before.clone()
        };
        import_window::Entity::update(after.to_row().into_active_model().reset_all())
            .exec(self.conn().await?)
            .await?;
        self.record_with_note(
            &before.district_id,
            "import_window.closed",
            "import_window",
            &before.fiscal_year.to_string(),
            Some(reason),
            Some(before),
            Some(&after),
        )?;
        Ok(after)
    }

    /// The case an earlier import made of `external_id` in the district, if any.
    pub async fn prior_import(
        &self,
        district: &DistrictId,
        external_id: &str,
    ) -> Result<Option<PriorImport>> {
        Ok(
            case_import::Entity::find_by_id((district.to_string(), external_id.to_owned()))
                .one(self.conn().await?)
                .await?
                .map(|row| PriorImport {
                    case_id: row.case_id,
                    fingerprint: row.fingerprint,
                }),
        )
    }

    /// Writes an imported case: the case, its decisions, its payment, the ledger's reserve
    /// and pay entries for the paid amount (marked imported), the audit events, and the
    /// import record. Whether the year may take it is the caller's to check first
    /// ([`WriteTx::import_window`], [`WriteTx::year_closed`]).
    pub async fn import_case(
        &mut self,
        imported: &ImportedCase,
        paid: Option<Money>,
    ) -> Result<()> {
        let c = &imported.case;
        let district = c.district_id.clone();
        case::Entity::insert(c.to_row()?.into_active_model())
            .exec(self.conn().await?)
            .await
            .map_err(|e| Error::on_insert(e, format!("case {}", c.id)))?;
        self.record_with_note(
            &district,
            "case.imported",
            "case",
            &c.id.to_string(),
            Some(&format!("external id {}", imported.external_id)),
            None::<&()>,
            Some(c),
        )?;
        for d in &imported.decisions {
            self.insert_decision(&district, d).await?;
        }
        if let Some(p) = &imported.payment {
            payment::Entity::insert(p.to_row().into_active_model())
                .exec(self.conn().await?)
                .await
                .map_err(|e| Error::on_insert(e, "payment"))?;
            self.record(
                &district,
                "payment.imported",
                "payment",
                &p.id,
                None::<&()>,
                Some(p),
            )?;
        }
        if let (Some(amount), Some(year)) = (paid, c.application.fiscal_year) {
            for kind in [EntryKind::Reserve, EntryKind::Pay] {
                self.insert_ledger_entry(&district, year, Some(c.id), kind, amount, true)
                    .await?;
            }
        }
        let now = self.now();
        let by = self.actor().subject.to_string();
        case_import::Entity::insert(
            case_import::Model {
                district_id: district.to_string(),
                external_id: imported.external_id.clone(),
                case_id: c.id.to_string(),
                fingerprint: imported.fingerprint.clone(),
                imported_by: by,
                imported_at: now,
            }
            .into_active_model(),
        )
        .exec(self.conn().await?)
        .await
        .map_err(|e| Error::on_insert(e, format!("import {}", imported.external_id)))?;
        Ok(())
    }
}

impl Store {
    /// Whether the year is open to imports now.
    pub async fn import_window_open(&self, district: &DistrictId, year: i32) -> Result<bool> {
        Ok(import_window(&self.db, district, year)
            .await?
            .is_some_and(|w| w.open))
    }

    /// Of the year's paid amount, the part that imports recorded as history.
    pub async fn imported_paid(&self, district: &DistrictId, year: i32) -> Result<Money> {
        imported_paid(&self.db, district, year).await
    }
}
