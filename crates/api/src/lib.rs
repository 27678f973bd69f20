//! The gRPC services of relief. Each handler reads the caller from the verified token,
//! converts the request into domain values, runs the domain rule and the store write, and
//! converts back; errors leave through [`error::ApiError`], the one mapping to `Status`.

mod approvals;
mod audit;
pub mod auth;
mod cases;
pub mod convert;
mod disbursements;
mod districts;
pub mod error;
mod gate;
mod imports;
pub mod paging;
pub mod reports;
mod streams;
mod sync;

use std::sync::Arc;

use prost::Message;
use relief_domain::{Clock, DistrictId};
use relief_observe::KnownLabels;
use relief_store::{IdempotencyKey, Store, WriteTx};

pub use approvals::ApprovalApi;
pub use audit::AuditApi;
pub use auth::{AuthInterceptor, Caller, DISTRICT_HEADER};
pub use cases::CaseApi;
pub use disbursements::{DisbursementApi, FollowUpApi, LedgerApi};
pub use districts::DistrictApi;
use error::{ApiError, ApiResult};
pub use gate::{DatabaseGate, DatabaseGateLayer};
pub use reports::ReportApi;
pub use streams::StreamLimits;
use streams::StreamSlots;
pub use sync::SyncApi;

/// Heavy reads at once when the configuration says nothing.
pub const DEFAULT_HEAVY_READS: usize = 2;

/// The longest request id a client may send.
pub const MAX_REQUEST_ID_CHARS: usize = 64;

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

    /// Checks the client's request id and derives the key its response is kept under.
    fn idempotency_key<M: Message>(
        &self,
        caller: &Caller,
        method: &'static str,
        request_id: &str,
        request: &M,
    ) -> ApiResult<IdempotencyKey> {
        check_request_id(request_id)?;
        Ok(IdempotencyKey::new(
            &caller.idempotency_scope(),
            caller.claims().subject().as_str(),
            request_id,
            method,
            &request.encode_to_vec(),
        ))
    }

    /// Opens the write for a mutation, queued behind the district's other writers, and
    /// returns the earlier response when this request id was already applied.
    async fn begin<R: Message + Default>(
        &self,
        district: Option<&DistrictId>,
        caller: &Caller,
        role: relief_domain::Role,
        key: &IdempotencyKey,
    ) -> ApiResult<Begun<R>> {
        self.begin_as(Locking::Queued, district, caller, role, key)
            .await
    }

    /// [`ApiContext::begin`], with the district's queue joined only at the first write
    /// when `locking` is [`Locking::Optimistic`].
    async fn begin_as<R: Message + Default>(
        &self,
        locking: Locking,
        district: Option<&DistrictId>,
        caller: &Caller,
        role: relief_domain::Role,
        key: &IdempotencyKey,
    ) -> ApiResult<Begun<R>> {
        let tx = self
            .store
            .begin_write(
                district,
                caller.actor(role),
                Some(key.request_id.clone()),
                self.clock.now(),
            )
            .await?;
        if locking == Locking::Queued {
            tx.lock().await?;
        }
        match tx.replay(key).await? {
            Some(bytes) => {
                let resp = R::decode(bytes.as_slice()).map_err(|e| {
                    ApiError::Internal(format!("stored response does not decode: {e}"))
                })?;
                Ok(Begun::Replayed(resp))
            }
            None => Ok(Begun::Fresh(Box::new(tx))),
        }
    }
}

/// When a mutation joins its district's queue of writers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Locking {
    /// Before it reads anything: what it reads cannot change before it commits.
    Queued,
    /// At its first write: it reads the case unqueued, and its write fails with
    /// [`ApiError::Conflict`] if anyone changed the case in between. A call that fails
    /// this way is run once more, queued.
    Optimistic,
}

/// A mutation either starts fresh or was already applied.
enum Begun<R> {
    Fresh(Box<WriteTx>),
    Replayed(R),
}

/// Commits the write with the response stored under the request id.
async fn commit<R: Message>(tx: WriteTx, key: &IdempotencyKey, response: &R) -> ApiResult<()> {
    tx.commit(Some((key, response.encode_to_vec()))).await?;
    Ok(())
}

fn check_request_id(request_id: &str) -> ApiResult<()> {
    if request_id.is_empty() {
        return Err(ApiError::invalid(
            "request_id",
            "is required: a client-chosen id that makes retries safe",
        ));
    }
    let ok = request_id.len() <= MAX_REQUEST_ID_CHARS
        && request_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "request_id",
            format_args!(
                "must be at most {MAX_REQUEST_ID_CHARS} characters of letters, digits, '-', '_', '.', ':'"
            ),
        ))
    }
}
