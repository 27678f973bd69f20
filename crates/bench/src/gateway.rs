//! `relief-bench gateway`: the same call, direct to a backend and through the gateway in
//! front of it, in one run. Both servers are the real `reliefd` binary in their own
//! processes; the client is this process. Latency is measured one call at a time (what the
//! gateway adds to a call), throughput with many calls in flight (what it costs the machine).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use relief_auth::{Minter, Scope, TokenSpec};
use relief_domain::{DistrictId, Role, Subject};
use relief_proto::v1 as pb;
use relief_proto::v1::district_service_client::DistrictServiceClient;
use tonic::transport::Channel;

use crate::load::{Outcome, closed_loop};
use crate::procs::{Server, cpu_seconds_of, free_addr, reliefd_path};

#[derive(Debug, Clone, clap::Args)]
pub struct GatewayArgs {
    /// Seconds per measured run.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Calls in flight for the throughput runs.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// HTTP/2 connections the client spreads its calls over.
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// Rounds of (direct, gateway) runs; the outcomes of each side are merged.
    #[arg(long, default_value_t = 2)]
    pub rounds: usize,
    /// The backend's database; a fresh SQLite file when absent.
    #[arg(long)]
    pub database_url: Option<String>,
    /// The servers' log filter (`info` writes an access line per call, as in production).
    #[arg(long, default_value = "info")]
    pub log_filter: String,
    /// Worker threads of the gateway's runtime (`TOKIO_WORKER_THREADS`); one per core when
    /// absent.
    #[arg(long)]
    pub gateway_threads: Option<usize>,
    /// The `reliefd` binary; next to this one by default.
    #[arg(long)]
    pub reliefd: Option<PathBuf>,
}

const DISTRICT: &str = "430112";

/// A token for the backend's built-in development key.
pub fn dev_token(
    district: &str,
    role: Role,
    unit: Option<&str>,
    who: &str,
) -> anyhow::Result<String> {
    let settings = reliefd::settings::Settings::from_toml(reliefd::settings::DEFAULT_CONFIG_TOML)?;
    let minter = Minter::from_ed25519_pem(
        reliefd::settings::DEV_SIGNING_KEY_PEM.as_bytes(),
        reliefd::settings::DEV_KID,
        settings.auth.issuer.clone(),
        settings.auth.audience.clone(),
    )?;
    Ok(minter.mint(&TokenSpec {
        subject: Subject::parse(who)?,
        name: who.to_owned(),
        scope: if district == "city" {
            Scope::City
        } else {
            Scope::District(DistrictId::parse(district)?)
        },
        roles: vec![role],
        unit: unit.map(relief_domain::UnitId::parse).transpose()?,
        ttl_secs: 24 * 3600,
        not_before: None,
    })?)
}

async fn get_district(
    channels: Arc<Vec<Channel>>,
    token: Arc<str>,
    worker: usize,
) -> Result<(), tonic::Status> {
    let channel = channels[worker % channels.len()].clone();
    let mut req = tonic::Request::new(pb::GetDistrictRequest {
        district_id: DISTRICT.to_owned(),
    });
    let value = format!("Bearer {token}")
        .parse()
        .map_err(|_| tonic::Status::internal("token is not a header value"))?;
    req.metadata_mut().insert("authorization", value);
    DistrictServiceClient::new(channel)
        .get_district(req)
        .await?;
    Ok(())
}

async fn run(
    server: &Server,
    args: &GatewayArgs,
    token: &Arc<str>,
    workers: usize,
) -> anyhow::Result<Outcome> {
    let mut channels = Vec::new();
    for _ in 0..args.connections.max(1) {
        channels.push(server.channel().await?);
    }
    let channels = Arc::new(channels);
    let token = token.clone();
    closed_loop(workers, Duration::from_secs(args.seconds), move |w| {
        get_district(channels.clone(), token.clone(), w)
    })
    .await
}

pub async fn gateway(args: GatewayArgs) -> anyhow::Result<()> {
    let reliefd = reliefd_path(args.reliefd.clone())?;
    let dir = tempfile::tempdir()?;
    let database_url = args
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}/bench.db", dir.path().display()));
    let backend_addr = free_addr()?;
    let gateway_addr = free_addr()?;
    let log = args.log_filter.clone();
    // The backend: the built-in configuration (Wangcheng, development keys) on its own port.
    let backend = Server::start(
        &reliefd,
        "backend",
        dir.path(),
        backend_addr,
        &["serve"],
        &[
            ("RELIEF_SERVER_LISTEN", backend_addr.to_string()),
            ("RELIEF_DATABASE_URL", database_url.clone()),
            ("RELIEF_LOG_FILTER", log.clone()),
        ],
    )
    .await?;
    let gateway_config = dir.path().join("gateway.toml");
    std::fs::write(
        &gateway_config,
        format!(
            "[gateway]\nlisten = \"{gateway_addr}\"\n\n[[gateway.upstreams]]\nname = \"backend\"\n\
             addresses = [\"http://{backend_addr}\"]\ndistricts = [\"{DISTRICT}\"]\n"
        ),
    )?;
    let config = gateway_config.display().to_string();
    let gateway = Server::start(
        &reliefd,
        "gateway",
        dir.path(),
        gateway_addr,
        &["--config", &config, "gateway"],
        &match args.gateway_threads {
            Some(n) => vec![
                ("RELIEF_LOG_FILTER", log.clone()),
                ("TOKIO_WORKER_THREADS", n.to_string()),
            ],
            None => vec![("RELIEF_LOG_FILTER", log.clone())],
        },
    )
    .await?;
    let token: Arc<str> = dev_token(DISTRICT, Role::CaseOfficer, None, "bench-officer")?.into();
    println!(
        "relief-bench gateway: GetDistrict, {} s per run, {} rounds; latency with 1 call in flight, \
         throughput with {} in flight over {} connections; database {}; log filter {log}",
        args.seconds,
        args.rounds,
        args.concurrency,
        args.connections,
        if database_url.starts_with("sqlite") {
            "SQLite"
        } else {
            "PostgreSQL"
        },
    );
    // Warm both paths (connections, caches) before measuring.
    run(
        &backend,
        &GatewayArgs {
            seconds: 1,
            ..args.clone()
        },
        &token,
        4,
    )
    .await?;
    run(
        &gateway,
        &GatewayArgs {
            seconds: 1,
            ..args.clone()
        },
        &token,
        4,
    )
    .await?;

    let mut results: Vec<(&str, usize, Option<Outcome>, Option<Outcome>)> = vec![
        ("latency (1 in flight)", 1, None, None),
        ("throughput", args.concurrency, None, None),
    ];
    // CPU seconds of client, backend and gateway during the throughput runs, per side.
    let mut cpu = [[0.0f64; 3]; 2];
    let cpu_now = || {
        [
            cpu_seconds_of("self").unwrap_or(0.0),
            backend.cpu_seconds().unwrap_or(0.0),
            gateway.cpu_seconds().unwrap_or(0.0),
        ]
    };
    for _ in 0..args.rounds.max(1) {
        for (i, (_, workers, direct, via)) in results.iter_mut().enumerate() {
            for (side, (server, slot)) in [(&backend, &mut *direct), (&gateway, &mut *via)]
                .into_iter()
                .enumerate()
            {
                let before = cpu_now();
                let outcome = run(server, &args, &token, *workers).await?;
                if i == 1 {
                    let after = cpu_now();
                    for p in 0..3 {
                        cpu[side][p] += after[p] - before[p];
                    }
                }
                match slot {
                    Some(acc) => merge(acc, outcome)?,
                    None => *slot = Some(outcome),
                }
            }
        }
    }
    for (label, _, direct, via) in &results {
        let (Some(direct), Some(via)) = (direct, via) else {
            continue;
        };
        println!("{label}:");
        println!("{}", direct.line("direct"));
        println!("{}", via.line("through the gateway"));
        println!(
            "  added latency: p50 {:+.3} ms, p99 {:+.3} ms; throughput ratio {:.1}%",
            via.ms(0.50) - direct.ms(0.50),
            via.ms(0.99) - direct.ms(0.99),
            100.0 * via.throughput() / direct.throughput().max(f64::MIN_POSITIVE)
        );
    }
    if let (Some(direct), Some(via)) = (&results[1].2, &results[1].3) {
        for (side, label, calls) in [(0, "direct", direct.ok), (1, "through the gateway", via.ok)] {
            let per = |secs: f64| 1e6 * secs / (calls.max(1) as f64);
            println!(
                "CPU per call {label}: client {:.0} µs, backend {:.0} µs, gateway {:.0} µs",
                per(cpu[side][0]),
                per(cpu[side][1]),
                per(cpu[side][2])
            );
        }
    }
    for server in [&backend, &gateway] {
        if let Some(mib) = server.peak_rss_mib() {
            println!("peak memory of {}: {mib:.1} MiB", server.name);
        }
    }
    Ok(())
}

/// Adds a later round's outcome to the first's, summing the time so throughput stays a rate.
fn merge(acc: &mut Outcome, more: Outcome) -> anyhow::Result<()> {
    acc.latency_us.add(&more.latency_us)?;
    acc.ok += more.ok;
    for (c, n) in more.errors {
        *acc.errors.entry(c).or_default() += n;
    }
    acc.elapsed += more.elapsed;
    Ok(())
}
