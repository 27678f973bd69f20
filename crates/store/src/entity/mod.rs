//! sea-orm entities, one per table. Only this crate sees them; callers get domain records.

pub mod audit_key;
pub mod case;
pub mod case_import;
pub mod decision;
pub mod delegation;
pub mod district;
pub mod event;
pub mod fiscal_year_closure;
pub mod follow_up;
pub mod import_window;
pub mod ledger_entry;
pub mod meeting;
pub mod meeting_item;
pub mod payment;
pub mod report_narrative;
pub mod request_id;
pub mod rules_version;
