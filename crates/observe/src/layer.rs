//! The tower layer that observes every call.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use http::{HeaderValue, Request, Response};
use tower::{Layer, Service};
use tracing::Instrument as _;

use crate::body::ObservedBody;
use crate::labels::{KnownLabels, NO_DISTRICT};
use crate::names;

/// The header carrying the request id from client to gateway to backend.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The longest request id taken from a caller; longer ones are replaced.
const MAX_REQUEST_ID_CHARS: usize = 128;

/// What a call's observer learns only once the call is under way: its district.
#[derive(Debug, Clone, Default)]
pub struct CallLabels {
    district: Arc<OnceLock<String>>,
}

impl CallLabels {
    /// Records the call's district (or `city`); the first value set stays.
    pub fn set_district(&self, district: &str) {
        let _ = self.district.set(district.to_owned());
    }

    pub(crate) fn district(&self) -> &str {
        self.district.get().map_or(NO_DISTRICT, String::as_str)
    }
}

/// Observes every call of the service it wraps; `service` names the process kind
/// (`backend` or `gateway`) in logs and metrics, and `labels` the methods and districts the
/// metrics name.
#[derive(Debug, Clone)]
pub struct ObserveLayer {
    service: &'static str,
    labels: KnownLabels,
}

impl ObserveLayer {
    pub fn new(service: &'static str, labels: KnownLabels) -> Self {
        Self { service, labels }
    }
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Observe {
            inner,
            service: self.service,
            labels: self.labels.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Observe<S> {
    inner: S,
    service: &'static str,
    labels: KnownLabels,
}

/// One call being observed; finished exactly once, when its outcome is known.
pub(crate) struct Call {
    service: &'static str,
    known: KnownLabels,
    method: String,
    request_id: String,
    labels: CallLabels,
    start: Instant,
    finished: bool,
}

impl Call {
    /// Writes the access-log line and records the metrics.
    pub(crate) fn finish(&mut self, code: Option<tonic::Code>, http_status: u16) {
        if self.finished {
            return;
        }
        self.finished = true;
        let elapsed = self.start.elapsed();
        let code_label = match code {
            Some(c) => format!("{c:?}"),
            None if http_status == 200 => "Unknown".to_owned(),
            None => format!("http_{http_status}"),
        };
        let district = self.labels.district().to_owned();
        let duration_ms = elapsed.as_secs_f64() * 1000.0;
        // Health checks come every second from every gateway and probe: kept out of the
        // access log unless debugging.
        macro_rules! access_line {
            ($level:ident) => {
                tracing::$level!(
                    target: "relief::access",
                    service = self.service,
                    request_id = %self.request_id,
                    district = %district,
                    method = %self.method,
                    status = %code_label,
                    duration_ms = format_args!("{duration_ms:.3}"),
                    "call"
                )
            };
        }
        if self.method.starts_with("/grpc.health.") {
            access_line!(debug);
        } else {
            access_line!(info);
        }
        // A path or district nobody knows must not grow the metrics without bound.
        let method = self.known.method(&self.method).to_owned();
        let district_label = self.known.district(&district).to_owned();
        metrics::counter!(
            names::REQUESTS,
            "service" => self.service,
            "method" => method.clone(),
            "code" => code_label,
            "district" => district_label.clone()
        )
        .increment(1);
        metrics::histogram!(
            names::DURATION,
            "service" => self.service,
            "method" => method,
            "district" => district_label
        )
        .record(elapsed.as_secs_f64());
        metrics::gauge!(names::IN_FLIGHT, "service" => self.service).decrement(1.0);
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        // The response was dropped before its trailers: the caller went away.
        self.finish(Some(tonic::Code::Cancelled), 200);
    }
}

/// The `grpc-status` of a header or trailer map, if it has one.
pub(crate) fn grpc_code(headers: &http::HeaderMap) -> Option<tonic::Code> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map(tonic::Code::from_i32)
}

fn request_id_of<B>(req: &mut Request<B>) -> String {
    if let Some(id) = req
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= MAX_REQUEST_ID_CHARS)
    {
        return id.to_owned();
    }
    let id = uuid::Uuid::now_v7().to_string();
    if let Ok(value) = HeaderValue::from_str(&id) {
        req.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    id
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S, B, RB> Service<Request<B>> for Observe<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    RB: http_body::Body,
{
    type Response = Response<ObservedBody<RB>>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let request_id = request_id_of(&mut req);
        let labels = CallLabels::default();
        req.extensions_mut().insert(labels.clone());
        let method = req.uri().path().to_owned();
        let span = tracing::info_span!("call", request_id = %request_id, method = %method);
        metrics::gauge!(names::IN_FLIGHT, "service" => self.service).increment(1.0);
        let mut call = Call {
            service: self.service,
            known: self.labels.clone(),
            method,
            request_id,
            labels,
            start: Instant::now(),
            finished: false,
        };
        let response = self.inner.call(req).instrument(span);
        Box::pin(async move {
            match response.await {
                Ok(resp) => {
                    // A trailers-only answer (most errors) carries its status in the headers.
                    if let Some(code) = grpc_code(resp.headers()) {
                        call.finish(Some(code), resp.status().as_u16());
                    } else if resp.status() != http::StatusCode::OK {
                        call.finish(None, resp.status().as_u16());
                    }
                    let status = resp.status().as_u16();
                    Ok(resp.map(|body| ObservedBody::new(body, call, status)))
                }
                Err(e) => {
                    call.finish(Some(tonic::Code::Unavailable), 0);
                    Err(e)
                }
            }
        })
    }
}
