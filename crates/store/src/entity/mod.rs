//! sea-orm entities, one per table. Only this crate sees them; callers get domain records.

pub mod approval;
pub mod audit_key;
pub mod case;
pub mod case_import;
pub mod district;
pub mod event;
pub mod import_window;
pub mod request_id;
pub mod rules_version;
