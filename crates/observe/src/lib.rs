//! What operators see of every call, the same on the backends and on the gateway.
//!
//! [`ObserveLayer`] wraps a whole gRPC server. For each call it makes sure an
//! `x-request-id` is present (keeping the caller's, or making one), opens a tracing span
//! carrying it so the handler's own log lines name it, and when the response's last frame
//! has gone out (or the caller went away) writes one access-log line and records the call in
//! the metrics: requests by method, status code and district, latency, and calls in flight.
//! Whoever learns the call's district (the backend's token check, the gateway's router)
//! writes it into the [`CallLabels`] found in the request's extensions. The metrics' method
//! and district labels take only the values in [`KnownLabels`] (the services' methods; the
//! districts of the backend's store or of the gateway's routing table); anything else is
//! counted as `other`.
//!
//! [`metrics_endpoint`] serves the process's metrics in the Prometheus text format, rendered
//! by `metrics-exporter-prometheus`, on a port of its own.

mod body;
mod endpoint;
mod labels;
mod layer;

pub use endpoint::{MetricsEndpoint, metrics_endpoint};
pub use labels::{CITY, KnownLabels, NO_DISTRICT, OTHER};
pub use layer::{CallLabels, Observe, ObserveLayer, REQUEST_ID_HEADER};

/// Metric names, so dashboards and tests spell them the same way.
pub mod names {
    /// Counter: finished calls, labelled `service`, `method`, `code`, `district`.
    pub const REQUESTS: &str = "relief_grpc_requests_total";
    /// Histogram (seconds): call durations, labelled `service`, `method`, `district`.
    pub const DURATION: &str = "relief_grpc_request_duration_seconds";
    /// Gauge: calls in flight, labelled `service`.
    pub const IN_FLIGHT: &str = "relief_grpc_requests_in_flight";
    /// Gauge: database connections, labelled `state` (`idle`, `in_use`, `max`).
    pub const DB_POOL: &str = "relief_db_pool_connections";
    /// Gauge: 1 when an upstream answers its health check, else 0; labelled `upstream`.
    pub const UPSTREAM_UP: &str = "relief_gateway_upstream_up";
    /// Counter: calls the gateway refused because a district's concurrency limit was full.
    pub const DISTRICT_REJECTED: &str = "relief_gateway_district_rejected_total";
    /// Gauge: client connections open, labelled `service`.
    pub const CONNECTIONS_OPEN: &str = "relief_connections_open";
    /// Counter: connections closed as soon as they were accepted because as many as allowed
    /// were open, labelled `service`.
    pub const CONNECTIONS_REJECTED: &str = "relief_connections_rejected_total";
    /// Counter: connections the server closed itself, labelled `service` and `reason`
    /// (`handshake_timeout`, `idle_timeout`, `stalled_response`).
    pub const CONNECTIONS_CLOSED: &str = "relief_connections_closed_total";
    /// Counter: responses reset because their reader read nothing for the stall timeout,
    /// labelled `service`.
    pub const STREAMS_STALLED: &str = "relief_streams_stalled_total";
    /// Counter: approval decisions committed by DecideCase, labelled `district` and `path`:
    /// `optimistic`
    /// when the case read before joining the district's queue of writers was still current,
    /// `queued` when the decision had to be taken again in the queue.
    pub const DECISIONS: &str = "relief_decisions_total";
}

/// The way a DecideCase call's decision was committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecisionPath {
    /// Read before joining the district's queue, and still current at the write.
    Optimistic,
    /// Taken again inside the queue, after the first attempt failed.
    Queued,
}

impl DecisionPath {
    pub const fn as_str(self) -> &'static str {
        match self {
            DecisionPath::Optimistic => "optimistic",
            DecisionPath::Queued => "queued",
        }
    }
}

impl KnownLabels {
    /// Counts one committed decision in `district` ([`names::DECISIONS`]).
    pub fn count_decision(&self, district: &str, path: DecisionPath) {
        metrics::counter!(
            names::DECISIONS,
            "district" => self.district(district).to_owned(),
            "path" => path.as_str()
        )
        .increment(1);
    }
}
