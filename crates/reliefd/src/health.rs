//! Health that follows the database: a server whose database cannot be reached says
//! NOT_SERVING, so the gateway and load balancers stop sending it calls, and the calls that
//! still arrive are answered UNAVAILABLE at once instead of waiting for a connection.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use relief_store::Store;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

/// Whether the database answered the last probe; shared by the probe task and the gate in
/// front of the services.
#[derive(Debug, Clone)]
pub struct DatabaseUp(Arc<AtomicBool>);

impl DatabaseUp {
    pub fn new() -> Self {
        Self(Arc::new(AtomicBool::new(true)))
    }

    pub fn flag(&self) -> Arc<AtomicBool> {
        self.0.clone()
    }
}

impl Default for DatabaseUp {
    fn default() -> Self {
        Self::new()
    }
}

/// Probes the database every `interval` (each probe given `timeout`) and sets the health of
/// the whole server (`""`) and of each of `services` to follow it; logs each change once.
/// Runs until dropped.
///
/// A probe that fails or takes longer than `timeout` sets NOT_SERVING, and the first good
/// answer SERVING again. The probe has a connection of its own ([`Store::ping`]), so a pool
/// busy with calls does not look like a database that is down. `up` is the flag
/// `relief_api::DatabaseGateLayer` reads to answer relief's calls UNAVAILABLE meanwhile.
pub async fn follow_database(
    store: Store,
    reporter: HealthReporter,
    services: Vec<&'static str>,
    up: DatabaseUp,
    interval: Duration,
    timeout: Duration,
) {
    let mut every = tokio::time::interval(interval);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let answer = store.ping(timeout).await;
        let now_up = answer.is_ok();
        if up.0.swap(now_up, Ordering::Relaxed) == now_up {
            continue;
        }
        let status = if now_up {
            tracing::info!("database reachable again: serving");
            ServingStatus::Serving
        } else {
            let reason = answer.err().map(|e| e.to_string()).unwrap_or_default();
            tracing::warn!(error = %reason, "database unreachable: not serving");
            ServingStatus::NotServing
        };
        reporter.set_service_status("", status).await;
        for service in &services {
            reporter.set_service_status(*service, status).await;
        }
    }
}
