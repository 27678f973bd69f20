//! The end-to-end harness: spawns the real server (`reliefd::Application`) on port 0 with a
//! fresh database per test, mints tokens for personas, builds valid applications, and runs
//! every test on SQLite always and on PostgreSQL when `RELIEF_TEST_POSTGRES_URL` is set.
//!
//! Tests talk to the server only through real gRPC clients; the store is used only to read
//! the event log back, never to set anything up behind the API's back.

#![allow(clippy::unwrap_used, clippy::expect_used)]
// Wire messages are built with `..Default::default()` even where every field is named today,
// so a field added to the contract does not break the suite's build.
#![allow(clippy::needless_update)]

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use relief_auth::{Minter, Scope, TokenSpec};
use relief_domain::{Clock, DistrictId, Subject, UnitId};
use relief_proto::v1 as pb;
use relief_proto::v1::case_service_client::CaseServiceClient;
use relief_proto::v1::district_service_client::DistrictServiceClient;
use relief_store::{EventRecord, Store};
use sea_orm::{ConnectionTrait as _, Database};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_types::StatusExt as _;

pub use relief_domain::Role;

pub mod db_proxy;
pub mod gateway;
pub mod raw;

/// 望城区, the seed district, configured exactly as `deploy/config/relief.toml` has it.
pub const WANGCHENG: &str = "430112";
/// 芙蓉区, a second district with the same rules: the other tenant in tenancy tests.
pub const FURONG: &str = "430102";

pub const ISSUER: &str = "relief-test";
pub const AUDIENCE: &str = "relief";
pub const ED25519_KID: &str = "test-ed25519";
pub const ES256_KID: &str = "test-es256";
pub const RS256_KID: &str = "test-rs256";

pub const JWKS_JSON: &str = include_str!("../keys/jwks.json");
pub const TEST_ED25519_PEM: &[u8] = include_bytes!("../keys/test-ed25519.pem");
pub const TEST_ED25519_PUB_PEM: &[u8] = include_bytes!("../keys/test-ed25519.pub.pem");
pub const OTHER_ED25519_PEM: &[u8] = include_bytes!("../keys/other-ed25519.pem");
pub const TEST_ES256_PEM: &[u8] = include_bytes!("../keys/test-es256.pem");
pub const TEST_RS256_PEM: &[u8] = include_bytes!("../keys/test-rs256.pem");

/// The per-case soft cap of both test districts, in fen (50,000 yuan).
pub const CASE_CAP_FEN: i64 = 5_000_000;
/// The largest page the server returns (`server.max_page_size` of the defaults).
pub const MAX_PAGE_SIZE: usize = 500;
/// The page size when a request gives none.
pub const DEFAULT_PAGE_SIZE: usize = 50;
/// The first step of the Wangcheng chain.
pub const FIRST_STEP: &str = "case_officer_review";

/// Where the suite runs PostgreSQL tests: a server URL whose user may create databases.
pub const POSTGRES_URL_ENV: &str = "RELIEF_TEST_POSTGRES_URL";
/// A file each PostgreSQL test that ran appends one line to, so CI can prove they ran.
pub const POSTGRES_LOG_ENV: &str = "RELIEF_TEST_POSTGRES_LOG";
/// Set to see the server's logs.
pub const TEST_LOG_ENV: &str = "TEST_LOG";

/// The database a test app runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Instantiates each listed `async fn name(backend: Backend)` as two tests, `sqlite::name`
/// and `postgres::name`. The PostgreSQL variant returns early (with a note) when
/// `RELIEF_TEST_POSTGRES_URL` is unset, and records itself in `RELIEF_TEST_POSTGRES_LOG`
/// when it ran to the end. Use once per module.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name($crate::Backend::Sqlite).await;
                }
            )+
        }

        mod postgres {
            $(
                #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let test = concat!(module_path!(), "::", stringify!($name));
                    if !$crate::postgres_enabled(test) {
                        return;
                    }
                    super::$name($crate::Backend::Postgres).await;
                    $crate::record_postgres_run(test);
                }
            )+
        }
    };
}

/// The PostgreSQL server URL, when the environment gives one.
pub fn postgres_url() -> Option<String> {
    std::env::var(POSTGRES_URL_ENV)
        .ok()
        .filter(|u| !u.trim().is_empty())
}

/// Whether a PostgreSQL variant should run; prints why not when it should not.
pub fn postgres_enabled(test: &str) -> bool {
    if postgres_url().is_some() {
        true
    } else {
        eprintln!("note: {test}: {POSTGRES_URL_ENV} is not set, PostgreSQL variant not run");
        false
    }
}

/// Appends `test` to the file named by `RELIEF_TEST_POSTGRES_LOG`, if set. O_APPEND keeps
/// the lines of concurrent tests whole.
pub fn record_postgres_run(test: &str) {
    let Ok(path) = std::env::var(POSTGRES_LOG_ENV) else {
        return;
    };
    if path.trim().is_empty() {
        return;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("cannot open {POSTGRES_LOG_ENV}={path}: {e}"));
    file.write_all(format!("{test}\n").as_bytes())
        .unwrap_or_else(|e| panic!("cannot write {POSTGRES_LOG_ENV}={path}: {e}"));
}

/// Installs a log subscriber once, only when `TEST_LOG` is set; the server installs none.
pub fn init_test_log() {
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        if std::env::var_os(TEST_LOG_ENV).is_some() {
            let filter = tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_test_writer()
                .try_init();
        }
    });
}

/// A fresh PostgreSQL database, dropped when the app is.
#[derive(Debug)]
pub struct PgDatabase {
    admin_url: String,
    name: String,
}

/// Replaces the database name of a PostgreSQL URL, keeping any query string.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let authority_end = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    let query = query.map(|q| format!("?{q}")).unwrap_or_default();
    format!("{}/{name}{query}", &base[..authority_end])
}

/// Creates a fresh, uniquely named database on the PostgreSQL server at `admin_url` and
/// returns it with its URL.
pub async fn create_pg_database(admin_url: &str) -> (PgDatabase, String) {
    let name = format!("relief_t_{}", uuid::Uuid::now_v7().simple());
    let admin = Database::connect(admin_url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {POSTGRES_URL_ENV}: {e}"));
    admin
        .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
        .await
        .unwrap_or_else(|e| panic!("cannot create database {name}: {e}"));
    let _ = admin.close().await;
    let url = with_database(admin_url, &name);
    (
        PgDatabase {
            admin_url: admin_url.to_owned(),
            name,
        },
        url,
    )
}

/// Best effort: a database left behind by a crash only costs disk space.
pub fn drop_pg_database(pg: PgDatabase) {
    let worker = std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async {
            if let Ok(admin) = Database::connect(&pg.admin_url).await {
                let _ = admin
                    .execute_unprepared(&format!(
                        "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                        pg.name
                    ))
                    .await;
                let _ = admin.close().await;
            }
        });
    });
    let _ = worker.join();
}

/// The rules block of both test districts: a copy of the `[[districts]]` block of
/// `deploy/config/relief.toml` with `{id}` and `{name}` filled in.
const DISTRICT_TOML: &str = r#"
[[districts]]
id = "{id}"
name = "{name}"

[districts.rules]
case_cap_fen = 5000000
repeat_relief_wait_days = 365
follow_up_after_days = [90, 180, 365]

[[districts.rules.budgets]]
fiscal_year = 2022
allocated_fen = 128000000
target_case_count = 48

[[districts.rules.categories]]
code = "reasonable_without_legal_basis"
name = "于法无据、于情有理"
description = "诉求于法无据但于情有理，通过救助能够息访罢诉"

[[districts.rules.categories]]
code = "no_responsible_party"
name = "无责任主体或无力承担"
description = "确需救助但无责任主体单位或责任主体单位无力承担，且不会引起攀比"

[[districts.rules.categories]]
code = "other_hardship"
name = "其他确需救助"
description = "其他确需救助的情形"

[[districts.rules.steps]]
id = "case_officer_review"
name = "经办科室审查"
role = "case_officer"
deadline_days = 5

[[districts.rules.steps]]
id = "deputy_leader_review"
name = "分管领导复审"
role = "deputy_leader"
deadline_days = 5

[[districts.rules.steps]]
id = "bureau_head_review"
name = "主要负责人审核"
role = "bureau_head"
deadline_days = 5

[[districts.rules.steps]]
id = "party_group_decision"
name = "局党组研究"
role = "bureau_office"
deadline_days = 30
batched = true

[[districts.rules.steps]]
id = "district_leader_approval"
name = "分管区领导审批"
role = "district_leader"
deadline_days = 10
"#;

/// The settings of a test server: port 0, the given database, the test keys, and the two
/// test districts.
pub fn settings_toml(database_url: &str, max_connections: u32) -> String {
    let mut text = format!(
        r#"
[server]
listen = "127.0.0.1:0"
# Debug builds are several times slower than release ones: the 10,000-record import test
# needs more than the production default of 10 s.
request_timeout_ms = 60000

[database]
url = "{database_url}"
max_connections = {max_connections}

[auth]
issuer = "{ISSUER}"
audience = "{AUDIENCE}"
algorithms = ["EdDSA", "ES256"]
allow_dev_keys = false
jwks_json = '''
{JWKS_JSON}'''
"#
    );
    for (id, name) in [(WANGCHENG, "望城区"), (FURONG, "芙蓉区")] {
        text.push_str(&DISTRICT_TOML.replace("{id}", id).replace("{name}", name));
    }
    text
}

/// Changes a test app's settings before it is built.
pub type Tweak = Arc<dyn Fn(&mut reliefd::Settings) + Send + Sync>;

/// How to build a test app beyond the defaults.
#[derive(Default, Clone)]
pub struct SpawnOptions {
    /// The server's clock; the system clock when `None`.
    pub clock: Option<Arc<dyn Clock>>,
    /// Serve `/metrics` on a port of its own.
    pub metrics: bool,
    /// PostgreSQL only: reach the database through a [`db_proxy::DbProxy`] the test can cut.
    pub database_proxy: bool,
    /// Applied to the settings last.
    pub tweak: Option<Tweak>,
    /// Checkpoint each district's audit chain after this many events (the default 1,000
    /// when `None`).
    pub checkpoint_every_events: Option<u32>,
    /// The audit signing key (PKCS#8 PEM) given as `audit.signing_key_path`; generated and
    /// kept in the database when `None`.
    pub audit_signing_key_pem: Option<&'static [u8]>,
    /// More `[server]` settings, each a TOML line such as `"idle_timeout_ms = 500"`.
    pub server: Vec<String>,
}

impl std::fmt::Debug for SpawnOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpawnOptions")
            .field("metrics", &self.metrics)
            .field("database_proxy", &self.database_proxy)
            .field("checkpoint_every_events", &self.checkpoint_every_events)
            .finish_non_exhaustive()
    }
}

/// A running server with its own database. Dropping it stops the server and, on PostgreSQL,
/// drops the database.
pub struct TestApp {
    pub addr: SocketAddr,
    /// Where `/metrics` is served, when the options asked for it.
    pub metrics_addr: Option<SocketAddr>,
    pub backend: Backend,
    /// The server's store, for reading the event log back.
    pub store: Store,
    /// The relay to the database, when the options asked for one.
    pub db_proxy: Option<db_proxy::DbProxy>,
    channel: Channel,
    minter: Minter,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
    _sqlite_dir: Option<tempfile::TempDir>,
    pg: Option<PgDatabase>,
}

impl std::fmt::Debug for TestApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestApp")
            .field("addr", &self.addr)
            .field("backend", &self.backend)
            .finish()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        // The server is left to wind down on the runtime; it is not awaited here.
        drop(self.server.take());
        if let Some(pg) = self.pg.take() {
            drop_pg_database(pg);
        }
    }
}

/// Spawns a server on a fresh database of `backend`.
pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, SpawnOptions::default()).await
}

/// Spawns a server whose clock the test controls.
pub async fn spawn_app_with_clock(backend: Backend, clock: Arc<dyn Clock>) -> TestApp {
    spawn_app_with(
        backend,
        SpawnOptions {
            clock: Some(clock),
            ..SpawnOptions::default()
        },
    )
    .await
}

pub async fn spawn_app_with(backend: Backend, options: SpawnOptions) -> TestApp {
    init_test_log();
    let (database_url, sqlite_dir, pg, max_connections) = match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().expect("temp dir");
            let url = format!("sqlite://{}/relief.db", dir.path().display());
            (url, Some(dir), None, 16)
        }
        Backend::Postgres => {
            let admin_url = postgres_url().unwrap_or_else(|| {
                panic!("{POSTGRES_URL_ENV} must be set to spawn a PostgreSQL app")
            });
            let (pg, url) = create_pg_database(&admin_url).await;
            // The production default; tests run in parallel, well under PostgreSQL's 100.
            (url, None, Some(pg), 16)
        }
    };
    let db_proxy = match backend {
        Backend::Postgres if options.database_proxy => {
            let proxy =
                db_proxy::DbProxy::start(db_proxy::postgres_addr(&database_url).await).await;
            Some(proxy)
        }
        _ => None,
    };
    let database_url = match &db_proxy {
        Some(proxy) => db_proxy::via(&database_url, proxy.addr),
        None => database_url,
    };
    let mut text = settings_toml(&database_url, max_connections);
    if options.metrics {
        text = text.replacen(
            "[server]\n",
            "[server]\nmetrics_listen = \"127.0.0.1:0\"\n",
            1,
        );
    }
    for line in &options.server {
        text = text.replacen("[server]\n", &format!("[server]\n{line}\n"), 1);
    }
    text.push_str("\n[audit]\n");
    if let Some(n) = options.checkpoint_every_events {
        text.push_str(&format!("checkpoint_every_events = {n}\n"));
    }
    // Read while the settings are validated and the application is built.
    let key_file = options.audit_signing_key_pem.map(|pem| {
        let mut f = tempfile::NamedTempFile::new().expect("temp key file");
        f.write_all(pem).expect("key file written");
        f
    });
    if let Some(f) = &key_file {
        text.push_str(&format!("signing_key_path = '{}'\n", f.path().display()));
    }
    let mut settings =
        reliefd::settings::Settings::from_toml(&text).expect("test settings are valid");
    if let Some(tweak) = &options.tweak {
        tweak(&mut settings);
        settings
            .validate()
            .expect("tweaked test settings are valid");
    }
    let application = match options.clock {
        Some(clock) => reliefd::Application::build_with_clock(settings, clock).await,
        None => reliefd::Application::build(settings).await,
    }
    .expect("the application builds");
    drop(key_file);
    let addr = application.local_addr();
    let metrics_addr = application.metrics_addr();
    let store = application.store();
    let expected_backend = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    assert_eq!(
        store.backend_name(),
        expected_backend,
        "the app runs on {backend:?}"
    );
    let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
    let server = tokio::spawn(application.run_until_stopped(async move {
        let _ = shutdown_rx.await;
    }));
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("valid uri")
        .connect()
        .await
        .expect("the test server accepts connections");
    let minter = Minter::from_ed25519_pem(TEST_ED25519_PEM, ED25519_KID, ISSUER, AUDIENCE)
        .expect("test signing key");
    TestApp {
        addr,
        metrics_addr,
        backend,
        store,
        db_proxy,
        channel,
        minter,
        shutdown: Some(shutdown_tx),
        server: Some(server),
        _sqlite_dir: sqlite_dir,
        pg,
    }
}

/// A unique client request id.
pub fn request_id() -> String {
    format!("req-{}", uuid::Uuid::now_v7().simple())
}

/// Puts `Bearer <token>` on a request.
pub fn with_bearer<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii token"),
    );
    request
}

pub fn district_id(s: &str) -> DistrictId {
    DistrictId::parse(s).expect("valid district id")
}

impl TestApp {
    /// The connection to the server, for clients of other services.
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    pub fn case_client(&self) -> CaseServiceClient<Channel> {
        CaseServiceClient::new(self.channel.clone())
    }

    pub fn district_client(&self) -> DistrictServiceClient<Channel> {
        DistrictServiceClient::new(self.channel.clone())
    }

    pub fn health_client(&self) -> tonic_health::pb::health_client::HealthClient<Channel> {
        tonic_health::pb::health_client::HealthClient::new(self.channel.clone())
    }

    /// The spec of a valid token: one hour, no `nbf`. `district` is a 6-digit code or
    /// `"city"`; the display name is the subject.
    pub fn token_spec(
        &self,
        district: &str,
        roles: &[Role],
        unit: Option<&str>,
        subject: &str,
    ) -> TokenSpec {
        TokenSpec {
            subject: Subject::parse(subject).expect("valid subject"),
            name: subject.to_owned(),
            scope: Scope::parse(district).expect("valid scope"),
            roles: roles.to_vec(),
            unit: unit.map(|u| UnitId::parse(u).expect("valid unit")),
            ttl_secs: 3600,
            not_before: None,
        }
    }

    /// A valid token signed with the test key.
    pub fn token(
        &self,
        district: &str,
        roles: &[Role],
        unit: Option<&str>,
        subject: &str,
    ) -> String {
        self.mint(&self.token_spec(district, roles, unit, subject))
    }

    pub fn mint(&self, spec: &TokenSpec) -> String {
        self.minter.mint(spec).expect("mintable token")
    }

    /// A caller holding `token`.
    pub fn caller(&self, token: String, subject: &str) -> Caller {
        Caller {
            token,
            subject: subject.to_owned(),
            names_district: None,
            cases: self.case_client(),
            districts: self.district_client(),
        }
    }

    /// An applicant unit (实施救助单位) of `district`; its subject is `{unit}-clerk`.
    pub fn applicant(&self, district: &str, unit: &str) -> Caller {
        let subject = format!("{unit}-clerk");
        let token = self.token(district, &[Role::ApplicantUnit], Some(unit), &subject);
        self.caller(token, &subject)
    }

    /// A bureau role of `district`; its subject is `{role}-{district}`.
    pub fn staff(&self, district: &str, role: Role) -> Caller {
        let subject = format!("{}-{district}", role.as_str());
        let token = self.token(district, &[role], None, &subject);
        self.caller(token, &subject)
    }

    /// A city-scoped caller with `role` (city_admin, auditor or sync_client).
    pub fn city(&self, role: Role) -> Caller {
        let subject = format!("{}-city", role.as_str());
        let token = self.token("city", &[role], None, &subject);
        self.caller(token, &subject)
    }

    pub fn city_admin(&self) -> Caller {
        self.city(Role::CityAdmin)
    }

    /// The event log of `district`, optionally about one resource.
    pub async fn events(&self, district: &str, resource: Option<&str>) -> Vec<EventRecord> {
        self.store
            .events(&district_id(district), resource)
            .await
            .expect("events readable")
    }

    /// The actions of the event log of `district`, optionally about one resource.
    pub async fn actions(&self, district: &str, resource: Option<&str>) -> Vec<String> {
        self.events(district, resource)
            .await
            .into_iter()
            .map(|e| e.action)
            .collect()
    }

    /// Asserts the district's hash chain recomputes over exactly its events.
    pub async fn assert_chain_intact(&self, district: &str) {
        let report = self
            .store
            .verify_audit_chain(&district_id(district), None)
            .await
            .expect("chain readable");
        assert_eq!(report.first_break, None, "audit chain of {district} breaks");
        let count = self.events(district, None).await.len() as u64;
        assert_eq!(report.events_checked, count, "events checked in {district}");
    }
}

/// Someone calling the server with one token. Cheap to clone into concurrent tasks.
#[derive(Debug, Clone)]
pub struct Caller {
    pub token: String,
    pub subject: String,
    /// The district named in `x-relief-district` on every call, if any.
    pub names_district: Option<String>,
    cases: CaseServiceClient<Channel>,
    districts: DistrictServiceClient<Channel>,
}

fn case_of(case: Option<pb::Case>) -> pb::Case {
    case.expect("the response carries the case")
}

impl Caller {
    /// The same caller, calling through `channel` (a gateway) instead.
    pub fn on(&self, channel: Channel) -> Caller {
        Caller {
            token: self.token.clone(),
            subject: self.subject.clone(),
            names_district: self.names_district.clone(),
            cases: CaseServiceClient::new(channel.clone()),
            districts: DistrictServiceClient::new(channel),
        }
    }

    /// The same caller, naming `district` in `x-relief-district` on every call (what a
    /// city-scoped caller does to act in a district).
    pub fn naming(&self, district: &str) -> Caller {
        Caller {
            names_district: Some(district.to_owned()),
            ..self.clone()
        }
    }

    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut req = with_bearer(message, &self.token);
        if let Some(d) = &self.names_district {
            req.metadata_mut().insert(
                relief_auth::DISTRICT_HEADER,
                d.parse().expect("a district code is a valid header value"),
            );
        }
        req
    }

    pub async fn create_case_with(
        &self,
        request_id: &str,
        application: pb::Application,
    ) -> Result<pb::Case, Status> {
        let req = pb::CreateCaseRequest {
            request_id: request_id.to_owned(),
            application: Some(application),
            ..Default::default()
        };
        self.create_case_raw(req).await
    }

    pub async fn create_case_raw(&self, req: pb::CreateCaseRequest) -> Result<pb::Case, Status> {
        let resp = self.cases.clone().create_case(self.request(req)).await?;
        Ok(case_of(resp.into_inner().case))
    }

    /// Creates a case under a fresh request id.
    pub async fn create_case(&self, application: pb::Application) -> Result<pb::Case, Status> {
        self.create_case_with(&request_id(), application).await
    }

    /// Creates a draft that must succeed.
    pub async fn draft(&self, application: pb::Application) -> pb::Case {
        self.create_case(application)
            .await
            .expect("CreateCase succeeds")
    }

    /// Creates a case from a complete application and submits it; both must succeed.
    pub async fn submitted(&self, application: pb::Application) -> pb::Case {
        let case = self.draft(application).await;
        self.submit(&case.case_id)
            .await
            .expect("SubmitCase succeeds")
    }

    pub async fn get_case(&self, case_id: &str) -> Result<pb::Case, Status> {
        let req = pb::GetCaseRequest {
            case_id: case_id.to_owned(),
            ..Default::default()
        };
        let resp = self.cases.clone().get_case(self.request(req)).await?;
        Ok(case_of(resp.into_inner().case))
    }

    pub async fn list_cases(
        &self,
        req: pb::ListCasesRequest,
    ) -> Result<pb::ListCasesResponse, Status> {
        Ok(self
            .cases
            .clone()
            .list_cases(self.request(req))
            .await?
            .into_inner())
    }

    /// Every case the caller can see with `filter`, following page tokens.
    pub async fn list_all(&self, filter: pb::ListCasesRequest) -> Vec<pb::Case> {
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let page = self
                .list_cases(pb::ListCasesRequest {
                    page_token: token,
                    ..filter.clone()
                })
                .await
                .expect("ListCases succeeds");
            out.extend(page.cases);
            if page.next_page_token.is_empty() {
                return out;
            }
            token = page.next_page_token;
        }
    }

    pub async fn update_case_raw(&self, req: pb::UpdateCaseRequest) -> Result<pb::Case, Status> {
        let resp = self.cases.clone().update_case(self.request(req)).await?;
        Ok(case_of(resp.into_inner().case))
    }

    /// Replaces the application without a version check.
    pub async fn update(
        &self,
        case_id: &str,
        application: pb::Application,
    ) -> Result<pb::Case, Status> {
        self.update_case_raw(pb::UpdateCaseRequest {
            request_id: request_id(),
            case_id: case_id.to_owned(),
            application: Some(application),
            expected_version: 0,
            ..Default::default()
        })
        .await
    }

    pub async fn submit_case_raw(&self, req: pb::SubmitCaseRequest) -> Result<pb::Case, Status> {
        let resp = self.cases.clone().submit_case(self.request(req)).await?;
        Ok(case_of(resp.into_inner().case))
    }

    pub async fn submit(&self, case_id: &str) -> Result<pb::Case, Status> {
        self.submit_case_raw(pb::SubmitCaseRequest {
            request_id: request_id(),
            case_id: case_id.to_owned(),
            expected_version: 0,
            ..Default::default()
        })
        .await
    }

    pub async fn withdraw_case_raw(
        &self,
        req: pb::WithdrawCaseRequest,
    ) -> Result<pb::Case, Status> {
        let resp = self.cases.clone().withdraw_case(self.request(req)).await?;
        Ok(case_of(resp.into_inner().case))
    }

    pub async fn withdraw(&self, case_id: &str) -> Result<pb::Case, Status> {
        self.withdraw_case_raw(pb::WithdrawCaseRequest {
            request_id: request_id(),
            case_id: case_id.to_owned(),
            reason: "申请人已撤回诉求".to_owned(),
            expected_version: 0,
            ..Default::default()
        })
        .await
    }

    pub async fn get_district(&self, district_id: &str) -> Result<pb::District, Status> {
        let req = pb::GetDistrictRequest {
            district_id: district_id.to_owned(),
            ..Default::default()
        };
        let resp = self
            .districts
            .clone()
            .get_district(self.request(req))
            .await?;
        Ok(resp
            .into_inner()
            .district
            .expect("the response carries the district"))
    }

    pub async fn list_districts(
        &self,
        req: pb::ListDistrictsRequest,
    ) -> Result<pb::ListDistrictsResponse, Status> {
        Ok(self
            .districts
            .clone()
            .list_districts(self.request(req))
            .await?
            .into_inner())
    }

    pub async fn create_district(
        &self,
        req: pb::CreateDistrictRequest,
    ) -> Result<pb::District, Status> {
        let resp = self
            .districts
            .clone()
            .create_district(self.request(req))
            .await?;
        Ok(resp
            .into_inner()
            .district
            .expect("the response carries the district"))
    }

    pub async fn update_fund_rules(
        &self,
        req: pb::UpdateFundRulesRequest,
    ) -> Result<pb::District, Status> {
        let resp = self
            .districts
            .clone()
            .update_fund_rules(self.request(req))
            .await?;
        Ok(resp
            .into_inner()
            .district
            .expect("the response carries the district"))
    }

    pub async fn get_fund_rules_version(
        &self,
        district_id: &str,
        rules_version: i64,
    ) -> Result<pb::GetFundRulesVersionResponse, Status> {
        let req = pb::GetFundRulesVersionRequest {
            district_id: district_id.to_owned(),
            rules_version,
            ..Default::default()
        };
        Ok(self
            .districts
            .clone()
            .get_fund_rules_version(self.request(req))
            .await?
            .into_inner())
    }
}

/// A valid resident ID number from its first 17 digits (the GB 11643 check character is
/// appended).
pub fn resident_id(first17: &str) -> String {
    let check = relief_domain::resident_id::check_char(first17).expect("17 digits");
    format!("{first17}{check}")
}

/// A valid resident ID number different from every other one this process made: region
/// 430122, a birth date counted up from 1960-01-01, and a 3-digit sequence.
pub fn next_resident_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let base = chrono::NaiveDate::from_ymd_opt(1960, 1, 1).expect("date");
    let birth = base + chrono::Days::new(n / 1000);
    let first17 = format!("430122{}{:03}", birth.format("%Y%m%d"), n % 1000);
    resident_id(&first17)
}

/// The form the server shows a resident ID number in to roles that may not see it.
pub fn masked_resident_id(id: &str) -> String {
    format!("{}********{}", &id[..6], &id[14..])
}

/// The form the server shows a bank account in to roles that may not see it.
pub fn masked_account(account: &str) -> String {
    let chars: Vec<char> = account.chars().collect();
    let keep = chars.len().min(4);
    let hidden = chars.len() - keep;
    format!(
        "{}{}",
        "*".repeat(hidden),
        chars[hidden..].iter().collect::<String>()
    )
}

/// The bank account of every built application.
pub const BANK_ACCOUNT: &str = "6230901234561234";
/// A valid SHA-256 digest (of the empty string).
pub const SHA256_EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Builds a complete, valid application for Wangcheng, fiscal year 2022: every required
/// field set, sealed, 20,000 yuan, a fresh resident ID number per builder.
#[derive(Debug, Clone)]
pub struct ApplicationBuilder {
    app: pb::Application,
}

impl Default for ApplicationBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ApplicationBuilder {
    pub fn new() -> Self {
        let app = pb::Application {
            recipient: Some(pb::Recipient {
                name: "张三".to_owned(),
                resident_id_number: next_resident_id(),
                phone: "13800000000".to_owned(),
                address: "望城区高塘岭街道同心社区".to_owned(),
                ..Default::default()
            }),
            basic_situation: "家庭困难，长期患病，无固定收入".to_owned(),
            reason: "诉求于法无据但于情有理，救助后承诺息访罢诉".to_owned(),
            category_code: "reasonable_without_legal_basis".to_owned(),
            requested_amount_fen: 2_000_000,
            implementing_unit: "高塘岭街道办事处".to_owned(),
            receiving_unit: Some(pb::ReceivingUnit {
                name: "高塘岭街道财政所".to_owned(),
                bank_name: "望城农商银行".to_owned(),
                bank_account: BANK_ACCOUNT.to_owned(),
                ..Default::default()
            }),
            petition: Some(pb::PetitionRef {
                petition_number: "WC-2022-0001".to_owned(),
                summary: "要求解决生活困难".to_owned(),
                ..Default::default()
            }),
            seal: Some(pb::SealAttestation {
                sealed: true,
                sealed_by: "高塘岭街道办事处".to_owned(),
                sealed_time: None,
                ..Default::default()
            }),
            attachments: vec![pb::Attachment {
                name: "困难证明.pdf".to_owned(),
                media_type: "application/pdf".to_owned(),
                sha256_hex: SHA256_EMPTY.to_owned(),
                size_bytes: 1024,
                ..Default::default()
            }],
            fiscal_year: 2022,
            over_cap_justification: String::new(),
            repeat_relief_justification: String::new(),
            ..Default::default()
        };
        Self { app }
    }

    pub fn name(mut self, name: &str) -> Self {
        self.recipient().name = name.to_owned();
        self
    }

    pub fn resident_id(mut self, id: &str) -> Self {
        self.recipient().resident_id_number = id.to_owned();
        self
    }

    pub fn amount_fen(mut self, fen: i64) -> Self {
        self.app.requested_amount_fen = fen;
        self
    }

    pub fn category(mut self, code: &str) -> Self {
        self.app.category_code = code.to_owned();
        self
    }

    pub fn fiscal_year(mut self, year: i32) -> Self {
        self.app.fiscal_year = year;
        self
    }

    pub fn over_cap_justification(mut self, text: &str) -> Self {
        self.app.over_cap_justification = text.to_owned();
        self
    }

    pub fn repeat_relief_justification(mut self, text: &str) -> Self {
        self.app.repeat_relief_justification = text.to_owned();
        self
    }

    /// Any other change.
    pub fn with(mut self, change: impl FnOnce(&mut pb::Application)) -> Self {
        change(&mut self.app);
        self
    }

    fn recipient(&mut self) -> &mut pb::Recipient {
        self.app.recipient.get_or_insert_with(Default::default)
    }

    pub fn build(self) -> pb::Application {
        self.app
    }
}

/// A complete, valid application with a fresh recipient.
pub fn valid_application() -> pb::Application {
    ApplicationBuilder::new().build()
}

/// The resident ID number of an application.
pub fn resident_id_of(app: &pb::Application) -> String {
    app.recipient
        .as_ref()
        .map(|r| r.resident_id_number.clone())
        .unwrap_or_default()
}

/// The rules of both test districts as the wire has them.
pub fn wangcheng_rules() -> pb::FundRules {
    let step = |id: &str, name: &str, role: pb::Role, deadline_days: i32, batched: bool| {
        pb::ApprovalStep {
            step_id: id.to_owned(),
            name: name.to_owned(),
            role: role as i32,
            deadline_days,
            condition: None,
            batched,
            ..Default::default()
        }
    };
    let category = |code: &str, name: &str, description: &str| pb::EligibilityCategory {
        code: code.to_owned(),
        name: name.to_owned(),
        description: description.to_owned(),
        ..Default::default()
    };
    pb::FundRules {
        case_cap_fen: CASE_CAP_FEN,
        budgets: vec![pb::FiscalYearBudget {
            fiscal_year: 2022,
            allocated_fen: 128_000_000,
            target_case_count: 48,
            ..Default::default()
        }],
        categories: vec![
            category(
                "reasonable_without_legal_basis",
                "于法无据、于情有理",
                "诉求于法无据但于情有理，通过救助能够息访罢诉",
            ),
            category(
                "no_responsible_party",
                "无责任主体或无力承担",
                "确需救助但无责任主体单位或责任主体单位无力承担，且不会引起攀比",
            ),
            category("other_hardship", "其他确需救助", "其他确需救助的情形"),
        ],
        repeat_relief_wait_days: 365,
        follow_up_after_days: vec![90, 180, 365],
        // The server answers with the rubric in force; unset means this default.
        grading: Some(pb::Grading {
            decision_points: 20,
            process_points: 20,
            output_points: 30,
            effect_points: 30,
            excellent_min: 90,
            good_min: 80,
            fair_min: 60,
        }),
        approval_chain: Some(pb::ApprovalChain {
            steps: vec![
                step(
                    "case_officer_review",
                    "经办科室审查",
                    pb::Role::CaseOfficer,
                    5,
                    false,
                ),
                step(
                    "deputy_leader_review",
                    "分管领导复审",
                    pb::Role::DeputyLeader,
                    5,
                    false,
                ),
                step(
                    "bureau_head_review",
                    "主要负责人审核",
                    pb::Role::BureauHead,
                    5,
                    false,
                ),
                step(
                    "party_group_decision",
                    "局党组研究",
                    pb::Role::BureauOffice,
                    30,
                    true,
                ),
                step(
                    "district_leader_approval",
                    "分管区领导审批",
                    pb::Role::DistrictLeader,
                    10,
                    false,
                ),
            ],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The field paths of a status's `BadRequest` details, sorted.
pub fn violation_fields(status: &Status) -> Vec<String> {
    let mut fields: Vec<String> = status
        .get_error_details()
        .bad_request()
        .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
        .unwrap_or_default();
    fields.sort();
    fields
}

/// Unwraps the error of `result`, asserting its code; `what` names the call in the message.
pub fn expect_code<T: std::fmt::Debug>(
    result: Result<T, Status>,
    code: Code,
    what: &str,
) -> Status {
    match result {
        Ok(v) => panic!("{what}: expected {code:?}, got Ok({v:?})"),
        Err(status) => {
            assert_eq!(
                status.code(),
                code,
                "{what}: expected {code:?}, got {:?}: {}",
                status.code(),
                status.message()
            );
            status
        }
    }
}

/// Asserts INVALID_ARGUMENT with exactly these field violations (in any order).
pub fn expect_violations<T: std::fmt::Debug>(
    result: Result<T, Status>,
    fields: &[&str],
    what: &str,
) {
    let status = expect_code(result, Code::InvalidArgument, what);
    let mut expected: Vec<String> = fields.iter().map(|f| (*f).to_owned()).collect();
    expected.sort();
    assert_eq!(
        violation_fields(&status),
        expected,
        "{what}: field violations (message: {})",
        status.message()
    );
}

/// A case state as the wire enum.
pub fn state(case: &pb::Case) -> pb::CaseState {
    pb::CaseState::try_from(case.state).expect("a known case state")
}
