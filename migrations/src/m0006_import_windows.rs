//! Imported history kept apart from the money a year spends: ledger entries written by an
//! import are marked, and the fiscal years that finance has opened for imports are recorded,
//! so an importing system alone cannot book spending into a year still being spent.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum LedgerEntries {
    Table,
    Imported,
}

#[derive(DeriveIden)]
enum ImportWindows {
    Table,
    DistrictId,
    FiscalYear,
    Open,
    Reason,
    OpenedBy,
    OpenedAt,
    ClosedBy,
    ClosedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(LedgerEntries::Table)
                    .add_column(boolean(LedgerEntries::Imported).default(false))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ImportWindows::Table)
                    .col(string_len(ImportWindows::DistrictId, 6))
                    .col(integer(ImportWindows::FiscalYear))
                    .col(boolean(ImportWindows::Open))
                    .col(text(ImportWindows::Reason))
                    .col(string_len(ImportWindows::OpenedBy, 128))
                    .col(timestamp_with_time_zone(ImportWindows::OpenedAt))
                    .col(string_len_null(ImportWindows::ClosedBy, 128))
                    .col(timestamp_with_time_zone_null(ImportWindows::ClosedAt))
                    .primary_key(
                        Index::create()
                            .col(ImportWindows::DistrictId)
                            .col(ImportWindows::FiscalYear),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ImportWindows::Table).to_owned())
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(LedgerEntries::Table)
                    .drop_column(LedgerEntries::Imported)
                    .to_owned(),
            )
            .await
    }
}
