//! The schema, one migration per change, applied by `reliefd migrate` and at `reliefd serve`
//! start-up. The same statements run on SQLite and PostgreSQL.

pub use sea_orm_migration::prelude::*;

mod m0001_foundation;
mod m0002_approvals;
mod m0003_disbursements;
mod m0004_reports;
mod m0005_imports;
mod m0006_import_windows;
mod m0007_chain_heads;
mod m0008_keyset_paging;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m0001_foundation::Migration),
            Box::new(m0002_approvals::Migration),
            Box::new(m0003_disbursements::Migration),
            Box::new(m0004_reports::Migration),
            Box::new(m0005_imports::Migration),
            Box::new(m0006_import_windows::Migration),
            Box::new(m0007_chain_heads::Migration),
            Box::new(m0008_keyset_paging::Migration),
        ]
    }
}
