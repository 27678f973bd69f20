//! CancelApproval (审批撤销): the bureau undoes a final approval before payment. The facts
//! are gathered, [`relief_domain::approval::cancel_approval`] decides, and what it returned
//! is written: the release of the reservation and the case's move, audited with the reason.

use relief_domain::Role;
use relief_domain::approval::{CancelFacts, CancelRefusal, cancel_approval};
use relief_domain::ledger::EntryKind;
use relief_proto::v1 as pb;

use super::ApprovalApi;
use crate::access::{check_length, check_version, parse_case_id, visible};
use crate::auth::{Caller, CaseVisibility};
use crate::convert::case_to_pb;
use crate::error::{ApiError, ApiResult};

const MAX_REASON_CHARS: usize = 2000;

/// The roles that may cancel a final approval, in the order the caller acts in them.
const CANCELLING_ROLES: [Role; 2] = [Role::DistrictLeader, Role::BureauHead];

fn cancel_refusal(e: CancelRefusal) -> ApiError {
    match e {
        CancelRefusal::State(e) => ApiError::CaseState(e),
        CancelRefusal::PaymentUnderWay { .. } => {
            ApiError::precondition("PAYMENT_EXISTS", e.to_string())
        }
        CancelRefusal::YearClosed(_) => ApiError::precondition("YEAR_CLOSED", e.to_string()),
        CancelRefusal::NoFiscalYear | CancelRefusal::NoAmount => ApiError::Internal(e.to_string()),
    }
}

impl ApprovalApi {
    /// Cancels an approved, unpaid case's final approval: a district leader or the bureau
    /// head, with a written reason; the reservation goes back to the budget.
    pub(super) async fn cancel_approval(
        &self,
        caller: Caller,
        req: pb::CancelApprovalRequest,
    ) -> ApiResult<pb::CancelApprovalResponse> {
        let Some(role) = CANCELLING_ROLES.into_iter().find(|r| caller.has_role(*r)) else {
            return Err(ApiError::denied(
                "cancelling a final approval needs the role district_leader or bureau_head",
            ));
        };
        let district = caller.require_district_role(role)?.clone();
        let m = self.ctx.mutation(&caller, &req.request_id, &req)?;
        let id = parse_case_id(&req.case_id)?;
        let reason = req.reason.trim();
        if reason.is_empty() {
            return Err(ApiError::invalid(
                "reason",
                "a cancelled approval must say why",
            ));
        }
        check_length("reason", reason, MAX_REASON_CHARS)?;
        m.run(Some(&district), role, async |tx| {
            let before = visible(tx.case(&district, id).await?, &CaseVisibility::District)?;
            check_version(req.expected_version, &before)?;
            let payments = tx.payments_of_case(&district, id).await?;
            let payments: Vec<_> = payments.iter().map(|p| (p.id.as_str(), &p.state)).collect();
            let year_closed = match before.application.fiscal_year {
                Some(year) => tx.year_closed(&district, year).await?,
                None => false,
            };
            let cancelled = cancel_approval(CancelFacts {
                state: &before.state,
                payments: &payments,
                fiscal_year: before.application.fiscal_year,
                year_closed,
                approved: before.approved_amount,
            })
            .map_err(cancel_refusal)?;
            tx.add_ledger_entry(
                &district,
                cancelled.fiscal_year,
                Some(id),
                EntryKind::Release,
                cancelled.release,
            )
            .await?;
            let mut after = before.clone();
            after.enter(cancelled.state, None, tx.now());
            tx.update_case("case.approval_cancelled", Some(reason), &before, &mut after)
                .await?;
            tracing::info!(district = %district, case = %id, role = %role, "final approval cancelled");
            Ok(pb::CancelApprovalResponse {
                case: Some(case_to_pb(&after, &caller.case_view(&after))),
            })
        })
        .await
    }
}
