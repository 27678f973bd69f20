//! The wire check: requests are checked on the protobuf bytes, before decoding makes them cost
//! memory. A message of a few megabytes can hold millions of empty elements, each of which
//! would be decoded into a struct and then validated; here the elements are counted first, and
//! every string is checked against the text rules of `relief_domain::text` on the way.
//!
//! - [`WireCodec`] is the codec of every generated relief service and client (relief-proto
//!   names it in its build script). For a request of the contract it walks the bytes once
//!   ([`scan`]): repeated fields over [`Limits::max_repeated_elements`], nesting over
//!   [`Limits::max_depth`] and text the rules refuse are `INVALID_ARGUMENT` naming the field
//!   path; bytes that are not protobuf are `INTERNAL`. Responses pass through as prost has
//!   them.
//! - [`WireLayer`] sits on the server. It makes the server's [`Limits`] known to the codec
//!   for the duration of each call (a codec is built with `Default` by generated code, so it
//!   cannot be handed them), and turns tonic's `OUT_OF_RANGE` for an oversized message into
//!   `RESOURCE_EXHAUSTED`.
//! - [`status`] builds the `INVALID_ARGUMENT` that relief-api's error mapping and the codec
//!   both answer, at most twenty violations and a message under 1 KiB.
//!
//! This crate and relief-api are the only ones that make `tonic::Status` values for clients;
//! it knows no handler, store or database.

mod codec;
mod layer;
mod scan;
mod schema;
pub mod status;

use std::sync::OnceLock;

pub use codec::{WireCodec, WireDecoder};
pub use layer::{SizeStatusBody, Wire, WireFuture, WireLayer};
pub use schema::{LONG_TEXTS, Schema, SchemaError};
pub use status::{invalid_argument, rewrite_size_status};

/// What one request may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The most elements a repeated field may have, counted over the whole request
    /// (`server.max_repeated_elements`).
    pub max_repeated_elements: usize,
    /// The most levels messages may nest below the request.
    pub max_depth: usize,
}

/// `server.max_repeated_elements` unless configured: above every cap the services set on a
/// list themselves (200 cases per `AddMeetingCases`), far below what a 4 MiB message holds.
pub const DEFAULT_MAX_REPEATED_ELEMENTS: usize = 1_000;
/// relief's requests nest five messages deep at most.
pub const MAX_DEPTH: usize = 32;

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_repeated_elements: DEFAULT_MAX_REPEATED_ELEMENTS,
            max_depth: MAX_DEPTH,
        }
    }
}

tokio::task_local! {
    /// The limits of the server serving the call being polled, set by [`WireLayer`].
    static LIMITS: Limits;
}

/// The limits of the call being served; the defaults outside a server with a [`WireLayer`]
/// (the gateway's city-wide calls, whose requests hold no list).
pub fn current_limits() -> Limits {
    LIMITS.try_with(|l| *l).unwrap_or_default()
}

/// Where the codec finds the contract it checks requests against. relief-proto implements
/// it for its descriptor set: this crate cannot depend on relief-proto, whose generated code
/// names this crate's codec.
pub trait Contract: 'static {
    /// The contract's schema, built once; an error fails every request closed.
    fn schema() -> Result<&'static Schema, &'static SchemaError>;
}

/// Builds the schema of `descriptor_set` into `cell` on first use: the body of a
/// [`Contract::schema`].
pub fn schema_once(
    cell: &'static OnceLock<Result<Schema, SchemaError>>,
    descriptor_set: &[u8],
) -> Result<&'static Schema, &'static SchemaError> {
    cell.get_or_init(|| Schema::from_descriptor_set(descriptor_set))
        .as_ref()
}
