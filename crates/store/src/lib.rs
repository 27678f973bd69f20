//! Persistence for relief. Every read and write names its district: there is no way to fetch
//! a case by id alone, so one district can never see another's rows by accident.
//!
//! Writes go through [`WriteTx`], which serializes writers per district (a row lock on
//! PostgreSQL taken at a write's first statement that needs it, one in-process writer on
//! SQLite, which has no row locks), appends the audit
//! events of the change to the district's hash chain, stores the response under the caller's
//! request id, and commits all of it at once or none of it.

mod approvals;
mod disbursements;
pub mod entity;
mod error;
mod imports;
mod reads;
mod records;
mod reports;
mod rules_cache;
mod write;

pub use approvals::{DecisionRecord, DelegationRecord, MeetingItemRecord, MeetingRecord};
pub use disbursements::{FollowUpRecord, LedgerEntryRecord, PaymentRecord};
pub use error::{Error, Result};
pub use imports::{ImportedCase, PriorImport};
pub use reads::{CaseFilter, ChainReport};
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
}

impl Store {
    /// Connects to `url` (`sqlite://path` or `postgres://…`). A SQLite file is created if
    /// missing and opened in WAL mode.
    pub async fn connect(url: &str, settings: &DbSettings) -> Result<Store> {
        let mut opts = ConnectOptions::new(url.to_owned());
        opts.max_connections(settings.max_connections)
            .min_connections(1)
            .acquire_timeout(Duration::from_millis(settings.acquire_timeout_ms))
            .sqlx_logging(false);
        let busy = Duration::from_millis(settings.busy_timeout_ms);
        opts.map_sqlx_sqlite_opts(move |o| {
            o.create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(busy)
                .foreign_keys(true)
        });
        let db = Database::connect(opts).await?;
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
        })
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

    /// The district's events after `after_seq`, oldest first, at most `limit`.
    pub async fn events_after(
        &self,
        district: &relief_domain::DistrictId,
        after_seq: i64,
        limit: u64,
    ) -> Result<Vec<EventRecord>> {
        reads::events_after(&self.db, district, after_seq, limit).await
    }

    /// The sequence number of the district's newest event; `None` before its first.
    pub async fn latest_event_seq(
        &self,
        district: &relief_domain::DistrictId,
    ) -> Result<Option<i64>> {
        reads::latest_event_seq(&self.db, district).await
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
