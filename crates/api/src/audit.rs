//! AuditService: reads the district event log back as a case's history, and recomputes the
//! hash chain so an auditor can trust that nothing was edited or removed.

use relief_domain::{DistrictId, Role};
use relief_proto::v1 as pb;
use relief_proto::v1::audit_service_server::AuditService;
use relief_store::EventRecord;
use serde_json::Value;
use tonic::{Request, Response, Status};

use crate::ApiContext;
use crate::auth::{Caller, CaseVisibility};
use crate::cases::{handle, parse_case_id, visible};
use crate::convert::timestamp;
use crate::error::{ApiError, ApiResult};

#[derive(Debug, Clone)]
pub struct AuditApi {
    ctx: ApiContext,
}

impl AuditApi {
    pub fn new(ctx: ApiContext) -> Self {
        Self { ctx }
    }
}

/// The state name and its step from a stored case snapshot: `"draft"` or
/// `{"in_review": {"step": "…"}}`.
fn state_of(case: &Value) -> (String, String) {
    match case.get("state") {
        Some(Value::String(s)) => (s.clone(), String::new()),
        Some(Value::Object(m)) => match m.iter().next() {
            Some((kind, data)) => {
                let step = data
                    .get("step")
                    .or_else(|| data.get("resume_at"))
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                (kind.clone(), step.to_owned())
            }
            None => (String::new(), String::new()),
        },
        _ => (String::new(), String::new()),
    }
}

/// The amount a snapshot stands at: approved if set, else requested.
fn amount_of(case: &Value) -> i64 {
    case.get("approved_amount")
        .and_then(Value::as_i64)
        .or_else(|| {
            case.get("application")
                .and_then(|a| a.get("requested_amount"))
                .and_then(Value::as_i64)
        })
        .unwrap_or(0)
}

fn event_to_pb(e: &EventRecord) -> pb::AuditEvent {
    let parse = |j: &Option<String>| {
        j.as_deref()
            .and_then(|s| serde_json::from_str::<Value>(s).ok())
    };
    let before = parse(&e.before_json);
    let after = parse(&e.after_json);
    let (state_before, step_before) = before.as_ref().map(state_of).unwrap_or_default();
    let (state_after, step_after) = after.as_ref().map(state_of).unwrap_or_default();
    pb::AuditEvent {
        seq: e.seq,
        occur_time: Some(timestamp(e.occurred_at)),
        actor_subject: e.actor_subject.clone(),
        actor_name: e.actor_name.clone(),
        actor_role: e.actor_role.clone(),
        on_behalf_of_subject: e.on_behalf_of.clone().unwrap_or_default(),
        action: e.action.clone(),
        opinion: e.note.clone().unwrap_or_default(),
        state_before,
        state_after,
        amount_before_fen: before.as_ref().map_or(0, amount_of),
        amount_after_fen: after.as_ref().map_or(0, amount_of),
        step_before,
        step_after,
        request_id: e.request_id.clone().unwrap_or_default(),
        hash: e.hash.clone(),
    }
}

impl AuditApi {
    async fn history(
        &self,
        caller: Caller,
        req: pb::GetCaseHistoryRequest,
    ) -> ApiResult<pb::GetCaseHistoryResponse> {
        let district = caller.district()?.clone();
        let visibility = caller.case_visibility()?;
        let id = parse_case_id(&req.case_id)?;
        visible(self.ctx.store.case(&district, id).await?, &visibility)?;
        let events = self
            .ctx
            .store
            .events(&district, Some(&id.to_string()))
            .await?;
        Ok(pb::GetCaseHistoryResponse {
            events: events.iter().map(event_to_pb).collect(),
        })
    }

    async fn verify(
        &self,
        caller: Caller,
        req: pb::VerifyAuditChainRequest,
    ) -> ApiResult<pb::VerifyAuditChainResponse> {
        let district =
            DistrictId::parse(&req.district_id).map_err(|e| ApiError::invalid("district_id", e))?;
        caller.check_district(&district)?;
        let may = caller.has_role(Role::Auditor)
            || caller.has_role(Role::DistrictAdmin)
            || caller.has_role(Role::CityAdmin)
            || (!caller.is_city() && caller.case_visibility()? == CaseVisibility::District);
        if !may {
            return Err(ApiError::denied(
                "only auditors, administrators and the bureau verify the audit chain",
            ));
        }
        if self.ctx.store.district(&district).await?.is_none() {
            return Err(ApiError::NotFound("district"));
        }
        let report = self.ctx.store.verify_audit_chain(&district).await?;
        if let Some(b) = &report.first_break {
            tracing::warn!(district = %district, seq = b.seq, reason = b.reason, "audit chain broken");
        }
        Ok(pb::VerifyAuditChainResponse {
            intact: report.first_break.is_none(),
            events_checked: i64::try_from(report.events_checked).unwrap_or(i64::MAX),
            first_broken_seq: report.first_break.as_ref().map_or(0, |b| b.seq),
            reason: report
                .first_break
                .map(|b| b.reason.to_owned())
                .unwrap_or_default(),
        })
    }
}

#[tonic::async_trait]
impl AuditService for AuditApi {
    async fn get_case_history(
        &self,
        request: Request<pb::GetCaseHistoryRequest>,
    ) -> Result<Response<pb::GetCaseHistoryResponse>, Status> {
        handle!(self, request, history)
    }

    async fn verify_audit_chain(
        &self,
        request: Request<pb::VerifyAuditChainRequest>,
    ) -> Result<Response<pb::VerifyAuditChainResponse>, Status> {
        handle!(self, request, verify)
    }
}
