//! The gate in front of relief's services while the database cannot be reached: calls are
//! answered UNAVAILABLE with `RetryInfo` at once, rather than each holding a place in the
//! concurrency limit until the pool gives up. Health and reflection pass, so probes and
//! tools still get their answers.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use http::{Request, Response};
use tower::{Layer, Service};

use crate::error::unavailable_status;

/// Paths answered whatever the database's state.
const ALWAYS_OPEN: [&str; 2] = ["/grpc.health.", "/grpc.reflection."];

/// Closes the services while `up` is false.
#[derive(Debug, Clone)]
pub struct DatabaseGateLayer {
    up: Arc<AtomicBool>,
}

impl DatabaseGateLayer {
    pub fn new(up: Arc<AtomicBool>) -> Self {
        Self { up }
    }
}

impl<S> Layer<S> for DatabaseGateLayer {
    type Service = DatabaseGate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        DatabaseGate {
            inner,
            up: self.up.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct DatabaseGate<S> {
    inner: S,
    up: Arc<AtomicBool>,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, ReqBody> Service<Request<ReqBody>> for DatabaseGate<S>
where
    S: Service<Request<ReqBody>, Response = Response<tonic::body::Body>>,
    S::Future: Send + 'static,
    S::Error: 'static,
{
    type Response = Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let open = self.up.load(Ordering::Relaxed)
            || ALWAYS_OPEN.iter().any(|p| req.uri().path().starts_with(p));
        if open {
            let call = self.inner.call(req);
            Box::pin(call)
        } else {
            Box::pin(async {
                Ok(unavailable_status("the database is unavailable; retry shortly").into_http())
            })
        }
    }
}
