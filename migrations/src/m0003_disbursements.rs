//! Payments, follow-ups, fiscal-year closures, and the re-petition flag on cases.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Cases {
    Table,
    PetitionedAgain,
}

#[derive(DeriveIden)]
enum Payments {
    Table,
    Id,
    DistrictId,
    CaseId,
    FiscalYear,
    AmountFen,
    ReceivingUnitName,
    BankName,
    BankAccount,
    VoucherNumber,
    State,
    BankReference,
    PaidDate,
    FailureReason,
    CreatedBy,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum FollowUps {
    Table,
    Id,
    DistrictId,
    CaseId,
    Sequence,
    DueDate,
    Done,
    DoneDate,
    Method,
    PetitionedAgain,
    Notes,
    RecordedBy,
    RecordedAt,
}

#[derive(DeriveIden)]
enum FiscalYearClosures {
    Table,
    DistrictId,
    FiscalYear,
    UnusedFen,
    ClosedBy,
    ClosedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Cases::Table)
                    .add_column(boolean(Cases::PetitionedAgain).default(false))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Payments::Table)
                    .col(string_len(Payments::Id, 36).primary_key())
                    .col(string_len(Payments::DistrictId, 6))
                    .col(string_len(Payments::CaseId, 36))
                    .col(integer(Payments::FiscalYear))
                    .col(big_integer(Payments::AmountFen))
                    .col(string_len(Payments::ReceivingUnitName, 200))
                    .col(string_len(Payments::BankName, 200))
                    .col(string_len(Payments::BankAccount, 64))
                    .col(string_len(Payments::VoucherNumber, 64))
                    .col(string_len(Payments::State, 8))
                    .col(string_len_null(Payments::BankReference, 64))
                    .col(string_len_null(Payments::PaidDate, 10))
                    .col(text_null(Payments::FailureReason))
                    .col(string_len(Payments::CreatedBy, 128))
                    .col(timestamp_with_time_zone(Payments::CreatedAt))
                    .col(timestamp_with_time_zone(Payments::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_payments_case")
                    .table(Payments::Table)
                    .col(Payments::DistrictId)
                    .col(Payments::CaseId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(FollowUps::Table)
                    .col(string_len(FollowUps::Id, 36).primary_key())
                    .col(string_len(FollowUps::DistrictId, 6))
                    .col(string_len(FollowUps::CaseId, 36))
                    .col(integer(FollowUps::Sequence))
                    .col(string_len(FollowUps::DueDate, 10))
                    .col(boolean(FollowUps::Done))
                    .col(string_len_null(FollowUps::DoneDate, 10))
                    .col(string_len_null(FollowUps::Method, 64))
                    .col(boolean(FollowUps::PetitionedAgain))
                    .col(text_null(FollowUps::Notes))
                    .col(string_len_null(FollowUps::RecordedBy, 128))
                    .col(timestamp_with_time_zone_null(FollowUps::RecordedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_follow_ups_due")
                    .table(FollowUps::Table)
                    .col(FollowUps::DistrictId)
                    .col(FollowUps::Done)
                    .col(FollowUps::DueDate)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(FiscalYearClosures::Table)
                    .col(string_len(FiscalYearClosures::DistrictId, 6))
                    .col(integer(FiscalYearClosures::FiscalYear))
                    .col(big_integer(FiscalYearClosures::UnusedFen))
                    .col(string_len(FiscalYearClosures::ClosedBy, 128))
                    .col(timestamp_with_time_zone(FiscalYearClosures::ClosedAt))
                    .primary_key(
                        Index::create()
                            .col(FiscalYearClosures::DistrictId)
                            .col(FiscalYearClosures::FiscalYear),
                    )
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for t in [
            FiscalYearClosures::Table.into_iden(),
            FollowUps::Table.into_iden(),
            Payments::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(t).to_owned())
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(Cases::Table)
                    .drop_column(Cases::PetitionedAgain)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }
}
