//! The metrics port: Prometheus text rendered by `metrics-exporter-prometheus`, served over
//! HTTP at `/metrics`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use anyhow::Context as _;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;

use crate::names;

/// Latency buckets in seconds: sub-millisecond reads up to the ten-second call timeout.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How often histograms are compacted.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// The process's one recorder, installed by the first endpoint bound in it.
static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
/// Held while installing, so that two endpoints bound at once install one recorder.
static INSTALLING: Mutex<()> = Mutex::new(());

fn handle() -> anyhow::Result<PrometheusHandle> {
    if let Some(h) = HANDLE.get() {
        return Ok(h.clone());
    }
    let _installing = INSTALLING
        .lock()
        .map_err(|_| anyhow::anyhow!("metrics recorder installation failed earlier"))?;
    if let Some(h) = HANDLE.get() {
        return Ok(h.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(names::DURATION.to_owned()), &LATENCY_BUCKETS)
        .context("latency buckets")?
        .install_recorder()
        .context("installing the metrics recorder")?;
    Ok(HANDLE.get_or_init(|| handle).clone())
}

/// A bound metrics port.
pub struct MetricsEndpoint {
    listener: TcpListener,
    handle: PrometheusHandle,
}

impl std::fmt::Debug for MetricsEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsEndpoint")
            .field("listen", &self.listener.local_addr().ok())
            .finish()
    }
}

/// Installs the recorder (once per process) and binds `addr` for `/metrics`.
pub async fn metrics_endpoint(addr: SocketAddr) -> anyhow::Result<MetricsEndpoint> {
    let handle = handle()?;
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the metrics port {addr}"))?;
    Ok(MetricsEndpoint { listener, handle })
}

impl MetricsEndpoint {
    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// Serves `/metrics` until `shutdown` resolves.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let upkeep = self.handle.clone();
        let upkeep = tokio::spawn(async move {
            let mut every = tokio::time::interval(UPKEEP_EVERY);
            loop {
                every.tick().await;
                upkeep.run_upkeep();
            }
        });
        let handle = self.handle;
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let handle = handle.clone();
                async move {
                    (
                        [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                        handle.render(),
                    )
                }
            }),
        );
        if let Err(e) = axum::serve(self.listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "metrics endpoint stopped");
        }
        upkeep.abort();
    }
}
