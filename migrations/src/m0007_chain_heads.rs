//! The audit chain's head outside the events table, so that removing a district's last events
//! is detectable and a removed event's seq is never handed out again; when each district was
//! last checkpointed; from which ledger entry on every entry has an audit event of its own;
//! and the audit signing key generated where none is configured.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The hash before a district's first event (`relief_domain::audit::GENESIS_HASH`).
const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(DeriveIden)]
enum Districts {
    Table,
    ChainHeadSeq,
    ChainHeadHash,
    CheckpointSeq,
    CheckpointAtUs,
    LedgerAuditedAfterId,
}

#[derive(DeriveIden)]
enum AuditKeys {
    Table,
    Name,
    KeyId,
    SecretHex,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one thing at a time.
        for col in [
            big_integer(Districts::ChainHeadSeq)
                .default(0i64)
                .to_owned(),
            string_len(Districts::ChainHeadHash, 64)
                .default(GENESIS_HASH)
                .to_owned(),
            big_integer(Districts::CheckpointSeq)
                .default(0i64)
                .to_owned(),
            big_integer(Districts::CheckpointAtUs)
                .default(0i64)
                .to_owned(),
            big_integer(Districts::LedgerAuditedAfterId)
                .default(0i64)
                .to_owned(),
        ] {
            let mut col = col;
            manager
                .alter_table(
                    Table::alter()
                        .table(Districts::Table)
                        .add_column(&mut col)
                        .to_owned(),
                )
                .await?;
        }
        // The head is taken from the events as they are now: what the chain holds at the
        // upgrade is what later verifications are held to. Entries written before this point
        // have no audit event of their own.
        manager
            .get_connection()
            .execute_unprepared(&format!(
                "UPDATE districts SET \
                 chain_head_seq = COALESCE((SELECT MAX(e.seq) FROM events e WHERE e.district_id = districts.id), 0), \
                 chain_head_hash = COALESCE((SELECT e.hash FROM events e WHERE e.district_id = districts.id ORDER BY e.seq DESC LIMIT 1), '{GENESIS_HASH}'), \
                 checkpoint_at_us = COALESCE((SELECT MAX(e.occurred_at_us) FROM events e WHERE e.district_id = districts.id), 0), \
                 ledger_audited_after_id = COALESCE((SELECT MAX(l.id) FROM ledger_entries l), 0)"
            ))
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AuditKeys::Table)
                    .col(string_len(AuditKeys::Name, 32).primary_key())
                    .col(string_len(AuditKeys::KeyId, 16))
                    .col(string_len(AuditKeys::SecretHex, 64))
                    .col(timestamp_with_time_zone(AuditKeys::CreatedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(AuditKeys::Table).to_owned())
            .await?;
        for col in [
            Districts::LedgerAuditedAfterId,
            Districts::CheckpointAtUs,
            Districts::CheckpointSeq,
            Districts::ChainHeadHash,
            Districts::ChainHeadSeq,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Districts::Table)
                        .drop_column(col)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
