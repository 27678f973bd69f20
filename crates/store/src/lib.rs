//! Persistence for relief. Every read and write names its district: there is no way to fetch
//! a case by id alone, so one district can never see another's rows by accident.
//!
//! Writes go through [`WriteTx`], which serializes writers per district (a row lock on
//! PostgreSQL taken at a write's first statement that needs it, one in-process writer on
//! SQLite, which has no row locks), appends the audit
//! events of the change to the district's hash chain and moves the chain head stored on the
//! district's row (signing a checkpoint when one is due), stores the response under the
//! caller's request id, and commits all of it at once or none of it.

mod approvals;
mod audit;
mod cases;
mod delegations;
mod districts;
pub mod entity;
mod error;
mod follow_ups;
mod imports;
mod keyset;
mod ledger;
mod meetings;
mod payments;
mod records;
mod reports;
mod rules_cache;
mod sync;
mod write;

pub use approvals::DecisionRecord;
pub use audit::{CallerCheckpoint, ChainAudit, ChainReport, LedgerAuditRecord};
pub use cases::CaseFilter;
pub use delegations::DelegationRecord;
pub use error::{Error, Result};
pub use follow_ups::FollowUpRecord;
pub use imports::{ImportWindowRecord, ImportedCase, PriorImport};
pub use ledger::LedgerEntryRecord;
pub use meetings::{MeetingItemRecord, MeetingRecord};
pub use payments::PaymentRecord;
pub use records::{Actor, CaseRecord, DistrictRecord, EventRecord, RulesVersionRecord};
pub use write::{IdempotencyKey, WriteTx};

use std::sync::Arc;
use std::time::Duration;

use relief_migrations::{Migrator, MigratorTrait};
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbBackend};
use tokio::sync::Mutex;

/// Pool and lock limits. Every one has a bound: a request waits at most this long.
#[derive(Debug, Clone)]
pub struct DbSettings {
    pub max_connections: u32,
    pub acquire_timeout_ms: u64,
    /// How long SQLite waits on a lock held by another process before failing.
    pub busy_timeout_ms: u64,
    /// How long a request id and its answer are kept for retries, in days.
    pub request_id_retention_days: u32,
}

impl Default for DbSettings {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout_ms: 5_000,
            busy_timeout_ms: 10_000,
            request_id_retention_days: 7,
        }
    }
}

/// How many pooled database connections are busy, idle, and allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStatus {
    pub in_use: u32,
    pub idle: u32,
    pub max: u32,
}

#[derive(Debug, Clone)]
pub struct Store {
    db: DatabaseConnection,
    /// SQLite allows one writer at a time and ignores `FOR UPDATE`; writers queue here
    /// instead of failing with "database is locked".
    sqlite_writer: Option<Arc<Mutex<()>>>,
    /// Woken after every commit, for change-feed watchers in this process.
    committed: Arc<tokio::sync::Notify>,
    /// How long request ids are kept.
    request_id_retention: chrono::Duration,
    /// Rules versions already read; they never change.
    rules_versions: Arc<rules_cache::RulesVersions>,
    /// One connection of its own for [`Store::ping`], so that a pool busy with calls does
    /// not look like a database that is down.
    probe: DatabaseConnection,
    /// The audit key and when checkpoints fall due; none signed without a key.
    audit: Arc<ChainAudit>,
}

/// SQLite's page cache per connection, in KiB (SQLite's own default is 2,000). The operating
/// system caches the file as well; a pool of 16 connections with the default would hold up
/// to 32 MiB of pages besides.
const SQLITE_CACHE_KIB: u32 = 512;

/// Prepared statements kept per SQLite connection (sqlx keeps 100): enough for the hot
/// paths, without every connection keeping a compiled copy of every query ever run.
const SQLITE_STATEMENT_CACHE: usize = 32;

impl Store {
    /// Connects to `url` (`sqlite://path` or `postgres://…`). A SQLite file is created if
    /// missing and opened in WAL mode.
    pub async fn connect(url: &str, settings: &DbSettings) -> Result<Store> {
        let options = |max: u32, min: u32, acquire_ms: u64| {
            let mut opts = ConnectOptions::new(url.to_owned());
            opts.max_connections(max)
                .min_connections(min)
                .acquire_timeout(Duration::from_millis(acquire_ms))
                .sqlx_logging(false);
            let busy = Duration::from_millis(settings.busy_timeout_ms);
            opts.map_sqlx_sqlite_opts(move |o| {
                o.create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(busy)
                    .foreign_keys(true)
                    .pragma("cache_size", format!("-{SQLITE_CACHE_KIB}"))
                    .statement_cache_capacity(SQLITE_STATEMENT_CACHE)
            });
            opts
        };
        let db = Database::connect(options(
            settings.max_connections,
            1,
            settings.acquire_timeout_ms,
        ))
        .await?;
        let probe = Database::connect(options(1, 0, settings.acquire_timeout_ms)).await?;
        let sqlite_writer = match db.get_database_backend() {
            DbBackend::Sqlite => Some(Arc::new(Mutex::new(()))),
            _ => None,
        };
        Ok(Store {
            db,
            sqlite_writer,
            committed: Arc::default(),
            request_id_retention: chrono::Duration::days(i64::from(
                settings.request_id_retention_days,
            )),
            rules_versions: Arc::default(),
            probe,
            audit: Arc::default(),
        })
    }

    /// Asks the database for a trivial answer on the store's own probe connection (opened
    /// again if it was lost), within `timeout`: whether the database can be reached now.
    pub async fn ping(&self, timeout: Duration) -> Result<()> {
        match tokio::time::timeout(timeout, self.probe.ping()).await {
            Ok(answer) => Ok(answer?),
            Err(_) => Err(Error::Unavailable(format!(
                "no answer within {} ms",
                timeout.as_millis()
            ))),
        }
    }

    /// The same store, signing checkpoints with `audit` from now on. Set it before the store
    /// is cloned: clones made earlier keep what they had.
    pub fn with_audit(mut self, audit: ChainAudit) -> Store {
        self.audit = Arc::new(audit);
        self
    }

    /// The audit key checkpoints are signed with, if any.
    pub fn audit_signer(&self) -> Option<&relief_domain::audit::AuditSigner> {
        self.audit.signer.as_ref()
    }

    /// Whether the audit key was generated and is kept in the database.
    pub fn audit_key_generated(&self) -> bool {
        self.audit.generated
    }

    /// Applies every pending migration.
    pub async fn migrate(&self) -> Result<()> {
        Migrator::up(&self.db, None).await?;
        Ok(())
    }

    pub fn backend_name(&self) -> &'static str {
        match self.db.get_database_backend() {
            DbBackend::Sqlite => "sqlite",
            DbBackend::Postgres => "postgres",
            _ => "other",
        }
    }

    /// Resolves after the next commit made through this store (in this process). Create the
    /// future before reading, then await it when the read found nothing new; writes by other
    /// processes on the same database are not signalled, so watchers poll as well.
    pub fn committed(&self) -> tokio::sync::futures::OwnedNotified {
        self.committed.clone().notified_owned()
    }

    /// Forgets the request ids (and stored answers) older than the retention at `now`;
    /// returns how many were removed. Within the retention a retried call is answered from
    /// them; after it, a request id counts as new.
    pub async fn purge_request_ids(&self, now: chrono::DateTime<chrono::Utc>) -> Result<u64> {
        write::purge_request_ids(&self.db, now - self.request_id_retention).await
    }

    /// The connection pool's use right now, for the operators' metrics.
    pub fn pool_status(&self) -> PoolStatus {
        let (open, idle, max) = match self.db.get_database_backend() {
            DbBackend::Postgres => {
                let p = self.db.get_postgres_connection_pool();
                (p.size(), p.num_idle(), p.options().get_max_connections())
            }
            DbBackend::Sqlite => {
                let p = self.db.get_sqlite_connection_pool();
                (p.size(), p.num_idle(), p.options().get_max_connections())
            }
            _ => (0, 0, 0),
        };
        let idle = u32::try_from(idle).unwrap_or(u32::MAX);
        PoolStatus {
            in_use: open.saturating_sub(idle),
            idle,
            max,
        }
    }

    /// The raw connection, for tests and tools that must reach below the repository (the
    /// audit tamper test edits a row directly).
    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }
}
