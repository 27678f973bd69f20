//! The transparent forwarder. A call's token is verified and its district worked out with the
//! same rules as the backends; then the call is sent, bytes untouched, to the upstream that
//! serves the district, with its metadata, deadline and streams, and the answer comes back the
//! same way, trailers and status details included. Nothing here knows the services behind it,
//! so a service added to the backends needs no change here.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{HeaderMap, Request, Response, header};
use http_body::{Body as HttpBody, Frame, SizeHint};
use pin_project_lite::pin_project;
use relief_auth::{Claims, DISTRICT_HEADER, Scope, Verifier, bearer_token, call_district};
use relief_domain::{DistrictId, Role};
use relief_observe::{CallLabels, names};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::Status;
use tonic::body::Body;
use tower::{Service, ServiceExt as _};

use crate::error::GatewayError;
use crate::fanout;
use crate::upstream::Upstream;

/// Where a district's calls go, and the line they wait in.
#[derive(Debug)]
pub(crate) struct Route {
    pub upstream: Arc<Upstream>,
    line: Arc<Semaphore>,
}

impl Route {
    pub fn new(upstream: Arc<Upstream>, limit: usize) -> Self {
        Self {
            upstream,
            line: Arc::new(Semaphore::new(limit)),
        }
    }
}

/// Everything a call needs, shared by all calls.
#[derive(Debug)]
pub(crate) struct Shared {
    pub verifier: Arc<Verifier>,
    pub routes: HashMap<DistrictId, Route>,
    pub upstreams: Vec<Arc<Upstream>>,
    pub district_concurrency: usize,
    pub queue_timeout: Duration,
    pub request_timeout: Duration,
    pub max_message_bytes: usize,
}

/// The gateway's catch-all service.
#[derive(Debug, Clone)]
pub(crate) struct Proxy {
    pub shared: Arc<Shared>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl Service<Request<axum::body::Body>> for Proxy {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<axum::body::Body>) -> Self::Future {
        let shared = self.shared.clone();
        Box::pin(async move {
            Ok(match shared.clone().route(req).await {
                Ok(response) => response,
                Err(e) => Status::from(e).into_http(),
            })
        })
    }
}

/// Headers that belong to one HTTP connection and must not be forwarded (HTTP/2 refuses
/// them); a gRPC-Web call arriving over HTTP/1.1 may carry them.
const HOP_BY_HOP: [header::HeaderName; 5] = [
    header::CONNECTION,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::HOST,
    header::HeaderName::from_static("keep-alive"),
];

impl Shared {
    async fn route(
        self: Arc<Self>,
        req: Request<axum::body::Body>,
    ) -> Result<Response<Body>, GatewayError> {
        let path = req.uri().path();
        if path.starts_with("/grpc.reflection.") {
            // Reflection needs no token and every backend serves the same contract.
            let upstream = self
                .upstreams
                .iter()
                .find(|u| u.is_up())
                .cloned()
                .ok_or(GatewayError::NoneAvailable)?;
            return forward(&upstream, req).await.map_err(|e| match e {
                Forward::DeadlineExpired => GatewayError::DeadlineExpired,
                Forward::Failed(reason) => GatewayError::Unavailable {
                    district: "-".to_owned(),
                    upstream: upstream.name.clone(),
                    reason,
                },
            });
        }
        let claims = self.verify(req.headers())?;
        let labels = req.extensions().get::<CallLabels>().cloned();
        let label = |d: &str| {
            if let Some(l) = &labels {
                l.set_district(d);
            }
        };
        let named = req.headers().get(DISTRICT_HEADER).map(|v| v.as_bytes());
        let district = call_district(claims.scope(), named).map_err(GatewayError::Call)?;
        // Every role but the city administrator lists only the district it names: that
        // answer is the named district's backend's alone, routed like any district call.
        let lists_one = path == fanout::LIST_DISTRICTS
            && district.is_some()
            && !claims.has_role(Role::CityAdmin);
        if matches!(claims.scope(), Scope::City) && fanout::is_city_wide(path) && !lists_one {
            label(relief_auth::CITY_SCOPE);
            return Ok(fanout::answer(self, req).await);
        }
        let district = district.ok_or(GatewayError::NoDistrict)?;
        label(district.as_str());
        let route = self
            .routes
            .get(&district)
            .ok_or_else(|| GatewayError::UnknownDistrict(district.to_string()))?;
        let unavailable = |reason: String| GatewayError::Unavailable {
            district: district.to_string(),
            upstream: route.upstream.name.clone(),
            reason,
        };
        if !route.upstream.is_up() {
            return Err(unavailable(route.upstream.down_reason()));
        }
        let permit = match tokio::time::timeout(
            self.queue_timeout,
            route.line.clone().acquire_owned(),
        )
        .await
        {
            Ok(Ok(permit)) => permit,
            _ => {
                metrics::counter!(names::DISTRICT_REJECTED, "district" => district.to_string())
                    .increment(1);
                return Err(GatewayError::Busy {
                    district: district.to_string(),
                    limit: self.district_concurrency,
                });
            }
        };
        let response = forward(&route.upstream, req).await.map_err(|e| match e {
            Forward::DeadlineExpired => GatewayError::DeadlineExpired,
            Forward::Failed(reason) => unavailable(reason),
        })?;
        Ok(response.map(|inner| {
            Body::new(Held {
                inner,
                _permit: permit,
            })
        }))
    }

    fn verify(&self, headers: &HeaderMap) -> Result<Claims, GatewayError> {
        let token = bearer_token(headers.get(header::AUTHORIZATION).map(|v| v.as_bytes()))
            .map_err(GatewayError::Call)?;
        self.verifier.verify(token).map_err(|e| {
            tracing::debug!(error = %e, "token rejected");
            GatewayError::Unauthenticated(format!("invalid token: {e}"))
        })
    }
}

/// Why a call could not be forwarded.
enum Forward {
    /// The caller's deadline (`grpc-timeout`) passed before the upstream answered.
    DeadlineExpired,
    /// The upstream could not be reached or broke the call off.
    Failed(String),
}

/// Sends the call to `upstream` as it came, and returns the upstream's answer as it comes.
async fn forward(
    upstream: &Upstream,
    req: Request<axum::body::Body>,
) -> Result<Response<Body>, Forward> {
    let (mut parts, body) = req.into_parts();
    for h in &HOP_BY_HOP {
        parts.headers.remove(h);
    }
    let req = Request::from_parts(parts, Body::new(body));
    upstream.channel.clone().oneshot(req).await.map_err(|e| {
        // The channel enforces the caller's deadline itself; its expiry is the caller's
        // deadline, not a fault of the upstream.
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(err) = source {
            if err.is::<tonic::TimeoutExpired>() {
                return Forward::DeadlineExpired;
            }
            source = err.source();
        }
        let reason =
            std::error::Error::source(&e).map_or_else(|| e.to_string(), |s| format!("{e}: {s}"));
        tracing::warn!(upstream = %upstream.name, error = %reason, "forwarding failed");
        Forward::Failed(reason)
    })
}

pin_project! {
    /// A response body that holds its district's place in line until it ends.
    struct Held {
        #[pin]
        inner: Body,
        _permit: OwnedSemaphorePermit,
    }
}

impl HttpBody for Held {
    type Data = bytes::Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
