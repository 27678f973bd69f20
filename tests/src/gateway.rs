//! A gateway in front of test backends, started the way `reliefd gateway` starts one: the
//! test names which backend serves which districts.

use std::net::SocketAddr;
use std::sync::Arc;

use relief_auth::Verifier;
use relief_gateway::{CorsSettings, Gateway, GatewaySettings, UpstreamSettings};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use crate::TestApp;

/// The origin the test gateway allows for browsers.
pub const WEB_ORIGIN: &str = "https://relief.example.gov.cn";

/// A running gateway. Dropping it stops it.
pub struct TestGateway {
    pub addr: SocketAddr,
    pub metrics_addr: Option<SocketAddr>,
    channel: Channel,
    shutdown: Option<oneshot::Sender<()>>,
    _server: JoinHandle<anyhow::Result<()>>,
}

impl std::fmt::Debug for TestGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestGateway")
            .field("addr", &self.addr)
            .finish()
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl TestGateway {
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }
}

/// Gateway settings on port 0 with metrics, routing each backend's districts to it.
pub fn gateway_settings(routes: &[(&TestApp, &[&str])]) -> GatewaySettings {
    GatewaySettings {
        listen: "127.0.0.1:0".parse().expect("address"),
        metrics_listen: Some("127.0.0.1:0".parse().expect("address")),
        request_timeout_ms: 10_000,
        max_message_bytes: 4 * 1024 * 1024,
        district_concurrency: 64,
        queue_timeout_ms: 2_000,
        health_interval_ms: 200,
        health_timeout_ms: 2_000,
        connect_timeout_ms: 500,
        shutdown_grace_ms: 1_000,
        connection_limit: 1_000,
        handshake_timeout_ms: 10_000,
        idle_timeout_ms: 300_000,
        http2_keepalive_interval_ms: 30_000,
        http2_keepalive_timeout_ms: 10_000,
        max_concurrent_streams: 256,
        stream_stall_timeout_ms: 30_000,
        cors: CorsSettings {
            allowed_origins: vec![WEB_ORIGIN.to_owned()],
            max_age_secs: 600,
        },
        upstreams: routes
            .iter()
            .enumerate()
            .map(|(i, (app, districts))| UpstreamSettings {
                name: format!("backend-{i}-{:?}", app.backend).to_lowercase(),
                addresses: vec![format!("http://{}", app.addr)],
                districts: districts.iter().map(|d| (*d).to_owned()).collect(),
            })
            .collect(),
    }
}

/// Starts a gateway with `settings`, verifying tokens as the test backends do.
pub async fn spawn_gateway(settings: GatewaySettings) -> TestGateway {
    crate::init_test_log();
    // The backends' own auth settings: the gateway checks tokens by the same rules.
    let backend = reliefd::settings::Settings::from_toml(&crate::settings_toml(
        "sqlite://unused/relief.db",
        1,
    ))
    .expect("test settings are valid");
    let config = backend.auth.verifier_config().expect("test auth settings");
    let verifier = Arc::new(Verifier::new(config).expect("test verifier"));
    let gateway = Gateway::build(settings, verifier)
        .await
        .expect("the gateway builds");
    let addr = gateway.local_addr();
    let metrics_addr = gateway.metrics_addr();
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(gateway.run_until_stopped(async move {
        let _ = rx.await;
    }));
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("valid uri")
        .connect()
        .await
        .expect("the gateway accepts connections");
    TestGateway {
        addr,
        metrics_addr,
        channel,
        shutdown: Some(tx),
        _server: server,
    }
}
