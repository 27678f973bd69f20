//! The business of petition relief (信访救助) with no wire and no database: money, ids, fund
//! rules, the case state machine. Every other crate speaks in these types; this crate's
//! Cargo.toml has neither tonic nor sea-orm, and must keep it that way.

pub mod approval;
pub mod audit;
pub mod case;
pub mod clock;
pub mod defaults;
pub mod ids;
pub mod ledger;
pub mod money;
pub mod payment;
pub mod privacy;
pub mod report;
pub mod resident_id;
pub mod role;
pub mod rules;
pub mod text;
pub mod violation;

pub use case::{Application, CaseState, StateKind};
pub use clock::{Clock, ManualClock, SystemClock};
pub use ids::{CaseId, CategoryCode, DistrictId, StepId, Subject, UnitId};
pub use money::Money;
pub use resident_id::ResidentId;
pub use role::Role;
pub use rules::FundRules;
pub use violation::{Violation, Violations};
