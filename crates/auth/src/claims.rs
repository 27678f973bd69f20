//! The typed claims handlers read once a token is verified, and the one place that decides
//! whether a set of claims makes sense (scope against roles, unit against the applicant role).
//! Verifying and minting both go through [`Claims::new`], so no token the minter makes can be
//! one the verifier refuses for its claims, and the other way round.

use std::fmt;

use relief_domain::{DistrictId, Role, Subject, UnitId};
use serde::{Deserialize, Serialize};

use crate::Error;

/// The longest display name accepted, in characters. Names are people's names; the limit only
/// stops a token from smuggling a document into every log line.
pub const MAX_NAME_CHARS: usize = 128;

/// What a token's `district` claim says for a city-wide token.
pub const CITY_SCOPE: &str = "city";

/// Where a token's holder acts: inside one district (the tenant), or across the whole city.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    District(DistrictId),
    City,
}

impl Scope {
    /// Parses the wire form: a 6-digit district code, or the literal `"city"`.
    pub fn parse(s: &str) -> Result<Self, Error> {
        if s == CITY_SCOPE {
            return Ok(Scope::City);
        }
        DistrictId::parse(s)
            .map(Scope::District)
            .map_err(|e| Error::InvalidClaims(format!("district {s:?}: {e}, or \"{CITY_SCOPE}\"")))
    }

    /// The wire form: the district code, or `"city"`.
    pub fn as_str(&self) -> &str {
        match self {
            Scope::District(id) => id.as_str(),
            Scope::City => CITY_SCOPE,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who is calling and what they may do, as the verified token says. Fields are private: a
/// value of this type has passed [`Claims::new`], so handlers never re-check the rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    subject: Subject,
    name: String,
    scope: Scope,
    roles: Vec<Role>,
    unit: Option<UnitId>,
    expires_at: i64,
}

impl Claims {
    /// Checks the rules and builds the claims. `roles` are sorted and deduplicated.
    ///
    /// Rules: the name is non-empty (after trimming), at most [`MAX_NAME_CHARS`] characters
    /// and has no control characters; there is at least one role; a city-scoped token carries
    /// only `city_admin`, `sync_client` or `auditor`; a district token never carries
    /// `city_admin`; `unit` is present exactly when the roles include `applicant_unit`.
    pub fn new(
        subject: Subject,
        name: &str,
        scope: Scope,
        roles: Vec<Role>,
        unit: Option<UnitId>,
        expires_at: i64,
    ) -> Result<Self, Error> {
        let name = name.trim();
        if name.is_empty() {
            return Err(Error::InvalidClaims("name must not be empty".to_owned()));
        }
        if name.chars().count() > MAX_NAME_CHARS {
            return Err(Error::InvalidClaims(format!(
                "name must be at most {MAX_NAME_CHARS} characters"
            )));
        }
        if name.chars().any(char::is_control) {
            return Err(Error::InvalidClaims(
                "name must not contain control characters".to_owned(),
            ));
        }

        let mut roles = roles;
        roles.sort_unstable();
        roles.dedup();
        if roles.is_empty() {
            return Err(Error::InvalidClaims("roles must not be empty".to_owned()));
        }
        for &role in &roles {
            check_role_in_scope(role, &scope)?;
        }

        let applicant = roles.contains(&Role::ApplicantUnit);
        match (applicant, &unit) {
            (true, None) => {
                return Err(Error::InvalidClaims(
                    "role applicant_unit requires a unit".to_owned(),
                ));
            }
            (false, Some(_)) => {
                return Err(Error::InvalidClaims(
                    "unit is only allowed with role applicant_unit".to_owned(),
                ));
            }
            (true, Some(_)) | (false, None) => {}
        }

        Ok(Self {
            subject,
            name: name.to_owned(),
            scope,
            roles,
            unit,
            expires_at,
        })
    }

    /// The person, as the identity provider names them (`sub`).
    pub fn subject(&self) -> &Subject {
        &self.subject
    }

    /// The display name, for audit trails and opinions ("who reviewed").
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// Sorted, deduplicated, never empty.
    pub fn roles(&self) -> &[Role] {
        &self.roles
    }

    /// The applicant unit the holder files for; present exactly when they hold
    /// [`Role::ApplicantUnit`].
    pub fn unit(&self) -> Option<&UnitId> {
        self.unit.as_ref()
    }

    /// When the token stops being valid, in unix seconds.
    pub fn expires_at(&self) -> i64 {
        self.expires_at
    }

    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// The district the holder acts in; `None` for a city-scoped token.
    pub fn district(&self) -> Option<&DistrictId> {
        match &self.scope {
            Scope::District(id) => Some(id),
            Scope::City => None,
        }
    }
}

/// A city-scoped token must not act inside a district's workflow, and no district token may
/// administer the city. Every role is listed so a new role forces a decision here.
fn check_role_in_scope(role: Role, scope: &Scope) -> Result<(), Error> {
    let allowed = match (scope, role) {
        (Scope::City, Role::CityAdmin | Role::SyncClient | Role::Auditor) => true,
        (
            Scope::City,
            Role::ApplicantUnit
            | Role::CaseOfficer
            | Role::DeputyLeader
            | Role::BureauHead
            | Role::BureauOffice
            | Role::DistrictLeader
            | Role::Finance
            | Role::DistrictAdmin,
        ) => false,
        (Scope::District(_), Role::CityAdmin) => false,
        (
            Scope::District(_),
            Role::ApplicantUnit
            | Role::CaseOfficer
            | Role::DeputyLeader
            | Role::BureauHead
            | Role::BureauOffice
            | Role::DistrictLeader
            | Role::Finance
            | Role::Auditor
            | Role::DistrictAdmin
            | Role::SyncClient,
        ) => true,
    };
    if allowed {
        Ok(())
    } else {
        let place = match scope {
            Scope::City => "a city-scoped",
            Scope::District(_) => "a district-scoped",
        };
        Err(Error::InvalidClaims(format!(
            "role {role} is not allowed in {place} token"
        )))
    }
}

/// The claims as they travel in the JWT payload. Every field is optional here so that a
/// missing claim is reported by name ([`Error::MissingClaim`]) instead of as a JSON error;
/// [`WireClaims::into_claims`] decides what is required.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct WireClaims {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A 6-digit district code, or `"city"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub district: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// RFC 7519 allows one audience or several; the signature layer has already checked it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<Audience>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub(crate) enum Audience {
    One(String),
    Many(Vec<String>),
}

impl WireClaims {
    /// The wire form of checked claims, ready to sign.
    pub fn from_claims(
        claims: &Claims,
        issued_at: i64,
        not_before: Option<i64>,
        issuer: &str,
        audience: &str,
    ) -> Self {
        Self {
            sub: Some(claims.subject.as_str().to_owned()),
            name: Some(claims.name.clone()),
            district: Some(claims.scope.as_str().to_owned()),
            roles: Some(claims.roles.iter().map(|r| r.as_str().to_owned()).collect()),
            unit: claims.unit.as_ref().map(|u| u.as_str().to_owned()),
            exp: Some(claims.expires_at),
            nbf: not_before,
            iat: Some(issued_at),
            iss: Some(issuer.to_owned()),
            aud: Some(Audience::One(audience.to_owned())),
        }
    }

    /// Parses the payload of a token whose signature, `exp`, `nbf`, `iss` and `aud` have
    /// already been checked.
    pub fn from_json(payload: serde_json::Value) -> Result<Self, Error> {
        serde_json::from_value(payload)
            .map_err(|e| Error::InvalidClaims(format!("claims have the wrong shape: {e}")))
    }

    pub fn into_claims(self) -> Result<Claims, Error> {
        let sub = self.sub.ok_or_else(|| missing("sub"))?;
        let subject =
            Subject::parse(&sub).map_err(|e| Error::InvalidClaims(format!("sub: {e}")))?;
        let name = self.name.ok_or_else(|| missing("name"))?;
        let scope = Scope::parse(&self.district.ok_or_else(|| missing("district"))?)?;
        let roles = self
            .roles
            .ok_or_else(|| missing("roles"))?
            .iter()
            .map(|r| {
                r.parse::<Role>()
                    .map_err(|e| Error::InvalidClaims(format!("roles: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let unit = self
            .unit
            .map(|u| UnitId::parse(&u).map_err(|e| Error::InvalidClaims(format!("unit: {e}"))))
            .transpose()?;
        let expires_at = self.exp.ok_or_else(|| missing("exp"))?;
        Claims::new(subject, &name, scope, roles, unit, expires_at)
    }
}

fn missing(claim: &str) -> Error {
    Error::MissingClaim(claim.to_owned())
}
