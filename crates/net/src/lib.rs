//! What the backends and the gateway hold for each client connection, and its bounds.
//!
//! [`Incoming`] accepts TCP connections up to a cap (more are closed at once and counted),
//! with `TCP_NODELAY`. Each accepted [`Conn`] closes itself when it never completes its
//! HTTP/2 preface or first request ([`ConnLimits::handshake_timeout`]), when no call has been
//! open on it for [`ConnLimits::idle_timeout`], and when one of its responses has had data
//! waiting on a reader that reads nothing for longer than [`ConnLimits::stall_timeout`] (and
//! a margin) without that response ending itself. [`ConnLayer`] is the tower layer that
//! counts the open calls of each connection and wraps every response body in a
//! [`GuardedBody`]: it hands the body to HTTP/2 in pieces, each only once the one before has
//! been written out, and ends with `RST_STREAM(ENHANCE_YOUR_CALM)` (RESOURCE_EXHAUSTED for a
//! gRPC client) when a piece waits longer than the stall timeout.
//!
//! hyper and tonic already do the rest: HTTP/2 keepalive pings with a timeout and the cap on
//! concurrent streams per connection are [`http2`]'s settings of tonic's server.

mod body;
mod conn;
mod layer;

use std::time::Duration;

pub use body::GuardedBody;
pub use conn::{Conn, ConnInfo, Incoming};
pub use layer::{ConnLayer, ConnService};

/// The bounds of every connection of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    /// Connections open at once; more are closed as soon as they are accepted.
    pub max_connections: usize,
    /// How long a connection may take to send the HTTP/2 preface or its first request.
    pub handshake_timeout: Duration,
    /// How long a connection may stay open with no call on it.
    pub idle_timeout: Duration,
    /// How long a response may wait on a reader that reads nothing.
    pub stall_timeout: Duration,
    /// Interval of HTTP/2 keepalive pings.
    pub keepalive_interval: Duration,
    /// How long a keepalive ping may wait for its answer before the connection is closed.
    pub keepalive_timeout: Duration,
    /// Streams (calls) open at once on one HTTP/2 connection.
    pub max_concurrent_streams: u32,
}

/// tonic's server with the HTTP/2 bounds of `limits`: keepalive pings and their timeout, and
/// the cap on concurrent streams per connection.
pub fn http2<L>(
    server: tonic::transport::Server<L>,
    limits: &ConnLimits,
) -> tonic::transport::Server<L> {
    server
        .http2_keepalive_interval(Some(limits.keepalive_interval))
        .http2_keepalive_timeout(Some(limits.keepalive_timeout))
        .max_concurrent_streams(Some(limits.max_concurrent_streams))
}
