//! The gateway's settings: where it listens, its limits, CORS for browsers, and the routing
//! table (upstreams, each with its addresses and the districts it serves). Checked as a whole
//! before anything is bound.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use relief_domain::DistrictId;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewaySettings {
    pub listen: SocketAddr,
    /// Where `/metrics` is served; none when absent.
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// Every call is cut off after this long (or the caller's deadline, if sooner).
    #[serde(default = "defaults::request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// Largest message the gateway itself decodes or encodes (city-wide answers). Forwarded
    /// calls are streamed, and each backend applies its own limit.
    #[serde(default = "defaults::max_message_bytes")]
    pub max_message_bytes: usize,
    /// Calls forwarded to one district at once; more wait in line.
    #[serde(default = "defaults::district_concurrency")]
    pub district_concurrency: usize,
    /// How long a call waits for its district's line before RESOURCE_EXHAUSTED.
    #[serde(default = "defaults::queue_timeout_ms")]
    pub queue_timeout_ms: u64,
    /// How often each upstream's gRPC health service is asked.
    #[serde(default = "defaults::health_interval_ms")]
    pub health_interval_ms: u64,
    /// How long a health check may take before the upstream counts as down.
    #[serde(default = "defaults::health_timeout_ms")]
    pub health_timeout_ms: u64,
    /// How long connecting to an upstream may take.
    #[serde(default = "defaults::connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// On shutdown, calls in flight get this long to finish.
    #[serde(default = "defaults::shutdown_grace_ms")]
    pub shutdown_grace_ms: u64,
    /// Client connections open at once; more are closed as soon as they are accepted.
    #[serde(default = "defaults::connection_limit")]
    pub connection_limit: usize,
    /// How long a new connection may take to send the HTTP/2 preface or its first request.
    #[serde(default = "defaults::handshake_timeout_ms")]
    pub handshake_timeout_ms: u64,
    /// A connection with no call open on it for this long is closed.
    #[serde(default = "defaults::idle_timeout_ms")]
    pub idle_timeout_ms: u64,
    /// Interval of HTTP/2 keepalive pings on each client connection.
    #[serde(default = "defaults::http2_keepalive_interval_ms")]
    pub http2_keepalive_interval_ms: u64,
    /// A connection whose keepalive ping goes unanswered this long is closed.
    #[serde(default = "defaults::http2_keepalive_timeout_ms")]
    pub http2_keepalive_timeout_ms: u64,
    /// Calls open at once on one HTTP/2 client connection.
    #[serde(default = "defaults::max_concurrent_streams")]
    pub max_concurrent_streams: u32,
    /// A response whose reader reads nothing for this long, while data waits for it, is
    /// reset (RESOURCE_EXHAUSTED).
    #[serde(default = "defaults::stream_stall_timeout_ms")]
    pub stream_stall_timeout_ms: u64,
    #[serde(default)]
    pub cors: CorsSettings,
    /// The routing table.
    pub upstreams: Vec<UpstreamSettings>,
}

/// Which web origins may call the gateway from a browser.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsSettings {
    /// Origins such as `https://relief.city.gov.cn`; `["*"]` allows any origin.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// How long a browser may cache a preflight answer.
    #[serde(default = "defaults::cors_max_age_secs")]
    pub max_age_secs: u64,
}

impl Default for CorsSettings {
    fn default() -> Self {
        Self {
            allowed_origins: Vec::new(),
            max_age_secs: defaults::cors_max_age_secs(),
        }
    }
}

/// One backend (or a set of identical replicas) and the districts it serves.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSettings {
    /// A name for logs and metrics.
    pub name: String,
    /// `http://host:port` of each replica; calls are balanced across them.
    pub addresses: Vec<String>,
    /// The 6-digit codes of the districts whose calls go here.
    pub districts: Vec<String>,
}

mod defaults {
    pub fn request_timeout_ms() -> u64 {
        10_000
    }
    pub fn max_message_bytes() -> usize {
        4 * 1024 * 1024
    }
    pub fn district_concurrency() -> usize {
        128
    }
    pub fn queue_timeout_ms() -> u64 {
        2_000
    }
    pub fn health_interval_ms() -> u64 {
        1_000
    }
    pub fn health_timeout_ms() -> u64 {
        1_000
    }
    pub fn connect_timeout_ms() -> u64 {
        1_000
    }
    pub fn shutdown_grace_ms() -> u64 {
        10_000
    }
    pub fn cors_max_age_secs() -> u64 {
        600
    }
    pub fn connection_limit() -> usize {
        1_000
    }
    pub fn handshake_timeout_ms() -> u64 {
        10_000
    }
    pub fn idle_timeout_ms() -> u64 {
        300_000
    }
    pub fn http2_keepalive_interval_ms() -> u64 {
        30_000
    }
    pub fn http2_keepalive_timeout_ms() -> u64 {
        10_000
    }
    pub fn max_concurrent_streams() -> u32 {
        256
    }
    pub fn stream_stall_timeout_ms() -> u64 {
        30_000
    }
}

/// A configuration the gateway cannot run with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("gateway configuration: {0}")]
pub struct ConfigError(pub String);

impl GatewaySettings {
    /// The routing table: each district to the index of its upstream. Every district must be
    /// served by exactly one upstream, and every upstream must have an address and a name of
    /// its own.
    pub fn routing_table(&self) -> Result<BTreeMap<DistrictId, usize>, ConfigError> {
        let err = |m: String| Err(ConfigError(m));
        if self.upstreams.is_empty() {
            return err("no upstreams: the routing table is empty".to_owned());
        }
        if self.district_concurrency == 0 {
            return err("district_concurrency must be at least 1".to_owned());
        }
        if self.request_timeout_ms == 0 || self.health_interval_ms == 0 {
            return err("request_timeout_ms and health_interval_ms must be positive".to_owned());
        }
        self.check_connection_limits()?;
        let mut names = std::collections::BTreeSet::new();
        let mut table = BTreeMap::new();
        for (i, up) in self.upstreams.iter().enumerate() {
            if up.name.trim().is_empty() || !names.insert(up.name.as_str()) {
                return err(format!("upstream {i}: names must be present and distinct"));
            }
            if up.addresses.is_empty() {
                return err(format!("upstream {}: no addresses", up.name));
            }
            for a in &up.addresses {
                match a.parse::<http::Uri>() {
                    Ok(uri) if uri.scheme_str() == Some("http") && uri.authority().is_some() => {}
                    _ => {
                        return err(format!(
                            "upstream {}: address {a:?} is not http://host:port",
                            up.name
                        ));
                    }
                }
            }
            if up.districts.is_empty() {
                return err(format!("upstream {}: serves no district", up.name));
            }
            for d in &up.districts {
                let id = DistrictId::parse(d).map_err(|e| {
                    ConfigError(format!("upstream {}: district {d:?}: {e}", up.name))
                })?;
                if let Some(other) = table.insert(id, i) {
                    return err(format!(
                        "district {d} is routed to both {} and {}",
                        self.upstreams[other].name, up.name
                    ));
                }
            }
        }
        Ok(table)
    }
}

impl GatewaySettings {
    /// The bounds of each client connection.
    pub fn conn_limits(&self) -> relief_net::ConnLimits {
        relief_net::ConnLimits {
            max_connections: self.connection_limit,
            handshake_timeout: Duration::from_millis(self.handshake_timeout_ms),
            idle_timeout: Duration::from_millis(self.idle_timeout_ms),
            stall_timeout: Duration::from_millis(self.stream_stall_timeout_ms),
            keepalive_interval: Duration::from_millis(self.http2_keepalive_interval_ms),
            keepalive_timeout: Duration::from_millis(self.http2_keepalive_timeout_ms),
            max_concurrent_streams: self.max_concurrent_streams,
        }
    }

    fn check_connection_limits(&self) -> Result<(), ConfigError> {
        let ranges: [(&str, u64, u64, u64); 7] = [
            (
                "connection_limit",
                u64::try_from(self.connection_limit).unwrap_or(u64::MAX),
                1,
                100_000,
            ),
            (
                "handshake_timeout_ms",
                self.handshake_timeout_ms,
                100,
                600_000,
            ),
            ("idle_timeout_ms", self.idle_timeout_ms, 100, 86_400_000),
            (
                "http2_keepalive_interval_ms",
                self.http2_keepalive_interval_ms,
                100,
                3_600_000,
            ),
            (
                "http2_keepalive_timeout_ms",
                self.http2_keepalive_timeout_ms,
                100,
                600_000,
            ),
            (
                "max_concurrent_streams",
                u64::from(self.max_concurrent_streams),
                1,
                10_000,
            ),
            (
                "stream_stall_timeout_ms",
                self.stream_stall_timeout_ms,
                100,
                3_600_000,
            ),
        ];
        for (field, value, min, max) in ranges {
            if !(min..=max).contains(&value) {
                return Err(ConfigError(format!(
                    "{field} must be between {min} and {max}"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn settings() -> GatewaySettings {
        GatewaySettings {
            listen: "127.0.0.1:0".parse().unwrap(),
            metrics_listen: None,
            request_timeout_ms: 1000,
            max_message_bytes: 1024,
            district_concurrency: 4,
            queue_timeout_ms: 100,
            health_interval_ms: 100,
            health_timeout_ms: 100,
            connect_timeout_ms: 100,
            shutdown_grace_ms: 100,
            connection_limit: 10,
            handshake_timeout_ms: 1000,
            idle_timeout_ms: 1000,
            http2_keepalive_interval_ms: 1000,
            http2_keepalive_timeout_ms: 1000,
            max_concurrent_streams: 10,
            stream_stall_timeout_ms: 1000,
            cors: CorsSettings::default(),
            upstreams: Vec::new(),
        }
    }

    fn upstream(name: &str, address: &str, districts: &[&str]) -> UpstreamSettings {
        UpstreamSettings {
            name: name.to_owned(),
            addresses: vec![address.to_owned()],
            districts: districts.iter().map(|d| (*d).to_owned()).collect(),
        }
    }

    #[test]
    fn a_shared_upstream_serves_several_districts() {
        let mut s = settings();
        s.upstreams = vec![
            upstream("a", "http://10.0.0.1:50051", &["430112", "430102"]),
            upstream("b", "http://10.0.0.2:50051", &["430104"]),
        ];
        let table = s.routing_table().unwrap();
        assert_eq!(table.len(), 3);
        assert_eq!(table[&DistrictId::parse("430102").unwrap()], 0);
        assert_eq!(table[&DistrictId::parse("430104").unwrap()], 1);
    }

    #[test]
    fn a_district_routed_twice_is_refused() {
        let mut s = settings();
        s.upstreams = vec![
            upstream("a", "http://10.0.0.1:50051", &["430112"]),
            upstream("b", "http://10.0.0.2:50051", &["430112"]),
        ];
        let e = s.routing_table().unwrap_err();
        assert!(e.0.contains("routed to both a and b"), "{e}");
    }

    #[test]
    fn bad_addresses_and_districts_are_refused() {
        let mut s = settings();
        s.upstreams = vec![upstream("a", "10.0.0.1:50051", &["430112"])];
        assert!(s.routing_table().unwrap_err().0.contains("not http://"));
        s.upstreams = vec![upstream("a", "http://10.0.0.1:50051", &["4301"])];
        assert!(
            s.routing_table()
                .unwrap_err()
                .0
                .contains("district \"4301\"")
        );
        s.upstreams = Vec::new();
        assert!(s.routing_table().unwrap_err().0.contains("empty"));
    }
}
