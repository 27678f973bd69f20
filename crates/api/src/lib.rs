//! The gRPC services of relief. Each handler reads the caller from the verified token,
//! converts the request into domain values, runs the domain rule and the store write, and
//! converts back; errors leave through [`error::ApiError`], the one mapping to `Status`.

mod access;
mod approvals;
mod audit;
pub mod auth;
mod cases;
pub mod convert;
mod districts;
pub mod error;
mod follow_ups;
mod gate;
mod imports;
mod ledger;
pub mod paging;
mod payments;
mod plumbing;
mod reports;
mod streams;
mod sync;

use std::sync::Arc;

use relief_domain::Clock;
use relief_observe::KnownLabels;
use relief_store::Store;

pub use approvals::ApprovalApi;
pub use audit::AuditApi;
pub use auth::{AuthInterceptor, Caller, DISTRICT_HEADER};
pub use cases::CaseApi;
pub use districts::DistrictApi;
use error::{ApiError, ApiResult};
pub use follow_ups::FollowUpApi;
pub use gate::{DatabaseGate, DatabaseGateLayer};
pub use ledger::LedgerApi;
pub use payments::DisbursementApi;
pub use plumbing::MAX_REQUEST_ID_CHARS;
pub use reports::ReportApi;
pub use streams::StreamLimits;
use streams::StreamSlots;
pub use sync::SyncApi;

/// Heavy reads at once when the configuration says nothing.
pub const DEFAULT_HEAVY_READS: usize = 2;

/// What every service needs: the store, the clock, and the limits.
#[derive(Debug, Clone)]
pub struct ApiContext {
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    /// Page size when the client gives none.
    pub default_page_size: u32,
    /// Larger page sizes are coerced to this.
    pub max_page_size: u32,
    /// The largest message a call may answer with.
    pub max_message_bytes: usize,
    /// The streams open on this server, within their limits.
    streams: StreamSlots,
    /// The districts the metrics name; a district created here is added to them.
    labels: KnownLabels,
    /// Places for the reads that go over a district's whole year or history (chain and
    /// ledger verification, exports, indicators): a few at a time, so that many of them do
    /// not take every database connection and every core from the other calls.
    heavy_reads: Arc<tokio::sync::Semaphore>,
    /// Places for the database reads of server streams (a watcher's next changes, an
    /// export's next rows): a quarter of the connection pool, so that streams, however many,
    /// always leave connections to the calls.
    stream_reads: StreamReads,
}

/// The line server streams wait in to read the database (see [`ApiContext`]).
#[derive(Debug, Clone)]
pub(crate) struct StreamReads(Arc<tokio::sync::Semaphore>);

impl StreamReads {
    /// A quarter of a pool of `pool` connections, at least one.
    fn for_pool(pool: u32) -> Self {
        let places = usize::try_from(pool / 4).unwrap_or(1).max(1);
        Self(Arc::new(tokio::sync::Semaphore::new(places)))
    }

    /// Waits for a place, held until the permit is dropped.
    pub(crate) async fn place(&self) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
        self.0
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ApiError::Internal("the stream-read line is closed".to_owned()))
    }
}

impl ApiContext {
    pub fn new(store: Store, clock: Arc<dyn Clock>, max_page_size: u32) -> Self {
        Self {
            clock,
            default_page_size: 50.min(max_page_size),
            max_page_size,
            max_message_bytes: 4 * 1024 * 1024,
            streams: StreamSlots::default(),
            labels: KnownLabels::default(),
            heavy_reads: Arc::new(tokio::sync::Semaphore::new(DEFAULT_HEAVY_READS)),
            stream_reads: StreamReads::for_pool(store.pool_status().max),
            store,
        }
    }

    /// The same context running at most `n` heavy reads at once; more wait in line.
    pub fn with_heavy_read_limit(mut self, n: usize) -> Self {
        self.heavy_reads = Arc::new(tokio::sync::Semaphore::new(n.max(1)));
        self
    }

    /// Waits for a place among the heavy reads, held until the permit is dropped.
    pub(crate) async fn heavy_read(&self) -> ApiResult<tokio::sync::OwnedSemaphorePermit> {
        self.heavy_reads
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ApiError::Internal("the heavy-read line is closed".to_owned()))
    }

    /// The same context answering with at most `max_message_bytes` per message.
    pub fn with_max_message_bytes(mut self, max_message_bytes: usize) -> Self {
        self.max_message_bytes = max_message_bytes;
        self
    }

    /// The same context with these stream limits.
    pub fn with_stream_limits(mut self, limits: StreamLimits) -> Self {
        self.streams = StreamSlots::new(limits);
        self
    }

    /// The same context adding the districts it creates to `labels`.
    pub fn with_labels(mut self, labels: KnownLabels) -> Self {
        self.labels = labels;
        self
    }
}
