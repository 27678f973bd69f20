//! Storage of party-group meetings (党组会) and their agendas, with the decision recorded
//! for each case on them.

use chrono::{DateTime, Utc};
use relief_domain::approval::DecisionKind;
use relief_domain::{CaseId, DistrictId, Money};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use serde::Serialize;

use crate::entity::{decision, meeting, meeting_item};
use crate::error::{Error, Result, corrupt};
use crate::{Store, WriteTx};

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

impl WriteTx {
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
}

impl Store {
    pub async fn meeting(&self, district: &DistrictId, id: &str) -> Result<Option<MeetingRecord>> {
        meeting(&self.db, district, id).await
    }
}
