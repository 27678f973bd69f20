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
use crate::scenarios::DISTRICT;

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
    /// Also measure nginx's `grpc_pass` in front of the same backend, as a reference proxy
    /// (the nginx binary, e.g. /usr/sbin/nginx).
    #[arg(long)]
    pub nginx: Option<PathBuf>,
}

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
    let log = args.log_filter.clone();
    let backend = Server::backend(&reliefd, dir.path(), &database_url, &log).await?;
    let gateway = Server::gateway(
        &reliefd,
        dir.path(),
        &backend,
        DISTRICT,
        &log,
        args.gateway_threads,
    )
    .await?;
    let nginx = match &args.nginx {
        Some(bin) => Some(start_nginx(bin, dir.path(), backend.addr).await?),
        None => None,
    };
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
    let mut sides: Vec<(&str, &Server)> =
        vec![("direct", &backend), ("through the gateway", &gateway)];
    if let Some(n) = &nginx {
        sides.push(("through nginx grpc_pass", n));
    }
    // Warm every path (connections, caches) before measuring.
    for (_, server) in &sides {
        run(
            server,
            &GatewayArgs {
                seconds: 1,
                ..args.clone()
            },
            &token,
            4,
        )
        .await?;
    }
    let phases = [
        ("latency (1 in flight)", 1usize),
        ("throughput", args.concurrency),
    ];
    // outcomes[phase][side], and CPU seconds of (client, backend, proxy) per side in the
    // throughput phase.
    let mut outcomes: Vec<Vec<Option<Outcome>>> = vec![vec![None; sides.len()]; phases.len()];
    let mut cpu = vec![[0.0f64; 3]; sides.len()];
    for _ in 0..args.rounds.max(1) {
        for (p, (_, workers)) in phases.iter().enumerate() {
            for (i, (_, server)) in sides.iter().enumerate() {
                let proxy = if i == 0 { None } else { Some(*server) };
                let cpu_now = || {
                    [
                        cpu_seconds_of("self").unwrap_or(0.0),
                        backend.cpu_seconds().unwrap_or(0.0),
                        proxy.and_then(Server::cpu_seconds).unwrap_or(0.0),
                    ]
                };
                let before = cpu_now();
                let outcome = run(server, &args, &token, *workers).await?;
                if p == 1 {
                    let after = cpu_now();
                    for k in 0..3 {
                        cpu[i][k] += after[k] - before[k];
                    }
                }
                match &mut outcomes[p][i] {
                    Some(acc) => acc.append_round(outcome)?,
                    slot => *slot = Some(outcome),
                }
            }
        }
    }
    for (p, (label, _)) in phases.iter().enumerate() {
        println!("{label}:");
        let Some(direct) = outcomes[p][0].clone() else {
            continue;
        };
        for (i, (side, _)) in sides.iter().enumerate() {
            let Some(o) = &outcomes[p][i] else { continue };
            println!("{}", o.line(side));
            if i > 0 {
                println!(
                    "    added latency: p50 {:+.3} ms, p99 {:+.3} ms; throughput {:.1}% of direct",
                    o.ms(0.50) - direct.ms(0.50),
                    o.ms(0.99) - direct.ms(0.99),
                    100.0 * o.throughput() / direct.throughput().max(f64::MIN_POSITIVE)
                );
            }
        }
    }
    for (i, (side, _)) in sides.iter().enumerate() {
        let calls = outcomes[1][i].as_ref().map_or(1, |o| o.ok.max(1));
        let per = |secs: f64| 1e6 * secs / (calls as f64);
        println!(
            "CPU per call {side}: client {:.0} µs, backend {:.0} µs, proxy {:.0} µs",
            per(cpu[i][0]),
            per(cpu[i][1]),
            per(cpu[i][2])
        );
    }
    for server in std::iter::once(&backend)
        .chain(std::iter::once(&gateway))
        .chain(nginx.as_ref())
    {
        if let Some(mib) = server.peak_rss_mib() {
            println!("peak memory of {}: {mib:.1} MiB", server.name);
        }
    }
    Ok(())
}

/// nginx with one `grpc_pass` to the backend, as the reference proxy: one worker process (the
/// gateway gets a runtime of its own too), no access log, and connections kept for the
/// whole run (by default nginx closes an HTTP/2 connection after 1,000 requests, which
/// cancels the calls in flight on it).
async fn start_nginx(
    bin: &std::path::Path,
    dir: &std::path::Path,
    backend: std::net::SocketAddr,
) -> anyhow::Result<Server> {
    let addr = free_addr()?;
    let conf = dir.join("nginx.conf");
    let d = dir.display();
    std::fs::write(
        &conf,
        format!(
            "worker_processes 1;\nerror_log {d}/nginx-error.log warn;\npid {d}/nginx.pid;\n\
             daemon off;\nevents {{ worker_connections 4096; }}\n\
             http {{\n  access_log off;\n  keepalive_requests 100000000;\n  client_body_temp_path {d};\n  proxy_temp_path {d};\n\
               fastcgi_temp_path {d};\n  uwsgi_temp_path {d};\n  scgi_temp_path {d};\n\
               upstream relief {{ server {backend}; keepalive 16; keepalive_requests 100000000; }}\n\
               server {{\n    listen {addr} http2;\n    location / {{ grpc_pass grpc://relief; }}\n  }}\n}}\n"
        ),
    )?;
    let conf = conf.display().to_string();
    let prefix = format!("{d}/");
    Server::start(bin, "nginx", dir, addr, &["-p", &prefix, "-c", &conf], &[]).await
}
