//! A fiscal year closed for new reservations and payments.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "fiscal_year_closures")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub district_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub fiscal_year: i32,
    pub unused_fen: i64,
    pub closed_by: String,
    pub closed_at: ChronoDateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
