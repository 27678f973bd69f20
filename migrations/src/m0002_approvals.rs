//! Approval decisions, delegations, party-group meetings and the fund ledger.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Cases {
    Table,
    DistrictId,
    ApprovedAmountFen,
    CurrentStepRole,
    StepEnteredAt,
    StepDeadlineAt,
}

#[derive(DeriveIden)]
enum Decisions {
    Table,
    Id,
    DistrictId,
    CaseId,
    StepId,
    StepName,
    Decision,
    ActorSubject,
    ActorName,
    ActorRole,
    OnBehalfOf,
    Opinion,
    AmountBeforeFen,
    AmountAfterFen,
    OverCap,
    OverCapJustification,
    MeetingId,
    ReturnToStepId,
    DecidedAt,
}

#[derive(DeriveIden)]
enum Delegations {
    Table,
    Id,
    DistrictId,
    DelegatorSubject,
    DelegatorName,
    DelegateSubject,
    Role,
    StartsAt,
    EndsAt,
    RevokedAt,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Meetings {
    Table,
    Id,
    DistrictId,
    MeetingDate,
    Attendees,
    MinutesReference,
    State,
    OpenedBy,
    OpenedAt,
    ClosedAt,
}

#[derive(DeriveIden)]
enum MeetingItems {
    Table,
    MeetingId,
    CaseId,
    DistrictId,
    Position,
    Decision,
    ApprovedAmountFen,
    ReturnToStepId,
    Opinion,
}

#[derive(DeriveIden)]
enum LedgerEntries {
    Table,
    Id,
    DistrictId,
    FiscalYear,
    CaseId,
    Kind,
    AmountFen,
    ActorSubject,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one thing at a time.
        for col in [
            big_integer_null(Cases::ApprovedAmountFen),
            string_len_null(Cases::CurrentStepRole, 32),
            timestamp_with_time_zone_null(Cases::StepEnteredAt),
            timestamp_with_time_zone_null(Cases::StepDeadlineAt),
        ] {
            let mut col = col;
            manager
                .alter_table(
                    Table::alter()
                        .table(Cases::Table)
                        .add_column(&mut col)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_index(
                Index::create()
                    .name("idx_cases_district_step_role")
                    .table(Cases::Table)
                    .col(Cases::DistrictId)
                    .col(Cases::CurrentStepRole)
                    .col(Cases::StepEnteredAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_cases_district_deadline")
                    .table(Cases::Table)
                    .col(Cases::DistrictId)
                    .col(Cases::StepDeadlineAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Decisions::Table)
                    .col(string_len(Decisions::Id, 36).primary_key())
                    .col(string_len(Decisions::DistrictId, 6))
                    .col(string_len(Decisions::CaseId, 36))
                    .col(string_len(Decisions::StepId, 64))
                    .col(string_len(Decisions::StepName, 64))
                    .col(string_len(Decisions::Decision, 16))
                    .col(string_len(Decisions::ActorSubject, 128))
                    .col(string_len(Decisions::ActorName, 128))
                    .col(string_len(Decisions::ActorRole, 32))
                    .col(string_len_null(Decisions::OnBehalfOf, 128))
                    .col(text(Decisions::Opinion))
                    .col(big_integer(Decisions::AmountBeforeFen))
                    .col(big_integer(Decisions::AmountAfterFen))
                    .col(boolean(Decisions::OverCap))
                    .col(text(Decisions::OverCapJustification))
                    .col(string_len_null(Decisions::MeetingId, 36))
                    .col(string_len_null(Decisions::ReturnToStepId, 64))
                    .col(timestamp_with_time_zone(Decisions::DecidedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_decisions_case")
                    .table(Decisions::Table)
                    .col(Decisions::DistrictId)
                    .col(Decisions::CaseId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Delegations::Table)
                    .col(string_len(Delegations::Id, 36).primary_key())
                    .col(string_len(Delegations::DistrictId, 6))
                    .col(string_len(Delegations::DelegatorSubject, 128))
                    .col(string_len(Delegations::DelegatorName, 128))
                    .col(string_len(Delegations::DelegateSubject, 128))
                    .col(string_len(Delegations::Role, 32))
                    .col(timestamp_with_time_zone(Delegations::StartsAt))
                    .col(timestamp_with_time_zone(Delegations::EndsAt))
                    .col(timestamp_with_time_zone_null(Delegations::RevokedAt))
                    .col(timestamp_with_time_zone(Delegations::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_delegations_delegate")
                    .table(Delegations::Table)
                    .col(Delegations::DistrictId)
                    .col(Delegations::DelegateSubject)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Meetings::Table)
                    .col(string_len(Meetings::Id, 36).primary_key())
                    .col(string_len(Meetings::DistrictId, 6))
                    .col(string_len(Meetings::MeetingDate, 10))
                    .col(text(Meetings::Attendees))
                    .col(string_len(Meetings::MinutesReference, 200))
                    .col(string_len(Meetings::State, 8))
                    .col(string_len(Meetings::OpenedBy, 128))
                    .col(timestamp_with_time_zone(Meetings::OpenedAt))
                    .col(timestamp_with_time_zone_null(Meetings::ClosedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(MeetingItems::Table)
                    .col(string_len(MeetingItems::MeetingId, 36))
                    .col(string_len(MeetingItems::CaseId, 36))
                    .col(string_len(MeetingItems::DistrictId, 6))
                    .col(integer(MeetingItems::Position))
                    .col(string_len_null(MeetingItems::Decision, 16))
                    .col(big_integer_null(MeetingItems::ApprovedAmountFen))
                    .col(string_len_null(MeetingItems::ReturnToStepId, 64))
                    .col(text_null(MeetingItems::Opinion))
                    .primary_key(
                        Index::create()
                            .col(MeetingItems::MeetingId)
                            .col(MeetingItems::CaseId),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_meeting_items_case")
                    .table(MeetingItems::Table)
                    .col(MeetingItems::DistrictId)
                    .col(MeetingItems::CaseId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(LedgerEntries::Table)
                    .col(big_pk_auto(LedgerEntries::Id))
                    .col(string_len(LedgerEntries::DistrictId, 6))
                    .col(integer(LedgerEntries::FiscalYear))
                    .col(string_len_null(LedgerEntries::CaseId, 36))
                    .col(string_len(LedgerEntries::Kind, 16))
                    .col(big_integer(LedgerEntries::AmountFen))
                    .col(string_len(LedgerEntries::ActorSubject, 128))
                    .col(timestamp_with_time_zone(LedgerEntries::CreatedAt))
                    .to_owned(),
            )
            .await?;
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
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for t in [
            LedgerEntries::Table.into_iden(),
            MeetingItems::Table.into_iden(),
            Meetings::Table.into_iden(),
            Delegations::Table.into_iden(),
            Decisions::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(t).to_owned())
                .await?;
        }
        Ok(())
    }
}
