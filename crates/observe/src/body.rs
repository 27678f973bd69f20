//! The response body that tells its call's observer when the last frame has gone out.

use std::pin::Pin;
use std::task::{Context, Poll};

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::layer::{Call, grpc_code};

pin_project! {
    /// A response body that finishes its [`Call`] at the trailers, at the end, or when
    /// dropped early.
    pub struct ObservedBody<B> {
        #[pin]
        inner: B,
        call: Call,
        http_status: u16,
    }
}

impl<B> ObservedBody<B> {
    pub(crate) fn new(inner: B, call: Call, http_status: u16) -> Self {
        Self {
            inner,
            call,
            http_status,
        }
    }
}

impl<B: Body> Body for ObservedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    this.call.finish(grpc_code(trailers), *this.http_status);
                }
            }
            Poll::Ready(Some(Err(_))) => {
                this.call
                    .finish(Some(tonic::Code::Unavailable), *this.http_status);
            }
            Poll::Ready(None) => this.call.finish(None, *this.http_status),
            Poll::Pending => {}
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
