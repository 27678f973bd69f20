//! The relief server as a library: [`Application::build`] validates settings, opens and
//! migrates the database, declares the configured districts and binds the listener;
//! [`Application::run_until_stopped`] serves until the shutdown future resolves. `main` and
//! the end-to-end tests both go through here.

pub mod demo;
pub mod health;
pub mod keys;
pub mod settings;
pub mod telemetry;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use relief_api::{
    ApiContext, ApprovalApi, AuditApi, AuthInterceptor, CaseApi, DatabaseGateLayer,
    DisbursementApi, DistrictApi, FollowUpApi, LedgerApi, ReportApi, SyncApi,
};
use relief_auth::Verifier;
use relief_domain::{Clock, Role, Subject, SystemClock};
use relief_observe::{KnownLabels, MetricsEndpoint, ObserveLayer, metrics_endpoint, names};
use relief_proto::v1::approval_service_server::ApprovalServiceServer;
use relief_proto::v1::audit_service_server::AuditServiceServer;
use relief_proto::v1::case_service_server::CaseServiceServer;
use relief_proto::v1::disbursement_service_server::DisbursementServiceServer;
use relief_proto::v1::district_service_server::DistrictServiceServer;
use relief_proto::v1::follow_up_service_server::FollowUpServiceServer;
use relief_proto::v1::ledger_service_server::LedgerServiceServer;
use relief_proto::v1::report_service_server::ReportServiceServer;
use relief_proto::v1::sync_service_server::SyncServiceServer;
use relief_store::{Actor, ChainAudit, DbSettings, Store};
use relief_wire::{Limits, WireLayer};
use tokio::net::TcpListener;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Server;

pub use settings::Settings;

/// A built server, bound and ready to serve.
pub struct Application {
    settings: Settings,
    listener: TcpListener,
    metrics: Option<MetricsEndpoint>,
    store: Store,
    clock: Arc<dyn Clock>,
    verifier: Arc<Verifier>,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("listen", &self.listener.local_addr().ok())
            .field("database", &self.store.backend_name())
            .finish()
    }
}

/// Opens the database named by the settings.
pub async fn open_store(settings: &Settings) -> anyhow::Result<Store> {
    let db = &settings.database;
    if let Some(path) = db
        .url
        .strip_prefix("sqlite://")
        .map(|p| p.split('?').next().unwrap_or(p))
        && let Some(dir) = std::path::Path::new(path).parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating data directory {}", dir.display()))?;
    }
    let store = Store::connect(
        &db.url,
        &DbSettings {
            max_connections: db.max_connections,
            acquire_timeout_ms: db.acquire_timeout_ms,
            busy_timeout_ms: db.busy_timeout_ms,
            request_id_retention_days: settings.server.request_id_retention_days,
        },
    )
    .await
    .context("connecting to the database")?;
    Ok(store)
}

/// The store, signing checkpoints with the configured audit key, or with the key generated
/// for this database when none is configured.
async fn with_audit_key(
    store: Store,
    settings: &Settings,
    clock: &dyn Clock,
) -> anyhow::Result<Store> {
    let (signer, generated) = match settings.audit.signing_key()? {
        Some(signer) => (signer, false),
        None => (store.generated_audit_key(clock.now()).await?, true),
    };
    let key_id = signer.public_key().key_id().to_owned();
    if generated {
        tracing::warn!(key_id = %key_id, "audit key generated and kept in the database: configure audit.signing_key_path in production");
    } else {
        tracing::info!(key_id = %key_id, "audit key loaded");
    }
    Ok(store.with_audit(ChainAudit {
        signer: Some(signer),
        generated,
        policy: settings.audit.policy(),
    }))
}

/// Creates each configured district that does not exist yet. Existing districts keep their
/// rules: after the first start they are changed through `UpdateFundRules`, which versions
/// them and records who changed them.
async fn declare_districts(
    store: &Store,
    settings: &Settings,
    clock: &dyn Clock,
) -> anyhow::Result<()> {
    let system = Actor {
        subject: Subject::parse("reliefd-config").context("system subject")?,
        name: "configuration".to_owned(),
        role: Role::CityAdmin,
        on_behalf_of: None,
    };
    for seed in &settings.districts {
        let (id, name, rules) = seed.to_domain()?;
        if store.district(&id).await?.is_some() {
            continue;
        }
        let mut tx = store
            .begin_write(None, system.clone(), None, clock.now())
            .await?;
        match tx.insert_district(&id, &name, &rules).await {
            Ok(_) => tx.commit(None).await?,
            // Another instance declared it first.
            Err(relief_store::Error::AlreadyExists(_)) => continue,
            Err(e) => return Err(e.into()),
        }
        tracing::info!(district = %id, name = %name, "district declared from configuration");
    }
    Ok(())
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        Self::build_with_clock(settings, Arc::new(SystemClock)).await
    }

    /// As [`Application::build`], reading time from `clock`.
    pub async fn build_with_clock(
        settings: Settings,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Application> {
        settings.validate()?;
        // Built here once, so a contract the wire check cannot read stops the start-up
        // instead of failing every request.
        <relief_proto::Contract as relief_wire::Contract>::schema()
            .map_err(|e| anyhow::anyhow!("the wire check: {e}"))?;
        let verifier = Arc::new(Verifier::new(settings.auth.verifier_config()?)?);
        keys::check_dev_key(&verifier, settings.server.listen, "server.listen")?;
        let store = open_store(&settings).await?;
        store.migrate().await.context("applying migrations")?;
        let store = with_audit_key(store, &settings, clock.as_ref()).await?;
        declare_districts(&store, &settings, clock.as_ref()).await?;
        sweep_checkpoints(&store, clock.as_ref()).await;
        let listener = TcpListener::bind(settings.server.listen)
            .await
            .with_context(|| format!("binding {}", settings.server.listen))?;
        let metrics = match settings.server.metrics_listen {
            Some(addr) => Some(metrics_endpoint(addr).await?),
            None => None,
        };
        Ok(Application {
            settings,
            listener,
            metrics,
            store,
            clock,
            verifier,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or(self.settings.server.listen)
    }

    /// Where `/metrics` is served, when it is.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().and_then(|m| m.local_addr().ok())
    }

    pub fn store(&self) -> Store {
        self.store.clone()
    }

    /// Serves until `shutdown` resolves, then lets calls in flight finish for the grace
    /// period and stops.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let s = &self.settings.server;
        // The metrics name the districts of the store; those created later are added by
        // CreateDistrict here, or by the refresh for those created on other replicas.
        let labels = KnownLabels::relief()?;
        known_districts(&self.store, &labels).await?;
        let ctx = ApiContext::new(self.store.clone(), self.clock.clone(), s.max_page_size)
            .with_max_message_bytes(s.max_message_bytes)
            .with_stream_limits(s.stream_limits())
            .with_heavy_read_limit(s.max_concurrent_heavy_reads)
            .with_labels(labels.clone());
        let auth = AuthInterceptor::new(self.verifier.clone());
        let max = s.max_message_bytes;
        // Every service gets the same message limits and the same token check.
        macro_rules! service {
            ($server:ident, $api:expr) => {
                InterceptedService::new(
                    $server::new($api)
                        .max_decoding_message_size(max)
                        .max_encoding_message_size(max),
                    auth.clone(),
                )
            };
        }
        let cases = service!(CaseServiceServer, CaseApi::new(ctx.clone()));
        let districts = service!(DistrictServiceServer, DistrictApi::new(ctx.clone()));
        let approvals = service!(ApprovalServiceServer, ApprovalApi::new(ctx.clone()));
        let audit = service!(AuditServiceServer, AuditApi::new(ctx.clone()));
        let disbursements = service!(DisbursementServiceServer, DisbursementApi::new(ctx.clone()));
        let ledger = service!(LedgerServiceServer, LedgerApi::new(ctx.clone()));
        let follow_ups = service!(FollowUpServiceServer, FollowUpApi::new(ctx.clone()));
        let reports = service!(ReportServiceServer, ReportApi::new(ctx.clone()));
        let sync = service!(
            SyncServiceServer,
            SyncApi::new(ctx, Duration::from_millis(s.watch_poll_ms))
        );

        let (health_reporter, health) = tonic_health::server::health_reporter();
        let database_up = health::DatabaseUp::new();
        let follow = tokio::spawn(health::follow_database(
            self.store.clone(),
            health_reporter.clone(),
            service_names(),
            database_up.clone(),
            Duration::from_millis(s.health_check_interval_ms),
            Duration::from_millis(s.health_check_timeout_ms),
        ));
        health_reporter
            .set_serving::<CaseServiceServer<CaseApi>>()
            .await;
        health_reporter
            .set_serving::<DistrictServiceServer<DistrictApi>>()
            .await;
        health_reporter
            .set_serving::<ApprovalServiceServer<ApprovalApi>>()
            .await;
        health_reporter
            .set_serving::<AuditServiceServer<AuditApi>>()
            .await;
        health_reporter
            .set_serving::<DisbursementServiceServer<DisbursementApi>>()
            .await;
        health_reporter
            .set_serving::<LedgerServiceServer<LedgerApi>>()
            .await;
        health_reporter
            .set_serving::<FollowUpServiceServer<FollowUpApi>>()
            .await;
        health_reporter
            .set_serving::<ReportServiceServer<ReportApi>>()
            .await;
        health_reporter
            .set_serving::<SyncServiceServer<SyncApi>>()
            .await;
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(relief_proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        };
        let reflection_v1 = reflection().build_v1()?;
        let reflection_v1alpha = reflection().build_v1alpha()?;

        let addr = self.local_addr();
        let (metrics_stop, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
        let metrics = self.metrics.map(|m| {
            tokio::spawn(m.serve(async {
                let _ = metrics_stopped.await;
            }))
        });
        let pool_gauges = tokio::spawn(report_pool_use(self.store.clone()));
        let purge = tokio::spawn(purge_request_ids(self.store.clone(), self.clock.clone()));
        let checkpoints = tokio::spawn(checkpoint_idle_districts(
            self.store.clone(),
            self.clock.clone(),
        ));
        let refresh = tokio::spawn(refresh_districts(self.store.clone(), labels.clone()));

        let limits = s.conn_limits();
        let router = relief_net::http2(Server::builder(), &limits)
            .timeout(Duration::from_millis(s.request_timeout_ms))
            .layer(relief_net::ConnLayer::new(limits.stall_timeout, "backend"))
            .layer(ObserveLayer::new("backend", labels))
            .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
                s.concurrency_limit,
            ))
            // Inside the access log, so that it sees the status it answers.
            .layer(WireLayer::new(Limits {
                max_repeated_elements: s.max_repeated_elements,
                ..Limits::default()
            }))
            .layer(DatabaseGateLayer::new(database_up.flag()))
            .add_service(health)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(cases)
            .add_service(districts)
            .add_service(approvals)
            .add_service(audit)
            .add_service(disbursements)
            .add_service(ledger)
            .add_service(follow_ups)
            .add_service(reports)
            .add_service(sync);

        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let incoming = relief_net::Incoming::new(self.listener, limits, "backend");
        let server = tokio::spawn(router.serve_with_incoming_shutdown(incoming, async {
            let _ = stop_rx.await;
        }));
        tracing::info!(%addr, database = self.store.backend_name(), "relief serving");
        shutdown.await;
        tracing::info!("shutting down");
        let _ = stop_tx.send(());
        let grace = Duration::from_millis(s.shutdown_grace_ms);
        let result = match tokio::time::timeout(grace, server).await {
            Ok(joined) => joined.context("server task")?.context("server"),
            Err(_) => {
                tracing::warn!(
                    grace_ms = s.shutdown_grace_ms,
                    "grace period over, stopping with calls in flight"
                );
                Ok(())
            }
        };
        pool_gauges.abort();
        follow.abort();
        purge.abort();
        checkpoints.abort();
        refresh.abort();
        let _ = metrics_stop.send(());
        if let Some(m) = metrics {
            let _ = m.await;
        }
        result
    }
}

/// The gRPC names of relief's services, whose health follows the database.
fn service_names() -> Vec<&'static str> {
    use tonic::server::NamedService;
    vec![
        <CaseServiceServer<CaseApi> as NamedService>::NAME,
        <DistrictServiceServer<DistrictApi> as NamedService>::NAME,
        <ApprovalServiceServer<ApprovalApi> as NamedService>::NAME,
        <AuditServiceServer<AuditApi> as NamedService>::NAME,
        <DisbursementServiceServer<DisbursementApi> as NamedService>::NAME,
        <LedgerServiceServer<LedgerApi> as NamedService>::NAME,
        <FollowUpServiceServer<FollowUpApi> as NamedService>::NAME,
        <ReportServiceServer<ReportApi> as NamedService>::NAME,
        <SyncServiceServer<SyncApi> as NamedService>::NAME,
    ]
}

/// How often request ids past their retention are deleted.
const PURGE_EVERY: Duration = Duration::from_secs(3600);

/// Deletes request ids past their retention, at start and then hourly, until dropped.
async fn purge_request_ids(store: Store, clock: Arc<dyn Clock>) {
    let mut every = tokio::time::interval(PURGE_EVERY);
    loop {
        every.tick().await;
        match store.purge_request_ids(clock.now()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(removed = n, "request ids past their retention removed"),
            Err(e) => tracing::warn!(error = %e, "removing old request ids failed"),
        }
    }
}

/// How often districts are looked at for events no checkpoint covers yet.
const CHECKPOINT_SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Signs the checkpoints of idle districts (see [`Store::checkpoint_idle_districts`]) every
/// minute, after the sweep at start-up, until dropped.
async fn checkpoint_idle_districts(store: Store, clock: Arc<dyn Clock>) {
    let mut every = tokio::time::interval(CHECKPOINT_SWEEP_EVERY);
    // The first tick is immediate, and start-up has just swept.
    every.tick().await;
    loop {
        every.tick().await;
        sweep_checkpoints(&store, clock.as_ref()).await;
    }
}

async fn sweep_checkpoints(store: &Store, clock: &dyn Clock) {
    match store.checkpoint_idle_districts(clock.now()).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(districts = n, "audit checkpoints signed for idle districts"),
        Err(e) => tracing::warn!(error = %e, "signing checkpoints of idle districts failed"),
    }
}

/// How often the districts the metrics name are read again, for those created by other
/// replicas.
const DISTRICTS_REFRESH_EVERY: Duration = Duration::from_secs(60);

/// Adds every district of the store to the districts the metrics name.
async fn known_districts(store: &Store, labels: &KnownLabels) -> anyhow::Result<()> {
    let mut after = None;
    loop {
        let page = store.list_districts(after.as_ref(), 1_000).await?;
        labels.add_districts(page.iter().map(|d| d.id.as_str()));
        match page.last() {
            Some(last) if page.len() == 1_000 => after = Some(last.id.clone()),
            _ => return Ok(()),
        }
    }
}

/// Reads the store's districts into the metrics' labels now and then, until dropped.
async fn refresh_districts(store: Store, labels: KnownLabels) {
    let mut every = tokio::time::interval(DISTRICTS_REFRESH_EVERY);
    every.tick().await;
    loop {
        every.tick().await;
        if let Err(e) = known_districts(&store, &labels).await {
            tracing::warn!(error = %e, "reading the districts for the metrics failed");
        }
    }
}

/// How often the database pool's use is sampled for the metrics.
const POOL_SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// Samples the database pool into gauges, until the task is dropped.
async fn report_pool_use(store: Store) {
    let mut every = tokio::time::interval(POOL_SAMPLE_EVERY);
    loop {
        every.tick().await;
        let p = store.pool_status();
        for (state, n) in [("in_use", p.in_use), ("idle", p.idle), ("max", p.max)] {
            metrics::gauge!(names::DB_POOL, "state" => state).set(f64::from(n));
        }
    }
}
