//! The one write path: a transaction that serializes writers of a district, collects the
//! change's audit events and its idempotent response, and commits them with the change,
//! moving the district's stored chain head (and signing a checkpoint when one is due) in
//! the same transaction.

use chrono::{DateTime, SubsecRound, Utc};
use relief_domain::DistrictId;
use relief_domain::audit::{CHECKPOINT_ACTION, CHECKPOINT_RESOURCE, EventFields, chain_hash};
use sea_orm::sea_query::{Expr, LockType};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait, IntoActiveModel,
    QueryFilter, QuerySelect, Set, SqliteTransactionMode, TransactionOptions, TransactionTrait,
};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use tokio::sync::OwnedMutexGuard;

use crate::entity::{district, event, request_id};
use crate::error::{Error, Result};
use crate::records::Actor;
use crate::rules_cache::RulesVersions;
use crate::{ChainAudit, Store};

/// Who asked for a mutation and under which request id: a second call with the same key
/// returns the first call's response.
#[derive(Debug, Clone)]
pub struct IdempotencyKey {
    /// The district, or `city` for city-wide mutations.
    pub scope: String,
    pub subject: String,
    pub request_id: String,
    pub method: &'static str,
    /// SHA-256 of the method and the encoded request.
    pub fingerprint: String,
}

impl IdempotencyKey {
    pub fn new(
        scope: &str,
        subject: &str,
        request_id: &str,
        method: &'static str,
        request_bytes: &[u8],
    ) -> Self {
        let mut h = Sha256::new();
        h.update(method.as_bytes());
        h.update([0]);
        h.update(request_bytes);
        let fingerprint = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        Self {
            scope: scope.to_owned(),
            subject: subject.to_owned(),
            request_id: request_id.to_owned(),
            method,
            fingerprint,
        }
    }
}

struct PendingEvent {
    district_id: String,
    /// The server's own events (checkpoints) carry no actor or request id of the caller's.
    system: bool,
    action: &'static str,
    resource_type: &'static str,
    resource_id: String,
    note: Option<String>,
    before_json: Option<String>,
    after_json: Option<String>,
}

/// An open write. Dropping it without [`WriteTx::commit`] rolls everything back.
pub struct WriteTx {
    txn: DatabaseTransaction,
    _writer: Option<OwnedMutexGuard<()>>,
    /// The district whose writers this transaction queues behind, and whether it does yet.
    district: Option<DistrictId>,
    locked: AtomicBool,
    /// The district's chain head as read with its lock: nobody else moves it before commit.
    head: OnceLock<ChainHead>,
    /// Sign a checkpoint of the locked district at commit if one is due, even with no
    /// event of its own.
    checkpoint_if_due: bool,
    audit: Arc<ChainAudit>,
    committed: Arc<tokio::sync::Notify>,
    request_id_retention: chrono::Duration,
    pub(crate) rules_versions: Arc<RulesVersions>,
    actor: Actor,
    request_id: Option<String>,
    now: DateTime<Utc>,
    events: Vec<PendingEvent>,
}

impl std::fmt::Debug for WriteTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteTx")
            .field("actor", &self.actor)
            .field("events", &self.events.len())
            .finish()
    }
}

impl Store {
    /// Opens a write for `actor`. With a district, writers of that district queue behind
    /// each other (its row is locked on PostgreSQL) from the first statement that needs it:
    /// every write, every read of district-wide state, and the commit. Only the reads that
    /// an optimistic change re-checks at its write ([`WriteTx::replay`],
    /// [`WriteTx::case_optimistic`], [`WriteTx::rules_version`],
    /// [`WriteTx::decisions_for_case`]) and the insert of a decision run before it. A district that does not exist is
    /// `NotFound` at that point. `now` is truncated to microseconds, the precision both
    /// databases keep.
    pub async fn begin_write(
        &self,
        district: Option<&DistrictId>,
        actor: Actor,
        request_id: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<WriteTx> {
        let writer = match &self.sqlite_writer {
            Some(m) => Some(m.clone().lock_owned().await),
            None => None,
        };
        let txn = self
            .db
            .begin_with_options(TransactionOptions {
                sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                ..Default::default()
            })
            .await?;
        Ok(WriteTx {
            txn,
            _writer: writer,
            district: district.cloned(),
            locked: AtomicBool::new(false),
            head: OnceLock::new(),
            checkpoint_if_due: false,
            audit: self.audit.clone(),
            committed: self.committed.clone(),
            request_id_retention: self.request_id_retention,
            rules_versions: self.rules_versions.clone(),
            actor,
            request_id,
            now: now.trunc_subsecs(6),
            events: Vec::new(),
        })
    }
}

/// Deletes the request ids stored before `cutoff`.
pub(crate) async fn purge_request_ids(
    db: &sea_orm::DatabaseConnection,
    cutoff: DateTime<Utc>,
) -> Result<u64> {
    let done = request_id::Entity::delete_many()
        .filter(request_id::Column::CreatedAt.lt(cutoff))
        .exec(db)
        .await?;
    Ok(done.rows_affected)
}

/// Who the server's own events (checkpoints) are attributed to.
const SYSTEM_SUBJECT: &str = "reliefd";
const SYSTEM_NAME: &str = "relief audit";
const SYSTEM_ROLE: &str = "system";

/// A district's chain head and last checkpoint, as stored on its row.
#[derive(Debug, Clone)]
pub(crate) struct ChainHead {
    pub(crate) seq: i64,
    pub(crate) hash: String,
    pub(crate) checkpoint_seq: i64,
    pub(crate) checkpoint_at_us: i64,
}

/// Reads the district's chain head, locking its row on PostgreSQL (SQLite's writers are
/// already one at a time); `None` when the district does not exist.
async fn read_head(txn: &DatabaseTransaction, district_id: &str) -> Result<Option<ChainHead>> {
    let mut q = district::Entity::find_by_id(district_id.to_owned())
        .select_only()
        .column(district::Column::ChainHeadSeq)
        .column(district::Column::ChainHeadHash)
        .column(district::Column::CheckpointSeq)
        .column(district::Column::CheckpointAtUs);
    if txn.get_database_backend() == DbBackend::Postgres {
        q = q.lock(LockType::Update);
    }
    Ok(q.into_tuple::<(i64, String, i64, i64)>()
        .one(txn)
        .await?
        .map(|(seq, hash, checkpoint_seq, checkpoint_at_us)| ChainHead {
            seq,
            hash,
            checkpoint_seq,
            checkpoint_at_us,
        }))
}

pub(crate) fn to_json<T: Serialize>(what: &'static str, v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::corrupt(what, e))
}

impl WriteTx {
    /// Queues behind the district's other writers (once), and checks the district exists.
    /// The row it locks holds the chain head, which is read in the same statement.
    pub async fn lock(&self) -> Result<()> {
        let Some(d) = &self.district else {
            return Ok(());
        };
        if self.locked.load(Ordering::Acquire) {
            return Ok(());
        }
        let head = read_head(&self.txn, d.as_str())
            .await?
            .ok_or(Error::NotFound("district"))?;
        let _ = self.head.set(head);
        self.locked.store(true, Ordering::Release);
        Ok(())
    }

    /// The transaction, once the district's writers are serialized behind this one.
    pub(crate) async fn conn(&self) -> Result<&DatabaseTransaction> {
        self.lock().await?;
        Ok(&self.txn)
    }

    /// The transaction before any lock: only for reads that the change re-checks when it
    /// writes (a case's version) or that never change (rules versions, decisions, which
    /// are only written together with their case), and for inserting rows no other writer
    /// can touch (a decision under a fresh id).
    pub(crate) fn unlocked(&self) -> &DatabaseTransaction {
        &self.txn
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.now
    }

    pub fn actor(&self) -> &Actor {
        &self.actor
    }

    /// Changes who the write is attributed to, once the step decided tells in which role
    /// (and on whose behalf) the caller acts. Events are stamped at commit.
    pub fn act_as(&mut self, actor: Actor) {
        self.actor = actor;
    }

    /// The stored response of an earlier call with this key, if any. The same request id
    /// with a different request is [`Error::RequestIdReused`].
    pub async fn replay(&self, key: &IdempotencyKey) -> Result<Option<Vec<u8>>> {
        let found = request_id::Entity::find_by_id((
            key.scope.clone(),
            key.subject.clone(),
            key.request_id.clone(),
        ))
        .one(self.unlocked())
        .await?;
        match found {
            None => Ok(None),
            // Past the retention the id is forgotten, as the purge would have done.
            Some(row) if row.created_at < self.now - self.request_id_retention => {
                request_id::Entity::delete_by_id((row.scope, row.subject, row.request_id))
                    .exec(self.conn().await?)
                    .await?;
                Ok(None)
            }
            Some(row) if row.method == key.method && row.fingerprint == key.fingerprint => {
                Ok(Some(row.response))
            }
            Some(_) => Err(Error::RequestIdReused),
        }
    }

    /// Queues an audit event; it is chained and written at commit.
    pub fn record<B: Serialize, A: Serialize>(
        &mut self,
        district: &DistrictId,
        action: &'static str,
        resource_type: &'static str,
        resource_id: &str,
        before: Option<&B>,
        after: Option<&A>,
    ) -> Result<()> {
        self.record_with_note(
            district,
            action,
            resource_type,
            resource_id,
            None,
            before,
            after,
        )
    }

    /// [`WriteTx::record`] with the person's written opinion or reason.
    #[allow(clippy::too_many_arguments)]
    pub fn record_with_note<B: Serialize, A: Serialize>(
        &mut self,
        district: &DistrictId,
        action: &'static str,
        resource_type: &'static str,
        resource_id: &str,
        note: Option<&str>,
        before: Option<&B>,
        after: Option<&A>,
    ) -> Result<()> {
        self.events.push(PendingEvent {
            district_id: district.to_string(),
            system: false,
            action,
            resource_type,
            resource_id: resource_id.to_owned(),
            note: note.map(str::to_owned),
            before_json: before.map(|b| to_json("event", b)).transpose()?,
            after_json: after.map(|a| to_json("event", a)).transpose()?,
        });
        Ok(())
    }

    /// Writes the queued events, the idempotent response, and commits. Each district's
    /// events continue its stored chain head, never the largest seq found among its events,
    /// so a removed event's seq is never handed out again; the head (and, when one is due, a
    /// signed checkpoint) moves with one `UPDATE` of the district row.
    pub async fn commit(mut self, response: Option<(&IdempotencyKey, Vec<u8>)>) -> Result<()> {
        // The chain's next link and the request id are taken in the district's queue.
        self.lock().await?;
        let events = std::mem::take(&mut self.events);
        let mut heads: Vec<(String, ChainHead, ChainHead)> = Vec::new();
        let now_us = self.now.timestamp_micros();
        for e in events {
            let n = match heads.iter().position(|h| h.0 == e.district_id) {
                Some(n) => n,
                None => {
                    let head = match (&self.district, self.head.get()) {
                        (Some(d), Some(h)) if d.as_str() == e.district_id => h.clone(),
                        // A district this transaction did not lock (one it creates).
                        _ => read_head(&self.txn, &e.district_id)
                            .await?
                            .ok_or(Error::NotFound("district"))?,
                    };
                    heads.push((e.district_id.clone(), head.clone(), head));
                    heads.len() - 1
                }
            };
            let Some((_, _, head)) = heads.get_mut(n) else {
                continue;
            };
            self.append(head, e, now_us).await?;
        }
        if self.checkpoint_if_due
            && let (Some(d), Some(h)) = (&self.district, self.head.get())
            && !heads.iter().any(|x| x.0 == d.as_str())
        {
            heads.push((d.to_string(), h.clone(), h.clone()));
        }
        for (district_id, before, mut head) in heads {
            if let Some(signer) = &self.audit.signer
                && self.audit.policy.due(
                    head.seq,
                    now_us,
                    head.checkpoint_seq,
                    head.checkpoint_at_us,
                )
            {
                let c = signer.sign(&district_id, head.seq, &head.hash, now_us);
                let covered = head.seq;
                let pending = PendingEvent {
                    district_id: district_id.clone(),
                    system: true,
                    action: CHECKPOINT_ACTION,
                    resource_type: CHECKPOINT_RESOURCE,
                    resource_id: covered.to_string(),
                    note: None,
                    before_json: None,
                    after_json: Some(to_json("checkpoint", &c)?),
                };
                self.append(&mut head, pending, now_us).await?;
                // Counted from the checkpoint itself, which needs no checkpoint of its own.
                head.checkpoint_seq = head.seq;
                head.checkpoint_at_us = now_us;
                tracing::debug!(district = %district_id, seq = covered, key_id = %c.key_id, "audit checkpoint signed");
            }
            if head.seq == before.seq {
                continue;
            }
            let moved = district::Entity::update_many()
                .col_expr(district::Column::ChainHeadSeq, Expr::value(head.seq))
                .col_expr(district::Column::ChainHeadHash, Expr::value(head.hash))
                .col_expr(
                    district::Column::CheckpointSeq,
                    Expr::value(head.checkpoint_seq),
                )
                .col_expr(
                    district::Column::CheckpointAtUs,
                    Expr::value(head.checkpoint_at_us),
                )
                .filter(district::Column::Id.eq(district_id.as_str()))
                .filter(district::Column::ChainHeadSeq.eq(before.seq))
                .exec(&self.txn)
                .await?;
            if moved.rows_affected != 1 {
                // Another writer moved the head since it was read: nothing of this commits.
                return Err(Error::Conflict("audit chain head"));
            }
        }
        if let Some((key, bytes)) = response {
            let row = request_id::Model {
                scope: key.scope.clone(),
                subject: key.subject.clone(),
                request_id: key.request_id.clone(),
                method: key.method.to_owned(),
                fingerprint: key.fingerprint.clone(),
                response: bytes,
                created_at: self.now,
            };
            request_id::Entity::insert(row.into_active_model())
                .exec(&self.txn)
                .await
                .map_err(|e| match Error::on_insert(e, "request_id") {
                    // The same request, applied by a concurrent call since this one looked.
                    Error::AlreadyExists(_) => Error::Conflict("request_id"),
                    other => other,
                })?;
        }
        self.txn.commit().await?;
        self.committed.notify_waiters();
        Ok(())
    }

    /// Asks the commit to sign a checkpoint of the district when one is due, even if the
    /// write records nothing else: for districts whose last events are older than the
    /// checkpoint interval.
    pub async fn checkpoint_if_due(&mut self) -> Result<()> {
        self.lock().await?;
        self.checkpoint_if_due = true;
        Ok(())
    }

    /// Chains one event after `head` and inserts it.
    async fn append(
        &self,
        head: &mut ChainHead,
        e: PendingEvent,
        occurred_at_us: i64,
    ) -> Result<()> {
        let seq = head
            .seq
            .checked_add(1)
            .ok_or_else(|| Error::corrupt("audit chain head", "seq out of range"))?;
        let (subject, name, role, on_behalf_of, request_id) = if e.system {
            (SYSTEM_SUBJECT, SYSTEM_NAME, SYSTEM_ROLE, None, None)
        } else {
            (
                self.actor.subject.as_str(),
                self.actor.name.as_str(),
                self.actor.role.as_str(),
                self.actor.on_behalf_of.as_ref().map(ToString::to_string),
                self.request_id.clone(),
            )
        };
        let fields = EventFields {
            district_id: &e.district_id,
            seq,
            occurred_at_us,
            actor_subject: subject,
            actor_name: name,
            actor_role: role,
            on_behalf_of: on_behalf_of.as_deref(),
            action: e.action,
            resource_type: e.resource_type,
            resource_id: &e.resource_id,
            request_id: request_id.as_deref(),
            note: e.note.as_deref(),
            before_json: e.before_json.as_deref(),
            after_json: e.after_json.as_deref(),
        };
        let hash = chain_hash(&head.hash, &fields);
        let row = event::ActiveModel {
            id: sea_orm::NotSet,
            district_id: Set(e.district_id.clone()),
            seq: Set(seq),
            occurred_at_us: Set(occurred_at_us),
            actor_subject: Set(subject.to_owned()),
            actor_name: Set(name.to_owned()),
            actor_role: Set(role.to_owned()),
            on_behalf_of: Set(on_behalf_of),
            action: Set(e.action.to_owned()),
            resource_type: Set(e.resource_type.to_owned()),
            resource_id: Set(e.resource_id),
            request_id: Set(request_id),
            note: Set(e.note),
            before_json: Set(e.before_json),
            after_json: Set(e.after_json),
            prev_hash: Set(head.hash.clone()),
            hash: Set(hash.clone()),
        };
        event::Entity::insert(row)
            .exec(&self.txn)
            .await
            .map_err(|err| match Error::on_insert(err, "event") {
                Error::AlreadyExists(_) => Error::corrupt(
                    "audit chain",
                    format_args!(
                        "district {} already has an event at seq {seq}, past its stored head",
                        e.district_id
                    ),
                ),
                other => other,
            })?;
        head.seq = seq;
        head.hash = hash;
        Ok(())
    }
}
