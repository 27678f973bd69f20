//! One payment attempt for a case.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "payments")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub district_id: String,
    pub case_id: String,
    pub fiscal_year: i32,
    pub amount_fen: i64,
    pub receiving_unit_name: String,
    pub bank_name: String,
    pub bank_account: String,
    pub voucher_number: String,
    pub state: String,
    pub bank_reference: Option<String>,
    pub paid_date: Option<String>,
    pub failure_reason: Option<String>,
    pub secs_to_payment: Option<i64>,
    pub created_by: String,
    pub created_at: ChronoDateTimeUtc,
    pub updated_at: ChronoDateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
