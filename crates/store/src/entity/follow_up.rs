//! One scheduled follow-up after payment.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "follow_ups")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub district_id: String,
    pub case_id: String,
    pub sequence: i32,
    pub due_date: String,
    pub done: bool,
    pub done_date: Option<String>,
    pub method: Option<String>,
    pub petitioned_again: bool,
    pub notes: Option<String>,
    pub recorded_by: Option<String>,
    pub recorded_at: Option<ChronoDateTimeUtc>,
    pub fiscal_year: Option<i32>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
