//! Storage of the approval process: decisions, delegations, party-group meetings, the fund
//! ledger's entries, and the inbox queries. Writes go through [`WriteTx`] like every other.

use chrono::{DateTime, Utc};
use relief_domain::approval::{BudgetBalance, DecisionKind, DelegationFacts};
use relief_domain::ledger::{ENTRY_EVENT_ACTION, ENTRY_RESOURCE, EntryKind, RecordedEntry};
use relief_domain::{CaseId, DistrictId, Money, Role, StepId};
use sea_orm::Condition;
use sea_orm::sea_query::{Expr, ExprTrait, Func, Query};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use serde::Serialize;

use crate::entity::case;
use crate::entity::{decision, delegation, ledger_entry, meeting, meeting_item};
use crate::error::{Error, Result};
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DelegationRecord {
    pub id: String,
    pub district_id: DistrictId,
    pub delegator_subject: String,
    pub delegator_name: String,
    pub delegate_subject: String,
    pub role: Role,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MeetingItemRecord {
    pub case_id: CaseId,
    pub decision: Option<DecisionKind>,
    pub approved_amount: Option<Money>,
    pub return_to_step_id: Option<String>,
    pub opinion: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MeetingRecord {
    pub id: String,
    pub district_id: DistrictId,
    pub meeting_date: String,
    pub attendees: Vec<String>,
    pub minutes_reference: String,
    pub open: bool,
    pub opened_by: String,
    pub opened_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
    pub items: Vec<MeetingItemRecord>,
}

fn corrupt<E: std::fmt::Display>(what: &'static str) -> impl FnOnce(E) -> Error {
    move |e| Error::corrupt(what, e)
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

impl DelegationRecord {
    /// The delegation as the domain judges it ([`DelegationFacts`]).
    pub fn facts(&self) -> DelegationFacts<'_> {
        DelegationFacts {
            role: self.role,
            delegator: &self.delegator_subject,
            starts_at: self.starts_at,
            ends_at: self.ends_at,
            revoked_at: self.revoked_at,
        }
    }

    fn from_row(r: delegation::Model) -> Result<Self> {
        Ok(Self {
            id: r.id,
            district_id: DistrictId::parse(&r.district_id).map_err(corrupt("district id"))?,
            delegator_subject: r.delegator_subject,
            delegator_name: r.delegator_name,
            delegate_subject: r.delegate_subject,
            role: r.role.parse().map_err(corrupt("role"))?,
            starts_at: r.starts_at,
            ends_at: r.ends_at,
            revoked_at: r.revoked_at,
            created_at: r.created_at,
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

async fn meeting<C: ConnectionTrait>(
    conn: &C,
    district: &DistrictId,
    id: &str,
) -> Result<Option<MeetingRecord>> {
    let Some(m) = meeting::Entity::find_by_id(id.to_owned())
        .filter(meeting::Column::DistrictId.eq(district.as_str()))
        .one(conn)
        .await?
    else {
        return Ok(None);
    };
    let items = meeting_item::Entity::find()
        .filter(meeting_item::Column::MeetingId.eq(id))
        .order_by_asc(meeting_item::Column::Position)
        .all(conn)
        .await?
        .into_iter()
        .map(|i| {
            Ok(MeetingItemRecord {
                case_id: CaseId::parse(&i.case_id).map_err(corrupt("case id"))?,
                decision: i.decision.map(Into::into),
                approved_amount: i
                    .approved_amount_fen
                    .map(Money::from_fen)
                    .transpose()
                    .map_err(corrupt("amount"))?,
                return_to_step_id: i.return_to_step_id,
                opinion: i.opinion,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Some(MeetingRecord {
        id: m.id,
        district_id: district.clone(),
        meeting_date: m.meeting_date,
        attendees: serde_json::from_str(&m.attendees).map_err(corrupt("attendees"))?,
        minutes_reference: m.minutes_reference,
        open: m.state == "open",
        opened_by: m.opened_by,
        opened_at: m.opened_at,
        closed_at: m.closed_at,
        items,
    }))
}

/// The year's balances, folded from the ledger's sums per kind.
pub(crate) async fn ledger_balance<C: ConnectionTrait>(
    conn: &C,
    district: &DistrictId,
    fiscal_year: i32,
) -> Result<BudgetBalance> {
    let rows: Vec<(String, i64)> = ledger_entry::Entity::find()
        .select_only()
        .column(ledger_entry::Column::Kind)
        // PostgreSQL sums bigints into numeric; cast back so both backends return a 64-bit int.
        .column_as(
            Expr::expr(Func::sum(Expr::col(ledger_entry::Column::AmountFen))).cast_as("BIGINT"),
            "total",
        )
        .filter(ledger_entry::Column::DistrictId.eq(district.as_str()))
        .filter(ledger_entry::Column::FiscalYear.eq(fiscal_year))
        .group_by(ledger_entry::Column::Kind)
        .into_tuple()
        .all(conn)
        .await?;
    let sums = rows
        .into_iter()
        .map(|(k, total)| {
            let kind = EntryKind::parse(&k)
                .ok_or_else(|| Error::corrupt("ledger entry", format!("unknown kind {k}")))?;
            Ok((kind, Money::from_fen(total).map_err(corrupt("ledger sum"))?))
        })
        .collect::<Result<Vec<_>>>()?;
    BudgetBalance::from_sums(sums).map_err(|e| Error::corrupt("ledger", e))
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

    /// Delegations to `delegate` in the district that are in force now.
    pub async fn active_delegations(
        &self,
        district: &DistrictId,
        delegate: &str,
    ) -> Result<Vec<DelegationRecord>> {
        active_delegations(self.conn().await?, district, delegate, self.now()).await
    }

    pub async fn delegation(
        &self,
        district: &DistrictId,
        id: &str,
    ) -> Result<Option<DelegationRecord>> {
        delegation::Entity::find_by_id(id.to_owned())
            .filter(delegation::Column::DistrictId.eq(district.as_str()))
            .one(self.conn().await?)
            .await?
            .map(DelegationRecord::from_row)
            .transpose()
    }

    pub async fn insert_delegation(&mut self, d: &DelegationRecord) -> Result<()> {
        let row = delegation::Model {
            id: d.id.clone(),
            district_id: d.district_id.to_string(),
            delegator_subject: d.delegator_subject.clone(),
            delegator_name: d.delegator_name.clone(),
            delegate_subject: d.delegate_subject.clone(),
            role: d.role.as_str().to_owned(),
            starts_at: d.starts_at,
            ends_at: d.ends_at,
            revoked_at: d.revoked_at,
            created_at: d.created_at,
        };
        delegation::Entity::insert(row.into_active_model())
            .exec(self.conn().await?)
            .await
            .map_err(|e| Error::on_insert(e, "delegation"))?;
        self.record(
            &d.district_id,
            "delegation.created",
            "delegation",
            &d.id,
            None::<&()>,
            Some(d),
        )
    }

    pub async fn revoke_delegation(
        &mut self,
        before: &DelegationRecord,
    ) -> Result<DelegationRecord> {
        let after = DelegationRecord {
            revoked_at: Some(self.now()),
            ..before.clone()
        };
        delegation::Entity::update_many()
            .col_expr(delegation::Column::RevokedAt, Expr::value(self.now()))
            .filter(delegation::Column::Id.eq(before.id.as_str()))
            .filter(delegation::Column::DistrictId.eq(before.district_id.as_str()))
            .exec(self.conn().await?)
            .await?;
        self.record(
            &before.district_id,
            "delegation.revoked",
            "delegation",
            &before.id,
            Some(before),
            Some(&after),
        )?;
        Ok(after)
    }

    pub async fn meeting(&self, district: &DistrictId, id: &str) -> Result<Option<MeetingRecord>> {
        meeting(self.conn().await?, district, id).await
    }

    pub async fn insert_meeting(&mut self, m: &MeetingRecord) -> Result<()> {
        let row = meeting::Model {
            id: m.id.clone(),
            district_id: m.district_id.to_string(),
            meeting_date: m.meeting_date.clone(),
            attendees: serde_json::to_string(&m.attendees).map_err(corrupt("attendees"))?,
            minutes_reference: m.minutes_reference.clone(),
            state: "open".to_owned(),
            opened_by: m.opened_by.clone(),
            opened_at: m.opened_at,
            closed_at: None,
        };
        meeting::Entity::insert(row.into_active_model())
            .exec(self.conn().await?)
            .await
            .map_err(|e| Error::on_insert(e, "meeting"))?;
        self.record(
            &m.district_id,
            "meeting.opened",
            "meeting",
            &m.id,
            None::<&()>,
            Some(m),
        )
    }

    /// The open meeting whose agenda holds `case`, if any.
    pub async fn open_meeting_of_case(
        &self,
        district: &DistrictId,
        case: CaseId,
    ) -> Result<Option<String>> {
        let ids: Vec<String> = meeting_item::Entity::find()
            .select_only()
            .column(meeting_item::Column::MeetingId)
            .filter(meeting_item::Column::DistrictId.eq(district.as_str()))
            .filter(meeting_item::Column::CaseId.eq(case.to_string()))
            .into_tuple()
            .all(self.conn().await?)
            .await?;
        for id in ids {
            let open = meeting::Entity::find_by_id(id.clone())
                .filter(meeting::Column::State.eq("open"))
                .count(self.conn().await?)
                .await?;
            if open > 0 {
                return Ok(Some(id));
            }
        }
        Ok(None)
    }

    /// Appends cases to the agenda of an open meeting; one audit event for the batch.
    pub async fn add_meeting_items(
        &mut self,
        before: &MeetingRecord,
        cases: &[CaseId],
    ) -> Result<MeetingRecord> {
        let mut after = before.clone();
        for (i, c) in cases.iter().enumerate() {
            let row = meeting_item::Model {
                meeting_id: before.id.clone(),
                case_id: c.to_string(),
                district_id: before.district_id.to_string(),
                position: i32::try_from(before.items.len() + i).unwrap_or(i32::MAX),
                decision: None,
                approved_amount_fen: None,
                return_to_step_id: None,
                opinion: None,
            };
            meeting_item::Entity::insert(row.into_active_model())
                .exec(self.conn().await?)
                .await
                .map_err(|e| Error::on_insert(e, format!("case {c} on meeting {}", before.id)))?;
            after.items.push(MeetingItemRecord {
                case_id: *c,
                decision: None,
                approved_amount: None,
                return_to_step_id: None,
                opinion: None,
            });
        }
        self.record(
            &before.district_id,
            "meeting.cases_added",
            "meeting",
            &before.id,
            Some(before),
            Some(&after),
        )?;
        Ok(after)
    }

    /// Records (or replaces) the decision for one agenda item.
    pub async fn set_meeting_decision(
        &mut self,
        before: &MeetingRecord,
        item: MeetingItemRecord,
    ) -> Result<MeetingRecord> {
        meeting_item::Entity::update_many()
            .col_expr(
                meeting_item::Column::Decision,
                Expr::value(item.decision.map(decision::Kind::from)),
            )
            .col_expr(
                meeting_item::Column::ApprovedAmountFen,
                Expr::value(item.approved_amount.map(Money::fen)),
            )
            .col_expr(
                meeting_item::Column::ReturnToStepId,
                Expr::value(item.return_to_step_id.clone()),
            )
            .col_expr(
                meeting_item::Column::Opinion,
                Expr::value(item.opinion.clone()),
            )
            .filter(meeting_item::Column::MeetingId.eq(before.id.as_str()))
            .filter(meeting_item::Column::CaseId.eq(item.case_id.to_string()))
            .exec(self.conn().await?)
            .await?;
        let mut after = before.clone();
        if let Some(slot) = after.items.iter_mut().find(|i| i.case_id == item.case_id) {
            *slot = item;
        }
        self.record(
            &before.district_id,
            "meeting.decision_recorded",
            "meeting",
            &before.id,
            Some(before),
            Some(&after),
        )?;
        Ok(after)
    }

    pub async fn close_meeting(&mut self, before: &MeetingRecord) -> Result<MeetingRecord> {
        let res = meeting::Entity::update_many()
            .col_expr(meeting::Column::State, Expr::value("closed"))
            .col_expr(meeting::Column::ClosedAt, Expr::value(self.now()))
            .filter(meeting::Column::Id.eq(before.id.as_str()))
            .filter(meeting::Column::State.eq("open"))
            .exec(self.conn().await?)
            .await?;
        if res.rows_affected != 1 {
            return Err(Error::NotFound("open meeting"));
        }
        let after = MeetingRecord {
            open: false,
            closed_at: Some(self.now()),
            ..before.clone()
        };
        self.record(
            &before.district_id,
            "meeting.closed",
            "meeting",
            &before.id,
            Some(before),
            Some(&after),
        )?;
        Ok(after)
    }

    /// The year's balances, read inside this write so a reservation checks what is true now.
    pub async fn budget_balance(
        &self,
        district: &DistrictId,
        fiscal_year: i32,
    ) -> Result<BudgetBalance> {
        ledger_balance(self.conn().await?, district, fiscal_year).await
    }

    pub async fn add_ledger_entry(
        &mut self,
        district: &DistrictId,
        fiscal_year: i32,
        case: Option<CaseId>,
        kind: EntryKind,
        amount: Money,
    ) -> Result<()> {
        self.insert_ledger_entry(district, fiscal_year, case, kind, amount, false)
            .await
    }

    /// Writes a ledger entry; `imported` marks one that records history from another system.
    pub(crate) async fn insert_ledger_entry(
        &mut self,
        district: &DistrictId,
        fiscal_year: i32,
        case: Option<CaseId>,
        kind: EntryKind,
        amount: Money,
        imported: bool,
    ) -> Result<()> {
        let row = ledger_entry::ActiveModel {
            id: sea_orm::NotSet,
            district_id: sea_orm::Set(district.to_string()),
            fiscal_year: sea_orm::Set(fiscal_year),
            case_id: sea_orm::Set(case.map(|c| c.to_string())),
            kind: sea_orm::Set(kind.as_str().to_owned()),
            amount_fen: sea_orm::Set(amount.fen()),
            actor_subject: sea_orm::Set(self.actor().subject.to_string()),
            created_at: sea_orm::Set(self.now()),
            imported: sea_orm::Set(imported),
        };
        let id = ledger_entry::Entity::insert(row)
            .exec(self.conn().await?)
            .await?
            .last_insert_id;
        // Each entry is a link of the chain of its own, so that an entry edited, removed or
        // added behind the write path no longer matches the chain.
        let recorded = RecordedEntry {
            entry_id: id,
            fiscal_year,
            case_id: case,
            kind,
            amount_fen: amount.fen(),
        };
        self.record(
            district,
            ENTRY_EVENT_ACTION,
            ENTRY_RESOURCE,
            &id.to_string(),
            None::<&()>,
            Some(&recorded),
        )?;
        Ok(())
    }
}

async fn active_delegations<C: ConnectionTrait>(
    conn: &C,
    district: &DistrictId,
    delegate: &str,
    now: DateTime<Utc>,
) -> Result<Vec<DelegationRecord>> {
    let rows = delegation::Entity::find()
        .filter(delegation::Column::DistrictId.eq(district.as_str()))
        .filter(delegation::Column::DelegateSubject.eq(delegate))
        .filter(delegation::Column::StartsAt.lte(now))
        .filter(delegation::Column::EndsAt.gt(now))
        .filter(delegation::Column::RevokedAt.is_null())
        .all(conn)
        .await?;
    // The query narrows the rows; whether each is in force is the domain's to say.
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let d = DelegationRecord::from_row(row)?;
        if d.facts().active(now) {
            out.push(d);
        }
    }
    Ok(out)
}

impl Store {
    pub async fn decisions_for_case(
        &self,
        district: &DistrictId,
        case: CaseId,
    ) -> Result<Vec<DecisionRecord>> {
        decisions_for_case(&self.db, district, case).await
    }

    pub async fn active_delegations(
        &self,
        district: &DistrictId,
        delegate: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<DelegationRecord>> {
        active_delegations(&self.db, district, delegate, now).await
    }

    pub async fn delegations(
        &self,
        district: &DistrictId,
        offset: u64,
        limit: u64,
    ) -> Result<Vec<DelegationRecord>> {
        delegation::Entity::find()
            .filter(delegation::Column::DistrictId.eq(district.as_str()))
            .order_by_desc(delegation::Column::CreatedAt)
            .order_by_desc(delegation::Column::Id)
            .offset(offset)
            .limit(limit)
            .all(&self.db)
            .await?
            .into_iter()
            .map(DelegationRecord::from_row)
            .collect()
    }

    pub async fn meeting(&self, district: &DistrictId, id: &str) -> Result<Option<MeetingRecord>> {
        meeting(&self.db, district, id).await
    }

    /// Cases in review waiting at a step that one of `roles` acts on, or a role delegated to
    /// `delegate` at `now`, oldest arrival first: an inbox, in one query.
    pub async fn cases_waiting_for(
        &self,
        district: &DistrictId,
        roles: &[Role],
        delegate: &str,
        now: DateTime<Utc>,
        offset: u64,
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
        case::Entity::find()
            .filter(case::Column::DistrictId.eq(district.as_str()))
            .filter(case::Column::State.eq("in_review"))
            .filter(
                Condition::any()
                    .add(case::Column::CurrentStepRole.is_in(roles.iter().map(|r| r.as_str())))
                    .add(case::Column::CurrentStepRole.in_subquery(delegated)),
            )
            .order_by_asc(case::Column::StepEnteredAt)
            .order_by_asc(case::Column::Id)
            .offset(offset)
            .limit(limit)
            .all(&self.db)
            .await?
            .into_iter()
            .map(CaseRecord::from_row)
            .collect()
    }

    /// Cases in review whose step deadline passed before `now`, longest overdue first.
    pub async fn overdue_cases(
        &self,
        district: &DistrictId,
        now: DateTime<Utc>,
        offset: u64,
        limit: u64,
    ) -> Result<Vec<CaseRecord>> {
        case::Entity::find()
            .filter(case::Column::DistrictId.eq(district.as_str()))
            .filter(case::Column::State.eq("in_review"))
            .filter(case::Column::StepDeadlineAt.lt(now))
            .order_by_asc(case::Column::StepDeadlineAt)
            .order_by_asc(case::Column::Id)
            .offset(offset)
            .limit(limit)
            .all(&self.db)
            .await?
            .into_iter()
            .map(CaseRecord::from_row)
            .collect()
    }

    /// The year's balances as of now.
    pub async fn budget_balance(
        &self,
        district: &DistrictId,
        fiscal_year: i32,
    ) -> Result<BudgetBalance> {
        ledger_balance(&self.db, district, fiscal_year).await
    }
}
