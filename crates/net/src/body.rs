//! A response body that goes out in pieces, each once the one before has been written, and
//! ends when a piece waits too long for its reader.
//!
//! hyper hands a body's data to h2, which holds whatever the peer's flow-control window does
//! not yet allow; nothing in between bounds how much a reader that reads nothing makes the
//! server hold, or for how long. Here each data chunk is cut into pieces of at most
//! [`PIECE_BYTES`] and the next piece (or the trailers, after more than one piece) is handed
//! out only when h2 has dropped the previous one, which it does once the piece is written.
//! While a piece waits, so does the body, with a timer: when it fires, the body fails with an
//! `h2` error carrying `ENHANCE_YOUR_CALM`, which hyper turns into an `RST_STREAM` that
//! discards what h2 still holds and that a gRPC client reads as RESOURCE_EXHAUSTED. Trailers
//! could not say so: h2 queues them behind the data the reader does not take.
//!
//! When hyper holds a piece itself, waiting for a window that stays shut, it does not poll the
//! body at all; the connection then closes itself (see [`crate::conn`]).

use std::future::Future as _;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use relief_observe::names;
use tokio::time::{Instant, Sleep};

use crate::conn::{ConnState, Progress};
use crate::layer::CallGuard;

/// The largest piece handed to HTTP/2 at once. Not a power of two, so that a reader's window
/// (usually one) is seldom used up exactly at the end of a piece, the one moment hyper would
/// take the next piece and wait on the window without polling the body.
pub(crate) const PIECE_BYTES: usize = 16_000;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

pin_project! {
    /// A response body bounded in what it makes the server hold for a slow reader, and in how
    /// long it holds it for a reader that reads nothing.
    pub struct GuardedBody<B> {
        #[pin]
        inner: B,
        call: Option<CallGuard>,
        conn: Arc<ConnState>,
        progress: Arc<Progress>,
        stall_timeout: Duration,
        stall: Option<Pin<Box<Sleep>>>,
        service: &'static str,
        // The rest of the chunk being cut into pieces.
        rest: Bytes,
        // Pieces handed out so far.
        pieces: u64,
        // Trailers waiting for the last piece to be written.
        trailers: Option<HeaderMap>,
        inner_done: bool,
        finished: bool,
    }
}

impl<B> GuardedBody<B> {
    pub(crate) fn new(
        inner: B,
        call: CallGuard,
        conn: Arc<ConnState>,
        stall_timeout: Duration,
        service: &'static str,
    ) -> Self {
        let progress = Arc::new(Progress::default());
        conn.track(&progress);
        Self {
            inner,
            call: Some(call),
            conn,
            progress,
            stall_timeout,
            stall: None,
            service,
            rest: Bytes::new(),
            pieces: 0,
            trailers: None,
            inner_done: false,
            finished: false,
        }
    }
}

/// A piece handed to hyper; dropping it (h2 has written it, or discarded it) wakes the body.
struct Piece {
    bytes: Bytes,
    progress: Arc<Progress>,
}

impl AsRef<[u8]> for Piece {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl Drop for Piece {
    fn drop(&mut self) {
        self.progress.in_flight_since.store(0, Ordering::Release);
        self.progress.waker.wake();
    }
}

/// The error that makes hyper reset the stream with `ENHANCE_YOUR_CALM`.
fn stalled() -> BoxError {
    Box::new(h2::Error::from(h2::Reason::ENHANCE_YOUR_CALM))
}

impl<B> Body for GuardedBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        if *this.finished {
            return Poll::Ready(None);
        }
        loop {
            // Whether a piece still waits to be written; the waker is registered before
            // looking, so a piece written in between still wakes this task.
            this.progress.waker.register(cx.waker());
            let since = this.progress.in_flight_since.load(Ordering::Acquire);
            let waiting = since != 0;
            if waiting {
                let deadline = this.conn.instant(since) + *this.stall_timeout;
                let sleep = this
                    .stall
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if sleep.deadline() != deadline {
                    sleep.as_mut().reset(deadline);
                }
                if sleep.as_mut().poll(cx).is_ready() {
                    *this.finished = true;
                    metrics::counter!(names::STREAMS_STALLED, "service" => *this.service)
                        .increment(1);
                    tracing::warn!(
                        service = *this.service,
                        stall_timeout_ms = this.stall_timeout.as_millis(),
                        "response reset: its reader read nothing"
                    );
                    this.call.take();
                    return Poll::Ready(Some(Err(stalled())));
                }
            }
            // The first piece goes out at once; each later one after the one before it.
            if !this.rest.is_empty() {
                if waiting && *this.pieces > 0 {
                    return Poll::Pending;
                }
                let n = this.rest.len().min(PIECE_BYTES);
                let bytes = this.rest.split_to(n);
                this.progress
                    .in_flight_since
                    .store(this.conn.stamp(Instant::now()), Ordering::Release);
                *this.pieces += 1;
                let piece = Bytes::from_owner(Piece {
                    bytes,
                    progress: this.progress.clone(),
                });
                return Poll::Ready(Some(Ok(Frame::data(piece))));
            }
            if this.trailers.is_some() || *this.inner_done {
                if waiting {
                    return Poll::Pending;
                }
                *this.finished = true;
                this.call.take();
                return Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))));
            }
            match this.inner.as_mut().poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => *this.rest = data,
                    Err(frame) => match frame.into_trailers() {
                        // A one-piece answer (most unary calls) ends at once: it holds at
                        // most one piece, however its reader behaves.
                        Ok(trailers) if *this.pieces <= 1 => {
                            *this.finished = true;
                            this.call.take();
                            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                        }
                        Ok(trailers) => *this.trailers = Some(trailers),
                        Err(other) => return Poll::Ready(Some(Ok(other))),
                    },
                },
                Poll::Ready(Some(Err(e))) => {
                    *this.finished = true;
                    this.call.take();
                    return Poll::Ready(Some(Err(e.into())));
                }
                Poll::Ready(None) if *this.pieces <= 1 => {
                    *this.finished = true;
                    this.call.take();
                    return Poll::Ready(None);
                }
                Poll::Ready(None) => *this.inner_done = true,
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.finished
            || (self.rest.is_empty() && self.trailers.is_none() && self.inner.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        let mut hint = self.inner.size_hint();
        let rest = self.rest.len() as u64;
        hint.set_lower(hint.lower().saturating_add(rest));
        if let Some(upper) = hint.upper() {
            hint.set_upper(upper.saturating_add(rest));
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::collections::VecDeque;

    use futures::task::noop_waker_ref;
    use http_body_util::BodyExt as _;

    use super::*;

    /// A body that yields the given frames, then ends.
    struct Frames(VecDeque<Frame<Bytes>>);

    impl Body for Frames {
        type Data = Bytes;
        type Error = BoxError;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            Poll::Ready(self.0.pop_front().map(Ok))
        }
    }

    fn guarded(frames: Vec<Frame<Bytes>>) -> GuardedBody<Frames> {
        let conn = Arc::new(ConnState::new());
        conn.call_started();
        let call = CallGuard::new(conn.clone());
        GuardedBody::new(
            Frames(frames.into()),
            call,
            conn,
            Duration::from_secs(30),
            "test",
        )
    }

    fn poll(body: &mut GuardedBody<Frames>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut cx = Context::from_waker(noop_waker_ref());
        Pin::new(body).poll_frame(&mut cx)
    }

    fn data(poll: Poll<Option<Result<Frame<Bytes>, BoxError>>>) -> Bytes {
        match poll {
            Poll::Ready(Some(Ok(frame))) => frame.into_data().expect("a data frame"),
            _ => panic!("expected a data frame"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn each_piece_waits_for_the_one_before() {
        let chunk = Bytes::from(vec![7u8; PIECE_BYTES * 2 + 5]);
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", "0".parse().unwrap());
        let mut body = guarded(vec![Frame::data(chunk), Frame::trailers(trailers)]);

        let first = data(poll(&mut body));
        assert_eq!(first.len(), PIECE_BYTES);
        assert!(poll(&mut body).is_pending(), "the second piece waits");
        drop(first);
        let second = data(poll(&mut body));
        assert_eq!(second.len(), PIECE_BYTES);
        drop(second);
        let third = data(poll(&mut body));
        assert_eq!(third.len(), 5);
        assert!(poll(&mut body).is_pending(), "the trailers wait too");
        drop(third);
        match poll(&mut body) {
            Poll::Ready(Some(Ok(frame))) => assert!(frame.is_trailers()),
            _ => panic!("expected the trailers"),
        }
        assert!(matches!(poll(&mut body), Poll::Ready(None)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_one_piece_answer_ends_without_waiting() {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", "0".parse().unwrap());
        let mut body = guarded(vec![
            Frame::data(Bytes::from_static(b"answer")),
            Frame::trailers(trailers),
        ]);
        let piece = data(poll(&mut body));
        match poll(&mut body) {
            Poll::Ready(Some(Ok(frame))) => assert!(frame.is_trailers()),
            _ => panic!("expected the trailers while the piece is still out"),
        }
        drop(piece);
    }

    #[tokio::test(start_paused = true)]
    async fn a_piece_nobody_reads_ends_the_body_with_enhance_your_calm() {
        let chunk = Bytes::from(vec![1u8; PIECE_BYTES + 1]);
        let mut body = guarded(vec![Frame::data(chunk)]);
        let held = data(poll(&mut body));
        let err = body
            .frame()
            .await
            .expect("a frame")
            .expect_err("the stall ends it");
        let h2 = err.downcast_ref::<h2::Error>().expect("an h2 error");
        assert_eq!(h2.reason(), Some(h2::Reason::ENHANCE_YOUR_CALM));
        drop(held);
        assert!(body.frame().await.is_none(), "nothing after the reset");
    }
}
