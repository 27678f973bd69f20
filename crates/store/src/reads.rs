//! Reads, each scoped to a district. The same functions serve the pool and an open
//! transaction, so a write sees exactly what a read would.

use std::collections::HashMap;

use relief_domain::{CaseId, CategoryCode, DistrictId, StateKind, UnitId};
use sea_orm::sea_query::{Expr, ExprTrait, LikeExpr};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use crate::Store;
use crate::entity::{case, district, event, rules_version};
use crate::error::{Error, Result};
use crate::records::{
    CaseRecord, DistrictRecord, EventRecord, RulesVersionRecord, rules_from_json,
};

/// Case ids per query of [`Store::case_units`], well under every backend's bound on bind
/// parameters.
const CASE_UNITS_CHUNK: usize = 500;

/// Filters of a case list; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct CaseFilter {
    pub state: Option<StateKind>,
    pub fiscal_year: Option<i32>,
    pub applicant_unit: Option<UnitId>,
    pub category: Option<CategoryCode>,
    pub recipient_name_contains: Option<String>,
}

pub(crate) async fn district<C: ConnectionTrait>(
    conn: &C,
    id: &DistrictId,
) -> Result<Option<DistrictRecord>> {
    let Some(row) = district::Entity::find_by_id(id.to_string())
        .one(conn)
        .await?
    else {
        return Ok(None);
    };
    let rules = rules_version::Entity::find_by_id((row.id.clone(), row.current_rules_version))
        .one(conn)
        .await?
        .ok_or_else(|| Error::corrupt("district", "current rules version is missing"))?;
    Ok(Some(DistrictRecord {
        id: id.clone(),
        name: row.name,
        rules: rules_from_json(&rules.rules)?,
        rules_version: row.current_rules_version,
        created_at: row.created_at,
        updated_at: row.updated_at,
    }))
}

pub(crate) async fn case<C: ConnectionTrait>(
    conn: &C,
    district: &DistrictId,
    id: CaseId,
) -> Result<Option<CaseRecord>> {
    case::Entity::find_by_id(id.to_string())
        .filter(case::Column::DistrictId.eq(district.as_str()))
        .one(conn)
        .await?
        .map(CaseRecord::from_row)
        .transpose()
}

/// Escapes LIKE wildcards so a search for `50%` matches the text `50%`.
fn like_contains(text: &str) -> LikeExpr {
    let escaped: String = text
        .chars()
        .flat_map(|c| match c {
            '%' | '_' | '\\' => vec!['\\', c],
            c => vec![c],
        })
        .collect();
    LikeExpr::new(format!("%{escaped}%")).escape('\\')
}

impl Store {
    /// The applicant unit of each of `cases` found in the district, for showing data that
    /// belongs to a case (a payment's account) as the case's unit may see it.
    pub async fn case_units(
        &self,
        district: &DistrictId,
        cases: &[CaseId],
    ) -> Result<HashMap<CaseId, UnitId>> {
        let mut units = HashMap::with_capacity(cases.len());
        for chunk in cases.chunks(CASE_UNITS_CHUNK) {
            let rows: Vec<(String, String)> = case::Entity::find()
                .select_only()
                .column(case::Column::Id)
                .column(case::Column::ApplicantUnitId)
                .filter(case::Column::DistrictId.eq(district.as_str()))
                .filter(case::Column::Id.is_in(chunk.iter().map(ToString::to_string)))
                .into_tuple()
                .all(&self.db)
                .await?;
            for (id, unit) in rows {
                units.insert(
                    CaseId::parse(&id).map_err(|e| Error::corrupt("case id", e))?,
                    UnitId::parse(&unit).map_err(|e| Error::corrupt("applicant unit", e))?,
                );
            }
        }
        Ok(units)
    }

    pub async fn district(&self, id: &DistrictId) -> Result<Option<DistrictRecord>> {
        district(&self.db, id).await
    }

    /// Districts in id order after `after`, at most `limit`.
    pub async fn list_districts(
        &self,
        after: Option<&DistrictId>,
        limit: u64,
    ) -> Result<Vec<DistrictRecord>> {
        let mut q = district::Entity::find()
            .order_by_asc(district::Column::Id)
            .limit(limit);
        if let Some(a) = after {
            q = q.filter(district::Column::Id.gt(a.as_str()));
        }
        let mut out = Vec::new();
        for row in q.all(&self.db).await? {
            let id = DistrictId::parse(&row.id).map_err(|e| Error::corrupt("district id", e))?;
            if let Some(d) = district(&self.db, &id).await? {
                out.push(d);
            }
        }
        Ok(out)
    }

    pub async fn rules_version(
        &self,
        id: &DistrictId,
        version: i64,
    ) -> Result<Option<RulesVersionRecord>> {
        if let Some(kept) = self.rules_versions.get(id, version) {
            return Ok(Some(kept));
        }
        let found = rules_version::Entity::find_by_id((id.to_string(), version))
            .one(&self.db)
            .await?
            .map(RulesVersionRecord::from_row)
            .transpose()?;
        if let Some(r) = &found {
            self.rules_versions.put(r);
        }
        Ok(found)
    }

    pub async fn case(&self, district: &DistrictId, id: CaseId) -> Result<Option<CaseRecord>> {
        case(&self.db, district, id).await
    }

    /// Cases of the district, newest first (ids are UUIDv7, so id order is creation order),
    /// strictly before `before` when paging.
    pub async fn list_cases(
        &self,
        district: &DistrictId,
        filter: &CaseFilter,
        before: Option<CaseId>,
        limit: u64,
    ) -> Result<Vec<CaseRecord>> {
        let mut q = case::Entity::find()
            .filter(case::Column::DistrictId.eq(district.as_str()))
            .order_by_desc(case::Column::Id)
            .limit(limit);
        if let Some(b) = before {
            q = q.filter(case::Column::Id.lt(b.to_string()));
        }
        if let Some(s) = filter.state {
            q = q.filter(case::Column::State.eq(s.as_str()));
        }
        if let Some(y) = filter.fiscal_year {
            q = q.filter(case::Column::FiscalYear.eq(y));
        }
        if let Some(u) = &filter.applicant_unit {
            q = q.filter(case::Column::ApplicantUnitId.eq(u.as_str()));
        }
        if let Some(c) = &filter.category {
            q = q.filter(case::Column::CategoryCode.eq(c.as_str()));
        }
        if let Some(text) = &filter.recipient_name_contains {
            q = q.filter(Expr::col(case::Column::RecipientName).like(like_contains(text)));
        }
        q.all(&self.db)
            .await?
            .into_iter()
            .map(CaseRecord::from_row)
            .collect()
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
