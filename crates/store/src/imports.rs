//! Imported history: a case decided (and paid) in another system, written with its decisions,
//! its payment and its ledger entries exactly as if it had been decided here, and remembered
//! under the importing system's id so that the same record imported again changes nothing.

use relief_domain::ledger::EntryKind;
use relief_domain::{DistrictId, Money};
use sea_orm::{EntityTrait, IntoActiveModel as _};

use crate::approvals::DecisionRecord;
use crate::disbursements::PaymentRecord;
use crate::entity::approval::payment;
use crate::entity::{case, case_import};
use crate::error::{Error, Result};
use crate::records::CaseRecord;
use crate::write::WriteTx;

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

impl WriteTx {
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
    /// and pay entries for the paid amount, the audit events, and the import record.
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
            self.add_ledger_entry(&district, year, Some(c.id), EntryKind::Reserve, amount)
                .await?;
            self.add_ledger_entry(&district, year, Some(c.id), EntryKind::Pay, amount)
                .await?;
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
