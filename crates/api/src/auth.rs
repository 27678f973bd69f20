//! Authentication at the edge and the caller's identity in handlers. The interceptor verifies
//! the bearer token once per call and stores the typed claims in the request extensions;
//! handlers build a [`Caller`] from them and ask it who may do what.

use std::sync::Arc;

use relief_auth::{CallError, Claims, Scope, Verifier, bearer_token, call_district};
use relief_domain::privacy::View;
use relief_domain::{DistrictId, Role, UnitId};
use relief_observe::CallLabels;
use relief_proto::v1::ErrorReason;
use relief_store::{Actor, CaseRecord};
use tonic::service::Interceptor;
use tonic::{Request, Status};

use crate::error::{ApiError, ApiResult, unauthenticated_status};

pub use relief_auth::DISTRICT_HEADER;

/// Verifies `authorization: Bearer <jwt>` on every call of the services it wraps.
#[derive(Debug, Clone)]
pub struct AuthInterceptor {
    verifier: Arc<Verifier>,
}

impl AuthInterceptor {
    pub fn new(verifier: Arc<Verifier>) -> Self {
        Self { verifier }
    }
}

impl Interceptor for AuthInterceptor {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        let header = req.metadata().get("authorization").map(|v| v.as_bytes());
        let token = bearer_token(header)
            .map_err(|e| unauthenticated_status(ErrorReason::TokenMissing, e.to_string()))?;
        let claims = self.verifier.verify(token).map_err(|e| {
            tracing::debug!(error = %e, "token rejected");
            unauthenticated_status(ErrorReason::TokenInvalid, format!("invalid token: {e}"))
        })?;
        if let Some(labels) = req.extensions().get::<CallLabels>() {
            let named = req.metadata().get(DISTRICT_HEADER).map(|v| v.as_bytes());
            match call_district(claims.scope(), named) {
                Ok(Some(d)) => labels.set_district(d.as_str()),
                _ => labels.set_district(claims.scope().as_str()),
            }
        }
        req.extensions_mut().insert(claims);
        Ok(req)
    }
}

/// Who is calling, and about which district.
#[derive(Debug, Clone)]
pub struct Caller {
    claims: Claims,
    district: Option<DistrictId>,
}

/// Which cases a caller may read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaseVisibility {
    /// Every case of the district.
    District,
    /// Only the cases its own unit filed.
    Unit(UnitId),
}

impl Caller {
    /// Reads the verified claims, and for city-scoped callers the district they name.
    pub fn from_request<T>(req: &Request<T>) -> ApiResult<Caller> {
        let claims = req
            .extensions()
            .get::<Claims>()
            .cloned()
            .ok_or_else(|| ApiError::Unauthenticated("missing credentials".to_owned()))?;
        let named = req.metadata().get(DISTRICT_HEADER).map(|v| v.as_bytes());
        let district = call_district(claims.scope(), named).map_err(|e| match e {
            CallError::BadDistrictHeader => {
                ApiError::invalid(DISTRICT_HEADER, "must be a 6-digit district code")
            }
            other => ApiError::denied(other.to_string()),
        })?;
        Ok(Caller { claims, district })
    }

    pub fn claims(&self) -> &Claims {
        &self.claims
    }

    pub fn is_city(&self) -> bool {
        matches!(self.claims.scope(), Scope::City)
    }

    /// The district the call is about; a city-scoped caller must name one.
    pub fn district(&self) -> ApiResult<&DistrictId> {
        self.district.as_ref().ok_or_else(|| {
            ApiError::denied(format!(
                "a city-scoped token must name a district in {DISTRICT_HEADER}"
            ))
        })
    }

    pub fn has_role(&self, role: Role) -> bool {
        self.claims.has_role(role)
    }

    pub fn require_role(&self, role: Role) -> ApiResult<()> {
        if self.has_role(role) {
            Ok(())
        } else {
            Err(ApiError::denied(format!("this call needs the role {role}")))
        }
    }

    /// A district-scoped caller with `role`, acting in its own district.
    pub fn require_district_role(&self, role: Role) -> ApiResult<&DistrictId> {
        if self.is_city() {
            return Err(ApiError::denied("this call needs a district-scoped token"));
        }
        self.require_role(role)?;
        self.district()
    }

    /// The caller's own district must be `district`; anything else is answered as if it did
    /// not exist. City-scoped callers pass.
    pub fn check_district(&self, district: &DistrictId) -> ApiResult<()> {
        match self.claims.scope() {
            Scope::City => Ok(()),
            Scope::District(own) if own == district => Ok(()),
            Scope::District(_) => Err(ApiError::NotFound("district")),
        }
    }

    /// Whether the caller may read `district` itself (its description and rules): the city
    /// administrator any district; anyone else the district it acts in, which for a
    /// city-scoped auditor or sync client is the one it names in the district header. Any
    /// other district is answered as if it did not exist.
    pub fn check_district_reach(&self, district: &DistrictId) -> ApiResult<()> {
        if self.is_city() && self.has_role(Role::CityAdmin) {
            return Ok(());
        }
        if self.district()? == district {
            Ok(())
        } else {
            Err(ApiError::NotFound("district"))
        }
    }

    pub fn unit(&self) -> ApiResult<&UnitId> {
        self.claims
            .unit()
            .ok_or_else(|| ApiError::denied("the token names no applicant unit"))
    }

    /// Which cases the caller may read.
    pub fn case_visibility(&self) -> ApiResult<CaseVisibility> {
        let roles = self.claims.roles();
        if roles.iter().any(|r| r.is_bureau_staff()) {
            return Ok(CaseVisibility::District);
        }
        if self.is_city() && (self.has_role(Role::Auditor) || self.has_role(Role::SyncClient)) {
            return Ok(CaseVisibility::District);
        }
        if self.has_role(Role::SyncClient) {
            return Ok(CaseVisibility::District);
        }
        if self.has_role(Role::ApplicantUnit) {
            return Ok(CaseVisibility::Unit(self.unit()?.clone()));
        }
        Err(ApiError::denied("this role may not read cases"))
    }

    /// What the caller sees of the personal data of a case filed by `unit`
    /// ([`relief_domain::privacy`]): an applicant unit's own rights count for its own unit's
    /// cases only.
    pub fn view_for_unit(&self, unit: &UnitId) -> View {
        View::for_case(self.claims.roles(), self.claims.unit(), unit)
    }

    /// What the caller sees of the personal data of `case`.
    pub fn case_view(&self, case: &CaseRecord) -> View {
        self.view_for_unit(&case.applicant_unit_id)
    }

    /// What the caller sees of personal data whose case is not at hand: its roles other than
    /// `applicant_unit`.
    pub fn view_without_unit(&self) -> View {
        View::without_unit(self.claims.roles())
    }

    /// Whether the caller's view depends on the case's unit: only for a token whose
    /// applicant-unit role shows more than its other roles.
    pub fn view_depends_on_unit(&self) -> bool {
        self.claims
            .unit()
            .is_some_and(|u| self.view_for_unit(u) != self.view_without_unit())
    }

    /// The caller as the audit log records them, acting in `role`.
    pub fn actor(&self, role: Role) -> Actor {
        Actor {
            subject: self.claims.subject().clone(),
            name: self.claims.name().to_owned(),
            role,
            on_behalf_of: None,
        }
    }

    /// The key under which this caller's request ids are kept.
    pub fn idempotency_scope(&self) -> String {
        match self.claims.scope() {
            Scope::City => relief_auth::CITY_SCOPE.to_owned(),
            Scope::District(d) => d.to_string(),
        }
    }
}
