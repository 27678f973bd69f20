//! Storage of the approval process: decisions, delegations, party-group meetings, the fund
//! ledger's entries, and the inbox queries. Writes go through [`WriteTx`] like every other.

use chrono::{DateTime, Utc};
use relief_domain::approval::DecisionKind;
use relief_domain::{CaseId, DistrictId, Money, Role, StepId};
use sea_orm::Condition;
use sea_orm::sea_query::Query;
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
    QuerySelect,
};
use serde::Serialize;

use crate::entity::case;
use crate::entity::{decision, delegation};
use crate::error::{Error, Result, corrupt};
use crate::keyset::after_ascending;
use crate::records::CaseRecord;
use crate::{Store, WriteTx};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DecisionRecord {
    pub id: String,
    pub case_id: CaseId,
    pub step_id: StepId,
    pub step_name: String,
    pub decision: DecisionKind,
    pub actor_subject: String,
    pub actor_name: String,
    pub actor_role: Role,
    pub on_behalf_of: Option<String>,
    pub opinion: String,
    pub amount_before: Money,
    pub amount_after: Money,
    pub over_cap: bool,
    pub over_cap_justification: String,
    pub meeting_id: Option<String>,
    pub return_to_step_id: Option<String>,
    pub decided_at: DateTime<Utc>,
    /// The fiscal year of the case, for the yearly report.
    pub fiscal_year: Option<i32>,
    /// How long the case waited at the step before this decision.
    pub waited_secs: i64,
}

impl DecisionRecord {
    fn from_row(r: decision::Model) -> Result<Self> {
        Ok(Self {
            id: r.id,
            case_id: CaseId::parse(&r.case_id).map_err(corrupt("case id"))?,
            step_id: StepId::parse(&r.step_id).map_err(corrupt("step id"))?,
            step_name: r.step_name,
            decision: r.decision.into(),
            actor_subject: r.actor_subject,
            actor_name: r.actor_name,
            actor_role: r.actor_role.parse().map_err(corrupt("role"))?,
            on_behalf_of: r.on_behalf_of,
            opinion: r.opinion,
            amount_before: Money::from_fen(r.amount_before_fen).map_err(corrupt("amount"))?,
            amount_after: Money::from_fen(r.amount_after_fen).map_err(corrupt("amount"))?,
            over_cap: r.over_cap,
            over_cap_justification: r.over_cap_justification,
            meeting_id: r.meeting_id,
            return_to_step_id: r.return_to_step_id,
            decided_at: r.decided_at,
            fiscal_year: r.fiscal_year,
            waited_secs: r.waited_secs,
        })
    }
}

async fn decisions_for_case<C: ConnectionTrait>(
    conn: &C,
    district: &DistrictId,
    case: CaseId,
) -> Result<Vec<DecisionRecord>> {
    decision::Entity::find()
        .filter(decision::Column::DistrictId.eq(district.as_str()))
        .filter(decision::Column::CaseId.eq(case.to_string()))
        .order_by_asc(decision::Column::DecidedAt)
        .order_by_asc(decision::Column::Id)
        .all(conn)
        .await?
        .into_iter()
        .map(DecisionRecord::from_row)
        .collect()
}

impl WriteTx {
    pub async fn decisions_for_case(
        &self,
        district: &DistrictId,
        case: CaseId,
    ) -> Result<Vec<DecisionRecord>> {
        decisions_for_case(self.unlocked(), district, case).await
    }

    /// Writes a decision. It is a new row under a fresh id that no other row refers to,
    /// so it takes no lock that another writer could wait for, and may be written before
    /// the district's queue is joined.
    pub async fn insert_decision(
        &mut self,
        district: &DistrictId,
        d: &DecisionRecord,
    ) -> Result<()> {
        let row = decision::Model {
            id: d.id.clone(),
            district_id: district.to_string(),
            case_id: d.case_id.to_string(),
            step_id: d.step_id.to_string(),
            step_name: d.step_name.clone(),
            decision: d.decision.into(),
            actor_subject: d.actor_subject.clone(),
            actor_name: d.actor_name.clone(),
            actor_role: d.actor_role.as_str().to_owned(),
            on_behalf_of: d.on_behalf_of.clone(),
            opinion: d.opinion.clone(),
            amount_before_fen: d.amount_before.fen(),
            amount_after_fen: d.amount_after.fen(),
            over_cap: d.over_cap,
            over_cap_justification: d.over_cap_justification.clone(),
            meeting_id: d.meeting_id.clone(),
            return_to_step_id: d.return_to_step_id.clone(),
            decided_at: d.decided_at,
            fiscal_year: d.fiscal_year,
            waited_secs: d.waited_secs,
        };
        decision::Entity::insert(row.into_active_model())
            .exec(self.unlocked())
            .await
            .map_err(|e| Error::on_insert(e, "decision"))?;
        Ok(())
    }
}

impl Store {
    pub async fn decisions_for_case(
        &self,
        district: &DistrictId,
        case: CaseId,
    ) -> Result<Vec<DecisionRecord>> {
        decisions_for_case(&self.db, district, case).await
    }

    /// Cases in review waiting at a step that one of `roles` acts on, or a role delegated to
    /// `delegate` at `now`, oldest arrival first (then by id): an inbox, in one query. When
    /// paging, the cases after `after` (arrival at the step, case id): a case decided since
    /// the page before has left the list without moving the rest.
    pub async fn cases_waiting_for(
        &self,
        district: &DistrictId,
        roles: &[Role],
        delegate: &str,
        now: DateTime<Utc>,
        after: Option<(DateTime<Utc>, CaseId)>,
        limit: u64,
    ) -> Result<Vec<CaseRecord>> {
        let delegated = Query::select()
            .column(delegation::Column::Role)
            .from(delegation::Entity)
            .and_where(delegation::Column::DistrictId.eq(district.as_str()))
            .and_where(delegation::Column::DelegateSubject.eq(delegate))
            .and_where(delegation::Column::StartsAt.lte(now))
            .and_where(delegation::Column::EndsAt.gt(now))
            .and_where(delegation::Column::RevokedAt.is_null())
            .to_owned();
        let mut q = case::Entity::find()
            .filter(case::Column::DistrictId.eq(district.as_str()))
            .filter(case::Column::State.eq("in_review"))
            .filter(case::Column::StepEnteredAt.is_not_null())
            .filter(
                Condition::any()
                    .add(case::Column::CurrentStepRole.is_in(roles.iter().map(|r| r.as_str())))
                    .add(case::Column::CurrentStepRole.in_subquery(delegated)),
            )
            .order_by_asc(case::Column::StepEnteredAt)
            .order_by_asc(case::Column::Id)
            .limit(limit);
        if let Some((at, id)) = after {
            q = q.filter(after_ascending(
                case::Column::StepEnteredAt,
                at,
                case::Column::Id,
                id.to_string(),
            ));
        }
        q.all(&self.db)
            .await?
            .into_iter()
            .map(CaseRecord::from_row)
            .collect()
    }

    /// Cases in review whose step deadline passed before `now`, longest overdue first (then
    /// by id); when paging, those after `after` (deadline, case id).
    pub async fn overdue_cases(
        &self,
        district: &DistrictId,
        now: DateTime<Utc>,
        after: Option<(DateTime<Utc>, CaseId)>,
        limit: u64,
    ) -> Result<Vec<CaseRecord>> {
        let mut q = case::Entity::find()
            .filter(case::Column::DistrictId.eq(district.as_str()))
            .filter(case::Column::State.eq("in_review"))
            .filter(case::Column::StepDeadlineAt.lt(now))
            .order_by_asc(case::Column::StepDeadlineAt)
            .order_by_asc(case::Column::Id)
            .limit(limit);
        if let Some((deadline, id)) = after {
            q = q.filter(after_ascending(
                case::Column::StepDeadlineAt,
                deadline,
                case::Column::Id,
                id.to_string(),
            ));
        }
        q.all(&self.db)
            .await?
            .into_iter()
            .map(CaseRecord::from_row)
            .collect()
    }
}
