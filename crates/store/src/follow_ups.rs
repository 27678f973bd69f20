//! Storage of follow-ups (跟踪回访): scheduled by payment, recorded by the bureau.

use chrono::{DateTime, NaiveDate, Utc};
use relief_domain::{CaseId, DistrictId};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
    QuerySelect,
};
use serde::Serialize;

use crate::entity::follow_up;
use crate::error::{Error, Result, corrupt};
use crate::keyset::after_ascending;
use crate::payments::{DATE, date};
use crate::records::CaseRecord;
use crate::{Store, WriteTx};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FollowUpRecord {
    pub id: String,
    pub district_id: DistrictId,
    pub case_id: CaseId,
    pub sequence: i32,
    pub due_date: NaiveDate,
    pub done: bool,
    pub done_date: Option<NaiveDate>,
    pub method: Option<String>,
    pub petitioned_again: bool,
    pub notes: Option<String>,
    pub recorded_by: Option<String>,
    pub recorded_at: Option<DateTime<Utc>>,
    /// The fiscal year of the case, for the report.
    pub fiscal_year: Option<i32>,
}

impl FollowUpRecord {
    /// The `sequence`th follow-up of `case`, due on `due_date`, not yet done.
    pub fn due(id: String, case: &CaseRecord, sequence: i32, due_date: NaiveDate) -> Self {
        Self {
            id,
            district_id: case.district_id.clone(),
            case_id: case.id,
            sequence,
            due_date,
            done: false,
            done_date: None,
            method: None,
            petitioned_again: false,
            notes: None,
            recorded_by: None,
            recorded_at: None,
            fiscal_year: case.application.fiscal_year,
        }
    }
}

impl FollowUpRecord {
    fn from_row(r: follow_up::Model) -> Result<Self> {
        Ok(Self {
            id: r.id,
            district_id: DistrictId::parse(&r.district_id).map_err(corrupt("district id"))?,
            case_id: CaseId::parse(&r.case_id).map_err(corrupt("case id"))?,
            sequence: r.sequence,
            due_date: date(&r.due_date)?,
            done: r.done,
            done_date: r.done_date.as_deref().map(date).transpose()?,
            method: r.method,
            petitioned_again: r.petitioned_again,
            notes: r.notes,
            recorded_by: r.recorded_by,
            recorded_at: r.recorded_at,
            fiscal_year: r.fiscal_year,
        })
    }

    fn to_row(&self) -> follow_up::Model {
        follow_up::Model {
            id: self.id.clone(),
            district_id: self.district_id.to_string(),
            case_id: self.case_id.to_string(),
            sequence: self.sequence,
            due_date: self.due_date.format(DATE).to_string(),
            done: self.done,
            done_date: self.done_date.map(|d| d.format(DATE).to_string()),
            method: self.method.clone(),
            petitioned_again: self.petitioned_again,
            notes: self.notes.clone(),
            recorded_by: self.recorded_by.clone(),
            recorded_at: self.recorded_at,
            fiscal_year: self.fiscal_year,
        }
    }
}

async fn follow_up<C: ConnectionTrait>(
    conn: &C,
    district: &DistrictId,
    id: &str,
) -> Result<Option<FollowUpRecord>> {
    follow_up::Entity::find_by_id(id.to_owned())
        .filter(follow_up::Column::DistrictId.eq(district.as_str()))
        .one(conn)
        .await?
        .map(FollowUpRecord::from_row)
        .transpose()
}

impl WriteTx {
    pub async fn insert_follow_up(&mut self, f: &FollowUpRecord) -> Result<()> {
        follow_up::Entity::insert(f.to_row().into_active_model())
            .exec(self.conn().await?)
            .await
            .map_err(|e| Error::on_insert(e, "follow-up"))?;
        Ok(())
    }

    pub async fn follow_up(
        &self,
        district: &DistrictId,
        id: &str,
    ) -> Result<Option<FollowUpRecord>> {
        follow_up(self.conn().await?, district, id).await
    }

    /// Cancels the case's follow-ups not yet done (its payment was returned).
    pub async fn cancel_open_follow_ups(
        &mut self,
        district: &DistrictId,
        case: CaseId,
    ) -> Result<u64> {
        let res = follow_up::Entity::delete_many()
            .filter(follow_up::Column::DistrictId.eq(district.as_str()))
            .filter(follow_up::Column::CaseId.eq(case.to_string()))
            .filter(follow_up::Column::Done.eq(false))
            .exec(self.conn().await?)
            .await?;
        Ok(res.rows_affected)
    }

    pub async fn record_follow_up(
        &mut self,
        before: &FollowUpRecord,
        after: &FollowUpRecord,
    ) -> Result<()> {
        let row = after.to_row();
        follow_up::Entity::update_many()
            .col_expr(follow_up::Column::Done, Expr::value(row.done))
            .col_expr(follow_up::Column::DoneDate, Expr::value(row.done_date))
            .col_expr(follow_up::Column::Method, Expr::value(row.method))
            .col_expr(
                follow_up::Column::PetitionedAgain,
                Expr::value(row.petitioned_again),
            )
            .col_expr(follow_up::Column::Notes, Expr::value(row.notes))
            .col_expr(follow_up::Column::RecordedBy, Expr::value(row.recorded_by))
            .col_expr(follow_up::Column::RecordedAt, Expr::value(row.recorded_at))
            .filter(follow_up::Column::Id.eq(before.id.as_str()))
            .exec(self.conn().await?)
            .await?;
        self.record(
            &before.district_id,
            "follow_up.recorded",
            "follow_up",
            &before.id,
            Some(before),
            Some(after),
        )
    }
}

impl Store {
    /// Follow-ups not yet recorded, due on or before `due_by`, earliest first (then by id);
    /// when paging, those after `after` (due date, id): one recorded since the page before
    /// has left the list without moving the rest.
    pub async fn due_follow_ups(
        &self,
        district: &DistrictId,
        due_by: NaiveDate,
        after: Option<(NaiveDate, String)>,
        limit: u64,
    ) -> Result<Vec<FollowUpRecord>> {
        let mut q = follow_up::Entity::find()
            .filter(follow_up::Column::DistrictId.eq(district.as_str()))
            .filter(follow_up::Column::Done.eq(false))
            .filter(follow_up::Column::DueDate.lte(due_by.format(DATE).to_string()))
            .order_by_asc(follow_up::Column::DueDate)
            .order_by_asc(follow_up::Column::Id)
            .limit(limit);
        if let Some((due, id)) = after {
            q = q.filter(after_ascending(
                follow_up::Column::DueDate,
                due.format(DATE).to_string(),
                follow_up::Column::Id,
                id,
            ));
        }
        q.all(&self.db)
            .await?
            .into_iter()
            .map(FollowUpRecord::from_row)
            .collect()
    }

    pub async fn case_follow_ups(
        &self,
        district: &DistrictId,
        case: CaseId,
    ) -> Result<Vec<FollowUpRecord>> {
        follow_up::Entity::find()
            .filter(follow_up::Column::DistrictId.eq(district.as_str()))
            .filter(follow_up::Column::CaseId.eq(case.to_string()))
            .order_by_asc(follow_up::Column::Sequence)
            .all(&self.db)
            .await?
            .into_iter()
            .map(FollowUpRecord::from_row)
            .collect()
    }
}
