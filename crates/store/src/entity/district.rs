//! A district (tenant), the version of its fund rules in force, and the head of its audit
//! chain (kept here, apart from the events, and updated with them).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "districts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub name: String,
    pub current_rules_version: i64,
    pub created_at: ChronoDateTimeUtc,
    pub updated_at: ChronoDateTimeUtc,
    /// The seq and hash of the district's last event; 0 and the genesis hash before any.
    pub chain_head_seq: i64,
    pub chain_head_hash: String,
    /// The seq of the last checkpoint event, and when it was signed (or the district
    /// created).
    pub checkpoint_seq: i64,
    pub checkpoint_at_us: i64,
    /// Ledger entries with a larger id have an audit event each; the others predate it.
    pub ledger_audited_after_id: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
