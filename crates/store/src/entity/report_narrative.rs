//! The bureau's words for one section of a year's report.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "report_narratives")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub district_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub fiscal_year: i32,
    #[sea_orm(primary_key, auto_increment = false)]
    pub section: String,
    pub text: String,
    pub updated_by: String,
    pub updated_at: ChronoDateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
