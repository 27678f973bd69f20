//! What the yearly report needs: how long each decision waited and for which fiscal year,
//! and the bureau's narrative per report section.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Decisions {
    Table,
    DistrictId,
    FiscalYear,
    WaitedSecs,
}

#[derive(DeriveIden)]
enum ReportNarratives {
    Table,
    DistrictId,
    FiscalYear,
    Section,
    Text,
    UpdatedBy,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Decisions::Table)
                    .add_column(integer_null(Decisions::FiscalYear))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Decisions::Table)
                    .add_column(big_integer(Decisions::WaitedSecs).default(0))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_decisions_year")
                    .table(Decisions::Table)
                    .col(Decisions::DistrictId)
                    .col(Decisions::FiscalYear)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ReportNarratives::Table)
                    .col(string_len(ReportNarratives::DistrictId, 6))
                    .col(integer(ReportNarratives::FiscalYear))
                    .col(string_len(ReportNarratives::Section, 32))
                    .col(text(ReportNarratives::Text))
                    .col(string_len(ReportNarratives::UpdatedBy, 128))
                    .col(timestamp_with_time_zone(ReportNarratives::UpdatedAt))
                    .primary_key(
                        Index::create()
                            .col(ReportNarratives::DistrictId)
                            .col(ReportNarratives::FiscalYear)
                            .col(ReportNarratives::Section),
                    )
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ReportNarratives::Table).to_owned())
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name("idx_decisions_year")
                    .table(Decisions::Table)
                    .to_owned(),
            )
            .await?;
        for col in [Decisions::WaitedSecs, Decisions::FiscalYear] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Decisions::Table)
                        .drop_column(col)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
