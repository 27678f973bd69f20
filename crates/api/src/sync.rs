//! The change feed: a district's event log read in commit order after a cursor, for the
//! systems that keep copies of relief's data. The log is written in the same transaction as
//! every change, and each district's sequence numbers are assigned under the district's write
//! lock, so reading `seq > cursor` in order misses nothing and repeats nothing.

mod watch;

use std::time::Duration;

use relief_domain::privacy::{Field, View};
use relief_domain::{DistrictId, Role, UnitId};
use relief_proto::v1 as pb;
use relief_proto::v1::sync_service_server::SyncService;
use relief_store::EventRecord;
use serde_json::Value;
use tonic::{Request, Response, Status};

use crate::ApiContext;
use crate::auth::Caller;
use crate::convert::timestamp;
use crate::error::{ApiError, ApiResult};
use crate::paging::{decode_cursor as decode_feed, encode_cursor};

#[derive(Debug, Clone)]
pub struct SyncApi {
    ctx: ApiContext,
    /// The districts' change notifiers, shared by their watchers.
    feeds: watch::Feeds,
}

impl SyncApi {
    /// `poll_every`: how often a district's notifier looks for changes committed by other
    /// processes on the same database (this process's commits wake it at once).
    pub fn new(ctx: ApiContext, poll_every: Duration) -> Self {
        let feeds = watch::Feeds::new(ctx.store.clone(), ctx.stream_reads.clone(), poll_every);
        Self { ctx, feeds }
    }

    /// The district whose feed the caller may read: sync clients and auditors only.
    fn feed_district(caller: &Caller) -> ApiResult<DistrictId> {
        if !(caller.has_role(Role::SyncClient) || caller.has_role(Role::Auditor)) {
            return Err(ApiError::denied(
                "the change feed is for sync clients and auditors",
            ));
        }
        Ok(caller.district()?.clone())
    }

    async fn start(&self, caller: &Caller, after_cursor: &str) -> ApiResult<(DistrictId, i64)> {
        let district = Self::feed_district(caller)?;
        if self.ctx.store.district(&district).await?.is_none() {
            return Err(ApiError::NotFound("district"));
        }
        let seq = decode_cursor(&district, after_cursor)?;
        Ok((district, seq))
    }

    async fn list(
        &self,
        caller: Caller,
        req: pb::ListChangesRequest,
    ) -> ApiResult<pb::ListChangesResponse> {
        let (district, after) = self.start(&caller, &req.after_cursor).await?;
        let limit = self.ctx.page_size(req.page_size)?;
        let view = FeedView::of(&caller);
        let events = self.ctx.store.events_after(&district, after, limit).await?;
        let next_cursor = match events.last() {
            Some(last) => cursor(&district, last.seq),
            None => req.after_cursor,
        };
        Ok(pb::ListChangesResponse {
            changes: events
                .into_iter()
                .map(|e| change(&district, e, &view))
                .collect(),
            next_cursor,
        })
    }
}

fn cursor(district: &DistrictId, seq: i64) -> String {
    encode_cursor("change", &format!("{district}:{seq}"))
}

/// The sequence number after which to read; 0 for the beginning.
fn decode_cursor(district: &DistrictId, token: &str) -> ApiResult<i64> {
    let bad = || ApiError::invalid("after_cursor", "is not a cursor of this district's feed");
    let Some(c) = decode_feed("change", token).ok_or_else(bad)? else {
        return Ok(0);
    };
    let (d, seq) = c.split_once(':').ok_or_else(bad)?;
    if d != district.as_str() {
        return Err(bad());
    }
    seq.parse::<i64>().ok().filter(|s| *s >= 0).ok_or_else(bad)
}

/// What a caller sees of the personal data in the changes ([`relief_domain::privacy`]).
#[derive(Debug, Clone)]
struct FeedView {
    /// The view of a change that is not about a case of the caller's own unit.
    others: View,
    /// For a token whose applicant-unit role shows more: its unit and its view of that
    /// unit's cases. A change is known to be about one when its state names the unit as
    /// `applicant_unit_id` (a case); other changes (a payment) get `others`.
    own: Option<(UnitId, View)>,
}

impl FeedView {
    fn of(caller: &Caller) -> FeedView {
        FeedView {
            others: caller.view_without_unit(),
            own: caller
                .claims()
                .unit()
                .filter(|_| caller.view_depends_on_unit())
                .map(|u| (u.clone(), caller.view_for_unit(u))),
        }
    }

    fn of_state(&self, state: &Value) -> View {
        match &self.own {
            Some((unit, view))
                if state.get("applicant_unit_id").and_then(Value::as_str)
                    == Some(unit.as_str()) =>
            {
                *view
            }
            _ => self.others,
        }
    }
}

fn change(district: &DistrictId, e: EventRecord, feed: &FeedView) -> pb::Change {
    let state_json = e
        .after_json
        .map(|json| {
            if feed.own.is_none() && feed.others.is_everything() {
                return json;
            }
            match serde_json::from_str::<Value>(&json) {
                Ok(mut v) => {
                    let view = feed.of_state(&v);
                    mask_personal(&mut v, &view);
                    v.to_string()
                }
                // Not JSON: nothing in it can be told apart, so nothing of it is shown.
                Err(_) => String::new(),
            }
        })
        .unwrap_or_default();
    pb::Change {
        cursor: cursor(district, e.seq),
        district_id: district.to_string(),
        sequence: e.seq,
        resource_type: e.resource_type,
        resource_id: e.resource_id,
        action: e.action,
        state_json,
        commit_time: Some(timestamp(e.occurred_at)),
        actor_subject: e.actor_subject,
        actor_name: e.actor_name,
        actor_role: e.actor_role,
        request_id: e.request_id.unwrap_or_default(),
    }
}

/// The personal field a key of a recorded state holds, by the names the store's records
/// serialize them under (a case's `application.recipient` and `application`, a payment).
fn personal_field(key: &str) -> Option<Field> {
    match key {
        "resident_id" => Some(Field::ResidentId),
        "bank_account" => Some(Field::BankAccount),
        "phone" => Some(Field::Phone),
        "address" => Some(Field::Address),
        "basic_situation" => Some(Field::Situation),
        _ => None,
    }
}

/// Shows the personal data wherever it appears in a recorded state as `view` allows, as the
/// case and payment calls show it to the same caller.
fn mask_personal(v: &mut Value, view: &View) {
    match v {
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                match (personal_field(key), &*value) {
                    (Some(field), Value::String(s)) => {
                        *value = Value::String(view.show(field, s));
                    }
                    _ => mask_personal(value, view),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| mask_personal(v, view)),
        _ => {}
    }
}

#[tonic::async_trait]
impl SyncService for SyncApi {
    async fn list_changes(
        &self,
        request: Request<pb::ListChangesRequest>,
    ) -> Result<Response<pb::ListChangesResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        Ok(Response::new(
            self.list(caller, request.into_inner()).await?,
        ))
    }

    async fn import_cases(
        &self,
        request: Request<tonic::Streaming<pb::ImportCasesRequest>>,
    ) -> Result<Response<pb::ImportCasesResponse>, Status> {
        let caller = Caller::from_request(&request)?;
        Ok(Response::new(
            crate::imports::import_cases(&self.ctx, caller, request.into_inner()).await?,
        ))
    }

    type WatchChangesStream = watch::ChangeStream;

    async fn watch_changes(
        &self,
        request: Request<pb::WatchChangesRequest>,
    ) -> Result<Response<watch::ChangeStream>, Status> {
        let caller = Caller::from_request(&request)?;
        // The slot is taken before the database is asked anything, so watchers turned away
        // cost no connection.
        let slot = self.ctx.streams.acquire(
            caller.claims().subject().as_str(),
            &Self::feed_district(&caller)?,
        )?;
        let (district, seq) = self.start(&caller, &request.get_ref().after_cursor).await?;
        let buffer_bytes = self.ctx.streams.limits().buffer_bytes;
        let view = FeedView::of(&caller);
        Ok(Response::new(self.feeds.watch(
            district,
            seq,
            view,
            buffer_bytes,
            slot,
        )))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn personal_data_is_masked_wherever_it_is() {
        let mut v: Value = serde_json::json!({
            "applicant_unit_id": "gaotangling",
            "application": {
                "recipient": {"name": "张三", "resident_id": "11010519491231002X",
                              "phone": "13800000000", "address": "望城区高塘岭街道同心社区"},
                "basic_situation": "家庭困难",
                "receiving_unit": {"bank_name": "长沙银行", "bank_account": "6230880012345678"}
            },
            "payments": [{"bank_account": "6230880087654321"}],
            "amount": 100
        });
        let auditor = View::of_role(Role::Auditor);
        mask_personal(&mut v, &auditor);
        let text = v.to_string();
        assert!(!text.contains("11010519491231002X"), "{text}");
        assert!(!text.contains("6230880012345678"), "{text}");
        assert!(!text.contains("6230880087654321"), "{text}");
        assert!(text.contains("5678") && text.contains("4321") && text.contains("张三"));
        assert_eq!(v["application"]["recipient"]["phone"], "");
        assert_eq!(
            v["application"]["recipient"]["address"],
            "望城区高塘岭******"
        );
        assert_eq!(v["application"]["basic_situation"], "");
        assert_eq!(v["amount"], 100);
    }

    #[test]
    fn cursors_belong_to_their_district() {
        let a = DistrictId::parse("430112").unwrap();
        let b = DistrictId::parse("430102").unwrap();
        assert_eq!(decode_cursor(&a, "").unwrap(), 0);
        assert_eq!(decode_cursor(&a, &cursor(&a, 42)).unwrap(), 42);
        assert!(decode_cursor(&b, &cursor(&a, 42)).is_err());
        assert!(decode_cursor(&a, "garbage").is_err());
    }
}
