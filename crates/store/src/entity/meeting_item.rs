//! One case on a meeting's agenda, with the decision recorded for it.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "meeting_items")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub meeting_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub case_id: String,
    pub district_id: String,
    pub position: i32,
    pub decision: Option<super::decision::Kind>,
    pub approved_amount_fen: Option<i64>,
    pub return_to_step_id: Option<String>,
    pub opinion: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
