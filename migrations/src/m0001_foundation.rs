//! Districts, versioned fund rules, cases, the per-district event log and the request-id
//! table that makes retried mutations harmless.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Districts {
    Table,
    Id,
    Name,
    CurrentRulesVersion,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum RulesVersions {
    Table,
    DistrictId,
    Version,
    Rules,
    CreatedBy,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Cases {
    Table,
    Id,
    DistrictId,
    ApplicantUnitId,
    State,
    CurrentStepId,
    FiscalYear,
    CategoryCode,
    RecipientName,
    ResidentIdNumber,
    RequestedAmountFen,
    OverCap,
    RepeatRelief,
    RulesVersion,
    Version,
    Application,
    CreatedBy,
    CreatedAt,
    UpdatedAt,
    SubmittedAt,
}

#[derive(DeriveIden)]
enum Events {
    Table,
    Id,
    DistrictId,
    Seq,
    OccurredAtUs,
    ActorSubject,
    ActorName,
    ActorRole,
    OnBehalfOf,
    Action,
    ResourceType,
    ResourceId,
    RequestId,
    Note,
    BeforeJson,
    AfterJson,
    PrevHash,
    Hash,
}

#[derive(DeriveIden)]
enum RequestIds {
    Table,
    Scope,
    Subject,
    RequestId,
    Method,
    Fingerprint,
    Response,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Districts::Table)
                    .col(string_len(Districts::Id, 6).primary_key())
                    .col(string_len(Districts::Name, 64))
                    .col(big_integer(Districts::CurrentRulesVersion))
                    .col(timestamp_with_time_zone(Districts::CreatedAt))
                    .col(timestamp_with_time_zone(Districts::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(RulesVersions::Table)
                    .col(string_len(RulesVersions::DistrictId, 6))
                    .col(big_integer(RulesVersions::Version))
                    .col(text(RulesVersions::Rules))
                    .col(string_len(RulesVersions::CreatedBy, 128))
                    .col(timestamp_with_time_zone(RulesVersions::CreatedAt))
                    .primary_key(
                        Index::create()
                            .col(RulesVersions::DistrictId)
                            .col(RulesVersions::Version),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(RulesVersions::Table, RulesVersions::DistrictId)
                            .to(Districts::Table, Districts::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Cases::Table)
                    .col(string_len(Cases::Id, 36).primary_key())
                    .col(string_len(Cases::DistrictId, 6))
                    .col(string_len(Cases::ApplicantUnitId, 64))
                    .col(string_len(Cases::State, 16))
                    .col(string_len_null(Cases::CurrentStepId, 64))
                    .col(integer_null(Cases::FiscalYear))
                    .col(string_len_null(Cases::CategoryCode, 64))
                    .col(string_len(Cases::RecipientName, 64))
                    .col(string_len_null(Cases::ResidentIdNumber, 18))
                    .col(big_integer(Cases::RequestedAmountFen))
                    .col(boolean(Cases::OverCap))
                    .col(boolean(Cases::RepeatRelief))
                    .col(big_integer(Cases::RulesVersion))
                    .col(big_integer(Cases::Version))
                    .col(text(Cases::Application))
                    .col(string_len(Cases::CreatedBy, 128))
                    .col(timestamp_with_time_zone(Cases::CreatedAt))
                    .col(timestamp_with_time_zone(Cases::UpdatedAt))
                    .col(timestamp_with_time_zone_null(Cases::SubmittedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Cases::Table, Cases::DistrictId)
                            .to(Districts::Table, Districts::Id),
                    )
                    .to_owned(),
            )
            .await?;
        for (name, cols) in [
            ("idx_cases_district_id", vec![Cases::DistrictId, Cases::Id]),
            (
                "idx_cases_district_state",
                vec![Cases::DistrictId, Cases::State],
            ),
            (
                "idx_cases_district_unit",
                vec![Cases::DistrictId, Cases::ApplicantUnitId],
            ),
            (
                "idx_cases_district_recipient",
                vec![Cases::DistrictId, Cases::ResidentIdNumber],
            ),
        ] {
            let mut idx = Index::create();
            idx.name(name).table(Cases::Table);
            for c in cols {
                idx.col(c);
            }
            manager.create_index(idx.to_owned()).await?;
        }
        manager
            .create_table(
                Table::create()
                    .table(Events::Table)
                    .col(big_pk_auto(Events::Id))
                    .col(string_len(Events::DistrictId, 6))
                    .col(big_integer(Events::Seq))
                    .col(big_integer(Events::OccurredAtUs))
                    .col(string_len(Events::ActorSubject, 128))
                    .col(string_len(Events::ActorName, 64))
                    .col(string_len(Events::ActorRole, 32))
                    .col(string_len_null(Events::OnBehalfOf, 128))
                    .col(string_len(Events::Action, 64))
                    .col(string_len(Events::ResourceType, 32))
                    .col(string_len(Events::ResourceId, 64))
                    .col(string_len_null(Events::RequestId, 64))
                    .col(text_null(Events::Note))
                    .col(text_null(Events::BeforeJson))
                    .col(text_null(Events::AfterJson))
                    .col(string_len(Events::PrevHash, 64))
                    .col(string_len(Events::Hash, 64))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("uq_events_district_seq")
                    .table(Events::Table)
                    .col(Events::DistrictId)
                    .col(Events::Seq)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_events_resource")
                    .table(Events::Table)
                    .col(Events::DistrictId)
                    .col(Events::ResourceId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(RequestIds::Table)
                    .col(string_len(RequestIds::Scope, 8))
                    .col(string_len(RequestIds::Subject, 128))
                    .col(string_len(RequestIds::RequestId, 64))
                    .col(string_len(RequestIds::Method, 64))
                    .col(string_len(RequestIds::Fingerprint, 64))
                    .col(blob(RequestIds::Response))
                    .col(timestamp_with_time_zone(RequestIds::CreatedAt))
                    .primary_key(
                        Index::create()
                            .col(RequestIds::Scope)
                            .col(RequestIds::Subject)
                            .col(RequestIds::RequestId),
                    )
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for t in [
            RequestIds::Table.into_iden(),
            Events::Table.into_iden(),
            Cases::Table.into_iden(),
            RulesVersions::Table.into_iden(),
            Districts::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(t).to_owned())
                .await?;
        }
        Ok(())
    }
}
