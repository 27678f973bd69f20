//! Imported history: which record of an importing system became which case, so that importing
//! the same file again changes nothing.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum CaseImports {
    Table,
    DistrictId,
    ExternalId,
    CaseId,
    Fingerprint,
    ImportedBy,
    ImportedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(CaseImports::Table)
                    .col(string_len(CaseImports::DistrictId, 6))
                    .col(string_len(CaseImports::ExternalId, 64))
                    .col(string_len(CaseImports::CaseId, 36))
                    .col(string_len(CaseImports::Fingerprint, 64))
                    .col(string_len(CaseImports::ImportedBy, 128))
                    .col(timestamp_with_time_zone(CaseImports::ImportedAt))
                    .primary_key(
                        Index::create()
                            .col(CaseImports::DistrictId)
                            .col(CaseImports::ExternalId),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(CaseImports::Table).to_owned())
            .await
    }
}
