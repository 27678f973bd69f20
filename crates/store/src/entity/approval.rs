//! Tables of the approval process: decisions, delegations, party-group meetings and their
//! agendas, and the fund ledger's entries.

pub mod decision {
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
        pub decision: String,
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
}

pub mod delegation {
    //! A step role lent to another person for a time.
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "delegations")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub district_id: String,
        pub delegator_subject: String,
        pub delegator_name: String,
        pub delegate_subject: String,
        pub role: String,
        pub starts_at: ChronoDateTimeUtc,
        pub ends_at: ChronoDateTimeUtc,
        pub revoked_at: Option<ChronoDateTimeUtc>,
        pub created_at: ChronoDateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod meeting {
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
}

pub mod meeting_item {
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
        pub decision: Option<String>,
        pub approved_amount_fen: Option<i64>,
        pub return_to_step_id: Option<String>,
        pub opinion: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod ledger_entry {
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
}

pub mod payment {
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
}

pub mod follow_up {
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
}

pub mod fiscal_year_closure {
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
}

pub mod report_narrative {
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
}
