//! WatchChanges: each watcher reads its district's log after its own cursor, a small batch at
//! a time and only as fast as its reader takes the changes, holding at most
//! [`crate::StreamLimits::buffer_bytes`] of them ready. Watchers do not look for new commits
//! themselves: one notifier per district with watchers on this server does, woken by this
//! process's commits and polling for other replicas' ones, and tells its watchers the newest
//! sequence number through a `tokio::sync::watch` channel. It stops when its last watcher
//! goes.

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::Stream;
use prost::Message as _;
use relief_domain::DistrictId;
use relief_proto::v1 as pb;
use relief_store::Store;
use tokio::sync::watch;
use tonic::Status;

use crate::StreamReads;
use crate::error::ApiError;
use crate::streams::StreamSlot;

/// Changes read from the database at once by a watcher.
const WATCH_BATCH: u64 = 32;

pub(super) type ChangeStream =
    Pin<Box<dyn Stream<Item = Result<pb::WatchChangesResponse, Status>> + Send>>;

/// The notifiers of the districts that have watchers on this server.
#[derive(Debug, Clone)]
pub(super) struct Feeds {
    store: Store,
    /// The line every watcher's database reads wait in.
    reads: StreamReads,
    /// How often a notifier looks for changes committed by other processes on the same
    /// database (this process's commits wake it at once).
    poll_every: Duration,
    notifiers: Arc<Mutex<HashMap<DistrictId, watch::Sender<i64>>>>,
}

impl Feeds {
    pub(super) fn new(store: Store, reads: StreamReads, poll_every: Duration) -> Self {
        Self {
            store,
            reads,
            poll_every,
            notifiers: Arc::default(),
        }
    }

    /// The district's newest sequence number as its notifier sees it, starting the notifier
    /// when the district has none.
    fn subscribe(&self, district: &DistrictId) -> watch::Receiver<i64> {
        let mut notifiers = self
            .notifiers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(tx) = notifiers.get(district) {
            return tx.subscribe();
        }
        let (tx, rx) = watch::channel(0);
        notifiers.insert(district.clone(), tx.clone());
        tokio::spawn(self.clone().notify(district.clone(), tx));
        rx
    }

    /// The notifier of one district, until it has no watcher left.
    async fn notify(self, district: DistrictId, tx: watch::Sender<i64>) {
        tracing::debug!(district = %district, "change notifier started");
        let mut newest = 0;
        loop {
            // Registered before reading, so a commit between the read and the wait still
            // wakes the notifier.
            let committed = self.store.committed();
            match self.store.latest_event_seq(&district).await {
                Ok(Some(seq)) if seq > newest => {
                    newest = seq;
                    tx.send_replace(seq);
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(district = %district, error = %e, "reading the newest change failed");
                }
            }
            tokio::select! {
                () = committed => {}
                () = tokio::time::sleep(self.poll_every) => {}
                () = tx.closed() => {
                    // Watchers subscribe under this lock: none can arrive between the check
                    // and the removal.
                    let mut notifiers = self
                        .notifiers
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    if tx.receiver_count() == 0 {
                        notifiers.remove(&district);
                        tracing::debug!(district = %district, "change notifier stopped");
                        return;
                    }
                }
            }
        }
    }

    /// The changes of `district` after `seq`, then each new one as it commits.
    pub(super) fn watch(
        &self,
        district: DistrictId,
        seq: i64,
        view: super::FeedView,
        buffer_bytes: usize,
        slot: StreamSlot,
    ) -> ChangeStream {
        let watcher = Watcher {
            newest: self.subscribe(&district),
            feeds: self.clone(),
            district,
            seq,
            view,
            buffer_bytes,
            ready: VecDeque::new(),
            _slot: slot,
        };
        Box::pin(futures::stream::unfold(watcher, Watcher::next))
    }
}

/// One reader's place in its district's feed.
struct Watcher {
    feeds: Feeds,
    district: DistrictId,
    /// The last change read from the database.
    seq: i64,
    /// What the reader sees of the personal data in each change.
    view: super::FeedView,
    newest: watch::Receiver<i64>,
    buffer_bytes: usize,
    /// Changes read and not yet taken by the reader.
    ready: VecDeque<pb::WatchChangesResponse>,
    _slot: StreamSlot,
}

impl Watcher {
    async fn next(mut self) -> Option<(Result<pb::WatchChangesResponse, Status>, Self)> {
        loop {
            if let Some(item) = self.ready.pop_front() {
                return Some((Ok(item), self));
            }
            // Marked seen before reading: a change committed after the read moves the
            // notifier past this value and wakes the wait below.
            self.newest.borrow_and_update();
            let place = match self.feeds.reads.place().await {
                Ok(place) => place,
                Err(e) => return Some((Err(Status::from(e)), self)),
            };
            let read = self
                .feeds
                .store
                .events_after(&self.district, self.seq, WATCH_BATCH)
                .await;
            drop(place);
            let batch = match read {
                Ok(batch) => batch,
                // The error is the stream's last item: tonic ends the call with it.
                Err(e) => return Some((Err(Status::from(ApiError::from(e))), self)),
            };
            if batch.is_empty() {
                if self.newest.changed().await.is_err() {
                    // The notifier is gone (it only goes without watchers): start another.
                    self.newest = self.feeds.subscribe(&self.district);
                }
                continue;
            }
            let mut bytes = 0usize;
            for e in batch {
                // The rest of the batch is read again once these are taken.
                if bytes >= self.buffer_bytes {
                    break;
                }
                self.seq = e.seq;
                let item = pb::WatchChangesResponse {
                    change: Some(super::change(&self.district, e, &self.view)),
                };
                bytes = bytes.saturating_add(item.encoded_len());
                self.ready.push_back(item);
            }
        }
    }
}
