//! Indexes for the lists paged by key: each list reads the rows after the last key of the
//! page before, in its own order, and each of these indexes holds that order behind the
//! list's equality filters. The district's delegations and payments, newest first, by
//! (creation time, id); a year's ledger entries by id, which supersedes the index on
//! (district, fiscal year) alone.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Delegations {
    Table,
    DistrictId,
    CreatedAt,
    Id,
}

#[derive(DeriveIden)]
enum Payments {
    Table,
    DistrictId,
    CreatedAt,
    Id,
}

#[derive(DeriveIden)]
enum LedgerEntries {
    Table,
    DistrictId,
    FiscalYear,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name("idx_delegations_district_created")
                    .table(Delegations::Table)
                    .col(Delegations::DistrictId)
                    .col(Delegations::CreatedAt)
                    .col(Delegations::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_payments_district_created")
                    .table(Payments::Table)
                    .col(Payments::DistrictId)
                    .col(Payments::CreatedAt)
                    .col(Payments::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_ledger_district_year_id")
                    .table(LedgerEntries::Table)
                    .col(LedgerEntries::DistrictId)
                    .col(LedgerEntries::FiscalYear)
                    .col(LedgerEntries::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name("idx_ledger_district_year")
                    .table(LedgerEntries::Table)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name("idx_ledger_district_year")
                    .table(LedgerEntries::Table)
                    .col(LedgerEntries::DistrictId)
                    .col(LedgerEntries::FiscalYear)
                    .to_owned(),
            )
            .await?;
        for (name, table) in [
            (
                "idx_ledger_district_year_id",
                LedgerEntries::Table.into_iden(),
            ),
            ("idx_payments_district_created", Payments::Table.into_iden()),
            (
                "idx_delegations_district_created",
                Delegations::Table.into_iden(),
            ),
        ] {
            manager
                .drop_index(Index::drop().name(name).table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
