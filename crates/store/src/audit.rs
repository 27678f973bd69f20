//! The audit chain read back in bounded batches and held to the head stored on the district's
//! row, the audit key generated where none is configured, and the audit events of ledger
//! entries, which ledger verification compares with the entries.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use relief_domain::audit::{AuditSigner, ChainBreak, ChainWalker, CheckpointPolicy};
use relief_domain::ledger::{ENTRY_RESOURCE, RecordedEntry};
use relief_domain::{DistrictId, Role, Subject};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use crate::entity::{audit_key, district, event};
use crate::error::{Error, Result};
use crate::{Actor, Store};

/// Events read per batch when the chain is verified: what one verification holds in memory,
/// whatever the length of the district's history.
const VERIFY_BATCH_EVENTS: u64 = 256;
/// Ledger entries whose events are looked up in one query.
const ENTRY_EVENTS_BATCH: usize = 500;

/// How the server signs checkpoints of every district's chain.
#[derive(Debug, Clone)]
pub struct ChainAudit {
    /// None: no checkpoints are signed.
    pub signer: Option<AuditSigner>,
    /// The key was generated and is kept in the database, not read from a file.
    pub generated: bool,
    pub policy: CheckpointPolicy,
}

impl Default for ChainAudit {
    fn default() -> Self {
        Self {
            signer: None,
            generated: false,
            policy: CheckpointPolicy {
                every_events: 1_000,
                every_us: 3_600_000_000,
            },
        }
    }
}

/// A point of the chain a caller kept (from a checkpoint or an earlier read): the chain must
/// still pass through it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerCheckpoint {
    pub seq: i64,
    pub hash: String,
}

/// The outcome of recomputing a district's audit chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    /// Events that matched before the first break (all of them when intact).
    pub events_checked: u64,
    pub first_break: Option<ChainBreak>,
    /// The head stored on the district's row when verification started.
    pub head_seq: i64,
    pub head_hash: String,
    /// Checkpoints whose signatures verified with the server's key, and those signed with
    /// another key (one the server no longer holds).
    pub checkpoints_verified: u64,
    pub checkpoints_other_key: u64,
}

/// What a ledger entry's audit events recorded, by entry id.
pub type LedgerAuditRecord = HashMap<i64, Vec<Option<RecordedEntry>>>;

impl Store {
    async fn chain_head(&self, district: &DistrictId) -> Result<(i64, String)> {
        district::Entity::find_by_id(district.to_string())
            .select_only()
            .column(district::Column::ChainHeadSeq)
            .column(district::Column::ChainHeadHash)
            .into_tuple::<(i64, String)>()
            .one(&self.db)
            .await?
            .ok_or(Error::NotFound("district"))
    }

    /// Recomputes the district's hash chain from the stored events, `VERIFY_BATCH_EVENTS`
    /// at a time in seq order, and holds it to the head stored on the district's row, to the
    /// signatures of its checkpoints and to the caller's checkpoint, if any.
    ///
    /// The report names the first event whose seq, link, content or checkpoint signature
    /// does not match, a chain that ends before its head (a removed tail), or one that does
    /// not pass through the caller's checkpoint. Last, the largest seq is compared with the
    /// head read again: a seq above it was written around the write path. Checkpoints signed
    /// with another key (one the server held before) are counted apart, not checked.
    ///
    /// What this protects: editing, removing or inserting events is found from the chain and
    /// its head. Whoever can write the database can still rewrite the chain from some point
    /// and move the head to match; a checkpoint kept outside relief catches that, by its seq
    /// and hash and, with a key file kept out of the database, by its signature.
    pub async fn verify_audit_chain(
        &self,
        district: &DistrictId,
        claim: Option<&CallerCheckpoint>,
    ) -> Result<ChainReport> {
        let (head_seq, head_hash) = self.chain_head(district).await?;
        let keys = self
            .audit
            .signer
            .iter()
            .map(|s| s.public_key().clone())
            .collect();
        let mut walker = ChainWalker::new(keys, claim.map(|c| (c.seq, c.hash.clone())));
        let mut report = ChainReport {
            events_checked: 0,
            first_break: None,
            head_seq,
            head_hash: head_hash.clone(),
            checkpoints_verified: 0,
            checkpoints_other_key: 0,
        };
        let mut after = 0;
        loop {
            // Events past the head read above are later commits, looked at below.
            let batch = event::Entity::find()
                .filter(event::Column::DistrictId.eq(district.as_str()))
                .filter(event::Column::Seq.gt(after))
                .filter(event::Column::Seq.lte(head_seq))
                .order_by_asc(event::Column::Seq)
                .limit(VERIFY_BATCH_EVENTS)
                .all(&self.db)
                .await?;
            let Some(last) = batch.last().map(|e| e.seq) else {
                break;
            };
            for e in &batch {
                if let Err(b) = walker.push(e) {
                    report.events_checked = walker.checked();
                    report.first_break = Some(b);
                    return Ok(report);
                }
            }
            if (batch.len() as u64) < VERIFY_BATCH_EVENTS {
                break;
            }
            after = last;
        }
        report.events_checked = walker.checked();
        match walker.finish(head_seq, &head_hash) {
            Ok(s) => {
                report.checkpoints_verified = s.checkpoints_verified;
                report.checkpoints_other_key = s.checkpoints_other_key;
            }
            Err(b) => {
                report.first_break = Some(b);
                return Ok(report);
            }
        }
        // An event past the head: every commit moves the head with its events, so once the
        // largest seq has been read, a head read after it covers it, unless the event was
        // written around the write path.
        let largest: Option<i64> = event::Entity::find()
            .select_only()
            .column_as(event::Column::Seq.max(), "largest")
            .filter(event::Column::DistrictId.eq(district.as_str()))
            .into_tuple::<Option<i64>>()
            .one(&self.db)
            .await?
            .flatten();
        let (now_seq, _) = self.chain_head(district).await?;
        if let Some(largest) = largest
            && largest > now_seq
        {
            report.first_break = Some(ChainBreak {
                seq: now_seq.saturating_add(1),
                reason: "events after the stored chain head",
            });
        }
        Ok(report)
    }

    /// Signs a checkpoint of every district whose newest events are not covered by one and
    /// whose last checkpoint is older than the interval, so an idle district's last events
    /// are checkpointed too. Returns how many were signed.
    pub async fn checkpoint_idle_districts(&self, now: DateTime<Utc>) -> Result<u64> {
        if self.audit.signer.is_none() {
            return Ok(0);
        }
        let cutoff_us = now
            .timestamp_micros()
            .saturating_sub(self.audit.policy.every_us);
        let idle: Vec<String> = district::Entity::find()
            .select_only()
            .column(district::Column::Id)
            .filter(
                Expr::col(district::Column::ChainHeadSeq)
                    .gt(Expr::col(district::Column::CheckpointSeq)),
            )
            .filter(district::Column::CheckpointAtUs.lte(cutoff_us))
            .order_by_asc(district::Column::Id)
            .into_tuple()
            .all(&self.db)
            .await?;
        let mut signed = 0;
        for id in idle {
            let id = DistrictId::parse(&id).map_err(|e| Error::corrupt("district id", e))?;
            let mut tx = self
                .begin_write(Some(&id), system_actor()?, None, now)
                .await?;
            tx.checkpoint_if_due().await?;
            tx.commit(None).await?;
            signed += 1;
        }
        Ok(signed)
    }

    /// The audit key generated for this database, made on first use: for a server with no
    /// key file. Whoever can read the database can sign with it.
    pub async fn generated_audit_key(&self, now: DateTime<Utc>) -> Result<AuditSigner> {
        if let Some(k) = self.stored_audit_key().await? {
            return Ok(k);
        }
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| Error::corrupt("audit key", e))?;
        let signer = AuditSigner::from_seed(&seed);
        let row = audit_key::Model {
            name: GENERATED.to_owned(),
            key_id: signer.public_key().key_id().to_owned(),
            secret_hex: hex::encode(seed),
            created_at: now,
        };
        // Two servers starting at once: the first key stored is the one both use.
        audit_key::Entity::insert(sea_orm::IntoActiveModel::into_active_model(row))
            .on_conflict_do_nothing_on([audit_key::Column::Name])
            .exec(&self.db)
            .await?;
        self.stored_audit_key()
            .await?
            .ok_or_else(|| Error::corrupt("audit key", "not stored"))
    }

    async fn stored_audit_key(&self) -> Result<Option<AuditSigner>> {
        let Some(row) = audit_key::Entity::find_by_id(GENERATED.to_owned())
            .one(&self.db)
            .await?
        else {
            return Ok(None);
        };
        let seed: [u8; 32] = hex::decode(&row.secret_hex)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| Error::corrupt("audit key", "secret is not 64 hex digits"))?;
        Ok(Some(AuditSigner::from_seed(&seed)))
    }

    /// Ledger entries of the district with an id up to this one were written before entries
    /// had audit events of their own.
    pub async fn ledger_audited_after(&self, district: &DistrictId) -> Result<i64> {
        district::Entity::find_by_id(district.to_string())
            .select_only()
            .column(district::Column::LedgerAuditedAfterId)
            .into_tuple::<i64>()
            .one(&self.db)
            .await?
            .ok_or(Error::NotFound("district"))
    }

    /// What the audit events of these ledger entries of the district recorded (`None` for a
    /// state that is not readable); an entry with no event has no key.
    pub async fn ledger_entry_events(
        &self,
        district: &DistrictId,
        entry_ids: &[i64],
    ) -> Result<LedgerAuditRecord> {
        let mut out = LedgerAuditRecord::new();
        for part in entry_ids.chunks(ENTRY_EVENTS_BATCH) {
            let rows: Vec<(String, Option<String>)> = event::Entity::find()
                .select_only()
                .column(event::Column::ResourceId)
                .column(event::Column::AfterJson)
                .filter(event::Column::DistrictId.eq(district.as_str()))
                .filter(event::Column::ResourceType.eq(ENTRY_RESOURCE))
                .filter(event::Column::ResourceId.is_in(part.iter().map(ToString::to_string)))
                .into_tuple()
                .all(&self.db)
                .await?;
            for (id, after) in rows {
                let Ok(id) = id.parse::<i64>() else { continue };
                let recorded = after.and_then(|j| serde_json::from_str(&j).ok());
                out.entry(id).or_default().push(recorded);
            }
        }
        Ok(out)
    }
}

/// Whom the server's own writes (the idle districts' checkpoints) are opened as; the
/// checkpoint events themselves name the server.
fn system_actor() -> Result<Actor> {
    Ok(Actor {
        subject: Subject::parse("reliefd").map_err(|e| Error::corrupt("system subject", e))?,
        name: "relief audit".to_owned(),
        role: Role::CityAdmin,
        on_behalf_of: None,
    })
}

/// The name of the generated key's row.
const GENERATED: &str = "generated";
