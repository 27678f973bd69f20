//! A party-group meeting (党组会).
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "meetings")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub district_id: String,
    pub meeting_date: String,
    pub attendees: String,
    pub minutes_reference: String,
    pub state: String,
    pub opened_by: String,
    pub opened_at: ChronoDateTimeUtc,
    pub closed_at: Option<ChronoDateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
