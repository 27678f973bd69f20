//! One entry of a district's append-only, hash-chained event log.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "events")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub district_id: String,
    pub seq: i64,
    pub occurred_at_us: i64,
    pub actor_subject: String,
    pub actor_name: String,
    pub actor_role: String,
    pub on_behalf_of: Option<String>,
    pub action: String,
    pub resource_type: String,
    pub resource_id: String,
    pub request_id: Option<String>,
    pub note: Option<String>,
    pub before_json: Option<String>,
    pub after_json: Option<String>,
    pub prev_hash: String,
    pub hash: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

impl relief_domain::audit::StoredEvent for Model {
    fn fields(&self) -> relief_domain::audit::EventFields<'_> {
        relief_domain::audit::EventFields {
            district_id: &self.district_id,
            seq: self.seq,
            occurred_at_us: self.occurred_at_us,
            actor_subject: &self.actor_subject,
            actor_name: &self.actor_name,
            actor_role: &self.actor_role,
            on_behalf_of: self.on_behalf_of.as_deref(),
            action: &self.action,
            resource_type: &self.resource_type,
            resource_id: &self.resource_id,
            request_id: self.request_id.as_deref(),
            note: self.note.as_deref(),
            before_json: self.before_json.as_deref(),
            after_json: self.after_json.as_deref(),
        }
    }
    fn prev_hash(&self) -> &str {
        &self.prev_hash
    }
    fn hash(&self) -> &str {
        &self.hash
    }
}
