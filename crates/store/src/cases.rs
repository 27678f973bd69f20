//! Storage of cases: reading them (within the writer's transaction or outside it), writing
//! them with their audit event and version check, and the lists and year reads of them.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use relief_domain::{CaseId, CategoryCode, DistrictId, StateKind, UnitId};
use sea_orm::ActiveModelTrait;
use sea_orm::sea_query::{Expr, ExprTrait, LikeExpr};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
    QuerySelect,
};

use crate::entity::case;
use crate::error::{Error, Result};
use crate::records::CaseRecord;
use crate::{Store, WriteTx};

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

impl WriteTx {
    /// The case as it is now, with the district's writers serialized behind this one, so
    /// nothing changes it before commit.
    pub async fn case(&self, district: &DistrictId, id: CaseId) -> Result<Option<CaseRecord>> {
        case(self.conn().await?, district, id).await
    }

    /// The case as last committed, read before the district's queue: for a change that
    /// ends in [`WriteTx::update_case`], whose version check then fails with
    /// [`Error::Conflict`] if anyone changed the case in between.
    pub async fn case_optimistic(
        &self,
        district: &DistrictId,
        id: CaseId,
    ) -> Result<Option<CaseRecord>> {
        case(self.unlocked(), district, id).await
    }

    pub async fn insert_case(&mut self, record: &CaseRecord) -> Result<()> {
        let row = record.to_row()?;
        case::Entity::insert(row.into_active_model())
            .exec(self.conn().await?)
            .await
            .map_err(|e| Error::on_insert(e, format!("case {}", record.id)))?;
        self.record(
            &record.district_id,
            "case.created",
            "case",
            &record.id.to_string(),
            None::<&()>,
            Some(record),
        )?;
        Ok(())
    }

    /// Stores `after` over `before`, bumping the version, and records `action` with the
    /// actor's `note` (opinion or reason), if any.
    pub async fn update_case(
        &mut self,
        action: &'static str,
        note: Option<&str>,
        before: &CaseRecord,
        after: &mut CaseRecord,
    ) -> Result<()> {
        after.version = before.version + 1;
        after.updated_at = self.now();
        let row = after.to_row()?;
        // The event's JSON is made before the district's queue is joined.
        self.record_with_note(
            &before.district_id,
            action,
            "case",
            &before.id.to_string(),
            note,
            Some(before),
            Some(&*after),
        )?;
        let res = case::Entity::update_many()
            .set(row.into_active_model().reset_all())
            .filter(case::Column::Id.eq(before.id.to_string()))
            .filter(case::Column::DistrictId.eq(before.district_id.as_str()))
            .filter(case::Column::Version.eq(before.version))
            .exec(self.conn().await?)
            .await?;
        if res.rows_affected != 1 {
            return Err(Error::Conflict("case"));
        }
        Ok(())
    }

    /// The district's other cases for this recipient, submitted since `since` and in review
    /// or decided for payment: what the repeat-relief rule looks at.
    pub async fn recent_cases_for_recipient(
        &self,
        district: &DistrictId,
        resident_id: &str,
        since: DateTime<Utc>,
        exclude: CaseId,
    ) -> Result<Vec<CaseId>> {
        let ids: Vec<String> = case::Entity::find()
            .select_only()
            .column(case::Column::Id)
            .filter(case::Column::DistrictId.eq(district.as_str()))
            .filter(case::Column::ResidentIdNumber.eq(resident_id))
            .filter(case::Column::Id.ne(exclude.to_string()))
            .filter(case::Column::State.is_in(["in_review", "approved", "paid"]))
            .filter(case::Column::SubmittedAt.gte(since))
            .order_by_asc(case::Column::Id)
            .into_tuple()
            .all(self.conn().await?)
            .await?;
        ids.iter()
            .map(|s| CaseId::parse(s).map_err(|e| Error::corrupt("case id", e)))
            .collect()
    }
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

    /// The cases of a fiscal year in id order after `after`, at most `limit`: the exports
    /// read a year this way, a batch at a time.
    pub async fn cases_of_year_after(
        &self,
        district: &DistrictId,
        fiscal_year: i32,
        after: Option<CaseId>,
        limit: u64,
    ) -> Result<Vec<CaseRecord>> {
        let mut q = case::Entity::find()
            .filter(case::Column::DistrictId.eq(district.as_str()))
            .filter(case::Column::FiscalYear.eq(fiscal_year))
            .order_by_asc(case::Column::Id)
            .limit(limit);
        if let Some(after) = after {
            q = q.filter(case::Column::Id.gt(after.to_string()));
        }
        q.all(&self.db)
            .await?
            .into_iter()
            .map(CaseRecord::from_row)
            .collect()
    }

    /// The cases charged to a fiscal year, for ledger verification.
    pub async fn cases_of_year(
        &self,
        district: &DistrictId,
        fiscal_year: i32,
    ) -> Result<Vec<CaseRecord>> {
        case::Entity::find()
            .filter(case::Column::DistrictId.eq(district.as_str()))
            .filter(case::Column::FiscalYear.eq(fiscal_year))
            .all(&self.db)
            .await?
            .into_iter()
            .map(CaseRecord::from_row)
            .collect()
    }
}
