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
    StepId,
    Decision,
}

#[derive(DeriveIden)]
enum Cases {
    Table,
    DistrictId,
    FiscalYear,
    State,
    OverCap,
    CategoryCode,
    ApplicantUnitId,
    ApprovedAmountFen,
    PetitionedAgain,
}

#[derive(DeriveIden)]
enum Payments {
    Table,
    DistrictId,
    FiscalYear,
    State,
    SecsToPayment,
    PaidDate,
    AmountFen,
}

#[derive(DeriveIden)]
enum FollowUps {
    Table,
    DistrictId,
    FiscalYear,
    DueDate,
    Done,
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
        // The report's counts and sums over a year's cases, answered from the index alone.
        manager
            .create_index(
                Index::create()
                    .name("idx_cases_year_report")
                    .table(Cases::Table)
                    .col(Cases::DistrictId)
                    .col(Cases::FiscalYear)
                    .col(Cases::State)
                    .col(Cases::CategoryCode)
                    .col(Cases::ApplicantUnitId)
                    .col(Cases::ApprovedAmountFen)
                    .col(Cases::PetitionedAgain)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_cases_year_unit")
                    .table(Cases::Table)
                    .col(Cases::DistrictId)
                    .col(Cases::FiscalYear)
                    .col(Cases::ApplicantUnitId)
                    .col(Cases::State)
                    .col(Cases::ApprovedAmountFen)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_cases_year_amount")
                    .table(Cases::Table)
                    .col(Cases::DistrictId)
                    .col(Cases::FiscalYear)
                    .col(Cases::ApprovedAmountFen)
                    .col(Cases::State)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_cases_year_over_cap")
                    .table(Cases::Table)
                    .col(Cases::DistrictId)
                    .col(Cases::FiscalYear)
                    .col(Cases::OverCap)
                    .to_owned(),
            )
            .await?;
        // The report reads waits per step and decisions per kind for one year; these indexes
        // let the database answer counts, means and percentiles without a table scan.
        manager
            .create_index(
                Index::create()
                    .name("idx_decisions_year_step")
                    .table(Decisions::Table)
                    .col(Decisions::DistrictId)
                    .col(Decisions::FiscalYear)
                    .col(Decisions::StepId)
                    .col(Decisions::WaitedSecs)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_decisions_year_kind")
                    .table(Decisions::Table)
                    .col(Decisions::DistrictId)
                    .col(Decisions::FiscalYear)
                    .col(Decisions::Decision)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Payments::Table)
                    .add_column(big_integer_null(Payments::SecsToPayment))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_payments_year")
                    .table(Payments::Table)
                    .col(Payments::DistrictId)
                    .col(Payments::FiscalYear)
                    .col(Payments::State)
                    .col(Payments::SecsToPayment)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_payments_year_date")
                    .table(Payments::Table)
                    .col(Payments::DistrictId)
                    .col(Payments::FiscalYear)
                    .col(Payments::State)
                    .col(Payments::PaidDate)
                    .col(Payments::AmountFen)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(FollowUps::Table)
                    .add_column(integer_null(FollowUps::FiscalYear))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_follow_ups_year")
                    .table(FollowUps::Table)
                    .col(FollowUps::DistrictId)
                    .col(FollowUps::FiscalYear)
                    .col(FollowUps::DueDate)
                    .col(FollowUps::Done)
                    .to_owned(),
            )
            .await?;
        // Rows written before this migration take their case's fiscal year.
        let db = manager.get_connection();
        db.execute_unprepared(
            "UPDATE decisions SET fiscal_year = (SELECT cases.fiscal_year FROM cases WHERE cases.id = decisions.case_id) \
             WHERE fiscal_year IS NULL",
        )
        .await?;
        db.execute_unprepared(
            "UPDATE follow_ups SET fiscal_year = (SELECT cases.fiscal_year FROM cases WHERE cases.id = follow_ups.case_id) \
             WHERE fiscal_year IS NULL",
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
        for (name, table) in [
            ("idx_cases_year_report", Cases::Table.into_iden()),
            ("idx_cases_year_unit", Cases::Table.into_iden()),
            ("idx_cases_year_over_cap", Cases::Table.into_iden()),
            ("idx_cases_year_amount", Cases::Table.into_iden()),
            ("idx_payments_year_date", Payments::Table.into_iden()),
            ("idx_follow_ups_year", FollowUps::Table.into_iden()),
            ("idx_payments_year", Payments::Table.into_iden()),
            ("idx_decisions_year_kind", Decisions::Table.into_iden()),
            ("idx_decisions_year_step", Decisions::Table.into_iden()),
        ] {
            manager
                .drop_index(Index::drop().name(name).table(table).to_owned())
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(FollowUps::Table)
                    .drop_column(FollowUps::FiscalYear)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Payments::Table)
                    .drop_column(Payments::SecsToPayment)
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
