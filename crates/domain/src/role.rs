//! The roles a person can hold, as docs/DOMAIN.md names them; the token carries them and every
//! authorization decision starts here.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A role a person holds in a district bureau or at the city.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// 实施救助单位: a street, township or district department that files applications.
    ApplicantUnit,
    /// 经办科室: the bureau's handling section, first review.
    CaseOfficer,
    /// 分管领导: second review.
    DeputyLeader,
    /// 主要负责人: third review.
    BureauHead,
    /// 局办公室: records the party-group meeting's decisions.
    BureauOffice,
    /// 分管区领导: final approval.
    DistrictLeader,
    /// 财务科: pays out.
    Finance,
    /// 区财政局 and inspectors: read-only.
    Auditor,
    /// Maintains a district's fund rules.
    DistrictAdmin,
    /// Creates districts; sees the whole city.
    CityAdmin,
    /// Another government system's unattended sync job.
    SyncClient,
}

impl Role {
    /// Every role, in a stable order.
    pub const ALL: [Role; 11] = [
        Role::ApplicantUnit,
        Role::CaseOfficer,
        Role::DeputyLeader,
        Role::BureauHead,
        Role::BureauOffice,
        Role::DistrictLeader,
        Role::Finance,
        Role::Auditor,
        Role::DistrictAdmin,
        Role::CityAdmin,
        Role::SyncClient,
    ];

    /// The stable lower-snake-case name used in tokens, configuration and the event log.
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::ApplicantUnit => "applicant_unit",
            Role::CaseOfficer => "case_officer",
            Role::DeputyLeader => "deputy_leader",
            Role::BureauHead => "bureau_head",
            Role::BureauOffice => "bureau_office",
            Role::DistrictLeader => "district_leader",
            Role::Finance => "finance",
            Role::Auditor => "auditor",
            Role::DistrictAdmin => "district_admin",
            Role::CityAdmin => "city_admin",
            Role::SyncClient => "sync_client",
        }
    }

    /// Roles of the bureau itself, who see every case of their district.
    pub const fn is_bureau_staff(self) -> bool {
        match self {
            Role::CaseOfficer
            | Role::DeputyLeader
            | Role::BureauHead
            | Role::BureauOffice
            | Role::DistrictLeader
            | Role::Finance
            | Role::Auditor
            | Role::DistrictAdmin => true,
            Role::ApplicantUnit | Role::CityAdmin | Role::SyncClient => false,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is not one of [`Role::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?}")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
            let json = serde_json::to_string(&role).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", role.as_str()));
        }
        assert_eq!(
            "leader".parse::<Role>(),
            Err(UnknownRole("leader".to_owned()))
        );
    }
}
