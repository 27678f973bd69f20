//! The bounds of the server-streaming calls (WatchChanges, StreamCaseExport): how many one
//! caller and one district may hold open at once on this server, and how many bytes of
//! pending items each may hold. A stream lives as long as its reader keeps it, so without a
//! cap one caller could hold every slot and every byte the server has.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use relief_domain::DistrictId;

use crate::error::{ApiError, ApiResult};

/// What a refused stream is told to wait before trying again: long enough for a stream to
/// end or a reconnecting reader to settle, short enough for a feed to catch up quickly.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The stream limits of one server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamLimits {
    /// Streams one caller (token subject) may hold open at once.
    pub per_caller: usize,
    /// Streams open at once about one district.
    pub per_district: usize,
    /// Bytes of encoded items a stream holds ready before it reads further.
    pub buffer_bytes: usize,
}

impl Default for StreamLimits {
    fn default() -> Self {
        Self {
            per_caller: 8,
            per_district: 64,
            buffer_bytes: 256 * 1024,
        }
    }
}

#[derive(Debug, Default)]
struct Open {
    callers: HashMap<String, usize>,
    districts: HashMap<DistrictId, usize>,
}

/// The streams open on this server, by caller and by district.
#[derive(Debug, Clone, Default)]
pub(crate) struct StreamSlots {
    limits: StreamLimits,
    open: Arc<Mutex<Open>>,
}

/// One open stream's place; dropping it (when the stream ends or its reader goes) frees it.
#[derive(Debug)]
pub(crate) struct StreamSlot {
    open: Arc<Mutex<Open>>,
    caller: String,
    district: DistrictId,
}

impl StreamSlots {
    pub(crate) fn new(limits: StreamLimits) -> Self {
        Self {
            limits,
            open: Arc::default(),
        }
    }

    pub(crate) fn limits(&self) -> StreamLimits {
        self.limits
    }

    /// A place for one more stream of `caller` about `district`, or RESOURCE_EXHAUSTED with
    /// when to try again.
    pub(crate) fn acquire(&self, caller: &str, district: &DistrictId) -> ApiResult<StreamSlot> {
        let mut open = self
            .open
            .lock()
            .map_err(|_| ApiError::Internal("stream slots poisoned".to_owned()))?;
        let by_caller = open.callers.get(caller).copied().unwrap_or(0);
        if by_caller >= self.limits.per_caller {
            return Err(ApiError::TooMany {
                reason: "STREAM_LIMIT",
                message: format!(
                    "this caller already has {by_caller} streams open (at most {}); close one or try again later",
                    self.limits.per_caller
                ),
                retry_after: Some(RETRY_AFTER),
            });
        }
        let by_district = open.districts.get(district).copied().unwrap_or(0);
        if by_district >= self.limits.per_district {
            return Err(ApiError::TooMany {
                reason: "STREAM_LIMIT",
                message: format!(
                    "district {district} already has {by_district} streams open on this server (at most {}); try again later",
                    self.limits.per_district
                ),
                retry_after: Some(RETRY_AFTER),
            });
        }
        *open.callers.entry(caller.to_owned()).or_default() += 1;
        *open.districts.entry(district.clone()).or_default() += 1;
        Ok(StreamSlot {
            open: self.open.clone(),
            caller: caller.to_owned(),
            district: district.clone(),
        })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let Ok(mut open) = self.open.lock() else {
            return;
        };
        if let Some(n) = open.callers.get_mut(&self.caller) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.callers.remove(&self.caller);
            }
        }
        if let Some(n) = open.districts.get_mut(&self.district) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.districts.remove(&self.district);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn slots_are_capped_per_caller_and_per_district_and_freed_on_drop() {
        let slots = StreamSlots::new(StreamLimits {
            per_caller: 2,
            per_district: 3,
            buffer_bytes: 1024,
        });
        let a = DistrictId::parse("430112").unwrap();
        let b = DistrictId::parse("430102").unwrap();
        let first = slots.acquire("alice", &a).unwrap();
        let _second = slots.acquire("alice", &b).unwrap();
        let refused = slots.acquire("alice", &a).unwrap_err();
        assert!(matches!(
            refused,
            ApiError::TooMany {
                retry_after: Some(_),
                ..
            }
        ));
        let _bob = slots.acquire("bob", &a).unwrap();
        let _carol = slots.acquire("carol", &a).unwrap();
        assert!(slots.acquire("dave", &a).is_err(), "district a is full");
        assert!(slots.acquire("dave", &b).is_ok(), "district b is not");
        drop(first);
        assert!(slots.acquire("alice", &a).is_ok(), "freed by the drop");
    }
}
