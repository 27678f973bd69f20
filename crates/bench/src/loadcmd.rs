//! `relief-bench load`: drives one scenario at the real `reliefd` (in its own process), direct
//! and through a gateway in front of it, on SQLite or PostgreSQL, closed loop (as fast as it
//! answers) or open loop (a fixed rate); reports throughput, latency percentiles, errors by
//! code, and the servers' CPU per call and peak memory.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::load::{Outcome, closed_loop, open_loop};
use crate::procs::{Server, cpu_seconds_of, reliefd_path};
use crate::scenarios::{Clients, DISTRICT, People, REVIEWS, districts};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// A case from filing to confirmed payment (13 calls), one after another.
    CaseLife,
    /// Approval-step transactions (DecideCase) on submitted cases.
    Approvals,
    /// Reads: a case by id, the officer's inbox, a page of cases.
    Reads,
    /// The year's indicators (GetIndicators).
    Report,
}

#[derive(Debug, Clone, clap::Args)]
pub struct LoadArgs {
    #[arg(long, value_enum, default_value = "approvals")]
    pub scenario: Scenario,
    /// Seconds per measured run.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Calls in flight (closed loop).
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Calls per second (open loop); closed loop when absent.
    #[arg(long)]
    pub rate: Option<f64>,
    /// HTTP/2 connections the client spreads its calls over.
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// Districts the approvals are spread over (望城区 and copies of its rules), to tell
    /// what one district's writer queue costs from what the machine can do. Direct only.
    #[arg(long, default_value_t = 1)]
    pub districts: usize,
    /// Also through a gateway in front of the same backend.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub gateway: bool,
    /// A PostgreSQL server (admin URL ending in /database); a fresh database is created and
    /// dropped. SQLite when absent.
    #[arg(long, env = "RELIEF_BENCH_POSTGRES_URL")]
    pub postgres: Option<String>,
    /// The servers' log filter.
    #[arg(long, default_value = "info")]
    pub log_filter: String,
    /// The `reliefd` binary; next to this one by default.
    #[arg(long)]
    pub reliefd: Option<PathBuf>,
}

/// Cases waiting for their next review step: (district's people, case, index into REVIEWS).
type Queue = Arc<Mutex<VecDeque<(usize, String, usize)>>>;

async fn prepare(clients: &[Clients], people: &People, n: usize) -> anyhow::Result<Vec<String>> {
    let mut tasks = Vec::new();
    let workers = clients.len().max(1) * 2;
    for w in 0..workers {
        let mut c = clients[w % clients.len()].clone();
        let people = people.clone();
        let share = n / workers + usize::from(w < n % workers);
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::with_capacity(share);
            for _ in 0..share {
                ids.push(c.submitted_case(&people).await?);
            }
            anyhow::Ok(ids)
        }));
    }
    let mut ids = Vec::with_capacity(n);
    for t in tasks {
        ids.extend(t.await??);
    }
    Ok(ids)
}

/// Sets the scenario up on `server`, then runs it; returns the outcome and `snapshot()` as
/// it was once the setup was done, so that CPU use can be told for the measured calls alone.
async fn drive<T>(
    server: &Server,
    args: &LoadArgs,
    everyone: &[People],
    snapshot: impl Fn() -> T,
) -> anyhow::Result<(Outcome, T)> {
    let people = everyone
        .first()
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("no district"))?;
    let mut clients = Vec::new();
    for _ in 0..args.connections.max(1) {
        clients.push(Clients::new(server.channel().await?));
    }
    let clients = Arc::new(clients);
    let duration = Duration::from_secs(args.seconds);
    // What one call is, by scenario; `k` is the worker (closed loop) or the call's number.
    let op: Arc<dyn Fn(usize) -> futures_op::Op + Send + Sync> = match args.scenario {
        Scenario::CaseLife => {
            let clients = clients.clone();
            Arc::new(move |k| {
                let mut c = clients[k % clients.len()].clone();
                let people = people.clone();
                Box::pin(async move { c.case_life(&people).await })
            })
        }
        Scenario::Approvals => {
            // Enough submitted cases for the run at a generous rate.
            let n = args
                .rate
                .map_or(args.concurrency * 250, |r| {
                    (r * args.seconds as f64) as usize
                })
                .max(200);
            // Each district's cases, interleaved so that the districts take turns.
            let mut per_district = Vec::new();
            for p in everyone {
                per_district.push(prepare(&clients, p, n.div_ceil(everyone.len())).await?);
            }
            let mut waiting = VecDeque::new();
            for i in 0..per_district.iter().map(Vec::len).max().unwrap_or(0) {
                for (d, ids) in per_district.iter().enumerate() {
                    if let Some(id) = ids.get(i) {
                        waiting.push_back((d, id.clone(), 0));
                    }
                }
            }
            let queue: Queue = Arc::new(Mutex::new(waiting));
            let clients = clients.clone();
            let everyone: Arc<[People]> = everyone.into();
            Arc::new(move |k| {
                let mut c = clients[k % clients.len()].clone();
                let everyone = everyone.clone();
                let queue = queue.clone();
                Box::pin(async move {
                    let next = queue.lock().ok().and_then(|mut q| q.pop_front());
                    let Some((d, id, step)) = next else {
                        return Err(tonic::Status::resource_exhausted("no case left to decide"));
                    };
                    let (step_id, role) = REVIEWS[step];
                    let people = everyone
                        .get(d)
                        .ok_or_else(|| tonic::Status::internal("no such district"))?;
                    c.approve(people.of(role), &id, step_id).await?;
                    if step + 1 < REVIEWS.len()
                        && let Ok(mut q) = queue.lock()
                    {
                        q.push_back((d, id, step + 1));
                    }
                    Ok(())
                })
            })
        }
        Scenario::Reads => {
            let ids = Arc::new(prepare(&clients, &people, 200).await?);
            let clients = clients.clone();
            Arc::new(move |k| {
                let mut c = clients[k % clients.len()].clone();
                let people = people.clone();
                let ids = ids.clone();
                Box::pin(async move {
                    let id = ids[k % ids.len()].clone();
                    c.read(&people, &id, k as u64).await
                })
            })
        }
        Scenario::Report => {
            let clients = clients.clone();
            Arc::new(move |k| {
                let mut c = clients[k % clients.len()].clone();
                let people = people.clone();
                Box::pin(async move { c.report(&people).await })
            })
        }
    };
    let before = snapshot();
    let outcome = match args.rate {
        Some(rate) => open_loop(rate, duration, 10_000, move |k| op(k)).await,
        None => {
            // Calls are numbered so that reads spread over the cases and connections.
            let counter = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            closed_loop(args.concurrency, duration, move |_worker| {
                op(counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
            })
            .await
        }
    };
    Ok((outcome?, before))
}

mod futures_op {
    use std::future::Future;
    use std::pin::Pin;

    pub type Op = Pin<Box<dyn Future<Output = Result<(), tonic::Status>> + Send>>;
}

pub async fn load(args: LoadArgs) -> anyhow::Result<()> {
    let reliefd = reliefd_path(args.reliefd.clone())?;
    let dir = tempfile::tempdir()?;
    let (database_url, pg) = match &args.postgres {
        None => (format!("sqlite://{}/bench.db", dir.path().display()), None),
        Some(admin) => {
            let (name, url) = crate::fresh_postgres(admin).await?;
            (url, Some((admin.clone(), name)))
        }
    };
    let result = run(&args, &reliefd, dir.path(), &database_url).await;
    if let Some((admin, name)) = pg {
        crate::drop_postgres(&admin, &name).await?;
    }
    result
}

/// CPU time so far of every PostgreSQL server process on the machine, in seconds.
fn postgres_cpu_seconds() -> f64 {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    procs
        .flatten()
        .filter_map(|p| {
            let pid = p.file_name().to_str()?.to_owned();
            let comm = std::fs::read_to_string(p.path().join("comm")).ok()?;
            (comm.trim() == "postgres")
                .then(|| cpu_seconds_of(&pid))
                .flatten()
        })
        .sum()
}

async fn run(
    args: &LoadArgs,
    reliefd: &std::path::Path,
    dir: &std::path::Path,
    database_url: &str,
) -> anyhow::Result<()> {
    let log = args.log_filter.clone();
    let backend = Server::backend(reliefd, dir, database_url, &log).await?;
    let gateway = if args.gateway {
        Some(Server::gateway(reliefd, dir, &backend, DISTRICT, &log, None).await?)
    } else {
        None
    };
    if args.districts > 1 {
        anyhow::ensure!(
            matches!(args.scenario, Scenario::Approvals) && !args.gateway,
            "--districts is for approvals, direct (--gateway false)"
        );
    }
    let everyone = districts(backend.channel().await?, args.districts)
        .await?
        .iter()
        .map(|d| People::of_district(d))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mode = match args.rate {
        Some(r) => format!("open loop at {r}/s"),
        None => format!("closed loop, {} in flight", args.concurrency),
    };
    println!(
        "relief-bench load: {:?} on {}, {mode}, {} s per run, {} connections, {} district(s)",
        args.scenario,
        if database_url.starts_with("sqlite") {
            "SQLite"
        } else {
            "PostgreSQL"
        },
        args.seconds,
        args.connections,
        args.districts
    );
    let mut sides = vec![("direct", &backend)];
    if let Some(g) = &gateway {
        sides.push(("through the gateway", g));
    }
    let mut outcomes = Vec::new();
    for (label, server) in sides {
        let cpu = || {
            [
                cpu_seconds_of("self").unwrap_or(0.0),
                backend.cpu_seconds().unwrap_or(0.0),
                gateway
                    .as_ref()
                    .and_then(Server::cpu_seconds)
                    .unwrap_or(0.0),
                if args.postgres.is_some() {
                    postgres_cpu_seconds()
                } else {
                    0.0
                },
            ]
        };
        let (outcome, before) = drive(server, args, &everyone, cpu).await?;
        let after = cpu();
        println!("{}", outcome.line(label));
        let per = |i: usize| 1e6 * (after[i] - before[i]) / (outcome.ok.max(1) as f64);
        println!(
            "    CPU per call: client {:.0} µs, backend {:.0} µs, gateway {:.0} µs, PostgreSQL {:.0} µs",
            per(0),
            per(1),
            per(2),
            per(3)
        );
        outcomes.push(outcome);
    }
    if let [direct, via] = outcomes.as_slice() {
        println!(
            "  gateway: p50 {:+.3} ms, p99 {:+.3} ms, throughput {:.1}% of direct",
            via.ms(0.5) - direct.ms(0.5),
            via.ms(0.99) - direct.ms(0.99),
            100.0 * via.throughput() / direct.throughput().max(f64::MIN_POSITIVE)
        );
    }
    for s in std::iter::once(&backend).chain(gateway.as_ref()) {
        if let Some(mib) = s.peak_rss_mib() {
            println!("  peak memory of {}: {mib:.1} MiB", s.name);
        }
    }
    Ok(())
}
