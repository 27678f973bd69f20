//! `relief-bench hostile`: the attacks of a hostile client, a careless operator or a
//! compromised sync job, replayed one by one against the real `reliefd` binary (a backend,
//! and a gateway in front of it), each with what it cost: the server's peak resident memory
//! while it lasted, and the latency of a normal call made meanwhile on a connection of its
//! own. Memory and latency are measured here, not asserted in tests.

// Wire messages are built with `..Default::default()` so a field added to the contract does
// not break the benchmark's build.
#![allow(clippy::needless_update)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use relief_domain::Role;
use relief_proto::v1 as pb;
use relief_proto::v1::audit_service_client::AuditServiceClient;
use relief_proto::v1::case_service_client::CaseServiceClient;
use relief_proto::v1::report_service_client::ReportServiceClient;
use relief_proto::v1::sync_service_client::SyncServiceClient;
use tokio::io::AsyncReadExt as _;
use tonic::transport::{Channel, Endpoint};

use crate::gateway::dev_token;
use crate::procs::{Server, free_addr, reliefd_path};
use crate::scenarios::{Clients, DISTRICT, People};

#[derive(Debug, Clone, clap::Args)]
pub struct HostileArgs {
    /// How long each attack is held, in seconds.
    #[arg(long, default_value_t = 5)]
    pub hold_secs: u64,
    /// Cases filed before the attacks, so that feeds and exports have something to send.
    #[arg(long, default_value_t = 600)]
    pub cases: usize,
    /// Run only these attacks (comma-separated names); all when absent.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// A PostgreSQL server to run on as well (a fresh database is created and dropped).
    #[arg(long, env = "RELIEF_BENCH_POSTGRES_URL")]
    pub postgres: Option<String>,
    /// The `reliefd` binary; next to this one by default.
    #[arg(long)]
    pub reliefd: Option<PathBuf>,
    /// Settings for the backend, as `RELIEF_SERVER_KEY=value` environment variables (for
    /// example `RELIEF_SERVER_MAX_STREAMS_PER_DISTRICT=256`, to hold every idle stream).
    #[arg(long = "backend-env", value_parser = parse_env)]
    pub backend_env: Vec<(String, String)>,
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{s}: expected KEY=value"))
}

/// The attacks, in the order they run.
const ATTACKS: [&str; 10] = [
    "attachments",
    "attendees",
    "idle-watchers",
    "reading-watchers",
    "idle-exports",
    "verify-chain",
    "silent-connections",
    "gateway-silent-connections",
    "gateway-metric-labels",
    "large-request",
];

pub async fn hostile(args: HostileArgs) -> anyhow::Result<()> {
    let reliefd = reliefd_path(args.reliefd.clone())?;
    let dir = tempfile::tempdir()?;
    let sqlite = format!("sqlite://{}/hostile.db", dir.path().display());
    run_on(&reliefd, dir.path(), &sqlite, "sqlite", &args).await?;
    if let Some(admin) = &args.postgres {
        let (name, url) = crate::fresh_postgres(admin).await?;
        let result = run_on(&reliefd, dir.path(), &url, "postgres", &args).await;
        crate::drop_postgres(admin, &name).await?;
        result?;
    }
    Ok(())
}

/// What the servers and the probe saw during one attack.
struct Measured {
    rss_before_mib: f64,
    rss_peak_mib: f64,
    rss_after_mib: f64,
    probe: Histogram<u64>,
    probe_errors: BTreeMap<String, u64>,
    note: String,
}

async fn run_on(
    reliefd: &Path,
    dir: &Path,
    database_url: &str,
    label: &str,
    args: &HostileArgs,
) -> anyhow::Result<()> {
    let extra: Vec<(&str, String)> = args
        .backend_env
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    let backend = Server::backend_with(reliefd, dir, database_url, "warn", &extra).await?;
    for (k, v) in &args.backend_env {
        println!("backend setting: {k}={v}");
    }
    let people = People::of_district(DISTRICT)?;
    let seeded = seed(&backend, &people, args.cases).await?;
    let gateway = start_gateway(reliefd, dir, &backend).await?;
    println!(
        "relief-bench hostile on {label}: {} cases filed, each attack held {} s",
        args.cases, args.hold_secs
    );
    println!(
        "  {:<27} {:>8} {:>8} {:>8} {:>8}  {:>8} {:>8} {:>8}  notes",
        "attack", "rss0", "peak", "growth", "after", "p50 ms", "p99 ms", "max ms"
    );
    let hold = Duration::from_secs(args.hold_secs);
    for attack in ATTACKS {
        if !args.only.is_empty() && !args.only.iter().any(|o| o == attack) {
            continue;
        }
        let target = if attack.starts_with("gateway-") {
            &gateway
        } else {
            &backend
        };
        let m = measure(&backend, target, &people, &seeded, hold, |ctx| async move {
            attack_by_name(attack, ctx).await
        })
        .await?;
        let errors: String = m
            .probe_errors
            .iter()
            .map(|(code, n)| format!(" probe {code}: {n};"))
            .collect();
        println!(
            "  {attack:<27} {:>8.1} {:>8.1} {:>8.1} {:>8.1}  {:>8.2} {:>8.2} {:>8.2}  {}{errors}",
            m.rss_before_mib,
            m.rss_peak_mib,
            m.rss_peak_mib - m.rss_before_mib,
            m.rss_after_mib,
            ms(&m.probe, 0.5),
            ms(&m.probe, 0.99),
            m.probe.max() as f64 / 1000.0,
            m.note
        );
    }
    println!(
        "  (rss in MiB: the attacked process's resident memory before, at its peak during, \
         and 2 s after the attack; latency of GetCase on its own connection meanwhile)"
    );
    Ok(())
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

/// Cases whose history fills the change feed and the export beyond any flow-control window.
struct Seeded {
    case_id: String,
}

async fn seed(backend: &Server, people: &People, cases: usize) -> anyhow::Result<Seeded> {
    let channel = backend.channel().await?;
    let mut case_id = String::new();
    let workers = 8;
    let per = cases.div_ceil(workers);
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let mut clients = Clients::new(channel.clone());
        let people = people.clone();
        tasks.push(tokio::spawn(async move {
            let mut last = String::new();
            for _ in 0..per {
                last = clients.submitted_case(&people).await?;
            }
            anyhow::Ok(last)
        }));
    }
    for t in tasks {
        case_id = t.await??;
    }
    Ok(Seeded { case_id })
}

async fn start_gateway(reliefd: &Path, dir: &Path, backend: &Server) -> anyhow::Result<Server> {
    let addr = free_addr()?;
    let metrics = free_addr()?;
    let config = dir.join("hostile-gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[gateway]\nlisten = \"{addr}\"\nmetrics_listen = \"{metrics}\"\n\n\
             [[gateway.upstreams]]\nname = \"backend\"\naddresses = [\"http://{}\"]\n\
             districts = [\"{DISTRICT}\"]\n",
            backend.addr
        ),
    )?;
    let config = config.display().to_string();
    let mut gateway = Server::start(
        reliefd,
        "gateway",
        dir,
        addr,
        &["--config", &config, "gateway"],
        &[("RELIEF_LOG_FILTER", "warn".to_owned())],
    )
    .await?;
    gateway.metrics = Some(metrics);
    Ok(gateway)
}

/// What an attack gets to work with.
#[derive(Clone)]
struct Ctx {
    target_addr: std::net::SocketAddr,
    metrics_addr: Option<std::net::SocketAddr>,
    people: People,
    hold: Duration,
}

/// Runs `attack` against `target` while sampling its memory and probing `backend` with a
/// normal call.
async fn measure<F, Fut>(
    backend: &Server,
    target: &Server,
    people: &People,
    seeded: &Seeded,
    hold: Duration,
    attack: F,
) -> anyhow::Result<Measured>
where
    F: FnOnce(Ctx) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<String>>,
{
    let pid = target
        .pid()
        .ok_or_else(|| anyhow::anyhow!("server exited"))?;
    let rss_before_mib = rss_mib(pid).unwrap_or(0.0);
    let stop = Arc::new(AtomicBool::new(false));
    let peak_kib = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (stop, peak) = (stop.clone(), peak_kib.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if let Some(kib) = rss_kib(pid) {
                    peak.fetch_max(kib, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let probe = {
        let channel = backend.channel().await?;
        let token = people.auditor.clone();
        let case_id = seeded.case_id.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
            let mut errors = BTreeMap::new();
            let mut client = CaseServiceClient::new(channel);
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let mut req = tonic::Request::new(pb::GetCaseRequest {
                    case_id: case_id.clone(),
                    ..Default::default()
                });
                req.set_timeout(Duration::from_secs(30));
                bearer(&mut req, &token);
                match client.get_case(req).await {
                    Ok(_) => h.record(micros(t.elapsed()))?,
                    Err(status) => {
                        h.record(micros(t.elapsed()))?;
                        *errors.entry(format!("{:?}", status.code())).or_default() += 1;
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            anyhow::Ok((h, errors))
        })
    };
    let ctx = Ctx {
        target_addr: target.addr,
        metrics_addr: target.metrics,
        people: people.clone(),
        hold,
    };
    let note = attack(ctx).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.await;
    let (probe, probe_errors) = probe.await??;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after_mib = rss_mib(pid).unwrap_or(0.0);
    Ok(Measured {
        rss_before_mib,
        rss_peak_mib: peak_kib.load(Ordering::Relaxed) as f64 / 1024.0,
        rss_after_mib,
        probe,
        probe_errors,
        note,
    })
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

fn bearer<T>(req: &mut tonic::Request<T>, token: &str) {
    if let Ok(v) = format!("Bearer {token}").parse() {
        req.metadata_mut().insert("authorization", v);
    }
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn rss_mib(pid: u32) -> Option<f64> {
    rss_kib(pid).map(|k| k as f64 / 1024.0)
}

async fn attack_by_name(name: &str, ctx: Ctx) -> anyhow::Result<String> {
    match name {
        "attachments" => repeated_field(ctx, RepeatedField::Attachments).await,
        "attendees" => repeated_field(ctx, RepeatedField::Attendees).await,
        "idle-watchers" => idle_streams(ctx, Stream::Watch, 200).await,
        "reading-watchers" => reading_watchers(ctx, 5_000).await,
        "idle-exports" => idle_streams(ctx, Stream::Export, 100).await,
        "verify-chain" => verify_chain(ctx, 32).await,
        "silent-connections" | "gateway-silent-connections" => silent_connections(ctx, 2_000).await,
        "gateway-metric-labels" => metric_labels(ctx, 20_000).await,
        "large-request" => large_request(ctx).await,
        other => anyhow::bail!("unknown attack {other}"),
    }
}

/// Counts of gRPC codes, as `Code: n` pairs.
#[derive(Default)]
struct Codes(BTreeMap<String, u64>);

impl Codes {
    fn add<T>(&mut self, r: &Result<T, tonic::Status>) {
        let code = match r {
            Ok(_) => "Ok".to_owned(),
            Err(s) => format!("{:?}", s.code()),
        };
        *self.0.entry(code).or_default() += 1;
    }

    fn merge(&mut self, other: Codes) {
        for (k, v) in other.0 {
            *self.0.entry(k).or_default() += v;
        }
    }
}

impl std::fmt::Display for Codes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|(k, v)| format!("{k} {v}")).collect();
        write!(f, "{}", parts.join(", "))
    }
}

async fn connect(addr: std::net::SocketAddr, small_window: bool) -> anyhow::Result<Channel> {
    let mut e = Endpoint::from_shared(format!("http://{addr}"))?.tcp_nodelay(true);
    if small_window {
        // The client's windows stay at HTTP/2's minimum and are never opened by reading:
        // the server sees a consumer that takes nothing.
        e = e
            .initial_stream_window_size(65_535)
            .initial_connection_window_size(65_535);
    }
    Ok(e.connect().await?)
}

#[derive(Clone, Copy)]
enum RepeatedField {
    Attachments,
    Attendees,
}

/// Four callers at a time sending a message of just under 1 MiB whose repeated field holds
/// hundreds of thousands of empty elements, for the whole hold. The message is encoded once
/// and sent as bytes, so the client's own work does not crowd the machine.
async fn repeated_field(ctx: Ctx, field: RepeatedField) -> anyhow::Result<String> {
    let (path, token, body, elements) = match field {
        RepeatedField::Attachments => {
            let msg = pb::CreateCaseRequest {
                request_id: "hostile-attachments".to_owned(),
                application: Some(pb::Application {
                    attachments: vec![pb::Attachment::default(); 500_000],
                    ..Default::default()
                }),
                ..Default::default()
            };
            (
                "/relief.v1.CaseService/CreateCase",
                ctx.people.applicant.clone(),
                prost::Message::encode_to_vec(&msg),
                500_000,
            )
        }
        RepeatedField::Attendees => {
            let msg = pb::OpenMeetingRequest {
                request_id: "hostile-attendees".to_owned(),
                meeting_date: "2022-06-15".to_owned(),
                attendees: vec![String::new(); 200_000],
                ..Default::default()
            };
            (
                "/relief.v1.ApprovalService/OpenMeeting",
                ctx.people.office.clone(),
                prost::Message::encode_to_vec(&msg),
                200_000,
            )
        }
    };
    let body = bytes::Bytes::from(body);
    let deadline = Instant::now() + ctx.hold;
    let largest_answer = Arc::new(AtomicU64::new(0));
    let slowest_us = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let channel = connect(ctx.target_addr, false).await?;
        let (body, token) = (body.clone(), token.clone());
        let (largest, slowest) = (largest_answer.clone(), slowest_us.clone());
        tasks.push(tokio::spawn(async move {
            let mut codes = Codes::default();
            while Instant::now() < deadline {
                let t = Instant::now();
                let r = send_raw(channel.clone(), path, &token, body.clone()).await;
                slowest.fetch_max(micros(t.elapsed()), Ordering::Relaxed);
                if let Err(s) = &r {
                    let size = s.message().len() + s.details().len();
                    largest.fetch_max(size as u64, Ordering::Relaxed);
                }
                codes.add(&r);
            }
            codes
        }));
    }
    let mut codes = Codes::default();
    for t in tasks {
        codes.merge(t.await?);
    }
    Ok(format!(
        "{elements} elements in {:.2} MiB, 4 callers: {codes}; largest error {} B, slowest {:.0} ms",
        body.len() as f64 / 1048576.0,
        largest_answer.load(Ordering::Relaxed),
        slowest_us.load(Ordering::Relaxed) as f64 / 1000.0
    ))
}

/// One unary call with `body` sent as it is.
async fn send_raw(
    channel: Channel,
    path: &'static str,
    token: &str,
    body: bytes::Bytes,
) -> Result<bytes::Bytes, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let mut req = tonic::Request::new(body);
    bearer(&mut req, token);
    let path = http::uri::PathAndQuery::from_static(path);
    Ok(grpc.unary(req, path, RawCodec).await?.into_inner())
}

/// Bytes in, bytes out: a request encoded once, sent many times.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = bytes::Bytes;
    type Decode = bytes::Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }

    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = bytes::Bytes;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: bytes::Bytes,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = bytes::Bytes;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<bytes::Bytes>, tonic::Status> {
        let n = bytes::Buf::remaining(src);
        Ok(Some(bytes::Buf::copy_to_bytes(src, n)))
    }
}

#[derive(Clone, Copy)]
enum Stream {
    Watch,
    Export,
}

/// `n` server streams, each on a connection of its own, that never read.
async fn idle_streams(ctx: Ctx, kind: Stream, n: usize) -> anyhow::Result<String> {
    let mut held = Vec::new();
    let mut codes = Codes::default();
    for i in 0..n {
        let channel = connect(ctx.target_addr, true).await?;
        // Spread over subjects as distinct sync jobs would be, so a per-caller cap is not
        // what turns them away.
        let r = match kind {
            Stream::Watch => {
                let token = dev_token(DISTRICT, Role::SyncClient, None, &format!("sync-{i}"))?;
                let mut req = tonic::Request::new(pb::WatchChangesRequest::default());
                bearer(&mut req, &token);
                SyncServiceClient::new(channel)
                    .watch_changes(req)
                    .await
                    .map(|s| Box::new(s) as Box<dyn Send>)
            }
            Stream::Export => {
                let token = dev_token(DISTRICT, Role::Auditor, None, &format!("auditor-{i}"))?;
                let mut req = tonic::Request::new(pb::StreamCaseExportRequest {
                    fiscal_year: 2022,
                    ..Default::default()
                });
                bearer(&mut req, &token);
                ReportServiceClient::new(channel)
                    .stream_case_export(req)
                    .await
                    .map(|s| Box::new(s) as Box<dyn Send>)
            }
        };
        codes.add(&r);
        if let Ok(stream) = r {
            held.push(stream);
        }
    }
    tokio::time::sleep(ctx.hold).await;
    drop(held);
    Ok(format!("{n} opened, never read: {codes}"))
}

/// `n` watchers that read everything, over connections of 100 streams each, while changes
/// are made.
async fn reading_watchers(ctx: Ctx, n: usize) -> anyhow::Result<String> {
    let received = Arc::new(AtomicU64::new(0));
    let mut codes = Codes::default();
    let mut readers = Vec::new();
    let mut channel = connect(ctx.target_addr, false).await?;
    for i in 0..n {
        if i % 100 == 0 {
            channel = connect(ctx.target_addr, false).await?;
        }
        let token = dev_token(DISTRICT, Role::SyncClient, None, &format!("reader-{i}"))?;
        // Each starts at the feed's end, as a watcher that has caught up would.
        let mut req = tonic::Request::new(pb::WatchChangesRequest {
            after_cursor: String::new(),
            ..Default::default()
        });
        bearer(&mut req, &token);
        let r = SyncServiceClient::new(channel.clone())
            .watch_changes(req)
            .await;
        codes.add(&r);
        if let Ok(stream) = r {
            let received = received.clone();
            readers.push(tokio::spawn(async move {
                let mut stream = stream.into_inner();
                while let Ok(Some(_)) = stream.message().await {
                    received.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
    }
    let mut clients = Clients::new(connect(ctx.target_addr, false).await?);
    let deadline = Instant::now() + ctx.hold;
    let mut writes = 0;
    while Instant::now() < deadline {
        if clients.submitted_case(&ctx.people).await.is_ok() {
            writes += 1;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for r in &readers {
        r.abort();
    }
    Ok(format!(
        "{n} asked: {codes}; {writes} cases filed meanwhile, {} changes delivered",
        received.load(Ordering::Relaxed)
    ))
}

/// `n` auditors verifying the whole chain at once, again and again.
async fn verify_chain(ctx: Ctx, n: usize) -> anyhow::Result<String> {
    let deadline = Instant::now() + ctx.hold;
    let mut tasks = Vec::new();
    for _ in 0..n {
        let channel = connect(ctx.target_addr, false).await?;
        let token = ctx.people.auditor.clone();
        tasks.push(tokio::spawn(async move {
            let mut codes = Codes::default();
            let mut client = AuditServiceClient::new(channel);
            while Instant::now() < deadline {
                let mut req = tonic::Request::new(pb::VerifyAuditChainRequest {
                    district_id: DISTRICT.to_owned(),
                    ..Default::default()
                });
                bearer(&mut req, &token);
                let r = client.verify_audit_chain(req).await;
                codes.add(&r);
            }
            codes
        }));
    }
    let mut codes = Codes::default();
    for t in tasks {
        codes.merge(t.await?);
    }
    Ok(format!("{n} at once: {codes}"))
}

/// `n` TCP connections that never send a byte; how many the server closed, and when.
async fn silent_connections(ctx: Ctx, n: usize) -> anyhow::Result<String> {
    let start = Instant::now();
    let closed = Arc::new(AtomicU64::new(0));
    let last_close_ms = Arc::new(AtomicU64::new(0));
    let mut refused = 0;
    let mut tasks = Vec::new();
    for _ in 0..n {
        match tokio::net::TcpStream::connect(ctx.target_addr).await {
            Ok(mut socket) => {
                let (closed, last) = (closed.clone(), last_close_ms.clone());
                tasks.push(tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    // The server writes its HTTP/2 settings; the connection is closed when a
                    // read returns 0 bytes or fails.
                    loop {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(_) => {}
                        }
                    }
                    closed.fetch_add(1, Ordering::Relaxed);
                    let ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
                    last.fetch_max(ms, Ordering::Relaxed);
                }));
            }
            Err(_) => refused += 1,
        }
    }
    let opened_ms = start.elapsed().as_millis();
    tokio::time::sleep(ctx.hold.max(Duration::from_secs(12))).await;
    for t in &tasks {
        t.abort();
    }
    Ok(format!(
        "{n} opened in {opened_ms} ms ({refused} refused at connect): {} closed by the server, \
         the last after {:.1} s",
        closed.load(Ordering::Relaxed),
        last_close_ms.load(Ordering::Relaxed) as f64 / 1000.0
    ))
}

/// A city token naming `n` districts the gateway does not route, one call each; then the
/// size of the gateway's `/metrics`.
async fn metric_labels(ctx: Ctx, n: usize) -> anyhow::Result<String> {
    let before = metrics_bytes(ctx.metrics_addr).await?;
    let channel = connect(ctx.target_addr, false).await?;
    let token = dev_token("city", Role::Auditor, None, "city-auditor")?;
    let mut codes = Codes::default();
    let mut client = CaseServiceClient::new(channel);
    for i in 0..n {
        let mut req = tonic::Request::new(pb::GetCaseRequest {
            case_id: "0190b4c8-0000-7000-8000-000000000000".to_owned(),
            ..Default::default()
        });
        bearer(&mut req, &token);
        let district = format!("{}", 900_000 + i);
        if let Ok(v) = district.parse() {
            req.metadata_mut().insert("x-relief-district", v);
        }
        let r = client.get_case(req).await;
        codes.add(&r);
    }
    let after = metrics_bytes(ctx.metrics_addr).await?;
    Ok(format!(
        "{n} unrouted districts named: {codes}; /metrics {:.1} KiB before, {:.1} KiB after",
        before as f64 / 1024.0,
        after as f64 / 1024.0
    ))
}

async fn metrics_bytes(addr: Option<std::net::SocketAddr>) -> anyhow::Result<usize> {
    use tokio::io::AsyncWriteExt as _;
    let addr = addr.ok_or_else(|| anyhow::anyhow!("the gateway serves no metrics"))?;
    let mut socket = tokio::net::TcpStream::connect(addr).await?;
    socket
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: relief\r\nConnection: close\r\n\r\n")
        .await?;
    let mut body = Vec::new();
    socket.read_to_end(&mut body).await?;
    let start = body
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(0, |p| p + 4);
    Ok(body.len() - start)
}

/// A message just over the server's 4 MiB limit, four callers at a time.
async fn large_request(ctx: Ctx) -> anyhow::Result<String> {
    let deadline = Instant::now() + ctx.hold;
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let channel = connect(ctx.target_addr, false).await?;
        let token = ctx.people.applicant.clone();
        tasks.push(tokio::spawn(async move {
            let mut codes = Codes::default();
            let mut client = CaseServiceClient::new(channel);
            while Instant::now() < deadline {
                let app = pb::Application {
                    basic_situation: "困".repeat(1_500_000),
                    ..Default::default()
                };
                let mut req = tonic::Request::new(pb::CreateCaseRequest {
                    request_id: "hostile-large".to_owned(),
                    application: Some(app),
                    ..Default::default()
                });
                bearer(&mut req, &token);
                let r = client.create_case(req).await;
                codes.add(&r);
            }
            codes
        }));
    }
    let mut codes = Codes::default();
    for t in tasks {
        codes.merge(t.await?);
    }
    Ok(format!("4.3 MiB messages, 4 callers: {codes}"))
}
