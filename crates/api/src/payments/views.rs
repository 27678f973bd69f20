//! Payments as each reader sees them: a payment's bank account is its case's receiving
//! unit's, so it is shown through the caller's view of the payment's case.

use std::collections::HashMap;

use relief_domain::payment::PaymentState;
use relief_domain::privacy::{Field, View};
use relief_domain::{CaseId, DistrictId, UnitId};
use relief_proto::v1 as pb;
use relief_store::PaymentRecord;

use crate::ApiContext;
use crate::access::DATE;
use crate::auth::Caller;
use crate::convert::timestamp;
use crate::error::ApiResult;

/// The payment as a reader with `view` sees it; its bank account is the case's receiving
/// unit's, so the view is the caller's view of the payment's case.
pub(crate) fn payment_to_pb(p: &PaymentRecord, view: &View) -> pb::Payment {
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
