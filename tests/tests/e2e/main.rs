//! The end-to-end suite as one binary: each module drives the real server over gRPC, on
//! SQLite always and on PostgreSQL when `RELIEF_TEST_POSTGRES_URL` is set.

#![allow(clippy::unwrap_used, clippy::expect_used)]
// Wire messages are built with `..Default::default()` even where every field is named today,
// so a field added to the contract does not break the suite's build.
#![allow(clippy::needless_update)]

mod approvals;
mod auth;
mod cancellation;
mod concurrency;
mod contract;
mod crafted;
mod demo;
mod districts;
mod events;
mod fuzz;
mod gateway;
mod health;
mod hostile_input;
mod import_windows;
mod imports;
mod intake;
mod limits;
mod paging;
mod payments;
mod privacy;
mod reports;
mod retries;
mod sync;
mod tamper;
mod tenancy;
mod validation;
