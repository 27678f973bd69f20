//! Accepted connections: the cap on how many are open, and the timers that close one that
//! never starts, sits idle, or holds a response its reader does not read.

use std::future::Future as _;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use futures::Stream;
use relief_observe::names;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Interval, MissedTickBehavior, Sleep};

use crate::ConnLimits;

/// What every client sends first on an HTTP/2 connection.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How long accepting waits after an error such as running out of file descriptors, so that
/// a full table does not turn the accept loop into a busy loop.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// How much longer than the stall timeout a connection waits before closing itself for a
/// stalled response: the response's own timer ends it alone when it can.
pub(crate) const STALL_MARGIN: Duration = Duration::from_secs(1);

/// The accepted connections of one listener, as tonic's server takes them.
pub struct Incoming {
    listener: TcpListener,
    slots: Arc<Semaphore>,
    limits: ConnLimits,
    service: &'static str,
    backoff: Option<Pin<Box<Sleep>>>,
}

impl std::fmt::Debug for Incoming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Incoming")
            .field("listen", &self.listener.local_addr().ok())
            .field("limits", &self.limits)
            .finish()
    }
}

impl Incoming {
    /// Accepts from `listener` within `limits`; `service` names the process kind (`backend`,
    /// `gateway`) in logs and metrics.
    pub fn new(listener: TcpListener, limits: ConnLimits, service: &'static str) -> Self {
        Self {
            listener,
            slots: Arc::new(Semaphore::new(limits.max_connections)),
            limits,
            service,
            backoff: None,
        }
    }
}

impl Stream for Incoming {
    type Item = io::Result<Conn>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(backoff) = self.backoff.as_mut() {
                ready!(backoff.as_mut().poll(cx));
                self.backoff = None;
            }
            match ready!(self.listener.poll_accept(cx)) {
                Ok((tcp, remote)) => {
                    let Ok(permit) = self.slots.clone().try_acquire_owned() else {
                        metrics::counter!(names::CONNECTIONS_REJECTED, "service" => self.service)
                            .increment(1);
                        tracing::debug!(%remote, limit = self.limits.max_connections, "connection refused: too many open");
                        drop(tcp);
                        continue;
                    };
                    // Small answers go out at once: no Nagle delay waiting for the client's ACK.
                    if let Err(e) = tcp.set_nodelay(true) {
                        tracing::debug!(error = %e, "TCP_NODELAY not set");
                    }
                    return Poll::Ready(Some(Ok(Conn::new(
                        tcp,
                        remote,
                        permit,
                        self.limits,
                        self.service,
                    ))));
                }
                Err(e) => {
                    // These end one connection that was never ours; the rest (too many open
                    // files above all) last a while.
                    if !matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionAborted
                            | io::ErrorKind::ConnectionReset
                            | io::ErrorKind::ConnectionRefused
                            | io::ErrorKind::Interrupted
                    ) {
                        tracing::warn!(error = %e, "accepting a connection failed");
                        self.backoff = Some(Box::pin(tokio::time::sleep(ACCEPT_BACKOFF)));
                    }
                }
            }
        }
    }
}

/// What a connection and the calls on it share.
#[derive(Debug)]
pub(crate) struct ConnState {
    epoch: Instant,
    open_calls: AtomicUsize,
    /// Milliseconds from `epoch` to when the last open call ended.
    idle_since_ms: AtomicU64,
    handshake_done: AtomicBool,
    /// The responses of the connection, for the stall check of the connection itself.
    responses: Mutex<Vec<Weak<Progress>>>,
}

impl ConnState {
    pub(crate) fn new() -> Self {
        Self {
            epoch: Instant::now(),
            open_calls: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(0),
            handshake_done: AtomicBool::new(false),
            responses: Mutex::new(Vec::new()),
        }
    }

    /// Milliseconds since the connection was accepted, plus one so that zero means "none".
    pub(crate) fn stamp(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_millis())
            .unwrap_or(u64::MAX - 1)
            .saturating_add(1)
    }

    /// The instant of a [`ConnState::stamp`].
    pub(crate) fn instant(&self, stamp: u64) -> Instant {
        self.epoch + Duration::from_millis(stamp.saturating_sub(1))
    }

    pub(crate) fn call_started(&self) {
        self.handshake_done.store(true, Ordering::Relaxed);
        self.open_calls.fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn call_ended(&self) {
        // Stamped first: a check that sees no open call then sees this end too.
        self.idle_since_ms
            .store(self.stamp(Instant::now()), Ordering::Release);
        self.open_calls.fetch_sub(1, Ordering::AcqRel);
    }

    pub(crate) fn track(&self, progress: &Arc<Progress>) {
        let Ok(mut responses) = self.responses.lock() else {
            return;
        };
        // Dropped responses leave dead entries; clearing them here keeps the list as long as
        // the streams the connection may have open, not as long as its history.
        if responses.len() >= 32 && responses.len().is_power_of_two() {
            responses.retain(|w| w.strong_count() > 0);
        }
        responses.push(Arc::downgrade(progress));
    }

    /// Why the connection should close now, if it should.
    fn verdict(&self, now: Instant, limits: &ConnLimits) -> Option<Closed> {
        let age = now.saturating_duration_since(self.epoch);
        if !self.handshake_done.load(Ordering::Relaxed) && age >= limits.handshake_timeout {
            return Some(Closed::Handshake);
        }
        if self.open_calls.load(Ordering::Acquire) == 0 {
            let since = self.instant(self.idle_since_ms.load(Ordering::Acquire));
            if now.saturating_duration_since(since) >= limits.idle_timeout {
                return Some(Closed::Idle);
            }
        }
        let mut responses = self.responses.lock().ok()?;
        responses.retain(|w| w.strong_count() > 0);
        let stalled = responses.iter().filter_map(Weak::upgrade).any(|p| {
            let since = p.in_flight_since.load(Ordering::Acquire);
            since != 0
                && now.saturating_duration_since(self.instant(since))
                    >= limits.stall_timeout + STALL_MARGIN
        });
        stalled.then_some(Closed::Stalled)
    }
}

/// How far a response has got: whether a piece of it is waiting to be written, and since when.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    /// The [`ConnState::stamp`] of when the piece now waiting was handed out; 0 when none is.
    pub(crate) in_flight_since: AtomicU64,
    /// The response's task, woken when its piece has been written.
    pub(crate) waker: futures::task::AtomicWaker,
}

/// Why a connection closed itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closed {
    Handshake,
    Idle,
    Stalled,
}

impl Closed {
    fn as_str(self) -> &'static str {
        match self {
            Closed::Handshake => "handshake_timeout",
            Closed::Idle => "idle_timeout",
            Closed::Stalled => "stalled_response",
        }
    }
}

/// What a call learns of its connection (tonic puts it in the request's extensions).
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub remote_addr: Option<SocketAddr>,
    pub local_addr: Option<SocketAddr>,
    pub(crate) state: Arc<ConnState>,
}

/// One accepted connection: the socket, its place under the cap, and its timers.
pub struct Conn {
    tcp: TcpStream,
    info: ConnInfo,
    limits: ConnLimits,
    service: &'static str,
    /// How often the timeouts are checked.
    check: Interval,
    /// Bytes of the HTTP/2 preface seen so far; `None` once they differ from it.
    preface_seen: Option<usize>,
    closed: Option<Closed>,
    _slot: OwnedSemaphorePermit,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("remote", &self.info.remote_addr)
            .field("closed", &self.closed)
            .finish()
    }
}

impl Conn {
    fn new(
        tcp: TcpStream,
        remote: SocketAddr,
        slot: OwnedSemaphorePermit,
        limits: ConnLimits,
        service: &'static str,
    ) -> Self {
        let info = ConnInfo {
            remote_addr: Some(remote),
            local_addr: tcp.local_addr().ok(),
            state: Arc::new(ConnState::new()),
        };
        // A quarter of the shortest timeout: each fires at most that late.
        let every = limits
            .handshake_timeout
            .min(limits.idle_timeout)
            .min(limits.stall_timeout)
            .checked_div(4)
            .unwrap_or_default()
            .clamp(Duration::from_millis(5), Duration::from_secs(5));
        let mut check = tokio::time::interval_at(Instant::now() + every, every);
        check.set_missed_tick_behavior(MissedTickBehavior::Delay);
        metrics::gauge!(names::CONNECTIONS_OPEN, "service" => service).increment(1.0);
        Self {
            tcp,
            info,
            limits,
            service,
            check,
            preface_seen: Some(0),
            closed: None,
            _slot: slot,
        }
    }

    /// Runs the due checks; true once the connection is closed.
    fn poll_checks(&mut self, cx: &mut Context<'_>) -> bool {
        if self.closed.is_some() {
            return true;
        }
        while self.check.poll_tick(cx).is_ready() {
            if let Some(reason) = self.info.state.verdict(Instant::now(), &self.limits) {
                metrics::counter!(
                    names::CONNECTIONS_CLOSED,
                    "service" => self.service,
                    "reason" => reason.as_str()
                )
                .increment(1);
                if reason == Closed::Stalled {
                    tracing::warn!(remote = ?self.info.remote_addr, reason = reason.as_str(), "connection closed");
                } else {
                    tracing::debug!(remote = ?self.info.remote_addr, reason = reason.as_str(), "connection closed");
                }
                self.closed = Some(reason);
                return true;
            }
        }
        false
    }

    fn closed_error(&self) -> io::Error {
        let reason = self.closed.map_or("closed", Closed::as_str);
        io::Error::new(io::ErrorKind::TimedOut, reason)
    }
}

/// Follows the HTTP/2 preface through the first bytes read; true once it has arrived whole.
/// `seen` becomes `None` when the bytes differ from it (HTTP/1.1) or once it is complete.
fn advance_preface(seen: &mut Option<usize>, read: &[u8]) -> bool {
    let Some(so_far) = *seen else {
        return false;
    };
    let want = H2_PREFACE.get(so_far..).unwrap_or_default();
    let n = want.len().min(read.len());
    if want.get(..n) != read.get(..n) {
        *seen = None;
        return false;
    }
    let so_far = so_far + n;
    if so_far >= H2_PREFACE.len() {
        *seen = None;
        true
    } else {
        *seen = Some(so_far);
        false
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        metrics::gauge!(names::CONNECTIONS_OPEN, "service" => self.service).decrement(1.0);
    }
}

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        self.info.clone()
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.poll_checks(cx) {
            // End of stream: the server winds the connection down as if the client had left.
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.tcp).poll_read(cx, buf);
        if this.preface_seen.is_some()
            && let Some(read) = buf.filled().get(before..)
            && advance_preface(&mut this.preface_seen, read)
        {
            this.info
                .state
                .handshake_done
                .store(true, Ordering::Relaxed);
        }
        polled
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.poll_checks(cx) {
            return Poll::Ready(Err(this.closed_error()));
        }
        Pin::new(&mut this.tcp).poll_write(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.poll_checks(cx) {
            return Poll::Ready(Err(this.closed_error()));
        }
        Pin::new(&mut this.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.poll_checks(cx) {
            return Poll::Ready(Err(this.closed_error()));
        }
        Pin::new(&mut this.tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_preface_is_followed_across_reads() {
        // (reads, whether the handshake is done after the last one, still following)
        let cases: [(&[&[u8]], bool, bool); 5] = [
            (&[H2_PREFACE], true, false),
            (
                &[b"PRI * HTTP/2.0\r\n", b"\r\nSM\r\n\r\n\0\0\x12\x04"],
                true,
                false,
            ),
            (&[b"PRI * HT"], false, true),
            (
                &[b"POST /relief.v1.CaseService/GetCase HTTP/1.1\r\n"],
                false,
                false,
            ),
            (&[b"PRI * HTTP/2.0\r\n", b"garbage"], false, false),
        ];
        for (reads, done, following) in cases {
            let mut seen = Some(0);
            let mut complete = false;
            for read in reads {
                complete = advance_preface(&mut seen, read);
            }
            assert_eq!((complete, seen.is_some()), (done, following), "{reads:?}");
        }
    }
}
