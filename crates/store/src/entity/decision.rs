//! One decision at one step of a case.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "decisions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub district_id: String,
    pub case_id: String,
    pub step_id: String,
    pub step_name: String,
    pub decision: Kind,
    pub actor_subject: String,
    pub actor_name: String,
    pub actor_role: String,
    pub on_behalf_of: Option<String>,
    pub opinion: String,
    pub amount_before_fen: i64,
    pub amount_after_fen: i64,
    pub over_cap: bool,
    pub over_cap_justification: String,
    pub meeting_id: Option<String>,
    pub return_to_step_id: Option<String>,
    pub decided_at: ChronoDateTimeUtc,
    pub fiscal_year: Option<i32>,
    pub waited_secs: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

/// The kind of a decision, stored as `approve`, `return` or `reject`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum Kind {
    #[sea_orm(string_value = "approve")]
    Approve,
    #[sea_orm(string_value = "return")]
    Return,
    #[sea_orm(string_value = "reject")]
    Reject,
}

impl From<relief_domain::approval::DecisionKind> for Kind {
    fn from(k: relief_domain::approval::DecisionKind) -> Kind {
        use relief_domain::approval::DecisionKind as D;
        match k {
            D::Approve => Kind::Approve,
            D::Return => Kind::Return,
            D::Reject => Kind::Reject,
        }
    }
}

impl From<Kind> for relief_domain::approval::DecisionKind {
    fn from(k: Kind) -> Self {
        use relief_domain::approval::DecisionKind as D;
        match k {
            Kind::Approve => D::Approve,
            Kind::Return => D::Return,
            Kind::Reject => D::Reject,
        }
    }
}
