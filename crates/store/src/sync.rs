//! Storage side of the change feed: the district's audit events after a sequence number,
//! and the latest one.

use relief_domain::DistrictId;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use crate::Store;
use crate::entity::event;
use crate::error::Result;
use crate::records::EventRecord;

/// The district's events after `after_seq`, oldest first, at most `limit`.
pub(crate) async fn events_after<C: ConnectionTrait>(
    db: &C,
    district: &DistrictId,
    after_seq: i64,
    limit: u64,
) -> Result<Vec<EventRecord>> {
    Ok(event::Entity::find()
        .filter(event::Column::DistrictId.eq(district.as_str()))
        .filter(event::Column::Seq.gt(after_seq))
        .order_by_asc(event::Column::Seq)
        .limit(limit)
        .all(db)
        .await?
        .into_iter()
        .map(EventRecord::from_row)
        .collect())
}

/// The sequence number of the district's newest event, if it has one.
pub(crate) async fn latest_event_seq<C: ConnectionTrait>(
    db: &C,
    district: &DistrictId,
) -> Result<Option<i64>> {
    let newest: Option<Option<i64>> = event::Entity::find()
        .select_only()
        .column_as(event::Column::Seq.max(), "newest")
        .filter(event::Column::DistrictId.eq(district.as_str()))
        .into_tuple()
        .one(db)
        .await?;
    Ok(newest.flatten())
}

impl Store {
    /// The district's events after `after_seq`, oldest first, at most `limit`.
    pub async fn events_after(
        &self,
        district: &relief_domain::DistrictId,
        after_seq: i64,
        limit: u64,
    ) -> Result<Vec<EventRecord>> {
        events_after(&self.db, district, after_seq, limit).await
    }

    /// The sequence number of the district's newest event; `None` before its first.
    pub async fn latest_event_seq(
        &self,
        district: &relief_domain::DistrictId,
    ) -> Result<Option<i64>> {
        latest_event_seq(&self.db, district).await
    }

    /// The district's events in order, optionally only those about one resource.
    pub async fn events(
        &self,
        district: &DistrictId,
        resource_id: Option<&str>,
    ) -> Result<Vec<EventRecord>> {
        let mut q = event::Entity::find()
            .filter(event::Column::DistrictId.eq(district.as_str()))
            .order_by_asc(event::Column::Seq);
        if let Some(r) = resource_id {
            q = q.filter(event::Column::ResourceId.eq(r));
        }
        Ok(q.all(&self.db)
            .await?
            .into_iter()
            .map(EventRecord::from_row)
            .collect())
    }
}
