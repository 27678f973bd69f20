//! One movement of a district's fund for a fiscal year.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "ledger_entries")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub district_id: String,
    pub fiscal_year: i32,
    pub case_id: Option<String>,
    pub kind: String,
    pub amount_fen: i64,
    pub actor_subject: String,
    pub created_at: ChronoDateTimeUtc,
    /// Written by an import: history recorded here, not money moved here.
    pub imported: bool,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
