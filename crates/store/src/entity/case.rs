//! A case: the application as JSON plus the columns that lists filter and sort on.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "cases")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub district_id: String,
    pub applicant_unit_id: String,
    pub state: String,
    pub current_step_id: Option<String>,
    pub fiscal_year: Option<i32>,
    pub category_code: Option<String>,
    pub recipient_name: String,
    pub resident_id_number: Option<String>,
    pub requested_amount_fen: i64,
    pub approved_amount_fen: Option<i64>,
    pub current_step_role: Option<String>,
    pub step_entered_at: Option<ChronoDateTimeUtc>,
    pub step_deadline_at: Option<ChronoDateTimeUtc>,
    pub petitioned_again: bool,
    pub over_cap: bool,
    pub repeat_relief: bool,
    pub rules_version: i64,
    pub version: i64,
    pub application: String,
    pub created_by: String,
    pub created_at: ChronoDateTimeUtc,
    pub updated_at: ChronoDateTimeUtc,
    pub submitted_at: Option<ChronoDateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
