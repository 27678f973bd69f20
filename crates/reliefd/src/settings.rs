//! Typed settings: built-in defaults, then an optional TOML file, then `RELIEF_*` environment
//! variables (`RELIEF_DATABASE_URL` sets `database.url`, `RELIEF_SERVER_LISTEN` sets
//! `server.listen`: the first `_` after the prefix separates section and key). Everything is
//! validated before a port is bound.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use relief_domain::rules::{
    ApprovalChain, ApprovalStep, Category, FiscalYearBudget, StepCondition,
};
use relief_domain::{CategoryCode, DistrictId, FundRules, Money, Role, StepId, text};
use secrecy::SecretString;
use serde::Deserialize;

/// The configuration a newcomer gets with no file at all: the example district on a SQLite
/// file under `./data`, trusting the development key (no other key source is configured).
pub const DEFAULT_CONFIG_TOML: &str = include_str!("../../../deploy/config/relief.toml");
/// The development key pair, which relief-auth owns and recognises.
pub use relief_auth::{DEV_JWKS_JSON, DEV_KID, DEV_SIGNING_KEY_PEM};

/// The sections `RELIEF_*` variables may set; others (`RELIEF_CONFIG`, the test suite's
/// `RELIEF_TEST_*`) are not settings.
const SECTIONS: [&str; 6] = [
    "server_",
    "database_",
    "auth_",
    "log_",
    "gateway_",
    "audit_",
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub auth: AuthSettings,
    #[serde(default)]
    pub log: LogSettings,
    /// The audit chain's signed checkpoints.
    #[serde(default)]
    pub audit: AuditSettings,
    /// Districts declared by configuration, created at start-up when missing.
    #[serde(default)]
    pub districts: Vec<DistrictSeed>,
    /// The city gateway (`reliefd gateway`): its port, limits and routing table.
    #[serde(default)]
    pub gateway: Option<relief_gateway::GatewaySettings>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub max_message_bytes: usize,
    pub request_timeout_ms: u64,
    pub concurrency_limit: usize,
    pub shutdown_grace_ms: u64,
    /// Largest page a List call returns.
    pub max_page_size: u32,
    /// Where `/metrics` (Prometheus text) is served; none when absent.
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// How often a change-feed watcher with nothing new looks again for changes committed
    /// by other replicas on the same database.
    #[serde(default = "default_watch_poll_ms")]
    pub watch_poll_ms: u64,
    /// How long request ids (and their answers) are kept for retries, in days.
    #[serde(default = "default_request_id_retention_days")]
    pub request_id_retention_days: u32,
    /// How often the database is probed; health follows its answer.
    #[serde(default = "default_health_check_interval_ms")]
    pub health_check_interval_ms: u64,
    /// How long a probe of the database may take before it counts as unreachable.
    #[serde(default = "default_health_check_timeout_ms")]
    pub health_check_timeout_ms: u64,
    /// Reads over a district's whole year or history (chain and ledger verification,
    /// exports, indicators, the report, the city comparison) run at once; more wait in line.
    #[serde(default = "default_max_concurrent_heavy_reads")]
    pub max_concurrent_heavy_reads: usize,
    /// The most elements a repeated field of a request may have (counted on the wire, before
    /// decoding); above every list limit of the services.
    #[serde(default = "default_max_repeated_elements")]
    pub max_repeated_elements: usize,
    /// Client connections open at once; more are closed as soon as they are accepted.
    #[serde(default = "default_connection_limit")]
    pub connection_limit: usize,
    /// How long a new connection may take to send the HTTP/2 preface or its first request.
    #[serde(default = "default_handshake_timeout_ms")]
    pub handshake_timeout_ms: u64,
    /// A connection with no call open on it for this long is closed.
    #[serde(default = "default_idle_timeout_ms")]
    pub idle_timeout_ms: u64,
    /// Interval of HTTP/2 keepalive pings on each connection.
    #[serde(default = "default_http2_keepalive_interval_ms")]
    pub http2_keepalive_interval_ms: u64,
    /// A connection whose keepalive ping goes unanswered this long is closed.
    #[serde(default = "default_http2_keepalive_timeout_ms")]
    pub http2_keepalive_timeout_ms: u64,
    /// Calls open at once on one HTTP/2 connection.
    #[serde(default = "default_max_concurrent_streams")]
    pub max_concurrent_streams: u32,
    /// A response whose reader reads nothing for this long, while data waits for it, is
    /// reset (RESOURCE_EXHAUSTED).
    #[serde(default = "default_stream_stall_timeout_ms")]
    pub stream_stall_timeout_ms: u64,
    /// Bytes of changes (or export rows) a stream holds ready for its reader.
    #[serde(default = "default_stream_buffer_bytes")]
    pub stream_buffer_bytes: usize,
    /// Streams (WatchChanges, StreamCaseExport) one caller may hold open at once.
    #[serde(default = "default_max_streams_per_caller")]
    pub max_streams_per_caller: usize,
    /// Streams open at once about one district on this server.
    #[serde(default = "default_max_streams_per_district")]
    pub max_streams_per_district: usize,
}

fn default_max_concurrent_heavy_reads() -> usize {
    relief_api::DEFAULT_HEAVY_READS
}

fn default_health_check_interval_ms() -> u64 {
    500
}

fn default_health_check_timeout_ms() -> u64 {
    1_000
}

fn default_max_repeated_elements() -> usize {
    relief_wire::DEFAULT_MAX_REPEATED_ELEMENTS
}

/// The longest list a service accepts (`AddMeetingCases`' case ids): the wire limit may not
/// be lower.
const MIN_REPEATED_ELEMENTS: usize = 200;

fn default_watch_poll_ms() -> u64 {
    1_000
}

fn default_connection_limit() -> usize {
    500
}

fn default_handshake_timeout_ms() -> u64 {
    10_000
}

fn default_idle_timeout_ms() -> u64 {
    300_000
}

fn default_http2_keepalive_interval_ms() -> u64 {
    30_000
}

fn default_http2_keepalive_timeout_ms() -> u64 {
    10_000
}

fn default_max_concurrent_streams() -> u32 {
    1_024
}

fn default_stream_stall_timeout_ms() -> u64 {
    30_000
}

fn default_stream_buffer_bytes() -> usize {
    256 * 1024
}

fn default_max_streams_per_caller() -> usize {
    8
}

fn default_max_streams_per_district() -> usize {
    64
}

fn default_request_id_retention_days() -> u32 {
    7
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `sqlite://path/to/file.db` or `postgres://user@host/db`.
    pub url: String,
    pub max_connections: u32,
    pub acquire_timeout_ms: u64,
    pub busy_timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    pub issuer: String,
    pub audience: String,
    /// Accepted algorithms: any of `EdDSA`, `ES256`, `RS256`, and `HS256` with a secret.
    pub algorithms: Vec<String>,
    /// A JWKS file with the public keys, selected by `kid`.
    #[serde(default)]
    pub jwks_path: Option<PathBuf>,
    /// The JWKS itself, instead of a file.
    #[serde(default)]
    pub jwks_json: Option<String>,
    /// Trust the development key (its private half is public): absent, only when no other
    /// key source (`jwks_path`, `jwks_json`, `hs256_secret`) is configured; `true`, besides
    /// them; `false`, never, and a key set holding it is an error. Whatever this says,
    /// `serve` and `gateway` refuse to trust it on a non-loopback address.
    #[serde(default)]
    pub allow_dev_keys: Option<bool>,
    /// HS256 shared secret, for development only.
    #[serde(default)]
    pub hs256_secret: Option<SecretString>,
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
}

fn default_leeway() -> u64 {
    relief_auth::DEFAULT_LEEWAY_SECS
}

/// How the server signs checkpoints of the audit chains.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSettings {
    /// An Ed25519 private key in PKCS#8 PEM. Without one, a key is generated once and kept
    /// in the database.
    #[serde(default)]
    pub signing_key_path: Option<PathBuf>,
    /// A district's chain is checkpointed after this many events…
    #[serde(default = "default_checkpoint_every_events")]
    pub checkpoint_every_events: u32,
    /// …or this long after its last checkpoint, when events came since.
    #[serde(default = "default_checkpoint_every_minutes")]
    pub checkpoint_every_minutes: u32,
}

fn default_checkpoint_every_events() -> u32 {
    1_000
}

fn default_checkpoint_every_minutes() -> u32 {
    60
}

impl Default for AuditSettings {
    fn default() -> Self {
        Self {
            signing_key_path: None,
            checkpoint_every_events: default_checkpoint_every_events(),
            checkpoint_every_minutes: default_checkpoint_every_minutes(),
        }
    }
}

impl AuditSettings {
    /// The configured signing key, read and parsed; `None` when none is configured.
    pub fn signing_key(&self) -> Result<Option<relief_domain::audit::AuditSigner>, Error> {
        let Some(path) = &self.signing_key_path else {
            return Ok(None);
        };
        let bad = |e: &dyn std::fmt::Display| {
            invalid(
                "audit.signing_key_path",
                format_args!("{}: {e}", path.display()),
            )
        };
        let pem = std::fs::read_to_string(path).map_err(|e| bad(&e))?;
        relief_domain::audit::AuditSigner::from_pkcs8_pem(&pem)
            .map(Some)
            .map_err(|e| bad(&e))
    }

    /// When checkpoints fall due.
    pub fn policy(&self) -> relief_domain::audit::CheckpointPolicy {
        relief_domain::audit::CheckpointPolicy {
            every_events: i64::from(self.checkpoint_every_events),
            every_us: i64::from(self.checkpoint_every_minutes) * 60_000_000,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Pretty,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    #[serde(default)]
    pub format: LogFormat,
    /// A tracing filter such as `info` or `relief_api=debug,info`; `RUST_LOG` wins when set.
    #[serde(default = "default_filter")]
    pub filter: String,
}

fn default_filter() -> String {
    "info".to_owned()
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Pretty,
            filter: default_filter(),
        }
    }
}

/// A district declared in configuration, with its fund rules in plain units.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistrictSeed {
    pub id: String,
    pub name: String,
    pub rules: RulesSeed,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesSeed {
    pub case_cap_fen: i64,
    pub repeat_relief_wait_days: u32,
    pub follow_up_after_days: Vec<u32>,
    #[serde(default)]
    pub required_payment_documents: Vec<String>,
    pub budgets: Vec<BudgetSeed>,
    pub categories: Vec<CategorySeed>,
    pub steps: Vec<StepSeed>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetSeed {
    pub fiscal_year: i32,
    pub allocated_fen: i64,
    pub target_case_count: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CategorySeed {
    pub code: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepSeed {
    pub id: String,
    pub name: String,
    pub role: String,
    pub deadline_days: u32,
    #[serde(default)]
    pub batched: bool,
    #[serde(default)]
    pub min_amount_fen: Option<i64>,
    #[serde(default)]
    pub only_over_cap: bool,
}

/// A configuration problem; `reliefd` exits with code 64 on any of them.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("configuration: {0}")]
    Load(Box<figment::Error>),
    #[error("configuration: {field}: {reason}")]
    Invalid { field: String, reason: String },
}

fn invalid(field: impl Into<String>, reason: impl std::fmt::Display) -> Error {
    Error::Invalid {
        field: field.into(),
        reason: reason.to_string(),
    }
}

impl Settings {
    /// Defaults, then `file` (if any), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Settings, Error> {
        let mut fig = Figment::from(Toml::string(DEFAULT_CONFIG_TOML));
        // The example district belongs to the built-in configuration only: a deployment's own
        // file declares its own districts, or none.
        let mut own_districts = true;
        if let Some(f) = file {
            let file_fig = Figment::from(Toml::file_exact(f));
            own_districts = file_fig.find_value("districts").is_ok();
            fig = fig.merge(file_fig);
        }
        fig = fig.merge(
            Env::prefixed("RELIEF_")
                .filter(|k| {
                    SECTIONS
                        .iter()
                        .any(|s| k.as_str().to_ascii_lowercase().starts_with(s))
                })
                .map(|k| k.as_str().replacen('_', ".", 1).into()),
        );
        let mut settings: Settings = fig.extract().map_err(|e| Error::Load(Box::new(e)))?;
        if !own_districts {
            settings.districts.clear();
        }
        settings.validate()?;
        Ok(settings)
    }

    /// The built-in defaults overlaid with TOML text, without the environment and without
    /// the example district unless `text` declares districts: for tests and tools.
    pub fn from_toml(text: &str) -> Result<Settings, Error> {
        let own = Figment::from(Toml::string(text));
        let own_districts = own.find_value("districts").is_ok();
        let mut settings: Settings = Figment::from(Toml::string(DEFAULT_CONFIG_TOML))
            .merge(own)
            .extract()
            .map_err(|e| Error::Load(Box::new(e)))?;
        if !own_districts {
            settings.districts.clear();
        }
        settings.validate()?;
        Ok(settings)
    }

    pub fn validate(&self) -> Result<(), Error> {
        let s = &self.server;
        if !(1024..=64 * 1024 * 1024).contains(&s.max_message_bytes) {
            return Err(invalid(
                "server.max_message_bytes",
                "must be between 1 KiB and 64 MiB",
            ));
        }
        if !(100..=600_000).contains(&s.request_timeout_ms) {
            return Err(invalid(
                "server.request_timeout_ms",
                "must be between 100 and 600000",
            ));
        }
        if !(1..=100_000).contains(&s.concurrency_limit) {
            return Err(invalid(
                "server.concurrency_limit",
                "must be between 1 and 100000",
            ));
        }
        if s.shutdown_grace_ms > 600_000 {
            return Err(invalid(
                "server.shutdown_grace_ms",
                "must be at most 600000",
            ));
        }
        if !(1..=3_650).contains(&s.request_id_retention_days) {
            return Err(invalid(
                "server.request_id_retention_days",
                "must be between 1 and 3650",
            ));
        }
        if !(10..=600_000).contains(&s.watch_poll_ms) {
            return Err(invalid(
                "server.watch_poll_ms",
                "must be between 10 and 600000",
            ));
        }
        if !(1..=64).contains(&s.max_concurrent_heavy_reads) {
            return Err(invalid(
                "server.max_concurrent_heavy_reads",
                "must be between 1 and 64",
            ));
        }
        if !(50..=60_000).contains(&s.health_check_interval_ms) {
            return Err(invalid(
                "server.health_check_interval_ms",
                "must be between 50 and 60000",
            ));
        }
        if !(50..=60_000).contains(&s.health_check_timeout_ms) {
            return Err(invalid(
                "server.health_check_timeout_ms",
                "must be between 50 and 60000",
            ));
        }
        if !(MIN_REPEATED_ELEMENTS..=1_000_000).contains(&s.max_repeated_elements) {
            return Err(invalid(
                "server.max_repeated_elements",
                format_args!("must be between {MIN_REPEATED_ELEMENTS} and 1000000"),
            ));
        }
        let ranges: [(&str, u64, u64, u64); 7] = [
            (
                "server.connection_limit",
                u64::try_from(s.connection_limit).unwrap_or(u64::MAX),
                1,
                100_000,
            ),
            (
                "server.handshake_timeout_ms",
                s.handshake_timeout_ms,
                100,
                600_000,
            ),
            ("server.idle_timeout_ms", s.idle_timeout_ms, 100, 86_400_000),
            (
                "server.http2_keepalive_interval_ms",
                s.http2_keepalive_interval_ms,
                100,
                3_600_000,
            ),
            (
                "server.http2_keepalive_timeout_ms",
                s.http2_keepalive_timeout_ms,
                100,
                600_000,
            ),
            (
                "server.max_concurrent_streams",
                u64::from(s.max_concurrent_streams),
                1,
                10_000,
            ),
            (
                "server.stream_stall_timeout_ms",
                s.stream_stall_timeout_ms,
                100,
                3_600_000,
            ),
        ];
        for (field, value, min, max) in ranges {
            if !(min..=max).contains(&value) {
                return Err(invalid(
                    field,
                    format_args!("must be between {min} and {max}"),
                ));
            }
        }
        if !(4 * 1024..=64 * 1024 * 1024).contains(&s.stream_buffer_bytes) {
            return Err(invalid(
                "server.stream_buffer_bytes",
                "must be between 4 KiB and 64 MiB",
            ));
        }
        if !(1..=10_000).contains(&s.max_streams_per_caller) {
            return Err(invalid(
                "server.max_streams_per_caller",
                "must be between 1 and 10000",
            ));
        }
        if !(1..=100_000).contains(&s.max_streams_per_district) {
            return Err(invalid(
                "server.max_streams_per_district",
                "must be between 1 and 100000",
            ));
        }
        if !(1..=10_000).contains(&s.max_page_size) {
            return Err(invalid(
                "server.max_page_size",
                "must be between 1 and 10000",
            ));
        }
        let d = &self.database;
        if !(d.url.starts_with("sqlite:")
            || d.url.starts_with("postgres://")
            || d.url.starts_with("postgresql://"))
        {
            return Err(invalid(
                "database.url",
                "must start with sqlite: or postgres://",
            ));
        }
        if !(1..=1000).contains(&d.max_connections) {
            return Err(invalid(
                "database.max_connections",
                "must be between 1 and 1000",
            ));
        }
        self.auth.verifier_config()?;
        let a = &self.audit;
        if !(1..=1_000_000).contains(&a.checkpoint_every_events) {
            return Err(invalid(
                "audit.checkpoint_every_events",
                "must be between 1 and 1000000",
            ));
        }
        if !(1..=10_080).contains(&a.checkpoint_every_minutes) {
            return Err(invalid(
                "audit.checkpoint_every_minutes",
                "must be between 1 and 10080 (a week)",
            ));
        }
        a.signing_key()?;
        if let Some(g) = &self.gateway {
            g.routing_table().map_err(|e| invalid("gateway", e.0))?;
        }
        for (i, dist) in self.districts.iter().enumerate() {
            dist.to_domain().map_err(|e| match e {
                Error::Invalid { field, reason } => {
                    invalid(format!("districts[{i}].{field}"), reason)
                }
                other => other,
            })?;
        }
        Ok(())
    }
}

impl ServerSettings {
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

    /// The bounds of the server-streaming calls.
    pub fn stream_limits(&self) -> relief_api::StreamLimits {
        relief_api::StreamLimits {
            per_caller: self.max_streams_per_caller,
            per_district: self.max_streams_per_district,
            buffer_bytes: self.stream_buffer_bytes,
        }
    }
}

impl AuthSettings {
    /// The verifier's configuration, with the JWKS read from wherever it was given.
    pub fn verifier_config(&self) -> Result<relief_auth::VerifierConfig, Error> {
        let mut algorithms = Vec::new();
        for a in &self.algorithms {
            let alg = match a.as_str() {
                "EdDSA" => relief_auth::Algorithm::EdDSA,
                "ES256" => relief_auth::Algorithm::ES256,
                "RS256" => relief_auth::Algorithm::RS256,
                "HS256" => relief_auth::Algorithm::HS256,
                other => {
                    return Err(invalid(
                        "auth.algorithms",
                        format_args!("unsupported algorithm {other}"),
                    ));
                }
            };
            algorithms.push(alg);
        }
        let jwks_json =
            match (&self.jwks_json, &self.jwks_path) {
                (Some(json), _) => Some(json.clone()),
                (None, Some(path)) => Some(std::fs::read_to_string(path).map_err(|e| {
                    invalid("auth.jwks_path", format_args!("{}: {e}", path.display()))
                })?),
                (None, None) => None,
            };
        let trust_dev_key = self.adds_dev_key();
        if jwks_json.is_none() && !trust_dev_key {
            if self.hs256_secret.is_none() {
                return Err(invalid(
                    "auth.jwks_path",
                    "no keys configured: set jwks_path to the deployment's JWKS (`reliefd keygen` makes one)",
                ));
            }
            if algorithms
                .iter()
                .any(|a| *a != relief_auth::Algorithm::HS256)
            {
                return Err(invalid(
                    "auth.jwks_path",
                    "EdDSA, ES256 and RS256 need public keys: set jwks_path (or jwks_json), or accept HS256 only",
                ));
            }
        }
        let mut cfg = relief_auth::VerifierConfig::new(self.issuer.clone(), self.audience.clone());
        cfg.algorithms = algorithms;
        cfg.jwks_json = jwks_json;
        cfg.hs256_secret = self.hs256_secret.clone();
        cfg.leeway_secs = self.leeway_secs;
        cfg.trust_dev_key = trust_dev_key;
        let verifier = relief_auth::Verifier::new(cfg.clone()).map_err(|e| invalid("auth", e))?;
        if self.allow_dev_keys == Some(false)
            && let Some(kid) = verifier.dev_key_kid()
        {
            return Err(invalid(
                "auth.allow_dev_keys",
                format_args!(
                    "is false, but the configured key set holds the development key (kid {kid:?}), \
                     whose private half is public in the relief repository; remove it and configure \
                     the deployment's own keys (`reliefd keygen`)"
                ),
            ));
        }
        Ok(cfg)
    }

    /// Whether the built-in development key joins the key set: as `allow_dev_keys` says, or,
    /// when it says nothing, only if no other key source is configured.
    pub fn adds_dev_key(&self) -> bool {
        self.allow_dev_keys.unwrap_or(
            self.jwks_path.is_none() && self.jwks_json.is_none() && self.hs256_secret.is_none(),
        )
    }
}

#[cfg(test)]
mod auth_tests;

impl DistrictSeed {
    pub fn to_domain(&self) -> Result<(DistrictId, String, FundRules), Error> {
        let id = DistrictId::parse(&self.id).map_err(|e| invalid("id", e))?;
        let r = &self.rules;
        let money = |field: &str, fen: i64| Money::from_fen(fen).map_err(|e| invalid(field, e));
        // Configured text is stored as text from the wire is: checked, in NFC.
        let text = |field: &str, value: &str, kind: text::Kind| {
            text::clean(value, kind)
                .map(|t| t.into_owned())
                .map_err(|e| invalid(field, e))
        };
        let name = text("name", &self.name, text::Kind::Line)?;
        let mut budgets = Vec::new();
        for (i, b) in r.budgets.iter().enumerate() {
            budgets.push(FiscalYearBudget {
                fiscal_year: b.fiscal_year,
                allocated: money(
                    &format!("rules.budgets[{i}].allocated_fen"),
                    b.allocated_fen,
                )?,
                target_case_count: b.target_case_count,
            });
        }
        let mut categories = Vec::new();
        for (i, c) in r.categories.iter().enumerate() {
            categories.push(Category {
                code: CategoryCode::parse(&c.code)
                    .map_err(|e| invalid(format!("rules.categories[{i}].code"), e))?,
                name: text(
                    &format!("rules.categories[{i}].name"),
                    &c.name,
                    text::Kind::Line,
                )?,
                description: text(
                    &format!("rules.categories[{i}].description"),
                    &c.description,
                    text::Kind::Long,
                )?,
            });
        }
        let mut steps = Vec::new();
        for (i, s) in r.steps.iter().enumerate() {
            let f = |n: &str| format!("rules.steps[{i}].{n}");
            steps.push(ApprovalStep {
                id: StepId::parse(&s.id).map_err(|e| invalid(f("id"), e))?,
                name: text(&f("name"), &s.name, text::Kind::Line)?,
                role: s.role.parse::<Role>().map_err(|e| invalid(f("role"), e))?,
                deadline_days: s.deadline_days,
                condition: StepCondition {
                    min_amount: s
                        .min_amount_fen
                        .map(|m| money(&f("min_amount_fen"), m))
                        .transpose()?,
                    only_over_cap: s.only_over_cap,
                },
                batched: s.batched,
            });
        }
        let rules = FundRules {
            case_cap: money("rules.case_cap_fen", r.case_cap_fen)?,
            budgets,
            categories,
            repeat_relief_wait_days: r.repeat_relief_wait_days,
            follow_up_after_days: r.follow_up_after_days.clone(),
            approval_chain: ApprovalChain { steps },
            required_payment_documents: r
                .required_payment_documents
                .iter()
                .enumerate()
                .map(|(i, d)| {
                    text(
                        &format!("rules.required_payment_documents[{i}]"),
                        d,
                        text::Kind::Line,
                    )
                })
                .collect::<Result<_, _>>()?,
            grading: relief_domain::rules::Grading::default(),
        };
        rules.validate("rules").map_err(|v| {
            let first = v.into_iter().next();
            match first {
                Some(v) => invalid(v.field, v.description),
                None => invalid("rules", "invalid"),
            }
        })?;
        Ok((id, name, rules))
    }
}
