//! CreateDelegation, ListDelegations and RevokeDelegation: a step role lent to another person
//! for a while (代理审批). Whether a delegation is in force is the domain's to say
//! ([`relief_domain::approval::delegation_active`]).

use chrono::{DateTime, Utc};
use relief_domain::rules::may_hold_step;
use relief_domain::{Subject, Violation};
use relief_proto::v1 as pb;
use relief_store::DelegationRecord;

use super::decide::provisional_role;
use super::{ApprovalApi, delegation_to_pb};
use crate::access::{from_pb_time, gather, new_id};
use crate::auth::Caller;
use crate::convert::role_from_pb;
use crate::error::{ApiError, ApiResult};
use crate::paging::{ListKey, parse_time_key, time_key};

const MAX_DELEGATION_DAYS: i64 = 90;

/// Who a CreateDelegation request lends a role to, and for when.
struct DelegationTerms {
    delegate: Subject,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
}

impl DelegationTerms {
    /// Reads the terms off the request of `delegator`; every field it cannot read is
    /// reported at once.
    fn parse(req: &pb::CreateDelegationRequest, delegator: &Subject) -> ApiResult<Self> {
        let mut v = Vec::new();
        let delegate = match Subject::parse(&req.delegate_subject) {
            Ok(d) if &d == delegator => {
                v.push(Violation::new(
                    "delegate_subject",
                    "a person cannot delegate to themself",
                ));
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                v.push(Violation::new("delegate_subject", e));
                None
            }
        };
        let starts_at = gather(from_pb_time("start_time", req.start_time.as_ref()), &mut v)?;
        let ends_at = gather(from_pb_time("end_time", req.end_time.as_ref()), &mut v)?;
        if let (Some(starts_at), Some(ends_at)) = (starts_at, ends_at) {
            if ends_at <= starts_at {
                v.push(Violation::new("end_time", "must be after start_time"));
            } else if ends_at - starts_at > chrono::Duration::days(MAX_DELEGATION_DAYS) {
                v.push(Violation::new(
                    "end_time",
                    format_args!("a delegation lasts at most {MAX_DELEGATION_DAYS} days"),
                ));
            }
        }
        match (delegate, starts_at, ends_at) {
            (Some(delegate), Some(starts_at), Some(ends_at)) if v.is_empty() => Ok(Self {
                delegate,
                starts_at,
                ends_at,
            }),
            _ => Err(ApiError::InvalidArgument(v)),
        }
    }
}

impl ApprovalApi {
    pub(super) async fn create_delegation(
        &self,
        caller: Caller,
        req: pb::CreateDelegationRequest,
    ) -> ApiResult<pb::CreateDelegationResponse> {
        if caller.is_city() {
            return Err(ApiError::denied("delegations need a district-scoped token"));
        }
        let district = caller.district()?.clone();
        let m = self.ctx.mutation(&caller, &req.request_id, &req)?;
        let role =
            role_from_pb(req.role).ok_or_else(|| ApiError::invalid("role", "is required"))?;
        if !may_hold_step(role) {
            return Err(ApiError::invalid(
                "role",
                format_args!("{role} is not a role that acts on approval steps"),
            ));
        }
        caller.require_role(role)?;
        let DelegationTerms {
            delegate,
            starts_at,
            ends_at,
        } = DelegationTerms::parse(&req, caller.claims().subject())?;
        m.run(Some(&district), role, async |tx| {
            if ends_at <= tx.now() {
                return Err(ApiError::invalid("end_time", "must be in the future"));
            }
            let record = DelegationRecord {
                id: new_id(),
                district_id: district.clone(),
                delegator_subject: caller.claims().subject().to_string(),
                delegator_name: caller.claims().name().to_owned(),
                delegate_subject: delegate.to_string(),
                role,
                starts_at,
                ends_at,
                revoked_at: None,
                created_at: tx.now(),
            };
            tx.insert_delegation(&record).await?;
            tracing::info!(district = %district, role = %role, delegate = %delegate, "role delegated");
            Ok(pb::CreateDelegationResponse {
                delegation: Some(delegation_to_pb(&record)),
            })
        })
        .await
    }

    pub(super) async fn list_delegations(
        &self,
        caller: Caller,
        req: pb::ListDelegationsRequest,
    ) -> ApiResult<pb::ListDelegationsResponse> {
        let district = caller.district_reader("see delegations")?;
        let limit = self.ctx.page_size(req.page_size)?;
        let key = ListKey::of(district.as_str(), &req);
        let after = key.cursor_as(&req.page_token, parse_time_key)?;
        let mut rows = self
            .ctx
            .store
            .delegations(&district, after, limit + 1)
            .await?;
        let next_page_token = key.next_page(&mut rows, limit, |d| time_key(d.created_at, &d.id));
        Ok(pb::ListDelegationsResponse {
            delegations: rows.iter().map(delegation_to_pb).collect(),
            next_page_token,
        })
    }

    pub(super) async fn revoke_delegation(
        &self,
        caller: Caller,
        req: pb::RevokeDelegationRequest,
    ) -> ApiResult<pb::RevokeDelegationResponse> {
        if caller.is_city() {
            return Err(ApiError::denied("delegations need a district-scoped token"));
        }
        let district = caller.district()?.clone();
        let m = self.ctx.mutation(&caller, &req.request_id, &req)?;
        m.run(Some(&district), provisional_role(&caller), async |tx| {
            let before = tx
                .delegation(&district, &req.delegation_id)
                .await?
                .ok_or(ApiError::NotFound("delegation"))?;
            if before.delegator_subject != caller.claims().subject().as_str() {
                return Err(ApiError::denied(
                    "only the delegator may revoke a delegation",
                ));
            }
            if before.facts().ended(tx.now()) {
                return Err(ApiError::precondition(
                    "DELEGATION_ENDED",
                    "the delegation has already ended",
                ));
            }
            tx.act_as(caller.actor(before.role));
            let after = tx.revoke_delegation(&before).await?;
            Ok(pb::RevokeDelegationResponse {
                delegation: Some(delegation_to_pb(&after)),
            })
        })
        .await
    }
}
