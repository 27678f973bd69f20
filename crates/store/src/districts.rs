//! Storage of districts and their fund rules: the district with its current rules, every
//! rules version (kept in memory once read), and the writes that create a district and
//! change its rules. Each read is scoped to a district and serves the pool and an open
//! transaction alike, so a write sees exactly what a read would.

use relief_domain::audit::GENESIS_HASH;
use relief_domain::ledger::EntryKind;
use relief_domain::{DistrictId, FundRules, Money};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
    QuerySelect,
};

use crate::entity::{district, rules_version};
use crate::error::{Error, Result};
use crate::records::{CaseRecord, DistrictRecord, RulesVersionRecord, rules_from_json};
use crate::write::to_json;
use crate::{Store, WriteTx};

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

impl Store {
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
}

impl WriteTx {
    pub async fn insert_district(
        &mut self,
        id: &DistrictId,
        name: &str,
        rules: &FundRules,
    ) -> Result<DistrictRecord> {
        let row = district::Model {
            id: id.to_string(),
            name: name.to_owned(),
            current_rules_version: 1,
            created_at: self.now(),
            updated_at: self.now(),
            chain_head_seq: 0,
            chain_head_hash: GENESIS_HASH.to_owned(),
            checkpoint_seq: 0,
            // The first checkpoint falls due counting from the district's creation.
            checkpoint_at_us: self.now().timestamp_micros(),
            ledger_audited_after_id: 0,
        };
        district::Entity::insert(row.into_active_model())
            .exec(self.conn().await?)
            .await
            .map_err(|e| Error::on_insert(e, format!("district {id}")))?;
        self.insert_rules_version(id, 1, rules).await?;
        let record = DistrictRecord {
            id: id.clone(),
            name: name.to_owned(),
            rules: rules.clone(),
            rules_version: 1,
            created_at: self.now(),
            updated_at: self.now(),
        };
        // The district's first event, then its budgets' allocations, each an event of its own.
        self.record(
            id,
            "district.created",
            "district",
            id.as_str(),
            None::<&()>,
            Some(&record),
        )?;
        for b in &rules.budgets {
            if !b.allocated.is_zero() {
                self.add_ledger_entry(id, b.fiscal_year, None, EntryKind::Allocate, b.allocated)
                    .await?;
            }
        }
        Ok(record)
    }

    async fn insert_rules_version(
        &self,
        id: &DistrictId,
        version: i64,
        rules: &FundRules,
    ) -> Result<()> {
        let row = rules_version::Model {
            district_id: id.to_string(),
            version,
            rules: to_json("fund rules", rules)?,
            created_by: self.actor().subject.to_string(),
            created_at: self.now(),
        };
        rules_version::Entity::insert(row.into_active_model())
            .exec(self.conn().await?)
            .await
            .map_err(|e| {
                Error::on_insert(e, format!("rules version {version} of district {id}"))
            })?;
        Ok(())
    }

    /// Makes `rules` the district's next rules version. `expected_version` (when given) must
    /// be the version in force, so two administrators cannot overwrite each other unseen.
    pub async fn update_rules(
        &mut self,
        id: &DistrictId,
        rules: &FundRules,
        expected_version: Option<i64>,
    ) -> Result<DistrictRecord> {
        let before = district(self.conn().await?, id)
            .await?
            .ok_or(Error::NotFound("district"))?;
        if let Some(expected) = expected_version
            && expected != before.rules_version
        {
            return Err(Error::Stale {
                what: "fund rules",
                expected,
                actual: before.rules_version,
            });
        }
        let version = before.rules_version + 1;
        self.insert_rules_version(id, version, rules).await?;
        self.reallocate(id, &before.rules, rules).await?;
        district::Entity::update_many()
            .col_expr(district::Column::CurrentRulesVersion, Expr::value(version))
            .col_expr(district::Column::UpdatedAt, Expr::value(self.now()))
            .filter(district::Column::Id.eq(id.as_str()))
            .exec(self.conn().await?)
            .await?;
        let after = DistrictRecord {
            rules: rules.clone(),
            rules_version: version,
            updated_at: self.now(),
            ..before.clone()
        };
        self.record(
            id,
            "district.rules_updated",
            "district",
            id.as_str(),
            Some(&before),
            Some(&after),
        )?;
        Ok(after)
    }

    pub async fn district(&self, id: &DistrictId) -> Result<Option<DistrictRecord>> {
        district(self.conn().await?, id).await
    }

    /// Writes the ledger entries that move each year's allocation from `old` to `new`. A
    /// closed year keeps its budget, and no year may drop below what it has reserved and
    /// paid.
    async fn reallocate(
        &mut self,
        id: &DistrictId,
        old: &FundRules,
        new: &FundRules,
    ) -> Result<()> {
        let mut years: Vec<i32> = old
            .budgets
            .iter()
            .chain(&new.budgets)
            .map(|b| b.fiscal_year)
            .collect();
        years.sort_unstable();
        years.dedup();
        for year in years {
            let was = old.budget_for(year).map_or(Money::ZERO, |b| b.allocated);
            let will = new.budget_for(year).map_or(Money::ZERO, |b| b.allocated);
            if was == will {
                continue;
            }
            if self.year_closed(id, year).await? {
                return Err(Error::Precondition(format!(
                    "fiscal year {year} is closed; its budget cannot change"
                )));
            }
            let balance = self.budget_balance(id, year).await?;
            let (kind, delta) = match will.checked_sub(was) {
                Some(up) => (EntryKind::Allocate, up),
                None => (
                    EntryKind::Deallocate,
                    was.checked_sub(will).unwrap_or(Money::ZERO),
                ),
            };
            let after = balance
                .apply(kind, delta)
                .and_then(|b| b.check())
                .map_err(|e| Error::Precondition(format!("fiscal year {year}: the budget cannot drop below what is reserved and paid ({e})")));
            after?;
            self.add_ledger_entry(id, year, None, kind, delta).await?;
        }
        Ok(())
    }

    /// A rules version, from those this process keeps when it has read it before (a write
    /// does not add to them: what it inserted may yet be rolled back).
    pub async fn rules_version(&self, id: &DistrictId, version: i64) -> Result<Option<FundRules>> {
        if let Some(kept) = self.rules_versions.get(id, version) {
            return Ok(Some(kept.rules));
        }
        let row = rules_version::Entity::find_by_id((id.to_string(), version))
            .one(self.unlocked())
            .await?;
        row.map(|r| rules_from_json(&r.rules)).transpose()
    }

    /// The rules `case` was filed under; a case always has them.
    pub async fn case_rules(&self, case: &CaseRecord) -> Result<FundRules> {
        self.rules_version(&case.district_id, case.rules_version)
            .await?
            .ok_or_else(|| {
                Error::corrupt(
                    "case",
                    format!(
                        "case {} names rules version {}, which is missing",
                        case.id, case.rules_version
                    ),
                )
            })
    }
}
