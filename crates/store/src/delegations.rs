//! Storage of delegations: a step role lent to another person for a while. Which of them
//! are in force is the domain's to say ([`DelegationFacts::active`]); the queries only
//! narrow the rows.

use chrono::{DateTime, Utc};
use relief_domain::approval::DelegationFacts;
use relief_domain::{DistrictId, Role};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
    QuerySelect,
};
use serde::Serialize;

use crate::entity::delegation;
use crate::error::{Error, Result, corrupt};
use crate::keyset::after_descending;
use crate::{Store, WriteTx};

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

impl WriteTx {
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
}

impl Store {
    pub async fn active_delegations(
        &self,
        district: &DistrictId,
        delegate: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<DelegationRecord>> {
        active_delegations(&self.db, district, delegate, now).await
    }

    /// The district's delegations, newest first (by creation, then id); when paging, those
    /// after `after` (creation time, id) in that order.
    pub async fn delegations(
        &self,
        district: &DistrictId,
        after: Option<(DateTime<Utc>, String)>,
        limit: u64,
    ) -> Result<Vec<DelegationRecord>> {
        let mut q = delegation::Entity::find()
            .filter(delegation::Column::DistrictId.eq(district.as_str()))
            .order_by_desc(delegation::Column::CreatedAt)
            .order_by_desc(delegation::Column::Id)
            .limit(limit);
        if let Some((created, id)) = after {
            q = q.filter(after_descending(
                delegation::Column::CreatedAt,
                created,
                delegation::Column::Id,
                id,
            ));
        }
        q.all(&self.db)
            .await?
            .into_iter()
            .map(DelegationRecord::from_row)
            .collect()
    }
}
