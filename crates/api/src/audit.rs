//! AuditService: reads the district event log back as a case's history, recomputes the
//! hash chain so an auditor can trust that nothing was edited or removed, and publishes the
//! key that signs the chain's checkpoints.

use relief_domain::audit::{AuditSigner, Checkpoint};
use relief_domain::{DistrictId, Role};
use relief_proto::v1 as pb;
use relief_proto::v1::audit_service_server::AuditService;
use relief_store::{CallerCheckpoint, EventRecord};
use serde_json::Value;
use tonic::{Request, Response, Status};

use crate::ApiContext;
use crate::access::{parse_case_id, visible};
use crate::auth::{Caller, CaseVisibility};
use crate::convert::timestamp;
use crate::error::{ApiError, ApiResult};
use crate::plumbing::handle;

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
        let claim = req
            .checkpoint
            .as_ref()
            .map(|c| caller_checkpoint(&district, c, self.ctx.store.audit_signer()))
            .transpose()?;
        let _place = self.ctx.heavy_read().await?;
        let report = self
            .ctx
            .store
            .verify_audit_chain(&district, claim.as_ref())
            .await?;
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
            head_seq: report.head_seq,
            head_hash: report.head_hash,
            checkpoints_verified: i64::try_from(report.checkpoints_verified).unwrap_or(i64::MAX),
            checkpoints_other_key: i64::try_from(report.checkpoints_other_key).unwrap_or(i64::MAX),
        })
    }

    async fn key(
        &self,
        _caller: Caller,
        _req: pb::GetAuditKeyRequest,
    ) -> ApiResult<pb::GetAuditKeyResponse> {
        let signer = self
            .ctx
            .store
            .audit_signer()
            .ok_or(ApiError::NotFound("audit key"))?;
        let key = signer.public_key();
        Ok(pb::GetAuditKeyResponse {
            key_id: key.key_id().to_owned(),
            algorithm: "Ed25519".to_owned(),
            public_key: key.to_bytes().to_vec(),
            public_key_pem: key.to_pem(),
            generated: self.ctx.store.audit_key_generated(),
        })
    }
}

/// The caller's point of the chain, checked: a seq from 1, a hash of 64 lowercase hex
/// digits, and, when signed, a signature by the server's key.
fn caller_checkpoint(
    district: &DistrictId,
    c: &pb::ChainCheckpoint,
    signer: Option<&AuditSigner>,
) -> ApiResult<CallerCheckpoint> {
    if c.seq < 1 {
        return Err(ApiError::invalid("checkpoint.seq", "must be at least 1"));
    }
    if c.hash.len() != 64
        || !c
            .hash
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(ApiError::invalid(
            "checkpoint.hash",
            "must be 64 lowercase hex digits",
        ));
    }
    if !c.signature.is_empty() {
        let key = signer.map(AuditSigner::public_key).ok_or_else(|| {
            ApiError::invalid("checkpoint.signature", "this server signs no checkpoints")
        })?;
        if c.key_id != key.key_id() {
            return Err(ApiError::invalid(
                "checkpoint.key_id",
                format_args!("is not the server's audit key ({})", key.key_id()),
            ));
        }
        let signed = Checkpoint {
            district_id: district.to_string(),
            seq: c.seq,
            hash: c.hash.clone(),
            signed_at_us: c.signed_at_us,
            key_id: c.key_id.clone(),
            signature: c.signature.clone(),
        };
        key.verify(&signed)
            .map_err(|e| ApiError::invalid("checkpoint.signature", e))?;
    }
    Ok(CallerCheckpoint {
        seq: c.seq,
        hash: c.hash.clone(),
    })
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

    async fn get_audit_key(
        &self,
        request: Request<pb::GetAuditKeyRequest>,
    ) -> Result<Response<pb::GetAuditKeyResponse>, Status> {
        handle!(self, request, key)
    }
}
