//! Upstreams: one HTTP/2 channel per backend (balanced over its replicas) and whether it is
//! answering its gRPC health checks. A district whose upstream is down is refused at once
//! with UNAVAILABLE instead of waiting for a connection that will not come.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use relief_domain::DistrictId;
use relief_observe::names;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::config::{ConfigError, GatewaySettings, UpstreamSettings};

/// One backend (or a set of identical replicas).
#[derive(Debug)]
pub struct Upstream {
    pub name: String,
    pub channel: Channel,
    /// The districts the routing table sends here, in order.
    pub districts: Vec<DistrictId>,
    up: AtomicBool,
    /// Health checks failed in a row.
    failures: AtomicU32,
    /// Why the upstream counts as down, for the callers it turns away.
    down_reason: Mutex<String>,
}

/// Health checks that must fail in a row before an upstream counts as down, so that one
/// slow answer on a busy machine does not turn a district away.
const FAILURES_BEFORE_DOWN: u32 = 2;

impl Upstream {
    pub fn new(
        settings: &UpstreamSettings,
        districts: Vec<DistrictId>,
        gateway: &GatewaySettings,
    ) -> Result<Self, ConfigError> {
        let endpoints = settings
            .addresses
            .iter()
            .map(|a| {
                Endpoint::from_shared(a.clone())
                    .map(|e| {
                        e.connect_timeout(Duration::from_millis(gateway.connect_timeout_ms))
                            .tcp_nodelay(true)
                            .http2_keep_alive_interval(Duration::from_secs(30))
                            .keep_alive_while_idle(true)
                    })
                    .map_err(|e| ConfigError(format!("upstream {}: {a}: {e}", settings.name)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let channel = match endpoints.as_slice() {
            [one] => one.connect_lazy(),
            _ => Channel::balance_list(endpoints.into_iter()),
        };
        Ok(Self {
            name: settings.name.clone(),
            channel,
            districts,
            up: AtomicBool::new(false),
            failures: AtomicU32::new(0),
            down_reason: Mutex::new("it has not answered a health check yet".to_owned()),
        })
    }

    /// Whether the routing table sends `district`'s calls here.
    pub fn serves(&self, district: &str) -> bool {
        self.districts.iter().any(|d| d.as_str() == district)
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Why the upstream counts as down, as the callers it turns away are told.
    pub fn down_reason(&self) -> String {
        self.down_reason
            .lock()
            .map(|r| r.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }

    /// Records what a health check showed; an upstream goes down after
    /// [`FAILURES_BEFORE_DOWN`] failures in a row, or `at_once` (or if it never answered),
    /// and up at its first good answer. Logs changes.
    fn record(&self, up: bool, at_once: bool, why: &str) {
        if up {
            self.failures.store(0, Ordering::Relaxed);
        } else {
            if let Ok(mut reason) = self.down_reason.lock() {
                why.clone_into(&mut reason);
            }
            let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
            if !at_once && failures < FAILURES_BEFORE_DOWN && self.is_up() {
                tracing::debug!(upstream = %self.name, reason = why, "health check failed");
                return;
            }
        }
        let was = self.up.swap(up, Ordering::Relaxed);
        metrics::gauge!(names::UPSTREAM_UP, "upstream" => self.name.clone()).set(if up {
            1.0
        } else {
            0.0
        });
        if was != up {
            if up {
                tracing::info!(upstream = %self.name, "upstream is serving");
            } else {
                tracing::warn!(upstream = %self.name, reason = why, "upstream is down");
            }
        }
    }

    /// Asks the upstream's health service once and records the answer.
    pub async fn check(&self, timeout: Duration) {
        let mut client = HealthClient::new(self.channel.clone());
        let mut request = tonic::Request::new(HealthCheckRequest {
            service: String::new(),
        });
        request.set_timeout(timeout);
        match tokio::time::timeout(timeout, client.check(request)).await {
            Ok(Ok(answer)) if answer.get_ref().status == ServingStatus::Serving as i32 => {
                self.record(true, false, "");
            }
            // An answer, not a failure to answer: the backend knows it cannot serve (its
            // database is unreachable), so it is taken out of routing at once.
            Ok(Ok(_)) => self.record(false, true, "it reports that it is not serving"),
            Ok(Err(status)) => self.record(
                false,
                false,
                &format!(
                    "it is not answering its health checks ({})",
                    status.message()
                ),
            ),
            Err(_) => self.record(
                false,
                false,
                "it is not answering its health checks (timed out)",
            ),
        }
    }
}

/// Checks every upstream every `interval`, until the task is dropped.
pub async fn watch(upstreams: Vec<Arc<Upstream>>, interval: Duration, timeout: Duration) {
    let mut every = tokio::time::interval(interval);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        futures::future::join_all(upstreams.iter().map(|u| u.check(timeout))).await;
    }
}
