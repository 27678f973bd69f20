//! The server's side of the wire check: the tower layer that hands the server's [`Limits`] to
//! the codec for each call, and answers an oversized message `RESOURCE_EXHAUSTED`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::task::futures::TaskLocalFuture;
use tower::{Layer, Service};

use crate::status::rewrite_size_status;
use crate::{LIMITS, Limits};

/// Wraps a server so that its calls are checked with `limits`.
#[derive(Debug, Clone, Copy)]
pub struct WireLayer {
    limits: Limits,
}

impl WireLayer {
    pub fn new(limits: Limits) -> Self {
        Self { limits }
    }
}

impl<S> Layer<S> for WireLayer {
    type Service = Wire<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Wire {
            inner,
            limits: self.limits,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Wire<S> {
    inner: S,
    limits: Limits,
}

impl<S, B, RB> Service<Request<B>> for Wire<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
{
    type Response = Response<SizeStatusBody<RB>>;
    type Error = S::Error;
    type Future = WireFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // The request is decoded while the handler's future is polled: inside this scope.
        WireFuture {
            inner: LIMITS.scope(self.limits, self.inner.call(req)),
        }
    }
}

pin_project! {
    /// A call served with the server's limits in scope.
    pub struct WireFuture<F> {
        #[pin]
        inner: TaskLocalFuture<Limits, F>,
    }
}

impl<F, RB, E> Future for WireFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
{
    type Output = Result<Response<SizeStatusBody<RB>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let response = ready!(self.project().inner.poll(cx))?;
        let (mut parts, body) = response.into_parts();
        // A refusal before any message is a trailers-only response: its status is here.
        rewrite_size_status(&mut parts.headers);
        Poll::Ready(Ok(Response::from_parts(
            parts,
            SizeStatusBody { inner: body },
        )))
    }
}

pin_project! {
    /// A response body whose trailers get the same rewrite, for a stream refused midway.
    pub struct SizeStatusBody<B> {
        #[pin]
        inner: B,
    }
}

impl<B: Body> Body for SizeStatusBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut polled = self.project().inner.poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &mut polled
            && let Some(trailers) = frame.trailers_mut()
        {
            rewrite_size_status(trailers);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
