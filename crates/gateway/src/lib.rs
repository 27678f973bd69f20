//! The city gateway: one address for the city platform, mobile app backends and sync jobs.
//!
//! Every call is checked (token, district) with the same rules as the backends and forwarded
//! without decoding to the backend that serves its district (`proxy.rs`); the city-wide calls
//! are answered by asking every backend (`fanout.rs`). Upstreams are health-checked
//! (`upstream.rs`), each district waits in its own line so a busy district cannot starve the
//! others, and browsers speak gRPC-Web to it with CORS. The backends still verify everything
//! themselves: the gateway is a router, not a trust boundary.

pub mod config;
mod error;
mod fanout;
mod proxy;
mod upstream;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use http::{HeaderName, HeaderValue, Method};
use relief_auth::{DISTRICT_HEADER, Verifier};
use relief_observe::{
    KnownLabels, MetricsEndpoint, ObserveLayer, REQUEST_ID_HEADER, metrics_endpoint,
};
use tokio::net::TcpListener;
use tonic::service::Routes;
use tonic::transport::Server;
use tower_http::cors::{AllowOrigin, CorsLayer};

pub use config::{ConfigError, CorsSettings, GatewaySettings, UpstreamSettings};
pub use fanout::{CITY_COMPARISON, LIST_DISTRICTS};

use crate::proxy::{Proxy, Route, Shared};
use crate::upstream::Upstream;

/// A built gateway, bound and ready to serve.
pub struct Gateway {
    settings: GatewaySettings,
    listener: TcpListener,
    metrics: Option<MetricsEndpoint>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("listen", &self.listener.local_addr().ok())
            .field("upstreams", &self.shared.upstreams.len())
            .finish()
    }
}

impl Gateway {
    /// Checks the routing table, asks every upstream's health once, and binds the ports.
    pub async fn build(settings: GatewaySettings, verifier: Arc<Verifier>) -> anyhow::Result<Self> {
        let table = settings.routing_table()?;
        let mut upstreams = Vec::with_capacity(settings.upstreams.len());
        for (i, up) in settings.upstreams.iter().enumerate() {
            let districts = table
                .iter()
                .filter(|&(_, &j)| j == i)
                .map(|(d, _)| d.clone())
                .collect();
            upstreams.push(Arc::new(Upstream::new(up, districts, &settings)?));
        }
        let routes: HashMap<_, _> = table
            .iter()
            .map(|(d, &i)| {
                (
                    d.clone(),
                    Route::new(upstreams[i].clone(), settings.district_concurrency),
                )
            })
            .collect();
        // Bad CORS origins are a configuration error, found before anything is bound.
        let _ = cors_layer(&settings.cors)?;
        let health_timeout = Duration::from_millis(settings.health_timeout_ms);
        futures::future::join_all(upstreams.iter().map(|u| u.check(health_timeout))).await;
        let listener = TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("binding {}", settings.listen))?;
        let metrics = match settings.metrics_listen {
            Some(addr) => Some(metrics_endpoint(addr).await?),
            None => None,
        };
        let shared = Arc::new(Shared {
            verifier,
            routes,
            upstreams,
            district_concurrency: settings.district_concurrency,
            queue_timeout: Duration::from_millis(settings.queue_timeout_ms),
            request_timeout: Duration::from_millis(settings.request_timeout_ms),
            max_message_bytes: settings.max_message_bytes,
        });
        Ok(Self {
            settings,
            listener,
            metrics,
            shared,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or(self.settings.listen)
    }

    /// Where `/metrics` is served, when it is.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().and_then(|m| m.local_addr().ok())
    }

    /// Serves until `shutdown` resolves, then lets calls in flight finish for the grace
    /// period and stops.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let addr = self.local_addr();
        let s = &self.settings;
        let watcher = tokio::spawn(upstream::watch(
            self.shared.upstreams.clone(),
            Duration::from_millis(s.health_interval_ms),
            Duration::from_millis(s.health_timeout_ms),
        ));
        let (metrics_stop, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
        let metrics = self.metrics.map(|m| {
            tokio::spawn(m.serve(async {
                let _ = metrics_stopped.await;
            }))
        });

        // The gateway's own health: it answers while it runs; upstream health is its own
        // matter, reported per district by the calls themselves.
        let (_reporter, health) = tonic_health::server::health_reporter();
        let proxy = Proxy {
            shared: self.shared.clone(),
        };
        let routes = Routes::from(axum::Router::new().fallback_service(proxy)).add_service(health);
        // The metrics name the routed districts only: a token may name any district.
        let labels = KnownLabels::relief()?;
        labels.add_districts(self.shared.routes.keys().map(|d| d.as_str()));
        let limits = s.conn_limits();
        let router = relief_net::http2(Server::builder(), &limits)
            .accept_http1(true)
            .timeout(Duration::from_millis(s.request_timeout_ms))
            .layer(relief_net::ConnLayer::new(limits.stall_timeout, "gateway"))
            .layer(cors_layer(&s.cors)?)
            .layer(tonic_web::GrpcWebLayer::new())
            .layer(ObserveLayer::new("gateway", labels))
            .add_routes(routes);

        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let incoming = relief_net::Incoming::new(self.listener, limits, "gateway");
        let server = tokio::spawn(router.serve_with_incoming_shutdown(incoming, async {
            let _ = stop_rx.await;
        }));
        tracing::info!(
            %addr,
            upstreams = self.shared.upstreams.len(),
            districts = self.shared.routes.len(),
            "relief gateway serving"
        );
        shutdown.await;
        tracing::info!("gateway shutting down");
        let _ = stop_tx.send(());
        let grace = Duration::from_millis(s.shutdown_grace_ms);
        let result = match tokio::time::timeout(grace, server).await {
            Ok(joined) => joined.context("gateway task")?.context("gateway"),
            Err(_) => {
                tracing::warn!(grace_ms = s.shutdown_grace_ms, "grace period over");
                Ok(())
            }
        };
        watcher.abort();
        let _ = metrics_stop.send(());
        if let Some(m) = metrics {
            let _ = m.await;
        }
        result
    }
}

/// CORS for gRPC-Web callers: the configured origins, POST with the gRPC-Web and relief
/// headers, and the gRPC status headers readable by the page.
fn cors_layer(settings: &CorsSettings) -> anyhow::Result<CorsLayer> {
    let origins = if settings.allowed_origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        let list = settings
            .allowed_origins
            .iter()
            .map(|o| {
                HeaderValue::from_str(o)
                    .map_err(|_| ConfigError(format!("CORS origin {o:?} is not a header value")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        AllowOrigin::list(list)
    };
    let allow: Vec<HeaderName> = [
        "authorization",
        "content-type",
        "x-grpc-web",
        "x-user-agent",
        "grpc-timeout",
        DISTRICT_HEADER,
        REQUEST_ID_HEADER,
    ]
    .into_iter()
    .map(HeaderName::from_static)
    .collect();
    let expose: Vec<HeaderName> = [
        "grpc-status",
        "grpc-message",
        "grpc-status-details-bin",
        REQUEST_ID_HEADER,
    ]
    .into_iter()
    .map(HeaderName::from_static)
    .collect();
    Ok(CorsLayer::new()
        .allow_origin(origins)
        .allow_methods([Method::POST, Method::OPTIONS])
        .allow_headers(allow)
        .expose_headers(expose)
        .max_age(Duration::from_secs(settings.max_age_secs)))
}
