//! City-wide calls, answered by asking every upstream and merging: the district list and the
//! city comparison. A backend that is down or failing makes the answer partial, and the
//! answer names the districts it is missing; a mistake in the request itself (a bad page
//! token, a year out of range) is the caller's and comes back as the backend said it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use relief_observe::REQUEST_ID_HEADER;
use relief_proto::paging::ListKey;
use relief_proto::v1 as pb;
use relief_proto::v1::district_service_client::DistrictServiceClient;
use relief_proto::v1::report_service_client::ReportServiceClient;
use tonic::body::Body;
use tonic::metadata::MetadataMap;
use tonic::server::{Grpc, UnaryService};
use tonic::{Code, Status};

use crate::error::GatewayError;
use crate::proxy::Shared;
use crate::upstream::Upstream;

pub const LIST_DISTRICTS: &str = "/relief.v1.DistrictService/ListDistricts";
pub const CITY_COMPARISON: &str = "/relief.v1.ReportService/GetCityComparison";

/// ListDistricts' page sizes, as on the backends.
const DEFAULT_PAGE_SIZE: usize = 50;
const MAX_PAGE_SIZE: usize = 500;

/// Whether a city-scoped call on `path` is answered from every upstream.
pub fn is_city_wide(path: &str) -> bool {
    path == LIST_DISTRICTS || path == CITY_COMPARISON
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Decodes the call (through the same wire check as the backends), asks every upstream and
/// encodes the merged answer. A request over `max_message_bytes` is `RESOURCE_EXHAUSTED`, as
/// on the backends.
pub(crate) async fn answer(shared: Arc<Shared>, req: Request<axum::body::Body>) -> Response<Body> {
    let max = Some(shared.max_message_bytes);
    let mut response = if req.uri().path() == LIST_DISTRICTS {
        Grpc::new(relief_proto::Codec::default())
            .apply_max_message_size_config(max, max)
            .unary(ListDistricts(shared), req)
            .await
    } else {
        Grpc::new(relief_proto::Codec::default())
            .apply_max_message_size_config(max, max)
            .unary(CityComparison(shared), req)
            .await
    };
    relief_wire::rewrite_size_status(response.headers_mut());
    response
}

struct ListDistricts(Arc<Shared>);
struct CityComparison(Arc<Shared>);

impl UnaryService<pb::ListDistrictsRequest> for ListDistricts {
    type Response = pb::ListDistrictsResponse;
    type Future = BoxFuture<Result<tonic::Response<Self::Response>, Status>>;

    fn call(&mut self, req: tonic::Request<pb::ListDistrictsRequest>) -> Self::Future {
        Box::pin(list_districts(self.0.clone(), req))
    }
}

impl UnaryService<pb::GetCityComparisonRequest> for CityComparison {
    type Response = pb::GetCityComparisonResponse;
    type Future = BoxFuture<Result<tonic::Response<Self::Response>, Status>>;

    fn call(&mut self, req: tonic::Request<pb::GetCityComparisonRequest>) -> Self::Future {
        Box::pin(city_comparison(self.0.clone(), req))
    }
}

/// The same call for one upstream: the caller's token and request id, and what is left of
/// the caller's deadline (or the gateway's own timeout).
fn outgoing<T>(incoming: &MetadataMap, message: T, timeout: Duration) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    for key in ["authorization", REQUEST_ID_HEADER] {
        if let Some(v) = incoming.get(key) {
            request.metadata_mut().insert(key, v.clone());
        }
    }
    request.set_timeout(timeout);
    request
}

/// The caller's deadline from `grpc-timeout`, capped by the gateway's own.
fn deadline(incoming: &MetadataMap, cap: Duration) -> Duration {
    incoming
        .get("grpc-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_grpc_timeout)
        .map_or(cap, |d| d.min(cap))
}

/// `grpc-timeout`: at most 8 digits and a unit (H, M, S, m, u, n).
fn parse_grpc_timeout(v: &str) -> Option<Duration> {
    if v.len() < 2 || v.len() > 9 {
        return None;
    }
    let (digits, unit) = v.split_at(v.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Whether an upstream's error means its districts are missing from the answer (the backend
/// is down or broken) rather than that the request was wrong.
fn is_outage(status: &Status) -> bool {
    !matches!(
        status.code(),
        Code::InvalidArgument
            | Code::PermissionDenied
            | Code::Unauthenticated
            | Code::FailedPrecondition
            | Code::NotFound
            | Code::OutOfRange
            | Code::AlreadyExists
    )
}

/// One answer per upstream that is up; upstreams known to be down answer UNAVAILABLE
/// without being asked.
async fn ask_all<T, F, Fut>(shared: &Shared, ask: F) -> Vec<(Arc<Upstream>, Result<T, Status>)>
where
    F: Fn(Arc<Upstream>) -> Fut,
    Fut: Future<Output = Result<T, Status>>,
{
    let calls = shared.upstreams.iter().map(|u| {
        let u = u.clone();
        let call = ask(u.clone());
        async move {
            let result = if u.is_up() {
                call.await
            } else {
                Err(Status::unavailable("not answering its health checks"))
            };
            (u, result)
        }
    });
    futures::future::join_all(calls).await
}

/// The upstreams that answered, with their answers.
type Answered<T> = Vec<(Arc<Upstream>, T)>;

/// Splits the upstreams' answers into the answers and the districts missing; a request error
/// is returned as it is.
fn gather<T>(
    answers: Vec<(Arc<Upstream>, Result<T, Status>)>,
) -> Result<(Answered<T>, Vec<String>), Status> {
    let mut ok = Vec::new();
    let mut missing = Vec::new();
    for (upstream, result) in answers {
        match result {
            Ok(answer) => ok.push((upstream, answer)),
            Err(status) if is_outage(&status) => {
                tracing::warn!(
                    upstream = %upstream.name,
                    code = ?status.code(),
                    error = status.message(),
                    "city-wide answer is missing this upstream's districts"
                );
                missing.extend(upstream.districts.iter().map(ToString::to_string));
            }
            Err(status) => return Err(status),
        }
    }
    if ok.is_empty() {
        return Err(GatewayError::NoneAvailable.into());
    }
    missing.sort();
    Ok((ok, missing))
}

async fn list_districts(
    shared: Arc<Shared>,
    req: tonic::Request<pb::ListDistrictsRequest>,
) -> Result<tonic::Response<pb::ListDistrictsResponse>, Status> {
    let timeout = deadline(req.metadata(), shared.request_timeout);
    let message = req.get_ref().clone();
    let max = shared.max_message_bytes;
    let answers = ask_all(&shared, |u| {
        let request = outgoing(req.metadata(), message.clone(), timeout);
        async move {
            DistrictServiceClient::new(u.channel.clone())
                .max_decoding_message_size(max)
                .list_districts(request)
                .await
                .map(tonic::Response::into_inner)
        }
    })
    .await;
    let (answers, mut missing) = gather(answers)?;
    let limit = match usize::try_from(message.page_size) {
        Ok(0) | Err(_) => DEFAULT_PAGE_SIZE,
        Ok(n) => n.min(MAX_PAGE_SIZE),
    };
    let mut more = false;
    let mut districts = Vec::new();
    for (upstream, answer) in answers {
        more |= !answer.next_page_token.is_empty();
        missing.extend(answer.missing_district_ids);
        districts.extend(
            answer
                .districts
                .into_iter()
                .filter(|d| upstream.serves(&d.district_id)),
        );
    }
    districts.sort_by(|a, b| a.district_id.cmp(&b.district_id));
    if districts.len() > limit {
        districts.truncate(limit);
        more = true;
    }
    let next_page_token = match districts.last() {
        Some(last) if more => ListKey::of("", &message).token(&last.district_id),
        _ => String::new(),
    };
    Ok(tonic::Response::new(pb::ListDistrictsResponse {
        districts,
        next_page_token,
        missing_district_ids: missing,
    }))
}

async fn city_comparison(
    shared: Arc<Shared>,
    req: tonic::Request<pb::GetCityComparisonRequest>,
) -> Result<tonic::Response<pb::GetCityComparisonResponse>, Status> {
    let timeout = deadline(req.metadata(), shared.request_timeout);
    let message = *req.get_ref();
    let max = shared.max_message_bytes;
    let answers = ask_all(&shared, |u| {
        let request = outgoing(req.metadata(), message, timeout);
        async move {
            ReportServiceClient::new(u.channel.clone())
                .max_decoding_message_size(max)
                .get_city_comparison(request)
                .await
                .map(tonic::Response::into_inner)
        }
    })
    .await;
    let (answers, mut missing) = gather(answers)?;
    let mut rows = Vec::new();
    for (upstream, answer) in answers {
        missing.extend(answer.missing_district_ids);
        rows.extend(
            answer
                .districts
                .into_iter()
                .filter(|d| upstream.serves(&d.district_id)),
        );
    }
    rows.sort_by(|a, b| a.district_id.cmp(&b.district_id));
    missing.sort();
    missing.dedup();
    Ok(tonic::Response::new(pb::GetCityComparisonResponse {
        city_total: Some(relief_proto::comparison::city_total(&rows)),
        districts: rows,
        missing_district_ids: missing,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts() {
        assert_eq!(parse_grpc_timeout("100m"), Some(Duration::from_millis(100)));
        assert_eq!(parse_grpc_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("5n"), Some(Duration::from_nanos(5)));
        assert_eq!(parse_grpc_timeout("m"), None);
        assert_eq!(parse_grpc_timeout("123456789S"), None);
        assert_eq!(parse_grpc_timeout("10x"), None);
    }
}
