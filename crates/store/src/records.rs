//! What the store hands out: domain values plus the bookkeeping the database keeps about
//! them (versions, times, who created them). Conversions from rows live here.

use chrono::{DateTime, Utc};
use relief_domain::{
    Application, CaseId, CaseState, DistrictId, FundRules, Money, Role, Subject, UnitId,
};
use serde::Serialize;

use crate::entity;
use crate::error::{Error, Result};

/// A person acting, as the audit log records them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub subject: Subject,
    pub name: String,
    /// The role the person acts in for this change.
    pub role: Role,
    /// Set when acting under a delegation: whom the person stands in for.
    pub on_behalf_of: Option<Subject>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DistrictRecord {
    pub id: DistrictId,
    pub name: String,
    pub rules: FundRules,
    pub rules_version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RulesVersionRecord {
    pub district_id: DistrictId,
    pub version: i64,
    pub rules: FundRules,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CaseRecord {
    pub id: CaseId,
    pub district_id: DistrictId,
    pub applicant_unit_id: UnitId,
    pub state: CaseState,
    pub application: Application,
    pub rules_version: i64,
    pub over_cap: bool,
    pub repeat_relief: bool,
    /// The amount as approved so far; set at submission to the requested amount and
    /// lowered by reviewers.
    pub approved_amount: Option<Money>,
    /// While in review: who acts on the current step, since when, and until when.
    pub step_role: Option<Role>,
    pub step_entered_at: Option<DateTime<Utc>>,
    pub step_deadline_at: Option<DateTime<Utc>>,
    /// A follow-up found that the recipient petitioned again (再次上访).
    pub petitioned_again: bool,
    /// Increases with every change; optimistic concurrency compares it.
    pub version: i64,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub submitted_at: Option<DateTime<Utc>>,
}

impl CaseRecord {
    /// What a decision on the case depends on: its state and amounts.
    pub fn decision_facts(&self) -> relief_domain::approval::CaseFacts<'_> {
        relief_domain::approval::CaseFacts {
            state: &self.state,
            requested: self.application.requested_amount,
            current: self
                .approved_amount
                .unwrap_or(self.application.requested_amount),
            over_cap: self.over_cap,
        }
    }

    /// Puts the case into `state`; in review it waits at `step`
    /// ([`relief_domain::case::enter_step`]).
    pub fn enter(
        &mut self,
        state: CaseState,
        step: Option<&relief_domain::rules::ApprovalStep>,
        now: DateTime<Utc>,
    ) {
        let waiting = relief_domain::case::enter_step(&state, step, now);
        self.step_role = waiting.map(|w| w.role);
        self.step_entered_at = waiting.map(|w| w.since);
        self.step_deadline_at = waiting.map(|w| w.until);
        self.state = state;
    }
}

/// One event of the audit log as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord {
    pub seq: i64,
    pub occurred_at: DateTime<Utc>,
    pub actor_subject: String,
    pub actor_name: String,
    pub actor_role: String,
    pub on_behalf_of: Option<String>,
    pub action: String,
    pub resource_type: String,
    pub resource_id: String,
    pub request_id: Option<String>,
    pub note: Option<String>,
    pub before_json: Option<String>,
    pub after_json: Option<String>,
    pub hash: String,
}

pub(crate) fn rules_from_json(json: &str) -> Result<FundRules> {
    serde_json::from_str(json).map_err(|e| Error::corrupt("fund rules", e))
}

impl RulesVersionRecord {
    pub(crate) fn from_row(row: entity::rules_version::Model) -> Result<Self> {
        Ok(Self {
            district_id: DistrictId::parse(&row.district_id)
                .map_err(|e| Error::corrupt("district id", e))?,
            version: row.version,
            rules: rules_from_json(&row.rules)?,
            created_by: row.created_by,
            created_at: row.created_at,
        })
    }
}

impl CaseRecord {
    pub(crate) fn from_row(row: entity::case::Model) -> Result<Self> {
        Ok(Self {
            id: CaseId::parse(&row.id).map_err(|e| Error::corrupt("case id", e))?,
            district_id: DistrictId::parse(&row.district_id)
                .map_err(|e| Error::corrupt("district id", e))?,
            applicant_unit_id: UnitId::parse(&row.applicant_unit_id)
                .map_err(|e| Error::corrupt("unit id", e))?,
            state: CaseState::from_parts(&row.state, row.current_step_id.as_deref())
                .map_err(|e| Error::corrupt("case state", e))?,
            application: serde_json::from_str(&row.application)
                .map_err(|e| Error::corrupt("application", e))?,
            rules_version: row.rules_version,
            over_cap: row.over_cap,
            repeat_relief: row.repeat_relief,
            approved_amount: row
                .approved_amount_fen
                .map(Money::from_fen)
                .transpose()
                .map_err(|e| Error::corrupt("approved amount", e))?,
            step_role: row
                .current_step_role
                .as_deref()
                .map(str::parse::<Role>)
                .transpose()
                .map_err(|e| Error::corrupt("step role", e))?,
            step_entered_at: row.step_entered_at,
            step_deadline_at: row.step_deadline_at,
            petitioned_again: row.petitioned_again,
            version: row.version,
            created_by: row.created_by,
            created_at: row.created_at,
            updated_at: row.updated_at,
            submitted_at: row.submitted_at,
        })
    }

    pub(crate) fn to_row(&self) -> Result<entity::case::Model> {
        let app = &self.application;
        Ok(entity::case::Model {
            id: self.id.to_string(),
            district_id: self.district_id.to_string(),
            applicant_unit_id: self.applicant_unit_id.to_string(),
            state: self.state.kind().as_str().to_owned(),
            current_step_id: self.state.step().map(ToString::to_string),
            fiscal_year: app.fiscal_year,
            category_code: app.category.as_ref().map(ToString::to_string),
            recipient_name: app.recipient.name.clone(),
            resident_id_number: app
                .recipient
                .resident_id
                .as_ref()
                .map(|r| r.as_str().to_owned()),
            requested_amount_fen: app.requested_amount.fen(),
            approved_amount_fen: self.approved_amount.map(Money::fen),
            current_step_role: self.step_role.map(|r| r.as_str().to_owned()),
            step_entered_at: self.step_entered_at,
            step_deadline_at: self.step_deadline_at,
            petitioned_again: self.petitioned_again,
            over_cap: self.over_cap,
            repeat_relief: self.repeat_relief,
            rules_version: self.rules_version,
            version: self.version,
            application: serde_json::to_string(app)
                .map_err(|e| Error::corrupt("application", e))?,
            created_by: self.created_by.clone(),
            created_at: self.created_at,
            updated_at: self.updated_at,
            submitted_at: self.submitted_at,
        })
    }
}

impl EventRecord {
    pub(crate) fn from_row(row: entity::event::Model) -> Self {
        Self {
            seq: row.seq,
            occurred_at: DateTime::from_timestamp_micros(row.occurred_at_us).unwrap_or_default(),
            actor_subject: row.actor_subject,
            actor_name: row.actor_name,
            actor_role: row.actor_role,
            on_behalf_of: row.on_behalf_of,
            action: row.action,
            resource_type: row.resource_type,
            resource_id: row.resource_id,
            request_id: row.request_id,
            note: row.note,
            before_json: row.before_json,
            after_json: row.after_json,
            hash: row.hash,
        }
    }
}
